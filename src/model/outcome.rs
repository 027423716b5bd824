//! How a pass ended (`PassResult`), why a change was held back (`HoldReason`), why a pass ran
//! (`PassReason`), and the record of a pass (`PassReport`, with each `StepOutcome`): the one
//! vocabulary that the daemon's status and, as they come, history, metrics, notifications, the
//! API and the dashboard share. None of them defines its own.
//!
//! Serialised as snake_case words; variants and fields are only ever added.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::plan::Plan;

/// How one step of a plan ended.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub id: usize,
    pub host: String,
    /// The step as one line (`+ web-app-1 (missing, image ...)`).
    pub step: String,
    /// `None` when it succeeded.
    pub error: Option<String>,
}

/// Milliseconds spent in each phase of a pass.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    pub observe_ms: u64,
    pub execute_ms: u64,
    pub verify_ms: u64,
    pub total_ms: u64,
}

/// Everything a pass did and found: the record that status, history, metrics and notifications
/// read.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    /// Why the pass ran.
    pub reason: PassReason,
    pub commit: String,
    #[serde(flatten)]
    pub result: PassResult,
    /// True when a verifying observation (or, without one, the plan itself) found nothing left
    /// to do and nothing in the way.
    pub converged: bool,
    pub plan: Plan,
    pub outcomes: Vec<StepOutcome>,
    pub pull_failures: Vec<String>,
    /// How each rollout of the pass ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<crate::model::rollout::RolloutReport>,
    /// The plan made after acting (when the pass verified): empty when converged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<Plan>,
    pub timings: Timings,
}

impl PassReport {
    /// Steps that failed (a cancelled pass's unstarted steps included).
    pub fn failures(&self) -> impl Iterator<Item = &StepOutcome> {
        self.outcomes.iter().filter(|o| o.error.is_some())
    }
}

/// The result of one reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum PassResult {
    /// Steps ran and every one succeeded.
    Applied,
    /// Nothing to do: observed already equals desired.
    Converged,
    /// Some steps failed, or hosts could not be observed.
    Failed,
    /// A change failed its health gates and the previous state was restored.
    RolledBack,
    /// The change was not applied, on purpose; the last good state keeps running.
    Held { reason: HoldReason },
    /// A newer commit arrived during the pass: it stopped starting steps (and stopped waiting
    /// at its gates) so that the next pass plans from the newer commit at once.
    Superseded,
}

impl PassResult {
    /// A stable name for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PassResult::Applied => "applied",
            PassResult::Converged => "converged",
            PassResult::Failed => "failed",
            PassResult::RolledBack => "rolled_back",
            PassResult::Held { .. } => "held",
            PassResult::Superseded => "superseded",
        }
    }
}

impl fmt::Display for PassResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassResult::Held { reason } => write!(f, "held ({})", reason.code()),
            other => f.write_str(other.code()),
        }
    }
}

/// Why a pass applied nothing of a new desired state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// The commit does not validate: every error is reported, nothing changes.
    InvalidCommit,
    /// The change would remove more than the deletion guard allows.
    DeletionGuard,
    /// The commit is not signed by a trusted key.
    UnsignedCommit,
    /// Outside the sync windows that allow changes.
    SyncWindow,
    /// The spec failed before and is quarantined until it changes.
    QuarantinedSpec,
}

impl HoldReason {
    pub fn code(&self) -> &'static str {
        match self {
            HoldReason::InvalidCommit => "invalid_commit",
            HoldReason::DeletionGuard => "deletion_guard",
            HoldReason::UnsignedCommit => "unsigned_commit",
            HoldReason::SyncWindow => "sync_window",
            HoldReason::QuarantinedSpec => "quarantined_spec",
        }
    }
}

/// Why a pass was requested: on the pass's log span and in its report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PassReason {
    /// A one-shot command (`apply`).
    Command { name: String },
    /// The daemon's first pass.
    Start,
    /// The repository's files changed.
    FilesChanged,
    /// An engine reported an event on one of the fleet's containers.
    EngineEvent {
        host: String,
        action: String,
        container: String,
    },
    /// The connection to a host was lost.
    HostLost { host: String },
    /// A host was connected (again).
    HostBack { host: String },
    /// A host crossed `host_down_after`: its replicas go elsewhere.
    HostDown { host: String },
    /// The periodic full re-observation.
    Resync,
    /// The last pass acted: look again to confirm convergence.
    Confirm,
    /// The last pass failed: try again after the error policy's delay.
    Retry { attempt: u32 },
    /// The followed branch moved to a new commit (a push, a poll, a webhook).
    NewCommit { commit: String },
    /// Someone asked for a pass (`convoy sync`, the API, `SIGHUP`).
    Requested { by: String },
    /// A job's run (`stack/service`) at its scheduled time, or by hand (`scheduled` none).
    Job {
        job: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduled: Option<i64>,
    },
}

impl fmt::Display for PassReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassReason::Command { name } => write!(f, "command `{name}`"),
            PassReason::Start => f.write_str("start"),
            PassReason::FilesChanged => f.write_str("files changed"),
            PassReason::EngineEvent {
                host,
                action,
                container,
            } => write!(f, "event `{action}` of {container} on host {host}"),
            PassReason::HostLost { host } => write!(f, "host {host} lost"),
            PassReason::HostBack { host } => write!(f, "host {host} connected"),
            PassReason::HostDown { host } => write!(f, "host {host} down"),
            PassReason::Resync => f.write_str("resync"),
            PassReason::Confirm => f.write_str("confirm"),
            PassReason::Retry { attempt } => write!(f, "retry {attempt}"),
            PassReason::NewCommit { commit } => write!(f, "new commit {commit}"),
            PassReason::Requested { by } => write!(f, "requested by {by}"),
            PassReason::Job { job, .. } => write!(f, "job `{job}`"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_serialise_as_stable_words() {
        let held = PassResult::Held {
            reason: HoldReason::InvalidCommit,
        };
        assert_eq!(
            serde_json::to_string(&held).unwrap(),
            r#"{"result":"held","reason":"invalid_commit"}"#
        );
        assert_eq!(
            serde_json::to_string(&PassResult::Applied).unwrap(),
            r#"{"result":"applied"}"#
        );
        assert_eq!(held.to_string(), "held (invalid_commit)");
    }
}
