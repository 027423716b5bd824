//! `convoy.yaml`'s keys for the per-host proxy (issue 13): the top-level `proxy:` mapping
//! (`image`, `ingress`, `ports`) and each host's `internal_address`, with its default from the
//! SSH address and the located error where there is none to take.
//!
//! Read as written, no I/O: a name in an SSH address is kept as a name (the proxy resolves it
//! on its host); a host reached through an ssh config file may be an alias or go through a
//! jump, so its address says nothing about the network the hosts share, and the fleet file
//! must say it.

use std::collections::BTreeMap;
// Address types only: "the planning core is pure" (see `fleet.rs`).
use ::core::net::IpAddr;

use super::typed::{Diag, Keys};
use super::yaml::{Kind, Node};
use crate::model::proxy::{PortRange, ProxySettings, DEFAULT_PORT_RANGE};
use crate::model::spec::{HostAddress, HostSpec};

const PROXY: Keys = Keys {
    supported: &["image", "ingress", "ports"],
    unsupported: &[],
    extensions: false,
};

/// The fewest ports a cross-host listener range may hold: every (stack, service, port) of the
/// fleet takes one, and a tiny range is more likely a typo than a plan.
const MIN_RANGE: u32 = 16;

/// `proxy: {image, ingress, ports}`; `None` after its errors.
pub fn read_settings(d: &mut Diag, v: &Node, path: &str) -> Option<ProxySettings> {
    let entries = d.map(v, path)?;
    let before = d.errors.len();
    let mut image = None;
    let mut ingress = false;
    let mut ports = DEFAULT_PORT_RANGE;
    for (field, _k, v, fpath) in d.fields(entries, path, &PROXY) {
        match field {
            "image" => {
                if let Some(s) = d.string(v, &fpath) {
                    if s.trim().is_empty() || s.chars().any(char::is_whitespace) {
                        d.at(v, &fpath, "expected an image reference");
                    } else {
                        image = Some(s);
                    }
                }
            }
            "ingress" => ingress = d.bool(v, &fpath).unwrap_or(false),
            "ports" => {
                if let Some(s) = d.string(v, &fpath) {
                    match parse_range(&s) {
                        Ok(r) => ports = r,
                        Err(m) => d.at(v, &fpath, m),
                    }
                }
            }
            _ => {}
        }
    }
    if image.is_none() && !entries.iter().any(|(k, _)| k.scalar() == Some("image")) {
        d.at(
            v,
            path,
            "missing `image` (the proxy image, HAProxy 2.x: `image: haproxy:2.8`)",
        );
    }
    if d.errors.len() > before {
        return None;
    }
    Some(ProxySettings {
        image: image?,
        ingress,
        ports,
    })
}

/// `"39000-39999"`: first and last port, inclusive, at least [`MIN_RANGE`] ports, none below
/// 1024 (those are for services).
pub fn parse_range(s: &str) -> Result<PortRange, String> {
    let bad = || format!("expected a port range `first-last` (like `39000-39999`), got `{s}`");
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let first: u16 = a.trim().parse().map_err(|_| bad())?;
    let last: u16 = b.trim().parse().map_err(|_| bad())?;
    if first < 1024 || last < first {
        return Err(format!(
            "the range `{s}` must go upwards from 1024 or above (ports below 1024 are for services)"
        ));
    }
    let range = PortRange { first, last };
    if range.len() < MIN_RANGE {
        return Err(format!(
            "the range `{s}` holds {} ports; give it at least {MIN_RANGE}",
            range.len()
        ));
    }
    Ok(range)
}

/// A host's `internal_address`: an IP address other hosts reach it at (never a wildcard).
pub fn read_internal_address(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    match s.trim().parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => {
            d.at(
                v,
                path,
                format!(
                    "`{s}` is every address of the host: cross-host listeners bind to one \
                     address the other hosts reach, never to all"
                ),
            );
            None
        }
        Ok(ip) => Some(ip.to_string()),
        Err(_) => {
            d.at(
                v,
                path,
                format!("expected an IP address the other hosts reach this one at, got `{s}`"),
            );
            None
        }
    }
}

/// The address to take when `internal_address` is not written: the SSH address's host, when it
/// names the machine itself (an IP, or a name without an ssh config file that could make it an
/// alias or a jump).
pub fn default_internal_address(h: &HostSpec) -> Option<String> {
    match &h.address {
        HostAddress::Unix { .. } => None,
        HostAddress::Ssh { host, .. } => match host.parse::<IpAddr>() {
            Ok(ip) => Some(ip.to_string()),
            Err(_) if h.ssh.config_file.is_none() => Some(host.clone()),
            Err(_) => None,
        },
    }
}

/// Fills each host's `internal_address` from its SSH address where it is not written, and,
/// when the fleet has a proxy, reports every host left without one, at its entry under
/// `hosts`. The implicit `local` host (no `hosts:`) needs none: a fleet of one host has no
/// cross-host traffic.
pub fn settle_internal_addresses(
    d: &mut Diag,
    hosts: &mut BTreeMap<String, HostSpec>,
    hosts_node: Option<(&Node, &str)>,
    proxy: bool,
) {
    for h in hosts.values_mut() {
        if h.internal_address.is_none() {
            h.internal_address = default_internal_address(h);
        }
    }
    let (Some((node, path)), true) = (hosts_node, proxy) else {
        return;
    };
    let Kind::Map(entries) = &node.kind else {
        return;
    };
    for (k, _) in entries {
        let Some(name) = k.scalar() else { continue };
        let Some(h) = hosts.get(name) else { continue };
        if h.internal_address.is_some() {
            continue;
        }
        let why = match &h.address {
            HostAddress::Unix { .. } => "it is reached through a local socket",
            HostAddress::Ssh { .. } => {
                "its SSH address is a name an ssh config file may make an alias or a jump"
            }
        };
        d.at(
            k,
            &format!("{path}.{name}.internal_address"),
            format!(
                "host `{name}` needs `internal_address` (the IP the other hosts reach it at) \
                 because the fleet has a `proxy:`, and {why}"
            ),
        );
    }
}

/// Every TCP port the services declare takes one cross-host listener port of `proxy.ports`
/// (`core::proxy::ports`): a range too small for them is an error of `convoy.yaml`.
pub fn check_range(
    stacks: &BTreeMap<String, crate::model::spec::StackSpec>,
    proxy: Option<&ProxySettings>,
) -> Option<String> {
    let proxy = proxy?;
    let needed: usize = stacks
        .values()
        .flat_map(|s| s.services.values())
        .filter(|s| s.job.is_none())
        .map(|s| s.declared_tcp_ports().len())
        .sum();
    (needed as u64 > u64::from(proxy.ports.len())).then(|| {
        format!(
            "proxy.ports: {needed} service ports need a cross-host listener each, and the range \
             {} holds {}: widen it",
            proxy.ports,
            proxy.ports.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_what_cannot_work() {
        assert_eq!(
            parse_range("39000-39999").unwrap(),
            PortRange {
                first: 39000,
                last: 39999
            }
        );
        assert!(parse_range("39999-39000").is_err());
        assert!(parse_range("80-200").unwrap_err().contains("1024"));
        assert!(parse_range("40000-40003").unwrap_err().contains("at least"));
        assert!(parse_range("40000").is_err());
        assert!(parse_range("a-b").is_err());
    }
}
