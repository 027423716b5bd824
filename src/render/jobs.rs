//! `convoy jobs`: every job with its schedule, next run and last runs (exit code, duration,
//! host, scheduled time and the last log lines of a failed run), as text or as the versioned
//! JSON document `{"version": 1, "jobs": [...]}` (the same `JobStatus` the daemon's status
//! carries). `jobs_summary` is the short section of `convoy status` (and `status --daemon`):
//! each job's line and its last run, in the same words. Pure: values in, a string out.

use std::fmt::Write;

use serde::Serialize;

use crate::model::job::{JobRun, JobStatus, RunPhase};
use crate::model::plan::JSON_VERSION;

/// The JSON document of `convoy jobs --output json`.
pub fn jobs_json(jobs: &[JobStatus]) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        jobs: &'a [JobStatus],
    }
    serde_json::to_string(&Doc {
        version: JSON_VERSION,
        jobs,
    })
    .expect("jobs serialise")
}

/// The text form.
pub fn jobs_text(jobs: &[JobStatus]) -> String {
    let mut out = String::new();
    if jobs.is_empty() {
        out.push_str("No jobs.\n");
    }
    for j in jobs {
        let _ = writeln!(out, "{}", job_line(j));
        if j.last_runs.is_empty() {
            let _ = writeln!(out, "  no run yet");
        }
        for r in &j.last_runs {
            let _ = writeln!(out, "  {}", run_line(r));
            if r.phase == RunPhase::Failed {
                for l in &r.last_lines {
                    let _ = writeln!(out, "    | {l}");
                }
            }
        }
    }
    out
}

/// A job's line: `web/nightly: `@daily` (UTC), next run 2024-05-02T00:00:00Z`, or `web/migrate:
/// runs once per spec`.
fn job_line(j: &JobStatus) -> String {
    let when = match &j.schedule {
        Some(s) => format!(
            "`{s}` ({}), next run {}",
            j.timezone,
            j.next_run.as_deref().unwrap_or("never")
        ),
        None => "runs once per spec".to_string(),
    };
    format!("{}/{}: {when}", j.stack, j.name)
}

/// The jobs section of `convoy status`: a `jobs` heading, then each job's line and its last
/// run (`last: ` and `run_line`); empty when there is no job.
pub fn jobs_summary(jobs: &[JobStatus]) -> String {
    let mut out = String::new();
    if jobs.is_empty() {
        return out;
    }
    out.push_str(
        "
jobs
",
    );
    for j in jobs {
        let _ = writeln!(out, "  {}", job_line(j));
        match j.last_runs.first() {
            Some(r) => {
                let _ = writeln!(out, "    last: {}", run_line(r));
            }
            None => out.push_str("    no run yet\n"),
        }
    }
    out
}

/// One run: `2024-05-01T03:00:00Z on a: failed, exit code 3, 2s (web-nightly-job-...)`.
pub fn run_line(r: &JobRun) -> String {
    let at = r.scheduled_at.as_deref().unwrap_or("once");
    let what = match (r.phase, r.exit_code) {
        (RunPhase::Running, _) => "running".to_string(),
        (RunPhase::Succeeded, Some(c)) => format!("succeeded, exit code {c}"),
        (RunPhase::Succeeded, None) => "succeeded".to_string(),
        (RunPhase::Failed, Some(c)) => format!("failed, exit code {c}"),
        (RunPhase::Failed, None) => "failed".to_string(),
    };
    let took = r
        .duration_secs
        .map(|d| format!(", {d}s"))
        .unwrap_or_default();
    let manual = if r.manual { ", by hand" } else { "" };
    format!("{at} on {}: {what}{took}{manual} ({})", r.host, r.container)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job::Concurrency;

    #[test]
    fn a_failed_run_shows_its_exit_code_and_lines() {
        let jobs = vec![JobStatus {
            stack: "s".into(),
            name: "nightly".into(),
            schedule: Some("@every 5s".into()),
            timezone: "UTC".into(),
            concurrency: Concurrency::Forbid,
            next_run: Some("2024-01-01T00:00:05Z".into()),
            last_runs: vec![JobRun {
                host: "a".into(),
                container: "s-nightly-job-0".into(),
                scheduled: Some(0),
                scheduled_at: Some("1970-01-01T00:00:00Z".into()),
                phase: RunPhase::Failed,
                exit_code: Some(3),
                started: Some(1),
                finished: Some(3),
                duration_secs: Some(2),
                spec_hash: "h".into(),
                commit: "c".into(),
                manual: false,
                last_lines: vec!["boom".into()],
            }],
        }];
        assert_eq!(
            jobs_text(&jobs),
            "s/nightly: `@every 5s` (UTC), next run 2024-01-01T00:00:05Z\n  1970-01-01T00:00:00Z on a: failed, exit code 3, 2s (s-nightly-job-0)\n    | boom\n"
        );
        assert_eq!(
            jobs_summary(&jobs),
            "\njobs\n  s/nightly: `@every 5s` (UTC), next run 2024-01-01T00:00:05Z\n    last: 1970-01-01T00:00:00Z on a: failed, exit code 3, 2s (s-nightly-job-0)\n"
        );
        assert_eq!(jobs_summary(&[]), "");
        let mut once = jobs[0].clone();
        once.schedule = None;
        once.next_run = None;
        once.last_runs[0].phase = RunPhase::Succeeded;
        once.last_runs[0].exit_code = Some(0);
        once.last_runs[0].scheduled_at = None;
        assert_eq!(
            jobs_summary(&[once.clone()]),
            "\njobs\n  s/nightly: runs once per spec\n    last: once on a: succeeded, exit code 0, 2s (s-nightly-job-0)\n"
        );
        once.last_runs.clear();
        assert!(jobs_summary(&[once]).ends_with("runs once per spec\n    no run yet\n"));
        let v: serde_json::Value = serde_json::from_str(&jobs_json(&jobs)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["jobs"][0]["last_runs"][0]["exit_code"], 3);
        assert_eq!(v["jobs"][0]["last_runs"][0]["phase"], "failed");
    }
}
