//! Tests of the proxy's configuration (`render`): a golden text for a small fleet, same input
//! same bytes, only running and healthy replicas in service (starting ones disabled), the cross-host listener bound to
//! the internal address only, routes by host and path, and the hash read back.
//!
//! Tests only; pure, like the code they test.

use std::collections::{BTreeMap, BTreeSet};

use super::ports::listener_ports;
use super::render::*;
use crate::core::testkit;
use crate::model::observed::{Health, ObservedContainer, ObservedHost, RunState};
use crate::model::proxy::{IngressPort, IngressSpec, PortRange, ProxySettings};
use crate::model::spec::{DesiredState, Healthcheck, NetworkAttachment};

const RANGE: PortRange = PortRange {
    first: 40000,
    last: 40015,
};

/// Stack `s`, service `web` (4 replicas, ingress on 8080 → 80) and `api` (expose 9000).
fn state() -> DesiredState {
    let net = |svc: &mut crate::model::spec::ServiceSpec| {
        svc.container.networks.insert(
            "s_default".into(),
            NetworkAttachment {
                aliases: vec![svc.name.clone()],
                ..Default::default()
            },
        );
    };
    let mut web = testkit::service("web", 4);
    net(&mut web);
    web.container.healthcheck = Some(Healthcheck {
        test: vec!["CMD".into(), "true".into()],
        interval_ns: None,
        timeout_ns: None,
        retries: None,
        start_period_ns: None,
        start_interval_ns: None,
    });
    web.ingress = Some(IngressSpec {
        ports: vec![IngressPort {
            host_ip: "10.0.0.1".into(),
            host_port: 8080,
            container_port: 80,
        }],
        ..Default::default()
    });
    let mut api = testkit::service("api", 1);
    net(&mut api);
    api.container.expose = vec!["9000/tcp".into()];
    let mut d = testkit::desired(&["a", "b"], vec![testkit::stack("s", vec![web, api])]);
    d.hosts.get_mut("a").unwrap().internal_address = Some("10.0.0.1".into());
    d.hosts.get_mut("b").unwrap().internal_address = Some("10.0.0.2".into());
    d.settings.proxy = Some(ProxySettings {
        image: "haproxy:2.8".into(),
        ingress: false,
        ports: RANGE,
    });
    d
}

/// A replica of `service` on the snapshot, with its address on `s_default`.
fn replica(
    snap: &mut crate::model::observed::HostSnapshot,
    d: &DesiredState,
    service: &str,
    slot: &str,
    ip: &str,
    state: RunState,
    health: Option<Health>,
) {
    let svc = &d.stacks["s"].services[service];
    let name = format!("s-{service}-{slot}");
    snap.containers.insert(
        name.clone(),
        ObservedContainer {
            id: format!("id-{name}"),
            name: name.clone(),
            stack: "s".into(),
            service: service.into(),
            slot: slot.into(),
            spec_hash: svc.container.hash(),
            commit: String::new(),
            created: String::new(),
            image_id: String::new(),
            state,
            exit_code: 0,
            health,
            restart_count: 0,
            actual: svc.container.clone(),
            image_defaults: Default::default(),
        },
    );
    snap.container_ips.insert(
        name,
        BTreeMap::from([("s_default".to_string(), ip.to_string())]),
    );
}

fn host_a(d: &DesiredState) -> crate::model::observed::HostSnapshot {
    let mut o = testkit::empty_observed(d);
    let ObservedHost::Reachable(snap) = o.hosts.remove("a").unwrap() else {
        panic!()
    };
    let mut snap = snap;
    replica(
        &mut snap,
        d,
        "web",
        "1",
        "172.18.0.2",
        RunState::Running,
        Some(Health::Healthy),
    );
    replica(
        &mut snap,
        d,
        "web",
        "2",
        "172.18.0.3",
        RunState::Running,
        Some(Health::Starting),
    );
    replica(
        &mut snap,
        d,
        "web",
        "3",
        "172.18.0.4",
        RunState::Exited,
        None,
    );
    replica(
        &mut snap,
        d,
        "api",
        "1",
        "172.18.0.5",
        RunState::Running,
        None,
    );
    snap
}

const GOLDEN: &str = "\
# convoy-proxy of host `a`: written by Convoy, edits are undone
# for the proxy container of spec SPEC
global
    master-worker
    hard-stop-after 60s

defaults
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout http-request 10s
    retries 3
    option redispatch 1
    default-server inter 1s fall 2 rise 1

listen in_10.0.0.1_8080
    bind 10.0.0.1:8080
    mode tcp
    # s/web
    server s-web-1 172.18.0.2:80 check
    server s-web-2 172.18.0.3:80 check disabled
    server host:b 10.0.0.2:WEBPORT check backup

listen x_s_api_9000
    bind 10.0.0.1:APIPORT
    mode tcp
    server s-api-1 172.18.0.5:9000 check

listen x_s_web_80
    bind 10.0.0.1:WEBPORT
    mode tcp
    server s-web-1 172.18.0.2:80 check
    server s-web-2 172.18.0.3:80 check disabled

frontend convoy_control
    bind 127.0.0.1:38999
    mode http
    http-request return status 200 if { path /convoy/HASH }
    http-request return status 404
";

#[test]
fn golden_config_of_a_small_fleet() {
    let d = state();
    let ports = listener_ports(&d).unwrap();
    let snap = host_a(&d);
    let text = render(&model(&d, "a", &snap, &BTreeSet::new(), &ports));
    let hash = hash_of(&text).unwrap().to_string();
    let expected = GOLDEN
        .replace(
            "WEBPORT",
            &ports[&("s".into(), "web".into(), 80)].to_string(),
        )
        .replace(
            "APIPORT",
            &ports[&("s".into(), "api".into(), 9000)].to_string(),
        )
        .replace("HASH", &hash)
        .replace("SPEC", &crate::model::proxy::proxy_spec_hash("haproxy:2.8"));
    assert_eq!(text, expected);
    // The hash is of everything above the control listener.
    let above = &text[..text.find("\nfrontend convoy_control").unwrap()];
    assert_eq!(config_hash(above), hash);
}

#[test]
fn same_input_same_bytes_and_a_change_moves_the_hash() {
    let d = state();
    let ports = listener_ports(&d).unwrap();
    let snap = host_a(&d);
    let a = render(&model(&d, "a", &snap, &BTreeSet::new(), &ports));
    let b = render(&model(&d, "a", &snap.clone(), &BTreeSet::new(), &ports));
    assert_eq!(a, b);
    // Leaving a replica out (before it stops) changes the text and its hash.
    let out = BTreeSet::from(["s-web-1".to_string()]);
    let c = render(&model(&d, "a", &snap, &out, &ports));
    assert!(!c.contains("s-web-1"), "{c}");
    assert_ne!(hash_of(&a), hash_of(&c));
    // A new proxy image moves the hash too: a new proxy started beside the old one answers
    // for another hash than the old one (`exec::proxy_replace`).
    let mut newer = d.clone();
    newer.settings.proxy.as_mut().unwrap().image = "haproxy:3.0".into();
    let e = render(&model(&newer, "a", &snap, &BTreeSet::new(), &ports));
    assert_ne!(hash_of(&a), hash_of(&e));
}

#[test]
fn only_running_healthy_replicas_are_backends() {
    let d = state();
    let ports = listener_ports(&d).unwrap();
    let mut snap = host_a(&d);
    let m = model(&d, "a", &snap, &BTreeSet::new(), &ports);
    let live = |m: &ProxyModel| -> Vec<String> {
        m.ingress[0].routes[0]
            .backends
            .iter()
            .filter(|b| !b.backup && !b.disabled)
            .map(|b| b.name.clone())
            .collect()
    };
    // Starting (not yet healthy) and exited replicas take nothing.
    assert_eq!(live(&m), ["s-web-1"]);
    snap.containers.get_mut("s-web-2").unwrap().health = Some(Health::Healthy);
    let m = model(&d, "a", &snap, &BTreeSet::new(), &ports);
    assert_eq!(live(&m), ["s-web-1", "s-web-2"]);
}

#[test]
fn a_starting_replica_is_a_disabled_server_named_for_the_runtime_api() {
    let d = state();
    let ports = listener_ports(&d).unwrap();
    let mut snap = host_a(&d);
    let m = model(&d, "a", &snap, &BTreeSet::new(), &ports);
    let text = render(&m);
    let line = text
        .lines()
        .find(|l| l.contains("server s-web-2 "))
        .expect("the starting replica is in the configuration");
    assert!(line.ends_with(" check disabled"), "{line}");
    let healthy = text
        .lines()
        .find(|l| l.contains("server s-web-1 "))
        .unwrap();
    assert!(!healthy.contains("disabled"), "{healthy}");
    // Every section that carries it, as `set server <section>/<server>` names them.
    let at = servers_of(&m, "s-web-2");
    assert!(!at.is_empty());
    for (section, server) in &at {
        assert_eq!(server, "s-web-2");
        assert!(
            text.lines()
                .any(|l| l == format!("listen {section}") || l == format!("backend {section}")),
            "no section {section} in:\n{text}"
        );
    }
    assert!(
        servers_of(&m, "s-web-1").is_empty(),
        "a healthy one is in service already"
    );
    // Healthy now: the same server without `disabled`, and nothing left to put into service.
    snap.containers.get_mut("s-web-2").unwrap().health = Some(Health::Healthy);
    let m2 = model(&d, "a", &snap, &BTreeSet::new(), &ports);
    assert!(servers_of(&m2, "s-web-2").is_empty());
    assert!(!render(&m2).contains("disabled"));
}

#[test]
fn a_cross_host_listener_with_only_starting_replicas_is_not_opened() {
    let d = state();
    let ports = listener_ports(&d).unwrap();
    let mut snap = host_a(&d);
    let with = model(&d, "a", &snap, &BTreeSet::new(), &ports);
    snap.containers.get_mut("s-web-1").unwrap().health = Some(Health::Starting);
    let without = model(&d, "a", &snap, &BTreeSet::new(), &ports);
    let web = |m: &ProxyModel| m.cross.iter().filter(|c| c.service == "web").count();
    assert!(web(&with) > 0);
    // Another host's mesh would send to an accepted connection with no replica behind it.
    assert_eq!(web(&without), 0);
}

#[test]
fn cross_host_listeners_bind_the_internal_address_only() {
    let d = state();
    let ports = listener_ports(&d).unwrap();
    let snap = host_a(&d);
    let text = render(&model(&d, "a", &snap, &BTreeSet::new(), &ports));
    for l in text.lines().filter(|l| l.trim_start().starts_with("bind ")) {
        let addr = l.trim_start().trim_start_matches("bind ");
        assert!(
            addr.starts_with("10.0.0.1:") || addr.starts_with("127.0.0.1:"),
            "a listener on another address: {l}"
        );
        assert!(
            !addr.starts_with(':') && !addr.starts_with("0.0.0.0") && !addr.starts_with('*'),
            "{l}"
        );
    }
    // A host with no replica of a service has no listener for it, and no internal address
    // means no cross-host listener at all.
    let mut d2 = d.clone();
    d2.hosts.get_mut("a").unwrap().internal_address = None;
    let m = model(&d2, "a", &snap, &BTreeSet::new(), &ports);
    assert!(m.cross.is_empty());
}

#[test]
fn shared_ports_route_by_host_and_path() {
    let mut d = state();
    let stack = d.stacks.get_mut("s").unwrap();
    let mut site = stack.services["web"].clone();
    site.name = "site".into();
    let route = |hosts: Vec<&str>, path: Option<&str>| IngressSpec {
        ports: vec![IngressPort {
            host_ip: String::new(),
            host_port: 80,
            container_port: 80,
        }],
        hosts: hosts.into_iter().map(String::from).collect(),
        path: path.map(String::from),
    };
    site.ingress = Some(route(vec!["a.example", "*.b.example"], None));
    let mut web = stack.services["web"].clone();
    web.ingress = Some(route(vec!["a.example"], Some("/api")));
    stack.services.insert("site".into(), site);
    stack.services.insert("web".into(), web);
    let ports = listener_ports(&d).unwrap();
    let snap = host_a(&d);
    let text = render(&model(&d, "a", &snap, &BTreeSet::new(), &ports));
    let front = &text[text.find("frontend in_any_80").expect(&text)..];
    let expected = "frontend in_any_80
    bind :80
    mode http
    acl host_0 hdr(host),field(1,:) -i a.example
    acl path_0 path /api
    acl path_0 path_beg /api/
    use_backend in_any_80_s_web if host_0 path_0
    acl host_1 hdr(host),field(1,:) -i a.example
    acl host_1 hdr(host),field(1,:) -i -m end .b.example
    use_backend in_any_80_s_site if host_1
";
    assert!(front.starts_with(expected), "{front}");
    // Routing reads requests, but reuse and replays are only for ports marked HTTP: the
    // backend is the bare one, and the configuration of such a fleet stays what it was.
    assert!(
        text.contains("\nbackend in_any_80_s_site\n    mode http\n    server "),
        "{text}"
    );
    assert!(
        !text.contains("http-reuse") && !text.contains("idle-close"),
        "{text}"
    );
}

#[test]
fn an_http_port_is_carried_as_http_with_kept_connections_and_safe_retries() {
    let mut d = state();
    d.stacks
        .get_mut("s")
        .unwrap()
        .services
        .get_mut("web")
        .unwrap()
        .http_ports = BTreeSet::from([80]);
    let ports = listener_ports(&d).unwrap();
    let snap = host_a(&d);
    let m = model(&d, "a", &snap, &BTreeSet::new(), &ports);
    assert!(m.ingress[0].is_http());
    let text = render(&m);
    let section = |name: &str| -> String {
        let start = text
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in\n{text}"));
        let rest = &text[start..];
        rest[..rest.find("\n\n").unwrap_or(rest.len())].to_string()
    };
    // One service on the port: still HTTP, through its backend, with no rule to choose.
    let front = section("frontend in_10.0.0.1_8080\n");
    assert!(
        front.contains("    mode http\n    option idle-close-on-response\n"),
        "{front}"
    );
    assert!(
        front.contains("    default_backend in_10.0.0.1_8080_s_web"),
        "{front}"
    );
    let http_lines = "    http-reuse safe\n    retry-on conn-failure empty-response junk-response\n    http-request disable-l7-retry unless METH_GET\n";
    let back = section("\nbackend in_10.0.0.1_8080_s_web\n");
    assert!(back.contains(http_lines), "{back}");
    assert!(back.contains("server host:b 10.0.0.2:"), "{back}");
    let cross = section("listen x_s_web_80\n");
    assert!(
        cross.contains(&format!(
            "    mode http\n    timeout client 10m\n    timeout http-keep-alive 10m\n    option idle-close-on-response\n{http_lines}"
        )),
        "{cross}"
    );
    // The other service's port stays a byte stream.
    let api = section("listen x_s_api_9000\n");
    assert!(
        api.contains("    mode tcp\n") && !api.contains("http"),
        "{api}"
    );
    // The runtime API names the backend section for the starting replica.
    assert_eq!(
        servers_of(&m, "s-web-2"),
        [
            ("in_10.0.0.1_8080_s_web".to_string(), "s-web-2".to_string()),
            ("x_s_web_80".to_string(), "s-web-2".to_string()),
        ]
    );
    // Marking a port HTTP is a new configuration (a reload), its own hash.
    let plain = render(&model(&state(), "a", &snap, &BTreeSet::new(), &ports));
    assert_ne!(hash_of(&plain), hash_of(&text));
}
