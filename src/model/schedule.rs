//! Schedules: when a job runs and when a sync window opens. A standard 5-field crontab
//! expression (`0 3 * * 1-5`, names of months and days, lists, ranges and steps), the macros
//! `@yearly`, `@monthly`, `@weekly`, `@daily`, `@hourly`, and `@every <duration>` (as Nomad and
//! robfig/cron have it), read in an IANA time zone (UTC by default).
//!
//! Pure: every question takes the time as Unix seconds; nothing here reads a clock.
//!
//! Daylight saving time follows Vixie cron, so a run is never lost and never doubled:
//! - a local time the clock skips (02:30 when it jumps from 02:00 to 03:00) runs at the first
//!   instant after the jump, once, however many skipped minutes the expression names;
//! - a local time the clock passes twice (02:30 when it falls back from 03:00 to 02:00) runs
//!   at its first occurrence only.
//!
//! `@every` counts from the Unix epoch (`@every 10m` runs at :00, :10, :20 UTC), not from when
//! a daemon started: the scheduled times are the same across restarts, so a run is recorded
//! against one time and never repeated for it.

use chrono::{Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use std::fmt;

/// How far ahead or back a search for a matching day goes: an expression that matches no day
/// in this span (`0 0 30 2 *`) never runs and is refused when it is read. Eight years, so a
/// 29 February on a given weekday is still found.
const SEARCH_DAYS: i64 = 8 * 366;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    tz: Tz,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Cron(Box<Fields>),
    /// A fixed interval in seconds, counted from the Unix epoch.
    Every(i64),
}

/// The five fields as sets of allowed values (bit `n` set when value `n` matches).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    /// 0 = Sunday .. 6 = Saturday (7 is read as 0).
    weekdays: u8,
    /// Whether the day-of-month or day-of-week field was restricted (not `*`): when both are,
    /// a day matches either (Vixie cron's rule), otherwise both.
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// Why a schedule or a time zone cannot be read. The message names the part that is wrong;
/// the manifest adds the file, line and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ScheduleError> {
    Err(ScheduleError(msg.into()))
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>().map_err(|_| {
        ScheduleError(format!(
            "unknown time zone `{name}` (an IANA name such as `UTC` or `Europe/Berlin`)"
        ))
    })
}

impl Schedule {
    /// Reads `expr` in the time zone `tz` (an IANA name; `None` is UTC).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match tz {
            Some(name) => parse_timezone(name)?,
            None => Tz::UTC,
        };
        let text = expr.trim();
        let kind = match text {
            "@yearly" | "@annually" => cron("0 0 1 1 *")?,
            "@monthly" => cron("0 0 1 * *")?,
            "@weekly" => cron("0 0 * * 0")?,
            "@daily" | "@midnight" => cron("0 0 * * *")?,
            "@hourly" => cron("0 * * * *")?,
            _ if text.starts_with("@every") => {
                let d = text["@every".len()..].trim();
                let secs = parse_every(d)?;
                Kind::Every(secs)
            }
            _ if text.starts_with('@') => {
                return err(format!(
                    "unknown macro `{text}` (use @yearly, @monthly, @weekly, @daily, @hourly or @every <duration>)"
                ))
            }
            _ => cron(text)?,
        };
        let schedule = Schedule {
            kind,
            tz,
            text: text.to_string(),
        };
        // An expression that names no real day (`0 0 31 2 *`) would never run: refuse it now
        // rather than let a job wait forever.
        if schedule.next_after(0).is_none() {
            return err(format!("`{text}` matches no date: it would never run"));
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The time zone's IANA name.
    pub fn timezone(&self) -> &'static str {
        self.tz.name()
    }

    /// The first scheduled time strictly after `t` (Unix seconds).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every(d) => Some((t.div_euclid(*d) + 1) * d),
            Kind::Cron(f) => self.cron_next_after(f, t),
        }
    }

    /// The last scheduled time at or before `t`.
    pub fn last_at_or_before(&self, t: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every(d) => Some(t.div_euclid(*d) * d),
            Kind::Cron(f) => self.cron_last_at_or_before(f, t),
        }
    }

    /// The schedule's period around `t`: the time from the next run to the one after it
    /// (`@every` is exact; a cron expression's gaps may differ, this is the one ahead).
    pub fn period(&self, t: i64) -> Option<i64> {
        let a = self.next_after(t)?;
        let b = self.next_after(a)?;
        Some(b - a)
    }

    fn cron_next_after(&self, f: &Fields, t: i64) -> Option<i64> {
        // Candidates are local wall-clock minutes in increasing order. Their instants never
        // decrease (a skipped minute maps to the end of the gap, a doubled one to its first
        // occurrence), so the first candidate whose instant is after `t` is the answer. Start
        // a day early: a fall-back makes wall-clock time run behind the instant.
        let local = self.tz.timestamp_opt(t, 0).single()?.naive_local();
        let start = local.date() - Duration::days(1);
        for day in 0..SEARCH_DAYS {
            let date = start + Duration::days(day);
            if !f.day_matches(date) {
                continue;
            }
            for hour in bits(f.hours as u64, 24) {
                for minute in bits(f.minutes, 60) {
                    let wall = date.and_hms_opt(hour, minute, 0)?;
                    let at = self.instant(wall);
                    if at > t {
                        return Some(at);
                    }
                }
            }
        }
        None
    }

    fn cron_last_at_or_before(&self, f: &Fields, t: i64) -> Option<i64> {
        let local = self.tz.timestamp_opt(t, 0).single()?.naive_local();
        let start = local.date() + Duration::days(1);
        let hours: Vec<u32> = bits(f.hours as u64, 24).collect();
        let minutes: Vec<u32> = bits(f.minutes, 60).collect();
        for day in 0..SEARCH_DAYS {
            let date = start - Duration::days(day);
            if !f.day_matches(date) {
                continue;
            }
            for hour in hours.iter().rev() {
                for minute in minutes.iter().rev() {
                    let wall = date.and_hms_opt(*hour, *minute, 0)?;
                    let at = self.instant(wall);
                    if at <= t {
                        return Some(at);
                    }
                }
            }
        }
        None
    }

    /// The instant of a wall-clock time: its only occurrence, the first of two, or, for a
    /// time the clock skips, the first instant after the skip.
    fn instant(&self, wall: NaiveDateTime) -> i64 {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => t.timestamp(),
            LocalResult::Ambiguous(first, _) => first.timestamp(),
            LocalResult::None => {
                // Gaps are whole minutes and at most a few hours: the first wall-clock minute
                // after `wall` that exists is where the gap ends, the instant of the jump.
                let mut probe = wall;
                for _ in 0..(24 * 60) {
                    probe += Duration::minutes(1);
                    match self.tz.from_local_datetime(&probe) {
                        LocalResult::Single(t) => return t.timestamp(),
                        LocalResult::Ambiguous(first, _) => return first.timestamp(),
                        LocalResult::None => {}
                    }
                }
                // Unreachable for real zones; a fixed answer keeps the function total.
                wall.and_utc().timestamp()
            }
        }
    }
}

impl Fields {
    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            _ => dom && dow,
        }
    }
}

/// The set bits of `set` below `n`, in increasing order.
fn bits(set: u64, n: u32) -> impl DoubleEndedIterator<Item = u32> {
    (0..n).filter(move |i| set & (1u64 << i) != 0)
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn cron(text: &str) -> Result<Kind, ScheduleError> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    if parts.len() != 5 {
        return err(format!(
            "`{text}` has {} fields; a schedule has 5 (minute hour day-of-month month day-of-week) or is a macro such as @daily or @every 10m",
            parts.len()
        ));
    }
    let minutes = field(parts[0], "minute", 0, 59, &[])?;
    let hours = field(parts[1], "hour", 0, 23, &[])?;
    let days = field(parts[2], "day of month", 1, 31, &[])?;
    let months = field(parts[3], "month", 1, 12, &MONTHS)?;
    let mut weekdays = field(parts[4], "day of week", 0, 7, &DAYS)?;
    if weekdays & (1 << 7) != 0 {
        weekdays = (weekdays & !(1 << 7)) | 1;
    }
    Ok(Kind::Cron(Box::new(Fields {
        minutes,
        hours: hours as u32,
        days: days as u32,
        months: months as u16,
        weekdays: weekdays as u8,
        days_restricted: !parts[2].starts_with('*'),
        weekdays_restricted: !parts[4].starts_with('*'),
    })))
}

/// One field: `*`, `*/n`, `a`, `a-b`, `a-b/n`, `a/n`, and lists of them, with names where
/// the field has them (`mon-fri`, `jan,jul`). Names count from `lo`.
fn field(text: &str, name: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, ScheduleError> {
    let mut set = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    ScheduleError(format!(
                        "{name} field `{text}`: step `{s}` is not a positive number"
                    ))
                })?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, name, lo, hi, names)?,
                value(b, name, lo, hi, names)?,
            )
        } else {
            let a = value(range, name, lo, hi, names)?;
            // `a/n` runs from a to the end of the field, as cron implementations read it.
            (a, if step.is_some() { hi } else { a })
        };
        if a > b {
            return err(format!(
                "{name} field `{text}`: range `{range}` runs backwards"
            ));
        }
        let step = step.unwrap_or(1);
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

fn value(text: &str, name: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u32, ScheduleError> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if names.len() == 12 { 1 } else { 0 });
    }
    match text.parse::<u32>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        Ok(v) => err(format!("{name} `{v}` is out of range {lo}-{hi}")),
        Err(_) => err(format!(
            "{name} `{text}` is not a number{}",
            if names.is_empty() {
                String::new()
            } else {
                format!(" or a name ({})", names.join(", "))
            }
        )),
    }
}

/// `@every`'s interval: `10s`, `5m`, `1h30m`, `2d`; at least one second.
fn parse_every(text: &str) -> Result<i64, ScheduleError> {
    let bad = || {
        ScheduleError(format!(
            "`@every {text}`: the interval is a duration such as 10s, 5m or 1h30m"
        ))
    };
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: i64 = num.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || total < 1 {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
