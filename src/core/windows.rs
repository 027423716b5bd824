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
//!   the new commit is cut down for held stacks (`core::frozen`): no spec changes, no removals;
//!   an exited, paused or unhealthy container is started again from its own config, and a
//!   missing one is created with its service's spec when a sibling runs that spec hash, else
//!   from the spec a running sibling carries (read back from the engine), else reported
//!   pending.
//!
//! Pure: no clock, no I/O ("the planning core is pure").

use std::collections::{BTreeMap, BTreeSet};

use crate::model::observed::ObservedState;
use crate::model::plan::{Action, Plan};
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
    crate::core::frozen::step_scope(a).map(|(stack, _)| stack)
}

/// Cuts `plan` down for the held stacks (see the module's paragraph; the cut itself is
/// `core::frozen::freeze`, shared with the services a `before:` job holds) and returns the
/// stacks of which something was held back. Rollouts of held stacks are dropped (a start in
/// place is no rollout); a missing replica whose spec runs nowhere is made from the spec a
/// running sibling carries, read back from the engine, and reported pending when none runs.
pub fn freeze(
    plan: &mut Plan,
    observed: &ObservedState,
    held: &BTreeMap<String, WindowHold>,
) -> BTreeSet<String> {
    let frozen = crate::core::frozen::Frozen {
        stacks: held
            .keys()
            .map(|s| {
                let holder = crate::core::frozen::Holder {
                    by: "held by a sync window".into(),
                    report_unmade: true,
                };
                (s.clone(), holder)
            })
            .collect(),
        services: BTreeMap::new(),
    };
    let touched = crate::core::frozen::freeze(plan, observed, &frozen);
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
