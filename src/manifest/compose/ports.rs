//! A service's `ports`: the short syntax (`[[ip:]host:]container[/protocol]`, ranges, `[v6]`)
//! and the long one, and the rule that one host port is published once.
//!
//! Reads only the node handed in; no I/O. A clash inside one service is reported here; a clash
//! between services is gathered and reported once every service is read.

use std::collections::BTreeSet;

use super::engine_rules::is_ip;
use super::keys::PORT;
use super::{Gathered, Stack};
use crate::manifest::typed::Diag;
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::{ContainerSpec, PortBinding};

impl Stack<'_> {
    pub(super) fn read_ports<'n>(
        &self,
        d: &mut Diag,
        v: &'n Node,
        path: &str,
        c: &mut ContainerSpec,
        http: &mut BTreeSet<u16>,
        g: &mut Gathered<'n>,
    ) {
        let Kind::Seq(items) = &v.kind else {
            d.at(v, path, format!("expected a list, found {}", v.type_name()));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let bindings = match &item.kind {
                Kind::Map(entries) => read_long_port(d, entries, &ipath).map(|(b, is_http)| {
                    if is_http {
                        http.extend(b.iter().map(|p| p.container_port));
                    }
                    b
                }),
                _ => match d.string(item, &ipath) {
                    Some(s) => match parse_port(&s) {
                        Ok(b) => Some(b),
                        Err(m) => {
                            d.at(item, &ipath, m);
                            None
                        }
                    },
                    None => None,
                },
            };
            for b in bindings.unwrap_or_default() {
                if c.ports.iter().any(|p| ports_clash(p, &b)) {
                    d.at(
                        item,
                        &ipath,
                        format!(
                            "host port {} is published twice by this service",
                            port_label(&b)
                        ),
                    );
                    continue;
                }
                if b.host_port.is_some() {
                    g.ports.push((b.clone(), item, ipath.clone()));
                }
                c.ports.push(b);
            }
        }
    }
}

pub(super) fn ports_clash(a: &PortBinding, b: &PortBinding) -> bool {
    let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
    a.host_port.is_some()
        && a.host_port == b.host_port
        && a.protocol == b.protocol
        && (a.host_ip == b.host_ip || wildcard(&a.host_ip) || wildcard(&b.host_ip))
}

pub(super) fn port_label(p: &PortBinding) -> String {
    let port = p.host_port.unwrap_or_default();
    if p.host_ip.is_empty() {
        format!("{port}/{}", p.protocol)
    } else {
        format!("{}:{port}/{}", p.host_ip, p.protocol)
    }
}

pub(super) fn port_range(s: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| match p.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid port `{p}`")),
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(format!("invalid port range `{s}`"));
            }
            Ok((a, b))
        }
        None => {
            let n = one(s)?;
            Ok((n, n))
        }
    }
}

/// `[[ip:]host:]container[/protocol]` with ranges (`8080-8081:80-81`) and `[v6]:host:container`.
pub fn parse_port(s: &str) -> Result<Vec<PortBinding>, String> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol `{proto}` (expected tcp, udp or sctp)"
        ));
    }
    let (ip, host, container) = if let Some(rest) = spec.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid port `{s}`"))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| format!("invalid port `{s}`"))?;
        let (h, c) = after
            .split_once(':')
            .ok_or_else(|| format!("invalid port `{s}`"))?;
        (ip, h, c)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            _ => return Err(format!("invalid port `{s}`")),
        }
    };
    if !ip.is_empty() && !is_ip(ip) {
        return Err(format!(
            "invalid host ip `{ip}` (expected an IPv4 or IPv6 address)"
        ));
    }
    let (c0, c1) = port_range(container)?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(port_range(host)?)
    };
    if let Some((h0, h1)) = host_range {
        if h1 - h0 != c1 - c0 {
            return Err(format!(
                "host and container port ranges of `{s}` differ in size"
            ));
        }
    }
    Ok((0..=(c1 - c0))
        .map(|i| PortBinding {
            host_ip: ip.to_string(),
            host_port: host_range.map(|(h0, _)| h0 + i),
            container_port: c0 + i,
            protocol: proto.to_string(),
        })
        .collect())
}

/// The port's bindings, and whether `app_protocol` says it speaks HTTP.
fn read_long_port(
    d: &mut Diag,
    entries: &[(Node, Node)],
    path: &str,
) -> Option<(Vec<PortBinding>, bool)> {
    let before = d.errors.len();
    let mut target = None;
    let mut http_at: Option<(&Node, String)> = None;
    let mut published = None;
    let mut host_ip = String::new();
    let mut protocol = "tcp".to_string();
    for (field, _k, v, fpath) in d.fields(entries, path, &PORT) {
        match field {
            "target" => {
                target = d.int(v, &fpath).and_then(|n| match u16::try_from(n) {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        d.at(v, &fpath, "expected a port number (1-65535)");
                        None
                    }
                })
            }
            "published" => {
                if let Some(s) = d.string(v, &fpath) {
                    match port_range(&s) {
                        Ok((a, b)) if a == b => published = Some(a),
                        Ok(_) => d.at(
                            v,
                            &fpath,
                            "a published port range is not supported in the long syntax yet",
                        ),
                        Err(m) => d.at(v, &fpath, m),
                    }
                }
            }
            "host_ip" => {
                host_ip = d.string(v, &fpath).unwrap_or_default();
                if !host_ip.is_empty() && !is_ip(&host_ip) {
                    d.at(
                        v,
                        &fpath,
                        format!("invalid host ip `{host_ip}` (expected an IPv4 or IPv6 address)"),
                    );
                }
            }
            "protocol" => match d.string(v, &fpath) {
                Some(p) if matches!(p.as_str(), "tcp" | "udp" | "sctp") => protocol = p,
                Some(p) => d.at(
                    v,
                    &fpath,
                    format!("invalid protocol `{p}` (expected tcp, udp or sctp)"),
                ),
                None => {}
            },
            // Free text in the Compose spec. `http` (HTTP/1) is the one value that changes what
            // Convoy's proxy does; any other (`https`, `grpc`, ...) stays a byte stream, which
            // is right for TLS and HTTP/2 passed through.
            "app_protocol" => {
                if let Some(p) = d.string(v, &fpath) {
                    if p.eq_ignore_ascii_case("http") {
                        http_at = Some((v, fpath.clone()));
                    }
                }
            }
            "mode" => match d.string(v, &fpath).as_deref() {
                // Without a routing mesh both publish on the host that runs the replica.
                Some("host" | "ingress") | None => {}
                Some(m) => d.at(
                    v,
                    &fpath,
                    format!("invalid mode `{m}` (expected host or ingress)"),
                ),
            },
            _ => {}
        }
    }
    if let Some((v, fpath)) = &http_at {
        if protocol != "tcp" {
            d.at(
                v,
                fpath,
                format!("`app_protocol: http` needs a TCP port, and this one is {protocol}"),
            );
        }
    }
    if d.errors.len() > before {
        return None;
    }
    let Some(target) = target else {
        if let Some((k, _)) = entries.first() {
            d.at(k, path, "missing `target`");
        }
        return None;
    };
    let binding = PortBinding {
        host_ip,
        host_port: published,
        container_port: target,
        protocol,
    };
    Some((vec![binding], http_at.is_some()))
}
