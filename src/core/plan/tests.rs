//! Table tests and property tests of the planner, against a fake in-memory runtime.

use super::*;
use crate::core::schedule::place;
use crate::core::testkit::{self, desired, empty_observed, FLEET};
use crate::model::observed::{Health, ObservedNetwork, ObservedResource};
use crate::model::spec::{
    ContainerSpec, DependsCondition, DeployMode, NetworkAttachment, NetworkSpec, StackSpec,
};
use proptest::prelude::*;

type Edit = Box<dyn Fn(&mut ContainerSpec)>;

/// A service of `stack` running `sleep 1000`, attached to the stack's default network with its
/// name as alias.
pub(super) fn service(stack: &str, name: &str, replicas: u32) -> ServiceSpec {
    let mut s = testkit::service(name, replicas);
    s.container.command = Some(vec!["sleep".into(), "1000".into()]);
    s.container.networks = [(
        format!("{stack}_default"),
        NetworkAttachment {
            aliases: vec![name.into()],
            ..Default::default()
        },
    )]
    .into();
    s
}

/// A stack with its `default` network.
pub(super) fn stack(name: &str, services: Vec<ServiceSpec>) -> StackSpec {
    let mut s = testkit::stack(name, services);
    s.networks = [(
        "default".to_string(),
        NetworkSpec {
            engine_name: format!("{name}_default"),
            driver: "bridge".into(),
            internal: false,
            labels: BTreeMap::new(),
            external: false,
            ..Default::default()
        },
    )]
    .into();
    s
}

/// The fake runtime: what the engines would report after executing `plan`.
pub(super) fn execute_in_memory(plan: &Plan, observed: &ObservedState) -> ObservedState {
    let mut out = observed.clone();
    let mut created_networks: BTreeMap<(String, String), String> = BTreeMap::new();
    for step in &plan.steps {
        let Some(ObservedHost::Reachable(snap)) = out.hosts.get_mut(&step.host) else {
            panic!("step on unobserved host {}", step.host);
        };
        match &step.action {
            Action::CreateNetwork { stack, network } => {
                let id = format!("net-{}-{}", network.engine_name, step.id);
                created_networks
                    .insert((step.host.clone(), network.engine_name.clone()), id.clone());
                snap.networks
                    .entry(network.engine_name.clone())
                    .or_default()
                    .push(ObservedNetwork {
                        id,
                        stack: stack.clone(),
                        resource: network.engine_name.clone(),
                        created: format!("{:08}", step.id),
                        containers: BTreeSet::new(),
                    });
            }
            Action::CreateVolume { stack, volume } => {
                snap.volumes.insert(
                    volume.engine_name.clone(),
                    ObservedResource {
                        stack: stack.clone(),
                        resource: volume.engine_name.clone(),
                    },
                );
            }
            Action::RemoveNetwork { name, id } => {
                let nets = snap
                    .networks
                    .get_mut(name)
                    .expect("removal of a known network");
                let i = nets
                    .iter()
                    .position(|n| &n.id == id)
                    .expect("removal by a known ID");
                // The engine refuses to remove a network with anything attached.
                assert!(
                    nets[i].containers.is_empty(),
                    "step {} removes network {id} with {:?} attached",
                    step.id,
                    nets[i].containers
                );
                nets.remove(i);
                if nets.is_empty() {
                    snap.networks.remove(name);
                }
            }
            Action::Create { replica, .. } | Action::Replace { replica, .. } => {
                // A replacement removes the old container by ID, whatever its name.
                if let Action::Replace { old_id, .. } = &step.action {
                    let old = snap
                        .containers
                        .iter()
                        .find(|(_, c)| &c.id == old_id)
                        .map(|(n, _)| n.clone());
                    if let Some(old) = old {
                        snap.containers.remove(&old);
                        detach(snap, &old);
                    }
                }
                detach(snap, &replica.name);
                // Attached by ID: the plan's kept network, or the one a step created.
                for net in replica.spec.networks.keys() {
                    let id = plan
                        .network_ids
                        .get(&step.host)
                        .and_then(|ids| ids.get(net))
                        .or_else(|| created_networks.get(&(step.host.clone(), net.clone())))
                        .expect("a network the plan keeps or creates");
                    snap.networks
                        .get_mut(net)
                        .and_then(|nets| nets.iter_mut().find(|n| &n.id == id))
                        .expect("the network exists when a container is attached")
                        .containers
                        .insert(replica.name.clone());
                }
                snap.containers.insert(
                    replica.name.clone(),
                    ObservedContainer {
                        id: format!("id-{}-{}", replica.name, step.id),
                        name: replica.name.clone(),
                        stack: replica.stack.clone(),
                        service: replica.service.clone(),
                        slot: replica.slot.clone(),
                        spec_hash: replica.spec_hash.clone(),
                        commit: plan.commit.clone(),
                        created: format!("{:08}", step.id),
                        image_id: String::new(),
                        state: RunState::Running,
                        exit_code: 0,
                        health: None,
                        restart_count: 0,
                        actual: replica.spec.clone(),
                        image_defaults: Default::default(),
                    },
                );
            }
            Action::Start { name, .. } => {
                snap.containers
                    .get_mut(name)
                    .expect("start of a known container")
                    .state = RunState::Running;
            }
            Action::Remove { name, .. } => {
                snap.containers.remove(name);
                detach(snap, name);
            }
            Action::Restore { name, .. } => {
                snap.containers.remove(name);
                let prev = crate::model::rollout::prev_name(name);
                let mut c = snap
                    .containers
                    .remove(&prev)
                    .expect("restore of a kept replica");
                c.name = name.clone();
                c.state = RunState::Running;
                snap.containers.insert(name.clone(), c);
            }
            Action::RecordQuarantine { record, .. } => {
                snap.quarantines.push(record.clone());
            }
        }
    }
    out
}

/// A removed or replaced container leaves every network it was attached to.
fn detach(snap: &mut HostSnapshot, name: &str) {
    for nets in snap.networks.values_mut() {
        for n in nets {
            n.containers.remove(name);
        }
    }
}

/// Placement as the pipeline makes it: from a snapshot of what is observed.
fn placed(d: &DesiredState, o: &ObservedState) -> crate::core::schedule::Placement {
    place(
        d,
        &crate::core::schedule::snapshot(d, o, &BTreeSet::new(), &BTreeMap::new()),
    )
}

pub(super) fn plan_for(d: &DesiredState, o: &ObservedState) -> Plan {
    plan(d, &placed(d, o), o, "c1")
}

pub(super) fn converge(d: &DesiredState) -> ObservedState {
    let o = empty_observed(d);
    let p = plan_for(d, &o);
    execute_in_memory(&p, &o)
}

pub(super) fn lines(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| format!("{} {}", s.host, s.action.line()))
        .collect()
}

#[test]
fn create_from_nothing_makes_network_then_containers() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 2)])]);
    let p = plan_for(&d, &empty_observed(&d));
    assert_eq!(
        lines(&p),
        vec![
            "h1 + network web_default",
            "h1 + web-app-1  (missing, image busybox:1)",
            "h1 + web-app-2  (missing, image busybox:1)",
        ]
    );
    // Containers wait for their network.
    assert_eq!(p.steps[1].after, vec![0]);
    assert_eq!(p.steps[2].after, vec![0]);
    let replica = match &p.steps[1].action {
        Action::Create { replica, .. } => replica,
        other => panic!("{other:?}"),
    };
    assert_eq!(replica.labels[LABEL_FLEET], FLEET);
    assert_eq!(replica.labels[LABEL_SLOT], "1");
    assert_eq!(replica.labels[LABEL_COMMIT], "c1");
}

#[test]
fn converged_fleet_plans_nothing() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 2)])]);
    let o = converge(&d);
    let p = plan_for(&d, &o);
    assert!(p.steps.is_empty(), "{:?}", lines(&p));
    assert!(p.is_converged());
}

#[test]
fn a_new_commit_alone_changes_nothing() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let o = converge(&d);
    let p = plan(&d, &placed(&d, &o), &o, "c2");
    assert!(p.steps.is_empty());
}

#[test]
fn every_field_change_replaces_exactly_that_container() {
    let base = desired(
        &["h1"],
        vec![stack(
            "web",
            vec![service("web", "app", 1), service("web", "db", 1)],
        )],
    );
    let o = converge(&base);
    let edits: Vec<(&str, Edit)> = vec![
        ("image", Box::new(|c| c.image = "busybox:2".into())),
        (
            "command",
            Box::new(|c| c.command = Some(vec!["true".into()])),
        ),
        (
            "entrypoint",
            Box::new(|c| c.entrypoint = Some(vec!["sh".into()])),
        ),
        (
            "environment.X",
            Box::new(|c| {
                c.env.insert("X".into(), "1".into());
            }),
        ),
        (
            "ports",
            Box::new(|c| {
                c.ports.push(crate::model::spec::PortBinding {
                    host_ip: "127.0.0.1".into(),
                    host_port: Some(8080),
                    container_port: 80,
                    protocol: "tcp".into(),
                })
            }),
        ),
        (
            "labels.team",
            Box::new(|c| {
                c.labels.insert("team".into(), "a".into());
            }),
        ),
        (
            "restart",
            Box::new(|c| c.restart.name = crate::model::spec::RestartName::Always),
        ),
        (
            "healthcheck",
            Box::new(|c| {
                c.healthcheck = Some(crate::model::spec::Healthcheck {
                    test: vec!["CMD".into(), "true".into()],
                    interval_ns: Some(1_000_000_000),
                    timeout_ns: None,
                    retries: None,
                    start_period_ns: None,
                    start_interval_ns: None,
                })
            }),
        ),
        ("user", Box::new(|c| c.user = Some("1000".into()))),
        (
            "working_dir",
            Box::new(|c| c.working_dir = Some("/tmp".into())),
        ),
        ("hostname", Box::new(|c| c.hostname = Some("h".into()))),
        (
            "stop_signal",
            Box::new(|c| c.stop_signal = Some("SIGINT".into())),
        ),
        (
            "stop_grace_period",
            Box::new(|c| c.stop_grace_period_secs = Some(3)),
        ),
        (
            "cap_add",
            Box::new(|c| c.cap_add = vec!["NET_ADMIN".into()]),
        ),
        ("cap_drop", Box::new(|c| c.cap_drop = vec!["ALL".into()])),
        ("read_only", Box::new(|c| c.read_only = true)),
        (
            "tmpfs",
            Box::new(|c| {
                c.tmpfs.insert("/run".into(), String::new());
            }),
        ),
        ("init", Box::new(|c| c.init = Some(true))),
        (
            "extra_hosts",
            Box::new(|c| c.extra_hosts = vec!["db:10.0.0.1".into()]),
        ),
        ("dns", Box::new(|c| c.dns = vec!["1.1.1.1".into()])),
        (
            "sysctls",
            Box::new(|c| {
                c.sysctls.insert("net.core.somaxconn".into(), "1024".into());
            }),
        ),
        (
            "ulimits",
            Box::new(|c| {
                c.ulimits.insert(
                    "nofile".into(),
                    crate::model::spec::Ulimit { soft: 1, hard: 2 },
                );
            }),
        ),
        (
            "logging",
            Box::new(|c| {
                c.logging = Some(crate::model::spec::Logging {
                    driver: "json-file".into(),
                    options: BTreeMap::new(),
                })
            }),
        ),
        (
            "networks",
            Box::new(|c| {
                c.networks
                    .insert("web_default".into(), NetworkAttachment::default());
                c.networks
                    .insert("web_other".into(), NetworkAttachment::default());
            }),
        ),
        (
            "deploy.resources.limits.memory",
            Box::new(|c| c.memory_bytes = Some(64 << 20)),
        ),
        (
            "deploy.resources.limits.cpus",
            Box::new(|c| c.nano_cpus = Some(500_000_000)),
        ),
        (
            "deploy.resources.limits.pids",
            Box::new(|c| c.pids_limit = Some(100)),
        ),
        (
            "deploy.resources.reservations.memory",
            Box::new(|c| c.memory_reservation_bytes = Some(1 << 20)),
        ),
        (
            "volumes",
            Box::new(|c| {
                c.mounts.push(crate::model::spec::MountSpec {
                    kind: MountKind::Bind,
                    source: "/srv".into(),
                    target: "/srv".into(),
                    read_only: false,
                })
            }),
        ),
    ];
    for (field, edit) in edits {
        let mut d = base.clone();
        let app = d
            .stacks
            .get_mut("web")
            .and_then(|s| s.services.get_mut("app"))
            .expect("app");
        edit(&mut app.container);
        let p = plan_for(&d, &o);
        let replaces: Vec<&Step> = p
            .steps
            .iter()
            .filter(|s| matches!(s.action, Action::Replace { .. }))
            .collect();
        assert_eq!(replaces.len(), 1, "{field}: {:?}", lines(&p));
        let Action::Replace {
            replica, changes, ..
        } = &replaces[0].action
        else {
            unreachable!()
        };
        assert_eq!(replica.name, "web-app-1", "{field}");
        assert!(
            changes.iter().any(|c| c.field.starts_with(field)),
            "{field}: {changes:?}"
        );
    }
}

#[test]
fn scale_up_and_down() {
    let d3 = desired(&["h1"], vec![stack("web", vec![service("web", "app", 3)])]);
    let d1 = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let o1 = converge(&d1);
    assert_eq!(
        lines(&plan_for(&d3, &o1)),
        vec![
            "h1 + web-app-2  (missing, image busybox:1)",
            "h1 + web-app-3  (missing, image busybox:1)"
        ]
    );
    let o3 = converge(&d3);
    assert_eq!(
        lines(&plan_for(&d1, &o3)),
        vec![
            "h1 - web-app-2  (scaled down to 1)",
            "h1 - web-app-3  (scaled down to 1)"
        ]
    );
}

#[test]
fn removing_a_service_and_a_stack() {
    let full = desired(
        &["h1"],
        vec![
            stack(
                "web",
                vec![service("web", "app", 1), service("web", "db", 1)],
            ),
            stack("jobs", vec![service("jobs", "tick", 1)]),
        ],
    );
    let o = converge(&full);
    let fewer = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let p = plan_for(&fewer, &o);
    assert_eq!(
        lines(&p),
        vec![
            "h1 - jobs-tick-1  (stack `jobs` removed)",
            "h1 - web-db-1  (service `db` removed)",
            "h1 - network jobs_default",
        ]
    );
    // The network goes only after the containers that used it.
    assert_eq!(p.steps[2].after, vec![0, 1]);
}

#[test]
fn unowned_container_with_a_clashing_name_is_a_conflict_never_a_step() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let mut o = empty_observed(&d);
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        s.foreign_names.insert("web-app-1".into());
    }
    let p = plan_for(&d, &o);
    assert_eq!(lines(&p), vec!["h1 + network web_default"]);
    assert_eq!(p.conflicts.len(), 1);
    assert!(p.conflicts[0].reason.contains("not owned by fleet `t`"));
    assert!(!p.is_converged());
}

#[test]
fn stopped_container_is_started_and_one_shot_is_left_alone() {
    let mut d = desired(
        &["h1"],
        vec![stack(
            "web",
            vec![service("web", "app", 1), service("web", "init", 1)],
        )],
    );
    d.stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("init")
        .unwrap()
        .container
        .restart = crate::model::spec::RestartPolicy {
        name: crate::model::spec::RestartName::No,
        max_attempts: None,
    };
    let mut o = converge(&d);
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        for c in s.containers.values_mut() {
            c.state = RunState::Exited;
            c.exit_code = 137;
        }
    }
    assert_eq!(
        lines(&plan_for(&d, &o)),
        vec!["h1 > web-app-1  (start: stopped (exit code 137))"]
    );
}

#[test]
fn drift_from_inspect_replaces_even_with_the_right_hash() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let mut o = converge(&d);
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        let c = s.containers.get_mut("web-app-1").unwrap();
        c.actual.memory_bytes = Some(256 << 20);
        c.actual.env.insert("HAND".into(), "made".into());
    }
    let p = plan_for(&d, &o);
    let Action::Replace {
        changes, reason, ..
    } = &p.steps[0].action
    else {
        panic!("{:?}", lines(&p));
    };
    assert_eq!(*reason, crate::model::plan::Reason::Drift);
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["environment.HAND", "deploy.resources.limits.memory"]
    );
}

#[test]
fn depends_on_orders_steps_and_gates_on_the_condition() {
    let mut app = service("web", "app", 1);
    app.depends_on
        .insert("db".into(), DependsCondition::ServiceHealthy);
    let d = desired(
        &["h1"],
        vec![stack("web", vec![app, service("web", "db", 2)])],
    );
    let p = plan_for(&d, &empty_observed(&d));
    let ids: BTreeMap<String, usize> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Create { replica, .. } => Some((replica.name.clone(), s.id)),
            _ => None,
        })
        .collect();
    let app_step = &p.steps[ids["web-app-1"]];
    assert!(app_step.after.contains(&ids["web-db-1"]));
    assert!(app_step.after.contains(&ids["web-db-2"]));
    assert!(ids["web-db-1"] < ids["web-app-1"]);
    assert_eq!(app_step.gates.len(), 1);
    assert_eq!(
        app_step.gates[0].condition,
        DependsCondition::ServiceHealthy
    );
    assert_eq!(
        app_step.gates[0].containers,
        vec![
            ("h1".to_string(), "web-db-1".to_string()),
            ("h1".to_string(), "web-db-2".to_string())
        ]
    );
}

#[test]
fn unreachable_host_gets_no_steps_and_is_reported() {
    let d = desired(
        &["h1", "h2"],
        vec![stack("web", vec![service("web", "app", 2)])],
    );
    let mut o = empty_observed(&d);
    o.hosts.insert(
        "h2".into(),
        ObservedHost::Unreachable {
            reason: "connection refused".into(),
        },
    );
    let p = plan_for(&d, &o);
    assert!(p.steps.iter().all(|s| s.host == "h1"));
    assert_eq!(p.unreachable["h2"], "connection refused");
    assert!(!p.is_converged());
}

#[test]
fn orphaned_volume_is_reported_never_removed() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let mut o = converge(&d);
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        s.volumes.insert(
            "old_data".into(),
            ObservedResource {
                stack: "old".into(),
                resource: "old_data".into(),
            },
        );
    }
    let p = plan_for(&d, &o);
    assert!(p.steps.is_empty());
    assert_eq!(p.orphan_volumes.len(), 1);
}

#[test]
fn an_unhealthy_container_is_replaced_in_place() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let mut o = converge(&d);
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        s.containers.get_mut("web-app-1").unwrap().health = Some(Health::Unhealthy);
    }
    assert_eq!(
        lines(&plan_for(&d, &o)),
        vec!["h1 ~ web-app-1  (unhealthy)"]
    );
}

#[test]
fn a_moved_replica_is_removed_only_after_it_started_on_its_new_host() {
    let d = desired(
        &["h1", "h2"],
        vec![stack("web", vec![service("web", "app", 2)])],
    );
    let o = converge(&d);
    let mut drained = d.clone();
    drained.hosts.get_mut("h2").unwrap().drain = true;
    let p = plan_for(&drained, &o);
    let create = p
        .steps
        .iter()
        .find(|s| matches!(&s.action, Action::Create { replica, .. } if replica.slot == "2"));
    let remove = p
        .steps
        .iter()
        .find(|s| matches!(&s.action, Action::Remove { name, .. } if name == "web-app-2"));
    let (Some(create), Some(remove)) = (create, remove) else {
        panic!("a drained host's replica moves: {:?}", lines(&p));
    };
    assert_eq!(create.host, "h1");
    assert_eq!(remove.host, "h2");
    assert!(remove.after.contains(&create.id), "{:?}", lines(&p));
}

#[test]
fn diff_base_assumes_the_base_runs() {
    let a = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let mut b = a.clone();
    b.stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap()
        .container
        .env
        .insert("A".into(), "1".into());
    let assumed = assume_converged(&a, &placed(&a, &empty_observed(&a)), "base");
    assert!(plan(&a, &placed(&a, &assumed), &assumed, "base")
        .steps
        .is_empty());
    let p = plan(&b, &placed(&b, &assumed), &assumed, "head");
    assert_eq!(lines(&p), vec!["h1 ~ web-app-1  (drift)"]);
}

/// `service` of stack `web` with `container_name` set.
fn named(name: &str, container_name: Option<&str>) -> ServiceSpec {
    let mut s = service("web", name, 1);
    s.container.container_name = container_name.map(str::to_string);
    s
}

#[test]
fn a_container_name_is_the_replicas_name_and_ownership_stays_with_the_labels() {
    let mut api = named("api", None);
    api.depends_on
        .insert("db".into(), DependsCondition::ServiceStarted);
    let d = desired(
        &["h1"],
        vec![stack("web", vec![named("db", Some("my-db")), api])],
    );
    let p = plan_for(&d, &empty_observed(&d));
    assert_eq!(
        lines(&p),
        vec![
            "h1 + network web_default",
            "h1 + my-db  (missing, image busybox:1)",
            "h1 + web-api-1  (missing, image busybox:1)",
        ]
    );
    let Action::Create { replica, .. } = &p.steps[1].action else {
        panic!("{:?}", p.steps[1]);
    };
    assert_eq!(replica.name, "my-db");
    assert_eq!(replica.labels[LABEL_STACK], "web");
    assert_eq!(replica.labels[LABEL_SERVICE], "db");
    assert_eq!(replica.labels[LABEL_SLOT], "1");
    // A dependent waits for the container by its name.
    assert_eq!(
        p.steps[2].gates[0].containers,
        vec![("h1".to_string(), "my-db".to_string())]
    );
    // Converged: nothing to do, and `diff --base` agrees.
    let o = execute_in_memory(&p, &empty_observed(&d));
    assert!(
        plan_for(&d, &o).steps.is_empty(),
        "{:?}",
        lines(&plan_for(&d, &o))
    );
    let assumed = assume_converged(&d, &placed(&d, &empty_observed(&d)), "base");
    assert!(plan(&d, &placed(&d, &assumed), &assumed, "base")
        .steps
        .is_empty());
    // Removed by its labels when the service goes, and when it is deleted, made again.
    let fewer = desired(&["h1"], vec![stack("web", vec![named("other", None)])]);
    let p = plan_for(&fewer, &o);
    assert!(
        lines(&p).contains(&"h1 - my-db  (service `db` removed)".to_string()),
        "{:?}",
        lines(&p)
    );
    let mut gone = o.clone();
    if let Some(ObservedHost::Reachable(s)) = gone.hosts.get_mut("h1") {
        s.containers.remove("my-db");
    }
    assert_eq!(
        lines(&plan_for(&d, &gone)),
        vec!["h1 + my-db  (missing, image busybox:1)"]
    );
}

/// Setting, changing or dropping a `container_name` replaces the slot's container under its
/// new name (stop-first, one step), rather than making a second copy beside it.
#[test]
fn a_changed_container_name_replaces_the_container_under_its_new_name() {
    let before = desired(&["h1"], vec![stack("web", vec![named("db", None)])]);
    let mut o = converge(&before);
    for (want, old) in [
        (Some("my-db"), "web-db-1"),
        (Some("our-db"), "my-db"),
        (None, "our-db"),
    ] {
        let d = desired(&["h1"], vec![stack("web", vec![named("db", want)])]);
        let p = plan_for(&d, &o);
        let new = want.unwrap_or("web-db-1");
        assert_eq!(lines(&p), vec![format!("h1 ~ {new}  (drift)")]);
        let Action::Replace {
            changes, old_id, ..
        } = &p.steps[0].action
        else {
            panic!("{:?}", p.steps[0]);
        };
        assert!(old_id.starts_with(&format!("id-{old}-")), "{old_id}");
        assert_eq!(changes[0].field, "container_name");
        assert_eq!(
            (changes[0].old.as_str(), changes[0].new.as_str()),
            (old, new)
        );
        o = execute_in_memory(&p, &o);
        let Some(ObservedHost::Reachable(snap)) = o.hosts.get("h1") else {
            panic!()
        };
        assert_eq!(snap.containers.keys().collect::<Vec<_>>(), vec![new]);
        assert!(plan_for(&d, &o).steps.is_empty());
    }
    // While the new name is held by a container of no fleet, the old one keeps running.
    let d = desired(
        &["h1"],
        vec![stack("web", vec![named("db", Some("taken"))])],
    );
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        s.foreign_names.insert("taken".into());
    }
    let p = plan_for(&d, &o);
    assert!(p.steps.is_empty(), "{:?}", lines(&p));
    assert_eq!(p.conflicts.len(), 1);
    assert_eq!(p.conflicts[0].name, "taken");
}

#[test]
fn same_input_same_plan() {
    let d = desired(
        &["h1", "h2"],
        vec![
            stack(
                "web",
                vec![service("web", "app", 3), service("web", "db", 1)],
            ),
            stack("jobs", vec![service("jobs", "tick", 2)]),
        ],
    );
    let o = empty_observed(&d);
    let a = serde_json::to_string(&plan_for(&d, &o)).unwrap();
    let b = serde_json::to_string(&plan_for(&d, &o)).unwrap();
    assert_eq!(a, b);
}

// ---- property tests ----

pub(super) fn arb_desired() -> impl Strategy<Value = DesiredState> {
    let svc = (
        0u32..4,
        prop::option::of(0i64..4),
        any::<bool>(),
        any::<bool>(),
    );
    let stack_strat = prop::collection::vec(svc, 1..4);
    (1usize..4, prop::collection::vec(stack_strat, 0..4)).prop_map(|(n_hosts, stacks)| {
        let hosts: Vec<String> = (1..=n_hosts).map(|i| format!("h{i}")).collect();
        let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let stacks = stacks
            .into_iter()
            .enumerate()
            .map(|(si, services)| {
                let sname = format!("s{si}");
                let services = services
                    .into_iter()
                    .enumerate()
                    .map(|(vi, (replicas, mem, global, one_shot))| {
                        let mut s = service(&sname, &format!("v{vi}"), replicas);
                        s.container.memory_bytes = mem.map(|m| (m + 1) << 20);
                        if global {
                            s.mode = DeployMode::Global;
                        }
                        if one_shot {
                            s.container.restart.name = crate::model::spec::RestartName::No;
                        }
                        if vi > 0 {
                            s.depends_on
                                .insert("v0".into(), DependsCondition::ServiceStarted);
                        }
                        s
                    })
                    .collect();
                stack(&sname, services)
            })
            .collect();
        desired(&host_refs, stacks)
    })
}

/// Mutations of a converged fleet: what hands and crashes do to it.
#[derive(Debug, Clone)]
pub(super) enum Mutation {
    Stop(usize),
    Drift(usize),
    Remove(usize),
    Foreign(String),
    Leftover(String),
    /// A second network of the name of network `.0`, older or not (`.1`), with every `.2`-th
    /// of the containers of the first moved onto it: two processes created it at once.
    Duplicate(usize, bool, usize),
}

pub(super) fn arb_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        prop_oneof![
            (0usize..50).prop_map(Mutation::Stop),
            (0usize..50).prop_map(Mutation::Drift),
            (0usize..50).prop_map(Mutation::Remove),
            "s[0-3]-v[0-3]-[1-5]".prop_map(Mutation::Foreign),
            "s[0-5]-v[0-5]-[1-9]".prop_map(Mutation::Leftover),
            (0usize..8, any::<bool>(), 1usize..4)
                .prop_map(|(i, older, every)| Mutation::Duplicate(i, older, every)),
        ],
        0..8,
    )
}

pub(super) fn mutate(o: &mut ObservedState, muts: &[Mutation]) {
    for m in muts {
        let Some(ObservedHost::Reachable(snap)) = o.hosts.values_mut().next() else {
            return;
        };
        let names: Vec<String> = snap.containers.keys().cloned().collect();
        let pick = |i: usize| names.get(i % names.len().max(1)).cloned();
        match m {
            Mutation::Stop(i) => {
                if let Some(n) = pick(*i) {
                    snap.containers.get_mut(&n).unwrap().state = RunState::Exited;
                }
            }
            Mutation::Drift(i) => {
                if let Some(n) = pick(*i) {
                    snap.containers.get_mut(&n).unwrap().actual.memory_bytes = Some(999);
                }
            }
            Mutation::Remove(i) => {
                if let Some(n) = pick(*i) {
                    snap.containers.remove(&n);
                    detach(snap, &n);
                }
            }
            Mutation::Duplicate(i, older, every) => {
                let names: Vec<String> = snap.networks.keys().cloned().collect();
                let Some(name) = names.get(i % names.len().max(1)) else {
                    continue;
                };
                let nets = snap.networks.get_mut(name).unwrap();
                let id = format!("dup-{}-{i}", nets.len());
                let first = &mut nets[0];
                let moved: BTreeSet<String> =
                    first.containers.iter().step_by(*every).cloned().collect();
                first.containers.retain(|c| !moved.contains(c));
                let dup = ObservedNetwork {
                    id,
                    stack: first.stack.clone(),
                    resource: first.resource.clone(),
                    created: if *older { String::new() } else { "~".into() },
                    containers: moved,
                };
                nets.push(dup);
            }
            Mutation::Foreign(name) => {
                if !snap.containers.contains_key(name) {
                    snap.foreign_names.insert(name.clone());
                }
            }
            Mutation::Leftover(name) => {
                if snap.foreign_names.contains(name) {
                    continue;
                }
                let mut parts = name.splitn(3, '-');
                let (st, sv, sl) = (
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                    parts.next().unwrap_or_default().to_string(),
                );
                snap.containers
                    .entry(name.clone())
                    .or_insert(ObservedContainer {
                        id: format!("left-{name}"),
                        name: name.clone(),
                        stack: st,
                        service: sv,
                        slot: sl,
                        spec_hash: "old".into(),
                        commit: "c0".into(),
                        created: String::new(),
                        image_id: String::new(),
                        state: RunState::Running,
                        exit_code: 0,
                        health: None,
                        restart_count: 0,
                        actual: ContainerSpec {
                            image: "old:1".into(),
                            ..Default::default()
                        },
                        image_defaults: Default::default(),
                    });
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Executing a plan and observing again leaves nothing to do (conflicts aside, which are
    /// never acted on), and a converged fleet plans to nothing.
    #[test]
    fn executing_a_plan_converges(d in arb_desired(), muts in arb_mutations()) {
        let mut o = converge(&d);
        prop_assert!(plan_for(&d, &o).steps.is_empty());
        mutate(&mut o, &muts);
        let p = plan_for(&d, &o);
        let after = execute_in_memory(&p, &o);
        let again = plan_for(&d, &after);
        prop_assert!(again.steps.is_empty(), "{:?}", lines(&again));
        // One network per name: duplicates are healed in one pass.
        for h in after.hosts.values().filter_map(ObservedHost::snapshot) {
            prop_assert!(h.networks.values().all(|n| n.len() == 1), "{:?}", h.networks);
        }
    }

    /// No step ever touches a container the fleet does not own.
    #[test]
    fn never_a_step_on_a_foreign_container(d in arb_desired(), muts in arb_mutations()) {
        let mut o = converge(&d);
        mutate(&mut o, &muts);
        let p = plan_for(&d, &o);
        for step in &p.steps {
            let snap = o.hosts[&step.host].snapshot().unwrap();
            match &step.action {
                Action::Remove { name, id, .. } | Action::Start { name, id, .. } => {
                    prop_assert!(!snap.foreign_names.contains(name));
                    prop_assert_eq!(&snap.containers[name].id, id);
                }
                Action::Replace { replica, old_id, .. } => {
                    prop_assert!(!snap.foreign_names.contains(&replica.name));
                    prop_assert_eq!(&snap.containers[&replica.name].id, old_id);
                }
                Action::Create { replica, .. } => {
                    prop_assert!(!snap.foreign_names.contains(&replica.name));
                    prop_assert!(!snap.containers.contains_key(&replica.name));
                }
                // Only the fleet's own networks, by an ID observed under that name.
                Action::RemoveNetwork { name, id } => {
                    prop_assert!(snap.networks[name].iter().any(|n| &n.id == id));
                }
                _ => {}
            }
        }
    }

    /// Dependencies never point forward: the step graph is acyclic by construction.
    #[test]
    fn steps_only_wait_for_earlier_steps(d in arb_desired()) {
        let p = plan_for(&d, &empty_observed(&d));
        for s in &p.steps {
            prop_assert!(s.after.iter().all(|a| *a < s.id));
        }
    }
}

/// A `depends_on` chain is planned end first, each step after the one it depends on. (That it
/// is planned in linear time is `reconcile::speed_tests`: the pure core reads no clock.)
#[test]
fn a_dependency_chain_plans_end_first() {
    let n = 300;
    let services: Vec<ServiceSpec> = (0..n)
        .map(|i| {
            let mut s = service("web", &format!("s{i:04}"), 1);
            if i + 1 < n {
                s.depends_on
                    .insert(format!("s{:04}", i + 1), DependsCondition::ServiceStarted);
            }
            s
        })
        .collect();
    let d = desired(&["h1"], vec![stack("web", services)]);
    let p = plan_for(&d, &empty_observed(&d));
    assert_eq!(p.steps.len(), n + 1);
    // The end of the chain first (after the network), its start last.
    assert_eq!(lines(&p)[1], "h1 + web-s0299-1  (missing, image busybox:1)");
    assert_eq!(lines(&p)[n], "h1 + web-s0000-1  (missing, image busybox:1)");
    assert!(p.steps[n].after.contains(&(n - 1)));
}

#[test]
fn a_replica_created_but_never_started_with_pre_start_hooks_is_made_anew() {
    let mut d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 1)])]);
    let mut o = converge(&d);
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        s.containers.get_mut("web-app-1").unwrap().state = RunState::Created;
    }
    // Without hooks it is started; with `pre_start` it is replaced, so the hooks run first.
    assert_eq!(
        lines(&plan_for(&d, &o)),
        vec!["h1 > web-app-1  (start: created, never started)"]
    );
    let hook = crate::model::hooks::Hook {
        command: vec!["true".into()],
        ..Default::default()
    };
    let app = d
        .stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap();
    app.container.hooks.pre_start = vec![hook.clone()];
    if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("h1") {
        let c = s.containers.get_mut("web-app-1").unwrap();
        c.actual.hooks.pre_start = vec![hook];
        c.spec_hash = app.container.hash();
    }
    assert_eq!(
        lines(&plan_for(&d, &o)),
        vec!["h1 ~ web-app-1  (created, never started)"]
    );
}
