//! What the daemon publishes about itself (`DaemonStatus`, on a `watch` channel) and what the
//! API, the metrics and systemd's status line may ask of it (`ApiRequest`, on a channel into
//! the loop).
//!
//! Plain data: the loop fills it, readers only copy from it. It must not hold anything a reader
//! could block the loop with (no locks, no handles) nor any secret (credentials, tokens, masked
//! values never enter it).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::model::outcome::{HoldReason, PassReason, PassResult};
use crate::model::rollout::{QuarantineRecord, RolloutProgress, RolloutReport};

/// The daemon's state as it changes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonStatus {
    /// `starting`, `idle`, `passing`, `stopping`.
    pub phase: &'static str,
    /// A first pass has completed, or the first commit was refused as invalid.
    pub ready: bool,
    /// What the daemon follows (a directory, a repository and branch; never a credential).
    pub source: String,
    /// The branch followed, once known (a remote's default branch after its first fetch).
    pub branch: Option<String>,
    /// The commit of the desired state in force (in full for git sources).
    pub commit: Option<String>,
    /// Its committer time, Unix seconds (none for working files).
    pub commit_time: Option<i64>,
    /// Set while the newest commit is not the one in force; why, and where its error is.
    pub pending: Option<Pending>,
    /// The hold reason of `pending`, kept beside it for the status line.
    pub held: Option<HoldReason>,
    pub passes: u64,
    pub last_reason: Option<PassReason>,
    pub last_result: Option<PassResult>,
    /// When the last pass ended, Unix seconds.
    pub last_pass_at: Option<f64>,
    pub last_pass_ms: Option<u64>,
    pub converged: bool,
    /// Hosts not connected, with the reason.
    pub disconnected: BTreeMap<String, String>,
    /// Per host: `connected`, `unreachable`, `down` (past `host_down_after`) or `parked`.
    pub hosts: Vec<HostState>,
    /// Per stack and service, from the last pass.
    pub services: Vec<ServiceCount>,
    pub counters: Counters,
    /// Rollouts of the pass in flight, as the executor reports them (batch k of n, replicas
    /// updated); empty between passes.
    pub rollouts: Vec<RolloutProgress>,
    /// How each rollout of the last pass ended.
    pub last_rollouts: Vec<RolloutReport>,
    /// Specs quarantined after a failed rollout, as the last pass found them (and those its
    /// own rollouts quarantined): not tried again until the service's spec changes.
    pub quarantined: Vec<QuarantineRecord>,
    /// Every replica the last pass placed, with what it runs (the dashboard's detail).
    pub replicas: Vec<super::facts::ReplicaFact>,
    /// What each host's engine reported when last seen (the dashboard's detail).
    pub host_facts: Vec<super::facts::HostFact>,
    /// The steps of the pass in flight, once planned; empty between passes.
    pub in_flight: Vec<super::facts::StepFact>,
    /// Stacks whose change a sync window holds: which window, and when it opens.
    pub sync_windows: Vec<crate::core::windows::WindowHold>,
    /// Every job with its next run and last runs (`daemon::jobs`).
    pub jobs: Vec<crate::model::job::JobStatus>,
    /// Notifications by delivery result, counted by the delivery tasks as they go.
    #[serde(skip)]
    pub notifications: crate::infra::notify::NotifyCounts,
}

/// A commit that is not (yet) in force.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pending {
    pub commit: String,
    pub reason: HoldReason,
    /// One line: what holds it and how to release it.
    pub message: String,
    /// For `invalid_commit`: every located error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<CommitError>,
}

/// One error of a commit that does not validate, located.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommitError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostState {
    pub name: String,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServiceCount {
    pub stack: String,
    pub service: String,
    pub desired: usize,
    pub running: usize,
    /// Replicas that no host can take now.
    pub pending: usize,
}

/// Monotonic counters for `/metrics`, keyed by the shared enums' codes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Passes by `PassResult::code`.
    pub passes: BTreeMap<&'static str, u64>,
    pub pass_duration: Histogram,
    /// Steps executed, by `Action::kind`.
    pub steps: BTreeMap<&'static str, u64>,
    /// Commits refused as invalid (each refused tree once).
    pub commit_errors: u64,
    /// Fetches of a remote (each webhook, poll or sync that ran one), and those that failed.
    pub git_fetches: u64,
    pub git_fetch_errors: u64,
    /// Steps that healed something (a container missing, exited, dead, unhealthy, drifted,
    /// fenced or moved off a lost host), by `Reason::code`.
    pub heals: BTreeMap<&'static str, u64>,
    /// Rollouts that ended, by stack, service and `RolloutResult::code`.
    pub rollouts: Vec<RolloutCount>,
}

/// Rollouts of one service that ended one way.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RolloutCount {
    pub stack: String,
    pub service: String,
    /// A `RolloutResult::code`.
    pub result: &'static str,
    pub count: u64,
}

impl Counters {
    /// Counts one rollout of `stack/service` that ended with `result`.
    pub fn count_rollout(&mut self, stack: &str, service: &str, result: &'static str) {
        match self
            .rollouts
            .iter_mut()
            .find(|c| c.stack == stack && c.service == service && c.result == result)
        {
            Some(c) => c.count += 1,
            None => self.rollouts.push(RolloutCount {
                stack: stack.to_string(),
                service: service.to_string(),
                result,
                count: 1,
            }),
        }
    }
}

/// A Prometheus histogram: counts per upper bound (not cumulative), the sum and the count.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        let bounds = vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ];
        Histogram {
            counts: vec![0; bounds.len()],
            bounds,
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// Why a fetch of the remote is asked for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchCause {
    /// A verified webhook from this provider (`github`, `gitea`, `gitlab`, `generic`).
    Webhook { provider: &'static str },
}

/// What the API asks of the daemon's loop.
#[derive(Debug)]
pub enum ApiRequest {
    /// `POST /api/v1/sync`: fetch, read and pass now; `allow_prune` releases a commit held by
    /// the deletion guard (that commit only).
    Sync { allow_prune: bool },
    /// `POST /api/v1/sync?force=true`: the commit sync windows hold comes into force where
    /// the windows allow manual syncs (sent before the `Sync` that runs the pass).
    ForceWindows,
    /// A verified webhook for the tracked branch: fetch now.
    Fetch { cause: FetchCause },
    /// `GET /api/v1/diff`: the plan of the branch's newest commit against the fleet, as
    /// `convoy diff --output json` prints it, or an error message.
    Diff {
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// The dashboard's diff view: the same plan as `Diff`, as `convoy diff` prints it (text).
    DiffText {
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// `POST /api/v1/jobs/{name}/run`: start one run of a job now; the reply says which, or
    /// why not (an unknown job).
    RunJob {
        name: String,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// What an API server holds of the daemon: its status, and a way to ask.
#[derive(Clone)]
pub struct DaemonHandle {
    pub status: watch::Receiver<DaemonStatus>,
    pub requests: mpsc::UnboundedSender<ApiRequest>,
    /// The deploy history, when the daemon has one (`GET /api/v1/history`).
    pub history: Option<super::history::HistoryReader>,
}
