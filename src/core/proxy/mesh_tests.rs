//! Tests of the mesh decision and its HAProxy configuration: which hosts get a mesh, under which
//! aliases, forwarding where; the golden text; same input, same bytes. Pure, like the module.

use std::collections::BTreeMap;

use super::*;
use crate::core::testkit::{desired, service as svc, stack};
use crate::model::spec::{NetworkSpec, PortBinding};

const NET: &str = "shop_default";

/// A service on the stack's default network (its name an alias, as the manifest makes it).
fn on_net(name: &str, replicas: u32, nets: &[&str]) -> ServiceSpec {
    let mut s = svc(name, replicas);
    for n in nets {
        s.container.networks.insert(
            n.to_string(),
            NetworkAttachment {
                aliases: vec![name.to_string()],
                ..Default::default()
            },
        );
    }
    s
}

fn with_expose(mut s: ServiceSpec, ports: &[u16]) -> ServiceSpec {
    s.container.expose = ports.iter().map(|p| format!("{p}/tcp")).collect();
    s
}

fn shop(services: Vec<ServiceSpec>) -> DesiredState {
    let mut st = stack("shop", services);
    st.networks.insert(
        "default".into(),
        NetworkSpec {
            engine_name: NET.into(),
            driver: "bridge".into(),
            ..Default::default()
        },
    );
    desired(&["h1", "h2", "h3"], vec![st])
}

/// Placement from (service, slot, host) triples of stack `shop`.
fn placed(entries: &[(&str, &str, &str)]) -> Placement {
    let mut p = Placement::default();
    for (service, slot, host) in entries {
        p.replicas.insert(
            ReplicaKey {
                stack: "shop".into(),
                service: service.to_string(),
                slot: slot.to_string(),
            },
            Assignment::Host {
                host: host.to_string(),
            },
        );
    }
    p
}

fn inputs(d: &DesiredState) -> MeshInputs {
    let mut addresses = BTreeMap::new();
    for (i, h) in ["h1", "h2", "h3"].iter().enumerate() {
        addresses.insert(h.to_string(), format!("10.0.0.{}", i + 1));
    }
    let mut ports = BTreeMap::new();
    let mut next = 39000;
    for (stack_name, st) in &d.stacks {
        for (name, s) in &st.services {
            for p in s.declared_tcp_ports() {
                ports.insert((stack_name.clone(), name.clone(), p), next);
                next += 1;
            }
        }
    }
    MeshInputs { addresses, ports }
}

fn decide(d: &DesiredState, p: &Placement) -> Vec<Mesh> {
    meshes(d, p, &inputs(d), ServiceSpec::declared_tcp_ports)
}

/// The case: a frontend on h1, `api` on h2 and h3. h1 gets a mesh under `api`
/// forwarding to both; h2 and h3 run `api` themselves and call nothing remote that declares a
/// port (the frontend declares none), so they get none.
#[test]
fn a_remote_only_service_gets_a_mesh_where_its_callers_run() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 2, &[NET]), &[8080]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("api", "2", "h3"),
    ]);
    let m = decide(&d, &p);
    assert_eq!(m.len(), 1, "{m:#?}");
    let m = &m[0];
    assert_eq!((m.host.as_str(), m.stack.as_str()), ("h1", "shop"));
    assert_eq!(m.service, "convoy-mesh.h1");
    assert_eq!(m.container, "convoy-mesh-shop");
    assert_eq!(m.aliases[NET], vec!["api".to_string()]);
    assert_eq!(m.routes.len(), 1);
    let r = &m.routes[0];
    assert_eq!((r.service.as_str(), r.port), ("api", 8080));
    let eps: Vec<(&str, &str, u16, u32)> = r
        .endpoints
        .iter()
        .map(|e| (e.host.as_str(), e.address.as_str(), e.port, e.weight))
        .collect();
    assert_eq!(
        eps,
        vec![("h2", "10.0.0.2", 39000, 1), ("h3", "10.0.0.3", 39000, 1)]
    );
}

/// A local replica is preferred: Docker's DNS answers with it, so no alias and no mesh.
#[test]
fn a_local_replica_means_no_alias() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 2, &[NET]), &[8080]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h1"),
        ("api", "2", "h3"),
    ]);
    assert!(decide(&d, &p).is_empty());
}

/// Weights are the replicas per host; the container side of `ports` counts as declared, UDP
/// does not.
#[test]
fn endpoints_are_weighted_by_replicas_and_ports_include_published_ones() {
    let mut api = with_expose(on_net("api", 3, &[NET]), &[8080]);
    api.container.ports = vec![
        PortBinding {
            host_ip: String::new(),
            host_port: Some(80),
            container_port: 80,
            protocol: "tcp".into(),
        },
        PortBinding {
            host_ip: String::new(),
            host_port: Some(53),
            container_port: 53,
            protocol: "udp".into(),
        },
    ];
    let d = shop(vec![on_net("frontend", 1, &[NET]), api]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("api", "2", "h2"),
        ("api", "3", "h3"),
    ]);
    let m = decide(&d, &p);
    let ports: Vec<u16> = m[0].routes.iter().map(|r| r.port).collect();
    assert_eq!(ports, vec![80, 8080]);
    let weights: Vec<u32> = m[0].routes[1].endpoints.iter().map(|e| e.weight).collect();
    assert_eq!(weights, vec![2, 1]);
}

/// Two remote-only services on the same port cannot share one address: two meshes, stable.
#[test]
fn services_sharing_a_port_get_a_mesh_each() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 1, &[NET]), &[8080]),
        with_expose(on_net("auth", 1, &[NET]), &[8080, 9000]),
        with_expose(on_net("cache", 1, &[NET]), &[6379]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("auth", "1", "h2"),
        ("cache", "1", "h3"),
    ]);
    let m = decide(&d, &p);
    let got: Vec<(&str, &str, Vec<String>)> = m
        .iter()
        .filter(|m| m.host == "h1")
        .map(|m| {
            (
                m.service.as_str(),
                m.container.as_str(),
                m.aliases[NET].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "convoy-mesh.h1",
                "convoy-mesh-shop",
                vec!["api".to_string(), "cache".to_string()]
            ),
            (
                "convoy-mesh-2.h1",
                "convoy-mesh-shop-2",
                vec!["auth".to_string()]
            ),
        ]
    );
    // h2 runs api and auth, and calls cache on h3; h3 calls api and auth on h2.
    let h2: Vec<&Mesh> = m.iter().filter(|m| m.host == "h2").collect();
    assert_eq!(h2.len(), 1);
    assert_eq!(h2[0].aliases[NET], vec!["cache".to_string()]);
    let h3: Vec<&Mesh> = m.iter().filter(|m| m.host == "h3").collect();
    assert_eq!(h3.len(), 2);
}

/// A name is looked up on the networks the callers are on: a service on another network of
/// the stack is not reachable from them in Compose either, so it gets no alias; a service
/// without a declared port gets none either.
#[test]
fn no_alias_off_the_callers_networks_or_without_ports() {
    let d = shop(vec![
        on_net("frontend", 1, &["shop_front"]),
        with_expose(on_net("api", 1, &["shop_back"]), &[8080]),
        on_net("worker", 1, &["shop_front"]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("worker", "1", "h2"),
    ]);
    assert!(decide(&d, &p).is_empty());
}

/// A host with no internal address, or a pending replica, gives no endpoint.
#[test]
fn pending_replicas_and_unaddressed_hosts_give_no_endpoint() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 2, &[NET]), &[8080]),
    ]);
    let mut p = placed(&[("frontend", "1", "h1"), ("api", "1", "h2")]);
    p.replicas.insert(
        ReplicaKey {
            stack: "shop".into(),
            service: "api".into(),
            slot: "2".into(),
        },
        Assignment::Pending {
            reason: "no room".into(),
        },
    );
    let mut i = inputs(&d);
    let m = meshes(&d, &p, &i, ServiceSpec::declared_tcp_ports);
    assert_eq!(m[0].routes[0].endpoints.len(), 1);
    i.addresses.remove("h2");
    let m = meshes(&d, &p, &i, ServiceSpec::declared_tcp_ports);
    assert!(m[0].routes[0].endpoints.is_empty());
}

#[test]
fn rendering_golden_text() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 3, &[NET]), &[8080]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("api", "2", "h2"),
        ("api", "3", "h3"),
    ]);
    let text = render(&decide(&d, &p)[0]);
    let body = "\
# Convoy mesh of stack `shop` on host `h1`: generated, do not edit.
global
    maxconn 4096
    hard-stop-after 30s

defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    retries 2
    option redispatch
    default-server inter 1s fall 2 rise 1 observe layer4 error-limit 1 on-error mark-down

listen api_8080
    bind :8080
    balance roundrobin
    server h2 10.0.0.2:39000 weight 2 check
    server h3 10.0.0.3:39000 weight 1 check
";
    let h = config_hash(body);
    let expected = format!(
        "{body}
frontend convoy_control
    mode http
    timeout client 5s
    bind :61999
    http-request return status 200 content-type text/plain string {h} if {{ path /{h} }}
    http-request return status 404
"
    );
    assert_eq!(text, expected);
    assert_eq!(announced_hash(&text), Some(config_hash(body)));
}

/// An `app_protocol: http` port is an HTTP listener that keeps its connections to the other
/// hosts' proxies; the service's other ports stay TCP.
#[test]
fn an_http_port_is_an_http_listener() {
    let mut api = with_expose(on_net("api", 1, &[NET]), &[8080, 9000]);
    api.http_ports = BTreeSet::from([8080]);
    let d = shop(vec![on_net("frontend", 1, &[NET]), api]);
    let p = placed(&[("frontend", "1", "h1"), ("api", "1", "h2")]);
    let m = decide(&d, &p);
    let http: Vec<(u16, bool)> = m[0].routes.iter().map(|r| (r.port, r.http)).collect();
    assert_eq!(http, [(8080, true), (9000, false)]);
    let text = render(&m[0]);
    assert!(
        text.contains(
            "listen api_8080\n    bind :8080\n    balance roundrobin\n    mode http\n    option idle-close-on-response\n    http-reuse always\n    retry-on conn-failure empty-response junk-response\n    http-request disable-l7-retry unless METH_GET\n    server h2 "
        ),
        "{text}"
    );
    assert!(
        text.contains("listen api_9000\n    bind :9000\n    balance roundrobin\n    server h2 "),
        "{text}"
    );
}

/// Same input, same bytes; a changed endpoint changes the hash; a hand edit announces nothing.
#[test]
fn same_input_same_bytes() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 2, &[NET]), &[8080, 9090]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("api", "2", "h3"),
    ]);
    let a = decide(&d, &p);
    let b = decide(&d.clone(), &p.clone());
    assert_eq!(a, b);
    assert_eq!(render(&a[0]), render(&b[0]));
    let mut moved = a[0].clone();
    moved.routes[0].endpoints.pop();
    assert_ne!(
        announced_hash(&render(&a[0])),
        announced_hash(&render(&moved))
    );
    let edited = render(&a[0]).replace("weight 1", "weight 9");
    assert_eq!(announced_hash(&edited), None);
}

/// The planner sees each mesh as a service of its stack placed on its host; without meshes
/// nothing is cloned.
#[test]
fn meshes_join_the_desired_state_as_services_placed_on_their_hosts() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 2, &[NET]), &[8080]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("api", "2", "h3"),
    ]);
    let m = decide(&d, &p);
    let (d2, p2) = with_meshes(&d, &p, &m, "proxy:1").expect("a mesh");
    let s = &d2.stacks["shop"].services["convoy-mesh.h1"];
    assert_eq!(s.container.image, "proxy:1");
    assert_eq!(
        s.container.container_name.as_deref(),
        Some("convoy-mesh-shop")
    );
    assert_eq!(s.container.networks[NET].aliases, vec!["api".to_string()]);
    assert_eq!(s.container.labels[LABEL_MESH], "1");
    let key = ReplicaKey {
        stack: "shop".into(),
        service: "convoy-mesh.h1".into(),
        slot: "h1".into(),
    };
    assert_eq!(p2.host_of(&key), Some("h1"));
    // Meshes are not callers nor targets of meshes: deciding again gives the same.
    assert_eq!(decide(&d2, &p2), m);
    assert!(with_meshes(&d, &p, &[], "proxy:1").is_none());
}

#[test]
fn mesh_service_names() {
    assert!(is_mesh_service("convoy-mesh.h1"));
    assert!(is_mesh_service("convoy-mesh-2.h1"));
    assert!(!is_mesh_service("convoy-mesh"));
    assert!(!is_mesh_service("convoy-mesh-x.h1"));
    assert!(!is_mesh_service("api"));
}

/// The planner runs a mesh like any replica: created where it is needed, in sync once it runs,
/// removed when no longer needed.
#[test]
fn the_planner_creates_keeps_and_removes_a_mesh() {
    use crate::core::plan::{assume_converged, plan, Action};
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 2, &[NET]), &[8080]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("api", "2", "h3"),
    ]);
    let m = decide(&d, &p);
    let (d2, p2) = with_meshes(&d, &p, &m, "proxy:1").expect("a mesh");
    let first = plan(&d2, &p2, &crate::core::testkit::empty_observed(&d2), "c1");
    let creates: Vec<(&str, &str)> = first
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Create { replica, .. } => Some((s.host.as_str(), replica.name.as_str())),
            _ => None,
        })
        .collect();
    assert!(creates.contains(&("h1", "convoy-mesh-shop")), "{creates:?}");
    assert_eq!(
        creates
            .iter()
            .filter(|(_, n)| n.starts_with("convoy-mesh"))
            .count(),
        1
    );
    let running = assume_converged(&d2, &p2, "c1");
    let again = plan(&d2, &p2, &running, "c1");
    assert!(again.steps.is_empty(), "{:#?}", again.steps);
    // `api` now runs on h1 too: the mesh goes.
    let p3 = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h1"),
        ("api", "2", "h3"),
    ]);
    assert!(decide(&d, &p3).is_empty());
    let after = plan(&d, &p3, &running, "c1");
    assert!(
        after.steps.iter().any(|s| matches!(&s.action,
            Action::Remove { name, .. } if name == "convoy-mesh-shop" && s.host == "h1")),
        "{:#?}",
        after.steps
    );
}

/// The rendered text is a configuration HAProxy accepts (run by hand: `haproxy -c` in the
/// proxy image; the e2e test runs it for real). Printed so `--nocapture` shows it.
#[test]
fn rendered_config_prints() {
    let d = shop(vec![
        on_net("frontend", 1, &[NET]),
        with_expose(on_net("api", 2, &[NET]), &[8080]),
    ]);
    let p = placed(&[
        ("frontend", "1", "h1"),
        ("api", "1", "h2"),
        ("api", "2", "h3"),
    ]);
    let text = render(&decide(&d, &p)[0]);
    println!("{text}");
    assert!(text.ends_with("http-request return status 404\n"));
}

/// Through the whole planning pass: a fleet without `proxy:` gets no mesh and no step for one;
/// with it, the mesh is planned from the placement and the hosts' internal addresses, and the
/// fleet it leaves is in sync (as `diff --base` assumes it).
#[test]
fn plan_pass_plans_meshes_only_with_a_proxy() {
    use crate::core::pass::{assume_observed, plan_pass, HostMemory};
    use crate::core::plan::Action;
    use crate::model::proxy::{ProxySettings, DEFAULT_PORT_RANGE};
    let mut frontend = on_net("frontend", 1, &[NET]);
    frontend.placement.hosts = Some(vec!["h1".into()]);
    let mut api = with_expose(on_net("api", 2, &[NET]), &[8080]);
    api.placement.hosts = Some(vec!["h2".into(), "h3".into()]);
    let mut d = shop(vec![frontend, api]);
    for (i, h) in d.hosts.values_mut().enumerate() {
        h.internal_address = Some(format!("10.0.0.{}", i + 1));
    }
    let mesh_steps = |d: &DesiredState| {
        let pass = plan_pass(
            d,
            &crate::core::testkit::empty_observed(d),
            &HostMemory::default(),
            "c1",
        );
        let names: Vec<(String, String)> = pass
            .plan
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Create { replica, .. } if replica.name.starts_with("convoy-mesh") => {
                    Some((s.host.clone(), replica.name.clone()))
                }
                _ => None,
            })
            .collect();
        (pass.meshes, names)
    };
    let (meshes, steps) = mesh_steps(&d);
    assert!(meshes.is_empty() && steps.is_empty(), "{steps:?}");

    d.settings.proxy = Some(ProxySettings {
        image: "proxy:1".into(),
        ingress: false,
        ports: DEFAULT_PORT_RANGE,
    });
    let (meshes, steps) = mesh_steps(&d);
    assert_eq!(
        steps,
        vec![("h1".to_string(), "convoy-mesh-shop".to_string())]
    );
    assert_eq!(meshes.len(), 1);
    let port = crate::core::proxy::ports::listener_port(&d, "shop", "api", 8080).unwrap();
    let eps: Vec<(String, u16)> = meshes[0].routes[0]
        .endpoints
        .iter()
        .map(|e| (e.address.clone(), e.port))
        .collect();
    assert_eq!(
        eps,
        vec![
            ("10.0.0.2".to_string(), port),
            ("10.0.0.3".to_string(), port)
        ]
    );
    let running = assume_observed(&d, "c1");
    let again = plan_pass(&d, &running, &HostMemory::default(), "c1");
    assert!(again.plan.steps.is_empty(), "{:#?}", again.plan.steps);
}
