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

/// The engine's endpoint links of a replica on `host`: `<engine name>:<alias>` for each
/// replica of each linked service placed on the same host (a link is a per-host name), sorted.
pub fn resolve_links(
    desired: &DesiredState,
    placement: &Placement,
    stack: &str,
    host: Option<&str>,
    spec: &mut ContainerSpec,
) {
    let mut out = Vec::new();
    for link in &spec.share.links {
        for (k, a) in &placement.replicas {
            if k.stack != stack || k.service != link.service {
                continue;
            }
            if matches!(a, Assignment::Host { host: h } if Some(h.as_str()) == host) {
                out.push(format!(
                    "{}:{}",
                    desired.replica_name(stack, &k.service, &k.slot),
                    link.alias
                ));
            }
        }
    }
    out.sort();
    spec.share.engine_links = out;
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

#[cfg(test)]
mod tests {
    use super::super::{place, ExistingReplica, HostFacts, HostState, Snapshot};
    use super::*;
    use crate::core::testkit;
    use crate::model::observed::ObservedContainer;
    use crate::model::spec::{DeployMode, ServiceSpec};
    use proptest::prelude::*;

    fn facts(name: &str) -> HostFacts {
        HostFacts {
            name: name.into(),
            labels: Default::default(),
            capacity: None,
            state: HostState::Up,
            cordon: false,
            drain: false,
        }
    }

    fn sharing(
        name: &str,
        replicas: u32,
        network_of: Option<&str>,
        volumes_of: &[&str],
    ) -> ServiceSpec {
        let mut s = testkit::service(name, replicas);
        s.container.network_mode = network_of.map(|n| format!("service:{n}"));
        s.container.share.volumes_from = volumes_of
            .iter()
            .map(|v| crate::model::share::VolumesFrom {
                source: ShareSource::Service(v.to_string()),
                read_only: false,
            })
            .collect();
        s
    }

    fn host_of<'p>(p: &'p Placement, service: &str, slot: &str) -> Option<&'p str> {
        p.host_of(&ReplicaKey {
            stack: "s".into(),
            service: service.into(),
            slot: slot.into(),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// Whatever the hosts, the replicas, where copies already run and which hosts the
        /// source may use, every placed dependent slot is on its source slot's host, and a
        /// dependent slot is placed exactly when its source slot is.
        #[test]
        fn a_dependent_is_always_on_its_sources_host(
            n_hosts in 1usize..5,
            replicas in 1u32..5,
            allowed in proptest::collection::vec(any::<bool>(), 4),
            running in proptest::collection::vec((0usize..5, 0usize..5), 0..6),
            global in any::<bool>(),
        ) {
            let names: Vec<String> = (0..n_hosts).map(|i| format!("h{i}")).collect();
            let mut web = testkit::service("web", replicas);
            let pinned: Vec<String> = names.iter().zip(&allowed).filter(|(_, a)| **a).map(|(n, _)| n.clone()).collect();
            if !pinned.is_empty() {
                web.placement.hosts = Some(pinned);
            }
            let mut side = sharing("side", replicas, Some("web"), &[]);
            let mut tail = sharing("tail", replicas, None, &["side"]);
            if global {
                for s in [&mut web, &mut side, &mut tail] {
                    s.mode = DeployMode::Global;
                }
            }
            let d = testkit::desired(&[], vec![testkit::stack("s", vec![web, side, tail])]);
            let existing = running
                .iter()
                .filter(|(h, _)| *h < n_hosts)
                .map(|(h, slot)| ExistingReplica {
                    key: ReplicaKey { stack: "s".into(), service: "side".into(), slot: (slot + 1).to_string() },
                    host: names[*h].clone(),
                    healthy: true,
                    created: "2024-01-01T00:00:00Z".into(),
                })
                .collect();
            let snap = Snapshot {
                unknown: Default::default(),
                hosts: names.iter().map(|n| (n.clone(), facts(n))).collect(),
                existing,
            };
            let p = place(&d, &snap);
            for (k, a) in &p.replicas {
                if k.service == "web" {
                    continue;
                }
                let source = if k.service == "side" { "web" } else { "side" };
                let src = host_of(&p, source, &k.slot);
                match a {
                    Assignment::Host { host } => prop_assert_eq!(Some(host.as_str()), src, "{:?}", k),
                    Assignment::Pending { .. } => prop_assert_eq!(src, None, "{:?}", k),
                }
            }
        }
    }

    #[test]
    fn two_sources_on_different_hosts_leave_the_dependent_pending() {
        let mut a = testkit::service("a", 1);
        a.placement.hosts = Some(vec!["h1".into()]);
        let mut b = testkit::service("b", 1);
        b.placement.hosts = Some(vec!["h2".into()]);
        let c = sharing("c", 1, Some("a"), &["b"]);
        let d = testkit::desired(&[], vec![testkit::stack("s", vec![a, b, c])]);
        let snap = Snapshot {
            unknown: Default::default(),
            hosts: ["h1", "h2"]
                .iter()
                .map(|n| (n.to_string(), facts(n)))
                .collect(),
            existing: vec![],
        };
        let p = place(&d, &snap);
        let key = ReplicaKey {
            stack: "s".into(),
            service: "c".into(),
            slot: "1".into(),
        };
        assert_eq!(
            p.replicas[&key],
            Assignment::Pending {
                reason: "its sources run on different hosts (`h1` and `h2`)".into()
            }
        );
    }

    fn observed(name: &str, id: &str) -> ObservedContainer {
        ObservedContainer {
            id: id.into(),
            name: name.into(),
            stack: "s".into(),
            service: "web".into(),
            slot: "1".into(),
            spec_hash: String::new(),
            commit: String::new(),
            created: String::new(),
            image_id: String::new(),
            state: crate::model::observed::RunState::Running,
            exit_code: 0,
            health: None,
            restart_count: 0,
            actual: ContainerSpec::default(),
            image_defaults: Default::default(),
        }
    }

    #[test]
    fn the_engines_container_id_is_read_as_the_name_of_the_fleets_container() {
        let mut snap = HostSnapshot::default();
        snap.containers
            .insert("s-web-1".into(), observed("s-web-1", "abc123"));
        let desired = ContainerSpec {
            network_mode: Some("container:s-web-1".into()),
            ..Default::default()
        };
        let actual = ContainerSpec {
            network_mode: Some("container:abc123".into()),
            ..Default::default()
        };
        assert_eq!(
            normalise_actual(&desired, &actual, &snap)
                .network_mode
                .as_deref(),
            Some("container:s-web-1")
        );
        // The source gone (replaced behind Convoy's back): its old ID names nothing, drift.
        let stale = ContainerSpec {
            network_mode: Some("container:gone999".into()),
            ..Default::default()
        };
        assert_eq!(
            normalise_actual(&desired, &stale, &snap)
                .network_mode
                .as_deref(),
            Some("container:gone999")
        );
        // A container outside the fleet: its ID is not observed, so it is not compared.
        let outside = ContainerSpec {
            network_mode: Some("container:vpn".into()),
            ..Default::default()
        };
        assert_eq!(
            normalise_actual(&outside, &stale, &snap)
                .network_mode
                .as_deref(),
            Some("container:vpn")
        );
    }

    #[test]
    fn with_volumes_from_only_the_specs_own_mounts_are_compared() {
        let mount = |t: &str| MountSpec {
            kind: crate::model::spec::MountKind::Volume,
            source: format!("v{t}"),
            target: t.into(),
            read_only: false,
        };
        let mut desired = ContainerSpec {
            mounts: vec![mount("/own")],
            ..Default::default()
        };
        desired.share.engine_volumes_from = vec!["s-web-1".into()];
        let actual = ContainerSpec {
            mounts: vec![mount("/own"), mount("/shared")],
            ..Default::default()
        };
        let snap = HostSnapshot::default();
        assert_eq!(
            normalise_actual(&desired, &actual, &snap).mounts,
            [mount("/own")]
        );
        desired.share.engine_volumes_from.clear();
        assert_eq!(normalise_actual(&desired, &actual, &snap).mounts.len(), 2);
    }

    /// `volumes_from` is read back as the engine keeps it: the same list is no drift, another
    /// one is.
    #[test]
    fn volumes_from_is_compared_as_the_engine_keeps_it() {
        let mut desired = ContainerSpec::default();
        desired.share.engine_volumes_from = vec!["s-web-1:ro".into()];
        let mut actual = desired.clone();
        actual.share.volumes_from.clear();
        let drift = |a: &ContainerSpec| {
            crate::core::drift::container_drift(
                &desired,
                a,
                &Default::default(),
                &Default::default(),
            )
        };
        assert!(drift(&actual).is_empty(), "{:?}", drift(&actual));
        actual.share.engine_volumes_from = vec!["s-web-1".into()];
        let changes = drift(&actual);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            (
                changes[0].field.as_str(),
                changes[0].old.as_str(),
                changes[0].new.as_str()
            ),
            ("volumes_from", "s-web-1", "s-web-1:ro")
        );
    }

    /// A link names the linked service's replicas on the linker's host only.
    #[test]
    fn links_name_the_linked_replicas_on_the_same_host() {
        let mut app = testkit::service("app", 1);
        app.container.share.links = vec![crate::model::share::Link {
            service: "db".into(),
            alias: "database".into(),
        }];
        let d = testkit::desired(
            &[],
            vec![testkit::stack("s", vec![app, testkit::service("db", 3)])],
        );
        let mut p = Placement::default();
        for (slot, host) in [("1", "h1"), ("2", "h2"), ("3", "h1")] {
            p.replicas.insert(
                ReplicaKey {
                    stack: "s".into(),
                    service: "db".into(),
                    slot: slot.into(),
                },
                Assignment::Host { host: host.into() },
            );
        }
        let mut spec = d.stacks["s"].services["app"].container.clone();
        resolve_links(&d, &p, "s", Some("h1"), &mut spec);
        assert_eq!(
            spec.share.engine_links,
            ["s-db-1:database", "s-db-3:database"]
        );
        resolve_links(&d, &p, "s", Some("h9"), &mut spec);
        assert!(spec.share.engine_links.is_empty());
    }
}
