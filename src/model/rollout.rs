//! How a changed service reaches its replicas: Compose's `deploy.update_config` and
//! `deploy.rollback_config` (Swarm's keys and defaults, but `failure_action: rollback`), and the
//! `x-convoy` keys that decide when a new replica is up (`progress_deadline`, `readiness`).
//!
//! Types and their defaults only. These settings are not part of the container's spec hash: a
//! change of rollout settings alone replaces nothing ("upgrades are invisible").

use std::fmt;

use serde::{Deserialize, Serialize};

/// `order`: whether the old replica stops before its successor starts (Swarm's default), or
/// after the successor is up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    #[default]
    StopFirst,
    StartFirst,
}

impl fmt::Display for UpdateOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        })
    }
}

/// `failure_action`: what a failed batch leads to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// Put the previous spec back on every replica changed, on every host (Convoy's default).
    #[default]
    Rollback,
    /// Stop where it is and report.
    Pause,
    /// Go on with the next batch.
    Continue,
}

impl fmt::Display for FailureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureAction::Rollback => "rollback",
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
        })
    }
}

/// One of `update_config` or `rollback_config`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Replicas changed at once; 0 means all of them.
    pub parallelism: u32,
    /// Wait between the end of one batch and the start of the next.
    pub delay_ms: u64,
    pub order: UpdateOrder,
    /// How long changed replicas are watched for failure after each batch.
    pub monitor_ms: u64,
    pub failure_action: FailureAction,
    /// Failures tolerated, as a fraction of the replicas changed (0 to 1).
    pub max_failure_ratio: f64,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            order: UpdateOrder::StopFirst,
            monitor_ms: 5_000,
            failure_action: FailureAction::Rollback,
            max_failure_ratio: 0.0,
        }
    }
}

impl UpdateConfig {
    /// Swarm's `rollback_config` defaults: the same as an update's, but a failed rollback
    /// pauses (there is nothing older to go back to).
    pub fn rollback_default() -> Self {
        UpdateConfig {
            failure_action: FailureAction::Pause,
            ..UpdateConfig::default()
        }
    }

    /// The batch size for `replicas` changed replicas.
    pub fn batch_size(&self, replicas: usize) -> usize {
        match self.parallelism {
            0 => replicas.max(1),
            n => n as usize,
        }
    }
}

/// `x-convoy: {readiness: {port, path, expect}}`: an HTTP probe sent to the replica through its
/// host's SSH connection before the replica counts as up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub port: u16,
    /// Absolute path, `/` by default.
    pub path: String,
    /// The status code that means ready, 200 by default.
    pub expect: u16,
}

/// Everything that shapes a service's rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSpec {
    pub update: UpdateConfig,
    pub rollback: UpdateConfig,
    /// `x-convoy: {progress_deadline: 2m}`: how long a new replica may take to be up (running,
    /// healthy where it has a healthcheck, ready where it has a probe).
    pub progress_deadline_ms: u64,
    pub readiness: Option<Readiness>,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            update: UpdateConfig::default(),
            rollback: UpdateConfig::rollback_default(),
            progress_deadline_ms: 120_000,
            readiness: None,
        }
    }
}

impl RolloutSpec {
    /// The deadline in force: never less than `health_floor_ms`, what the healthcheck needs to
    /// call a replica healthy at the latest (`Healthcheck::latest_healthy_ms`).
    pub fn deadline_ms(&self, health_floor_ms: u64) -> u64 {
        self.progress_deadline_ms.max(health_floor_ms)
    }
}

/// The suffix of a replica kept, stopped (or, `start-first`, still running), while its
/// successor proves itself: `<name>.prev`. Its labels stay those of its own spec, so a daemon
/// that restarts finds it by slot and knows what it ran.
pub const PREV_SUFFIX: &str = ".prev";

/// The name of the kept previous replica of the container `name`.
pub fn prev_name(name: &str) -> String {
    format!("{name}{PREV_SUFFIX}")
}

/// On a quarantine record's container: the spec hash that failed (its presence marks the
/// container as a record, never a replica).
pub const LABEL_QUARANTINE: &str = "convoy.quarantine";
/// Why it failed, in one line.
pub const LABEL_QUARANTINE_REASON: &str = "convoy.quarantine.reason";
/// The batch (1-based) in which it failed.
pub const LABEL_QUARANTINE_BATCH: &str = "convoy.quarantine.batch";
/// The host of the replica that failed.
pub const LABEL_QUARANTINE_HOST: &str = "convoy.quarantine.host";
/// When (RFC 3339, the daemon's clock).
pub const LABEL_QUARANTINE_AT: &str = "convoy.quarantine.at";

/// A spec that failed its rollout and was rolled back: not tried again until the service's
/// spec changes to something else. Kept on the engines, as the labels of a container that is
/// created and never started (`<stack>-<service>.quarantine-<hash>`) on every host of the
/// service, so it survives a lost state directory and a daemon restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    pub stack: String,
    pub service: String,
    pub spec_hash: String,
    /// The commit the failed spec came from.
    pub commit: String,
    pub reason: String,
    pub batch: u32,
    /// The host of the replica whose failure decided it.
    pub host: String,
    pub at: String,
    /// The record's container, on the host where it was observed.
    #[serde(skip)]
    pub id: String,
}

/// The name of a quarantine record's container.
pub fn quarantine_name(stack: &str, service: &str, spec_hash: &str) -> String {
    let short: String = spec_hash.chars().take(12).collect();
    format!("{stack}-{service}.quarantine-{short}")
}

/// A replica of a rollout that an earlier pass (or process) changed already: watched like the
/// replicas changed in this pass, and put back like them on a rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub host: String,
    pub name: String,
    /// Whether `<name>.prev` is there to go back to.
    pub has_prev: bool,
}

/// A previous replica kept by an earlier pass whose slot is no longer in the rollout (its
/// successor is up): removed when the rollout succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptPrev {
    pub host: String,
    pub name: String,
    pub id: String,
    pub grace_secs: Option<i64>,
}

/// One step of a rollout's batch, as the executor runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub step: usize,
    pub host: String,
    pub name: String,
    /// 0-based batch.
    pub batch: usize,
    /// The order this replica is replaced in (`start-first` falls back to `stop-first` where
    /// both copies would need one host port or one name).
    pub order: UpdateOrder,
    /// Keep the old container as `<name>.prev` (false when an older one is kept already: the
    /// last version that ran well stays the one to go back to).
    pub keep_prev: bool,
    /// The old container's own stop grace period (`start-first` stops it after the batch).
    pub grace_secs: Option<i64>,
}

/// A service's rolling update, as planned: the batches, what to watch, what to do on failure.
/// The plan carries the way back too, so the executor follows it without deciding anything.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollout {
    pub stack: String,
    pub service: String,
    pub to_hash: String,
    pub commit: String,
    /// Replicas of the service placed.
    pub replicas: usize,
    pub update: UpdateConfig,
    pub rollback: UpdateConfig,
    pub deadline_ms: u64,
    pub readiness: Option<Readiness>,
    /// Every step of every batch, in batch order.
    pub members: Vec<Member>,
    pub batches: usize,
    /// Replicas changed before this pass, still to be proven (or put back).
    pub changed: Vec<Changed>,
    /// Kept previous replicas to remove once the rollout has succeeded.
    pub kept: Vec<KeptPrev>,
    /// Host → an image ID present there, for the quarantine record's container.
    pub record_images: std::collections::BTreeMap<String, String>,
    /// Quarantine records of older specs of the service: removed once this one succeeds.
    pub stale_records: Vec<(String, String)>,
}

/// How a rollout ended in this pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RolloutResult {
    /// Every batch up, and no failure over the ratio through the last `monitor`.
    Completed,
    /// A batch failed: the previous spec is back on every replica changed, the spec
    /// quarantined.
    RolledBack {
        reason: String,
        batch: u32,
        host: String,
    },
    /// A batch failed with `failure_action: pause`: it stays where it is.
    Paused {
        reason: String,
        batch: u32,
        host: String,
    },
    /// The pass was cancelled after the batch in flight: the next pass continues.
    Interrupted,
}

/// A rollout's outcome in a pass report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutReport {
    pub stack: String,
    pub service: String,
    pub to_hash: String,
    #[serde(flatten)]
    pub result: RolloutResult,
    /// Batches that ran, of `batches`.
    pub batches_done: u32,
    pub batches: u32,
    /// Replicas on the new spec when it ended.
    pub updated: u32,
}

impl RolloutResult {
    /// A stable name for logs and metrics (the word it serialises as).
    pub fn code(&self) -> &'static str {
        match self {
            RolloutResult::Completed => "completed",
            RolloutResult::RolledBack { .. } => "rolled_back",
            RolloutResult::Paused { .. } => "paused",
            RolloutResult::Interrupted => "interrupted",
        }
    }
}

/// Where a rollout is while it runs, as the executor reports it at each batch's opening and
/// end and at the rollout's end (`exec::ExecOptions::rollout_progress`): what `status` shows
/// as "batch k of n, m of N replicas updated".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutProgress {
    pub stack: String,
    pub service: String,
    /// The spec hash rolled out.
    pub to_hash: String,
    /// The batch open or last run, 1-based (0 before the first opens).
    pub batch: u32,
    pub batches: u32,
    /// Replicas up on the new spec so far (those changed by earlier passes included).
    pub updated: u32,
    /// Replicas of the service placed.
    pub replicas: u32,
    /// The rollout has ended (its report says how).
    #[serde(default)]
    pub done: bool,
}
