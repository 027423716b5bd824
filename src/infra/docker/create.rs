//! The engine's create request for a replica: Convoy's [`Replica`] (its `ContainerSpec` and
//! labels) turned into bollard's container config, host config and networking config.
//!
//! A pure translation: it must not call the engine, pick defaults of its own or drop a field
//! of the spec, since whatever it leaves out the engine fills in, and `drift` would then see a
//! difference on every pass. The labels it writes are the replica's, ownership label included:
//! "only what carries the fleet's label is touched" depends on them reaching the engine intact.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest as BollardDeviceRequest, EndpointIpamConfig,
    EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, Ipam, IpamConfig, Mount,
    MountType, NetworkingConfig, PortBinding as BollardPort, ResourcesUlimits,
    RestartPolicy as BollardRestart, RestartPolicyNameEnum,
};

use crate::model::plan::Replica;
use crate::model::spec::{ContainerSpec, MountKind, NetworkAttachment, NetworkSpec, RestartName};

/// The engine's create request for a replica; its networks by the IDs in `network_ids` where
/// given (a name can be ambiguous, an ID cannot).
pub(super) fn create_body(
    r: &Replica,
    network_ids: &BTreeMap<String, String>,
) -> ContainerCreateBody {
    let s = &r.spec;
    let port_bindings = port_bindings(s);
    // The published ports are exposed too, as the engine's own CLI does; `expose` adds the
    // ports exposed without publishing them.
    let exposed: BTreeSet<String> = port_bindings
        .keys()
        .cloned()
        .chain(s.expose.iter().cloned())
        .collect();
    let exposed: Vec<String> = exposed.into_iter().collect();
    let body = ContainerCreateBody {
        image: Some(s.image.clone()),
        cmd: s.command.clone(),
        entrypoint: s.entrypoint.clone(),
        env: Some(s.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(r.labels.clone().into_iter().collect()),
        healthcheck: s.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            start_interval: h.start_interval_ns,
        }),
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        hostname: s.hostname.clone(),
        stop_signal: s.stop_signal.clone(),
        stop_timeout: s.stop_grace_period_secs,
        exposed_ports: Some(exposed).filter(|v| !v.is_empty()),
        open_stdin: Some(true).filter(|_| s.stdin_open),
        tty: Some(true).filter(|_| s.tty),
        host_config: Some(host_config(s, port_bindings, network_ids)),
        networking_config: networking_config(s, network_ids),
        ..Default::default()
    };
    super::create_more::with_more(body, &s.more)
}

/// How the engine is told which network: by ID when known, else by name.
fn network_ref(name: &str, network_ids: &BTreeMap<String, String>) -> String {
    network_ids
        .get(name)
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// The published ports, keyed `<container port>/<protocol>` as the engine keys them.
fn port_bindings(s: &ContainerSpec) -> HashMap<String, Option<Vec<BollardPort>>> {
    let mut port_bindings: HashMap<String, Option<Vec<BollardPort>>> = HashMap::new();
    for p in &s.ports {
        port_bindings
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(BollardPort {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host_port.map(|p| p.to_string()).unwrap_or_default()),
            });
    }
    port_bindings
}

/// The host side of the container: ports, mounts, restart policy, privileges, limits, logging
/// and the network it starts on.
fn host_config(
    s: &ContainerSpec,
    port_bindings: HashMap<String, Option<Vec<BollardPort>>>,
    network_ids: &BTreeMap<String, String>,
) -> HostConfig {
    let mounts: Vec<Mount> = s
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                // Resolved to a named volume per slot before it gets here (`for_slot`).
                MountKind::Volume | MountKind::Anonymous => MountType::VOLUME,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    HostConfig {
        port_bindings: Some(port_bindings),
        mounts: Some(mounts),
        restart_policy: Some(BollardRestart {
            name: Some(match s.restart.name {
                RestartName::No => RestartPolicyNameEnum::NO,
                RestartName::Always => RestartPolicyNameEnum::ALWAYS,
                RestartName::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
                RestartName::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
            }),
            maximum_retry_count: s.restart.max_attempts,
        }),
        cap_add: Some(s.cap_add.clone()).filter(|v| !v.is_empty()),
        cap_drop: Some(s.cap_drop.clone()).filter(|v| !v.is_empty()),
        readonly_rootfs: Some(s.read_only),
        tmpfs: Some(s.tmpfs.clone().into_iter().collect())
            .filter(|m: &HashMap<_, _>| !m.is_empty()),
        init: s.init,
        extra_hosts: Some(s.extra_hosts.clone()).filter(|v| !v.is_empty()),
        dns: Some(s.dns.clone()).filter(|v| !v.is_empty()),
        sysctls: Some(s.sysctls.clone().into_iter().collect())
            .filter(|m: &HashMap<_, _>| !m.is_empty()),
        ulimits: Some(
            s.ulimits
                .iter()
                .map(|(name, u)| ResourcesUlimits {
                    name: Some(name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        )
        .filter(|v: &Vec<_>| !v.is_empty()),
        log_config: s.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: Some(l.driver.clone()),
            config: Some(l.options.clone().into_iter().collect()),
        }),
        memory: s.memory_bytes,
        nano_cpus: s.nano_cpus,
        pids_limit: s.pids_limit,
        memory_reservation: s.memory_reservation_bytes,
        memory_swap: s.memory_swap_bytes,
        cpu_shares: s.cpu_shares,
        security_opt: Some(s.security_opt.clone()).filter(|v| !v.is_empty()),
        devices: Some(
            s.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host.clone()),
                    path_in_container: Some(d.container.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect(),
        )
        .filter(|v: &Vec<_>| !v.is_empty()),
        ipc_mode: s.ipc.clone(),
        pid_mode: s.pid.clone(),
        runtime: s.runtime.clone(),
        // `host` or `none` when the spec says so (it then has no networks), else the first network.
        // `volumes_from`, resolved to engine names by the planner.
        volumes_from: Some(s.share.engine_volumes_from.clone()).filter(|v| !v.is_empty()),
        network_mode: s.network_mode.clone().or_else(|| {
            s.networks
                .keys()
                .next()
                .map(|n| network_ref(n, network_ids))
        }),
        device_requests: Some(
            s.device_requests
                .iter()
                .map(|r| BollardDeviceRequest {
                    driver: Some(r.driver.clone()).filter(|d| !d.is_empty()),
                    count: Some(r.count),
                    device_ids: Some(r.device_ids.clone()).filter(|v| !v.is_empty()),
                    capabilities: Some(vec![r.capabilities.clone()]),
                    options: Some(r.options.clone().into_iter().collect())
                        .filter(|m: &HashMap<_, _>| !m.is_empty()),
                })
                .collect(),
        )
        .filter(|v: &Vec<_>| !v.is_empty()),
        ..Default::default()
    }
}

/// The first network and the aliases on it: engines before API 1.44 accept one network at
/// create, so `Engine::create_container` connects the others before the container starts.
fn networking_config(
    s: &ContainerSpec,
    network_ids: &BTreeMap<String, String>,
) -> Option<NetworkingConfig> {
    s.networks
        .iter()
        .next()
        .map(|(name, attach)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network_ref(name, network_ids),
                EndpointSettings {
                    aliases: Some(attach.aliases.clone()),
                    // The engine keeps endpoints by network name and looks the name up again
                    // at start, where a name held twice is ambiguous; a network ID given here
                    // is what it uses instead.
                    network_id: network_ids.get(name).cloned(),
                    ipam_config: endpoint_ipam(attach),
                    // `links`, resolved to this host's replicas by the planner.
                    links: Some(s.share.engine_links.clone()).filter(|l| !l.is_empty()),
                    ..Default::default()
                },
            )])),
        })
}

/// A fixed address on a network (`ipv4_address`, `ipv6_address`), as the engine takes it at
/// create and at connect (`Engine::connect_networks` is to send it too); `None` when there is none, so the engine picks one as before.
pub(super) fn endpoint_ipam(a: &NetworkAttachment) -> Option<EndpointIpamConfig> {
    if a.ipv4_address.is_none() && a.ipv6_address.is_none() {
        return None;
    }
    Some(EndpointIpamConfig {
        ipv4_address: a.ipv4_address.clone(),
        ipv6_address: a.ipv6_address.clone(),
        ..Default::default()
    })
}

/// A network's `ipam` and `driver_opts` as the engine's create request takes them (the
/// engine's defaults where nothing is written). Not called yet: `Engine::create_network` is to
/// send them before the manifest accepts `ipam` and network `driver_opts`.
pub(super) fn network_ipam(n: &NetworkSpec) -> (Option<Ipam>, Option<HashMap<String, String>>) {
    let ipam = n.ipam.as_ref().map(|i| Ipam {
        driver: i.driver.clone(),
        config: Some(
            i.config
                .iter()
                .map(|p| IpamConfig {
                    subnet: p.subnet.clone(),
                    ip_range: p.ip_range.clone(),
                    gateway: p.gateway.clone(),
                    auxiliary_addresses: Some(p.aux_addresses.clone().into_iter().collect())
                        .filter(|m: &HashMap<_, _>| !m.is_empty()),
                })
                .collect(),
        ),
        options: None,
    });
    let opts =
        Some(n.driver_opts.clone().into_iter().collect()).filter(|m: &HashMap<_, _>| !m.is_empty());
    (ipam, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{DeviceRequest, NetworkAttachment};

    fn replica(spec: ContainerSpec) -> Replica {
        Replica {
            stack: "web".into(),
            service: "app".into(),
            slot: "1".into(),
            name: "web-app-1".into(),
            spec_hash: spec.hash(),
            image: spec.image.clone(),
            spec,
            labels: BTreeMap::new(),
            secret_env: BTreeSet::new(),
        }
    }

    #[test]
    fn network_mode_replaces_the_first_network() {
        let mut s = ContainerSpec {
            image: "busybox:1".into(),
            network_mode: Some("host".into()),
            ..Default::default()
        };
        let body = create_body(&replica(s.clone()), &BTreeMap::new());
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("host"));
        assert!(body.networking_config.is_none());
        assert!(hc.device_requests.is_none());

        s.network_mode = None;
        s.networks
            .insert("web_default".into(), NetworkAttachment::default());
        let ids = BTreeMap::from([("web_default".to_string(), "abc123".to_string())]);
        let hc = create_body(&replica(s), &ids).host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("abc123"));
    }

    #[test]
    fn device_requests_are_sent_as_one_capability_set_each() {
        let s = ContainerSpec {
            image: "busybox:1".into(),
            device_requests: vec![
                DeviceRequest {
                    driver: String::new(),
                    count: -1,
                    device_ids: vec![],
                    capabilities: vec!["gpu".into()],
                    options: BTreeMap::new(),
                },
                DeviceRequest {
                    driver: "nvidia".into(),
                    count: 0,
                    device_ids: vec!["0".into()],
                    capabilities: vec!["compute".into(), "gpu".into()],
                    options: BTreeMap::from([("k".to_string(), "v".to_string())]),
                },
            ],
            ..Default::default()
        };
        let hc = create_body(&replica(s), &BTreeMap::new())
            .host_config
            .unwrap();
        let reqs = hc.device_requests.unwrap();
        assert_eq!(
            reqs[0],
            BollardDeviceRequest {
                driver: None,
                count: Some(-1),
                device_ids: None,
                capabilities: Some(vec![vec!["gpu".into()]]),
                options: None,
            }
        );
        assert_eq!(reqs[1].driver.as_deref(), Some("nvidia"));
        assert_eq!(reqs[1].device_ids, Some(vec!["0".to_string()]));
        assert_eq!(
            reqs[1].capabilities,
            Some(vec![vec!["compute".to_string(), "gpu".to_string()]])
        );
        assert_eq!(
            reqs[1].options,
            Some(HashMap::from([("k".to_string(), "v".to_string())]))
        );
    }
}
