//! How commits come in: reading the source (a working directory's files, or the followed
//! branch's newest commit), fetching a remote (polled with jitter, or at once on a webhook or
//! `convoy sync`), and deciding what a new commit is: the candidate for the next pass, or held
//! with a reason (invalid, unsigned, removing too much) while the last good commit keeps
//! running.
//!
//! Part of the `Daemon` state machine. It never acts on the fleet: the deletion guard only
//! plans, and `pass` applies what was decided. "A commit that does not validate changes
//! nothing": a refused commit is reported once (by its content key, so the same content is not
//! tried twice) and the state in force stays.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{ApiRequest, CommitError, Daemon, Pending, Trigger};
use crate::core::guard;
use crate::infra::source::Source;
use crate::model::outcome::{HoldReason, PassReason};
use crate::reconcile::{self, LoadError, Loaded};

/// How long after a ref change or a fetch the branch is read: a push updates several refs.
const REFS_QUIET: Duration = Duration::from_millis(20);

/// What the daemon knows of commits that are not (yet) in force, and of fetching.
#[derive(Default)]
pub(super) struct Intake {
    /// The content key of the last read refused as invalid: that content is not tried again.
    refused_key: Option<String>,
    /// The newest commit not in force, and why.
    pub(super) pending: Option<Pending>,
    /// A valid commit held by the deletion guard; `sync --allow-prune` releases it.
    held: Option<Loaded>,
    /// The commit that `--allow-prune` released from the guard.
    allow_prune: Option<String>,
    pub(super) fetching: bool,
    pub(super) fetch_again: bool,
    /// Fetches in a row that failed (the next poll backs off).
    fetch_failures: u32,
    /// When a remote is fetched next (`None`: not a remote).
    pub(super) next_poll: Option<Instant>,
    rng: u64,
}

impl Intake {
    pub(super) fn new(remote: bool, poll: Duration) -> Intake {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id()) << 32;
        let mut intake = Intake {
            rng: seed | 1,
            ..Default::default()
        };
        if remote {
            intake.next_poll = Some(Instant::now() + intake.jittered(poll));
        }
        intake
    }

    /// `poll` ± 10 %: many daemons polling one server do not fetch in step.
    pub(super) fn jittered(&mut self, poll: Duration) -> Duration {
        // xorshift64: no dependency, and nothing here needs more than spreading.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng % 2001) as f64 / 1000.0 - 1.0; // -1.0 ..= 1.0
        poll.mul_f64(1.0 + 0.1 * unit)
    }

    /// A commit the daemon has already decided about (in force, candidate, held, refused).
    fn knows(&self, commit: &str, in_force: Option<&str>, candidate: Option<&str>) -> bool {
        // A held commit is known only while it is what status says is pending (a newer one
        // replaces it, and a branch moved back to it is read again).
        candidate == Some(commit)
            || self.pending.as_ref().is_some_and(|p| p.commit == commit)
            || (in_force == Some(commit) && self.pending.is_none())
    }
}

/// Starts a fetch of the remote in the background (one at a time; a request during one asks
/// for another after it). A local source has nothing to fetch: it is read at once.
pub(super) fn spawn_fetch(
    intake: &mut Intake,
    tasks: &mut JoinSet<()>,
    source: &Arc<dyn Source>,
    tx: &UnboundedSender<Trigger>,
) {
    if !source.is_remote() {
        let _ = tx.send(Trigger::Fetched { result: Ok(()) });
        return;
    }
    if intake.fetching {
        intake.fetch_again = true;
        return;
    }
    intake.fetching = true;
    let (source, tx) = (source.clone(), tx.clone());
    tasks.spawn(async move {
        // `fetch` runs git and blocks (bounded by its own timeout).
        let result = tokio::task::spawn_blocking(move || source.fetch().map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(format!("the fetch task failed: {e}")));
        let _ = tx.send(Trigger::Fetched { result });
    });
}

/// Whether `t`, arriving during a pass of `in_force`, brings a newer desired state: then the
/// pass stops waiting and the next plans from it.
pub(super) fn supersedes(
    source: &dyn Source,
    intake: &Intake,
    t: &Trigger,
    in_force: &Loaded,
    inputs: Option<&crate::model::tree::TreeInputs>,
) -> bool {
    match t {
        Trigger::Refs | Trigger::Fetched { result: Ok(()) } => source
            .latest()
            .is_ok_and(|c| !intake.knows(&c, Some(&in_force.commit), None)),
        Trigger::Files { changes } => {
            inputs.is_none_or(|i| changes.iter().any(|(p, cr)| i.concerns(p, *cr)))
        }
        _ => false,
    }
}

impl Daemon {
    /// Reads the source. A new commit that validates (and is signed, when that is required)
    /// becomes the candidate for the next pass; one that does not is held with its reason.
    /// Returns the reason for a pass when there is a new candidate.
    pub(super) fn reload(&mut self) -> Option<PassReason> {
        let source = self.source.clone();
        // A followed branch: its newest commit, that commit's signature, then its files, all
        // at that one commit (the branch may move meanwhile).
        let rev = if source.local_dir().is_some() {
            None
        } else {
            match source.latest() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the followed branch; keeping the last good state");
                    return None;
                }
            }
        };
        if let Some(commit) = &rev {
            let in_force = self.loaded.as_ref().map(|l| l.commit.as_str());
            let candidate = self.candidate.as_ref().map(|l| l.commit.as_str());
            if self.intake.knows(commit, in_force, candidate) {
                return None;
            }
            if let Err(why) = source.verify(commit) {
                tracing::error!(%commit, reason = %why, "the commit is not signed by an allowed key; nothing of it runs");
                self.hold(Pending {
                    commit: commit.clone(),
                    reason: HoldReason::UnsignedCommit,
                    message: why,
                    errors: Vec::new(),
                });
                return None;
            }
        }
        match reconcile::load(source.as_ref(), rev.as_deref()) {
            Ok(l)
                if self
                    .opts
                    .locked_fleet
                    .as_ref()
                    .is_some_and(|f| *f != l.desired.fleet) =>
            {
                let message = format!(
                    "convoy.yaml names fleet `{}`, not `{}` that this daemon locked: restart the daemon to follow it",
                    l.desired.fleet,
                    self.opts.locked_fleet.as_deref().unwrap_or_default()
                );
                tracing::error!(commit = %l.commit, %message, "keeping the last good state");
                self.inputs = Some(l.inputs.clone());
                self.hold(Pending {
                    commit: l.commit,
                    reason: HoldReason::InvalidCommit,
                    message,
                    errors: Vec::new(),
                });
                None
            }
            Ok(l) => {
                tracing::info!(commit = %l.commit, "desired state read");
                self.inputs = Some(l.inputs.clone());
                self.intake.refused_key = None;
                // A newer commit replaces whatever was held or refused before it.
                self.intake.held = None;
                self.intake.pending = None;
                let why = match rev {
                    Some(_) => PassReason::NewCommit {
                        commit: l.commit.clone(),
                    },
                    None => PassReason::FilesChanged,
                };
                self.candidate = Some(l);
                self.publish(|s| {
                    s.pending = None;
                    s.held = None;
                });
                Some(why)
            }
            Err(LoadError::Invalid {
                origin,
                commit,
                key,
                errors,
                inputs,
            }) => {
                self.inputs = Some(*inputs);
                let located: Vec<CommitError> = errors
                    .iter()
                    .map(|e| CommitError {
                        file: e.file.clone(),
                        line: e.line,
                        column: e.column,
                        key: e.key.clone(),
                        message: e.message.clone(),
                    })
                    .collect();
                let pending = Pending {
                    commit: commit.clone(),
                    reason: HoldReason::InvalidCommit,
                    message: format!(
                        "{} error(s) in {origin}; the last good commit stays applied",
                        errors.len()
                    ),
                    errors: located,
                };
                if key.is_some() && key == self.intake.refused_key {
                    // The same content again (a commit that changed nothing the fleet reads):
                    // said already; only the commit it is known by moves on.
                    tracing::debug!(%commit, "same content as the commit refused before");
                    self.hold(pending);
                    return None;
                }
                for e in &errors {
                    tracing::error!(
                        %commit,
                        file = %e.file,
                        line = e.line,
                        column = e.column,
                        key = %e.key,
                        error = %e,
                        "invalid manifest"
                    );
                }
                tracing::error!(
                    errors = errors.len(),
                    origin = %origin,
                    %commit,
                    "the repository does not validate; keeping the last good state"
                );
                self.counters.commit_errors += 1;
                self.intake.refused_key = key;
                self.hold(pending);
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the repository; keeping the last good state");
                match rev {
                    // A commit that cannot be read (its `--path` missing, a file over its cap)
                    // is refused like one that does not validate, once.
                    Some(commit) => {
                        self.counters.commit_errors += 1;
                        self.hold(Pending {
                            commit,
                            reason: HoldReason::InvalidCommit,
                            message: e.to_string(),
                            errors: Vec::new(),
                        });
                    }
                    None if self.loaded.is_none() => {
                        self.publish(|s| s.held = Some(HoldReason::InvalidCommit));
                    }
                    None => {}
                }
                None
            }
        }
    }

    /// A commit is not in force, for `pending.reason`: said in status (and readiness, when
    /// there is nothing else to wait for).
    fn hold(&mut self, pending: Pending) {
        // A commit held by the guard that a newer one replaces can no longer be released:
        // `--allow-prune` releases only what status shows.
        if self
            .intake
            .held
            .as_ref()
            .is_some_and(|h| h.commit != pending.commit)
        {
            self.intake.held = None;
        }
        let reason = pending.reason;
        let new = self
            .intake
            .pending
            .as_ref()
            .is_none_or(|p| p.commit != pending.commit || p.reason != pending.reason);
        if new {
            self.record_hold(&pending);
            self.notifications.held(
                self.loaded.as_ref(),
                &pending.commit,
                pending.reason,
                &pending.message,
            );
        }
        self.intake.pending = Some(pending.clone());
        let counters = self.counters.clone();
        self.publish(move |s| {
            s.counters = counters;
            s.pending = Some(pending);
            s.held = Some(reason);
            // Nothing will run until a better commit comes: the daemon is as ready as it gets.
            s.ready = true;
        });
    }

    /// The history entry of a commit newly held.
    fn record_hold(&self, pending: &Pending) {
        let fleet = self
            .opts
            .locked_fleet
            .clone()
            .or_else(|| self.loaded.as_ref().map(|l| l.desired.fleet.clone()))
            .unwrap_or_default();
        let trigger = if self.loaded.is_none() && self.passes == 0 {
            PassReason::Start
        } else if self.source.local_dir().is_some() {
            PassReason::FilesChanged
        } else {
            PassReason::NewCommit {
                commit: pending.commit.clone(),
            }
        };
        let entry = crate::model::history::entry_from_hold(crate::model::history::Hold {
            fleet: &fleet,
            commit: &pending.commit,
            reason: pending.reason,
            trigger,
            message: &pending.message,
            errors: pending
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}:{}:{}: {}: {}",
                        e.file, e.line, e.column, e.key, e.message
                    )
                })
                .collect(),
            at: super::history::now(),
        });
        self.record_history(entry, super::history::Dedup::SameHold);
    }

    /// A fetch ended: on success the branch is read shortly; on failure it is counted, and the
    /// next poll backs off.
    pub(super) fn fetched(&mut self, result: Result<(), String>) {
        if self.source.is_remote() {
            self.counters.git_fetches += 1;
            // Published now, not at the end of the pass it leads to (a rollout can be long).
            let counters = self.counters.clone();
            self.publish(move |s| s.counters = counters);
        }
        self.intake.fetching = false;
        match result {
            Ok(()) => {
                // The credentials file may have been rotated since the last fetch.
                crate::reconcile::register_secrets(&self.source.secrets().into_iter().collect());
                let branch = self.source.followed_branch();
                self.publish(move |s| s.branch = branch);
                self.intake.fetch_failures = 0;
                self.reload_at = Some(Instant::now() + REFS_QUIET);
            }
            Err(e) => {
                self.counters.git_fetch_errors += 1;
                self.intake.fetch_failures = self.intake.fetch_failures.saturating_add(1);
                // 1 s, 2 s, 4 s, ... up to the poll interval: a broken server is not hammered.
                let retry = Duration::from_secs(1u64 << (self.intake.fetch_failures - 1).min(16))
                    .min(self.opts.poll);
                tracing::warn!(error = %e, retry_in_ms = retry.as_millis() as u64, "fetching the remote failed; the last good commit stays applied");
                if self.intake.next_poll.is_some() {
                    self.intake.next_poll = Some(Instant::now() + retry);
                }
                let counters = self.counters.clone();
                self.publish(move |s| s.counters = counters);
            }
        }
        if std::mem::take(&mut self.intake.fetch_again) {
            self.fetch();
        }
    }

    /// A ref of the followed local repository changed: read it shortly.
    pub(super) fn refs_changed(&mut self) {
        self.reload_at = Some(Instant::now() + REFS_QUIET);
    }

    pub(super) fn fetch(&mut self) {
        spawn_fetch(&mut self.intake, &mut self.tasks, &self.source, &self.tx);
    }

    /// The poll timer: fetch, and schedule the next one.
    pub(super) fn poll_due(&mut self, now: Instant) {
        if self.intake.next_poll.is_some_and(|at| at <= now) {
            let next = self.intake.jittered(self.opts.poll);
            self.intake.next_poll = Some(now + next);
            self.fetch();
        }
    }

    /// What the API asks.
    pub(super) async fn api(&mut self, r: ApiRequest) {
        match r {
            ApiRequest::Sync { allow_prune } => {
                if allow_prune {
                    match self.intake.held.take() {
                        Some(held) => {
                            tracing::warn!(commit = %held.commit, "the deletion guard is released for this commit by request");
                            self.intake.allow_prune = Some(held.commit.clone());
                            self.candidate = Some(held);
                        }
                        None => {
                            tracing::info!("--allow-prune: no commit is held by the deletion guard")
                        }
                    }
                }
                self.request(PassReason::Requested { by: "api".into() });
                self.fetch();
            }
            ApiRequest::ForceWindows => self.force_windows(),
            ApiRequest::Fetch { cause } => {
                tracing::debug!(?cause, "fetch requested");
                self.fetch();
            }
            ApiRequest::Diff { reply } => {
                let _ = reply.send(self.diff().await);
            }
            ApiRequest::DiffText { reply } => {
                let _ = reply.send(self.diff_text().await);
            }
            ApiRequest::RunJob { name, reply } => {
                let _ = reply.send(self.run_job_now(&name).await);
            }
        }
    }

    /// The plan of the newest valid commit (candidate, held, or in force) against the fleet,
    /// as `convoy diff --output json` prints it.
    async fn diff(&self) -> Result<String, String> {
        let plan = self.diff_plan().await?;
        Ok(crate::render::plan::plan_json(&plan))
    }

    /// The plan `diff` shows (the dashboard renders it as text).
    pub(super) async fn diff_plan(&self) -> Result<crate::model::plan::Plan, String> {
        // The branch's newest commit is what the diff is of: one that cannot be planned says
        // why instead of showing an older commit's plan.
        if let Some(p) = &self.intake.pending {
            if p.reason != HoldReason::DeletionGuard && p.reason != HoldReason::SyncWindow {
                return Err(format!(
                    "the branch's commit {} is held ({}): {}",
                    p.commit,
                    p.reason.code(),
                    p.message
                ));
            }
        }
        let newest = self
            .candidate
            .as_ref()
            .or(self.intake.held.as_ref())
            .or(self.window_target())
            .or(self.loaded.as_ref())
            .ok_or_else(|| "no valid commit has been read yet".to_string())?;
        let memory = self.memory(newest);
        let mut planned = reconcile::observe_and_plan(&self.fleet, newest, &memory).await;
        // The whole change of a commit sync windows hold, with a note of what waits.
        self.note_window_holds(&mut planned.pass.plan);
        Ok(planned.pass.plan)
    }

    /// The candidate, if any, either comes into force or is held by the deletion guard (which
    /// plans it against what runs now; the stricter of the two commits' `prune_guard` counts,
    /// so a commit cannot switch the guard off and prune in one go).
    pub(super) async fn decide_candidate(&mut self) {
        let Some(c) = self.candidate.take() else {
            return;
        };
        let percent = guard::effective_percent(
            self.loaded
                .as_ref()
                .map(|l| l.desired.settings.prune_guard_percent),
            c.desired.settings.prune_guard_percent,
        );
        let released = self.intake.allow_prune.as_deref() == Some(c.commit.as_str());
        let trip = if released || percent.is_none() {
            None
        } else {
            let memory = self.memory(&c);
            let planned = reconcile::observe_and_plan(&self.fleet, &c, &memory).await;
            guard::check(&planned.pass.plan, &planned.observed, percent)
        };
        match trip {
            Some(trip) => {
                let message = trip.message();
                tracing::warn!(commit = %c.commit, %message, "commit held");
                self.hold(Pending {
                    commit: c.commit.clone(),
                    reason: HoldReason::DeletionGuard,
                    message,
                    errors: Vec::new(),
                });
                self.intake.held = Some(c);
            }
            None => {
                // Sync windows: the stacks they hold keep what runs; the rest comes in.
                let (c, window_hold) = self.through_windows(c).await;
                tracing::info!(commit = %c.commit, "commit in force");
                let (commit, time) = (c.commit.clone(), c.commit_time);
                self.intake.pending = None;
                self.intake.allow_prune = None;
                self.fleet.align(&c.desired).await;
                self.loaded = Some(c);
                self.sync_hosts();
                self.publish(move |s| {
                    s.commit = Some(commit);
                    s.commit_time = time;
                    s.pending = None;
                    s.held = None;
                });
                if let Some(p) = window_hold {
                    self.hold(p);
                }
            }
        }
    }
}
