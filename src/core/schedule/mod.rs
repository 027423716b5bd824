//! Placement: which host runs each replica of each service (Compose's Swarm-style `deploy` keys).
//!
//! "the planning core is pure": a [`Snapshot`] of the hosts and of the replicas that exist in,
//! an assignment of every desired replica slot to a host (or `Pending` with a reason) out. It must
//! not do I/O, read a clock, draw random numbers or let `HashMap` order show: the same snapshot
//! gives the same placement. It decides nothing about containers; `plan` turns a placement into
//! steps (a replica assigned elsewhere than where it runs is moved, one with no assignment
//! removed).
//!
//! The order, which makes the greedy bin packing reproducible:
//! 1. Eligibility per service: host not `Down`, not `drain`, in `x-convoy.hosts` (when given),
//!    every constraint holds (a missing label is `!=` anything, never `==`). New replicas go only
//!    to eligible hosts that are `Up` and not `cordon`.
//! 2. Sticky pass, services by (stack, service), slots in numeric order: an existing copy of a
//!    desired slot stays where it is if its host is eligible and it is healthy or its host is Up
//!    (of several copies: Up host first, then healthy, then newest `created`, then host name), and
//!    if it still has room (ports, `max_replicas_per_node`, reservations against capacity);
//!    otherwise it is placed anew in step 3. Sticky replicas consume room before any new one.
//!    A slot with no known copy anywhere sticks to an `Unreachable` host whose replicas are
//!    unknown if a placement that treats such hosts as up and empty puts it there: it may run
//!    there, and a second copy must not be started blind.
//! 3. New replicas, service by service: global services first (one possible host per replica),
//!    then fewest eligible hosts, then largest memory then CPU reservation, then (stack, service);
//!    a service waits for the services it `depends_on`. A service with a pending dependency
//!    keeps its sticky replicas; its new ones are pending. Slots in numeric order; the host is,
//!    among eligible hosts with room, the one with the fewest replicas of this service in its
//!    spread group (per spread key, outermost first), then on the host, then the most free
//!    memory, then the name. A replica is pending only if no eligible host has room at its turn.
//!
//! Nothing moves to even out the spread: a new host only receives new replicas.
//!
//! The parts: `snapshot` gathers what placement knows, `placer` runs the three steps, `reasons`
//! words why a replica is pending; this file holds the result types and [`place`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::spec::DesiredState;

pub mod colocate;
mod placer;
mod reasons;
mod snapshot;
#[cfg(test)]
mod tests;

use placer::Placer;
pub use snapshot::{snapshot, ExistingReplica, HostFacts, HostState, Snapshot};

/// One replica of one service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ReplicaKey {
    pub stack: String,
    pub service: String,
    /// `1`, `2`, ... for replicated services; the host name for global ones.
    pub slot: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Assignment {
    Host { host: String },
    Pending { reason: String },
}

/// Every desired replica and where it goes, in a deterministic order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub replicas: BTreeMap<ReplicaKey, Assignment>,
}

impl Placement {
    /// The host a replica is assigned to, if any.
    pub fn host_of(&self, key: &ReplicaKey) -> Option<&str> {
        match self.replicas.get(key) {
            Some(Assignment::Host { host }) => Some(host),
            _ => None,
        }
    }
}

/// Places every replica of every service of `desired` on the hosts of `snap` (see the module
/// comment for the order).
pub fn place(desired: &DesiredState, snap: &Snapshot) -> Placement {
    let mut placement = place_alone(desired, snap);
    // Services sharing another's namespace or volumes go beside it (`colocate`).
    colocate::follow_sources(desired, &mut placement);
    placement
}

/// [`place`] before the services that share another's namespace are moved beside it.
fn place_alone(desired: &DesiredState, snap: &Snapshot) -> Placement {
    if snap.unknown.is_empty() {
        return Placer::new(desired, snap, &BTreeMap::new()).run();
    }
    // Where would the unseen hosts' replicas be? Place once as if they were up and empty: the
    // slots that go to an unseen host there are presumed to run on it now.
    let mut visible = snap.clone();
    visible.unknown.clear();
    for h in visible.hosts.values_mut() {
        if snap.unknown.contains(&h.name) {
            h.state = HostState::Up;
        }
    }
    let presumed: BTreeMap<ReplicaKey, String> = Placer::new(desired, &visible, &BTreeMap::new())
        .run()
        .replicas
        .into_iter()
        .filter_map(|(k, a)| match a {
            Assignment::Host { host } if snap.unknown.contains(&host) => Some((k, host)),
            _ => None,
        })
        .collect();
    Placer::new(desired, snap, &presumed).run()
}
