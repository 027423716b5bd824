//! The configuration of one host's proxy (issue 13), HAProxy's `haproxy.cfg`: from the
//! desired state and the host's observation (its replicas, their health and addresses), what
//! the proxy listens on and where it sends, then the text.
//!
//! Two stages, both pure: [`model`] decides (the listeners, their backends, which replicas are
//! in), [`render`] writes; same input, same bytes. Listeners: (a) each ingress port on its
//! `host_ip` (or all addresses), TCP when one service holds it, HTTP with host and path rules
//! when several share it; (b) for every service with declared ports and a replica here, a
//! cross-host listener on the host's `internal_address` only, never on every address, at the
//! port `ports` assigns; (c) a control listener on the loopback that answers 200 to
//! `/convoy/<hash>` of the configuration in force. A replica is a backend while it runs and,
//! when it has a healthcheck, is healthy; the executor leaves out the ones it is about to stop.
//! A replica whose healthcheck is still starting is a backend too, `disabled` (in maintenance,
//! no traffic): the configuration that will carry it is shipped and checked while it starts,
//! and the executor puts it into service through HAProxy's runtime API the moment the engine
//! says it is healthy, with no reload on that path ([`servers_of`] names its entries).
//! Ingress ports also send to the service on the other hosts (their cross-host listeners), as
//! backups used when no replica here is up.
//!
//! It does not ship, reload or check anything: that is `exec::proxy`'s.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::observed::{Health, HostSnapshot, RunState};
use crate::model::proxy::CONTROL_PORT;
use crate::model::spec::{DesiredState, ServiceSpec};

/// What one host's proxy does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyModel {
    pub host: String,
    /// Published ports held for ingress services, by (bind address, port).
    pub ingress: Vec<IngressListener>,
    /// Cross-host listeners, one per (stack, service, container port) with a replica here.
    pub cross: Vec<CrossListener>,
    /// The spec hash of the proxy container it is for (`model::proxy::proxy_spec_hash`),
    /// written into the text so that a new proxy started beside the old one during a
    /// start-first replacement answers for another hash than the old one: its answer on the
    /// shared control port tells that it serves. Empty: not written.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub spec: String,
}

/// One published port the proxy holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngressListener {
    /// Empty: every address of the host.
    pub bind_ip: String,
    pub port: u16,
    /// One route (TCP, or HTTP when its port is `app_protocol: http`) or several told apart
    /// by host name and path (HTTP), most specific first.
    pub routes: Vec<Route>,
}

impl IngressListener {
    /// HTTP when the port's routes need the request to choose, or its service says the port
    /// speaks HTTP.
    pub fn is_http(&self) -> bool {
        self.routes.len() > 1
            || self
                .routes
                .iter()
                .any(|r| !r.hosts.is_empty() || r.path.is_some() || r.http)
    }
}

/// Requests for one service on an ingress port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub stack: String,
    pub service: String,
    pub hosts: Vec<String>,
    pub path: Option<String>,
    pub backends: Vec<Backend>,
    /// The replicas' port is `app_protocol: http`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http: bool,
}

/// A cross-host listener: `internal_address:port` → the service's replicas here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrossListener {
    pub stack: String,
    pub service: String,
    pub container_port: u16,
    pub address: String,
    pub port: u16,
    pub backends: Vec<Backend>,
    /// The port is `app_protocol: http`: carried as HTTP, the meshes' pooled connections kept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http: bool,
}

/// Where a listener sends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Backend {
    /// The replica's container name, or `host:<name>` for another host's listener.
    pub name: String,
    pub address: String,
    pub port: u16,
    /// Used only when no other backend is up (another host's listener).
    pub backup: bool,
    /// A replica still starting: present, in maintenance until it is put into service.
    pub disabled: bool,
}

/// A replica sends traffic while it runs and, when it has a healthcheck, is healthy.
fn in_service(state: RunState, health: Option<Health>) -> bool {
    state == RunState::Running && matches!(health, None | Some(Health::Healthy))
}

/// A running replica whose healthcheck has not passed yet.
fn starting(state: RunState, health: Option<Health>) -> bool {
    state == RunState::Running && health == Some(Health::Starting)
}

/// The replicas of `svc` on this host that take traffic on `port`, and the ones starting
/// (disabled).
fn local_backends(
    stack: &str,
    svc: &ServiceSpec,
    snap: &HostSnapshot,
    leave_out: &BTreeSet<String>,
    port: u16,
) -> Vec<Backend> {
    // The address on the service's first network, in name order, as the probe reads it.
    let Some(network) = svc.container.networks.keys().next() else {
        return Vec::new();
    };
    let mut out: Vec<Backend> = snap
        .containers
        .values()
        .filter(|c| c.stack == stack && c.service == svc.name)
        .filter(|c| in_service(c.state, c.health) || starting(c.state, c.health))
        .filter(|c| !leave_out.contains(&c.name) && !leave_out.contains(&c.id))
        .filter_map(|c| {
            let ip = snap.container_ips.get(&c.name)?.get(network)?;
            Some(Backend {
                name: c.name.clone(),
                address: ip.clone(),
                port,
                backup: false,
                disabled: starting(c.state, c.health),
            })
        })
        .collect();
    out.sort();
    out
}

/// Whether the service may run on `host` as far as `x-convoy.hosts` says (the scheduler's
/// other rules are not repeated here: a host with no replica has no listener, and a backup
/// that does not answer is marked down by its check).
fn may_run_on(svc: &ServiceSpec, host: &str) -> bool {
    svc.placement
        .hosts
        .as_ref()
        .is_none_or(|h| h.iter().any(|n| n == host))
}

/// What `host`'s proxy does, given its observation; the replicas in `leave_out` (names or
/// container IDs) are left out, as if stopped. Jobs take no traffic.
pub fn model(
    state: &DesiredState,
    host: &str,
    snap: &HostSnapshot,
    leave_out: &BTreeSet<String>,
    listener_ports: &BTreeMap<super::ports::ServicePort, u16>,
) -> ProxyModel {
    let internal = state
        .hosts
        .get(host)
        .and_then(|h| h.internal_address.clone());
    let mut cross = Vec::new();
    let mut ingress: BTreeMap<(String, u16), Vec<Route>> = BTreeMap::new();
    for (sname, stack) in &state.stacks {
        for (vname, svc) in &stack.services {
            if svc.job.is_some() {
                continue;
            }
            for port in svc.declared_tcp_ports() {
                let key = (sname.clone(), vname.clone(), port);
                let (Some(address), Some(&lport)) = (&internal, listener_ports.get(&key)) else {
                    continue;
                };
                let backends = local_backends(sname, svc, snap, leave_out, port);
                // Only starting replicas: no listener yet (another host's mesh would take an
                // accepted connection for a replica); the reload after their start adds it.
                if backends.iter().all(|b| b.disabled) {
                    continue;
                }
                cross.push(CrossListener {
                    stack: sname.clone(),
                    service: vname.clone(),
                    container_port: port,
                    address: address.clone(),
                    port: lport,
                    backends,
                    http: svc.http_ports.contains(&port),
                });
            }
            let Some(spec) = &svc.ingress else { continue };
            if !may_run_on(svc, host) {
                continue;
            }
            for p in &spec.ports {
                let mut backends = local_backends(sname, svc, snap, leave_out, p.container_port);
                // The service on the other hosts, through their cross-host listeners.
                let key = (sname.clone(), vname.clone(), p.container_port);
                if let Some(&lport) = listener_ports.get(&key) {
                    for (other, h) in &state.hosts {
                        let Some(addr) = &h.internal_address else {
                            continue;
                        };
                        if other != host && may_run_on(svc, other) {
                            backends.push(Backend {
                                name: format!("host:{other}"),
                                address: addr.clone(),
                                port: lport,
                                backup: true,
                                disabled: false,
                            });
                        }
                    }
                }
                ingress
                    .entry((p.host_ip.clone(), p.host_port))
                    .or_default()
                    .push(Route {
                        stack: sname.clone(),
                        service: vname.clone(),
                        hosts: spec.hosts.clone(),
                        path: spec.path.clone(),
                        backends,
                        http: svc.http_ports.contains(&p.container_port),
                    });
            }
        }
    }
    let ingress = ingress
        .into_iter()
        .map(|((bind_ip, port), mut routes)| {
            // Most specific first: a longer path, then routes with host names, then the name.
            routes.sort_by(|a, b| {
                let len = |r: &Route| r.path.as_ref().map_or(0, String::len);
                len(b)
                    .cmp(&len(a))
                    .then(b.hosts.is_empty().cmp(&a.hosts.is_empty()).reverse())
                    .then((&a.stack, &a.service).cmp(&(&b.stack, &b.service)))
            });
            IngressListener {
                bind_ip,
                port,
                routes,
            }
        })
        .collect();
    ProxyModel {
        host: host.to_string(),
        ingress,
        cross,
        spec: state
            .settings
            .proxy
            .as_ref()
            .map(|p| crate::model::proxy::proxy_spec_hash(&p.image))
            .unwrap_or_default(),
    }
}

/// How long an old worker may keep draining connections after a reload.
pub const HARD_STOP_AFTER_SECS: u64 = 60;

/// The configuration text, ending with the control listener that answers for its hash.
pub fn render(m: &ProxyModel) -> String {
    let mut body = String::new();
    let w = &mut body;
    line(
        w,
        &format!(
            "# convoy-proxy of host `{}`: written by Convoy, edits are undone",
            m.host
        ),
    );
    if !m.spec.is_empty() {
        line(w, &format!("# for the proxy container of spec {}", m.spec));
    }
    line(w, "global");
    line(w, "    master-worker");
    line(w, &format!("    hard-stop-after {HARD_STOP_AFTER_SECS}s"));
    line(w, "");
    line(w, "defaults");
    line(w, "    timeout connect 1s");
    line(w, "    timeout client 60s");
    line(w, "    timeout server 60s");
    line(w, "    timeout http-request 10s");
    // A connection refused by a replica that just went away is tried on another one.
    line(w, "    retries 3");
    line(w, "    option redispatch 1");
    line(w, "    default-server inter 1s fall 2 rise 1");
    for l in &m.ingress {
        line(w, "");
        let bind = if l.bind_ip.is_empty() {
            format!(":{}", l.port)
        } else if l.bind_ip.contains(':') {
            format!("[{}]:{}", l.bind_ip, l.port)
        } else {
            format!("{}:{}", l.bind_ip, l.port)
        };
        let id = format!("in_{}_{}", ident(&l.bind_ip), l.port);
        if !l.is_http() {
            let r = &l.routes[0];
            line(w, &format!("listen {id}"));
            line(w, &format!("    bind {bind}"));
            line(w, "    mode tcp");
            line(w, &format!("    # {}/{}", r.stack, r.service));
            servers(w, &r.backends);
            continue;
        }
        line(w, &format!("frontend {id}"));
        line(w, &format!("    bind {bind}"));
        line(w, "    mode http");
        if l.routes.iter().any(|r| r.http) {
            http_front(w);
        }
        for (i, r) in l.routes.iter().enumerate() {
            let mut cond = Vec::new();
            let exact: Vec<&str> = r
                .hosts
                .iter()
                .filter(|h| !h.starts_with("*."))
                .map(String::as_str)
                .collect();
            let wild: Vec<&str> = r.hosts.iter().filter_map(|h| h.strip_prefix('*')).collect();
            if !exact.is_empty() {
                line(
                    w,
                    &format!(
                        "    acl host_{i} hdr(host),field(1,:) -i {}",
                        exact.join(" ")
                    ),
                );
            }
            if !wild.is_empty() {
                line(
                    w,
                    &format!(
                        "    acl host_{i} hdr(host),field(1,:) -i -m end {}",
                        wild.join(" ")
                    ),
                );
            }
            if !r.hosts.is_empty() {
                cond.push(format!("host_{i}"));
            }
            if let Some(p) = &r.path {
                line(w, &format!("    acl path_{i} path {p}"));
                line(w, &format!("    acl path_{i} path_beg {p}/"));
                cond.push(format!("path_{i}"));
            }
            let backend = format!("{id}_{}_{}", r.stack, r.service);
            if cond.is_empty() {
                line(w, &format!("    default_backend {backend}"));
            } else {
                line(
                    w,
                    &format!("    use_backend {backend} if {}", cond.join(" ")),
                );
            }
        }
        for r in &l.routes {
            line(w, "");
            line(w, &format!("backend {id}_{}_{}", r.stack, r.service));
            line(w, "    mode http");
            // Routing alone reads the request; reuse and replays are for ports marked HTTP.
            if r.http {
                http_forwarding(w, Reuse::Safe);
            }
            servers(w, &r.backends);
        }
    }
    for c in &m.cross {
        line(w, "");
        line(
            w,
            &format!("listen x_{}_{}_{}", c.stack, c.service, c.container_port),
        );
        let bind = if c.address.contains(':') {
            format!("[{}]:{}", c.address, c.port)
        } else {
            format!("{}:{}", c.address, c.port)
        };
        line(w, &format!("    bind {bind}"));
        if c.http {
            line(w, "    mode http");
            // A mesh's kept connections stay open as long as it may lend them (an idle
            // client connection is also bounded by `timeout client`).
            line(w, &format!("    timeout client {CROSS_KEEP_ALIVE}"));
            line(
                w,
                &format!("    timeout http-keep-alive {CROSS_KEEP_ALIVE}"),
            );
            http_front(w);
            http_forwarding(w, Reuse::Safe);
        } else {
            line(w, "    mode tcp");
        }
        servers(w, &c.backends);
    }
    let hash = config_hash(w);
    line(w, "");
    line(w, "frontend convoy_control");
    line(w, &format!("    bind 127.0.0.1:{CONTROL_PORT}"));
    line(w, "    mode http");
    line(
        w,
        &format!("    http-request return status 200 if {{ path /convoy/{hash} }}"),
    );
    line(w, "    http-request return status 404");
    body
}

/// Where replica `name` is a disabled server in `m`: (proxy section, server name) as HAProxy's
/// runtime API names them (`set server <section>/<server> state ready`).
pub fn servers_of(m: &ProxyModel, name: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mine = |b: &Backend| b.disabled && b.name == name;
    for l in &m.ingress {
        let id = format!("in_{}_{}", ident(&l.bind_ip), l.port);
        for r in &l.routes {
            let section = if l.is_http() {
                format!("{id}_{}_{}", r.stack, r.service)
            } else {
                id.clone()
            };
            if r.backends.iter().any(mine) {
                out.push((section, ident(name)));
            }
        }
    }
    for c in &m.cross {
        if c.backends.iter().any(mine) {
            out.push((
                format!("x_{}_{}_{}", c.stack, c.service, c.container_port),
                ident(name),
            ));
        }
    }
    out
}

/// The hash a rendered configuration answers for on its control listener: of everything
/// above that listener.
pub fn config_hash(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash [`render`] wrote into a configuration, read back from its control listener.
pub fn hash_of(config: &str) -> Option<&str> {
    config
        .lines()
        .rev()
        .find_map(|l| {
            l.trim()
                .strip_prefix("http-request return status 200 if { path /convoy/")
        })
        .and_then(|rest| rest.strip_suffix(" }"))
}

/// How an HTTP section lends its kept server connections to new requests (HAProxy's
/// `http-reuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// HAProxy's default: a kept connection serves later requests of the client connection
    /// that opened it, never a first request: for the user's servers, whose keep-alive timeout
    /// Convoy does not know (a server closing an idle connection as a POST is sent on it
    /// would fail that POST).
    Safe,
    /// Any idle connection, the first request of a client connection included: for a mesh,
    /// whose next hop is a host proxy that keeps them ([`CROSS_KEEP_ALIVE`]). This is what
    /// saves a caller's fresh connection the handshake across hosts.
    Always,
}

/// How long a cross-host listener keeps an idle connection of a mesh (or of another host's
/// ingress): far longer than a mesh keeps one idle (HAProxy closes half of its idle server
/// connections every 5 s), so a mesh does not send on a connection being closed under it.
pub const CROSS_KEEP_ALIVE: &str = "10m";

/// What an HTTP section that accepts connections does: when a reload retires the worker that
/// holds an idle kept connection (a mesh's, a caller's), it answers one more request on it,
/// with `connection: close`, instead of closing it under a request that may be on its way
/// (HAProxy 2.6+). Without it, a POST sent at that moment would fail, as it is never sent
/// twice.
pub fn http_front(w: &mut String) {
    line(w, "    option idle-close-on-response");
}

/// What an HTTP section does beyond a TCP one, the same in the meshes (`mesh::render`):
/// server connections kept after a request and lent to the next one ([`Reuse`]), and a GET or
/// HEAD whose server closed or failed the connection before any answer (a replica killed
/// mid-request, a kept connection it had just closed, a proxy reloading) sent again to another
/// server. Other methods are never sent twice: they may not be idempotent.
pub fn http_forwarding(w: &mut String, reuse: Reuse) {
    let mode = match reuse {
        Reuse::Safe => "safe",
        Reuse::Always => "always",
    };
    line(w, &format!("    http-reuse {mode}"));
    line(w, "    retry-on conn-failure empty-response junk-response");
    line(w, "    http-request disable-l7-retry unless METH_GET");
}

fn servers(w: &mut String, backends: &[Backend]) {
    if backends.is_empty() {
        // A listener with no replica answers with a refusal, not with a hang.
        line(w, "    # no replica takes traffic here now");
    }
    for b in backends {
        let addr = if b.address.contains(':') {
            format!("[{}]:{}", b.address, b.port)
        } else {
            format!("{}:{}", b.address, b.port)
        };
        let backup = if b.backup { " backup" } else { "" };
        let disabled = if b.disabled { " disabled" } else { "" };
        line(
            w,
            &format!(
                "    server {} {addr} check{backup}{disabled}",
                ident(&b.name)
            ),
        );
    }
}

/// A name HAProxy takes as an identifier: letters, digits, `-`, `_`, `.`, `:`.
fn ident(s: &str) -> String {
    if s.is_empty() {
        return "any".into();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn line(w: &mut String, l: &str) {
    w.push_str(l);
    w.push('\n');
}
