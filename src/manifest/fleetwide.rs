//! The checks that span the stacks of a repository, run once every stack is read: the upper
//! bound on the replicas of the whole fleet, and container names that two services would share
//! (`qa-b` + `c` and `qa` + `b-c` both make `qa-b-c-1`, and each apply would then replace the
//! other's container, forever); the same for the engine names of the networks and volumes
//! Convoy creates (`a` + `b_default` and `a_b` + `default` both make `a_b_default`).
//!
//! Pure: stacks, where their services are written and the fleet's hosts in; located errors
//! out, each in the file of the service it is about. The names are those of
//! `model::spec::replica_name`, so the check is exact: a service's `container_name` is its one
//! name; otherwise a replicated service's slots are `1..=replicas`, a global one's are the
//! names of the hosts it may run on. A host port the proxy holds for an ingress service is not
//! published by another service.

use std::collections::{BTreeMap, BTreeSet};

use super::compose::Place;
use super::ManifestError;
use crate::model::spec::{container_name, DeployMode, ServiceSpec, StackSpec};

/// The most replicas a fleet may run in all: planning, placing and observing grow with it, and
/// a small repository must not take minutes and gigabytes to plan (README, "The repository").
pub const MAX_FLEET_REPLICAS: u64 = 10_000;

/// Reports, into `errors`, the service at which the fleet's replicas pass the bound, and every
/// service whose container names another service already has.
pub fn check(
    stacks: &BTreeMap<String, StackSpec>,
    places: &BTreeMap<String, BTreeMap<String, Place>>,
    hosts: &BTreeSet<String>,
    errors: &mut Vec<ManifestError>,
) {
    let at = |stack: &StackSpec, service: &str, replicas: bool, message: String| {
        let place = places.get(&stack.name).and_then(|p| p.get(service));
        let (line, column, key) = match place {
            Some(Place {
                replicas: Some((l, c)),
                ..
            }) if replicas => (*l, *c, format!("services.{service}.deploy.replicas")),
            Some(p) => (p.key.0, p.key.1, format!("services.{service}")),
            None => (0, 0, String::new()),
        };
        ManifestError {
            file: stack.file.clone(),
            line,
            column,
            key,
            message,
        }
    };

    let mut total: u64 = 0;
    let mut over = false;
    for stack in stacks.values() {
        for svc in stack.services.values() {
            total += count(svc, hosts);
            if total > MAX_FLEET_REPLICAS && !over {
                over = true;
                errors.push(at(
                    stack,
                    &svc.name,
                    true,
                    format!(
                        "the fleet would run more than {MAX_FLEET_REPLICAS} replicas in all with \
                         this service (a global service counts one per host it may run on)"
                    ),
                ));
            }
        }
    }

    check_resources(stacks, errors);

    // A port the proxy holds for an ingress service is bound on every host the proxy runs
    // on: a service that publishes the same host port itself would fail to start there (or
    // take it from the proxy), so that is refused here, in the file of the publisher.
    let mut ingress: BTreeMap<u16, Vec<(&str, &str, &str)>> = BTreeMap::new();
    for stack in stacks.values() {
        for svc in stack.services.values() {
            for p in svc.ingress.iter().flat_map(|i| &i.ports) {
                ingress
                    .entry(p.host_port)
                    .or_default()
                    .push((&stack.name, &svc.name, &p.host_ip));
            }
        }
    }
    for stack in stacks.values() {
        for svc in stack.services.values() {
            let held = svc.container.ports.iter().find_map(|p| {
                // The proxy holds TCP ports only; the same number in UDP is another socket.
                let port = p.host_port.filter(|_| p.protocol == "tcp")?;
                ingress.get(&port)?.iter().find_map(|(st, sv, ip)| {
                    let all = |a: &str| a.is_empty() || a == "0.0.0.0" || a == "::";
                    (all(ip) || all(&p.host_ip) || *ip == p.host_ip).then_some((port, *st, *sv))
                })
            });
            if let Some((port, st, sv)) = held {
                let mut e = at(
                    stack,
                    &svc.name,
                    false,
                    format!(
                        "host port {port} is held by the proxy for the ingress service `{sv}` of \
                         stack `{st}`: publish another port, or give this service \
                         `x-convoy: {{ingress: ...}}` with its own host name or path"
                    ),
                );
                e.key = format!("services.{}.ports", svc.name);
                errors.push(e);
            }
        }
    }

    // Equal prefixes share every slot; otherwise names can still meet through a global
    // service's host names (`a` on host `b-1` and `a-b` slot 1), so those are compared whole,
    // unless the bound above is passed already.
    let mut prefixes: BTreeMap<String, (&StackSpec, &str)> = BTreeMap::new();
    let mut names: BTreeMap<String, (&StackSpec, &str)> = BTreeMap::new();
    // `container_name`s first: each is its service's one name, whatever the bound, and a
    // scheme name that meets one is reported below like any other shared name.
    for stack in stacks.values() {
        for svc in stack.services.values() {
            let Some(name) = &svc.container.container_name else {
                continue;
            };
            match names.get(name) {
                Some((other, other_svc)) => {
                    let mut e = at(
                        stack,
                        &svc.name,
                        false,
                        clash(stack, &svc.name, other, other_svc, name),
                    );
                    e.key = format!("services.{}.container_name", svc.name);
                    e.message = format!(
                        "`container_name: {name}` is taken: {}; change one `container_name`",
                        e.message.trim_end_matches(": rename a stack or a service")
                    );
                    errors.push(e);
                }
                None => {
                    names.insert(name.clone(), (stack, &svc.name));
                }
            }
        }
    }
    for stack in stacks.values() {
        for svc in stack.services.values() {
            if svc.container.container_name.is_some() {
                continue;
            }
            let prefix = container_name(&stack.name, &svc.name, "");
            if let Some((other, other_svc)) = prefixes.get(&prefix) {
                errors.push(at(
                    stack,
                    &svc.name,
                    false,
                    clash(
                        stack,
                        &svc.name,
                        other,
                        other_svc,
                        &format!("{prefix}<slot>"),
                    ),
                ));
                continue;
            }
            prefixes.insert(prefix, (stack, &svc.name));
            if over {
                continue;
            }
            for slot in slots(svc, hosts) {
                let name = container_name(&stack.name, &svc.name, &slot);
                match names.get(&name) {
                    Some((other, other_svc)) => {
                        errors.push(at(
                            stack,
                            &svc.name,
                            false,
                            clash(stack, &svc.name, other, other_svc, &name),
                        ));
                        break;
                    }
                    None => {
                        names.insert(name, (stack, &svc.name));
                    }
                }
            }
        }
    }
}

/// Networks and volumes Convoy makes (not `external`) whose engine name another stack's makes
/// too: each stack's plan would take the other's for its own.
fn check_resources(stacks: &BTreeMap<String, StackSpec>, errors: &mut Vec<ManifestError>) {
    let mut seen: BTreeMap<(&str, &str), (&str, &str)> = BTreeMap::new();
    for stack in stacks.values() {
        let networks = stack
            .networks
            .iter()
            .filter(|(_, n)| !n.external)
            .map(|(k, n)| ("networks", k.as_str(), n.engine_name.as_str()));
        let volumes = stack
            .volumes
            .iter()
            .filter(|(_, v)| !v.external)
            .map(|(k, v)| ("volumes", k.as_str(), v.engine_name.as_str()));
        for (kind, key, engine) in networks.chain(volumes) {
            match seen.get(&(kind, engine)) {
                Some((other, other_file)) if *other != stack.name.as_str() => {
                    errors.push(ManifestError {
                        file: stack.file.clone(),
                        line: 0,
                        column: 0,
                        key: format!("{kind}.{key}"),
                        message: format!(
                            "stack `{}` and stack `{other}` ({other_file}) would both make {} `{engine}`: \
                             rename one, or declare it `external: true` in one of them",
                            stack.name,
                            &kind[..kind.len() - 1],
                        ),
                    });
                }
                Some(_) => {}
                None => {
                    seen.insert((kind, engine), (stack.name.as_str(), stack.file.as_str()));
                }
            }
        }
    }
}

fn clash(
    stack: &StackSpec,
    service: &str,
    other: &StackSpec,
    other_svc: &str,
    name: &str,
) -> String {
    format!(
        "service `{service}` of stack `{}` and service `{other_svc}` of stack `{}` ({}) would \
         both name a container `{name}`: rename a stack or a service",
        stack.name, other.name, other.file
    )
}

/// How many replicas a service would run, without naming them.
fn count(svc: &ServiceSpec, hosts: &BTreeSet<String>) -> u64 {
    match (svc.mode, &svc.placement.hosts) {
        (DeployMode::Replicated, _) => u64::from(svc.replicas),
        (DeployMode::Global, Some(only)) => {
            only.iter().filter(|h| hosts.contains(*h)).count() as u64
        }
        (DeployMode::Global, None) => hosts.len() as u64,
    }
}

/// The slots a service would fill: `1..=replicas`, or the hosts a global service may run on.
fn slots(svc: &ServiceSpec, hosts: &BTreeSet<String>) -> Vec<String> {
    match svc.mode {
        DeployMode::Replicated => (1..=svc.replicas).map(|i| i.to_string()).collect(),
        DeployMode::Global => match &svc.placement.hosts {
            Some(only) => only
                .iter()
                .filter(|h| hosts.contains(*h))
                .cloned()
                .collect(),
            None => hosts.iter().cloned().collect(),
        },
    }
}
