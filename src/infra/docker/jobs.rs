//! The engine calls behind a job's run (`exec::jobs`): create its container from the
//! `Replica` the core made (labels `convoy.job` and the spec hash on it: the record of the
//! run), start it, wait for it to end with a deadline (past which it is killed), and read its
//! start and end times. A job's container is kept after it ends: it is the run's record, and
//! `core::jobs` decides which go beyond `history`.
//!
//! It decides nothing about when a job runs, and never logs the container's environment.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{DockerError, Engine};
use crate::model::plan::Replica;

/// How often a running job is asked whether it has ended.
const POLL: Duration = Duration::from_millis(300);

/// How a job's container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobExit {
    pub id: String,
    /// `None` when it was stopped unfinished (deadline or shutdown) and the engine gave none.
    pub exit_code: Option<i64>,
    /// Killed at its deadline.
    pub timed_out: bool,
    /// Left running because the process is shutting down (it is found again by its labels).
    pub abandoned: bool,
}

impl Engine {
    /// Creates and starts `replica` (a job's container) and waits for it to end, at most
    /// `deadline`; on the deadline it is stopped. Cancelling `cancel` stops the wait and
    /// leaves the container running: a daemon that starts again finds it by its labels.
    pub async fn run_job(
        &self,
        replica: &Replica,
        network_ids: &BTreeMap<String, String>,
        deadline: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Result<JobExit, DockerError> {
        let id = self.create_container(replica, network_ids).await?;
        self.start(&id, &replica.name).await?;
        self.wait_job(&id, &replica.name, deadline, cancel).await
    }

    /// Waits for the job container `id` to end (see `run_job`).
    pub async fn wait_job(
        &self,
        id: &str,
        name: &str,
        deadline: Option<Duration>,
        cancel: &CancellationToken,
    ) -> Result<JobExit, DockerError> {
        let until = deadline.map(|d| tokio::time::Instant::now() + d);
        loop {
            let i = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(|e| self.err(format!("inspect job container `{name}`"), e))?;
            let state = i.state.unwrap_or_default();
            if !state.running.unwrap_or(false) && !state.restarting.unwrap_or(false) {
                return Ok(JobExit {
                    id: id.to_string(),
                    exit_code: state.exit_code,
                    timed_out: false,
                    abandoned: false,
                });
            }
            if until.is_some_and(|u| tokio::time::Instant::now() >= u) {
                self.stop(id, name, Some(0)).await?;
                let code = self.status(id).await?.map(|s| s.exit_code);
                return Ok(JobExit {
                    id: id.to_string(),
                    exit_code: code,
                    timed_out: true,
                    abandoned: false,
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    return Ok(JobExit {
                        id: id.to_string(),
                        exit_code: None,
                        timed_out: false,
                        abandoned: true,
                    })
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// A container's start and end as Unix seconds (`None` where the engine has none yet).
    pub async fn run_times(&self, id: &str) -> (Option<i64>, Option<i64>) {
        let Ok(i) = self.docker.inspect_container(id, None).await else {
            return (None, None);
        };
        let state = i.state.unwrap_or_default();
        let parse = |s: Option<String>| {
            s.and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.timestamp())
                .filter(|t| *t > 0)
        };
        (parse(state.started_at), parse(state.finished_at))
    }
}
