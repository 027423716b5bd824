//! The fleet's networks in the plan: which one of several networks of a name is kept, and the
//! steps that heal duplicates.
//!
//! Two processes creating a stack's network at once can leave two networks of one name; the
//! engine then refuses the name as ambiguous, so every engine call on a network uses its ID
//! (`Plan::network_ids`, `Action::RemoveNetwork::id`). The kept one is the one with the most
//! containers attached, then the oldest, then the lowest ID: a total order, so every process
//! that sees the same engine keeps the same one ("the planning core is pure"). A container of
//! the fleet attached to another one is replaced, so it comes up on the kept one; the others
//! are removed by ID once nothing of the fleet is attached. A container the fleet does not own
//! that is attached to one keeps it in place, with a note ("only what carries the fleet's label
//! is touched"); and a network goes only after the containers that used it ("removal is never
//! the side effect of an error").

use crate::model::plan::short_id;
use std::collections::{BTreeMap, BTreeSet};

use super::{Action, FieldChange, Planner};
use crate::model::observed::{
    HostSnapshot, ObservedContainer, ObservedNetwork, ObservedState, RunState,
};

/// The network kept among those of one name: the most containers attached, then the oldest,
/// then the lowest ID.
pub fn kept(nets: &[ObservedNetwork]) -> Option<&ObservedNetwork> {
    nets.iter().min_by(|a, b| {
        b.containers
            .len()
            .cmp(&a.containers.len())
            .then_with(|| a.created.cmp(&b.created))
            .then_with(|| a.id.cmp(&b.id))
    })
}

/// Host → network name → ID of the kept network, for every reachable host.
pub(super) fn kept_ids(observed: &ObservedState) -> BTreeMap<String, BTreeMap<String, String>> {
    observed
        .hosts
        .iter()
        .filter_map(|(host, o)| Some((host, o.snapshot()?)))
        .map(|(host, snap)| {
            let ids = snap
                .networks
                .iter()
                .filter_map(|(name, nets)| Some((name.clone(), kept(nets)?.id.clone())))
                .collect();
            (host.clone(), ids)
        })
        .collect()
}

/// When container `c` must be replaced to end up on the kept network of a name: the change
/// that says why. It is attached to another network of that name; or it was created but never
/// started on a name that is held more than once, so its start would find the name ambiguous
/// (the engine looks the network up again at start).
pub(super) fn on_duplicate(snap: &HostSnapshot, c: &ObservedContainer) -> Option<FieldChange> {
    snap.networks.iter().find_map(|(net, nets)| {
        let keep = kept(nets)?;
        let old = match nets
            .iter()
            .find(|n| n.id != keep.id && n.containers.contains(&c.name))
        {
            Some(extra) => format!("duplicate network {}", short_id(&extra.id)),
            None if nets.len() > 1
                && c.state == RunState::Created
                && c.actual.networks.contains_key(net) =>
            {
                format!("one of {} networks of that name", nets.len())
            }
            None => return None,
        };
        Some(FieldChange {
            field: format!("networks.{net}"),
            old,
            new: format!("network {}", short_id(&keep.id)),
        })
    })
}

impl Planner<'_> {
    /// Removal steps for the networks of `host`: every network of a name that no desired
    /// container there uses (after `removals` and `replaced`, the steps that free them), and
    /// every network of a used name but the kept one (after the steps that replace or remove
    /// what of the fleet is attached to it).
    pub(super) fn plan_network_removals(
        &mut self,
        host: &str,
        snap: &HostSnapshot,
        used: &BTreeSet<String>,
        removals: &[usize],
        replaced: &[usize],
    ) {
        for (name, nets) in &snap.networks {
            if !used.contains(name) {
                for net in nets {
                    let mut after = removals.to_vec();
                    after.extend(replaced.iter().copied());
                    self.remove_network(host, name, &net.id, after);
                }
                continue;
            }
            let Some(keep) = kept(nets) else { continue };
            for extra in nets.iter().filter(|n| n.id != keep.id) {
                match self.steps_freeing(host, snap, extra) {
                    Ok(after) => self.remove_network(host, name, &extra.id, after),
                    Err(why) => self.plan.notes.push(format!(
                        "network `{name}` on host `{host}` is there more than once; the copy {} stays: {why}",
                        short_id(&extra.id)
                    )),
                }
            }
        }
    }

    /// The steps after which nothing is attached to `net`; `Err` says why there are none.
    fn steps_freeing(
        &self,
        host: &str,
        snap: &HostSnapshot,
        net: &ObservedNetwork,
    ) -> Result<Vec<usize>, String> {
        let mut after = Vec::new();
        for c in &net.containers {
            if !snap.containers.contains_key(c) {
                return Err(format!(
                    "`{c}`, not of fleet `{}`, is attached to it",
                    self.desired.fleet
                ));
            }
            let step = self.plan.steps.iter().find(|s| {
                s.host == host
                    && match &s.action {
                        // By ID too: an adopted or renamed container is replaced under
                        // another name than the one attached.
                        Action::Replace {
                            replica, old_id, ..
                        } => {
                            &replica.name == c
                                || snap.containers.get(c).is_some_and(|o| &o.id == old_id)
                        }
                        Action::Remove { name, .. } => name == c,
                        _ => false,
                    }
            });
            match step {
                Some(s) => after.push(s.id),
                None => return Err(format!("`{c}` is attached to it")),
            }
        }
        Ok(after)
    }

    fn remove_network(&mut self, host: &str, name: &str, id: &str, after: Vec<usize>) {
        self.push(
            host,
            Action::RemoveNetwork {
                name: name.to_string(),
                id: id.to_string(),
            },
            after,
            vec![],
        );
    }
}

#[cfg(test)]
mod tests;
