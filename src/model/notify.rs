//! Notifications and commit statuses, the pure part: what an endpoint is (`NotificationSpec`,
//! as `convoy.yaml` or the daemon's config writes it), which events a pass, a hold, a host
//! change or a job run produces (`Event`), how bursts coalesce (`Coalescer`: one message per
//! pass however many containers it healed, a host said down once per outage, an unchanged
//! failure at most once an hour), and which commit status an event sets (`commit_status`).
//!
//! It uses the one vocabulary of `outcome` (`PassResult`, `HoldReason`) and defines none of its
//! own for how a pass ended. Pure: no I/O, no clock (times come in as Unix seconds), no random
//! number; delivery is `infra::notify` and `daemon::notifications`. Nothing here may carry a
//! secret or an environment value: events are built from masked history entries and are masked
//! once more (`Event::mask`) with the secrets and environment values of the state in force.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::model::history::HistoryEntry;
use crate::model::outcome::{HoldReason, PassResult};

pub use crate::model::notify_spec::{
    repo_path, EventKind, NotificationSpec, NotifyKind, SecretText,
};

/// Hosts that did what the pass asked, of the hosts the fleet has: "3/4 hosts".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HostCount {
    pub ok: usize,
    pub total: usize,
}

impl fmt::Display for HostCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} hosts", self.ok, self.total)
    }
}

/// A run of a job, as the job runner reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRun {
    pub job: String,
    pub stack: String,
    pub host: String,
    pub exit_code: i64,
    pub duration_ms: u64,
    pub commit: String,
}

/// Something worth telling, with what the message needs. Serialised flat into the generic
/// body (`event` names the kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A pass of a commit not applied before began.
    Started {
        commit: String,
        hosts: usize,
    },
    Applied {
        commit: String,
        hosts: HostCount,
    },
    Failed {
        commit: String,
        reason: String,
        hosts: HostCount,
    },
    RolledBack {
        commit: String,
        reason: String,
        hosts: HostCount,
    },
    /// The commit is not applied on purpose; the last good one keeps running.
    Held {
        commit: String,
        hold_reason: HoldReason,
        reason: String,
    },
    /// One pass replaced, started or recreated replicas that had crashed or drifted.
    Healed {
        commit: String,
        replicas: u32,
        /// By heal reason (`missing`, `exited`, `drift`, ...).
        by_reason: BTreeMap<String, u32>,
    },
    HostDown {
        host: String,
    },
    HostUp {
        host: String,
    },
    JobFailed {
        #[serde(flatten)]
        run: JobRun,
    },
    JobSucceeded {
        #[serde(flatten)]
        run: JobRun,
    },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Started { .. } => EventKind::Started,
            Event::Applied { .. } => EventKind::Applied,
            Event::Failed { .. } => EventKind::Failed,
            Event::RolledBack { .. } => EventKind::RolledBack,
            Event::Held { .. } => EventKind::Held,
            Event::Healed { .. } => EventKind::Healed,
            Event::HostDown { .. } => EventKind::HostDown,
            Event::HostUp { .. } => EventKind::HostUp,
            Event::JobFailed { .. } => EventKind::JobFailed,
            Event::JobSucceeded { .. } => EventKind::JobSucceeded,
        }
    }

    /// The commit the event is about, if any.
    pub fn commit(&self) -> Option<&str> {
        match self {
            Event::Started { commit, .. }
            | Event::Applied { commit, .. }
            | Event::Failed { commit, .. }
            | Event::RolledBack { commit, .. }
            | Event::Held { commit, .. }
            | Event::Healed { commit, .. } => Some(commit),
            Event::JobFailed { run } | Event::JobSucceeded { run } => Some(&run.commit),
            Event::HostDown { .. } | Event::HostUp { .. } => None,
        }
    }

    /// Every value of `hidden` (secrets, environment values) replaced in every text it holds.
    pub fn mask(&mut self, hidden: &BTreeSet<String>) {
        let m = |s: &mut String| *s = crate::model::spec::mask_secrets(s, hidden);
        match self {
            Event::Failed { reason, .. }
            | Event::RolledBack { reason, .. }
            | Event::Held { reason, .. } => m(reason),
            _ => {}
        }
    }
}

/// An event to deliver: of which fleet, and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub fleet: String,
    pub at: i64,
    pub event: Event,
}

/// The longest reason line a message carries (a commit status allows 140 characters; chat
/// messages stay one line).
pub const REASON_CAP: usize = 200;

/// `s` on one line, at most `max` characters (cut with `…`).
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = flat.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut out: String = flat.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// How long an unchanged failure stays unsaid after it was said.
pub const REPEAT_FAILURE_SECS: i64 = 3600;

/// What has been said, so that nothing is said twice in a row: the burst rules.
#[derive(Debug, Clone, Default)]
pub struct Coalescer {
    /// The commit last said started: retries and later passes of it start nothing new.
    started: Option<String>,
    /// The commit last said applied: later passes of it that act are heals, not applies.
    applied: Option<String>,
    /// The failure last said (what failed, not the error's wording) and when.
    failure: Option<(String, i64)>,
    /// The hold last said.
    held: Option<(String, HoldReason)>,
    /// Hosts said down and not said up since.
    down: BTreeSet<String>,
}

impl Coalescer {
    /// `commit` was said started and applied before this process began (the history says
    /// it applied cleanly last): a restart does not say it again.
    pub fn resume(&mut self, commit: &str) {
        self.started = Some(commit.to_string());
        self.applied = Some(commit.to_string());
    }

    /// A pass of `commit` begins (`hosts`: the fleet's hosts). `started` once per commit.
    pub fn pass_started(&mut self, commit: &str, hosts: usize) -> Vec<Event> {
        if self.started.as_deref() == Some(commit) || self.applied.as_deref() == Some(commit) {
            return Vec::new();
        }
        self.started = Some(commit.to_string());
        // A new commit's first failure is news, whatever the last one said.
        self.failure = None;
        vec![Event::Started {
            commit: commit.to_string(),
            hosts,
        }]
    }

    /// A pass ended: `entry` is its history entry (`model::history::pass_entry`, masked),
    /// `hosts` the fleet's hosts, `now` Unix seconds.
    pub fn pass_ended(&mut self, entry: &HistoryEntry, hosts: usize, now: i64) -> Vec<Event> {
        let commit = entry.commit.clone();
        let count = host_count(entry, hosts);
        match &entry.result {
            PassResult::Applied | PassResult::Converged => {
                self.failure = None;
                if self.held.as_ref().is_some_and(|(c, _)| *c == commit) {
                    self.held = None;
                }
                if self.applied.as_deref() != Some(commit.as_str()) {
                    // The first clean pass of a commit (acting or finding it all in place).
                    self.applied = Some(commit.clone());
                    return vec![Event::Applied {
                        commit,
                        hosts: count,
                    }];
                }
                let replicas: u32 = entry.heals.values().sum();
                if replicas == 0 {
                    return Vec::new();
                }
                vec![Event::Healed {
                    commit,
                    replicas,
                    by_reason: entry.heals.clone(),
                }]
            }
            PassResult::Failed | PassResult::RolledBack => {
                let rolled_back = entry.result == PassResult::RolledBack;
                let key = failure_key(entry);
                if let Some((k, at)) = &self.failure {
                    if *k == key && now.saturating_sub(*at) < REPEAT_FAILURE_SECS {
                        return Vec::new();
                    }
                }
                self.failure = Some((key, now));
                if self.applied.as_deref() == Some(commit.as_str()) && !rolled_back {
                    // It was applied before: a failure now is news, and the next clean pass
                    // says applied again.
                    self.applied = None;
                }
                let reason = one_line(
                    entry.detail.as_deref().unwrap_or("the pass failed"),
                    REASON_CAP,
                );
                if rolled_back {
                    self.applied = None;
                    vec![Event::RolledBack {
                        commit,
                        reason,
                        hosts: count,
                    }]
                } else {
                    vec![Event::Failed {
                        commit,
                        reason,
                        hosts: count,
                    }]
                }
            }
            PassResult::Held { reason } => self.held(&commit, *reason, entry.detail.as_deref()),
            PassResult::Superseded => Vec::new(),
        }
    }

    /// A commit is held back for `reason`; said once per commit and reason.
    pub fn held(&mut self, commit: &str, reason: HoldReason, message: Option<&str>) -> Vec<Event> {
        let key = (commit.to_string(), reason);
        if self.held.as_ref() == Some(&key) {
            return Vec::new();
        }
        self.held = Some(key);
        if self.started.as_deref() == Some(commit) {
            // Released later, its pass starts again.
            self.started = None;
        }
        if self.applied.as_deref() == Some(commit) {
            // Released and applied again later: said again then.
            self.applied = None;
        }
        vec![Event::Held {
            commit: commit.to_string(),
            hold_reason: reason,
            reason: one_line(message.unwrap_or(reason.code()), REASON_CAP),
        }]
    }

    /// `host` answers again: `host_up` at once when it was said down (not at the next pass's
    /// start, which may be a resync away), and nothing more when that pass comes.
    pub fn host_back(&mut self, host: &str) -> Vec<Event> {
        if self.down.remove(host) {
            vec![Event::HostUp {
                host: host.to_string(),
            }]
        } else {
            Vec::new()
        }
    }

    /// The hosts that are down now (past `host_down_after`): `host_down` for each new one,
    /// `host_up` for each back.
    pub fn hosts_down(&mut self, down: &BTreeSet<String>) -> Vec<Event> {
        let mut out: Vec<Event> = down
            .difference(&self.down)
            .map(|h| Event::HostDown { host: h.clone() })
            .collect();
        out.extend(
            self.down
                .difference(down)
                .map(|h| Event::HostUp { host: h.clone() }),
        );
        self.down = down.clone();
        out
    }
}

/// A job run ended: `job_succeeded` for exit code 0, else `job_failed`. Every run is said.
pub fn job_event(run: JobRun) -> Event {
    if run.exit_code == 0 {
        Event::JobSucceeded { run }
    } else {
        Event::JobFailed { run }
    }
}

/// What failed, without the error's wording (which may carry a changing detail).
fn failure_key(entry: &HistoryEntry) -> String {
    let mut parts: BTreeSet<String> = entry
        .failures
        .iter()
        .map(|f| format!("{}|{}", f.host, f.step))
        .collect();
    parts.extend(entry.unreachable.keys().map(|h| format!("{h}|unreachable")));
    for r in &entry.rollouts {
        parts.insert(format!("{}/{}|{}", r.stack, r.service, r.result));
    }
    format!(
        "{}|{}|{}",
        entry.commit,
        entry.result.code(),
        parts.into_iter().collect::<Vec<_>>().join(",")
    )
}

/// Hosts without a failed step and not unreachable, of `total`.
fn host_count(entry: &HistoryEntry, total: usize) -> HostCount {
    let bad: BTreeSet<&str> = entry
        .failures
        .iter()
        .map(|f| f.host.as_str())
        .filter(|h| !h.is_empty())
        .chain(entry.unreachable.keys().map(String::as_str))
        .collect();
    let mut ok = total.saturating_sub(bad.len());
    if entry.result != PassResult::Applied
        && entry.result != PassResult::Converged
        && ok == total
        && total > 0
        && !entry.failures.is_empty()
    {
        // A failure of no particular host (a pull): nothing was done everywhere.
        ok = total - 1;
    }
    HostCount { ok, total }
}

/// A commit status's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
}

impl StatusState {
    /// GitHub's and Gitea's word.
    pub fn github(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
        }
    }

    /// GitLab's word.
    pub fn gitlab(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failed",
        }
    }
}

/// The status to set on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    pub commit: String,
    pub state: StatusState,
    /// `convoy/<fleet>`: one status per fleet on a commit.
    pub context: String,
    /// One line, at most 140 characters (GitHub's limit).
    pub description: String,
}

/// The longest description GitHub accepts.
pub const STATUS_DESCRIPTION_CAP: usize = 140;

/// The commit status an event sets: pending when a pass of a commit starts, success when
/// applied, failure when invalid (or unsigned), failed or rolled back, pending with the reason
/// while held otherwise. `None` for events that say nothing of a commit, and for commits that
/// are not a full git id (working files: `abc123-dirty`).
pub fn commit_status(fleet: &str, event: &Event) -> Option<CommitStatus> {
    let (commit, state, description) = match event {
        Event::Started { commit, hosts } => (
            commit,
            StatusState::Pending,
            format!("applying to {hosts} host(s)"),
        ),
        Event::Applied { commit, hosts } => {
            (commit, StatusState::Success, format!("applied: {hosts}"))
        }
        Event::Failed {
            commit,
            reason,
            hosts,
        } => (
            commit,
            StatusState::Failure,
            format!("failed ({hosts} ok): {reason}"),
        ),
        Event::RolledBack {
            commit,
            reason,
            hosts,
        } => (
            commit,
            StatusState::Failure,
            format!("rolled back ({hosts} ok): {reason}"),
        ),
        Event::Held {
            commit,
            hold_reason,
            reason,
        } => {
            let state = match hold_reason {
                HoldReason::InvalidCommit | HoldReason::UnsignedCommit => StatusState::Failure,
                HoldReason::DeletionGuard
                | HoldReason::SyncWindow
                | HoldReason::QuarantinedSpec => StatusState::Pending,
            };
            (
                commit,
                state,
                format!("held ({}): {reason}", hold_reason.code()),
            )
        }
        _ => return None,
    };
    if !is_full_commit(commit) {
        return None;
    }
    Some(CommitStatus {
        commit: commit.clone(),
        state,
        context: format!("convoy/{fleet}"),
        description: one_line(&description, STATUS_DESCRIPTION_CAP),
    })
}

/// Environment values shorter than this are not masked out of messages: `1`, `on` or `dev`
/// would blank words of every message and hide nothing worth hiding.
pub const HIDDEN_MIN_LEN: usize = 4;

/// What no message may show of a desired state: its secret values and the values of every
/// service's environment.
pub fn hidden_values(desired: &crate::model::spec::DesiredState) -> BTreeSet<String> {
    let mut out = desired.secret_values.clone();
    for stack in desired.stacks.values() {
        for service in stack.services.values() {
            out.extend(
                service
                    .container
                    .env
                    .values()
                    .filter(|v| v.chars().count() >= HIDDEN_MIN_LEN)
                    .cloned(),
            );
        }
    }
    out
}

/// 40 (SHA-1) or 64 (SHA-256) hex digits.
pub fn is_full_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
