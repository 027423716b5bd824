//! The deletion guard: whether a plan removes so much of what runs that a daemon should hold
//! the commit until a person releases it (`convoy sync --allow-prune`).
//!
//! A typo in a path, a bad merge or a commit that empties `stacks:` would otherwise take a
//! fleet down within a second of the push. The guard counts only removals that lower what runs
//! (a stack or service gone, fewer replicas, a host no longer eligible, a name nothing desires);
//! a replacement, a move off a lost host, the removal of a fenced duplicate or of a rollout's
//! kept previous replica keeps the count and never trips it. Pure: it reads a plan and an observation and decides nothing else.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::observed::{ObservedState, RunState};
use crate::model::plan::{Action, Plan, Reason};

/// Why a plan was found to remove too much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardTrip {
    /// Stacks whose every container the plan removes.
    pub stacks: BTreeSet<String>,
    /// Containers the plan removes, and how many of the fleet's containers run.
    pub removed: usize,
    pub running: usize,
    pub percent: u8,
}

impl GuardTrip {
    /// One line for status and logs.
    pub fn message(&self) -> String {
        let what = if self.stacks.is_empty() {
            format!(
                "it removes {} of {} running replicas, more than prune_guard {}%",
                self.removed, self.running, self.percent
            )
        } else {
            let names: Vec<&str> = self.stacks.iter().map(String::as_str).collect();
            format!(
                "it removes whole stacks ({}): {} of {} running replicas",
                names.join(", "),
                self.removed,
                self.running
            )
        };
        format!("held by the deletion guard: {what}; release it with `convoy sync --allow-prune`")
    }
}

/// Removals that lower what runs (not replacements, moves or fencing).
fn prunes(reason: &Reason) -> bool {
    matches!(
        reason,
        Reason::StackRemoved { .. }
            | Reason::ServiceRemoved { .. }
            | Reason::ScaledDown { .. }
            | Reason::NotDesired
            | Reason::HostIneligible
    )
}

/// The guard's percentage when the fleet file sets none.
pub const DEFAULT_PERCENT: u8 = 50;

/// The percentage a candidate commit is held with: the stricter of the commit in force's and
/// the candidate's `prune_guard`, so a commit cannot switch the guard off and prune in one go.
/// `in_force` is `None` when nothing is in force (a restart): then the candidate alone may not
/// loosen the default, or a held commit would pass on the next restart.
pub fn effective_percent(in_force: Option<Option<u8>>, candidate: Option<u8>) -> Option<u8> {
    match in_force {
        None => Some(candidate.unwrap_or(DEFAULT_PERCENT).min(DEFAULT_PERCENT)),
        Some(Some(a)) => Some(candidate.map_or(a, |b| a.min(b))),
        Some(None) => candidate,
    }
}

/// `Some` when `plan` removes a whole stack, or more than `percent` % of the running replicas
/// that `observed` shows. `percent: None` (the guard off) never trips.
pub fn check(plan: &Plan, observed: &ObservedState, percent: Option<u8>) -> Option<GuardTrip> {
    let percent = percent?;
    let running = observed
        .hosts
        .values()
        .filter_map(|h| h.snapshot())
        .flat_map(|s| s.containers.values())
        .filter(|c| c.state == RunState::Running)
        .count();
    let mut stacks = BTreeSet::new();
    let running_ids: BTreeSet<&str> = observed
        .hosts
        .values()
        .filter_map(|h| h.snapshot())
        .flat_map(|s| s.containers.values())
        .filter(|c| c.state == RunState::Running)
        .map(|c| c.id.as_str())
        .collect();
    // Per service: replicas the plan removes, and replicas it brings up (made, or started or
    // replaced in place of one that does not run, or put back). Removals count only by what
    // they take beyond what comes up in the same pass: a rollout interrupted with most
    // replicas stopped, then scaled down, lowers nothing.
    let mut pruned: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut brought_up: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for step in &plan.steps {
        match &step.action {
            // A kept previous replica of a rollout (`<name>.prev`) is a copy, not what runs.
            Action::Remove {
                stack,
                service,
                reason,
                name,
                ..
            } if prunes(reason) && !name.ends_with(crate::model::rollout::PREV_SUFFIX) => {
                *pruned.entry((stack, service)).or_default() += 1;
                if matches!(reason, Reason::StackRemoved { .. }) {
                    stacks.insert(stack.clone());
                }
            }
            Action::Create { replica, .. } => {
                *brought_up
                    .entry((&replica.stack, &replica.service))
                    .or_default() += 1;
            }
            Action::Replace {
                replica, old_id, ..
            } if !running_ids.contains(old_id.as_str()) => {
                *brought_up
                    .entry((&replica.stack, &replica.service))
                    .or_default() += 1;
            }
            Action::Start {
                stack, service, id, ..
            } if !running_ids.contains(id.as_str()) => {
                *brought_up.entry((stack, service)).or_default() += 1;
            }
            Action::Restore { stack, service, .. } => {
                *brought_up.entry((stack, service)).or_default() += 1;
            }
            _ => {}
        }
    }
    let removed: usize = pruned
        .iter()
        .map(|(key, n)| n.saturating_sub(brought_up.get(key).copied().unwrap_or(0)))
        .sum();
    let too_many = removed * 100 > usize::from(percent) * running;
    (removed > 0 && (!stacks.is_empty() || too_many)).then_some(GuardTrip {
        stacks,
        removed,
        running,
        percent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::pass::{assume_observed, plan_pass, HostMemory};
    use crate::core::testkit::{desired, service, stack};

    fn trip(
        before: &crate::model::spec::DesiredState,
        after: &crate::model::spec::DesiredState,
        percent: Option<u8>,
    ) -> Option<GuardTrip> {
        let observed = assume_observed(before, "c1");
        let pass = plan_pass(after, &observed, &HostMemory::default(), "c2");
        check(&pass.plan, &observed, percent)
    }

    #[test]
    fn the_stricter_percentage_counts_and_a_restart_never_loosens_the_default() {
        // Nothing in force: the candidate may tighten the default, never loosen or remove it.
        assert_eq!(effective_percent(None, None), Some(DEFAULT_PERCENT));
        assert_eq!(effective_percent(None, Some(20)), Some(20));
        assert_eq!(effective_percent(None, Some(90)), Some(DEFAULT_PERCENT));
        // A commit in force: the stricter of the two; the guard is off only when both say so.
        assert_eq!(effective_percent(Some(Some(30)), Some(70)), Some(30));
        assert_eq!(effective_percent(Some(Some(70)), Some(30)), Some(30));
        assert_eq!(effective_percent(Some(Some(30)), None), Some(30));
        assert_eq!(effective_percent(Some(None), Some(40)), Some(40));
        assert_eq!(effective_percent(Some(None), None), None);
    }

    #[test]
    fn a_scale_down_that_starts_more_than_it_removes_lowers_nothing() {
        let before = desired(&["h1"], vec![stack("web", vec![service("app", 12)])]);
        let after = desired(&["h1"], vec![stack("web", vec![service("app", 8)])]);
        // Everything runs: removing 4 of 12 is within 50 %, 4 of 6 is not.
        assert!(trip(&before, &after, Some(50)).is_none());
        assert!(trip(&before, &after, Some(30)).is_some());
        // An interrupted rollout left slots 1 to 8 stopped and 9 to 12 running: the scale-down
        // removes 4 of 4 running replicas but starts 8, so what runs goes up.
        let mut observed = assume_observed(&before, "c1");
        for h in observed.hosts.values_mut() {
            if let crate::model::observed::ObservedHost::Reachable(snap) = h {
                for c in snap.containers.values_mut() {
                    if c.slot.parse::<u32>().is_ok_and(|n| n <= 8) {
                        c.state = RunState::Exited;
                    }
                }
            }
        }
        let pass = plan_pass(&after, &observed, &HostMemory::default(), "c2");
        assert!(
            pass.plan
                .steps
                .iter()
                .any(|s| matches!(s.action, Action::Start { .. })),
            "the stopped replicas are started"
        );
        assert_eq!(check(&pass.plan, &observed, Some(50)), None);
    }

    #[test]
    fn removing_a_whole_stack_trips_it() {
        let before = desired(
            &["h1"],
            vec![
                stack("web", vec![service("app", 4)]),
                stack("db", vec![service("pg", 1)]),
            ],
        );
        let after = desired(&["h1"], vec![stack("web", vec![service("app", 4)])]);
        let t = trip(&before, &after, Some(50)).expect("a stack removed is held");
        assert_eq!(t.stacks, BTreeSet::from(["db".to_string()]));
        assert_eq!((t.removed, t.running), (1, 5));
        assert!(t.message().contains("whole stacks (db)"), "{}", t.message());
        assert_eq!(trip(&before, &after, None), None, "off never trips");
    }

    #[test]
    fn scaling_down_past_the_share_trips_it_and_below_does_not() {
        let before = desired(&["h1"], vec![stack("web", vec![service("app", 10)])]);
        let half = desired(&["h1"], vec![stack("web", vec![service("app", 5)])]);
        let most = desired(&["h1"], vec![stack("web", vec![service("app", 4)])]);
        assert_eq!(
            trip(&before, &half, Some(50)),
            None,
            "exactly 50% is allowed"
        );
        let t = trip(&before, &most, Some(50)).expect("60% removed is held");
        assert_eq!((t.removed, t.running), (6, 10));
        assert!(t.stacks.is_empty());
        assert_eq!(trip(&before, &most, Some(60)), None);
    }

    #[test]
    fn replacing_everything_is_not_a_prune() {
        let before = desired(&["h1"], vec![stack("web", vec![service("app", 3)])]);
        let mut changed = service("app", 3);
        changed.container.image = "busybox:2".into();
        let after = desired(&["h1"], vec![stack("web", vec![changed])]);
        assert_eq!(trip(&before, &after, Some(1)), None);
    }

    #[test]
    fn the_kept_replicas_of_a_rollout_do_not_count() {
        let before = desired(&["h1"], vec![stack("web", vec![service("app", 4)])]);
        let after = desired(&["h1"], vec![stack("web", vec![service("app", 2)])]);
        let mut observed = assume_observed(&before, "c1");
        // Every replica has a kept `.prev`, stopped, as an interrupted rollout leaves them.
        if let Some(crate::model::observed::ObservedHost::Reachable(s)) =
            observed.hosts.get_mut("h1")
        {
            let kept: Vec<_> = s
                .containers
                .values()
                .map(|c| {
                    let mut p = c.clone();
                    p.name = crate::model::rollout::prev_name(&c.name);
                    p.id = format!("{}-prev", c.id);
                    p.state = RunState::Exited;
                    p
                })
                .collect();
            for p in kept {
                s.containers.insert(p.name.clone(), p);
            }
        }
        let pass = plan_pass(&after, &observed, &HostMemory::default(), "c2");
        // Slots 3 and 4 go with their kept copies: 2 of 4 running, not 4.
        assert_eq!(check(&pass.plan, &observed, Some(50)), None);
        let t = check(&pass.plan, &observed, Some(40)).expect("50% > 40%");
        assert_eq!((t.removed, t.running), (2, 4));
    }
}
