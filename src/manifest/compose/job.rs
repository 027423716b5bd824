//! `x-convoy: {job: {schedule, timezone, concurrency, deadline, history, before}}`: a service
//! that runs to completion at its scheduled times, or once per spec without `schedule`
//! (`model::job`). Reads the mapping into a `JobSpec` with a located error for every bad value
//! (an expression or a time zone `model::schedule` refuses, a duration, a concurrency), and
//! runs the checks that need every service of the stack: `before:` names a service of the
//! stack that is not a job, not the job itself, and no service `depends_on` a job.
//!
//! Reads only the nodes handed in; no I/O. It does not decide when a job runs (`core::jobs`).

use std::collections::BTreeMap;

use super::keys::JOB;
use super::{duration_ns, Gathered};
use crate::manifest::typed::Diag;
use crate::manifest::yaml::Node;
use crate::model::job::{Concurrency, JobSpec};
use crate::model::schedule::{parse_timezone, Schedule};
use crate::model::spec::{DeployMode, ServiceSpec};

/// Where a job is written, for the checks across services.
pub(super) struct JobAt<'n> {
    pub node: &'n Node,
    pub path: String,
    /// Each `before:` entry: the service named, its node and path.
    pub before: Vec<(String, &'n Node, String)>,
}

/// `x-convoy.job`: the spec, or `None` after its errors.
pub(super) fn read_job<'n>(
    d: &mut Diag,
    v: &'n Node,
    path: &str,
    at: &mut Option<JobAt<'n>>,
) -> Option<JobSpec> {
    let entries = d.map(v, path)?;
    let errors = d.errors.len();
    let mut job = JobSpec::default();
    let mut schedule_at: Option<(&Node, String)> = None;
    let mut timezone_at: Option<(&Node, String)> = None;
    let mut before = Vec::new();
    for (f, _k, fv, fpath) in d.fields(entries, path, &JOB) {
        match f {
            "schedule" => {
                if let Some(s) = d.string(fv, &fpath) {
                    job.schedule = Some(s);
                    schedule_at = Some((fv, fpath));
                }
            }
            "timezone" => {
                if let Some(s) = d.string(fv, &fpath) {
                    match parse_timezone(&s) {
                        Ok(tz) => {
                            job.timezone = tz.name().to_string();
                            timezone_at = Some((fv, fpath));
                        }
                        Err(e) => d.at(fv, &fpath, e.to_string()),
                    }
                }
            }
            "concurrency" => match d.string(fv, &fpath).as_deref() {
                Some("forbid") => job.concurrency = Concurrency::Forbid,
                Some("allow") => job.concurrency = Concurrency::Allow,
                Some("replace") => job.concurrency = Concurrency::Replace,
                Some(c) => d.at(
                    fv,
                    &fpath,
                    format!("invalid concurrency `{c}` (expected forbid, allow or replace)"),
                ),
                None => {}
            },
            "deadline" => match duration_ns(d, fv, &fpath) {
                Some(ns) if ns < 1_000_000_000 => d.at(
                    fv,
                    &fpath,
                    "a deadline under one second would stop every run at once: expected e.g. \
                     `30m` (the default is the schedule's period)",
                ),
                Some(ns) => job.deadline_secs = Some((ns / 1_000_000_000) as u64),
                None => {}
            },
            "history" => match d.int(fv, &fpath) {
                Some(n) if (1..=1000).contains(&n) => job.history = n as u32,
                Some(n) => d.at(
                    fv,
                    &fpath,
                    format!(
                        "invalid history {n} (expected 1 to 1000: the finished runs kept, \
                         newest first)"
                    ),
                ),
                None => {}
            },
            "before" => {
                for (i, (s, n)) in d
                    .string_list(fv, &fpath)
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    before.push((s, n, format!("{fpath}[{i}]")));
                }
            }
            _ => {}
        }
    }
    if let Some((n, p)) = &schedule_at {
        let text = job.schedule.clone().unwrap_or_default();
        if let Err(e) = Schedule::parse(&text, Some(&job.timezone)) {
            d.at(n, p, e.to_string());
        }
    }
    if let (None, Some((n, p))) = (&schedule_at, &timezone_at) {
        d.at(
            n,
            p,
            "`timezone` without `schedule`: a run-once job has no times to read in a zone; \
             remove it or add a `schedule`",
        );
    }
    if schedule_at.is_some() && !before.is_empty() {
        let (_, n, p) = &before[0];
        d.at(
            n,
            p,
            "`before` belongs to a run-once job (no `schedule`): a scheduled job gates no \
             rollout",
        );
    }
    let mut names: Vec<String> = before.iter().map(|(s, _, _)| s.clone()).collect();
    names.sort();
    names.dedup();
    job.before = names;
    *at = Some(JobAt {
        node: v,
        path: path.to_string(),
        before,
    });
    (d.errors.len() == errors).then_some(job)
}

/// What a job cannot be beside: several replicas, a global service (one host runs one run),
/// lifecycle hooks (the executor runs them around a replica's start and stop, which a run to
/// completion does not have: refused rather than silently skipped).
pub(super) fn check_service(
    d: &mut Diag,
    svc: &ServiceSpec,
    hooks: &crate::model::hooks::Hooks,
    g: &Gathered<'_>,
    at: &Option<JobAt<'_>>,
) {
    let Some(at) = at else { return };
    if !hooks.is_empty() {
        d.at(
            at.node,
            &at.path,
            "a job runs no lifecycle hooks: remove `post_start`, `pre_stop` and `pre_start`, \
             and put that work in the job's command",
        );
    }
    if svc.mode == DeployMode::Global {
        d.at(
            at.node,
            &at.path,
            "a job runs on one host at a time: remove `deploy.mode: global`",
        );
    }
    if g.place.replicas.is_some() || svc.replicas != 1 {
        d.at(
            at.node,
            &at.path,
            "a job runs one container per run: remove `replicas` (or `scale`)",
        );
    }
}

/// The checks across services: `before:` names a service of the stack that is not a job nor
/// the job itself, and no service waits for a job with `depends_on` (a job has no replica
/// to wait for: it gates with `before:`).
pub(super) fn check_stack(
    d: &mut Diag,
    gathered: &BTreeMap<String, Gathered<'_>>,
    jobs: &BTreeMap<String, JobAt<'_>>,
) {
    for (name, job) in jobs {
        for (target, n, p) in &job.before {
            if target == name {
                d.at(n, p, "a job cannot run before itself");
            } else if jobs.contains_key(target) {
                d.at(
                    n,
                    p,
                    format!("`{target}` is a job: `before` names services whose rollout waits"),
                );
            } else if !gathered.contains_key(target) {
                d.at(n, p, format!("unknown service `{target}` in this stack"));
            }
        }
    }
    for (name, g) in gathered {
        for dep in &g.depends {
            if jobs.contains_key(&dep.service) && dep.service != *name {
                d.at(
                    dep.node,
                    &dep.path,
                    format!(
                        "`{}` is a job, which has no replica to wait for: list `{name}` in its \
                         `x-convoy.job.before` instead",
                        dep.service
                    ),
                );
            }
        }
    }
}
