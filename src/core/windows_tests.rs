//! Sync windows with an injected clock: every time is a UTC calendar time written out, so a
//! test reads as the calendar it checks (2026-01-09 is a Friday).

use super::*;
use crate::core::pass::{assume_observed, plan_pass, HostMemory};
use crate::core::testkit::{desired, service, stack};
use crate::model::observed::{ObservedContainer, ObservedHost, RunState};
use crate::model::schedule::Schedule;
use chrono::{TimeZone, Utc};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp()
}

fn window(kind: WindowKind, expr: &str, secs: i64, tz: Option<&str>) -> SyncWindow {
    SyncWindow {
        kind,
        schedule: Schedule::parse(expr, tz).unwrap(),
        duration_secs: secs,
        stacks: None,
        manual_sync: true,
    }
}

fn deny(expr: &str, secs: i64) -> SyncWindow {
    window(WindowKind::Deny, expr, secs, None)
}

fn allow(expr: &str, secs: i64) -> SyncWindow {
    window(WindowKind::Allow, expr, secs, None)
}

const H: i64 = 3600;

#[test]
fn a_weekend_deny_window_holds_inside_and_says_when_it_opens() {
    let w = [deny("0 22 * * 5", 60 * H)];
    // Thursday: open for changes.
    assert_eq!(hold_at(&[&w], "web", utc(2026, 1, 8, 12, 0)), None);
    // Friday 21:59: not yet.
    assert_eq!(hold_at(&[&w], "web", utc(2026, 1, 9, 21, 59)), None);
    let h = hold_at(&[&w], "web", utc(2026, 1, 9, 22, 0)).expect("held at the start");
    assert_eq!(h.window, 0);
    assert_eq!(h.kind, WindowKind::Deny);
    assert_eq!(h.schedule, "0 22 * * 5");
    assert_eq!(h.timezone, "UTC");
    assert!(h.manual_sync);
    // Friday 22:00 + 60 h = Monday 10:00.
    assert_eq!(h.opens_at, Some(utc(2026, 1, 12, 10, 0)));
    let sunday = hold_at(&[&w], "web", utc(2026, 1, 11, 3, 0)).unwrap();
    assert_eq!(sunday.opens_at, Some(utc(2026, 1, 12, 10, 0)));
    // The end is not inside.
    assert_eq!(hold_at(&[&w], "web", utc(2026, 1, 12, 10, 0)), None);
    assert!(
        h.line().contains("until 2026-01-12T10:00:00Z"),
        "{}",
        h.line()
    );
}

#[test]
fn outside_every_allow_window_is_held_until_the_next_one_opens() {
    // Weekdays 09:00-17:00.
    let w = [allow("0 9 * * 1-5", 8 * H)];
    // Tuesday 10:00: inside.
    assert_eq!(hold_at(&[&w], "web", utc(2026, 1, 6, 10, 0)), None);
    // Tuesday 18:00: held until Wednesday 09:00.
    let h = hold_at(&[&w], "web", utc(2026, 1, 6, 18, 0)).unwrap();
    assert_eq!(h.kind, WindowKind::Allow);
    assert_eq!(h.opens_at, Some(utc(2026, 1, 7, 9, 0)));
    // Saturday: until Monday 09:00.
    let h = hold_at(&[&w], "web", utc(2026, 1, 10, 12, 0)).unwrap();
    assert_eq!(h.opens_at, Some(utc(2026, 1, 12, 9, 0)));
}

#[test]
fn several_windows_a_deny_inside_an_allow_and_chained_denies() {
    let w = [allow("0 9 * * 1-5", 8 * H), deny("0 12 * * *", H)];
    // Tuesday 12:30: allowed by the first, denied by the second until 13:00.
    let h = hold_at(&[&w], "web", utc(2026, 1, 6, 12, 30)).unwrap();
    assert_eq!((h.window, h.kind), (1, WindowKind::Deny));
    assert_eq!(h.opens_at, Some(utc(2026, 1, 6, 13, 0)));
    assert_eq!(hold_at(&[&w], "web", utc(2026, 1, 6, 13, 0)), None);
    // Two deny windows that overlap: free only when both have closed.
    let w = [deny("0 22 * * *", 2 * H), deny("30 23 * * *", 2 * H)];
    let h = hold_at(&[&w], "web", utc(2026, 1, 6, 22, 30)).unwrap();
    assert_eq!(h.window, 0);
    assert_eq!(h.opens_at, Some(utc(2026, 1, 7, 1, 30)));
    // A deny window that ends outside an allow window: free when the allow one opens.
    let w = [allow("0 9 * * *", 8 * H), deny("0 16 * * *", 4 * H)];
    let h = hold_at(&[&w], "web", utc(2026, 1, 6, 16, 30)).unwrap();
    assert_eq!(h.opens_at, Some(utc(2026, 1, 7, 9, 0)));
}

#[test]
fn a_window_holds_only_the_stacks_it_names() {
    let mut w = deny("* * * * *", 2 * 60);
    w.stacks = Some(vec!["db".into()]);
    let sets: [&[SyncWindow]; 1] = [std::slice::from_ref(&w)];
    let t = utc(2026, 1, 6, 12, 0);
    assert!(hold_at(&sets, "db", t).is_some());
    assert_eq!(hold_at(&sets, "web", t), None);
    let all = holds(&sets, ["db", "web"], t);
    assert_eq!(all.keys().collect::<Vec<_>>(), vec!["db"]);
    // Allow windows likewise: a stack no allow window names is never held by them.
    let mut a = allow("0 9 * * *", H);
    a.stacks = Some(vec!["db".into()]);
    let sets: [&[SyncWindow]; 1] = [std::slice::from_ref(&a)];
    assert!(hold_at(&sets, "db", t).is_some());
    assert_eq!(hold_at(&sets, "web", t), None);
}

#[test]
fn a_window_across_midnight() {
    let w = [deny("0 22 * * *", 4 * H)];
    let h = hold_at(&[&w], "web", utc(2026, 1, 7, 1, 0)).unwrap();
    assert_eq!(h.opens_at, Some(utc(2026, 1, 7, 2, 0)));
    assert_eq!(hold_at(&[&w], "web", utc(2026, 1, 7, 2, 0)), None);
}

#[test]
fn across_a_dst_change_the_duration_is_elapsed_time() {
    // Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST at 01:00 UTC.
    let w = [window(
        WindowKind::Deny,
        "0 1 * * *",
        3 * H,
        Some("Europe/Berlin"),
    )];
    // Opens at 01:00 CET = 00:00 UTC; three hours later is 03:00 UTC (05:00 CEST).
    let h = hold_at(&[&w], "web", utc(2026, 3, 29, 2, 30)).unwrap();
    assert_eq!(h.timezone, "Europe/Berlin");
    assert_eq!(h.opens_at, Some(utc(2026, 3, 29, 3, 0)));
    // A start in the skipped hour opens once, just after the jump (01:00 UTC).
    let w = [window(
        WindowKind::Deny,
        "30 2 * * *",
        H,
        Some("Europe/Berlin"),
    )];
    assert_eq!(hold_at(&[&w], "web", utc(2026, 3, 29, 0, 59)), None);
    let h = hold_at(&[&w], "web", utc(2026, 3, 29, 1, 30)).unwrap();
    assert_eq!(h.opens_at, Some(utc(2026, 3, 29, 2, 0)));
    // Autumn (25 October 2026, 03:00 CEST becomes 02:00 CET at 01:00 UTC): 02:30 local
    // happens twice; the window opens at the first (00:30 UTC) only.
    let h = hold_at(&[&w], "web", utc(2026, 10, 25, 1, 15)).unwrap();
    assert_eq!(h.opens_at, Some(utc(2026, 10, 25, 1, 30)));
    assert_eq!(hold_at(&[&w], "web", utc(2026, 10, 25, 1, 45)), None);
}

#[test]
fn a_duration_longer_than_the_period_is_one_long_window() {
    // Every minute, open for two: always open; no opening in sight.
    let w = [deny("* * * * *", 120)];
    let h = hold_at(&[&w], "web", utc(2026, 1, 6, 12, 0)).unwrap();
    assert_eq!(h.opens_at, None);
    assert!(h.line().contains("no opening in sight"), "{}", h.line());
    let w = [deny("@every 10m", 15 * 60)];
    assert_eq!(
        hold_at(&[&w], "web", utc(2026, 1, 6, 12, 7))
            .unwrap()
            .opens_at,
        None
    );
    // Monday and Tuesday at 00:00 for 36 h: Monday's window runs into Tuesday's, which
    // ends on Wednesday at 12:00.
    let w = deny("0 0 * * 1,2", 36 * H);
    assert_eq!(
        closes_at(&w, utc(2026, 1, 5, 6, 0)),
        Some(utc(2026, 1, 7, 12, 0))
    );
    let h = hold_at(&[std::slice::from_ref(&w)], "web", utc(2026, 1, 5, 6, 0)).unwrap();
    assert_eq!(h.opens_at, Some(utc(2026, 1, 7, 12, 0)));
    assert!(!is_open(&w, utc(2026, 1, 7, 12, 0)));
}

#[test]
fn a_commit_cannot_lift_the_window_that_holds_it() {
    let in_force = [deny("0 22 * * 5", 60 * H)];
    let new: [SyncWindow; 0] = [];
    let t = utc(2026, 1, 10, 12, 0);
    let h = hold_at(&[&in_force, &new], "web", t).unwrap();
    assert_eq!(h.opens_at, Some(utc(2026, 1, 12, 10, 0)));
    // Both sets count for the opening (the new commit's window runs on after the old one's
    // ends), and for manual syncs (only the windows open now).
    let mut hard = deny("0 8 * * 1", 4 * H);
    hard.manual_sync = false;
    let new = [hard];
    let h = hold_at(&[&in_force, &new], "web", t).unwrap();
    assert!(h.manual_sync);
    assert_eq!(h.opens_at, Some(utc(2026, 1, 12, 12, 0)));
    let h = hold_at(&[&in_force, &new], "web", utc(2026, 1, 12, 9, 0)).unwrap();
    assert!(!h.manual_sync);
}

#[test]
fn manual_sync_is_allowed_only_when_every_holding_window_allows_it() {
    let mut hard = deny("0 0 * * *", 12 * H);
    hard.manual_sync = false;
    let soft = deny("0 6 * * *", 2 * H);
    let w = [soft.clone(), hard];
    let t = utc(2026, 1, 6, 7, 0);
    let h = hold_at(&[&w], "web", t).unwrap();
    assert_eq!(h.window, 0);
    assert!(!h.manual_sync);
    assert!(hold_at(&[&[soft]], "web", t).unwrap().manual_sync);
}

// ---- what a pass plans for a held stack ----

fn with_image(image: &str, replicas: u32) -> DesiredState {
    let mut app = service("app", replicas);
    app.container.image = image.into();
    desired(
        &["h1"],
        vec![
            stack("web", vec![app]),
            stack("other", vec![service("api", 1)]),
        ],
    )
}

fn held_web(t: i64) -> BTreeMap<String, WindowHold> {
    holds(&[&[deny("* * * * *", 120)]], ["web"], t)
}

fn containers(o: &mut ObservedState) -> &mut BTreeMap<String, ObservedContainer> {
    match o.hosts.get_mut("h1").unwrap() {
        ObservedHost::Reachable(s) => &mut s.containers,
        _ => unreachable!(),
    }
}

fn lines(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(|s| s.action.line()).collect()
}

#[test]
fn freeze_keeps_a_held_stack_as_it_runs_and_restarts_an_exited_replica_in_place() {
    let base = with_image("busybox:1", 2);
    let mut observed = assume_observed(&base, "c1");
    let mut new = with_image("busybox:2", 2);
    // The other stack changes too, and is not held.
    new.stacks
        .get_mut("other")
        .unwrap()
        .services
        .get_mut("api")
        .unwrap()
        .container
        .image = "busybox:3".into();
    let names: Vec<String> = containers(&mut observed)
        .keys()
        .filter(|n| n.starts_with("web-"))
        .cloned()
        .collect();
    let killed = containers(&mut observed).get_mut(&names[0]).unwrap();
    killed.state = RunState::Exited;
    killed.exit_code = 137;
    let mut plan = plan_pass(&new, &observed, &HostMemory::default(), "c2").plan;
    assert!(plan
        .steps
        .iter()
        .any(|s| matches!(&s.action, Action::Replace { replica, .. } if replica.stack == "web")));
    let touched = freeze(&mut plan, &observed, &held_web(0));
    assert_eq!(touched.into_iter().collect::<Vec<_>>(), vec!["web"]);
    let l = lines(&plan);
    assert!(
        l.iter().any(|s| s.starts_with(&format!("> {}", names[0]))),
        "the exited replica starts in place: {l:?}"
    );
    assert!(
        !l.iter().any(|s| s.contains(&names[1])),
        "the running replica is left alone: {l:?}"
    );
    assert!(
        l.iter().any(|s| s.starts_with("~ other-api")),
        "the other stack's change goes on: {l:?}"
    );
    assert!(plan.rollouts.iter().all(|r| r.stack != "web"));
    assert!(plan
        .notes
        .iter()
        .any(|n| n.contains("stack `web` is held by sync window 0")));
}

#[test]
fn freeze_makes_a_removed_replica_again_only_from_a_spec_that_runs() {
    let base = with_image("busybox:1", 2);
    let mut observed = assume_observed(&base, "c1");
    let first = containers(&mut observed)
        .keys()
        .find(|n| n.starts_with("web-"))
        .cloned()
        .unwrap();
    containers(&mut observed).remove(&first);
    // The held commit changes nothing of `web`: its sibling runs the same spec, so the
    // missing replica is made again.
    let mut plan = plan_pass(&base, &observed, &HostMemory::default(), "c2").plan;
    let touched = freeze(&mut plan, &observed, &held_web(0));
    assert!(touched.is_empty());
    assert!(lines(&plan)
        .iter()
        .any(|s| s.starts_with(&format!("+ {first}"))));
    // The held commit changes its image: nothing runs that spec, so the replica is made
    // again from the spec its sibling runs, read back from the engine.
    let new = with_image("busybox:2", 2);
    let mut plan = plan_pass(&new, &observed, &HostMemory::default(), "c2").plan;
    let touched = freeze(&mut plan, &observed, &held_web(0));
    assert!(touched.contains("web"));
    let old_hash = base.stacks["web"].services["app"].container.hash();
    let made: Vec<(String, String, String)> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Create { replica, .. } => Some((
                replica.name.clone(),
                replica.spec_hash.clone(),
                replica.spec.image.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        made,
        vec![(first.clone(), old_hash, "busybox:1".to_string())],
        "{:?}",
        lines(&plan)
    );
    assert!(plan.pending.is_empty(), "{:?}", plan.pending);
    // With no replica left to read it from, the replica waits, and says why.
    containers(&mut observed).retain(|n, _| !n.starts_with("web-"));
    let mut plan = plan_pass(&new, &observed, &HostMemory::default(), "c2").plan;
    freeze(&mut plan, &observed, &held_web(0));
    assert!(
        lines(&plan).iter().all(|s| !s.contains("web-")),
        "{:?}",
        lines(&plan)
    );
    assert!(plan.pending.iter().any(|p| p.stack == "web"
        && p.reason == "held by a sync window: its spec runs nowhere to be made from"));
}

#[test]
fn freeze_removes_nothing_of_a_held_stack() {
    let base = with_image("busybox:1", 2);
    let observed = assume_observed(&base, "c1");
    let mut new = with_image("busybox:1", 1);
    new.stacks.remove("other");
    let mut plan = plan_pass(&new, &observed, &HostMemory::default(), "c2").plan;
    assert_eq!(plan.summary().remove, 2);
    let touched = freeze(&mut plan, &observed, &held_web(0));
    assert!(touched.contains("web"));
    // `other` is not held: its removal goes on.
    assert_eq!(lines(&plan).len(), 1, "{:?}", lines(&plan));
    assert!(lines(&plan)[0].starts_with("- other-api"));
}

#[test]
fn merge_keeps_the_spec_in_force_for_held_stacks_and_heals_with_it() {
    let base = with_image("busybox:1", 2);
    let mut observed = assume_observed(&base, "c1");
    let first = containers(&mut observed)
        .keys()
        .find(|n| n.starts_with("web-"))
        .cloned()
        .unwrap();
    containers(&mut observed).remove(&first);
    let new = with_image("busybox:2", 3);
    let changed = changed_stacks(&base, &new);
    assert_eq!(changed.iter().collect::<Vec<_>>(), vec!["web"]);
    let held: BTreeSet<String> = ["web".to_string()].into();
    let merged = merge_held(&new, &base, &held);
    assert_eq!(merged.stacks["web"], base.stacks["web"]);
    let plan = plan_pass(&merged, &observed, &HostMemory::default(), "c2").plan;
    let l = lines(&plan);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(
        l[0].starts_with(&format!("+ {first}")) && l[0].contains("busybox:1"),
        "{l:?}"
    );
    // A stack the held commit adds is not made; one it removes stays.
    let mut new = with_image("busybox:2", 3);
    new.stacks
        .insert("extra".into(), stack("extra", vec![service("x", 1)]));
    new.stacks.remove("web");
    let held: BTreeSet<String> = ["web".to_string(), "extra".to_string()].into();
    let merged = merge_held(&new, &base, &held);
    assert!(merged.stacks.contains_key("web") && !merged.stacks.contains_key("extra"));
}
