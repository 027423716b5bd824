//! The schedule's arithmetic with fixed instants: every time is written out in UTC, so a test
//! reads as the calendar it checks.

use super::*;
use chrono::{NaiveDate, TimeZone, Utc};

/// Unix seconds of a UTC calendar time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp()
}

fn runs(s: &Schedule, from: i64, n: usize) -> Vec<i64> {
    let mut out = Vec::new();
    let mut t = from;
    for _ in 0..n {
        t = s.next_after(t).unwrap();
        out.push(t);
    }
    out
}

#[test]
fn a_daily_time_in_utc_and_in_a_zone() {
    let s = Schedule::parse("0 3 * * *", None).unwrap();
    assert_eq!(
        s.next_after(utc(2026, 1, 10, 2, 0)),
        Some(utc(2026, 1, 10, 3, 0))
    );
    // Strictly after: at 03:00 the next is tomorrow's.
    assert_eq!(
        s.next_after(utc(2026, 1, 10, 3, 0)),
        Some(utc(2026, 1, 11, 3, 0))
    );
    assert_eq!(
        s.last_at_or_before(utc(2026, 1, 10, 3, 0)),
        Some(utc(2026, 1, 10, 3, 0))
    );
    assert_eq!(s.period(utc(2026, 1, 10, 0, 0)), Some(86_400));
    let berlin = Schedule::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
    // Winter: UTC+1.
    assert_eq!(
        berlin.next_after(utc(2026, 1, 10, 0, 0)),
        Some(utc(2026, 1, 10, 2, 0))
    );
    // Summer: UTC+2.
    assert_eq!(
        berlin.next_after(utc(2026, 7, 10, 0, 0)),
        Some(utc(2026, 7, 10, 1, 0))
    );
    assert_eq!(berlin.timezone(), "Europe/Berlin");
}

#[test]
fn a_time_the_clock_skips_runs_once_just_after_the_jump() {
    // Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    assert_eq!(
        runs(&s, utc(2026, 3, 28, 12, 0), 3),
        vec![
            utc(2026, 3, 29, 1, 0),
            utc(2026, 3, 30, 0, 30),
            utc(2026, 3, 31, 0, 30)
        ]
    );
    // Several skipped minutes and the first real one run once together.
    let s = Schedule::parse("0,30 2,3 * * *", Some("Europe/Berlin")).unwrap();
    assert_eq!(
        runs(&s, utc(2026, 3, 29, 0, 0), 2),
        vec![utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]
    );
}

#[test]
fn a_time_the_clock_passes_twice_runs_at_the_first() {
    // Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET at 01:00 UTC.
    let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    assert_eq!(
        runs(&s, utc(2026, 10, 24, 12, 0), 2),
        vec![utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    );
    // From inside the repeated hour (02:45 CET, the second pass), the next is tomorrow's.
    assert_eq!(
        s.next_after(utc(2026, 10, 25, 1, 45)),
        Some(utc(2026, 10, 26, 1, 30))
    );
    // An hourly schedule keeps its real hours across the change: one run per hour of time.
    let h = Schedule::parse("@hourly", Some("Europe/Berlin")).unwrap();
    let r = runs(&h, utc(2026, 10, 24, 23, 30), 4);
    assert_eq!(r[0], utc(2026, 10, 25, 0, 0));
    assert!(r.windows(2).all(|w| w[1] > w[0]), "{r:?}");
}

#[test]
fn the_last_time_before_a_down_daemon_came_back() {
    let s = Schedule::parse("*/15 * * * *", None).unwrap();
    assert_eq!(
        s.last_at_or_before(utc(2026, 5, 1, 10, 44)),
        Some(utc(2026, 5, 1, 10, 30))
    );
    let berlin = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    // Back at 01:10 UTC on the day the clock skipped 02:30: its run was at 01:00 UTC.
    assert_eq!(
        berlin.last_at_or_before(utc(2026, 3, 29, 1, 10)),
        Some(utc(2026, 3, 29, 1, 0))
    );
    assert_eq!(
        berlin.last_at_or_before(utc(2026, 3, 29, 0, 59)),
        Some(utc(2026, 3, 28, 1, 30))
    );
}

#[test]
fn every_counts_from_the_epoch_so_restarts_agree() {
    let s = Schedule::parse("@every 10s", None).unwrap();
    assert_eq!(s.next_after(1_000_003), Some(1_000_010));
    assert_eq!(s.next_after(1_000_010), Some(1_000_020));
    assert_eq!(s.last_at_or_before(1_000_019), Some(1_000_010));
    assert_eq!(s.period(0), Some(10));
    assert_eq!(
        Schedule::parse("@every 1h30m", None).unwrap().period(0),
        Some(5400)
    );
}

#[test]
fn names_ranges_steps_and_the_day_rule() {
    let s = Schedule::parse("0 9 * jan,jul mon-fri", None).unwrap();
    // 3 January 2026 is a Saturday: the next weekday is Monday the 5th.
    assert_eq!(
        s.next_after(utc(2026, 1, 2, 10, 0)),
        Some(utc(2026, 1, 5, 9, 0))
    );
    // Day of month and day of week both restricted: either matches (the 13th or a Friday).
    let s = Schedule::parse("0 0 13 * 5", None).unwrap();
    let days: Vec<u32> = runs(&s, utc(2026, 2, 1, 0, 0), 4)
        .into_iter()
        .map(|t| Utc.timestamp_opt(t, 0).unwrap().date_naive().day())
        .collect();
    assert_eq!(days, vec![6, 13, 20, 27]);
    // 7 is Sunday too; `a/n` runs to the end of the field.
    let s = Schedule::parse("5/20 0 * * 7", None).unwrap();
    let first = s.next_after(utc(2026, 1, 1, 0, 0)).unwrap();
    assert_eq!(first, utc(2026, 1, 4, 0, 5));
    assert_eq!(
        runs(&s, first, 2),
        vec![utc(2026, 1, 4, 0, 25), utc(2026, 1, 4, 0, 45)]
    );
    // 29 February comes every four years.
    let s = Schedule::parse("0 0 29 2 *", None).unwrap();
    assert_eq!(
        s.next_after(utc(2026, 1, 1, 0, 0)),
        Some(utc(2028, 2, 29, 0, 0))
    );
    let _ = NaiveDate::from_ymd_opt(2028, 2, 29).unwrap();
}

#[test]
fn bad_schedules_say_what_is_wrong() {
    let e = |x: &str, tz: Option<&str>| Schedule::parse(x, tz).unwrap_err().to_string();
    assert!(
        e("0 3 * *", None).contains("has 4 fields"),
        "{}",
        e("0 3 * *", None)
    );
    assert!(e("61 * * * *", None).contains("minute `61` is out of range 0-59"));
    assert!(e("* * * foo *", None).contains("month `foo` is not a number or a name"));
    assert!(e("*/0 * * * *", None).contains("step `0`"));
    assert!(e("5-1 * * * *", None).contains("runs backwards"));
    assert!(e("0 0 31 2 *", None).contains("would never run"));
    assert!(e("@often", None).contains("unknown macro"));
    assert!(e("@every", None).contains("duration"));
    assert!(e("@every 0s", None).contains("duration"));
    assert!(e("@every 5x", None).contains("duration"));
    assert!(e("@daily", Some("Mars/Olympus")).contains("unknown time zone `Mars/Olympus`"));
}
