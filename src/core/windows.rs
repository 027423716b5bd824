//! Sync windows, evaluated: at a time `t` (Unix seconds, an argument), may a new commit change
//! a stack; if not, which window holds it and when changes are allowed again. And what a pass
//! plans for a held stack: the spec it was running, healed, with nothing of the new commit.
//!
//! A stack is held inside an open `deny` window that names it, or, when any `allow` window
//! names it, outside every open one of those. A window is open from each scheduled time for
//! `duration`; windows whose durations reach the next scheduled time stay open across it
//! (a duration longer than the period is one long window).
//!
//! Two ways to keep a held stack as it runs:
//! - `merge_held`: the daemon knows the desired state in force, and a held stack keeps that
//!   state's spec (a removed container is created again from it);
//! - `freeze`: with no earlier state (a one-shot `apply`, a daemon's first commit), the plan of
//!   the new commit is cut down for held stacks: no spec changes, no removals; an exited,
//!   paused or unhealthy container is started again from its own config, and a missing one is
//!   created only when its service's spec is unchanged (a sibling runs the same spec hash).
//!
//! Pure: no clock, no I/O ("the planning core is pure").

use std::collections::{BTreeMap, BTreeSet};

use crate::model::observed::{Health, ObservedContainer, ObservedState, RunState};
use crate::model::plan::{Action, PendingReplica, Plan, Reason};
use crate::model::spec::DesiredState;
pub use crate::model::sync_window::WindowHold;
use crate::model::sync_window::{SyncWindow, WindowKind};

/// How many scheduled times a search for a window's end, or for the next opening, follows:
/// a window that is still open after this many chained periods (`* * * * *` for `2m`) is
/// reported as opening at no foreseeable time rather than searched for ever.
const MAX_CHAIN: usize = 2_000;

/// Whether `w` is open at `t`.
pub fn is_open(w: &SyncWindow, t: i64) -> bool {
    // The latest start has the latest end: only it needs checking.
    w.schedule
        .last_at_or_before(t)
        .is_some_and(|s| t < s.saturating_add(w.duration_secs))
}

/// When `w`, open at `t`, closes: the end of its last start, followed through every start
/// that comes before the window has closed. `None` when it is not open, or stays open past
/// the search horizon.
pub fn closes_at(w: &SyncWindow, t: i64) -> Option<i64> {
    let mut start = w.schedule.last_at_or_before(t)?;
    let mut end = start.saturating_add(w.duration_secs);
    if t >= end {
        return None;
    }
    for _ in 0..MAX_CHAIN {
        match w.schedule.next_after(start) {
            Some(next) if next <= end => {
                start = next;
                end = end.max(next.saturating_add(w.duration_secs));
            }
            _ => return Some(end),
        }
    }
    None
}

/// The window that holds `stack` at `t`, if any: an open deny window first, else (when allow
/// windows name the stack and none is open) the allow window that opens first. Its
/// `opens_at` is filled in by `hold_at`.
fn blocker(windows: &[SyncWindow], stack: &str, t: i64) -> Option<(usize, bool)> {
    let naming = || windows.iter().enumerate().filter(|(_, w)| w.names(stack));
    let denies: Vec<usize> = naming()
        .filter(|(_, w)| w.kind == WindowKind::Deny && is_open(w, t))
        .map(|(i, _)| i)
        .collect();
    if let Some(&first) = denies.first() {
        let manual = denies.iter().all(|&i| windows[i].manual_sync);
        return Some((first, manual));
    }
    let allows: Vec<usize> = naming()
        .filter(|(_, w)| w.kind == WindowKind::Allow)
        .map(|(i, _)| i)
        .collect();
    if allows.is_empty() || allows.iter().any(|&i| is_open(&windows[i], t)) {
        return None;
    }
    let next = allows
        .iter()
        .min_by_key(|&&i| windows[i].schedule.next_after(t).unwrap_or(i64::MAX))
        .copied()?;
    let manual = allows.iter().all(|&i| windows[i].manual_sync);
    Some((next, manual))
}

/// The earliest time at or after `t` when no window of any of `sets` holds `stack`.
fn next_free(sets: &[&[SyncWindow]], stack: &str, t: i64) -> Option<i64> {
    let mut at = t;
    for _ in 0..MAX_CHAIN {
        let mut later = at;
        let mut held = false;
        for windows in sets {
            let naming = windows.iter().filter(|w| w.names(stack));
            for w in naming.clone() {
                if w.kind == WindowKind::Deny && is_open(w, at) {
                    held = true;
                    later = later.max(closes_at(w, at)?);
                }
            }
            let allows: Vec<&SyncWindow> = naming.filter(|w| w.kind == WindowKind::Allow).collect();
            if !allows.is_empty() && !allows.iter().any(|w| is_open(w, at)) {
                held = true;
                let opens = allows
                    .iter()
                    .filter_map(|w| w.schedule.next_after(at))
                    .min()?;
                later = later.max(opens);
            }
        }
        if !held {
            return Some(at);
        }
        if later <= at {
            return None;
        }
        at = later;
    }
    None
}

/// Why `stack` is held at `t` by the windows of `sets` (the commit in force's and the new
/// one's: a commit cannot lift the window that holds it), or `None` when a change may go on.
pub fn hold_at(sets: &[&[SyncWindow]], stack: &str, t: i64) -> Option<WindowHold> {
    let mut found: Option<(usize, &SyncWindow)> = None;
    let mut manual = true;
    // The last set is the newest commit's: its index is the one reported first.
    for windows in sets.iter().rev() {
        if let Some((i, m)) = blocker(windows, stack, t) {
            manual &= m;
            found.get_or_insert((i, &windows[i]));
        }
    }
    let (i, w) = found?;
    Some(WindowHold {
        stack: stack.to_string(),
        window: i,
        kind: w.kind,
        schedule: w.schedule.text().to_string(),
        timezone: w.schedule.timezone().to_string(),
        manual_sync: manual,
        opens_at: next_free(sets, stack, t),
    })
}

/// Every stack of `stacks` held at `t`, by name.
pub fn holds<'s>(
    sets: &[&[SyncWindow]],
    stacks: impl IntoIterator<Item = &'s str>,
    t: i64,
) -> BTreeMap<String, WindowHold> {
    stacks
        .into_iter()
        .filter_map(|s| hold_at(sets, s, t).map(|h| (s.to_string(), h)))
        .collect()
}

/// The stacks whose desired state differs between `base` and `new` (added, removed or
/// changed): what a new commit would change.
pub fn changed_stacks(base: &DesiredState, new: &DesiredState) -> BTreeSet<String> {
    base.stacks
        .keys()
        .chain(new.stacks.keys())
        .filter(|s| base.stacks.get(*s) != new.stacks.get(*s))
        .cloned()
        .collect()
}

/// `new` with each stack of `held` as `base` has it (absent when `base` has none): the state
/// a pass applies while those stacks wait for their window. Fleet-wide settings are the new
/// commit's; the held stacks' files and secret values come along from `base`.
pub fn merge_held(
    new: &DesiredState,
    base: &DesiredState,
    held: &BTreeSet<String>,
) -> DesiredState {
    let mut out = new.clone();
    for stack in held {
        match base.stacks.get(stack) {
            Some(spec) => {
                out.stacks.insert(stack.clone(), spec.clone());
            }
            None => {
                out.stacks.remove(stack);
            }
        }
        let prefix = format!("{stack}/");
        for (k, v) in &base.files.secrets {
            if k.starts_with(&prefix) {
                out.files.secrets.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in &base.files.blobs {
        out.files
            .blobs
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    out.secret_values.extend(base.secret_values.iter().cloned());
    out
}

/// The stack a step acts on, when it acts on one.
pub fn step_stack(a: &Action) -> Option<&str> {
    match a {
        Action::Create { replica, .. } | Action::Replace { replica, .. } => Some(&replica.stack),
        Action::Start { stack, .. }
        | Action::Remove { stack, .. }
        | Action::CreateNetwork { stack, .. }
        | Action::CreateVolume { stack, .. }
        | Action::Restore { stack, .. } => Some(stack),
        Action::RemoveNetwork { .. } | Action::RecordQuarantine { .. } => None,
    }
}

/// What a held stack may still do of a step: the step itself when it changes no spec (a heal
/// with the spec that runs), a start of the container in place from its own config, or
/// nothing.
fn held_step(a: Action, host: &str, observed: &ObservedState) -> Option<Action> {
    let find = |id: &str| -> Option<&ObservedContainer> {
        observed
            .hosts
            .get(host)?
            .snapshot()?
            .containers
            .values()
            .find(|c| c.id == id)
    };
    let runs_hash = |stack: &str, service: &str, hash: &str| {
        observed
            .hosts
            .values()
            .filter_map(|h| h.snapshot())
            .flat_map(|s| s.containers.values())
            .any(|c| c.stack == stack && c.service == service && c.spec_hash == hash)
    };
    match a {
        // A missing replica: made again only when its service still runs this very spec.
        Action::Create { ref replica, .. } => {
            runs_hash(&replica.stack, &replica.service, &replica.spec_hash).then_some(a)
        }
        Action::Replace {
            ref replica,
            ref old_id,
            ..
        } => {
            let old = find(old_id)?;
            if old.spec_hash == replica.spec_hash {
                return Some(a);
            }
            let reason = match (old.state, old.health) {
                (RunState::Exited, _) => Reason::Stopped {
                    exit_code: old.exit_code,
                },
                (RunState::Created, _) => Reason::NeverStarted,
                (RunState::Paused, _) => Reason::Paused,
                (RunState::Running, Some(Health::Unhealthy)) => Reason::Unhealthy,
                _ => return None,
            };
            Some(Action::Start {
                stack: replica.stack.clone(),
                service: replica.service.clone(),
                name: old.name.clone(),
                id: old.id.clone(),
                reason,
            })
        }
        Action::Start { .. } | Action::Restore { .. } => Some(a),
        // A copy of a slot that also runs elsewhere is a heal; every other removal is a change.
        Action::Remove {
            reason: Reason::Fenced { .. },
            ..
        } => Some(a),
        Action::Remove { .. } => None,
        // Networks and volumes of a held stack: only those its kept steps need (below).
        other => Some(other),
    }
}

/// Cuts `plan` down for the held stacks (see the module's paragraph) and returns the stacks
/// of which something was held back. Rollouts of held stacks are dropped (a start in place is
/// no rollout), and a held replica that cannot be made from what runs is reported pending.
pub fn freeze(
    plan: &mut Plan,
    observed: &ObservedState,
    held: &BTreeMap<String, WindowHold>,
) -> BTreeSet<String> {
    let mut touched = BTreeSet::new();
    if held.is_empty() {
        return touched;
    }
    let steps = std::mem::take(&mut plan.steps);
    let mut kept = Vec::with_capacity(steps.len());
    let mut resources = Vec::new();
    for mut step in steps {
        let Some(stack) = step_stack(&step.action).map(str::to_string) else {
            kept.push(step);
            continue;
        };
        if !held.contains_key(&stack) {
            kept.push(step);
            continue;
        }
        let before = step.action.clone();
        let pending = match &before {
            Action::Create { replica, .. } => Some(PendingReplica {
                stack: replica.stack.clone(),
                service: replica.service.clone(),
                slot: replica.slot.clone(),
                reason: "held by a sync window: its spec runs nowhere to be made from".into(),
            }),
            _ => None,
        };
        match held_step(step.action, &step.host, observed) {
            Some(a) => {
                if a != before {
                    touched.insert(stack.clone());
                }
                let resource = matches!(
                    a,
                    Action::CreateNetwork { .. } | Action::CreateVolume { .. }
                );
                step.action = a;
                if resource {
                    resources.push(step);
                } else {
                    kept.push(step);
                }
            }
            None => {
                touched.insert(stack.clone());
                if let Some(p) = pending {
                    plan.pending.push(p);
                }
            }
        }
    }
    // A held stack's network or volume is made only when a kept step needs it.
    let needed: BTreeSet<usize> = kept.iter().flat_map(|s| s.after.iter().copied()).collect();
    for r in resources {
        if needed.contains(&r.id) {
            kept.push(r);
        } else if let Some(s) = step_stack(&r.action) {
            touched.insert(s.to_string());
        }
    }
    kept.sort_by_key(|s| s.id);
    let ids: BTreeSet<usize> = kept.iter().map(|s| s.id).collect();
    for s in &mut kept {
        s.after.retain(|id| ids.contains(id));
    }
    plan.steps = kept;
    plan.rollouts.retain(|r| {
        let keep = !held.contains_key(&r.stack);
        if !keep {
            touched.insert(r.stack.clone());
        }
        keep
    });
    for stack in &touched {
        if let Some(h) = held.get(stack) {
            plan.notes.push(h.line());
        }
    }
    touched
}

#[cfg(test)]
#[path = "windows_tests.rs"]
mod tests;
