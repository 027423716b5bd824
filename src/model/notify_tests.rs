//! Tests of the notification rules: which events, coalescing with an injected clock, commit
//! status mapping, masking.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::model::history::{Failure, HistoryEntry};
use crate::model::outcome::{HoldReason, PassReason, PassResult};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

fn entry(commit: &str, result: PassResult) -> HistoryEntry {
    HistoryEntry {
        id: 0,
        fleet: "prod".into(),
        commit: commit.into(),
        author: None,
        message: None,
        trigger: PassReason::Resync,
        started_at: String::new(),
        ended_at: String::new(),
        result,
        converged: false,
        detail: None,
        errors: Vec::new(),
        changes: Vec::new(),
        heals: BTreeMap::new(),
        failures: Vec::new(),
        rollouts: Vec::new(),
        unreachable: BTreeMap::new(),
        jobs: Vec::new(),
    }
}

fn failed(commit: &str, host: &str, error: &str) -> HistoryEntry {
    let mut e = entry(commit, PassResult::Failed);
    e.failures.push(Failure {
        host: host.into(),
        stack: "web".into(),
        service: "app".into(),
        step: "+ web-app-1".into(),
        error: error.into(),
    });
    e.detail = Some(format!("1 step(s) failed: {error}"));
    e
}

fn healed(commit: &str, n: u32) -> HistoryEntry {
    let mut e = entry(commit, PassResult::Applied);
    e.heals.insert("missing".into(), n);
    e
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind().code()).collect()
}

#[test]
fn a_commit_is_started_once_and_applied_once() {
    let mut c = Coalescer::default();
    assert_eq!(kinds(&c.pass_started(A, 4)), ["started"]);
    assert_eq!(kinds(&c.pass_started(A, 4)), Vec::<&str>::new());
    let done = c.pass_ended(&entry(A, PassResult::Applied), 4, 0);
    assert_eq!(
        done,
        [Event::Applied {
            commit: A.into(),
            hosts: HostCount { ok: 4, total: 4 }
        }]
    );
    // The confirming pass, and every resync after it, says nothing.
    assert!(c.pass_started(A, 4).is_empty());
    assert!(c
        .pass_ended(&entry(A, PassResult::Converged), 4, 10)
        .is_empty());
    assert!(c
        .pass_ended(&entry(A, PassResult::Applied), 4, 20)
        .is_empty());
}

#[test]
fn a_restart_resumed_at_an_applied_commit_says_nothing_again_but_heals_and_news() {
    let mut c = Coalescer::default();
    c.resume(A);
    assert!(c.pass_started(A, 4).is_empty());
    assert!(c
        .pass_ended(&entry(A, PassResult::Converged), 4, 0)
        .is_empty());
    assert_eq!(kinds(&c.pass_ended(&healed(A, 2), 4, 5)), ["healed"]);
    // A new commit after the restart is news as ever.
    assert_eq!(kinds(&c.pass_started(B, 4)), ["started"]);
    assert_eq!(
        kinds(&c.pass_ended(&entry(B, PassResult::Applied), 4, 10)),
        ["applied"]
    );
}

#[test]
fn a_host_back_is_said_up_at_once_and_not_again_at_the_next_pass() {
    let mut c = Coalescer::default();
    let down: BTreeSet<String> = ["h1".to_string()].into();
    assert_eq!(kinds(&c.hosts_down(&down)), ["host_down"]);
    assert_eq!(kinds(&c.host_back("h1")), ["host_up"]);
    assert!(c.host_back("h1").is_empty(), "said once");
    assert!(c.hosts_down(&BTreeSet::new()).is_empty());
    // A host that was never said down says nothing when it connects.
    assert!(c.host_back("h2").is_empty());
}

#[test]
fn a_pass_that_healed_twenty_replicas_is_one_message() {
    let mut c = Coalescer::default();
    c.pass_started(A, 2);
    c.pass_ended(&entry(A, PassResult::Applied), 2, 0);
    let mut e = healed(A, 12);
    e.heals.insert("exited".into(), 8);
    let events = c.pass_ended(&e, 2, 5);
    assert_eq!(events.len(), 1);
    match &events[0] {
        Event::Healed { replicas, .. } => assert_eq!(*replicas, 20),
        other => panic!("expected healed, got {other:?}"),
    }
}

#[test]
fn an_unchanged_failure_is_repeated_at_most_once_an_hour() {
    let mut c = Coalescer::default();
    c.pass_started(A, 4);
    let t0 = 1_000_000;
    assert_eq!(
        kinds(&c.pass_ended(&failed(A, "h1", "pull denied (1)"), 4, t0)),
        ["failed"]
    );
    // The retries: the same steps fail, with another wording.
    for dt in [5, 60, 1800, REPEAT_FAILURE_SECS - 1] {
        let again = failed(A, "h1", &format!("pull denied ({dt})"));
        assert!(c.pass_ended(&again, 4, t0 + dt).is_empty(), "at +{dt}s");
    }
    let hour = c.pass_ended(&failed(A, "h1", "pull denied"), 4, t0 + REPEAT_FAILURE_SECS);
    assert_eq!(kinds(&hour), ["failed"]);
    // Another host failing is another failure: said at once.
    let other = c.pass_ended(
        &failed(A, "h2", "pull denied"),
        4,
        t0 + REPEAT_FAILURE_SECS + 1,
    );
    assert_eq!(kinds(&other), ["failed"]);
    // Fixed, then the same failure again: said again.
    assert_eq!(
        kinds(&c.pass_ended(&entry(A, PassResult::Applied), 4, t0 + 4000)),
        ["applied"]
    );
    assert_eq!(
        kinds(&c.pass_ended(&failed(A, "h2", "x"), 4, t0 + 4001)),
        ["failed"]
    );
}

#[test]
fn a_failed_pass_counts_the_hosts_that_did_their_part() {
    let mut c = Coalescer::default();
    c.pass_started(A, 4);
    let mut e = failed(A, "h1", "boom");
    e.unreachable.insert("h2".into(), "timed out".into());
    match &c.pass_ended(&e, 4, 0)[0] {
        Event::Failed { hosts, reason, .. } => {
            assert_eq!(hosts.to_string(), "2/4 hosts");
            assert_eq!(reason, "1 step(s) failed: boom");
        }
        other => panic!("expected failed, got {other:?}"),
    }
}

#[test]
fn a_host_down_is_said_once_per_outage() {
    let mut c = Coalescer::default();
    let down: BTreeSet<String> = ["h2".to_string()].into();
    assert_eq!(c.hosts_down(&down), [Event::HostDown { host: "h2".into() }]);
    for _ in 0..5 {
        assert!(c.hosts_down(&down).is_empty());
    }
    assert_eq!(
        c.hosts_down(&BTreeSet::new()),
        [Event::HostUp { host: "h2".into() }]
    );
    assert!(c.hosts_down(&BTreeSet::new()).is_empty());
}

#[test]
fn a_hold_is_said_once_per_commit_and_reason() {
    let mut c = Coalescer::default();
    let first = c.held(
        B,
        HoldReason::InvalidCommit,
        Some("2 error(s) in convoy.yaml"),
    );
    assert_eq!(kinds(&first), ["held"]);
    assert!(c
        .held(B, HoldReason::InvalidCommit, Some("again"))
        .is_empty());
    // Every pass under the hold says held too (a converged pass while held).
    let pass = entry(
        B,
        PassResult::Held {
            reason: HoldReason::InvalidCommit,
        },
    );
    assert!(c.pass_ended(&pass, 1, 0).is_empty());
    assert_eq!(kinds(&c.held(C, HoldReason::InvalidCommit, None)), ["held"]);
}

/// A push, a broken commit, a fix and a heal: the whole story, each thing said once.
#[test]
fn push_broken_fix_heal_is_said_in_order_without_duplicates() {
    let mut c = Coalescer::default();
    let mut said = Vec::new();
    said.extend(c.pass_started(A, 1));
    said.extend(c.pass_ended(&entry(A, PassResult::Applied), 1, 0));
    said.extend(c.pass_started(A, 1));
    said.extend(c.pass_ended(&entry(A, PassResult::Converged), 1, 1));
    said.extend(c.held(B, HoldReason::InvalidCommit, Some("1 error(s)")));
    said.extend(c.pass_started(A, 1));
    said.extend(c.pass_ended(&entry(A, PassResult::Converged), 1, 2));
    said.extend(c.pass_started(C, 1));
    said.extend(c.pass_ended(&entry(C, PassResult::Applied), 1, 3));
    said.extend(c.pass_started(C, 1));
    said.extend(c.pass_ended(&healed(C, 1), 1, 4));
    said.extend(c.pass_started(C, 1));
    said.extend(c.pass_ended(&entry(C, PassResult::Converged), 1, 5));
    assert_eq!(
        kinds(&said),
        ["started", "applied", "held", "started", "applied", "healed"]
    );
    let statuses: Vec<(String, StatusState)> = said
        .iter()
        .filter_map(|e| commit_status("prod", e))
        .map(|s| (s.commit[..1].to_string(), s.state))
        .collect();
    assert_eq!(
        statuses,
        [
            ("a".into(), StatusState::Pending),
            ("a".into(), StatusState::Success),
            ("b".into(), StatusState::Failure),
            ("c".into(), StatusState::Pending),
            ("c".into(), StatusState::Success),
        ]
    );
}

#[test]
fn a_held_commit_released_and_applied_goes_from_pending_to_success() {
    let mut c = Coalescer::default();
    c.pass_started(A, 3);
    c.pass_ended(&entry(A, PassResult::Applied), 3, 0);
    let mut said = c.held(
        B,
        HoldReason::DeletionGuard,
        Some("would remove 3 of 4 replicas"),
    );
    said.extend(c.pass_started(B, 3));
    said.extend(c.pass_ended(&entry(B, PassResult::Applied), 3, 10));
    let statuses: Vec<CommitStatus> = said
        .iter()
        .filter_map(|e| commit_status("prod", e))
        .collect();
    let states: Vec<StatusState> = statuses.iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        [
            StatusState::Pending,
            StatusState::Pending,
            StatusState::Success
        ]
    );
    assert_eq!(
        statuses[0].description,
        "held (deletion_guard): would remove 3 of 4 replicas"
    );
    assert_eq!(statuses[2].description, "applied: 3/3 hosts");
    assert_eq!(statuses[2].context, "convoy/prod");
}

#[test]
fn commit_status_mapping() {
    let hosts = HostCount { ok: 3, total: 4 };
    let state = |e: Event| commit_status("f", &e).map(|s| s.state);
    assert_eq!(
        state(Event::Started {
            commit: A.into(),
            hosts: 4
        }),
        Some(StatusState::Pending)
    );
    assert_eq!(
        state(Event::Applied {
            commit: A.into(),
            hosts
        }),
        Some(StatusState::Success)
    );
    for e in [
        Event::Failed {
            commit: A.into(),
            reason: "r".into(),
            hosts,
        },
        Event::RolledBack {
            commit: A.into(),
            reason: "r".into(),
            hosts,
        },
    ] {
        assert_eq!(state(e), Some(StatusState::Failure));
    }
    for (reason, expected) in [
        (HoldReason::InvalidCommit, StatusState::Failure),
        (HoldReason::UnsignedCommit, StatusState::Failure),
        (HoldReason::DeletionGuard, StatusState::Pending),
        (HoldReason::SyncWindow, StatusState::Pending),
        (HoldReason::QuarantinedSpec, StatusState::Pending),
    ] {
        let s = commit_status(
            "f",
            &Event::Held {
                commit: A.into(),
                hold_reason: reason,
                reason: "why".into(),
            },
        )
        .unwrap();
        assert_eq!(s.state, expected, "{reason:?}");
        assert!(s
            .description
            .starts_with(&format!("held ({})", reason.code())));
    }
    // Nothing for events about no commit, nor for a commit that is not a full id.
    assert_eq!(state(Event::HostDown { host: "h".into() }), None);
    assert_eq!(
        state(Event::Applied {
            commit: "abc123def456-dirty".into(),
            hosts
        }),
        None
    );
    // A long reason is cut to GitHub's 140 characters.
    let long = commit_status(
        "f",
        &Event::Failed {
            commit: A.into(),
            reason: "x".repeat(500),
            hosts,
        },
    )
    .unwrap();
    assert_eq!(long.description.chars().count(), STATUS_DESCRIPTION_CAP);
}

#[test]
fn masking_keeps_secrets_and_environment_values_out_of_events() {
    let hidden: BTreeSet<String> = ["s3cr3t-value".to_string(), "env-value-42".to_string()].into();
    let mut e = Event::Failed {
        commit: A.into(),
        reason: "start failed: password s3cr3t-value, FOO=env-value-42".into(),
        hosts: HostCount { ok: 0, total: 1 },
    };
    e.mask(&hidden);
    let body = serde_json::to_string(&e).unwrap();
    assert!(!body.contains("s3cr3t-value") && !body.contains("env-value-42"));
    assert!(body.contains("password (secret), FOO=(secret)"));
}

#[test]
fn jobs_are_said_by_their_exit_code() {
    let run = JobRun {
        job: "backup".into(),
        stack: "db".into(),
        host: "h1".into(),
        exit_code: 0,
        duration_ms: 1200,
        commit: A.into(),
    };
    assert_eq!(job_event(run.clone()).kind(), EventKind::JobSucceeded);
    let failed = job_event(JobRun {
        exit_code: 3,
        ..run
    });
    assert_eq!(failed.kind(), EventKind::JobFailed);
    let v = serde_json::to_value(&failed).unwrap();
    assert_eq!(v["event"], "job_failed");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["job"], "backup");
}

#[test]
fn forges_want_commit_events_only() {
    let spec = NotificationSpec {
        kind: NotifyKind::GitHub,
        url: None,
        url_file: None,
        events: Vec::new(),
        secret_file: None,
        token_file: None,
        api_url: None,
    };
    assert!(spec.wants(EventKind::Started) && spec.wants(EventKind::Held));
    assert!(!spec.wants(EventKind::Healed) && !spec.wants(EventKind::HostDown));
    let chat = NotificationSpec {
        kind: NotifyKind::Slack,
        events: vec![EventKind::Failed],
        ..spec
    };
    assert!(chat.wants(EventKind::Failed) && !chat.wants(EventKind::Applied));
    assert_eq!(
        format!("{:?}", SecretText("https://hooks".into())),
        "(secret)"
    );
}

#[test]
fn one_line_flattens_and_caps() {
    assert_eq!(one_line("a\n b\t c", 10), "a b c");
    assert_eq!(one_line("abcdef", 4), "abc…");
}
