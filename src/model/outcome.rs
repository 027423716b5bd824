//! How a pass ended (`PassResult`) and why a change was held back (`HoldReason`): the one
//! vocabulary that the pass report, the daemon's status and, as they come, history, metrics,
//! notifications, the API and the dashboard share. None of them defines its own.
//!
//! Serialised as snake_case words; variants are only ever added.

use std::fmt;

use serde::Serialize;

/// The result of one reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
