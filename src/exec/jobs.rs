//! Runs one job: the host the scheduler chooses (`core::jobs::choose_host`), its container
//! made as a replica's on that host is (`core::jobs::job_replica` and `job_on_host`: shared
//! namespaces, links, file mounts), given what a replica's create step gets first through the
//! same code (its files and secrets shipped by `exec::files::prepare_replicas`, its image pulled,
//! pushed or built by the executor's `ensure_image`, its networks), waited for with the job's
//! deadline, and its exit code, duration and last log lines (masked) as a `JobOutcome`. Also
//! stops runs (`concurrency: replace`) and removes the finished runs beyond `history`.
//!
//! When a job runs is not decided here (`core::jobs`, the daemon's timer, `reconcile`), and
//! nothing here prints. `job_finished` is the one point where a finished run is announced.

use std::collections::BTreeMap;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::core::jobs::{beyond_history, choose_host, job_on_host, job_replica, SeenRun, Trigger};
use crate::infra::docker::Engine;
use crate::model::job::{JobRun, RunPhase};
use crate::model::observed::ObservedState;
use crate::model::spec::{mask_secrets, DesiredState};

/// Log lines kept of a run.
pub const LAST_LINES: usize = 20;

/// How one run of a job went.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub stack: String,
    pub service: String,
    pub trigger: Trigger,
    pub run: JobRun,
    /// Why it could not run or be waited for (no host, the image, the engine); masked.
    pub error: Option<String>,
    pub timed_out: bool,
}

impl JobOutcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.run.exit_code == Some(0)
    }

    /// One line for logs and reports: `job web/migrate on a: exit code 0 in 3s`.
    pub fn line(&self) -> String {
        let what = match (&self.error, self.run.exit_code) {
            (Some(e), _) => format!("could not run: {e}"),
            (None, _) if self.timed_out => "killed at its deadline".to_string(),
            (None, Some(c)) => format!("exit code {c}"),
            (None, None) => "left running".to_string(),
        };
        let took = self
            .run
            .duration_secs
            .map(|d| format!(" in {d}s"))
            .unwrap_or_default();
        let host = if self.run.host.is_empty() {
            String::new()
        } else {
            format!(" on {}", self.run.host)
        };
        format!("job {}/{}{host}: {what}{took}", self.stack, self.service)
    }
}

impl JobOutcome {
    /// This run as a deploy history entry (`model::job_history::entry_from_run`), the one form
    /// of every run: scheduled, by hand, or a pass's run-once job. `now` (Unix seconds) stands
    /// in for an end or a start the engine did not report.
    pub fn history_entry(&self, fleet: &str, now: f64) -> crate::model::history::HistoryEntry {
        let ended = self.run.finished.map_or(now, |f| f as f64);
        let started = self.run.started.map_or(ended, |s| s as f64);
        crate::model::job_history::entry_from_run(
            fleet,
            &self.stack,
            &self.service,
            &self.run,
            self.error.as_deref(),
            started,
            ended,
        )
    }
}

/// Runs `stack/service` once for `trigger` and waits for it (see the module).
#[allow(clippy::too_many_arguments)]
pub async fn run_job(
    engines: &BTreeMap<String, Engine>,
    images: &super::ImageSource,
    shells: &BTreeMap<String, crate::infra::files::HostShell>,
    desired: &DesiredState,
    observed: &ObservedState,
    network_ids: &BTreeMap<String, BTreeMap<String, String>>,
    stack: &str,
    service: &str,
    trigger: Trigger,
    commit: &str,
    cancel: &CancellationToken,
) -> JobOutcome {
    let mut out = JobOutcome {
        stack: stack.into(),
        service: service.into(),
        trigger,
        run: JobRun {
            host: String::new(),
            container: String::new(),
            scheduled: match trigger {
                Trigger::Scheduled(t) | Trigger::Manual(t) => Some(t),
                Trigger::Once => None,
            },
            scheduled_at: match trigger {
                Trigger::Scheduled(t) | Trigger::Manual(t) => {
                    Some(crate::model::time::rfc3339(t as f64))
                }
                Trigger::Once => None,
            },
            phase: RunPhase::Failed,
            exit_code: None,
            started: None,
            finished: None,
            duration_secs: None,
            spec_hash: String::new(),
            commit: commit.into(),
            manual: matches!(trigger, Trigger::Manual(_)),
            last_lines: Vec::new(),
        },
        error: None,
        timed_out: false,
    };
    let secrets = &desired.secret_values;
    let Some(mut replica) = job_replica(desired, stack, service, trigger, commit) else {
        out.error = Some(format!("no job `{stack}/{service}` in the desired state"));
        return out;
    };
    out.run.container = replica.name.clone();
    out.run.spec_hash = replica.spec_hash.clone();
    let host = match choose_host(desired, observed, stack, service) {
        Ok(h) => h,
        Err(why) => {
            out.error = Some(format!("no host to run it: {why}"));
            return out;
        }
    };
    out.run.host = host.clone();
    let Some(engine) = engines.get(&host) else {
        out.error = Some(format!("host `{host}` is not connected"));
        return out;
    };
    job_on_host(desired, observed, &host, &mut replica);
    let deadline = crate::core::jobs::deadline_of(desired, stack, service, trigger);
    let span = tracing::info_span!("job", stack, service, host = %host, run = %replica.name);
    let result = async {
        // What a replica's create step has before it: its files on the host, its image.
        let failed = super::files::prepare_replicas(
            vec![(host.as_str(), &mut replica)],
            desired,
            observed,
            shells,
        )
        .await;
        if !failed.is_empty() {
            return Err(failed.join("; "));
        }
        super::ensure_image_alone(engines, &host, &replica, images, cancel).await?;
        let mut ids = network_ids.get(&host).cloned().unwrap_or_default();
        ensure_networks(engine, desired, stack, &replica.spec, &mut ids).await?;
        tracing::info!("job run starts");
        engine
            .run_job(&replica, &ids, deadline, cancel)
            .await
            .map_err(|e| e.to_string())
    }
    .instrument(span)
    .await;
    match result {
        Ok(exit) => {
            out.timed_out = exit.timed_out;
            out.run.exit_code = exit.exit_code;
            let (started, finished) = engine.run_times(&exit.id).await;
            out.run.started = started;
            out.run.finished = finished;
            out.run.duration_secs = started.zip(finished).map(|(s, f)| (f - s).max(0));
            out.run.phase = match (exit.abandoned, exit.exit_code) {
                (true, _) => RunPhase::Running,
                (false, Some(0)) if !exit.timed_out => RunPhase::Succeeded,
                _ => RunPhase::Failed,
            };
            out.run.last_lines = engine
                .recent_logs(&replica.name, LAST_LINES)
                .await
                .into_iter()
                .map(|l| mask_secrets(&l, secrets))
                .collect();
        }
        Err(e) => out.error = Some(mask_secrets(&e, secrets)),
    }
    job_finished(&out);
    out
}

/// Creates on the engine the stack's networks the job's spec names and the host lacks.
async fn ensure_networks(
    engine: &Engine,
    desired: &DesiredState,
    stack: &str,
    spec: &crate::model::spec::ContainerSpec,
    ids: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    let Some(st) = desired.stacks.get(stack) else {
        return Ok(());
    };
    for name in spec.networks.keys() {
        if ids.contains_key(name) {
            continue;
        }
        let Some(net) = st.networks.values().find(|n| &n.engine_name == name) else {
            continue;
        };
        if net.external {
            continue;
        }
        let id = engine
            .create_network(&desired.fleet, stack, net)
            .await
            .map_err(|e| e.to_string())?;
        ids.insert(name.clone(), id);
    }
    Ok(())
}

/// The one point where a finished run is logged; the daemon and `apply` tell the notification
/// endpoints from the outcome this module returns (`daemon::notifications`).
pub fn job_finished(outcome: &JobOutcome) {
    if outcome.succeeded() {
        tracing::info!(job = %format!("{}/{}", outcome.stack, outcome.service), exit_code = 0, "{}", outcome.line());
    } else {
        tracing::warn!(job = %format!("{}/{}", outcome.stack, outcome.service), exit_code = ?outcome.run.exit_code, "{}", outcome.line());
    }
}

/// Stops (and keeps, as records) the runs `concurrency: replace` ends.
pub async fn stop_runs(engines: &BTreeMap<String, Engine>, runs: &[SeenRun]) {
    for r in runs {
        if let Some(e) = engines.get(&r.host) {
            if let Err(err) = e.stop(&r.id, &r.name, r.grace_secs).await {
                tracing::warn!(container = %r.name, error = %err, "could not stop a job run");
            }
        }
    }
}

/// Removes the finished runs of `stack/service` beyond its `history`, from `observed`.
pub async fn prune(
    engines: &BTreeMap<String, Engine>,
    desired: &DesiredState,
    observed: &ObservedState,
    stack: &str,
    service: &str,
) {
    let Some(job) = desired
        .stacks
        .get(stack)
        .and_then(|s| s.services.get(service))
        .and_then(|s| s.job.as_ref())
    else {
        return;
    };
    let all = crate::core::jobs::runs(observed);
    let Some(runs) = all.get(&(stack.to_string(), service.to_string())) else {
        return;
    };
    for r in beyond_history(runs, job.history) {
        if let Some(e) = engines.get(&r.host) {
            if let Err(err) = e.remove(&r.id, &r.name, Some(0)).await {
                tracing::warn!(container = %r.name, error = %err, "could not remove an old job run");
            }
        }
    }
}

/// The runs of every job seen in `observed`, with their times and (masked) last lines, newest
/// first: what `convoy jobs` and the daemon's status show.
pub async fn read_runs(
    engines: &BTreeMap<String, Engine>,
    observed: &ObservedState,
    secrets: &std::collections::BTreeSet<String>,
) -> BTreeMap<(String, String), Vec<JobRun>> {
    let seen = crate::core::jobs::runs(observed);
    let mut out = BTreeMap::new();
    for (key, runs) in seen {
        let mut list = Vec::new();
        for r in &runs {
            let Some(e) = engines.get(&r.host) else {
                list.push(crate::core::jobs::job_run(r, None, None, Vec::new()));
                continue;
            };
            let (started, finished) = e.run_times(&r.id).await;
            let lines = e
                .recent_logs(&r.name, LAST_LINES)
                .await
                .into_iter()
                .map(|l| mask_secrets(&l, secrets))
                .collect();
            list.push(crate::core::jobs::job_run(r, started, finished, lines));
        }
        out.insert(key, list);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::{PassReason, PassResult};

    fn outcome(trigger: Trigger, exit_code: Option<i64>, error: Option<&str>) -> JobOutcome {
        JobOutcome {
            stack: "s".into(),
            service: "migrate".into(),
            trigger,
            run: JobRun {
                host: "a".into(),
                container: "s-migrate-job-once-0123".into(),
                scheduled: None,
                scheduled_at: None,
                phase: RunPhase::Succeeded,
                exit_code,
                started: Some(100),
                finished: Some(103),
                duration_secs: Some(3),
                spec_hash: "0123".into(),
                commit: "c1".into(),
                manual: false,
                last_lines: vec!["done".into()],
            },
            error: error.map(str::to_string),
            timed_out: false,
        }
    }

    #[test]
    fn a_run_once_jobs_run_is_a_job_entry_of_the_history_like_a_scheduled_one() {
        let e = outcome(Trigger::Once, Some(0), None).history_entry("f", 999.0);
        assert_eq!(
            e.trigger,
            PassReason::Job {
                job: "s/migrate".into(),
                scheduled: None
            }
        );
        assert_eq!(e.result, PassResult::Applied);
        assert_eq!(e.commit, "c1");
        // The engine's times, not the time it was recorded.
        assert_eq!(e.started_at, crate::model::time::rfc3339(100.0));
        assert_eq!(e.ended_at, crate::model::time::rfc3339(103.0));
        assert_eq!(e.jobs.len(), 1);
        assert_eq!(e.jobs[0].run.container, "s-migrate-job-once-0123");
        // One that could not run: failed, with why, at `now`.
        let mut failed = outcome(Trigger::Once, None, Some("no host to run it: none"));
        failed.run.started = None;
        failed.run.finished = None;
        let e = failed.history_entry("f", 999.0);
        assert_eq!(e.result, PassResult::Failed);
        assert_eq!(e.started_at, crate::model::time::rfc3339(999.0));
        assert!(
            e.failures[0].error.contains("no host to run it"),
            "{:?}",
            e.failures
        );
    }
}
