//! `x-convoy: {ingress: true | false | {hosts: [names], path: /prefix}}` (issue 13): the
//! service's published ports are held by the host's proxy instead of its replicas, with
//! optional host-name and path routing. `proxy.ingress: true` in `convoy.yaml` makes it the
//! default for every service that publishes TCP ports.
//!
//! Reads the node handed in and moves the published ports out of the container spec into the
//! service's `IngressSpec`; no I/O. It needs `proxy:` in `convoy.yaml` (`Input::proxy`): an
//! ingress without a proxy is a located error that says so. The clash of two services on one
//! port is checked in `mod.rs` with [`share_port`].

use super::keys::INGRESS;
use crate::manifest::typed::Diag;
use crate::manifest::yaml::{Kind, Node};
use crate::model::proxy::{IngressPort, IngressSpec, ProxySettings};
use crate::model::spec::{ContainerSpec, ServiceSpec};

/// `x-convoy.ingress` as written, with its node for the errors found once every key is read.
pub(super) struct IngressAt<'n> {
    /// `false` written: no ingress, whatever `proxy.ingress` says.
    pub on: bool,
    pub hosts: Vec<String>,
    pub path: Option<String>,
    pub node: &'n Node,
    pub fpath: String,
}

/// Reads `x-convoy.ingress`; `None` after its errors.
pub(super) fn read_ingress<'n>(d: &mut Diag, v: &'n Node, path: &str) -> Option<IngressAt<'n>> {
    let mut at = IngressAt {
        on: true,
        hosts: Vec::new(),
        path: None,
        node: v,
        fpath: path.to_string(),
    };
    if let Kind::Map(entries) = &v.kind {
        let before = d.errors.len();
        for (field, _k, fv, fpath) in d.fields(entries, path, &INGRESS) {
            match field {
                "hosts" => {
                    for (i, (h, n)) in d
                        .string_list(fv, &fpath)
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        let h = h.trim().to_ascii_lowercase();
                        if is_host_name(&h) {
                            at.hosts.push(h);
                        } else {
                            d.at(
                                n,
                                &format!("{fpath}[{i}]"),
                                format!(
                                    "`{h}` is not a host name (letters, digits, `-` and `.`, \
                                     optionally starting with `*.`)"
                                ),
                            );
                        }
                    }
                }
                "path" => {
                    if let Some(p) = d.string(fv, &fpath) {
                        if !p.starts_with('/')
                            || p.chars()
                                .any(|c| c.is_whitespace() || c.is_control() || c == '#')
                        {
                            d.at(
                                fv,
                                &fpath,
                                format!("expected a path prefix starting with `/`, got `{p}`"),
                            );
                        } else {
                            // `/api/` and `/api` are one prefix; `/` is every path.
                            let p = p.trim_end_matches('/');
                            at.path = (!p.is_empty()).then(|| p.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        at.hosts.sort();
        at.hosts.dedup();
        return (d.errors.len() == before).then_some(at);
    }
    match v.as_bool() {
        Some(on) => at.on = on,
        None => {
            d.at(
                v,
                path,
                "expected `true`, `false` or a mapping `{hosts: [...], path: /prefix}`",
            );
            return None;
        }
    }
    Some(at)
}

fn is_host_name(h: &str) -> bool {
    let rest = h.strip_prefix("*.").unwrap_or(h);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Settles the service's ingress once every key is read: moves the TCP ports it publishes on a
/// fixed host port out of `c.ports` into `svc.ingress`, when `x-convoy.ingress` says so, or
/// when `proxy.ingress` does and the service says nothing. Errors where it cannot be done.
pub(super) fn settle(
    d: &mut Diag,
    written: Option<IngressAt<'_>>,
    proxy: Option<&ProxySettings>,
    fleet_known: bool,
    svc: &mut ServiceSpec,
    c: &mut ContainerSpec,
) {
    let explicit = written.as_ref().is_some_and(|w| w.on);
    let wanted = match &written {
        Some(w) => w.on,
        None => proxy.is_some_and(|p| p.ingress),
    };
    if !wanted {
        return;
    }
    if let Some(w) = written.as_ref().filter(|_| explicit) {
        if proxy.is_none() {
            // Without a readable convoy.yaml its own errors say what is wrong.
            if fleet_known {
                d.at(
                    w.node,
                    &w.fpath,
                    "ingress needs the per-host proxy: add `proxy: {image: ...}` to convoy.yaml, \
                     or remove `ingress`",
                );
            }
            return;
        }
        if let Some(mode) = &c.network_mode {
            d.at(
                w.node,
                &w.fpath,
                format!(
                    "ingress cannot reach a container with `network_mode: {mode}`: the proxy \
                     sends to replicas on the service's networks"
                ),
            );
            return;
        }
        let fixed: Vec<_> = c.ports.iter().filter(|p| p.host_port.is_some()).collect();
        if fixed.is_empty() {
            d.at(
                w.node,
                &w.fpath,
                "ingress holds the ports a service publishes, and this one publishes none: add \
                 `ports: [\"<host port>:<container port>\"]`",
            );
            return;
        }
        if let Some(p) = fixed.iter().find(|p| p.protocol != "tcp") {
            d.at(
                w.node,
                &w.fpath,
                format!(
                    "ingress carries TCP only, and this service publishes {}/{}: remove \
                     `ingress` or that port",
                    p.host_port.unwrap_or_default(),
                    p.protocol
                ),
            );
            return;
        }
    } else {
        // The fleet-wide default takes only what it can carry whole: a service that publishes
        // no fixed port, publishes UDP, or has no network of its own keeps its ports.
        let fixed = c.ports.iter().filter(|p| p.host_port.is_some());
        if c.network_mode.is_some()
            || fixed.clone().next().is_none()
            || fixed.clone().any(|p| p.protocol != "tcp")
        {
            return;
        }
    }
    let (held, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut c.ports)
        .into_iter()
        .partition(|p| p.host_port.is_some());
    c.ports = kept;
    let (hosts, path) = written.map(|w| (w.hosts, w.path)).unwrap_or_default();
    let mut ports: Vec<IngressPort> = held
        .into_iter()
        .map(|p| IngressPort {
            host_ip: p.host_ip,
            host_port: p.host_port.unwrap_or_default(),
            container_port: p.container_port,
        })
        .collect();
    ports.sort();
    svc.ingress = Some(IngressSpec { ports, hosts, path });
}

/// Whether two services may publish the same host port: both through the proxy, told apart
/// by host name or path (HTTP), and not on the same route.
pub(super) fn share_port(a: Option<&ServiceSpec>, b: Option<&ServiceSpec>) -> bool {
    match (
        a.and_then(|s| s.ingress.as_ref()),
        b.and_then(|s| s.ingress.as_ref()),
    ) {
        (Some(x), Some(y)) => {
            x.is_routed() && y.is_routed() && (x.hosts != y.hosts || x.path != y.path)
        }
        _ => false,
    }
}
