//! Placement: which host runs each replica of each service.
//!
//! Pure: desired state and the names of the fleet's hosts in, an assignment of every replica
//! slot to a host (or `Pending` with the reason) out. This is the simple rule: `x-convoy.hosts`
//! (default: every host) lists where a service may run; a replicated service's replicas are dealt
//! round-robin over those hosts in name order; a global service gets one replica on each, whose
//! slot is the host's name. It must not read a clock or do I/O: the same input gives the same
//! placement, byte for byte.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::spec::{Capacity, DeployMode, DesiredState};

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
    /// Sorted by key, then host.
    pub existing: Vec<ExistingReplica>,
}

/// Builds the placement snapshot. `down` names the hosts unreachable for longer than
/// `host_down_after` (the daemon's clock knows it; a one-shot command passes none).
pub fn snapshot(
    desired: &DesiredState,
    observed: &crate::observed::ObservedState,
    down: &std::collections::BTreeSet<String>,
) -> Snapshot {
    use crate::observed::{Health, ObservedHost, RunState};
    let mut hosts = BTreeMap::new();
    let mut existing = Vec::new();
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
        }
    }
    existing.sort_by(|a, b| (&a.key, &a.host).cmp(&(&b.key, &b.host)));
    Snapshot { hosts, existing }
}

/// Places every replica of every service of `desired`.
pub fn place(desired: &DesiredState, snap: &Snapshot) -> Placement {
    let _ = snap;
    let mut replicas = BTreeMap::new();
    for (stack_name, stack) in &desired.stacks {
        for (service_name, service) in &stack.services {
            let eligible: Vec<&String> = match &service.placement.hosts {
                Some(names) => desired.hosts.keys().filter(|h| names.contains(h)).collect(),
                None => desired.hosts.keys().collect(),
            };
            let key = |slot: String| ReplicaKey {
                stack: stack_name.clone(),
                service: service_name.clone(),
                slot,
            };
            match service.mode {
                DeployMode::Global => {
                    for host in eligible {
                        replicas.insert(key(host.clone()), Assignment::Host { host: host.clone() });
                    }
                }
                DeployMode::Replicated => {
                    for i in 0..service.replicas as usize {
                        let assignment = if eligible.is_empty() {
                            Assignment::Pending {
                                reason: "no eligible host (x-convoy.hosts matches none)".into(),
                            }
                        } else {
                            Assignment::Host {
                                host: eligible[i % eligible.len()].clone(),
                            }
                        };
                        replicas.insert(key((i + 1).to_string()), assignment);
                    }
                }
            }
        }
    }
    Placement { replicas }
}
