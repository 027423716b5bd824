//! Services that share another's network namespace or volumes (`network_mode: service:<x>`,
//! `volumes_from: [x]`) run beside it: after placement, slot k of the dependent goes to the
//! host of slot k of each source (the manifest makes sure both have the same replicas, or
//! both are global, so the slots correspond), and is pending when a source's slot is pending
//! or when two sources are on different hosts. The planner then names the source replica to
//! the engine (`resolve`) and reads its ID back as that name (`normalise_actual`).
//!
//! Pure, as the scheduler. The dependent's own placement keys are not consulted (it goes
//! where its source is), and `container:<name>` sources are outside Convoy: nothing is
//! placed for them (the user pins the dependent with `x-convoy.hosts`).

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::{Assignment, Placement, ReplicaKey};
use crate::model::observed::HostSnapshot;
use crate::model::share::{network_source_service, ShareSource};
use crate::model::spec::{replica_name, ContainerSpec, DesiredState, MountSpec};

/// The services of the same stack whose replicas `spec`'s must run beside.
pub fn sources(spec: &ContainerSpec) -> BTreeSet<&str> {
    let mut out: BTreeSet<&str> = BTreeSet::new();
    out.extend(network_source_service(spec.network_mode.as_deref()));
    for v in &spec.share.volumes_from {
        if let ShareSource::Service(s) = &v.source {
            out.insert(s.as_str());
        }
    }
    out
}

/// Moves every dependent slot beside its sources' slot of the same name.
pub(super) fn follow_sources(desired: &DesiredState, placement: &mut Placement) {
    let dependents: Vec<(&str, &str, BTreeSet<&str>)> = desired
        .stacks
        .iter()
        .flat_map(|(st, stack)| {
            stack.services.iter().filter_map(move |(name, svc)| {
                let s = sources(&svc.container);
                (!s.is_empty()).then_some((st.as_str(), name.as_str(), s))
            })
        })
        .collect();
    // A chain (c beside b beside a) settles in as many rounds as it is long; cycles are
    // refused by the manifest, and the bound keeps this finite whatever it is given.
    for _ in 0..=dependents.len() {
        let mut changed = false;
        for (stack, service, srcs) in &dependents {
            let keys: Vec<ReplicaKey> = placement
                .replicas
                .keys()
                .filter(|k| k.stack == *stack && k.service == *service)
                .cloned()
                .collect();
            for key in keys {
                let want = beside(placement, &key, srcs);
                if placement.replicas.get(&key) != Some(&want) {
                    placement.replicas.insert(key, want);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// Where `key` goes: the one host of its sources' slots of the same name.
fn beside(placement: &Placement, key: &ReplicaKey, sources: &BTreeSet<&str>) -> Assignment {
    let mut host: Option<&str> = None;
    for src in sources {
        let skey = ReplicaKey {
            stack: key.stack.clone(),
            service: (*src).to_string(),
            slot: key.slot.clone(),
        };
        match placement.replicas.get(&skey) {
            Some(Assignment::Host { host: h }) => match host {
                Some(other) if other != h => {
                    return Assignment::Pending {
                        reason: format!("its sources run on different hosts (`{other}` and `{h}`)"),
                    }
                }
                _ => host = Some(h),
            },
            _ => {
                return Assignment::Pending {
                    reason: format!("runs beside `{src}` slot {}, which is not placed", key.slot),
                }
            }
        }
    }
    match host {
        Some(h) => Assignment::Host {
            host: h.to_string(),
        },
        None => Assignment::Pending {
            reason: "no source to run beside".into(),
        },
    }
}

/// Names the sources of a replica's spec to the engine: `service:<x>` becomes
/// `container:<engine name of x's replica of the same slot>`, and `volumes_from` the engine's
/// `<name>[:ro]` list.
pub fn resolve(desired: &DesiredState, stack: &str, slot: &str, spec: &mut ContainerSpec) {
    let name_of = |service: &str| match desired
        .stacks
        .get(stack)
        .and_then(|s| s.services.get(service))
    {
        Some(svc) => replica_name(stack, svc, slot),
        None => desired.replica_name(stack, service, slot),
    };
    if let Some(src) = network_source_service(spec.network_mode.as_deref()) {
        spec.network_mode = Some(format!("container:{}", name_of(src)));
    }
    spec.share.engine_volumes_from = spec
        .share
        .volumes_from
        .iter()
        .map(|v| {
            let name = match &v.source {
                ShareSource::Service(s) => name_of(s),
                ShareSource::Container(c) => c.clone(),
            };
            if v.read_only {
                format!("{name}:ro")
            } else {
                name
            }
        })
        .collect();
}

/// The inspected container in the resolved spec's terms: `container:<ID>` (what the engine
/// reports) as `container:<name>` when the ID is a container of the fleet on that host; a
/// namespace of a container outside the fleet (whose ID observation does not keep) taken as
/// the one asked for, since it cannot be checked; and, with `volumes_from`, only the mounts at
/// the spec's own targets (the others are the sources', which the engine adds).
pub fn normalise_actual<'a>(
    desired: &ContainerSpec,
    actual: &'a ContainerSpec,
    snap: &HostSnapshot,
) -> Cow<'a, ContainerSpec> {
    let mut out = Cow::Borrowed(actual);
    if let Some(id) = actual
        .network_mode
        .as_deref()
        .and_then(|m| m.strip_prefix("container:"))
    {
        let named = snap
            .containers
            .iter()
            .find(|(_, c)| c.id == id)
            .map(|(n, _)| format!("container:{n}"));
        let outside = desired
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
            .is_some_and(|n| !snap.containers.contains_key(n));
        let mode = match named {
            Some(n) => Some(n),
            None if outside => desired.network_mode.clone(),
            None => None,
        };
        if let Some(m) = mode {
            out.to_mut().network_mode = Some(m);
        }
    }
    if !desired.share.engine_volumes_from.is_empty() {
        let targets: BTreeSet<&str> = desired.mounts.iter().map(|m| m.target.as_str()).collect();
        let own: Vec<MountSpec> = actual
            .mounts
            .iter()
            .filter(|m| targets.contains(m.target.as_str()))
            .cloned()
            .collect();
        if own.len() != actual.mounts.len() {
            out.to_mut().mounts = own;
        }
    }
    out
}
