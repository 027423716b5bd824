//! Sharing another container's network namespace or volumes: `network_mode: service:<name>`
//! / `container:<name>` (the value itself is read in `engine_options`) and `volumes_from:
//! [<service>[:ro|:rw], container:<name>[:ro|:rw]]` (issue 9).
//!
//! A `service:` source is a service of the same stack, which Compose starts first: it joins
//! the dependent's `depends_on` (started) unless written there, and its `restart_with`, since
//! the dependent's namespace or volumes go with the source's container when it is replaced.
//! The scheduler places the dependent's slot k beside the source's slot k, so the two must
//! have the same replicas (or both be global): a located error otherwise. With a shared
//! network namespace the keys the engine refuses beside it are located errors too.
//! Reads only the nodes handed in; no I/O.

use std::collections::BTreeMap;

use super::{Dependency, Gathered};
use crate::manifest::typed::{join, Diag};
use crate::manifest::yaml::Node;
use crate::model::share::{Link, ShareSource, VolumesFrom};
use crate::model::spec::{DependsCondition, DeployMode, ServiceSpec};

/// The keys the engine refuses beside a network namespace of another container.
const NOT_BESIDE_SHARED_NETWORK: &[&str] = &[
    "expose",
    "hostname",
    "dns",
    "dns_search",
    "dns_opt",
    "extra_hosts",
    "mac_address",
];

/// `service:<name>` as a dependency of `svc` (a `container:` source is outside the stack).
pub(super) fn network_source<'n>(
    network_mode: Option<&str>,
    v: &'n Node,
    path: &str,
    svc: &mut ServiceSpec,
    g: &mut Gathered<'n>,
) {
    if let Some(name) = network_mode.and_then(|m| m.strip_prefix("service:")) {
        depend(name, v, path, svc, g);
    }
}

/// `volumes_from`: `<service>`, `container:<name>`, each with `:ro` or `:rw` (the default).
pub(super) fn read_volumes_from<'n>(
    d: &mut Diag,
    v: &'n Node,
    path: &str,
    svc: &mut ServiceSpec,
    g: &mut Gathered<'n>,
) -> Vec<VolumesFrom> {
    let mut out: Vec<VolumesFrom> = Vec::new();
    for (i, (s, node)) in d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let ipath = format!("{path}[{i}]");
        let (container, rest) = match s.strip_prefix("container:") {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        let (name, read_only) = match rest.rsplit_once(':') {
            Some((n, "ro")) => (n, true),
            Some((n, "rw")) => (n, false),
            Some((_, mode)) => {
                d.at(
                    node,
                    &ipath,
                    format!("invalid mode `{mode}` in `{s}` (expected ro or rw)"),
                );
                continue;
            }
            None => (rest, false),
        };
        if name.is_empty() {
            d.at(node, &ipath, format!("`{s}` names no source"));
            continue;
        }
        let source = if container {
            ShareSource::Container(name.to_string())
        } else {
            depend(name, node, &ipath, svc, g);
            ShareSource::Service(name.to_string())
        };
        if out.iter().any(|o| o.source == source) {
            d.at(node, &ipath, format!("`{name}` is named twice"));
            continue;
        }
        out.push(VolumesFrom { source, read_only });
    }
    out
}

/// `links`: `service[:alias]`, a service of the stack, which joins `depends_on` as Compose
/// makes it (it is not placed beside the linker: a link reaches its replicas on the same host).
pub(super) fn read_links<'n>(
    d: &mut Diag,
    v: &'n Node,
    path: &str,
    svc: &mut ServiceSpec,
    g: &mut Gathered<'n>,
) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    for (i, (s, node)) in d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let ipath = format!("{path}[{i}]");
        let (service, alias) = s.split_once(':').unwrap_or((&s, &s));
        if service.is_empty() || alias.is_empty() || alias.contains(':') {
            d.at(
                node,
                &ipath,
                format!("invalid link `{s}` (expected service or service:alias)"),
            );
            continue;
        }
        if out.iter().any(|l| l.alias == alias) {
            d.at(node, &ipath, format!("the alias `{alias}` is linked twice"));
            continue;
        }
        svc.depends_on
            .entry(service.to_string())
            .or_insert(DependsCondition::ServiceStarted);
        g.depends.push(Dependency {
            service: service.to_string(),
            node,
            path: ipath,
            condition: DependsCondition::ServiceStarted,
        });
        out.push(Link {
            service: service.to_string(),
            alias: alias.to_string(),
        });
    }
    out
}

fn depend<'n>(name: &str, node: &'n Node, path: &str, svc: &mut ServiceSpec, g: &mut Gathered<'n>) {
    svc.depends_on
        .entry(name.to_string())
        .or_insert(DependsCondition::ServiceStarted);
    svc.restart_with.insert(name.to_string());
    // Unknown services and cycles are reported with `depends_on`; the replica counts by
    // `report_colocation`.
    let dep = || Dependency {
        service: name.to_string(),
        node,
        path: path.to_string(),
        condition: DependsCondition::ServiceStarted,
    };
    g.shares.push(dep());
    g.depends.push(dep());
}

/// The keys the engine refuses beside `network_mode: service:`/`container:`, as located
/// errors (`networks` and `ports` are refused for every mode by the service reader).
pub(super) fn refuse_beside_shared_network(
    d: &mut Diag,
    entries: &[(Node, Node)],
    path: &str,
    network_mode: Option<&str>,
) {
    let Some(mode) =
        network_mode.filter(|m| m.starts_with("service:") || m.starts_with("container:"))
    else {
        return;
    };
    for (k, _) in entries {
        let Some(key) = k.scalar().filter(|k| NOT_BESIDE_SHARED_NETWORK.contains(k)) else {
            continue;
        };
        d.at(
            k,
            &join(path, key),
            format!(
                "`{key}` cannot be used with `network_mode: {mode}`: the container uses the \
                 network settings of the one whose namespace it joins"
            ),
        );
    }
}

/// Each `service:` source must have a replica beside each of the dependent's: both global,
/// or the same number of replicas.
pub(super) fn report_colocation(
    d: &mut Diag,
    gathered: &BTreeMap<String, Gathered<'_>>,
    services: &BTreeMap<String, ServiceSpec>,
) {
    for (name, g) in gathered {
        let Some(dependent) = services.get(name) else {
            continue;
        };
        for s in &g.shares {
            let Some(source) = services.get(&s.service) else {
                continue; // unknown: reported with `depends_on`
            };
            let count = |x: &ServiceSpec| match x.mode {
                DeployMode::Global => "global".to_string(),
                DeployMode::Replicated => format!("{} replica(s)", x.replicas),
            };
            let agree = match (dependent.mode, source.mode) {
                (DeployMode::Global, DeployMode::Global) => true,
                (DeployMode::Replicated, DeployMode::Replicated) => {
                    dependent.replicas == source.replicas
                }
                _ => false,
            };
            if !agree {
                d.at(
                    s.node,
                    &s.path,
                    format!(
                        "`{name}` must run beside each replica of `{}`, which shares its \
                         namespace or volumes: give both the same replicas or make both \
                         global (`{}` is {}, `{name}` is {})",
                        s.service,
                        s.service,
                        count(source),
                        count(dependent)
                    ),
                );
            }
        }
    }
}
