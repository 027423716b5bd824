//! What an engine holds, in Convoy's observed types: the listing of a host (containers, networks
//! and volumes of the fleet, the names of everything else), each owned container's inspect
//! answer turned into an [`ObservedContainer`], and the defaults its image brings.
//!
//! It only reads. "only what carries the fleet's label is touched": containers and networks
//! without this fleet's label are never inspected, only their names kept to report clashes, and
//! other volumes are not even listed. "git and the engines are the truth": the conversion must
//! not guess what the engine did not say; where it normalises (list order, the engine's own
//! alias, empty values), it is so that the same container always reads the same and only a real
//! difference shows as drift.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum, HealthConfig, HealthStatusEnum,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{ListContainersOptions, ListNetworksOptions, ListVolumesOptions};

use crate::model::observed::{
    Health, HostSnapshot, ImageDefaults, ObservedContainer, ObservedNetwork, ObservedResource,
    RunState,
};
use crate::model::spec::{
    ContainerSpec, DeviceMapping, DeviceRequest, Healthcheck, Logging, MountKind, MountSpec,
    NetworkAttachment, PortBinding, RestartName, RestartPolicy, Ulimit, LABEL_COMMIT, LABEL_FLEET,
    LABEL_RESOURCE, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC_HASH, LABEL_STACK,
};

use super::{DockerError, Engine};

impl Engine {
    /// Everything this fleet owns on the engine, plus the names of what it does not own.
    /// `images` gives the image each (stack, service) wants: for the services found here, the
    /// current ID of that image is read, so a tag that moved shows as drift.
    pub async fn observe(
        &self,
        fleet: &str,
        images: &BTreeMap<(String, String), String>,
    ) -> Result<HostSnapshot, DockerError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|e| self.err("read engine info", e))?;
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.err("list containers", e))?;
        let mut snap = HostSnapshot {
            engine_version: info.server_version.unwrap_or_default(),
            nano_cpus: info.ncpu.unwrap_or(0).saturating_mul(1_000_000_000),
            memory_bytes: info.mem_total.unwrap_or(0),
            ..Default::default()
        };
        let mut owned_ids = Vec::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let names: Vec<String> = c
                .names
                .unwrap_or_default()
                .into_iter()
                .map(|n| n.trim_start_matches('/').to_string())
                .collect();
            if labels.get(LABEL_FLEET).map(String::as_str) == Some(fleet) {
                // The host's proxy (issue 13) is read from its labels alone: no replica.
                if let Some(p) =
                    super::proxy::observed_proxy(&c.id, &c.image, &c.state, &labels, &names)
                {
                    super::proxy::add_proxy(&mut snap.proxy, p);
                    continue;
                }
                // A quarantine record is read from its labels alone: no replica, never inspected.
                if let Some(r) =
                    super::rollout::quarantine_record(c.id.as_deref().unwrap_or(""), &labels)
                {
                    snap.quarantines.push(r);
                    continue;
                }
                if let Some(id) = c.id {
                    owned_ids.push(id);
                }
            } else {
                snap.foreign_names.extend(names);
            }
        }
        // What the running proxy's configuration holds, for `diff` (`core::proxy::changes`).
        if let Some(p) = snap.proxy.as_deref_mut().filter(|p| p.running) {
            let config = self
                .download_file(&p.id, crate::model::proxy::PROXY_CONFIG_PATH)
                .await;
            p.held = match config {
                Ok(Some(bytes)) => Some(crate::model::proxy::held_listeners(
                    &String::from_utf8_lossy(&bytes),
                )),
                // Not there yet, or gone since the listing: nothing known, nothing said.
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(host = %self.host(), error = %e, "cannot read the proxy's configuration");
                    None
                }
            };
        }
        // Inspect owned containers concurrently: one request each over the same socket.
        let inspected = futures_util::future::join_all(
            owned_ids
                .iter()
                .map(|id| self.docker.inspect_container(id, None)),
        )
        .await;
        let mut image_cache: BTreeMap<String, ImageDefaults> = BTreeMap::new();
        for (id, result) in owned_ids.iter().zip(inspected) {
            let inspect = match result {
                Ok(i) => i,
                // Removed between list and inspect: it is gone, which is what we observe.
                Err(e)
                    if matches!(
                        &e,
                        bollard::errors::Error::DockerResponseServerError {
                            status_code: 404,
                            ..
                        }
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(self.err(format!("inspect container {id}"), e)),
            };
            let image_id = inspect.image.clone().unwrap_or_default();
            if !image_cache.contains_key(&image_id) {
                let defaults = self.image_defaults(&image_id).await?;
                image_cache.insert(image_id.clone(), defaults);
            }
            let defaults = image_cache[&image_id].clone();
            let ips = super::proxy::container_ips(&inspect);
            if let Some(c) = observed_container(inspect, defaults) {
                if !ips.is_empty() {
                    snap.container_ips.insert(c.name.clone(), ips);
                }
                snap.containers.insert(c.name.clone(), c);
            }
        }
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| self.err("list networks", e))?;
        let mut owned_networks = Vec::new();
        for n in networks {
            let labels = n.labels.unwrap_or_default();
            let name = n.name.unwrap_or_default();
            match n.id {
                Some(id) if labels.get(LABEL_FLEET).map(String::as_str) == Some(fleet) => {
                    owned_networks.push(id)
                }
                _ => {
                    snap.foreign_networks.insert(name);
                }
            }
        }
        // A list does not say what is attached: inspect each owned network, concurrently.
        let inspected = futures_util::future::join_all(owned_networks.iter().map(|id| {
            self.docker
                .inspect_network(id, None::<bollard::query_parameters::InspectNetworkOptions>)
        }))
        .await;
        for (id, result) in owned_networks.iter().zip(inspected) {
            let n = match result {
                Ok(n) => n,
                // Removed between list and inspect: gone, which is what we observe.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => continue,
                Err(e) => return Err(self.err(format!("inspect network {id}"), e)),
            };
            let labels = n.labels.unwrap_or_default();
            let network = ObservedNetwork {
                id: id.clone(),
                stack: labels.get(LABEL_STACK).cloned().unwrap_or_default(),
                resource: labels.get(LABEL_RESOURCE).cloned().unwrap_or_default(),
                created: sortable_time(n.created.as_deref().unwrap_or_default()),
                containers: n
                    .containers
                    .unwrap_or_default()
                    .into_values()
                    .filter_map(|c| c.name)
                    .collect(),
            };
            snap.networks
                .entry(n.name.unwrap_or_default())
                .or_default()
                .push(network);
        }
        for nets in snap.networks.values_mut() {
            nets.sort_by(|a, b| a.id.cmp(&b.id));
        }
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(HashMap::from([(
                    "label".to_string(),
                    vec![format!("{LABEL_FLEET}={fleet}")],
                )])),
            }))
            .await
            .map_err(|e| self.err("list volumes", e))?;
        for v in volumes.volumes.unwrap_or_default() {
            snap.volumes.insert(
                v.name,
                ObservedResource {
                    stack: v.labels.get(LABEL_STACK).cloned().unwrap_or_default(),
                    resource: v.labels.get(LABEL_RESOURCE).cloned().unwrap_or_default(),
                },
            );
        }
        let wanted: BTreeSet<&String> = snap
            .containers
            .values()
            .filter_map(|c| images.get(&(c.stack.clone(), c.service.clone())))
            .collect();
        // Concurrently, as the containers above: a stack of built services has one tag per
        // service, and one request after another cost a millisecond each.
        let ids =
            futures_util::future::join_all(wanted.iter().map(|image| self.image_id(image))).await;
        for (image, id) in wanted.into_iter().zip(ids) {
            if let Some(id) = id? {
                snap.image_ids.insert(image.clone(), id);
            }
        }
        Ok(snap)
    }

    pub(super) async fn image_defaults(
        &self,
        image_id: &str,
    ) -> Result<ImageDefaults, DockerError> {
        if image_id.is_empty() {
            return Ok(ImageDefaults::default());
        }
        let image = match self.docker.inspect_image(image_id).await {
            Ok(i) => i,
            // The image was removed under a container: nothing to compare defaults with.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(ImageDefaults::default()),
            Err(e) => return Err(self.err(format!("inspect image {image_id}"), e)),
        };
        let cfg = image.config.unwrap_or_default();
        Ok(ImageDefaults {
            env: env_map(cfg.env.unwrap_or_default()),
            labels: cfg.labels.unwrap_or_default().into_iter().collect(),
            command: cfg.cmd.filter(|c| !c.is_empty()),
            entrypoint: cfg.entrypoint.filter(|c| !c.is_empty()),
            working_dir: cfg.working_dir.filter(|s| !s.is_empty()),
            user: cfg.user.filter(|s| !s.is_empty()),
            stop_signal: cfg.stop_signal.filter(|s| !s.is_empty()),
            volumes: cfg.volumes.unwrap_or_default().into_iter().collect(),
            healthcheck: cfg.healthcheck.and_then(healthcheck_from),
        })
    }
}

/// An engine's RFC 3339 time with its fraction of a second padded to nine digits: the engine
/// trims trailing zeros (`.5Z`, `.25Z`), which would not compare as strings otherwise.
pub(super) fn sortable_time(t: &str) -> String {
    let Some(dot) = t.find('.') else {
        return match t
            .find(['Z', '+'])
            .or_else(|| t.rfind('-').filter(|i| *i > 10))
        {
            Some(i) => format!("{}.000000000{}", &t[..i], &t[i..]),
            None => t.to_string(),
        };
    };
    let digits = t[dot + 1..]
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(t.len() - dot - 1);
    let (head, frac, zone) = (
        &t[..dot],
        &t[dot + 1..dot + 1 + digits],
        &t[dot + 1 + digits..],
    );
    format!("{head}.{frac:0<9}{zone}")
}

fn env_map(env: Vec<String>) -> BTreeMap<String, String> {
    env.into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv, String::new()),
        })
        .collect()
}

fn nonzero(v: Option<i64>) -> Option<i64> {
    v.filter(|n| *n > 0)
}

fn healthcheck_from(h: HealthConfig) -> Option<Healthcheck> {
    let test = h.test.unwrap_or_default();
    if test.is_empty() {
        return None;
    }
    Some(Healthcheck {
        test,
        interval_ns: nonzero(h.interval),
        timeout_ns: nonzero(h.timeout),
        retries: nonzero(h.retries),
        start_period_ns: nonzero(h.start_period),
        start_interval_ns: nonzero(h.start_interval),
    })
}

pub(super) fn run_state(s: Option<ContainerStateStatusEnum>) -> RunState {
    match s {
        Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => RunState::Removing,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        _ => RunState::Created,
    }
}

pub(super) fn health(s: Option<HealthStatusEnum>) -> Option<Health> {
    match s {
        Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
        _ => None,
    }
}

/// A device request as the spec writes it: the capability sets flattened and sorted (Convoy
/// writes one set), absent lists and maps empty.
fn device_request(r: bollard::models::DeviceRequest) -> DeviceRequest {
    let mut capabilities: Vec<String> = r.capabilities.unwrap_or_default().concat();
    capabilities.sort();
    capabilities.dedup();
    DeviceRequest {
        driver: r.driver.unwrap_or_default(),
        count: r.count.unwrap_or(0),
        device_ids: r.device_ids.unwrap_or_default(),
        capabilities,
        options: r.options.unwrap_or_default().into_iter().collect(),
    }
}

/// Converts an inspect answer into Convoy's view; `None` when it lacks a name.
pub(super) fn observed_container(
    i: ContainerInspectResponse,
    image_defaults: ImageDefaults,
) -> Option<ObservedContainer> {
    let name = i.name.as_deref()?.trim_start_matches('/').to_string();
    let cfg = i.config.unwrap_or_default();
    let hc = i.host_config.unwrap_or_default();
    let more = super::observe_more::read_more(&hc, &cfg);
    let state = i.state.unwrap_or_default();
    let labels: BTreeMap<String, String> =
        cfg.labels.clone().unwrap_or_default().into_iter().collect();
    let label = |k: &str| labels.get(k).cloned().unwrap_or_default();

    let mut ports = Vec::new();
    for (key, bindings) in hc.port_bindings.unwrap_or_default() {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            ports.push(PortBinding {
                host_ip: b.host_ip.unwrap_or_default(),
                host_port: b.host_port.and_then(|p| p.parse().ok()),
                container_port,
                protocol: proto.to_string(),
            });
        }
    }
    ports.sort();

    let mut mounts: Vec<MountSpec> = i
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            let kind = match m.typ.as_deref() {
                Some("bind") => MountKind::Bind,
                Some("volume") => MountKind::Volume,
                _ => return None,
            };
            Some(MountSpec {
                source: match kind {
                    MountKind::Volume | MountKind::Anonymous => m.name.unwrap_or_default(),
                    MountKind::Bind => m.source.unwrap_or_default(),
                },
                target: m.destination.unwrap_or_default(),
                read_only: !m.rw.unwrap_or(true),
                kind,
            })
        })
        .collect();
    // The spec orders mounts by target; so does this, or two mounts compare as drift.
    mounts.sort_by(|a, b| a.target.cmp(&b.target).then_with(|| a.cmp(b)));

    let restart = hc.restart_policy.unwrap_or_default();
    let restart = RestartPolicy {
        name: match restart.name {
            Some(RestartPolicyNameEnum::ALWAYS) => RestartName::Always,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED) => RestartName::UnlessStopped,
            Some(RestartPolicyNameEnum::ON_FAILURE) => RestartName::OnFailure,
            _ => RestartName::No,
        },
        max_attempts: nonzero(restart.maximum_retry_count),
    };

    // `links`: the endpoints' links, the same on every network the container joins.
    let engine_links: Vec<String> = {
        let mut l: Vec<String> = i
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .into_iter()
            .flat_map(|m| m.values())
            .flat_map(|ep| ep.links.clone().unwrap_or_default())
            .collect();
        l.sort();
        l.dedup();
        l
    };
    let networks: BTreeMap<String, NetworkAttachment> = i
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| {
            // The engine adds the short container ID as an alias on user networks: not ours.
            // (It adds the hostname too, when one is set; `drift` handles that one.)
            let short_id: String =
                i.id.as_deref()
                    .unwrap_or_default()
                    .chars()
                    .take(12)
                    .collect();
            let mut aliases: Vec<String> = ep
                .aliases
                .unwrap_or_default()
                .into_iter()
                .filter(|a| *a != short_id)
                .collect();
            aliases.sort();
            aliases.dedup();
            // A fixed address is reported in the endpoint's IPAM config (the engine's own
            // address, chosen from the pool, is elsewhere and not ours).
            let ipam = ep.ipam_config.unwrap_or_default();
            let fixed = |a: Option<String>| a.filter(|a| !a.is_empty());
            (
                name,
                NetworkAttachment {
                    aliases,
                    ipv4_address: fixed(ipam.ipv4_address),
                    ipv6_address: fixed(ipam.ipv6_address),
                },
            )
        })
        .collect();

    let sorted = |v: Option<Vec<String>>| {
        let mut v = v.unwrap_or_default();
        v.sort();
        v
    };
    let actual = ContainerSpec {
        image: cfg.image.unwrap_or_default(),
        command: cfg.cmd.filter(|c| !c.is_empty()),
        entrypoint: cfg.entrypoint.filter(|c| !c.is_empty()),
        env: env_map(cfg.env.unwrap_or_default()),
        ports,
        mounts,
        labels: labels.clone(),
        restart,
        healthcheck: cfg.healthcheck.and_then(healthcheck_from),
        user: cfg.user.filter(|s| !s.is_empty()),
        working_dir: cfg.working_dir.filter(|s| !s.is_empty()),
        hostname: cfg.hostname.filter(|s| !s.is_empty()),
        stop_signal: cfg.stop_signal.filter(|s| !s.is_empty()),
        stop_grace_period_secs: cfg.stop_timeout,
        stdin_open: cfg.open_stdin.unwrap_or(false),
        tty: cfg.tty.unwrap_or(false),
        cap_add: sorted(hc.cap_add),
        cap_drop: sorted(hc.cap_drop),
        read_only: hc.readonly_rootfs.unwrap_or(false),
        tmpfs: hc.tmpfs.unwrap_or_default().into_iter().collect(),
        init: hc.init.filter(|b| *b),
        extra_hosts: sorted(hc.extra_hosts),
        dns: hc.dns.unwrap_or_default(),
        sysctls: hc.sysctls.unwrap_or_default().into_iter().collect(),
        ulimits: hc
            .ulimits
            .unwrap_or_default()
            .into_iter()
            .filter_map(|u| {
                Some((
                    u.name?,
                    Ulimit {
                        soft: u.soft.unwrap_or(0),
                        hard: u.hard.unwrap_or(0),
                    },
                ))
            })
            .collect(),
        logging: hc.log_config.and_then(|l| {
            Some(Logging {
                driver: l.typ.filter(|t| !t.is_empty())?,
                options: l.config.unwrap_or_default().into_iter().collect(),
            })
        }),
        networks,
        memory_bytes: nonzero(hc.memory),
        nano_cpus: nonzero(hc.nano_cpus),
        pids_limit: nonzero(hc.pids_limit),
        memory_reservation_bytes: nonzero(hc.memory_reservation),
        // Every port the container exposes: the image's and the published ones are in it
        // too (the engine merges them); `drift` knows.
        expose: sorted(cfg.exposed_ports),
        // 0 is "not set"; -1 (unlimited swap) is a value.
        memory_swap_bytes: hc.memory_swap.filter(|n| *n != 0),
        cpu_shares: nonzero(hc.cpu_shares),
        security_opt: sorted(hc.security_opt),
        devices: {
            let mut devices: Vec<DeviceMapping> = hc
                .devices
                .unwrap_or_default()
                .into_iter()
                .map(|dev| DeviceMapping {
                    host: dev.path_on_host.unwrap_or_default(),
                    container: dev.path_in_container.unwrap_or_default(),
                    permissions: dev.cgroup_permissions.unwrap_or_default(),
                })
                .collect();
            devices.sort();
            devices
        },
        ipc: hc.ipc_mode.filter(|s| !s.is_empty()),
        pid: hc.pid_mode.filter(|s| !s.is_empty()),
        runtime: hc.runtime.filter(|s| !s.is_empty()),
        // The name is what the planner finds a replica by (`ObservedContainer::name`), never a
        // field that drifts; when an image is pulled leaves no trace on a container.
        container_name: None,
        // Only the modes a spec can ask for: a container on networks reports the first
        // network's name or ID here (or `default`, `bridge`), which `networks` covers.
        network_mode: hc
            .network_mode
            .filter(|m| matches!(m.as_str(), "host" | "none") || m.starts_with("container:")),
        // The engine reports only the OS on a container (`Platform: linux`): never compared.
        platform: None,
        device_requests: hc
            .device_requests
            .unwrap_or_default()
            .into_iter()
            .map(device_request)
            .collect(),
        pull_policy: Default::default(),
        build: None,
        more,
        files: Default::default(),
        // Hooks are no container setting: nothing to read back (`model::hooks`).
        hooks: Default::default(),
        // `volumes_from` as sent (`network_mode: container:<id>` is above; the planner maps the
        // ID to a name, `core::schedule::colocate`).
        share: crate::model::share::Sharing {
            volumes_from: Vec::new(),
            engine_volumes_from: hc.volumes_from.unwrap_or_default(),
            links: Vec::new(),
            engine_links,
        },
    };
    Some(ObservedContainer {
        id: i.id.unwrap_or_default(),
        name,
        stack: label(LABEL_STACK),
        service: label(LABEL_SERVICE),
        slot: label(LABEL_SLOT),
        spec_hash: label(LABEL_SPEC_HASH),
        commit: label(LABEL_COMMIT),
        created: i.created.map(|d| d.to_string()).unwrap_or_default(),
        image_id: i.image.unwrap_or_default(),
        state: run_state(state.status),
        exit_code: state.exit_code.unwrap_or(0),
        health: state.health.and_then(|h| health(h.status)),
        restart_count: i.restart_count.unwrap_or(0),
        actual,
        image_defaults,
    })
}

#[cfg(test)]
mod tests {
    use super::sortable_time;
    use crate::model::spec::DeviceRequest;

    #[test]
    fn engine_times_compare_as_strings_once_padded() {
        assert_eq!(
            sortable_time("2024-05-01T10:00:00.5Z"),
            "2024-05-01T10:00:00.500000000Z"
        );
        assert_eq!(
            sortable_time("2024-05-01T10:00:00.25+02:00"),
            "2024-05-01T10:00:00.250000000+02:00"
        );
        assert_eq!(
            sortable_time("2024-05-01T10:00:00-05:00"),
            "2024-05-01T10:00:00.000000000-05:00"
        );
        assert!(sortable_time("2024-05-01T10:00:00.5Z") > sortable_time("2024-05-01T10:00:00.25Z"));
    }

    /// What inspect says of a container in the host's network namespace with a GPU request,
    /// and of one on a stack network (whose mode is the network, not a mode of the spec).
    #[test]
    fn network_mode_and_device_requests_are_read_in_the_specs_form() {
        use bollard::models::{ContainerInspectResponse, DeviceRequest as Req, HostConfig};
        let inspect = |mode: &str, reqs: Option<Vec<Req>>| ContainerInspectResponse {
            name: Some("/web-app-1".into()),
            host_config: Some(HostConfig {
                network_mode: Some(mode.into()),
                device_requests: reqs,
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = super::observed_container(
            inspect(
                "host",
                Some(vec![Req {
                    driver: Some(String::new()),
                    count: Some(-1),
                    device_ids: None,
                    capabilities: Some(vec![vec!["utility".into(), "gpu".into()]]),
                    options: Some(Default::default()),
                }]),
            ),
            Default::default(),
        )
        .unwrap();
        assert_eq!(c.actual.network_mode.as_deref(), Some("host"));
        assert_eq!(
            c.actual.device_requests,
            [DeviceRequest {
                driver: String::new(),
                count: -1,
                device_ids: vec![],
                capabilities: vec!["gpu".into(), "utility".into()],
                options: Default::default(),
            }]
        );
        for mode in ["web_default", "bridge", "default", "0123456789ab"] {
            let c = super::observed_container(inspect(mode, None), Default::default()).unwrap();
            assert_eq!(c.actual.network_mode, None, "{mode}");
            assert!(c.actual.device_requests.is_empty());
        }
    }
}
