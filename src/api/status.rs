//! `GET /api/v1/status`: the document (`StatusDoc`, version 1) built from `DaemonStatus` per
//! request, and the RFC 3339 formatter its times use. The client (`convoy status --daemon`)
//! reads the same types back.
//!
//! Fields are only ever added. It must not carry anything `DaemonStatus` does not (no secret
//! ever enters either).

use serde::{Deserialize, Serialize};

use crate::daemon::DaemonStatus;
use crate::model::plan::JSON_VERSION;
use crate::model::rollout::{QuarantineRecord, RolloutProgress, RolloutReport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    pub version: u32,
    /// The commit in force (in full).
    pub applied_commit: Option<String>,
    /// Its committer time, RFC 3339 UTC.
    pub applied_commit_time: Option<String>,
    /// The newest commit when it is not in force, and why.
    pub pending_commit: Option<PendingDoc>,
    pub ready: bool,
    pub phase: String,
    pub source: String,
    pub last_pass: Option<LastPassDoc>,
    pub passes: u64,
    pub services: Vec<ServiceDoc>,
    pub hosts: Vec<HostDoc>,
    /// Rollouts of the pass in flight: `{stack, service, to_hash, batch, batches, updated,
    /// replicas, done}` (batch 1-based); empty between passes.
    #[serde(default)]
    pub rollouts: Vec<RolloutProgress>,
    /// Specs quarantined after a failed rollout, not tried again until the service's spec
    /// changes: `{stack, service, spec_hash, commit, reason, batch, host, at}`.
    #[serde(default)]
    pub quarantined: Vec<QuarantineRecord>,
    /// Stacks whose change a sync window holds: `{stack, window, kind, schedule, timezone,
    /// manual_sync, opens_at}` (`opens_at` RFC 3339 UTC, null when no opening is in sight).
    #[serde(default)]
    pub sync_windows: Vec<SyncWindowDoc>,
    /// Jobs: `{stack, name, schedule, timezone, concurrency, next_run, last_runs: [{host,
    /// container, scheduled, scheduled_at, phase, exit_code, started, finished,
    /// duration_secs, spec_hash, commit, last_lines}]}`.
    #[serde(default)]
    pub jobs: Vec<crate::model::job::JobStatus>,
}

/// One stack held by a sync window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncWindowDoc {
    pub stack: String,
    /// The window's index in `sync_windows:`.
    pub window: usize,
    /// `deny` or `allow` (held outside every allow window).
    pub kind: String,
    pub schedule: String,
    pub timezone: String,
    /// Whether `convoy sync --force` may apply the change.
    pub manual_sync: bool,
    pub opens_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDoc {
    pub commit: String,
    /// A `HoldReason` code (`invalid_commit`, `deletion_guard`, ...).
    pub reason: String,
    pub message: String,
    #[serde(default)]
    pub errors: Vec<CommitErrorDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitErrorDoc {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastPassDoc {
    /// RFC 3339 UTC.
    pub finished_at: String,
    pub duration_ms: Option<u64>,
    /// The `PassReason` as serialised (`{"kind": "engine_event", "host": ...}`).
    pub reason: Option<serde_json::Value>,
    /// A `PassResult` code (`applied`, `converged`, `failed`, `rolled_back`, `held`).
    pub result: Option<String>,
    /// The `HoldReason` code when `result` is `held`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_reason: Option<String>,
    pub converged: bool,
    /// How each rollout of the pass ended: `{stack, service, to_hash, result (completed,
    /// rolled_back, paused, interrupted), reason, batch, host (when it failed), batches_done,
    /// batches, updated}`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<RolloutReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDoc {
    pub stack: String,
    pub service: String,
    pub desired: usize,
    pub running: usize,
    pub pending: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostDoc {
    pub name: String,
    /// `connected`, `unreachable`, `down` or `parked`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StatusDoc {
    pub fn from_status(s: &DaemonStatus) -> StatusDoc {
        use crate::model::outcome::PassResult;
        let last_pass = s.last_pass_at.map(|at| LastPassDoc {
            finished_at: rfc3339(at),
            duration_ms: s.last_pass_ms,
            reason: s
                .last_reason
                .as_ref()
                .and_then(|r| serde_json::to_value(r).ok()),
            result: s.last_result.as_ref().map(|r| r.code().to_string()),
            hold_reason: match &s.last_result {
                Some(PassResult::Held { reason }) => Some(reason.code().to_string()),
                _ => None,
            },
            converged: s.converged,
            rollouts: s.last_rollouts.clone(),
        });
        StatusDoc {
            version: JSON_VERSION,
            applied_commit: s.commit.clone(),
            applied_commit_time: s.commit_time.map(|t| rfc3339(t as f64)),
            pending_commit: s.pending.as_ref().map(|p| PendingDoc {
                commit: p.commit.clone(),
                reason: p.reason.code().to_string(),
                message: p.message.clone(),
                errors: p
                    .errors
                    .iter()
                    .map(|e| CommitErrorDoc {
                        file: e.file.clone(),
                        line: e.line,
                        column: e.column,
                        key: e.key.clone(),
                        message: e.message.clone(),
                    })
                    .collect(),
            }),
            ready: s.ready,
            phase: s.phase.to_string(),
            source: s.source.clone(),
            last_pass,
            passes: s.passes,
            services: s
                .services
                .iter()
                .map(|c| ServiceDoc {
                    stack: c.stack.clone(),
                    service: c.service.clone(),
                    desired: c.desired,
                    running: c.running,
                    pending: c.pending,
                })
                .collect(),
            hosts: s
                .hosts
                .iter()
                .map(|h| HostDoc {
                    name: h.name.clone(),
                    state: h.state.to_string(),
                    reason: h.reason.clone(),
                })
                .collect(),
            rollouts: s.rollouts.clone(),
            quarantined: s.quarantined.clone(),
            sync_windows: s
                .sync_windows
                .iter()
                .map(|h| SyncWindowDoc {
                    stack: h.stack.clone(),
                    window: h.window,
                    kind: h.kind.code().to_string(),
                    schedule: h.schedule.clone(),
                    timezone: h.timezone.clone(),
                    manual_sync: h.manual_sync,
                    opens_at: h.opens_at.map(|t| rfc3339(t as f64)),
                })
                .collect(),
            jobs: s.jobs.clone(),
        }
    }
}

pub use crate::model::time::rfc3339;
