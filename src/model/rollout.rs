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
    /// The deadline in force: never less than what the healthcheck needs to call a replica
    /// healthy at the latest: start period plus interval times retries (engine defaults 0 s,
    /// 30 s and 3 where unset).
    pub fn deadline_ms(&self, health: Option<&crate::model::spec::Healthcheck>) -> u64 {
        let Some(h) = health else {
            return self.progress_deadline_ms;
        };
        if h.test.first().map(String::as_str) == Some("NONE") {
            return self.progress_deadline_ms;
        }
        let ms =
            |ns: Option<i64>, default_s: i64| ns.unwrap_or(default_s * 1_000_000_000) / 1_000_000;
        let interval = ms(h.interval_ns, 30);
        let retries = h.retries.unwrap_or(3);
        let start = ms(h.start_period_ns, 0);
        let floor = start + interval * retries.max(1);
        self.progress_deadline_ms.max(floor.max(0) as u64)
    }
}
