//! Networks: the top-level `networks` (with their engine names), the stack's implicit `default`
//! network, and a service's `networks` (attachments and aliases).
//!
//! Reads only the nodes handed in; no I/O. Which networks are created (only those some service
//! uses, as Compose does) is decided once every service is read. `ipam` subnets and fixed
//! addresses are checked here (an address outside its network's subnet is a located error);
//! that a fixed address goes with one replica is checked by `service`, which knows replicas.

use ::core::net::IpAddr;
use std::collections::BTreeMap;

use super::keys::{ATTACHMENT, EXTERNAL, IPAM, IPAM_POOL, NETWORK};
use super::{user_labels, Stack};
use crate::manifest::typed::{join, Diag};
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::{Ipam, IpamPool, NetworkSpec};

/// A service's attachment to one network, as written.
pub(super) struct Attachment<'n> {
    /// The Compose name of the network.
    pub name: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    /// Where a fixed address is written, for the one-replica rule.
    pub fixed_at: Option<(&'n Node, String)>,
}

/// `a.b.c.d/n` or an IPv6 prefix: the address and the prefix length.
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

/// Whether `ip` lies inside `net/len` (both of one family).
fn in_subnet(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    let (a, b, bits) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = bits - u32::from(len);
    if shift >= 128 {
        return true;
    }
    (a >> shift) == (b >> shift)
}

fn read_ipam(d: &mut Diag, v: &Node, path: &str) -> Option<Ipam> {
    let entries = d.map(v, path)?;
    let mut ipam = Ipam::default();
    for (field, _k, fv, fpath) in d.fields(entries, path, &IPAM) {
        match field {
            "driver" => ipam.driver = d.string(fv, &fpath),
            "config" => {
                let Kind::Seq(items) = &fv.kind else {
                    d.at(
                        fv,
                        &fpath,
                        format!("expected a list, found {}", fv.type_name()),
                    );
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{fpath}[{i}]");
                    if let Some(pool) = read_pool(d, item, &ipath) {
                        ipam.config.push(pool);
                    }
                }
            }
            _ => {}
        }
    }
    Some(ipam)
}

fn read_pool(d: &mut Diag, v: &Node, path: &str) -> Option<IpamPool> {
    let entries = d.map(v, path)?;
    let mut pool = IpamPool::default();
    let mut subnet = None;
    let mut checks: Vec<(&Node, String, String, bool)> = Vec::new();
    for (field, _k, fv, fpath) in d.fields(entries, path, &IPAM_POOL) {
        match field {
            "subnet" | "ip_range" => {
                let Some(s) = d.string(fv, &fpath) else {
                    continue;
                };
                match parse_cidr(&s) {
                    Some(c) => {
                        if field == "subnet" {
                            subnet = Some(c);
                            pool.subnet = Some(s.clone());
                        } else {
                            pool.ip_range = Some(s.clone());
                            checks.push((fv, fpath, s, true));
                        }
                    }
                    None => d.at(
                        fv,
                        &fpath,
                        format!("invalid {field} `{s}` (expected an address and a prefix length, `10.1.0.0/24`)"),
                    ),
                }
            }
            "gateway" => {
                if let Some(s) = d.string(fv, &fpath) {
                    pool.gateway = Some(s.clone());
                    checks.push((fv, fpath, s, false));
                }
            }
            "aux_addresses" => {
                pool.aux_addresses = d.string_map(fv, &fpath, false).unwrap_or_default();
                for (name, addr) in &pool.aux_addresses {
                    checks.push((fv, join(&fpath, name), addr.clone(), false));
                }
            }
            _ => {}
        }
    }
    for (node, fpath, s, is_range) in checks {
        let ip = if is_range {
            parse_cidr(&s).map(|(ip, _)| ip)
        } else {
            s.parse::<IpAddr>().ok()
        };
        let Some(ip) = ip else {
            d.at(node, &fpath, format!("invalid address `{s}`"));
            continue;
        };
        if let Some(net) = subnet {
            if !in_subnet(ip, net) {
                d.at(
                    node,
                    &fpath,
                    format!(
                        "`{s}` is outside the subnet `{}`",
                        pool.subnet.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
    }
    Some(pool)
}

impl Stack<'_> {
    pub(super) fn default_network(&self) -> NetworkSpec {
        NetworkSpec {
            engine_name: format!("{}_default", self.name),
            driver: "bridge".into(),
            internal: false,
            labels: BTreeMap::new(),
            external: false,
            ..Default::default()
        }
    }

    pub(super) fn read_networks(
        &mut self,
        d: &mut Diag,
        v: &Node,
        path: &str,
    ) -> BTreeMap<String, NetworkSpec> {
        let mut out = BTreeMap::new();
        let Some(entries) = d.map(v, path) else {
            return out;
        };
        for (k, v) in entries {
            let name = k.scalar().unwrap_or_default().to_string();
            let npath = join(path, &name);
            let Some(fields) = d.map(v, &npath) else {
                continue;
            };
            let mut spec = NetworkSpec {
                engine_name: format!("{}_{name}", self.name),
                driver: "bridge".into(),
                internal: false,
                labels: BTreeMap::new(),
                external: false,
                ..Default::default()
            };
            let mut explicit_name = None;
            let mut external_name = None;
            for (field, _k, v, fpath) in d.fields(fields, &npath, &NETWORK) {
                match field {
                    "driver" => spec.driver = d.string(v, &fpath).unwrap_or_default(),
                    "internal" => spec.internal = d.bool(v, &fpath).unwrap_or(false),
                    "labels" => spec.labels = user_labels(d, v, &fpath),
                    "name" => explicit_name = d.string(v, &fpath),
                    "external" => {
                        let (external, name) = read_external(d, v, &fpath);
                        spec.external = external;
                        external_name = name;
                    }
                    "driver_opts" => {
                        spec.driver_opts = d.string_map(v, &fpath, false).unwrap_or_default()
                    }
                    "ipam" => spec.ipam = read_ipam(d, v, &fpath),
                    _ => {}
                }
            }
            if let Some(n) = settle_name(d, explicit_name, external_name) {
                spec.engine_name = n;
            } else if spec.external {
                spec.engine_name = name.clone();
            }
            out.insert(name, spec);
        }
        out
    }

    pub(super) fn read_attachments<'n>(
        &self,
        d: &mut Diag,
        v: &'n Node,
        path: &str,
    ) -> Vec<Attachment<'n>> {
        let mut out: Vec<Attachment<'n>> = Vec::new();
        let check = |d: &mut Diag, name: &str, node: &Node, npath: &str| {
            if name == "default" || self.networks.contains_key(name) {
                true
            } else {
                d.at(
                    node,
                    npath,
                    format!("network `{name}` is not declared in the top-level `networks`"),
                );
                false
            }
        };
        match &v.kind {
            Kind::Seq(_) => {
                for (i, (name, node)) in d
                    .string_list(v, path)
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    if check(d, &name, node, &format!("{path}[{i}]")) {
                        out.push(Attachment {
                            name,
                            aliases: Vec::new(),
                            ipv4_address: None,
                            ipv6_address: None,
                            fixed_at: None,
                        });
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar().unwrap_or_default().to_string();
                    let npath = join(path, &name);
                    if !check(d, &name, k, &npath) {
                        continue;
                    }
                    let mut a = Attachment {
                        name,
                        aliases: Vec::new(),
                        ipv4_address: None,
                        ipv6_address: None,
                        fixed_at: None,
                    };
                    // `networks: {front: }` (null) attaches with nothing more.
                    if !v.is_null() {
                        if let Some(fields) = d.map(v, &npath) {
                            for (f, _k, av, apath) in d.fields(fields, &npath, &ATTACHMENT) {
                                match f {
                                    "aliases" => {
                                        a.aliases = d
                                            .string_list(av, &apath)
                                            .unwrap_or_default()
                                            .into_iter()
                                            .map(|(s, _)| s)
                                            .collect()
                                    }
                                    "ipv4_address" | "ipv6_address" => {
                                        let v6 = f == "ipv6_address";
                                        if let Some(ip) =
                                            self.fixed_address(d, &a.name, av, &apath, v6)
                                        {
                                            if v6 {
                                                a.ipv6_address = Some(ip);
                                            } else {
                                                a.ipv4_address = Some(ip);
                                            }
                                            a.fixed_at = Some((av, apath));
                                        }
                                    }
                                    _ => {}
                                }
                            }
                        }
                    }
                    out.push(a);
                }
            }
            _ => d.at(
                v,
                path,
                format!("expected a list or a map, found {}", v.type_name()),
            ),
        }
        out
    }
}

impl Stack<'_> {
    /// A fixed address on network `net`: of the family asked, inside one of the network's
    /// `ipam` subnets (the engine refuses a fixed address on a network without one). Canonical.
    fn fixed_address(
        &self,
        d: &mut Diag,
        net: &str,
        v: &Node,
        path: &str,
        v6: bool,
    ) -> Option<String> {
        let s = d.string(v, path)?;
        let ip: IpAddr = match s.parse() {
            Ok(ip @ IpAddr::V4(_)) if !v6 => ip,
            Ok(ip @ IpAddr::V6(_)) if v6 => ip,
            _ => {
                let family = if v6 { "IPv6" } else { "IPv4" };
                d.at(v, path, format!("invalid {family} address `{s}`"));
                return None;
            }
        };
        let subnets: Vec<(IpAddr, u8)> = self
            .networks
            .get(net)
            .and_then(|n| n.ipam.as_ref())
            .map(|i| {
                i.config
                    .iter()
                    .filter_map(|p| p.subnet.as_deref().and_then(parse_cidr))
                    .filter(|(n, _)| n.is_ipv6() == v6)
                    .collect()
            })
            .unwrap_or_default();
        if subnets.is_empty() {
            d.at(
                v,
                path,
                format!("a fixed address needs a subnet of its family in network `{net}`'s `ipam.config`"),
            );
            return None;
        }
        if !subnets.iter().any(|c| in_subnet(ip, *c)) {
            d.at(
                v,
                path,
                format!("`{s}` is outside the subnets of network `{net}`"),
            );
            return None;
        }
        Some(ip.to_string())
    }
}

/// `external: true`, or the older `external: {name: x}` (external, with that engine name):
/// whether it is external, and the name with where it is written.
pub(super) fn read_external<'n>(
    d: &mut Diag,
    v: &'n Node,
    path: &str,
) -> (bool, Option<(String, &'n Node, String)>) {
    let Kind::Map(entries) = &v.kind else {
        return (d.bool(v, path).unwrap_or(false), None);
    };
    let mut name = None;
    for (_f, _k, fv, fpath) in d.fields(entries, path, &EXTERNAL) {
        name = d.string(fv, &fpath).map(|n| (n, fv, fpath));
    }
    (true, name)
}

/// The engine name from `name:` and the older `external.name`; both written must agree.
pub(super) fn settle_name(
    d: &mut Diag,
    explicit: Option<String>,
    external: Option<(String, &Node, String)>,
) -> Option<String> {
    match (explicit, external) {
        (Some(n), Some((e, node, path))) if n != e => {
            d.at(
                node,
                &path,
                format!("`external.name` `{e}` disagrees with `name` `{n}`: write one of them"),
            );
            Some(n)
        }
        (Some(n), _) => Some(n),
        (None, e) => e.map(|(n, _, _)| n),
    }
}
