//! The snapshot placement works from: what it knows of each host (labels, capacity, reachability,
//! cordon and drain) and of the replicas that exist, gathered from the desired and the observed
//! state and from what a daemon remembers of hosts it cannot see now.
//!
//! "the planning core is pure": it must not do I/O or read a clock; whether a host has been
//! unreachable long enough to be down comes in as an argument. It decides nothing about where a
//! replica goes, and it keeps its lists sorted so that nothing depends on the order of the
//! observation.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::spec::{Capacity, DesiredState};

use super::ReplicaKey;

/// What placement knows about one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Declared in `convoy.yaml`, else read from the engine; `None` when neither is known.
    pub capacity: Option<Capacity>,
    pub state: HostState,
    /// `cordon: true`: no new replicas.
    pub cordon: bool,
    /// `drain: true`: no replicas at all; its replicas move elsewhere.
    pub drain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HostState {
    /// Observed in this pass.
    Up,
    /// Not observed, but within `host_down_after` of its last contact (or no clock has watched
    /// it: a one-shot command). Its replicas stay assigned to it; nothing new goes there.
    Unreachable,
    /// Unreachable for longer than `host_down_after`: lost. Its replicas are placed elsewhere.
    Down,
}

/// A replica that exists on a host now (an owned container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExistingReplica {
    pub key: ReplicaKey,
    pub host: String,
    /// Running (or a completed one-shot) and not unhealthy or dead: eligible to stay put.
    pub healthy: bool,
    /// Creation time (RFC 3339) as the engine reports it: of two copies of one slot (a host came
    /// back after its replicas were placed elsewhere), the newer is the one placement made.
    pub created: String,
}

/// Everything placement needs, gathered from the desired and the observed state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub hosts: BTreeMap<String, HostFacts>,
    /// Unreachable hosts whose replicas are not known (no observation of them in memory: a
    /// one-shot command, or a daemon that started during the outage). A desired slot with no
    /// known copy anywhere is presumed to run on one of them rather than started a second time.
    pub unknown: std::collections::BTreeSet<String>,
    /// Sorted by key, then host.
    pub existing: Vec<ExistingReplica>,
}

/// Builds the placement snapshot. `down` names the hosts unreachable for longer than
/// `host_down_after` (the daemon's clock knows it; a one-shot command passes none).
/// `last_known` holds, for hosts not observed now, the replicas they ran when last observed
/// (a daemon's memory); an unreachable host without an entry is `unknown`.
pub fn snapshot(
    desired: &DesiredState,
    observed: &crate::model::observed::ObservedState,
    down: &std::collections::BTreeSet<String>,
    last_known: &BTreeMap<String, Vec<ExistingReplica>>,
) -> Snapshot {
    use crate::model::observed::{Health, ObservedHost, RunState};
    let mut hosts = BTreeMap::new();
    let mut existing = Vec::new();
    let mut unknown = std::collections::BTreeSet::new();
    for (name, spec) in &desired.hosts {
        let observed_host = observed.hosts.get(name);
        let snap = observed_host.and_then(ObservedHost::snapshot);
        let state = match (snap, down.contains(name)) {
            (Some(_), _) => HostState::Up,
            (None, true) => HostState::Down,
            (None, false) => HostState::Unreachable,
        };
        let engine_capacity = snap.map(|s| Capacity {
            nano_cpus: Some(s.nano_cpus).filter(|n| *n > 0),
            memory_bytes: Some(s.memory_bytes).filter(|n| *n > 0),
        });
        let capacity = match (spec.capacity, engine_capacity) {
            (Some(c), Some(e)) => Some(Capacity {
                nano_cpus: c.nano_cpus.or(e.nano_cpus),
                memory_bytes: c.memory_bytes.or(e.memory_bytes),
            }),
            (c, e) => c.or(e),
        };
        hosts.insert(
            name.clone(),
            HostFacts {
                name: name.clone(),
                labels: spec.labels.clone(),
                capacity,
                state,
                cordon: spec.cordon,
                drain: spec.drain,
            },
        );
        if let Some(snap) = snap {
            for c in snap.containers.values() {
                let one_shot_done = c.state == RunState::Exited && c.exit_code == 0;
                existing.push(ExistingReplica {
                    key: ReplicaKey {
                        stack: c.stack.clone(),
                        service: c.service.clone(),
                        slot: c.slot.clone(),
                    },
                    host: name.clone(),
                    healthy: (matches!(c.state, RunState::Running | RunState::Restarting)
                        || one_shot_done)
                        && c.health != Some(Health::Unhealthy),
                    created: c.created.clone(),
                });
            }
        } else if state == HostState::Unreachable {
            match last_known.get(name) {
                Some(known) => existing.extend(known.iter().cloned()),
                None => {
                    unknown.insert(name.clone());
                }
            }
        }
    }
    existing.sort_by(|a, b| (&a.key, &a.host).cmp(&(&b.key, &b.host)));
    Snapshot {
        hosts,
        unknown,
        existing,
    }
}
