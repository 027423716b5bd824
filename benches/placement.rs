//! Placement at fleet scale: 500 services × 20 replicas over 100 hosts, with constraints, spread
//! over zones, published host ports and reservations. Two cases: a cold start (nothing exists)
//! and the steady state (every replica already runs where the cold start put it), which is what
//! every daemon pass pays. The target is well under 50 ms per `place` in release.
//!
//! `cargo bench --bench placement` measures; `cargo test --all-targets` runs each case once.

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;

use convoy::core::schedule::{place, Assignment, ExistingReplica, HostFacts, HostState, Snapshot};
use convoy::model::spec::{
    Capacity, Constraint, ConstraintAttribute, ContainerSpec, DeployMode, DesiredState,
    FleetSettings, Placement, PortBinding, ServiceSpec, StackSpec,
};
use criterion::{criterion_group, criterion_main, Criterion};

const MIB: i64 = 1 << 20;
const GIB: i64 = 1 << 30;

fn hosts() -> BTreeMap<String, HostFacts> {
    (0..100)
        .map(|i| {
            let name = format!("host-{i:03}");
            let labels = [
                ("zone".to_string(), format!("z{}", i % 5)),
                ("rack".to_string(), format!("r{}", i % 10)),
            ]
            .into();
            let facts = HostFacts {
                name: name.clone(),
                labels,
                capacity: Some(Capacity {
                    nano_cpus: Some(32_000_000_000),
                    memory_bytes: Some(64 * GIB),
                }),
                state: HostState::Up,
                cordon: false,
                drain: false,
            };
            (name, facts)
        })
        .collect()
}

/// Service `i` of 500: every third avoids a zone, every other spreads over zones, one in ten
/// publishes a host port (so at most one of its replicas per host), reservations vary.
fn service(i: usize) -> ServiceSpec {
    let mut constraints = Vec::new();
    if i % 3 == 0 {
        constraints.push(Constraint {
            attribute: ConstraintAttribute::Label("zone".into()),
            equal: false,
            value: format!("z{}", i % 5),
        });
    }
    let spread = if i % 2 == 0 {
        vec!["zone".to_string()]
    } else {
        Vec::new()
    };
    let ports = if i % 10 == 0 {
        vec![PortBinding {
            host_ip: String::new(),
            host_port: Some(8000 + i as u16),
            container_port: 80,
            protocol: "tcp".into(),
        }]
    } else {
        Vec::new()
    };
    ServiceSpec {
        name: format!("svc-{i:03}"),
        mode: DeployMode::Replicated,
        replicas: 20,
        depends_on: BTreeMap::new(),
        placement: Placement {
            hosts: None,
            constraints,
            spread,
            max_replicas_per_node: if i % 10 == 0 { Some(1) } else { None },
        },
        reserve_nano_cpus: Some(100_000_000 * (1 + (i % 5) as i64)),
        reserve_memory_bytes: Some(64 * MIB * (1 + (i % 8) as i64)),
        secret_env: BTreeSet::new(),
        container: ContainerSpec {
            image: "busybox:1".into(),
            ports,
            ..Default::default()
        },
        restart_with: BTreeSet::new(),
        rollout: Default::default(),
        job: None,
        ingress: None,
        http_ports: BTreeSet::new(),
    }
}

fn desired() -> DesiredState {
    // Ten stacks of fifty services.
    let stacks = (0..10)
        .map(|s| {
            let name = format!("stack-{s}");
            let services = (0..50)
                .map(|j| service(s * 50 + j))
                .map(|svc| (svc.name.clone(), svc))
                .collect();
            let stack = StackSpec {
                name: name.clone(),
                file: format!("stacks/{name}/compose.yaml"),
                services,
                networks: BTreeMap::new(),
                volumes: BTreeMap::new(),
            };
            (name, stack)
        })
        .collect();
    DesiredState {
        secret_values: Default::default(),
        fleet: "bench".into(),
        hosts: BTreeMap::new(),
        stacks,
        settings: FleetSettings::default(),
        files: Default::default(),
        kept_networks: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let desired = desired();
    let cold = Snapshot {
        unknown: Default::default(),
        hosts: hosts(),
        existing: Vec::new(),
    };
    let first = place(&desired, &cold);
    let placed = first
        .replicas
        .values()
        .filter(|a| matches!(a, Assignment::Host { .. }))
        .count();
    assert_eq!(
        placed,
        500 * 20,
        "the bench fleet is sized for every replica to fit"
    );
    let steady = Snapshot {
        unknown: Default::default(),
        hosts: cold.hosts.clone(),
        existing: first
            .replicas
            .iter()
            .filter_map(|(key, a)| match a {
                Assignment::Host { host } => Some(ExistingReplica {
                    key: key.clone(),
                    host: host.clone(),
                    healthy: true,
                    created: "2024-01-01T00:00:00Z".into(),
                }),
                Assignment::Pending { .. } => None,
            })
            .collect(),
    };
    let mut group = c.benchmark_group("place 500x20 on 100 hosts");
    group.sample_size(20);
    group.bench_function("cold", |b| {
        b.iter(|| place(black_box(&desired), black_box(&cold)))
    });
    group.bench_function("steady", |b| {
        b.iter(|| place(black_box(&desired), black_box(&steady)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
