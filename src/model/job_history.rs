//! A job's run as a deploy history entry (`entry_from_run`): the daemon records each run of a
//! scheduled or manual job with its exit code, duration, host and last lines, so `convoy
//! history` and `GET /api/v1/history` show runs beside passes.
//!
//! Pure: values in, an entry out; storing it is `daemon::history`'s.

use crate::model::job::{JobRun, JobRunEntry};

/// The history entry of one run of `stack/service` at `commit`: `applied` when it exited 0,
/// else `failed` with why (`error`: it could not run) and its last lines. `at` and `ended` are
/// Unix seconds.
#[allow(clippy::too_many_arguments)]
pub fn entry_from_run(
    fleet: &str,
    stack: &str,
    service: &str,
    run: &JobRun,
    error: Option<&str>,
    started: f64,
    ended: f64,
) -> crate::model::history::HistoryEntry {
    use crate::model::history::{cap, Failure, HistoryEntry, LINE_CAP};
    use crate::model::outcome::{PassReason, PassResult};
    let ok = error.is_none() && run.exit_code == Some(0);
    let why = match (error, run.exit_code) {
        (Some(e), _) => e.to_string(),
        (None, Some(c)) => format!("exit code {c}"),
        (None, None) => "did not end".to_string(),
    };
    let mut failures = Vec::new();
    if !ok {
        let lines = if run.last_lines.is_empty() {
            String::new()
        } else {
            format!("; last lines: {}", run.last_lines.join(" | "))
        };
        failures.push(Failure {
            host: run.host.clone(),
            stack: stack.to_string(),
            service: service.to_string(),
            step: format!("* job {stack}/{service}"),
            error: cap(&format!("{why}{lines}"), LINE_CAP),
        });
    }
    HistoryEntry {
        id: 0,
        fleet: fleet.to_string(),
        commit: run.commit.clone(),
        author: None,
        message: None,
        trigger: PassReason::Job {
            job: format!("{stack}/{service}"),
            scheduled: if run.manual { None } else { run.scheduled },
        },
        started_at: crate::model::time::rfc3339(started),
        ended_at: crate::model::time::rfc3339(ended),
        result: if ok {
            PassResult::Applied
        } else {
            PassResult::Failed
        },
        converged: ok,
        detail: (!ok).then(|| cap(&format!("job {stack}/{service}: {why}"), LINE_CAP)),
        errors: Vec::new(),
        changes: Vec::new(),
        heals: Default::default(),
        failures,
        rollouts: Vec::new(),
        unreachable: Default::default(),
        jobs: vec![JobRunEntry {
            stack: stack.to_string(),
            service: service.to_string(),
            run: run.clone(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::job::RunPhase;

    #[test]
    fn a_failed_run_is_a_failed_history_entry_with_its_lines() {
        let run = JobRun {
            host: "a".into(),
            container: "s-n-job-60".into(),
            scheduled: Some(60),
            scheduled_at: Some("1970-01-01T00:01:00Z".into()),
            phase: RunPhase::Failed,
            exit_code: Some(4),
            started: Some(61),
            finished: Some(63),
            duration_secs: Some(2),
            spec_hash: "h".into(),
            commit: "c1".into(),
            manual: false,
            last_lines: vec!["disk full".into()],
        };
        let e = entry_from_run("f", "s", "n", &run, None, 61.0, 63.0);
        assert_eq!(e.result, crate::model::outcome::PassResult::Failed);
        assert_eq!(e.commit, "c1");
        assert_eq!(e.failures[0].error, "exit code 4; last lines: disk full");
        assert_eq!(e.jobs[0].run, run);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v["trigger"],
            serde_json::json!({"kind": "job", "job": "s/n", "scheduled": 60})
        );
        assert_eq!(v["jobs"][0]["exit_code"], 4);
        let mut ok = run.clone();
        ok.exit_code = Some(0);
        let e = entry_from_run("f", "s", "n", &ok, None, 61.0, 63.0);
        assert_eq!(e.result, crate::model::outcome::PassResult::Applied);
        assert!(e.failures.is_empty());
    }
}
