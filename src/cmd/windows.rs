//! The sync windows of the one-shot commands: `apply` holds the stacks a window holds now
//! (their plan is cut down to heals of what runs, `core::windows::freeze`) unless `--force`
//! overrides a window that allows manual syncs; `diff` shows the whole change and says which
//! stacks of it a window holds and until when.
//!
//! A one-shot command knows no earlier desired state, so only the repository's own windows
//! count here (the daemon also counts those of the commit in force). It reads the clock; the
//! evaluation itself is pure.

use std::collections::BTreeMap;

use crate::core::windows::{self, WindowHold};
use crate::model::plan::Plan;
use crate::model::spec::DesiredState;

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The stacks of `desired` that its sync windows hold at `now`.
pub fn holds_now(desired: &DesiredState, now: i64) -> BTreeMap<String, WindowHold> {
    let sets = [desired.settings.sync_windows.as_slice()];
    windows::holds(&sets, desired.stacks.keys().map(String::as_str), now)
}

/// What `--force` does to `holds`: the windows that allow manual syncs let go (said on
/// stderr), those with `manual_sync: false` keep theirs (said too). Returns the holds left.
pub fn force(holds: BTreeMap<String, WindowHold>) -> BTreeMap<String, WindowHold> {
    let mut left = BTreeMap::new();
    for (stack, h) in holds {
        if h.manual_sync {
            tracing::warn!(stack = %stack, window = h.window, "sync window overridden by --force");
        } else {
            eprintln!(
                "refused: --force cannot override sync window {} (`{}`) for stack `{stack}`: it says manual_sync: false",
                h.window, h.schedule
            );
            left.insert(stack, h);
        }
    }
    left
}

/// Adds a note to `plan` for each held stack it has steps for: the change is shown, and
/// marked as waiting for its window.
pub fn note_holds(plan: &mut Plan, holds: &BTreeMap<String, WindowHold>) {
    let lines = held_lines(plan, holds);
    plan.notes.extend(lines);
}

/// One line for each held stack that `plan` would change.
pub fn held_lines(plan: &Plan, holds: &BTreeMap<String, WindowHold>) -> Vec<String> {
    holds
        .iter()
        .filter(|(stack, _)| {
            plan.steps
                .iter()
                .any(|s| windows::step_stack(&s.action) == Some(stack.as_str()))
                || plan.rollouts.iter().any(|r| &r.stack == *stack)
        })
        .map(|(_, h)| h.line())
        .collect()
}
