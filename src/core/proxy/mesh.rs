//! Service discovery across hosts: which (host, stack) needs a "mesh" container, under which
//! network aliases, forwarding which ports to which other hosts, and the HAProxy configuration
//! that does it, rendered as text.
//!
//! Docker's DNS answers a service name on a stack network with the replicas on the same host
//! only. Where a stack has replicas on a host that may call one of its services that has no
//! replica there (a "remote-only" service), Convoy runs a mesh container on that host, joined to
//! the stack's networks under the remote-only services' names, that forwards each declared port
//! to the other hosts' cross-host listeners (`internal_address:port`, held by each host's
//! `convoy-proxy`), weighted by their replica counts. Where a local replica exists, Docker's DNS
//! already answers with it (preferred), so the mesh takes no alias for it.
//!
//! Pure: the desired state, the placement, each host's internal address and the cross-host
//! listener ports in; [`Mesh`] values, the synthetic services that make the planner run them,
//! and the configuration bytes out. Same input, same bytes. It must not do I/O, read a clock,
//! or look at what the engines run: the executor ships the text (`exec::mesh`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::core::schedule::{Assignment, Placement, ReplicaKey};
use crate::model::spec::{ContainerSpec, DesiredState, NetworkAttachment, ServiceSpec};

pub use crate::model::proxy::{is_mesh_service, MESH_SERVICE};

/// Where the configuration lives in the mesh container: `/tmp` exists in every image, and the
/// official HAProxy image's own folder is not writable by its default user.
pub const CONFIG_DIR: &str = "/tmp";
pub const CONFIG_FILE: &str = "convoy-mesh.cfg";

/// The first control port tried: the mesh answers its configuration's hash there, so the
/// executor knows when a reload is complete. Lower ports are tried when a service declares it.
pub const CONTROL_PORT: u16 = 61999;

/// The user label that marks a mesh container (beside Convoy's ownership labels).
pub const LABEL_MESH: &str = "convoy.mesh";

/// One mesh container: on `host`, for `stack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mesh {
    pub host: String,
    pub stack: String,
    /// `convoy-mesh.<host>`, `convoy-mesh-2.<host>`, ...: the service label, and so the
    /// placement's key (its slot is the host's name, as for a global service).
    pub service: String,
    /// The engine name: `convoy-mesh-<stack>`, `convoy-mesh-<stack>-2`, ...
    pub container: String,
    /// Engine network name → the aliases the mesh takes there (sorted).
    pub aliases: BTreeMap<String, Vec<String>>,
    /// One listener per (service, port), sorted.
    pub routes: Vec<Route>,
    /// Where the mesh answers its configuration's hash.
    pub control_port: u16,
}

/// A declared port of a remote-only service and the hosts that serve it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    pub service: String,
    pub port: u16,
    /// One per host that runs replicas of the service, in host name order.
    pub endpoints: Vec<Endpoint>,
    /// The port is `app_protocol: http`: carried as HTTP, connections to the endpoints kept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub http: bool,
}

/// A host's cross-host listener for one (stack, service, port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: String,
    pub address: String,
    pub port: u16,
    /// The replicas placed there: HAProxy's server weight (1..=256).
    pub weight: u32,
}

/// What the decision needs besides the desired state and the placement.
#[derive(Debug, Clone, Default)]
pub struct MeshInputs {
    /// Host → its internal address (hosts without one get no endpoint: the fleet file is
    /// rejected earlier where one is required).
    pub addresses: BTreeMap<String, String>,
    /// (stack, service, container port) → the cross-host listener port on every host.
    pub ports: BTreeMap<(String, String, u16), u16>,
}

/// What one mesh container carries: aliases per engine network, and its routes.
type Group = (BTreeMap<String, Vec<String>>, Vec<Route>);

/// Every mesh the fleet needs, in (host, stack, service) order.
///
/// `declared` gives a service's declared TCP ports (the manifest's list once the proxy holds
/// ingress ports apart from the replica's `ports`); a service with none is not reachable by
/// the mesh and takes no alias.
pub fn meshes(
    desired: &DesiredState,
    placement: &Placement,
    inputs: &MeshInputs,
    declared: impl Fn(&ServiceSpec) -> Vec<u16>,
) -> Vec<Mesh> {
    // (stack, service) → host → replicas placed there.
    let mut counts: BTreeMap<(&str, &str), BTreeMap<&str, u32>> = BTreeMap::new();
    // (host, stack) → services with a replica there.
    let mut local: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for (key, a) in &placement.replicas {
        let Assignment::Host { host } = a else {
            continue;
        };
        if is_mesh_service(&key.service) || !desired.hosts.contains_key(host) {
            continue;
        }
        *counts
            .entry((&key.stack, &key.service))
            .or_default()
            .entry(host)
            .or_default() += 1;
        local
            .entry((host, &key.stack))
            .or_default()
            .insert(&key.service);
    }
    let mut out = Vec::new();
    for ((host, stack_name), here) in &local {
        let Some(stack) = desired.stacks.get(*stack_name) else {
            continue;
        };
        // The networks the stack's replicas on this host are on: where a name is looked up.
        let callers_on: BTreeSet<&str> = here
            .iter()
            .filter_map(|s| stack.services.get(*s))
            .flat_map(|s| s.container.networks.keys().map(String::as_str))
            .collect();
        // Remote-only services, name order, each with its aliases, ports and endpoints.
        let mut wanted: Vec<Group> = Vec::new();
        for (name, svc) in &stack.services {
            if here.contains(name.as_str()) || is_mesh_service(name) {
                continue;
            }
            let Some(on_hosts) = counts.get(&(*stack_name, name.as_str())) else {
                continue;
            };
            let aliases: BTreeMap<String, Vec<String>> = svc
                .container
                .networks
                .iter()
                .filter(|(net, _)| callers_on.contains(net.as_str()))
                .map(|(net, att)| {
                    let mut names: BTreeSet<String> = att.aliases.iter().cloned().collect();
                    names.insert(name.clone());
                    (net.clone(), names.into_iter().collect())
                })
                .collect();
            if aliases.is_empty() {
                continue;
            }
            let routes: Vec<Route> = declared(svc)
                .into_iter()
                .map(|port| Route {
                    service: name.clone(),
                    port,
                    endpoints: on_hosts
                        .iter()
                        .filter_map(|(h, n)| {
                            let address = inputs.addresses.get(*h)?;
                            let listener =
                                inputs
                                    .ports
                                    .get(&(stack_name.to_string(), name.clone(), port))?;
                            Some(Endpoint {
                                host: h.to_string(),
                                address: address.clone(),
                                port: *listener,
                                weight: (*n).clamp(1, 256),
                            })
                        })
                        .collect(),
                    http: svc.http_ports.contains(&port),
                })
                .collect();
            if routes.is_empty() {
                continue;
            }
            wanted.push((aliases, routes));
        }
        // Two services on one port cannot share an address: the first mesh whose ports are
        // free takes each, in name order, so the grouping is stable.
        let mut groups: Vec<Group> = Vec::new();
        for (aliases, routes) in wanted {
            let fits = |g: &Group| {
                routes
                    .iter()
                    .all(|r| g.1.iter().all(|taken| taken.port != r.port))
            };
            let g = match groups.iter().position(fits) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Default::default());
                    groups.last_mut().expect("pushed")
                }
            };
            for (net, names) in aliases {
                let entry = g.0.entry(net).or_default();
                entry.extend(names);
                entry.sort();
                entry.dedup();
            }
            g.1.extend(routes);
        }
        for (i, (aliases, mut routes)) in groups.into_iter().enumerate() {
            routes.sort_by(|a, b| (&a.service, a.port).cmp(&(&b.service, b.port)));
            let taken: BTreeSet<u16> = routes.iter().map(|r| r.port).collect();
            let control_port = (1024..=CONTROL_PORT)
                .rev()
                .find(|p| !taken.contains(p))
                .unwrap_or(CONTROL_PORT);
            let (service, container) = match i {
                0 => (
                    format!("{MESH_SERVICE}.{host}"),
                    format!("convoy-mesh-{stack_name}"),
                ),
                n => (
                    format!("{MESH_SERVICE}-{}.{host}", n + 1),
                    format!("convoy-mesh-{stack_name}-{}", n + 1),
                ),
            };
            out.push(Mesh {
                host: host.to_string(),
                stack: stack_name.to_string(),
                service,
                container,
                aliases,
                routes,
                control_port,
            });
        }
    }
    out
}

/// The meshes of a pass: none without `proxy:`. `full` is the whole desired state (the
/// cross-host listener ports are assigned over it, as the host proxies assign them), `view`
/// the one placed (jobs aside) and `placement` where its replicas go.
pub fn for_pass(full: &DesiredState, view: &DesiredState, placement: &Placement) -> Vec<Mesh> {
    if full.settings.proxy.is_none() {
        return Vec::new();
    }
    // A range too small is the manifest's error to report; no listener, no mesh route.
    let ports = crate::core::proxy::ports::listener_ports(full).unwrap_or_default();
    let addresses = full
        .hosts
        .iter()
        .filter_map(|(name, h)| Some((name.clone(), h.internal_address.clone()?)))
        .collect();
    meshes(
        view,
        placement,
        &MeshInputs { addresses, ports },
        ServiceSpec::declared_tcp_ports,
    )
}

/// What `diff` says of a mesh the plan replaces: its aliases change with a new container, and
/// name lookups of the stack's remote services on that host find nothing for a moment.
pub fn replacement_notes(plan: &crate::model::plan::Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            crate::model::plan::Action::Replace { replica, .. }
                if is_mesh_service(&replica.service) =>
            {
                Some(format!(
                    "mesh `{}` on host `{}` is replaced (its aliases change): calls from that \
                     host to services of stack `{}` on other hosts pause briefly",
                    replica.name, s.host, replica.stack
                ))
            }
            _ => None,
        })
        .collect()
}

/// The command of a mesh container: wait for the configuration the executor uploads after the
/// container starts (`exec::mesh`), then become HAProxy's master (PID 1, so the engine's
/// SIGUSR2 reaches it: a graceful reload).
pub fn command() -> Vec<String> {
    let path = format!("{CONFIG_DIR}/{CONFIG_FILE}");
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("until [ -s {path} ]; do sleep 0.05; done; exec haproxy -W -db -f {path}"),
    ]
}

/// The container a mesh runs, as a service of its stack: the proxy image, one replica per
/// host it is placed on (slot: the host name), the stack's networks under the remote-only
/// services' names. Its configuration is not part of it: a change of endpoints is a reload,
/// never a new container.
pub fn service(mesh: &Mesh, image: &str) -> ServiceSpec {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_MESH.to_string(), "1".to_string());
    let container = ContainerSpec {
        image: image.to_string(),
        command: Some(command()),
        // Ports below 1024 and the official image's unprivileged default user.
        user: Some("root".into()),
        labels,
        networks: mesh
            .aliases
            .iter()
            .map(|(net, names)| {
                (
                    net.clone(),
                    NetworkAttachment {
                        aliases: names.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect(),
        stop_signal: Some("SIGUSR1".into()),
        container_name: Some(mesh.container.clone()),
        ..Default::default()
    };
    ServiceSpec {
        name: mesh.service.clone(),
        mode: crate::model::spec::DeployMode::Global,
        replicas: 0,
        depends_on: BTreeMap::new(),
        placement: Default::default(),
        reserve_nano_cpus: None,
        reserve_memory_bytes: None,
        secret_env: BTreeSet::new(),
        container,
        restart_with: BTreeSet::new(),
        rollout: Default::default(),
        job: None,
        ingress: None,
        http_ports: BTreeSet::new(),
    }
}

/// The desired state and placement the planner works from when meshes run: each mesh a
/// service of its stack placed on its host. `None` when there is no mesh (nothing is cloned).
pub fn with_meshes(
    desired: &DesiredState,
    placement: &Placement,
    meshes: &[Mesh],
    image: &str,
) -> Option<(DesiredState, Placement)> {
    if meshes.is_empty() {
        return None;
    }
    let mut d = desired.clone();
    let mut p = placement.clone();
    for m in meshes {
        let Some(stack) = d.stacks.get_mut(&m.stack) else {
            continue;
        };
        // A user's service of that name (Compose allows it) keeps it: no mesh then.
        if stack.services.contains_key(&m.service) {
            continue;
        }
        stack.services.insert(m.service.clone(), service(m, image));
        p.replicas.insert(
            ReplicaKey {
                stack: m.stack.clone(),
                service: m.service.clone(),
                slot: m.host.clone(),
            },
            Assignment::Host {
                host: m.host.clone(),
            },
        );
    }
    Some((d, p))
}

/// The configuration's hash as the control listener answers it: 16 hex digits of the SHA-256
/// of everything but the control section.
pub fn config_hash(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The marker between a configuration's body and its control section.
const CONTROL_SECTION: &str = "\nfrontend convoy_control\n";

/// The mesh's HAProxy configuration. TCP listeners (HTTP for `app_protocol: http` ports) on
/// every address of the container (it is a container of its own on the stack's networks), each
/// forwarding to the hosts that run the
/// service, weighted by their replicas and health-checked (a host that stops answering drops
/// out within two seconds; a refused connection is retried on another host). The control
/// listener answers `GET /<hash>` with 200 and anything else with 404, so a probe of the new
/// hash's path succeeds exactly when the new configuration is in force: the reload is complete.
pub fn render(mesh: &Mesh) -> String {
    let mut body = String::new();
    body.push_str(&format!(
        "# Convoy mesh of stack `{}` on host `{}`: generated, do not edit.\n",
        mesh.stack, mesh.host
    ));
    body.push_str(
        "global\n    maxconn 4096\n    hard-stop-after 30s\n\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 1h\n    \
         timeout server 1h\n    retries 2\n    option redispatch\n    \
         default-server inter 1s fall 2 rise 1 observe layer4 error-limit 1 on-error mark-down\n",
    );
    for r in &mesh.routes {
        let name = format!("{}_{}", r.service, r.port);
        body.push_str(&format!(
            "\nlisten {name}\n    bind :{}\n    balance roundrobin\n",
            r.port
        ));
        if r.http {
            // The endpoint is another host's proxy, which keeps its connections: a new call
            // from a caller here reuses one instead of a handshake across hosts.
            body.push_str("    mode http\n");
            use crate::core::proxy::render::{http_forwarding, http_front, Reuse};
            http_front(&mut body);
            http_forwarding(&mut body, Reuse::Always);
        }
        for e in &r.endpoints {
            body.push_str(&format!(
                "    server {} {}:{} weight {} check\n",
                e.host, e.address, e.port, e.weight
            ));
        }
    }
    let hash = config_hash(&body);
    format!(
        "{body}{CONTROL_SECTION}    mode http\n    timeout client 5s\n    bind :{}\n    \
         http-request return status 200 content-type text/plain string {hash} if {{ path /{hash} }}\n    \
         http-request return status 404\n",
        mesh.control_port
    )
}

/// The hash a rendered configuration announces on its control port (`None` for text that is
/// not one of ours, a hand edit included).
pub fn announced_hash(config: &str) -> Option<String> {
    let (body, control) = config.split_once(CONTROL_SECTION)?;
    let hash = config_hash(body);
    control
        .contains(&format!("string {hash} if {{ path /{hash} }}"))
        .then_some(hash)
}

#[cfg(test)]
#[path = "mesh_tests.rs"]
mod tests;
