//! `x-convoy: {job: ...}` (issue 12): the defaults, every key read, the located error of every
//! bad value (expression, time zone, duration, concurrency, history), `before:` checked
//! against the stack, what a job cannot be beside (replicas, global), the dotted form refused,
//! and a job kept out of the container's spec hash.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;
use crate::model::job::{Concurrency, JobSpec};

const P: &str = "stacks/web/compose.yaml";

fn job_of(compose: &str) -> Option<JobSpec> {
    let f = web(compose);
    let state = ok(&files(&f));
    state.stacks["web"].services["j"].job.clone()
}

#[test]
fn defaults_and_every_key_are_read() {
    let j = job_of(
        "services:\n  j:\n    image: x\n    x-convoy:\n      job: {schedule: \"@every 10s\"}\n",
    )
    .unwrap();
    assert_eq!(
        j,
        JobSpec {
            schedule: Some("@every 10s".into()),
            timezone: "UTC".into(),
            concurrency: Concurrency::Forbid,
            deadline_secs: None,
            history: 5,
            before: vec![],
        }
    );
    // The deadline defaults to the schedule's period.
    assert_eq!(j.deadline_at(0), Some(10));
    let j = job_of("services:\n  j:\n    image: x\n    x-convoy:\n      job:\n        schedule: 0 3 * * *\n        timezone: Europe/Berlin\n        concurrency: replace\n        deadline: 30m\n        history: 2\n").unwrap();
    assert_eq!(j.timezone, "Europe/Berlin");
    assert_eq!(j.concurrency, Concurrency::Replace);
    assert_eq!(j.deadline_secs, Some(1800));
    assert_eq!(j.history, 2);
    // A run-once job gating a service; the service itself has no job.
    let f = web("services:\n  j:\n    image: x\n    x-convoy:\n      job: {before: [web, api, web]}\n  web:\n    image: x\n  api:\n    image: x\n");
    let state = ok(&files(&f));
    let j = state.stacks["web"].services["j"].job.clone().unwrap();
    assert_eq!(j.schedule, None);
    assert_eq!(j.before, vec!["api".to_string(), "web".to_string()]);
    assert_eq!(state.stacks["web"].services["web"].job, None);
    // An empty mapping is a run-once job with the defaults.
    assert_eq!(
        job_of("services:\n  j:\n    image: x\n    x-convoy: {job: {}}\n"),
        Some(JobSpec::default())
    );
}

#[test]
fn a_job_is_out_of_the_spec_hash() {
    let plain = service("services:\n  j:\n    image: x\n");
    let job =
        service("services:\n  j:\n    image: x\n    x-convoy: {job: {schedule: \"@hourly\"}}\n");
    assert!(job.job.is_some());
    assert_eq!(plain.container.hash(), job.container.hash());
}

#[test]
fn bad_job_values_are_located() {
    let e = web_errs("services:\n  j:\n    image: x\n    x-convoy:\n      job:\n        schedule: 61 * * * *\n        timezone: Mars/Olympus\n        concurrency: sometimes\n        deadline: soon\n        history: 0\n        retries: 3\n");
    assert_eq!(
        e,
        vec![
            format!("{P}:6:19: services.j.x-convoy.job.schedule: minute `61` is out of range 0-59"),
            format!("{P}:7:19: services.j.x-convoy.job.timezone: unknown time zone `Mars/Olympus` (an IANA name such as `UTC` or `Europe/Berlin`)"),
            format!("{P}:8:22: services.j.x-convoy.job.concurrency: invalid concurrency `sometimes` (expected forbid, allow or replace)"),
            format!("{P}:9:19: services.j.x-convoy.job.deadline: invalid duration `soon` (expected e.g. `30s`, `1m30s`, `500ms`)"),
            format!("{P}:10:18: services.j.x-convoy.job.history: invalid history 0 (expected 1 to 1000: the finished runs kept, newest first)"),
            format!("{P}:11:9: services.j.x-convoy.job.retries: unknown key"),
        ]
    );
}

#[test]
fn a_job_with_lifecycle_hooks_is_refused_rather_than_run_without_them() {
    let e = web_errs("services:\n  j:\n    image: x\n    post_start:\n      - command: [\"true\"]\n    x-convoy: {job: {schedule: \"@daily\"}}\n");
    assert_eq!(
        e,
        vec![format!("{P}:6:22: services.j.x-convoy.job: a job runs no lifecycle hooks: remove `post_start`, `pre_stop` and `pre_start`, and put that work in the job's command")]
    );
}

#[test]
fn before_and_what_a_job_cannot_be_beside_are_checked() {
    let e = web_errs("services:\n  j:\n    image: x\n    deploy: {replicas: 2}\n    x-convoy:\n      job: {before: [j, k, nope]}\n  k:\n    image: x\n    x-convoy: {job: {schedule: \"@daily\", before: [web]}}\n  web:\n    image: x\n    depends_on: [j]\n  g:\n    image: x\n    deploy: {mode: global}\n    x-convoy: {job: {timezone: UTC}}\n");
    assert_eq!(
        e,
        vec![
            format!("{P}:6:13: services.j.x-convoy.job: a job runs one container per run: remove `replicas` (or `scale`)"),
            format!("{P}:6:22: services.j.x-convoy.job.before[0]: a job cannot run before itself"),
            format!("{P}:6:25: services.j.x-convoy.job.before[1]: `k` is a job: `before` names services whose rollout waits"),
            format!("{P}:6:28: services.j.x-convoy.job.before[2]: unknown service `nope` in this stack"),
            format!("{P}:9:51: services.k.x-convoy.job.before[0]: `before` belongs to a run-once job (no `schedule`): a scheduled job gates no rollout"),
            format!("{P}:12:18: services.web.depends_on[0]: `j` is a job, which has no replica to wait for: list `web` in its `x-convoy.job.before` instead"),
            format!("{P}:16:22: services.g.x-convoy.job: a job runs on one host at a time: remove `deploy.mode: global`"),
            format!("{P}:16:32: services.g.x-convoy.job.timezone: `timezone` without `schedule`: a run-once job has no times to read in a zone; remove it or add a `schedule`"),
        ]
    );
}

#[test]
fn dotted_x_convoy_job_is_refused() {
    let e = web_errs("services:\n  j:\n    image: x\n    x-convoy.job: {schedule: \"@daily\"}\n");
    assert_eq!(
        e,
        vec![format!("{P}:4:5: services.j.x-convoy.job: `x-convoy.job` is one key with a dot in its name, which Compose ignores as an extension: nest it, as `x-convoy: {{job: ...}}`")]
    );
}
