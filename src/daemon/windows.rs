//! Sync windows under the daemon: when a commit comes into force, the stacks it changes that
//! a window holds keep the spec in force (`core::windows::merge_held`; with no state in force
//! yet, the plan is cut down to heals of what runs, `freeze`), every other stack's change goes
//! on. Per stack, as Argo CD does: the state in force is then the new commit with the held
//! stacks as they were, and status says which stacks wait for which window and until when.
//!
//! The whole new commit is kept aside (`target`) and becomes the candidate again when the
//! earliest window opens (a timer, nothing polls) or when `sync --force` releases it where the
//! windows allow manual syncs. The windows of the commit in force count as well as the new
//! commit's: a commit cannot lift the window that holds it. With nothing in force (a start),
//! the commit is planned once against what runs, so a stack that already runs it is not
//! reported held. Part of the `Daemon` state machine; it acts on nothing itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use super::{Daemon, Pending};
use crate::core::windows::{self, WindowHold};
use crate::model::outcome::{HoldReason, PassReason};
use crate::reconcile::Loaded;

/// What the daemon keeps of a commit that windows hold in part.
#[derive(Default)]
pub(super) struct Windows {
    /// The newest commit, whole, while a window holds some of its stacks.
    target: Option<Loaded>,
    /// When the earliest hold opens: the commit is decided again then.
    pub(super) wake: Option<Instant>,
    /// A forced sync released the windows that allow manual syncs for this commit.
    forced: Option<String>,
}

/// Unix seconds now.
fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Daemon {
    /// The desired state to bring into force for candidate `c`: `c` itself when no window
    /// holds a stack it changes, else `c` with those stacks kept as they run, and the hold to
    /// report.
    pub(super) async fn through_windows(&mut self, c: Loaded) -> (Loaded, Option<Pending>) {
        let now = now_secs();
        let base = self.loaded.as_ref();
        let none: &[crate::model::sync_window::SyncWindow] = &[];
        let in_force = base.map_or(none, |b| b.desired.settings.sync_windows.as_slice());
        let sets = [in_force, c.desired.settings.sync_windows.as_slice()];
        if sets.iter().all(|s| s.is_empty()) {
            self.clear_windows();
            return (c, None);
        }
        let changing: BTreeSet<String> = match base {
            Some(b) => {
                let mut s = windows::changed_stacks(&b.desired, &c.desired);
                s.extend(b.frozen.keys().cloned());
                s
            }
            // Nothing in force: what runs is unknown, every stack may change.
            None => c.desired.stacks.keys().cloned().collect(),
        };
        let mut holds = windows::holds(&sets, changing.iter().map(String::as_str), now);
        if base.is_none() && !holds.is_empty() {
            // Nothing in force (a start): a stack is held only if the commit would change
            // what runs; one that already runs it (a restart inside a window) is not.
            let mut probe = c.clone();
            probe.frozen = holds.clone();
            let memory = self.memory(&probe);
            let planned = crate::reconcile::observe_and_plan(&self.fleet, &probe, &memory).await;
            holds.retain(|s, _| planned.held.contains(s));
        }
        let base = self.loaded.as_ref();
        if self.windows.forced.as_deref() == Some(c.commit.as_str()) {
            for (stack, h) in &holds {
                if h.manual_sync {
                    tracing::warn!(commit = %c.commit, stack = %stack, window = h.window, "sync window overridden by a forced sync");
                }
            }
            holds.retain(|_, h| !h.manual_sync);
        }
        if holds.is_empty() {
            self.clear_windows();
            return (c, None);
        }
        let target = c.clone();
        let mut effective = c;
        match base {
            Some(b) => {
                // A stack frozen under the state in force stays frozen: its spec in force is
                // not known either.
                let merged: BTreeSet<String> = holds
                    .keys()
                    .filter(|s| !b.frozen.contains_key(*s))
                    .cloned()
                    .collect();
                effective.desired = windows::merge_held(&effective.desired, &b.desired, &merged);
                effective.frozen = holds
                    .iter()
                    .filter(|(s, _)| b.frozen.contains_key(*s))
                    .map(|(s, h)| (s.clone(), h.clone()))
                    .collect();
            }
            None => effective.frozen = holds.clone(),
        }
        let message = hold_message(&holds);
        tracing::warn!(commit = %target.commit, %message, "sync window: stacks held");
        let opens = holds.values().filter_map(|h| h.opens_at).min();
        self.windows.wake = opens.map(|t| {
            // A second after the opening, so the window is seen closed.
            Instant::now() + Duration::from_secs((t - now).max(0) as u64 + 1)
        });
        if self.windows.forced.as_deref() != Some(target.commit.as_str()) {
            self.windows.forced = None;
        }
        self.windows.target = Some(target.clone());
        let list: Vec<WindowHold> = holds.into_values().collect();
        self.publish(move |s| s.sync_windows = list);
        let pending = Pending {
            commit: target.commit,
            reason: HoldReason::SyncWindow,
            message,
            errors: Vec::new(),
        };
        (effective, Some(pending))
    }

    /// The whole commit that sync windows hold in part, for `GET /api/v1/diff`.
    pub(super) fn window_target(&self) -> Option<&Loaded> {
        self.windows.target.as_ref()
    }

    /// A note in `plan` for each stack a sync window holds.
    pub(super) fn note_window_holds(&self, plan: &mut crate::model::plan::Plan) {
        let holds = self.status.borrow().sync_windows.clone();
        plan.notes.extend(holds.iter().map(WindowHold::line));
    }

    fn clear_windows(&mut self) {
        self.windows = Windows::default();
        self.publish(|s| s.sync_windows.clear());
    }

    /// The window timer: the held commit is decided again (its other windows may still hold
    /// it; then the timer is set anew).
    pub(super) fn windows_due(&mut self, now: Instant) {
        if self.windows.wake.is_none_or(|at| at > now) {
            return;
        }
        self.windows.wake = None;
        self.release_target("sync window opened");
    }

    /// `sync --force`: the held commit comes back as the candidate with the windows that allow
    /// manual syncs overridden (the API refused already when none does).
    pub(super) fn force_windows(&mut self) {
        let Some(commit) = self.windows.target.as_ref().map(|t| t.commit.clone()) else {
            tracing::info!("--force: no commit is held by a sync window");
            return;
        };
        self.windows.forced = Some(commit);
        self.release_target("forced sync");
    }

    fn release_target(&mut self, why: &str) {
        // A newer commit (a candidate, or one held for another reason) replaces the one the
        // windows held: that one is not brought back over it.
        let newest = self.windows.target.as_ref().is_some_and(|t| {
            self.intake
                .pending
                .as_ref()
                .is_some_and(|p| p.commit == t.commit && p.reason == HoldReason::SyncWindow)
        });
        if self.candidate.is_some() || !newest {
            self.windows.target = None;
            return;
        }
        if let Some(t) = self.windows.target.take() {
            tracing::info!(commit = %t.commit, %why, "deciding the commit held by a sync window again");
            self.candidate = Some(t);
            self.request(PassReason::Requested { by: why.into() });
        }
    }
}

/// One line for status: each held stack, its window and when it opens.
fn hold_message(holds: &BTreeMap<String, WindowHold>) -> String {
    let parts: Vec<String> = holds
        .values()
        .map(|h| {
            let until = h
                .opens_at
                .map(|t| crate::model::time::rfc3339(t as f64))
                .unwrap_or_else(|| "no opening in sight".into());
            format!(
                "`{}` by window {} ({} `{}` {}) until {until}",
                h.stack,
                h.window,
                h.kind.code(),
                h.schedule,
                h.timezone
            )
        })
        .collect();
    let force = if holds.values().all(|h| h.manual_sync) {
        "; `convoy sync --force` applies it now"
    } else if holds.values().any(|h| h.manual_sync) {
        "; `convoy sync --force` applies it where manual_sync allows"
    } else {
        "; manual_sync: false, so no forced sync either"
    };
    format!(
        "held by sync windows (the other stacks' changes are applied): {}{force}",
        parts.join(", ")
    )
}
