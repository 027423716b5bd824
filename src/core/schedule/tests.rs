//! Tests of placement: table tests of each rule of the order the module comment gives (spread,
//! constraints, ports, reservations, dependencies, stickiness, host states), and property tests
//! that any placement keeps the rules and that placing again what it placed moves nothing.
//!
//! They only call `place` on hand-made snapshots: they must not build an observed state, read
//! anything outside the crate or depend on `HashMap` order, so a failure always replays.

use super::placer::statically_eligible;
use super::reasons::{bytes_text, cpu_text};
use super::*;
use crate::core::testkit::{self, service as svc};
use crate::model::spec::{
    Capacity, Constraint, ConstraintAttribute, DependsCondition, DeployMode,
    Placement as ServicePlacement, PortBinding, ServiceSpec,
};
use proptest::prelude::*;
use std::collections::BTreeSet;

const GIB: i64 = 1 << 30;

fn host(name: &str, labels: &[(&str, &str)]) -> HostFacts {
    HostFacts {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        capacity: None,
        state: HostState::Up,
        cordon: false,
        drain: false,
    }
}

fn hosts(names: &[&str]) -> Vec<HostFacts> {
    names.iter().map(|n| host(n, &[])).collect()
}

fn port(host_ip: &str, p: u16) -> PortBinding {
    PortBinding {
        host_ip: host_ip.into(),
        host_port: Some(p),
        container_port: 80,
        protocol: "tcp".into(),
    }
}

fn label(key: &str, equal: bool, value: &str) -> Constraint {
    Constraint {
        attribute: ConstraintAttribute::Label(key.into()),
        equal,
        value: value.into(),
    }
}

/// One stack `s` holding `services`, and no hosts: placement reads its hosts from the snapshot.
fn desired(services: Vec<ServiceSpec>) -> DesiredState {
    testkit::desired(&[], vec![testkit::stack("s", services)])
}

fn snap(hosts: Vec<HostFacts>, existing: Vec<ExistingReplica>) -> Snapshot {
    Snapshot {
        unknown: Default::default(),
        hosts: hosts.into_iter().map(|h| (h.name.clone(), h)).collect(),
        existing,
    }
}

fn key(service: &str, slot: &str) -> ReplicaKey {
    ReplicaKey {
        stack: "s".into(),
        service: service.into(),
        slot: slot.into(),
    }
}

fn existing(service: &str, slot: &str, host: &str) -> ExistingReplica {
    ExistingReplica {
        key: key(service, slot),
        host: host.into(),
        healthy: true,
        created: "2024-01-01T00:00:00Z".into(),
    }
}

/// Every replica of `service` as (slot, host or "-").
fn hosts_of(p: &Placement, service: &str) -> Vec<(String, String)> {
    p.replicas
        .iter()
        .filter(|(k, _)| k.service == service)
        .map(|(k, a)| {
            let h = match a {
                Assignment::Host { host } => host.clone(),
                Assignment::Pending { .. } => "-".into(),
            };
            (k.slot.clone(), h)
        })
        .collect()
}

fn per_host(p: &Placement, service: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, h) in hosts_of(p, service) {
        *m.entry(h).or_insert(0) += 1;
    }
    m
}

fn reason(p: &Placement, service: &str, slot: &str) -> String {
    match &p.replicas[&key(service, slot)] {
        Assignment::Pending { reason } => reason.clone(),
        a => panic!("{service}.{slot} is not pending: {a:?}"),
    }
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(h, n)| (h.to_string(), *n)).collect()
}

#[test]
fn default_spread_is_over_hosts() {
    let p = place(
        &desired(vec![svc("web", 5)]),
        &snap(hosts(&["a", "b", "c"]), vec![]),
    );
    assert_eq!(per_host(&p, "web"), counts(&[("a", 2), ("b", 2), ("c", 1)]));
}

#[test]
fn spread_by_zone_splits_evenly_over_zone_values() {
    let mut web = svc("web", 4);
    web.placement.spread = vec!["zone".into()];
    let h = vec![
        host("a1", &[("zone", "a")]),
        host("a2", &[("zone", "a")]),
        host("b1", &[("zone", "b")]),
    ];
    let p = place(&desired(vec![web]), &snap(h, vec![]));
    assert_eq!(
        per_host(&p, "web"),
        counts(&[("a1", 1), ("a2", 1), ("b1", 2)])
    );
}

#[test]
fn hierarchical_spread_and_hosts_without_the_label_form_a_group() {
    let mut web = svc("web", 6);
    web.placement.spread = vec!["zone".into(), "rack".into()];
    let h = vec![
        host("a1", &[("zone", "a"), ("rack", "1")]),
        host("a2", &[("zone", "a"), ("rack", "1")]),
        host("a3", &[("zone", "a"), ("rack", "2")]),
        host("b1", &[("zone", "b"), ("rack", "1")]),
        host("n1", &[]),
    ];
    let p = place(&desired(vec![web]), &snap(h, vec![]));
    // Two per zone group (a, b, no zone); inside zone a one per rack.
    assert_eq!(
        per_host(&p, "web"),
        counts(&[("a1", 1), ("a3", 1), ("b1", 2), ("n1", 2)])
    );
}

#[test]
fn constraints_equal_not_equal_and_missing_label() {
    let h = vec![
        host("a", &[("zone", "a")]),
        host("b", &[("zone", "b")]),
        host("n", &[]),
    ];
    let mut eq = svc("eq", 2);
    eq.placement.constraints = vec![label("zone", true, "a")];
    let mut ne = svc("ne", 4);
    ne.placement.constraints = vec![label("zone", false, "a")];
    let mut host_ne = svc("hostne", 2);
    host_ne.placement.constraints = vec![Constraint {
        attribute: ConstraintAttribute::Hostname,
        equal: false,
        value: "b".into(),
    }];
    let mut none = svc("none", 1);
    none.placement.constraints = vec![label("zone", true, "c")];
    let p = place(&desired(vec![eq, ne, host_ne, none]), &snap(h, vec![]));
    assert_eq!(per_host(&p, "eq"), counts(&[("a", 2)]));
    assert_eq!(per_host(&p, "ne"), counts(&[("b", 2), ("n", 2)]));
    assert_eq!(per_host(&p, "hostne"), counts(&[("a", 1), ("n", 1)]));
    assert_eq!(
        reason(&p, "none", "1"),
        "no host matches node.labels.zone==c"
    );
}

#[test]
fn x_convoy_hosts_limits_the_hosts() {
    let mut web = svc("web", 3);
    web.placement.hosts = Some(vec!["b".into(), "c".into(), "zz".into()]);
    let mut lost = svc("lost", 1);
    lost.placement.hosts = Some(vec!["zz".into()]);
    let p = place(
        &desired(vec![web, lost]),
        &snap(hosts(&["a", "b", "c"]), vec![]),
    );
    assert_eq!(per_host(&p, "web"), counts(&[("b", 2), ("c", 1)]));
    assert_eq!(
        reason(&p, "lost", "1"),
        "no host of the fleet is in x-convoy.hosts (zz)"
    );
}

#[test]
fn max_replicas_per_node_caps_and_says_so() {
    let mut web = svc("web", 5);
    web.placement.max_replicas_per_node = Some(2);
    let p = place(&desired(vec![web]), &snap(hosts(&["a", "b"]), vec![]));
    assert_eq!(per_host(&p, "web"), counts(&[("a", 2), ("b", 2), ("-", 1)]));
    assert_eq!(
        reason(&p, "web", "5"),
        "max_replicas_per_node 2 reached on all 2 eligible hosts"
    );
}

#[test]
fn published_ports_are_exclusive_across_services() {
    let mut a = svc("a", 1);
    a.container.ports = vec![port("", 8080)];
    let mut b = svc("b", 2);
    b.container.ports = vec![port("127.0.0.1", 8080)];
    // Different IPs do not clash with each other, but both clash with the wildcard.
    let mut c = svc("c", 1);
    c.container.ports = vec![port("127.0.0.2", 8080)];
    let mut free = svc("free", 2);
    free.container.ports = vec![PortBinding {
        host_port: None,
        ..port("", 0)
    }];
    let p = place(
        &desired(vec![a, b, c, free]),
        &snap(hosts(&["h1", "h2"]), vec![]),
    );
    let a_host = p.host_of(&key("a", "1")).unwrap().to_string();
    let other = if a_host == "h1" { "h2" } else { "h1" };
    assert_eq!(p.host_of(&key("b", "1")), Some(other));
    assert_eq!(
        reason(&p, "b", "2"),
        "port 8080/tcp is taken on all eligible hosts"
    );
    assert_eq!(p.host_of(&key("c", "1")), Some(other));
    assert_eq!(per_host(&p, "free"), counts(&[("h1", 1), ("h2", 1)]));
}

#[test]
fn reservation_that_fits_nowhere_names_memory_and_hosts() {
    let mut h = hosts(&["edge-1", "edge-2"]);
    h[0].capacity = Some(Capacity {
        nano_cpus: None,
        memory_bytes: Some(GIB),
    });
    h[1].capacity = Some(Capacity {
        nano_cpus: Some(4_000_000_000),
        memory_bytes: Some(2 * GIB),
    });
    let mut big = svc("big", 1);
    big.reserve_memory_bytes = Some(4 * GIB);
    let mut small = svc("small", 3);
    small.reserve_memory_bytes = Some(GIB);
    small.reserve_nano_cpus = Some(500_000_000);
    let p = place(&desired(vec![big, small]), &snap(h, vec![]));
    assert_eq!(
        reason(&p, "big", "1"),
        "no host has room: needs 4 GiB memory (edge-1: 1 GiB free, edge-2: 2 GiB free)"
    );
    // Most free memory first: edge-2 twice, then edge-1.
    assert_eq!(
        per_host(&p, "small"),
        counts(&[("edge-1", 1), ("edge-2", 2)])
    );
}

#[test]
fn a_service_depending_on_a_pending_one_is_pending_transitively() {
    let mut db = svc("db", 1);
    db.placement.constraints = vec![label("zone", true, "c")];
    let mut api = svc("api", 2);
    api.depends_on = [("db".to_string(), DependsCondition::ServiceStarted)].into();
    let mut web = svc("web", 1);
    web.depends_on = [("api".to_string(), DependsCondition::ServiceStarted)].into();
    let other = svc("other", 1);
    let p = place(
        &desired(vec![db, api, web, other]),
        &snap(hosts(&["a"]), vec![existing("api", "1", "a")]),
    );
    // The running replica stays (nothing is removed because a dependency cannot grow);
    // the new one waits, and so does everything that depends on the service.
    assert_eq!(p.host_of(&key("api", "1")), Some("a"));
    assert_eq!(reason(&p, "api", "2"), "depends on pending service `db`");
    assert_eq!(reason(&p, "web", "1"), "depends on pending service `api`");
    assert_eq!(p.host_of(&key("other", "1")), Some("a"));
}

#[test]
fn slots_that_may_run_on_an_unseen_host_are_not_started_twice() {
    // A one-shot command cannot see host b and does not know what it runs: the slots with
    // no known copy are presumed there, not started a second time on a.
    let mut h = hosts(&["a", "b", "c"]);
    h[1].state = HostState::Unreachable;
    h[2].state = HostState::Unreachable;
    let mut s = snap(h, vec![existing("app", "1", "a")]);
    s.unknown = ["b".to_string(), "c".to_string()].into();
    let p = place(&desired(vec![svc("app", 3)]), &s);
    assert_eq!(p.host_of(&key("app", "1")), Some("a"));
    // Placed as if b and c were up: one replica each.
    assert_eq!(p.host_of(&key("app", "2")), Some("b"));
    assert_eq!(p.host_of(&key("app", "3")), Some("c"));
    // A fourth slot would go to a visible host even with them up: it is started there.
    let mut h = hosts(&["a", "b"]);
    h[1].state = HostState::Unreachable;
    let mut s = snap(h, vec![]);
    s.unknown = ["b".to_string()].into();
    let p = place(&desired(vec![svc("app", 2)]), &s);
    assert_eq!(p.host_of(&key("app", "1")), Some("a"));
    assert_eq!(p.host_of(&key("app", "2")), Some("b"));
    // Known to be empty (a daemon saw it last): the slots are placed on a.
    let mut h = hosts(&["a", "b"]);
    h[1].state = HostState::Unreachable;
    let p = place(
        &desired(vec![svc("app", 2)]),
        &snap(h, vec![existing("app", "1", "a")]),
    );
    assert_eq!(p.host_of(&key("app", "2")), Some("a"));
}

#[test]
fn a_down_host_is_never_presumed() {
    let mut h = hosts(&["a", "b"]);
    h[1].state = HostState::Down;
    let mut s = snap(h, vec![]);
    s.unknown = ["b".to_string()].into();
    let p = place(&desired(vec![svc("app", 2)]), &s);
    assert_eq!(p.host_of(&key("app", "1")), Some("a"));
    assert_eq!(p.host_of(&key("app", "2")), Some("a"));
}

#[test]
fn cordon_keeps_existing_but_takes_nothing_new() {
    let mut h = hosts(&["a", "b"]);
    h[0].cordon = true;
    let ex = vec![existing("web", "1", "a")];
    let p = place(&desired(vec![svc("web", 3)]), &snap(h.clone(), ex));
    assert_eq!(per_host(&p, "web"), counts(&[("a", 1), ("b", 2)]));
    h[1].cordon = true;
    let p = place(&desired(vec![svc("web", 1)]), &snap(h, vec![]));
    assert_eq!(
        reason(&p, "web", "1"),
        "no eligible host takes new replicas (a: cordoned, b: cordoned)"
    );
}

#[test]
fn drain_moves_everything() {
    let mut h = hosts(&["a", "b"]);
    h[0].drain = true;
    let ex = vec![existing("web", "1", "a"), existing("web", "2", "a")];
    let p = place(&desired(vec![svc("web", 2)]), &snap(h, ex));
    assert_eq!(per_host(&p, "web"), counts(&[("b", 2)]));
}

#[test]
fn unreachable_keeps_healthy_replicas_and_takes_nothing_new() {
    let mut h = hosts(&["a", "b"]);
    h[0].state = HostState::Unreachable;
    let mut sick = existing("web", "2", "a");
    sick.healthy = false;
    let ex = vec![existing("web", "1", "a"), sick];
    let p = place(&desired(vec![svc("web", 3)]), &snap(h, ex));
    assert_eq!(
        hosts_of(&p, "web"),
        vec![
            ("1".into(), "a".into()),
            ("2".into(), "b".into()),
            ("3".into(), "b".into())
        ]
    );
}

#[test]
fn unhealthy_replica_on_an_up_host_stays() {
    let mut sick = existing("web", "1", "b");
    sick.healthy = false;
    let p = place(
        &desired(vec![svc("web", 1)]),
        &snap(hosts(&["a", "b"]), vec![sick]),
    );
    assert_eq!(p.host_of(&key("web", "1")), Some("b"));
}

#[test]
fn down_moves_replicated_and_does_not_replace_global() {
    let mut h = hosts(&["a", "b", "c"]);
    h[0].state = HostState::Down;
    let mut agent = svc("agent", 0);
    agent.mode = DeployMode::Global;
    let ex = vec![
        existing("web", "1", "a"),
        existing("web", "2", "b"),
        existing("agent", "a", "a"),
        existing("agent", "b", "b"),
    ];
    let p = place(&desired(vec![svc("web", 2), agent]), &snap(h, ex));
    assert_eq!(
        hosts_of(&p, "web"),
        vec![("1".into(), "c".into()), ("2".into(), "b".into())]
    );
    assert_eq!(
        hosts_of(&p, "agent"),
        vec![("b".into(), "b".into()), ("c".into(), "c".into())]
    );
}

#[test]
fn stickiness_survives_scaling_and_new_hosts() {
    let d3 = desired(vec![svc("web", 3)]);
    let first = place(&d3, &snap(hosts(&["a", "b", "c"]), vec![]));
    let ex: Vec<ExistingReplica> = first
        .replicas
        .iter()
        .map(|(k, a)| match a {
            Assignment::Host { host } => existing(&k.service, &k.slot, host),
            Assignment::Pending { .. } => panic!("pending"),
        })
        .collect();
    // A fourth host and a scale-up: the existing three stay, the new ones go to fresh hosts.
    let p = place(
        &desired(vec![svc("web", 5)]),
        &snap(hosts(&["a", "b", "c", "d"]), ex.clone()),
    );
    for (k, a) in &first.replicas {
        assert_eq!(p.replicas.get(k), Some(a));
    }
    assert_eq!(p.host_of(&key("web", "4")), Some("d"));
    // Scale down: the remaining ones stay put.
    let p = place(
        &desired(vec![svc("web", 2)]),
        &snap(hosts(&["a", "b", "c", "d"]), ex),
    );
    assert_eq!(p.replicas.len(), 2);
    for (k, a) in &p.replicas {
        assert_eq!(first.replicas.get(k), Some(a));
    }
}

#[test]
fn lowered_max_per_node_moves_the_later_sticky_replicas() {
    let mut web = svc("web", 3);
    web.placement.max_replicas_per_node = Some(1);
    let ex = vec![
        existing("web", "1", "a"),
        existing("web", "2", "a"),
        existing("web", "3", "a"),
    ];
    let p = place(&desired(vec![web]), &snap(hosts(&["a", "b", "c"]), ex));
    assert_eq!(
        hosts_of(&p, "web"),
        vec![
            ("1".into(), "a".into()),
            ("2".into(), "b".into()),
            ("3".into(), "c".into())
        ]
    );
}

#[test]
fn duplicate_copies_keep_the_newer_on_an_up_host() {
    let mut old = existing("web", "1", "a");
    old.created = "2024-01-01T00:00:00Z".into();
    let mut new = existing("web", "1", "b");
    new.created = "2024-02-01T00:00:00Z".into();
    let ex = vec![old.clone(), new.clone()];
    let p = place(&desired(vec![svc("web", 1)]), &snap(hosts(&["a", "b"]), ex));
    assert_eq!(p.host_of(&key("web", "1")), Some("b"));
    // The newer copy on a host that is not Up loses to the one on an Up host.
    let mut h = hosts(&["a", "b"]);
    h[1].state = HostState::Unreachable;
    let p = place(&desired(vec![svc("web", 1)]), &snap(h, vec![old, new]));
    assert_eq!(p.host_of(&key("web", "1")), Some("a"));
}

#[test]
fn global_mode_follows_constraints() {
    let mut agent = svc("agent", 7);
    agent.mode = DeployMode::Global;
    agent.placement.constraints = vec![label("role", false, "db")];
    let h = vec![
        host("a", &[("role", "db")]),
        host("b", &[("role", "web")]),
        host("c", &[]),
    ];
    let p = place(&desired(vec![agent]), &snap(h, vec![]));
    assert_eq!(
        hosts_of(&p, "agent"),
        vec![("b".into(), "b".into()), ("c".into(), "c".into())]
    );
}

#[test]
fn an_empty_fleet_leaves_everything_pending() {
    let p = place(&desired(vec![svc("web", 1)]), &Snapshot::default());
    assert_eq!(reason(&p, "web", "1"), "the fleet has no hosts");
}

#[test]
fn units_read_well() {
    assert_eq!(bytes_text(4 * i128::from(GIB)), "4 GiB");
    assert_eq!(bytes_text(3 * i128::from(GIB) / 2), "1.5 GiB");
    assert_eq!(bytes_text(512 << 20), "512 MiB");
    assert_eq!(bytes_text(100), "100 B");
    assert_eq!(cpu_text(250_000_000), "0.25 cpu");
    assert_eq!(cpu_text(2_000_000_000), "2 cpu");
}

// ---- property tests ----

fn arb_host() -> impl Strategy<Value = HostFacts> {
    (
        prop::option::of(prop::sample::select(vec!["a", "b", "c"])),
        prop::option::of(prop::sample::select(vec!["r1", "r2"])),
        prop::option::of((prop::option::of(1i64..5), prop::option::of(1i64..5))),
        prop::sample::select(vec![
            HostState::Up,
            HostState::Up,
            HostState::Up,
            HostState::Unreachable,
            HostState::Down,
        ]),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(zone, rack, cap, state, cordon, drain)| {
            let mut labels = BTreeMap::new();
            if let Some(z) = zone {
                labels.insert("zone".to_string(), z.to_string());
            }
            if let Some(r) = rack {
                labels.insert("rack".to_string(), r.to_string());
            }
            HostFacts {
                name: String::new(),
                labels,
                capacity: cap.map(|(c, m)| Capacity {
                    nano_cpus: c.map(|c| c * 1_000_000_000),
                    memory_bytes: m.map(|m| m * GIB),
                }),
                state,
                cordon,
                drain,
            }
        })
}

fn arb_service() -> impl Strategy<Value = ServiceSpec> {
    let constraint = (
        prop::sample::select(vec!["zone", "rack", "host"]),
        any::<bool>(),
        prop::sample::select(vec!["a", "b", "r1", "h0", "h1"]),
    )
        .prop_map(|(attr, equal, value)| Constraint {
            attribute: if attr == "host" {
                ConstraintAttribute::Hostname
            } else {
                ConstraintAttribute::Label(attr.into())
            },
            equal,
            value: value.into(),
        });
    (
        (
            prop::bool::weighted(0.2),
            0u32..6,
            prop::collection::vec(constraint, 0..2),
            prop::sample::subsequence(vec!["zone", "rack"], 0..=2),
            prop::option::of(0u32..3),
        ),
        (
            prop::collection::vec(
                (
                    prop::sample::select(vec![80u16, 81]),
                    prop::sample::select(vec!["", "127.0.0.1", "127.0.0.2"]),
                ),
                0..2,
            ),
            prop::option::of(0i64..5),
            prop::option::of(0i64..5),
            prop::option::of(prop::sample::subsequence(vec!["h0", "h1", "h2"], 0..=3)),
        ),
    )
        .prop_map(
            |((global, replicas, constraints, spread, max), (ports, cpu, mem, only))| {
                let mut s = svc("", replicas);
                if global {
                    s.mode = DeployMode::Global;
                }
                s.placement = ServicePlacement {
                    hosts: only.map(|o| o.into_iter().map(String::from).collect()),
                    constraints,
                    spread: spread.into_iter().map(String::from).collect(),
                    max_replicas_per_node: max,
                };
                s.container.ports = ports.into_iter().map(|(p, ip)| port(ip, p)).collect();
                s.reserve_nano_cpus = cpu.map(|c| c * 250_000_000);
                s.reserve_memory_bytes = mem.map(|m| m * (GIB / 4));
                s
            },
        )
}

fn arb_case() -> impl Strategy<Value = (DesiredState, Snapshot)> {
    (
        prop::collection::vec(arb_host(), 0..6),
        prop::collection::vec(arb_service(), 0..8),
        prop::collection::vec(
            (0usize..8, 1u32..7, 0usize..6, any::<bool>(), 0u8..5),
            0..20,
        ),
    )
        .prop_map(|(mut hs, mut services, ex)| {
            for (i, h) in hs.iter_mut().enumerate() {
                h.name = format!("h{i}");
            }
            for (i, s) in services.iter_mut().enumerate() {
                s.name = format!("svc{i}");
            }
            let existing = ex
                .into_iter()
                .filter(|(s, _, h, _, _)| *s < services.len() && *h < hs.len())
                .map(|(s, slot, h, healthy, created)| {
                    let slot = match services[s].mode {
                        DeployMode::Global => format!("h{}", slot as usize % hs.len()),
                        DeployMode::Replicated => slot.to_string(),
                    };
                    ExistingReplica {
                        key: key(&services[s].name, &slot),
                        host: format!("h{h}"),
                        healthy,
                        created: format!("t{created}"),
                    }
                })
                .collect();
            (desired(services), snap(hs, existing))
        })
}

fn service_of<'d>(d: &'d DesiredState, k: &ReplicaKey) -> &'d ServiceSpec {
    &d.stacks[&k.stack].services[&k.service]
}

fn clashes(a: &PortBinding, b: &PortBinding) -> bool {
    let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
    a.host_port.is_some()
        && a.host_port == b.host_port
        && a.protocol == b.protocol
        && (wild(&a.host_ip) || wild(&b.host_ip) || a.host_ip == b.host_ip)
}

fn check_invariants(d: &DesiredState, s: &Snapshot, p: &Placement) {
    let mut on_host: BTreeMap<&str, Vec<&ReplicaKey>> = BTreeMap::new();
    for (k, a) in &p.replicas {
        let Assignment::Host { host } = a else {
            continue;
        };
        let spec = service_of(d, k);
        let facts = &s.hosts[host];
        // (1) eligibility, and new replicas only where new ones may go.
        assert!(
            statically_eligible(facts, spec),
            "{k:?} on ineligible {host}"
        );
        let sticky = s.existing.iter().any(|e| &e.key == k && &e.host == host);
        assert!(
            sticky || (facts.state == HostState::Up && !facts.cordon),
            "new {k:?} on {host} which takes no new replicas"
        );
        if spec.mode == DeployMode::Global {
            assert_eq!(&k.slot, host);
        }
        on_host.entry(host).or_default().push(k);
    }
    for (host, keys) in &on_host {
        let facts = &s.hosts[*host];
        // (2) no clashing host ports.
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                for pa in &service_of(d, a).container.ports {
                    for pb in &service_of(d, b).container.ports {
                        assert!(!clashes(pa, pb), "{a:?} and {b:?} clash on {host}");
                    }
                }
            }
        }
        // (3) max per node.
        let mut per_service: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for k in keys {
            *per_service.entry((&k.stack, &k.service)).or_default() += 1;
        }
        for ((stack, service), n) in per_service {
            let max = d.stacks[stack].services[service]
                .placement
                .max_replicas_per_node;
            if let Some(max) = max.filter(|m| *m > 0) {
                assert!(n <= max, "{service}: {n} > {max} on {host}");
            }
        }
        // (4) capacity.
        let cpu: i64 = keys
            .iter()
            .map(|k| service_of(d, k).reserve_nano_cpus.unwrap_or(0))
            .sum();
        let mem: i64 = keys
            .iter()
            .map(|k| service_of(d, k).reserve_memory_bytes.unwrap_or(0))
            .sum();
        if let Some(c) = facts.capacity {
            assert!(
                c.nano_cpus.is_none_or(|cap| cpu <= cap),
                "cpu over on {host}"
            );
            assert!(
                c.memory_bytes.is_none_or(|cap| mem <= cap),
                "mem over on {host}"
            );
        }
    }
    // (5) exact replica counts.
    for (stack_name, stack) in &d.stacks {
        for (name, spec) in &stack.services {
            let slots: BTreeSet<&str> = p
                .replicas
                .keys()
                .filter(|k| &k.stack == stack_name && &k.service == name)
                .map(|k| k.slot.as_str())
                .collect();
            match spec.mode {
                DeployMode::Replicated => {
                    let want: BTreeSet<String> =
                        (1..=spec.replicas).map(|i| i.to_string()).collect();
                    assert_eq!(slots, want.iter().map(String::as_str).collect());
                }
                DeployMode::Global => {
                    for h in s.hosts.values() {
                        let open =
                            statically_eligible(h, spec) && h.state == HostState::Up && !h.cordon;
                        if open {
                            assert!(slots.contains(h.name.as_str()), "{name} misses {}", h.name);
                        }
                        if !statically_eligible(h, spec) {
                            assert!(!slots.contains(h.name.as_str()));
                        }
                    }
                }
            }
        }
    }
}

/// The snapshot of a converged fleet: every assigned replica runs, healthy, where placed.
fn converged(s: &Snapshot, p: &Placement) -> Snapshot {
    let existing = p
        .replicas
        .iter()
        .filter_map(|(k, a)| match a {
            Assignment::Host { host } => Some(ExistingReplica {
                key: k.clone(),
                host: host.clone(),
                healthy: true,
                created: "t".into(),
            }),
            Assignment::Pending { .. } => None,
        })
        .collect();
    Snapshot {
        unknown: Default::default(),
        hosts: s.hosts.clone(),
        existing,
    }
}

fn hosts_only(p: &Placement) -> BTreeMap<&ReplicaKey, Option<&str>> {
    p.replicas.keys().map(|k| (k, p.host_of(k))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn placement_invariants_hold((d, s) in arb_case()) {
        let p = place(&d, &s);
        check_invariants(&d, &s, &p);
        // (7) determinism.
        prop_assert_eq!(&p, &place(&d, &s));
        // (6) stability: placing a converged fleet moves nothing.
        let again = place(&d, &converged(&s, &p));
        prop_assert_eq!(hosts_only(&p), hosts_only(&again));
    }

    #[test]
    fn unconstrained_services_are_never_pending((d, s) in arb_case()) {
        let mut d = d;
        let mut s = s;
        for stack in d.stacks.values_mut() {
            for spec in stack.services.values_mut() {
                spec.placement = ServicePlacement::default();
                spec.container.ports.clear();
                spec.reserve_nano_cpus = None;
                spec.reserve_memory_bytes = None;
            }
        }
        let open = host("open", &[]);
        s.hosts.insert(open.name.clone(), open);
        let p = place(&d, &s);
        check_invariants(&d, &s, &p);
        for (k, a) in &p.replicas {
            prop_assert!(matches!(a, Assignment::Host { .. }), "{:?} pending: {:?}", k, a);
        }
    }
}
