//! The job timing decisions with the clock handed in (due, forbid/allow/replace, a catch-up
//! within and beyond the deadline, never twice for one time across a restart, DST through the
//! schedule), a run-once job's state, history pruning, and the planner's treatment of jobs:
//! not healed, not counted, not "not converged" while waiting, pruned beyond `history`, and a
//! `before:` job holding the services it gates.

use super::*;
use crate::core::pass::{plan_pass, HostMemory};
use crate::core::testkit::{desired, service, stack};
use crate::model::observed::HostSnapshot;
use crate::model::spec::ServiceSpec;

fn job(schedule: Option<&str>, tz: &str) -> JobSpec {
    JobSpec {
        schedule: schedule.map(str::to_string),
        timezone: tz.into(),
        ..Default::default()
    }
}

fn run(scheduled: Option<i64>, running: bool, exit: i64) -> SeenRun {
    SeenRun {
        host: "a".into(),
        name: format!(
            "s-j-job-{}",
            scheduled.map_or("once".into(), |s| s.to_string())
        ),
        id: format!("id{}", scheduled.unwrap_or(0)),
        scheduled,
        spec_hash: "h".into(),
        commit: "c".into(),
        running,
        exit_code: (!running).then_some(exit),
        created: format!("{:012}", scheduled.unwrap_or(0)),
        manual: false,
        grace_secs: None,
    }
}

#[test]
fn a_scheduled_time_is_due_once_and_only_within_its_deadline() {
    let j = job(Some("@every 10s"), "UTC");
    // At 105 the last time is 100: due, with nothing running.
    assert_eq!(
        decide(&j, &[], 105),
        Decision::Run {
            scheduled: 100,
            stop: vec![]
        }
    );
    // Once a container records 100, it never runs again for 100: this is also what a
    // restarted daemon finds, since it reads the same labels.
    let ran = vec![run(Some(100), false, 0)];
    assert_eq!(decide(&j, &ran, 105), Decision::Wait);
    assert_eq!(decide(&j, &ran, 109), Decision::Wait);
    // The next time is due at 110.
    assert_eq!(next_due(&j, 105), Some(110));
    assert!(matches!(
        decide(&j, &ran, 110),
        Decision::Run { scheduled: 110, .. }
    ));
    // Down from 95 to 135: one catch-up run, for the last time (130), none for 110 or 120.
    assert!(matches!(
        decide(&j, &ran, 135),
        Decision::Run { scheduled: 130, .. }
    ));
    // A default deadline is the period: a time more than one period late is not caught up.
    let j = job(Some("0 3 * * *"), "UTC");
    let day = 86_400;
    let three = 3 * 3600;
    assert!(
        matches!(decide(&j, &[], day + three + 600), Decision::Run { scheduled, .. } if scheduled == day + three)
    );
    let mut late = j.clone();
    late.deadline_secs = Some(300);
    assert_eq!(decide(&late, &[], day + three + 600), Decision::Wait);
    assert!(matches!(
        decide(&late, &[], day + three + 299),
        Decision::Run { .. }
    ));
}

#[test]
fn concurrency_forbid_allow_and_replace() {
    let mut j = job(Some("@every 10s"), "UTC");
    let going = vec![run(Some(90), true, 0)];
    assert_eq!(
        decide(&j, &going, 100),
        Decision::Skip {
            scheduled: 100,
            running: "s-j-job-90".into()
        }
    );
    j.concurrency = Concurrency::Allow;
    assert_eq!(
        decide(&j, &going, 100),
        Decision::Run {
            scheduled: 100,
            stop: vec![]
        }
    );
    j.concurrency = Concurrency::Replace;
    assert_eq!(
        decide(&j, &going, 100),
        Decision::Run {
            scheduled: 100,
            stop: going.clone()
        }
    );
}

#[test]
fn a_manual_run_does_not_stand_for_a_scheduled_time() {
    let j = job(Some("@every 10s"), "UTC");
    let mut manual = run(Some(100), false, 0);
    manual.manual = true;
    assert!(matches!(
        decide(&j, &[manual], 101),
        Decision::Run { scheduled: 100, .. }
    ));
}

#[test]
fn dst_follows_the_schedule_module_a_skipped_time_runs_once() {
    // 2024-03-31: Berlin jumps from 02:00 to 03:00 (01:00 UTC). `30 2 * * *` runs once, at
    // the first instant after the jump (01:00 UTC), and is then recorded.
    let j = job(Some("30 2 * * *"), "Europe/Berlin");
    let jump = 1_711_846_800; // 2024-03-31T01:00:00Z
    assert_eq!(next_due(&j, jump - 3600), Some(jump));
    let Decision::Run { scheduled, .. } = decide(&j, &[], jump + 5) else {
        panic!("due after the jump");
    };
    assert_eq!(scheduled, jump);
    let ran = vec![run(Some(jump), false, 0)];
    for t in [jump + 5, jump + 1800, jump + 3600] {
        assert_eq!(decide(&j, &ran, t), Decision::Wait, "at {t}");
    }
    // 2024-10-27: 02:30 happens twice (falls back at 01:00 UTC); it runs at the first only.
    let first = 1_729_989_000; // 2024-10-27T00:30:00Z = 02:30 CEST
    assert_eq!(next_due(&j, first - 60), Some(first));
    let ran = vec![run(Some(first), false, 0)];
    assert_eq!(decide(&j, &ran, first + 3600 + 5), Decision::Wait);
}

#[test]
fn a_run_once_job_runs_per_spec_and_history_keeps_the_newest() {
    let mut runs = vec![run(None, false, 3)];
    assert_eq!(once_state("other", &runs), OnceState::Due);
    assert_eq!(once_state("h", &runs), OnceState::Failed { exit_code: 3 });
    runs.push(run(None, true, 0));
    assert_eq!(once_state("h", &runs), OnceState::Running);
    assert_eq!(
        once_state("h", &[run(None, false, 0)]),
        OnceState::Succeeded
    );

    let mut many: Vec<SeenRun> = (1..=8).map(|i| run(Some(i * 10), false, 0)).collect();
    many.push(run(Some(90), true, 0));
    sort_newest_first(&mut many);
    let gone: Vec<i64> = beyond_history(&many, 5)
        .iter()
        .filter_map(|r| r.scheduled)
        .collect();
    // The running one is not counted; the 5 newest finished stay.
    assert_eq!(gone, vec![30, 20, 10]);
}

fn job_service(name: &str, j: JobSpec) -> ServiceSpec {
    let mut s = service(name, 1);
    s.job = Some(j);
    s
}

/// A job container of `svc` on host `a`.
fn job_container(svc: &ServiceSpec, label: &str, state: RunState, exit: i64) -> ObservedContainer {
    let name = crate::model::job::job_container_name("s", &svc.name, label);
    let mut actual = svc.container.clone();
    actual.labels.insert(LABEL_JOB.into(), label.into());
    ObservedContainer {
        id: format!("id-{name}"),
        name,
        stack: "s".into(),
        service: svc.name.clone(),
        slot: "job".into(),
        spec_hash: svc.container.hash(),
        commit: "c1".into(),
        created: label.into(),
        image_id: String::new(),
        state,
        exit_code: exit,
        health: None,
        restart_count: 0,
        actual,
        image_defaults: Default::default(),
    }
}

fn with(observed: &mut ObservedState, cs: Vec<ObservedContainer>) {
    let Some(ObservedHost::Reachable(snap)) = observed.hosts.get_mut("a") else {
        panic!("host a")
    };
    for c in cs {
        snap.containers.insert(c.name.clone(), c);
    }
}

/// The observation after `d` converged (jobs aside), with `extra` job containers on `a`.
fn converged(d: &DesiredState, extra: Vec<ObservedContainer>) -> ObservedState {
    let empty = crate::core::testkit::empty_observed(d);
    let first = plan_pass(d, &empty, &HostMemory::default(), "c1");
    let mut o = crate::core::plan::assume_converged(d, &first.placement, "c1");
    if !o.hosts.contains_key("a") {
        o.hosts
            .insert("a".into(), ObservedHost::Reachable(HostSnapshot::default()));
    }
    with(&mut o, extra);
    o
}

#[test]
fn scheduled_jobs_are_not_placed_healed_or_counted_and_keep_their_history() {
    let nightly = job_service("nightly", job(Some("@every 5s"), "UTC"));
    let d = desired(
        &["a"],
        vec![stack("s", vec![service("web", 1), nightly.clone()])],
    );
    // Nothing ran yet: the job is waiting for its time; nothing about it is planned.
    let empty = crate::core::testkit::empty_observed(&d);
    let p = plan_pass(&d, &empty, &HostMemory::default(), "c1");
    assert!(p.placement.replicas.keys().all(|k| k.service == "web"));
    assert!(p
        .plan
        .steps
        .iter()
        .all(|s| !s.action.line().contains("nightly")));
    assert!(p.plan.jobs.is_empty());
    // Converged with eight finished runs (one failed) and one running: the three oldest
    // finished go, the running one and its exited fellows are neither healed nor started.
    let mut runs: Vec<ObservedContainer> = (1..=8)
        .map(|i| {
            job_container(
                &nightly,
                &(i * 5).to_string(),
                RunState::Exited,
                i64::from(i == 4),
            )
        })
        .collect();
    runs.push(job_container(&nightly, "45", RunState::Running, 0));
    let o = converged(&d, runs);
    let p = plan_pass(&d, &o, &HostMemory::default(), "c1");
    let removed: Vec<String> = p
        .plan
        .steps
        .iter()
        .map(|s| match &s.action {
            Action::Remove { name, reason, .. } => {
                assert_eq!(*reason, Reason::JobHistory { keep: 5 });
                name.clone()
            }
            other => panic!("only history is pruned: {other:?}"),
        })
        .collect();
    assert_eq!(
        removed,
        vec!["s-nightly-job-15", "s-nightly-job-10", "s-nightly-job-5"]
    );
    assert!(p.plan.pending.is_empty());
    // Once pruned, the fleet is converged though the job waits for its next time.
    let kept: Vec<ObservedContainer> = (4..=8)
        .map(|i| job_container(&nightly, &(i * 5).to_string(), RunState::Exited, 0))
        .collect();
    let o = converged(&d, kept);
    let p = plan_pass(&d, &o, &HostMemory::default(), "c1");
    assert!(p.plan.is_converged(), "{:?}", p.plan);
}

#[test]
fn a_before_job_holds_its_services_until_it_succeeds() {
    let mut once = job(None, "UTC");
    once.before = vec!["web".into()];
    let migrate = job_service("migrate", once);
    let d = desired(
        &["a"],
        vec![stack(
            "s",
            vec![service("web", 1), service("other", 1), migrate.clone()],
        )],
    );
    let empty = crate::core::testkit::empty_observed(&d);
    let p = plan_pass(&d, &empty, &HostMemory::default(), "c1");
    assert_eq!(p.plan.jobs.len(), 1);
    assert_eq!(p.plan.jobs[0].service, "migrate");
    assert_eq!(p.plan.jobs[0].spec_hash, migrate.container.hash());
    let created: Vec<String> = p.plan.steps.iter().map(|s| s.action.line()).collect();
    assert!(
        created.iter().any(|l| l.contains("s-other-1")),
        "{created:?}"
    );
    assert!(
        !created.iter().any(|l| l.contains("s-web-1")),
        "{created:?}"
    );
    assert_eq!(p.plan.pending.len(), 1);
    assert!(p.plan.pending[0]
        .reason
        .contains("waits for job `s/migrate`"));
    assert!(!p.plan.is_converged());

    // It succeeded: `web` goes ahead, the job is not due again.
    let mut o = crate::core::testkit::empty_observed(&d);
    with(
        &mut o,
        vec![job_container(&migrate, "once", RunState::Exited, 0)],
    );
    let p = plan_pass(&d, &o, &HostMemory::default(), "c1");
    assert!(p.plan.jobs.is_empty());
    assert!(p.plan.pending.is_empty());
    assert!(p
        .plan
        .steps
        .iter()
        .any(|s| s.action.line().contains("s-web-1")));

    // It failed: `web` stays held, reported, and the job does not run again by itself.
    let mut o = crate::core::testkit::empty_observed(&d);
    with(
        &mut o,
        vec![job_container(&migrate, "once", RunState::Exited, 2)],
    );
    let p = plan_pass(&d, &o, &HostMemory::default(), "c1");
    assert!(p.plan.jobs.is_empty());
    assert!(!p
        .plan
        .steps
        .iter()
        .any(|s| s.action.line().contains("s-web-1")));
    assert!(
        p.plan.pending[0].reason.contains("failed (exit code 2)"),
        "{:?}",
        p.plan.pending
    );

    // A gated service already at its spec is not held (nothing of it to roll out).
    let plain = desired(
        &["a"],
        vec![stack("s", vec![service("web", 1), service("other", 1)])],
    );
    let o = converged(
        &plain,
        vec![job_container(&migrate, "once", RunState::Exited, 2)],
    );
    let p = plan_pass(&d, &o, &HostMemory::default(), "c1");
    assert!(p.plan.is_converged(), "{:?}", p.plan);
}

#[test]
fn a_removed_jobs_containers_go_with_it() {
    let nightly = job_service("nightly", job(Some("@hourly"), "UTC"));
    let d = desired(&["a"], vec![stack("s", vec![service("web", 1)])]);
    let o = converged(
        &d,
        vec![job_container(&nightly, "3600", RunState::Exited, 0)],
    );
    let p = plan_pass(&d, &o, &HostMemory::default(), "c1");
    assert_eq!(p.plan.steps.len(), 1);
    assert!(matches!(
        &p.plan.steps[0].action,
        Action::Remove { reason: Reason::ServiceRemoved { .. }, name, .. } if name == "s-nightly-job-3600"
    ));
}

#[test]
fn job_names_resolve_by_service_or_stack_and_service() {
    let d = desired(
        &["a"],
        vec![stack(
            "s",
            vec![job_service("nightly", job(Some("@daily"), "UTC"))],
        )],
    );
    assert_eq!(find_job(&d, "nightly").unwrap().1, "nightly");
    assert_eq!(find_job(&d, "s/nightly").unwrap().0, "s");
    assert_eq!(
        find_job(&d, "x").unwrap_err(),
        "no job `x` (jobs: s/nightly)"
    );
}

/// A running replica `s-<service>-<slot>` of `svc` on `host`.
fn replica_on(o: &mut ObservedState, host: &str, svc: &ServiceSpec, slot: &str) {
    let name = crate::model::spec::container_name("s", &svc.name, slot);
    let Some(ObservedHost::Reachable(snap)) = o.hosts.get_mut(host) else {
        panic!("host {host}")
    };
    snap.containers.insert(
        name.clone(),
        ObservedContainer {
            id: format!("id-{name}"),
            name,
            stack: "s".into(),
            service: svc.name.clone(),
            slot: slot.into(),
            spec_hash: svc.container.hash(),
            commit: "c1".into(),
            created: String::new(),
            image_id: String::new(),
            state: RunState::Running,
            exit_code: 0,
            health: None,
            restart_count: 0,
            actual: svc.container.clone(),
            image_defaults: Default::default(),
        },
    );
}

#[test]
fn a_job_runs_beside_its_sources_and_links_to_the_replicas_on_its_host() {
    use crate::model::share::{Link, ShareSource, VolumesFrom};
    let db = service("db", 1);
    let web = service("web", 2);
    let mut backup = job_service("backup", job(Some("@daily"), "UTC"));
    backup.container.network_mode = Some("service:db".into());
    backup.container.share.volumes_from = vec![VolumesFrom {
        source: ShareSource::Service("db".into()),
        read_only: true,
    }];
    backup.container.share.links = vec![Link {
        service: "web".into(),
        alias: "front".into(),
    }];
    let d = desired(
        &["a", "b"],
        vec![stack("s", vec![db.clone(), web.clone(), backup])],
    );
    let mut o = crate::core::testkit::empty_observed(&d);
    // Nothing of `db` runs: the job has nowhere to go, and says why.
    let err = choose_host(&d, &o, "s", "backup").unwrap_err();
    assert!(err.contains("beside `db`"), "{err}");
    replica_on(&mut o, "b", &db, "1");
    replica_on(&mut o, "a", &web, "1");
    replica_on(&mut o, "b", &web, "2");
    // Whatever the scheduler would pick, the job goes where `db` slot 1 runs.
    assert_eq!(choose_host(&d, &o, "s", "backup"), Ok("b".to_string()));
    let mut r = job_replica(&d, "s", "backup", Trigger::Scheduled(86_400), "c2").unwrap();
    let hash = r.spec_hash.clone();
    job_on_host(&d, &o, "b", &mut r);
    assert_eq!(r.spec.network_mode.as_deref(), Some("container:s-db-1"));
    assert_eq!(
        r.spec.share.engine_volumes_from,
        vec!["s-db-1:ro".to_string()]
    );
    // The link reaches the replica of `web` on this host only, as a replica's does.
    assert_eq!(r.spec.share.engine_links, vec!["s-web-2:front".to_string()]);
    // The run keeps the service's hash and its record labels.
    assert_eq!(r.spec_hash, hash);
    assert_eq!(r.labels.get(LABEL_JOB).map(String::as_str), Some("86400"));
    // A stopped replica is no link target (the engine refuses one).
    if let Some(ObservedHost::Reachable(snap)) = o.hosts.get_mut("b") {
        snap.containers.get_mut("s-web-2").unwrap().state = RunState::Exited;
    }
    let mut r = job_replica(&d, "s", "backup", Trigger::Scheduled(86_400), "c2").unwrap();
    job_on_host(&d, &o, "b", &mut r);
    assert!(r.spec.share.engine_links.is_empty());
}

#[test]
fn a_jobs_files_are_binds_of_its_hosts_copies_and_a_current_secret_is_reused() {
    use crate::model::files::{FileKind, FileMount, FilesSeen};
    let mut j = job_service("report", job(Some("@hourly"), "UTC"));
    let file = |kind, name: &str, address: &str, target: &str| FileMount {
        kind,
        name: name.into(),
        address: address.into(),
        target: target.into(),
        read_only: true,
        uid: None,
        gid: None,
        mode: None,
    };
    j.container.files = vec![
        file(FileKind::Config, "app", "c0ffee", "/etc/app.conf"),
        file(FileKind::Secret, "token", "", "/run/secrets/token"),
        file(FileKind::Bind, "./data", "da7a", "/data"),
    ];
    let d = desired(&["a"], vec![stack("s", vec![j.clone()])]);
    let mut o = crate::core::testkit::empty_observed(&d);
    let mut r = job_replica(&d, "s", "report", Trigger::Scheduled(3600), "c1").unwrap();
    job_on_host(&d, &o, "a", &mut r);
    let source = |r: &crate::model::plan::Replica, target: &str| {
        r.spec
            .mounts
            .iter()
            .find(|m| m.target == target)
            .map(|m| m.source.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        source(&r, "/etc/app.conf"),
        "/var/lib/convoy/files/t/c0ffee/f"
    );
    assert_eq!(source(&r, "/data"), "/var/lib/convoy/files/t/da7a/f");
    // No earlier run: a new secret generation, written by the executor before the run.
    assert_eq!(
        source(&r, "/run/secrets/token"),
        "/run/convoy/secrets/t/s/token.pending"
    );
    // An earlier run on the host binds a generation that holds the desired value: reused.
    let mut earlier = job_container(&j, "0", RunState::Exited, 0);
    earlier.actual = r.spec.clone();
    earlier.actual.files.clear();
    for m in &mut earlier.actual.mounts {
        if m.target == "/run/secrets/token" {
            m.source = "/run/convoy/secrets/t/s/token.0123".into();
        }
    }
    earlier.actual.labels.insert(LABEL_JOB.into(), "0".into());
    with(&mut o, vec![earlier]);
    let seen = FilesSeen {
        present: ["c0ffee".to_string()].into(),
        secrets_current: ["/run/convoy/secrets/t/s/token.0123".to_string()].into(),
    };
    if let Some(ObservedHost::Reachable(snap)) = o.hosts.get_mut("a") {
        snap.files = Some(Box::new(seen));
    }
    let mut r = job_replica(&d, "s", "report", Trigger::Scheduled(7200), "c1").unwrap();
    job_on_host(&d, &o, "a", &mut r);
    assert_eq!(
        source(&r, "/run/secrets/token"),
        "/run/convoy/secrets/t/s/token.0123"
    );
    // One file mount each, no more.
    assert_eq!(r.spec.mounts.len(), 3);
}

#[test]
fn only_a_job_that_joins_other_containers_or_binds_a_secret_waits_for_a_pass() {
    use crate::model::files::{FileKind, FileMount};
    use crate::model::share::Link;
    let plain = job_service("plain", job(Some("@hourly"), "UTC"));
    let mut beside = job_service("beside", job(Some("@hourly"), "UTC"));
    beside.container.network_mode = Some("service:web".into());
    let mut linked = job_service("linked", job(Some("@hourly"), "UTC"));
    linked.container.share.links = vec![Link {
        service: "web".into(),
        alias: "web".into(),
    }];
    let file = |kind| FileMount {
        kind,
        name: "x".into(),
        address: "aa".into(),
        target: "/x".into(),
        read_only: true,
        uid: None,
        gid: None,
        mode: None,
    };
    let mut secret = job_service("secret", job(Some("@hourly"), "UTC"));
    secret.container.files = vec![file(FileKind::Secret)];
    let mut config = job_service("config", job(Some("@hourly"), "UTC"));
    config.container.files = vec![file(FileKind::Config), file(FileKind::Bind)];
    let d = desired(
        &["a"],
        vec![stack(
            "s",
            vec![service("web", 1), plain, beside, linked, secret, config],
        )],
    );
    let waits = |n: &str| waits_for_pass(&d, "s", n);
    assert!(!waits("plain"));
    // Content-addressed files are never collected while the commit has them.
    assert!(!waits("config"));
    assert!(waits("beside"));
    assert!(waits("linked"));
    assert!(waits("secret"));
    assert!(!waits("nope"));
}
