//! `proxy:` in `convoy.yaml`, `internal_address` and `x-convoy.ingress` (issue 13): what is
//! read, the defaults, and the located error of every bad value (a missing image, a range, an
//! address, an ingress without a proxy, ports ingress cannot carry, a clash of two services).
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;
use crate::model::proxy::{IngressPort, IngressSpec, PortRange, ProxySettings, DEFAULT_PORT_RANGE};

const P: &str = "stacks/web/compose.yaml";
const PROXIED: &str = "fleet: prod\nproxy: {image: convoy-test/proxy:1}\n";

fn with_fleet(fleet: &str, compose: &str) -> Vec<(&'static str, String)> {
    vec![
        ("convoy.yaml", fleet.to_string()),
        ("stacks/web/compose.yaml", compose.to_string()),
    ]
}

fn load_ok(fleet: &str, compose: &str) -> DesiredState {
    ok(&files(&with_fleet(fleet, compose)))
}

fn load_errs(fleet: &str, compose: &str) -> Vec<String> {
    errs(&files(&with_fleet(fleet, compose)))
}

const WEB: &str = "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n";

#[test]
fn no_proxy_section_changes_nothing() {
    let s = load_ok(FLEET, WEB);
    assert_eq!(s.settings.proxy, None);
    let web = &s.stacks["web"].services["web"];
    assert_eq!(web.ingress, None);
    assert_eq!(web.container.ports.len(), 1);
    // Out of the serialised form while unset: the state's JSON is as before.
    let json = serde_json::to_string(&s).unwrap();
    assert!(
        !json.contains("proxy") && !json.contains("ingress") && !json.contains("internal_address"),
        "{json}"
    );
}

#[test]
fn proxy_settings_are_read_with_their_defaults() {
    let s = load_ok(PROXIED, WEB);
    assert_eq!(
        s.settings.proxy,
        Some(ProxySettings {
            image: "convoy-test/proxy:1".into(),
            ingress: false,
            ports: DEFAULT_PORT_RANGE,
        })
    );
    // `ingress: false` by default: the service keeps its port.
    assert_eq!(s.stacks["web"].services["web"].ingress, None);
    let s = load_ok(
        "fleet: prod\nproxy:\n  image: haproxy:2.8\n  ingress: true\n  ports: 41000-41099\n",
        WEB,
    );
    let p = s.settings.proxy.unwrap();
    assert!(p.ingress);
    assert_eq!(
        p.ports,
        PortRange {
            first: 41000,
            last: 41099
        }
    );
    // The fleet-wide default takes the service's published port.
    let web = &s.stacks["web"].services["web"];
    assert!(web.container.ports.is_empty());
    assert_eq!(web.ingress.as_ref().unwrap().ports[0].host_port, 8080);
}

#[test]
fn bad_proxy_values_are_located() {
    let e = load_errs(
        "fleet: prod\nproxy:\n  ingress: maybe\n  ports: 10-20\n  tls: on\n",
        WEB,
    );
    assert_eq!(
        e,
        vec![
            "convoy.yaml:3:3: proxy: missing `image` (the proxy image, HAProxy 2.x: `image: haproxy:2.8`)".to_string(),
            "convoy.yaml:3:12: proxy.ingress: expected a boolean, found a string".to_string(),
            "convoy.yaml:4:10: proxy.ports: the range `10-20` must go upwards from 1024 or above (ports below 1024 are for services)".to_string(),
            "convoy.yaml:5:3: proxy.tls: unknown key".to_string(),
        ]
    );
}

#[test]
fn internal_address_is_written_or_taken_from_the_ssh_address() {
    let fleet = "fleet: prod\nproxy: {image: p}\nhosts:\n  a: {address: \"ssh://root@10.0.0.1\"}\n  b: {address: \"ssh://b.example\"}\n  c: {address: \"ssh://c\", internal_address: 10.0.0.3}\n";
    let s = load_ok(fleet, WEB);
    assert_eq!(s.hosts["a"].internal_address.as_deref(), Some("10.0.0.1"));
    assert_eq!(s.hosts["b"].internal_address.as_deref(), Some("b.example"));
    assert_eq!(s.hosts["c"].internal_address.as_deref(), Some("10.0.0.3"));
}

#[test]
fn internal_address_is_required_where_the_address_says_nothing() {
    let fleet = "fleet: prod\nproxy: {image: p}\nssh: {config_file: /etc/convoy/ssh_config}\nhosts:\n  a: {address: \"unix:///var/run/docker.sock\"}\n  b: {address: \"ssh://bastioned\"}\n  c: {address: \"ssh://10.0.0.3\"}\n  d: {address: \"ssh://d\", internal_address: 0.0.0.0}\n  e: {address: \"ssh://e\", internal_address: e.lan}\n";
    let e = load_errs(fleet, WEB);
    assert_eq!(
        e,
        vec![
            "convoy.yaml:5:3: hosts.a.internal_address: host `a` needs `internal_address` (the IP the other hosts reach it at) because the fleet has a `proxy:`, and it is reached through a local socket".to_string(),
            "convoy.yaml:6:3: hosts.b.internal_address: host `b` needs `internal_address` (the IP the other hosts reach it at) because the fleet has a `proxy:`, and its SSH address is a name an ssh config file may make an alias or a jump".to_string(),
            "convoy.yaml:8:45: hosts.d.internal_address: `0.0.0.0` is every address of the host: cross-host listeners bind to one address the other hosts reach, never to all".to_string(),
            "convoy.yaml:9:45: hosts.e.internal_address: expected an IP address the other hosts reach this one at, got `e.lan`".to_string(),
        ]
    );
    // Without a proxy nothing is required (the address is still filled where it can be).
    let s = load_ok(
        "fleet: prod\nhosts:\n  a: {address: \"unix:///var/run/docker.sock\"}\n  c: {address: \"ssh://10.0.0.3\"}\n",
        WEB,
    );
    assert_eq!(s.hosts["a"].internal_address, None);
    assert_eq!(s.hosts["c"].internal_address.as_deref(), Some("10.0.0.3"));
}

#[test]
fn ingress_moves_the_published_ports_to_the_proxy() {
    let s = load_ok(
        PROXIED,
        "services:\n  web:\n    image: x\n    ports: [\"127.0.0.1:8080:80\", \"9000\"]\n    deploy: {replicas: 4}\n    x-convoy: {ingress: true}\n",
    );
    let web = &s.stacks["web"].services["web"];
    let ingress = web.ingress.as_ref().unwrap();
    assert_eq!(ingress.ports.len(), 1);
    assert_eq!(ingress.ports[0].host_ip, "127.0.0.1");
    assert_eq!(ingress.ports[0].host_port, 8080);
    assert_eq!(ingress.ports[0].container_port, 80);
    assert!(!ingress.is_routed());
    // The port the engine chooses stays with the replicas.
    assert_eq!(web.container.ports.len(), 1);
    assert_eq!(web.container.ports[0].host_port, None);
    assert_eq!(web.declared_tcp_ports(), vec![80, 9000]);
    // Routing: hosts lowercased and sorted, the path without its trailing slash.
    let s = load_ok(
        PROXIED,
        "services:\n  api:\n    image: x\n    ports: [\"80:8080\"]\n    x-convoy:\n      ingress: {hosts: [B.example, a.example], path: /api/}\n  site:\n    image: x\n    ports: [\"80:80\"]\n    x-convoy:\n      ingress: {hosts: [a.example]}\n",
    );
    let api = s.stacks["web"].services["api"].ingress.clone().unwrap();
    assert_eq!(
        (api.hosts, api.path),
        (
            vec!["a.example".to_string(), "b.example".to_string()],
            Some("/api".to_string())
        )
    );
    let site = s.stacks["web"].services["site"].ingress.clone().unwrap();
    assert_eq!(site.path, None);
    // `ingress: false` keeps the port even when the fleet's default is on.
    let s = load_ok(
        "fleet: prod\nproxy: {image: p, ingress: true}\n",
        "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n    x-convoy: {ingress: false}\n",
    );
    assert_eq!(s.stacks["web"].services["web"].ingress, None);
}

/// Ingress is out of the spec hash, but the ports it takes are not: turning it on replaces the
/// replicas (they stop publishing the port), and the same ingress hashes the same.
#[test]
fn ingress_changes_the_hash_through_the_ports_only() {
    let plain = load_ok(PROXIED, WEB).stacks["web"].services["web"].clone();
    let on = load_ok(
        PROXIED,
        "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n    x-convoy: {ingress: true}\n",
    )
    .stacks["web"]
        .services["web"]
        .clone();
    assert_ne!(plain.container.hash(), on.container.hash());
    let bare =
        load_ok(PROXIED, "services:\n  web:\n    image: x\n").stacks["web"].services["web"].clone();
    assert_eq!(bare.container.hash(), on.container.hash());
    assert_eq!(
        on.ingress,
        Some(IngressSpec {
            ports: vec![IngressPort {
                host_ip: String::new(),
                host_port: 8080,
                container_port: 80,
            }],
            hosts: vec![],
            path: None,
        })
    );
}

#[test]
fn app_protocol_http_marks_the_port_for_the_proxy_and_leaves_the_container_alone() {
    let svc = |compose: &str| load_ok(PROXIED, compose).stacks["web"].services["web"].clone();
    let http = svc(
        "services:\n  web:\n    image: x\n    ports:\n      - {target: 80, published: 8080, app_protocol: HTTP}\n      - {target: 9000, app_protocol: grpc}\n      - {target: 9100}\n    x-convoy: {ingress: true}\n",
    );
    // Only `http` changes what the proxy does; `grpc` (HTTP/2) stays a byte stream.
    assert_eq!(http.http_ports, BTreeSet::from([80]));
    let plain = svc(
        "services:\n  web:\n    image: x\n    ports:\n      - {target: 80, published: 8080}\n      - {target: 9000}\n      - {target: 9100}\n    x-convoy: {ingress: true}\n",
    );
    assert!(plain.http_ports.is_empty());
    // The engine never sees it: the same containers, the same hash.
    assert_eq!(http.container, plain.container);
    assert_eq!(http.container.hash(), plain.container.hash());
    assert_eq!(http.ingress, plain.ingress);
    // And the serialised service of a fleet that does not use it is what it was.
    assert!(!serde_json::to_string(&plain)
        .unwrap()
        .contains("http_ports"));
    let e = load_errs(
        PROXIED,
        "services:\n  web:\n    image: x\n    ports:\n      - {target: 53, protocol: udp, app_protocol: http}\n",
    );
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:5:51: services.web.ports[0].app_protocol: `app_protocol: http` needs a TCP port, and this one is udp".to_string()]
    );
}

#[test]
fn bad_ingress_values_are_located() {
    let e = load_errs(
        FLEET,
        "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n    x-convoy: {ingress: true}\n",
    );
    assert_eq!(
        e,
        vec![format!("{P}:5:25: services.web.x-convoy.ingress: ingress needs the per-host proxy: add `proxy: {{image: ...}}` to convoy.yaml, or remove `ingress`")]
    );
    let e = load_errs(
        PROXIED,
        "services:\n  a:\n    image: x\n    x-convoy: {ingress: true}\n  b:\n    image: x\n    ports: [\"53:53/udp\"]\n    x-convoy: {ingress: true}\n  c:\n    image: x\n    network_mode: host\n    x-convoy: {ingress: true}\n  d:\n    image: x\n    ports: [\"80:80\"]\n    x-convoy:\n      ingress: {hosts: [\"bad host\"], path: api, tls: true}\n  e:\n    image: x\n    x-convoy: {ingress: yes please}\n",
    );
    assert_eq!(
        e,
        vec![
            format!("{P}:4:25: services.a.x-convoy.ingress: ingress holds the ports a service publishes, and this one publishes none: add `ports: [\"<host port>:<container port>\"]`"),
            format!("{P}:8:25: services.b.x-convoy.ingress: ingress carries TCP only, and this service publishes 53/udp: remove `ingress` or that port"),
            format!("{P}:12:25: services.c.x-convoy.ingress: ingress cannot reach a container with `network_mode: host`: the proxy sends to replicas on the service's networks"),
            format!("{P}:17:25: services.d.x-convoy.ingress.hosts[0]: `bad host` is not a host name (letters, digits, `-` and `.`, optionally starting with `*.`)"),
            format!("{P}:17:44: services.d.x-convoy.ingress.path: expected a path prefix starting with `/`, got `api`"),
            format!("{P}:17:49: services.d.x-convoy.ingress.tls: unknown key"),
            format!("{P}:20:25: services.e.x-convoy.ingress: expected `true`, `false` or a mapping `{{hosts: [...], path: /prefix}}`"),
        ]
    );
}

/// Two services on one published port: allowed only when both go through the proxy with
/// routes that tell them apart.
#[test]
fn a_shared_port_needs_two_different_routes() {
    let both = |a: &str, b: &str| {
        format!("services:\n  a:\n    image: x\n    ports: [\"80:80\"]\n    x-convoy: {{ingress: {a}}}\n  b:\n    image: x\n    ports: [\"80:80\"]\n    x-convoy: {{ingress: {b}}}\n")
    };
    load_ok(PROXIED, &both("{hosts: [a.example]}", "{path: /b}"));
    for (a, b) in [
        ("true", "true"),
        ("{hosts: [a.example]}", "true"),
        ("{path: /x}", "{path: /x/}"),
    ] {
        let e = load_errs(PROXIED, &both(a, b));
        assert_eq!(e.len(), 1, "{a} / {b}: {e:?}");
        assert!(
            e[0].contains("host port 80/tcp is also published by service `a`"),
            "{e:?}"
        );
    }
}

#[test]
fn a_range_too_small_for_the_services_is_an_error() {
    let compose: String = (0..17)
        .map(|i| format!("  s{i}:\n    image: x\n    expose: [\"80\"]\n"))
        .collect();
    let e = load_errs(
        "fleet: prod\nproxy: {image: p, ports: 40000-40015}\n",
        &format!("services:\n{compose}"),
    );
    assert_eq!(
        e,
        vec!["convoy.yaml: proxy.ports: 17 service ports need a cross-host listener each, and the range 40000-40015 holds 16: widen it".to_string()]
    );
}

#[test]
fn a_port_the_proxy_holds_is_not_published_by_another_service() {
    let e = errs(&files(&[
        ("convoy.yaml", PROXIED.to_string()),
        (
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: x\n    ports: [\"8080:80\"]\n    x-convoy: {ingress: true}\n"
                .to_string(),
        ),
        (
            "stacks/other/compose.yaml",
            "services:\n  side:\n    image: x\n    ports: [\"127.0.0.1:8080:80\"]\n  fine:\n    image: x\n    ports: [\"8081:80\", \"8080:53/udp\"]\n"
                .to_string(),
        ),
    ]));
    assert_eq!(
        e,
        vec!["stacks/other/compose.yaml:2:3: services.side.ports: host port 8080 is held by the proxy for the ingress service `web` of stack `web`: publish another port, or give this service `x-convoy: {ingress: ...}` with its own host name or path".to_string()]
    );
}
