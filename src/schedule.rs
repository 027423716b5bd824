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

use crate::spec::{DeployMode, DesiredState};

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

/// Places every replica of every service of `desired`.
pub fn place(desired: &DesiredState) -> Placement {
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
