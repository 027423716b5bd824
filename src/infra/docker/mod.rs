//! The Docker Engine API, behind Convoy's own types.
//!
//! The only module that speaks bollard. It turns engine answers into `observed` values and
//! plan steps into API calls, one call at a time; ordering, parallelism and retries belong to
//! the executor. It lists and touches only what carries this fleet's ownership label, apart from
//! reading the names of other containers and networks to report clashes (DESIGN.md, invariant 2).
//! The engine is reached through a unix socket: the local one, or the local end of an SSH
//! forward (`ssh`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    HealthConfig, HealthStatusEnum, HostConfig, HostConfigLogConfig, Mount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding as BollardPort,
    ResourcesUlimits, RestartPolicy as BollardRestart, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

use crate::model::observed::{
    Health, HostSnapshot, ImageDefaults, ObservedContainer, ObservedResource, RunState,
};
use crate::model::plan::Replica;
use crate::model::spec::{
    ContainerSpec, Healthcheck, Logging, MountKind, MountSpec, NetworkAttachment, NetworkSpec,
    PortBinding, RestartName, RestartPolicy, Ulimit, VolumeSpec, LABEL_COMMIT, LABEL_FLEET,
    LABEL_RESOURCE, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC_HASH, LABEL_STACK,
};

/// Seconds bollard waits for response headers; a stop adds the container's grace period.
const API_TIMEOUT_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
#[error("{op} on host `{host}`: {message}")]
pub struct DockerError {
    pub host: String,
    pub op: String,
    pub message: String,
    /// The engine's HTTP status, when it answered.
    pub status: Option<u16>,
}

/// One engine, reached through a unix socket.
#[derive(Clone)]
pub struct Engine {
    host: String,
    docker: Docker,
}

/// One engine event about a container of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// `die`, `destroy`, `health_status: unhealthy`, `oom`, ...
    pub action: String,
    pub name: String,
    /// Unix seconds.
    pub time: i64,
}

/// The state of one container, for health gates and convergence checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerStatus {
    pub state: RunState,
    pub health: Option<Health>,
    pub exit_code: i64,
}

impl Engine {
    /// An engine at a unix socket path. Nothing is sent until the first call.
    pub fn unix(host: &str, socket: &Path) -> Result<Engine, DockerError> {
        let docker = Docker::connect_with_unix(
            &socket.to_string_lossy(),
            API_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| DockerError {
            host: host.to_string(),
            op: "connect".into(),
            message: e.to_string(),
            status: None,
        })?;
        Ok(Engine {
            host: host.to_string(),
            docker,
        })
    }

    fn err(&self, op: impl Into<String>, e: bollard::errors::Error) -> DockerError {
        let status = match &e {
            bollard::errors::Error::DockerResponseServerError { status_code, .. } => {
                Some(*status_code)
            }
            _ => None,
        };
        let message = match e {
            bollard::errors::Error::DockerResponseServerError { message, .. } => message,
            other => root_cause(&other),
        };
        DockerError {
            host: self.host.clone(),
            op: op.into(),
            message,
            status,
        }
    }

    pub async fn ping(&self) -> Result<(), DockerError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.err("ping", e))
    }

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
                if let Some(id) = c.id {
                    owned_ids.push(id);
                }
            } else {
                snap.foreign_names.extend(names);
            }
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
            if let Some(c) = observed_container(inspect, defaults) {
                snap.containers.insert(c.name.clone(), c);
            }
        }
        let networks = self
            .docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| self.err("list networks", e))?;
        for n in networks {
            let labels = n.labels.unwrap_or_default();
            let name = n.name.unwrap_or_default();
            if labels.get(LABEL_FLEET).map(String::as_str) == Some(fleet) {
                snap.networks.insert(
                    name,
                    ObservedResource {
                        stack: labels.get(LABEL_STACK).cloned().unwrap_or_default(),
                        resource: labels.get(LABEL_RESOURCE).cloned().unwrap_or_default(),
                    },
                );
            } else {
                snap.foreign_networks.insert(name);
            }
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
        for image in wanted {
            if let Some(id) = self.image_id(image).await? {
                snap.image_ids.insert(image.clone(), id);
            }
        }
        Ok(snap)
    }

    /// The ID of an image reference on this engine, `None` when absent.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(format!("inspect image `{image}`"), e)),
        }
    }

    async fn image_defaults(&self, image_id: &str) -> Result<ImageDefaults, DockerError> {
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

    /// Pulls `image` unless the engine has it already (or always, with `always`).
    pub async fn ensure_image(&self, image: &str, always: bool) -> Result<(), DockerError> {
        if !always && self.image_id(image).await?.is_some() {
            return Ok(());
        }
        let (name, tag) = split_tag(image);
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(name.to_string()),
                tag: Some(tag.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| self.err(format!("cannot pull image `{image}`"), e))?;
            if let Some(detail) = info.error_detail {
                return Err(DockerError {
                    host: self.host.clone(),
                    op: format!("cannot pull image `{image}`"),
                    message: detail.message.unwrap_or_else(|| "pull failed".into()),
                    status: None,
                });
            }
        }
        Ok(())
    }

    /// The image as a tar stream (`docker save`), counting the bytes that pass.
    pub fn save_image(
        &self,
        image: &str,
        counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, bollard::errors::Error>> + Send + 'static
    {
        self.docker.export_image(image).inspect(move |chunk| {
            if let Ok(b) = chunk {
                counter.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        })
    }

    /// Loads a tar stream (`docker load`) into this engine.
    pub async fn load_image<S>(&self, tar: S, host: &str, image: &str) -> Result<(), DockerError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, bollard::errors::Error>>
            + Send
            + 'static,
    {
        let op = || format!("cannot load image `{image}` on host `{host}`");
        let mut answers = self.docker.import_image_stream(
            bollard::query_parameters::ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            tar,
            None,
        );
        while let Some(a) = answers.next().await {
            let info = a.map_err(|e| self.err(op(), e))?;
            if let Some(detail) = info.error_detail {
                return Err(DockerError {
                    host: self.host.clone(),
                    op: op(),
                    message: detail.message.unwrap_or_else(|| "load failed".into()),
                    status: None,
                });
            }
        }
        Ok(())
    }

    pub async fn create_network(
        &self,
        fleet: &str,
        stack: &str,
        net: &NetworkSpec,
    ) -> Result<(), DockerError> {
        let mut labels: HashMap<String, String> = net.labels.clone().into_iter().collect();
        labels.insert(LABEL_FLEET.into(), fleet.into());
        labels.insert(LABEL_STACK.into(), stack.into());
        labels.insert(LABEL_RESOURCE.into(), net.engine_name.clone());
        let req = NetworkCreateRequest {
            name: net.engine_name.clone(),
            driver: Some(net.driver.clone()),
            internal: Some(net.internal),
            labels: Some(labels),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            // Created meanwhile: ours (a concurrent step or pass) is what we wanted; someone
            // else's must not get our containers attached.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                let existing = self
                    .docker
                    .inspect_network(
                        &net.engine_name,
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    )
                    .await
                    .map_err(|e| self.err(format!("inspect network `{}`", net.engine_name), e))?;
                let owner = existing
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_FLEET))
                    .cloned()
                    .unwrap_or_default();
                if owner == fleet {
                    Ok(())
                } else {
                    Err(DockerError {
                        host: self.host.clone(),
                        op: format!("create network `{}`", net.engine_name),
                        message: format!(
                            "a network of that name exists and is not owned by fleet `{fleet}`"
                        ),
                        status: Some(409),
                    })
                }
            }
            Err(e) => Err(self.err(format!("create network `{}`", net.engine_name), e)),
        }
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), DockerError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("remove network `{name}`"), e)),
        }
    }

    pub async fn create_volume(
        &self,
        fleet: &str,
        stack: &str,
        vol: &VolumeSpec,
    ) -> Result<(), DockerError> {
        let mut labels: HashMap<String, String> = vol.labels.clone().into_iter().collect();
        labels.insert(LABEL_FLEET.into(), fleet.into());
        labels.insert(LABEL_STACK.into(), stack.into());
        labels.insert(LABEL_RESOURCE.into(), vol.engine_name.clone());
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(vol.engine_name.clone()),
                driver: Some(vol.driver.clone()),
                driver_opts: Some(vol.driver_opts.clone().into_iter().collect()),
                labels: Some(labels),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| self.err(format!("create volume `{}`", vol.engine_name), e))
    }

    /// Creates the replica's container (not started) and attaches it to all its networks.
    pub async fn create_container(&self, replica: &Replica) -> Result<String, DockerError> {
        let body = create_body(replica);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(replica.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| self.err(format!("create container `{}`", replica.name), e))?;
        // Engines before API 1.44 accept one network at create: connect the others now,
        // before the container starts, so it never runs half-attached.
        for (net, attach) in replica.spec.networks.iter().skip(1) {
            self.docker
                .connect_network(
                    net,
                    NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(attach.aliases.clone()),
                            ..Default::default()
                        }),
                    },
                )
                .await
                .map_err(|e| {
                    self.err(format!("connect `{}` to network `{net}`", replica.name), e)
                })?;
        }
        Ok(created.id)
    }

    pub async fn start(&self, id: &str, name: &str) -> Result<(), DockerError> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // 304: already started.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("start container `{name}`"), e)),
        }
    }

    pub async fn unpause(&self, id: &str, name: &str) -> Result<(), DockerError> {
        self.docker
            .unpause_container(id)
            .await
            .map_err(|e| self.err(format!("unpause container `{name}`"), e))
    }

    /// Stops then removes a container; a container already gone is fine.
    pub async fn remove(
        &self,
        id: &str,
        name: &str,
        grace: Option<i64>,
    ) -> Result<(), DockerError> {
        // bollard's timeout covers the wait for response headers, which for a stop lasts the
        // whole grace period: allow for it.
        let grace_secs = grace.unwrap_or(10).max(0) as u64;
        let stop = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(API_TIMEOUT_SECS + grace_secs))
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: grace.map(|g| g.clamp(0, i32::MAX as i64) as i32),
                    ..Default::default()
                }),
            )
            .await;
        match stop {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => {}
            Err(e) => return Err(self.err(format!("stop container `{name}`"), e)),
        }
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("remove container `{name}`"), e)),
        }
    }

    /// Run state and health of a container by name or ID; `None` when it does not exist.
    pub async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, DockerError> {
        match self.docker.inspect_container(name, None).await {
            Ok(i) => {
                let state = i.state.unwrap_or_default();
                Ok(Some(ContainerStatus {
                    state: run_state(state.status),
                    health: state.health.and_then(|h| health(h.status)),
                    exit_code: state.exit_code.unwrap_or(0),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(format!("inspect container `{name}`"), e)),
        }
    }

    /// The engine's event stream for this fleet's containers (die, destroy, health, oom), from
    /// `since` (Unix seconds) when given. The stream never times out on its own; it ends when
    /// the connection does, which is one of the ways a lost host is noticed.
    pub fn events(
        &self,
        fleet: &str,
        since: Option<i64>,
    ) -> impl futures_util::Stream<Item = Result<EngineEvent, DockerError>> + Send + 'static {
        let filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("label".to_string(), vec![format!("{LABEL_FLEET}={fleet}")]),
            (
                "event".to_string(),
                ["die", "destroy", "health_status", "oom", "stop", "kill"]
                    .map(str::to_string)
                    .to_vec(),
            ),
        ]);
        let host = self.host.clone();
        self.docker
            .events(Some(bollard::query_parameters::EventsOptions {
                since: since.map(|s| s.to_string()),
                until: None,
                filters: Some(filters),
            }))
            .map(move |item| match item {
                Ok(m) => {
                    let attrs = m.actor.and_then(|a| a.attributes).unwrap_or_default();
                    Ok(EngineEvent {
                        action: m.action.unwrap_or_default(),
                        name: attrs.get("name").cloned().unwrap_or_default(),
                        time: m.time.unwrap_or(0),
                    })
                }
                Err(e) => Err(DockerError {
                    host: host.clone(),
                    op: "follow events".into(),
                    message: root_cause(&e),
                    status: None,
                }),
            })
    }

    /// The last lines a container printed, for crash reports.
    pub async fn recent_logs(&self, name: &str, lines: usize) -> Vec<String> {
        let opts = bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..Default::default()
        };
        let stream = self.docker.logs(name, Some(opts));
        let chunks: Vec<_> =
            tokio::time::timeout(Duration::from_secs(5), stream.try_collect::<Vec<_>>())
                .await
                .ok()
                .and_then(|r| r.ok())
                .unwrap_or_default();
        chunks
            .into_iter()
            .flat_map(|c| {
                String::from_utf8_lossy(&c.into_bytes())
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The innermost cause of an error chain, which is where hyper and tokio say what happened
/// ("No such file or directory", "Connection refused") instead of "client error (Connect)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let inner = cause.to_string();
    let outer = e.to_string();
    if inner == outer {
        outer
    } else {
        format!("{inner} ({outer})")
    }
}

fn split_tag(image: &str) -> (&str, &str) {
    // A colon after the last slash separates the tag; one before it is a registry port.
    if let Some((name, digest)) = image.split_once('@') {
        let _ = digest;
        return (name, &image[name.len() + 1..]);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
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

fn run_state(s: Option<ContainerStateStatusEnum>) -> RunState {
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

fn health(s: Option<HealthStatusEnum>) -> Option<Health> {
    match s {
        Some(HealthStatusEnum::STARTING) => Some(Health::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(Health::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(Health::Unhealthy),
        _ => None,
    }
}

/// Converts an inspect answer into Convoy's view; `None` when it lacks a name.
fn observed_container(
    i: ContainerInspectResponse,
    image_defaults: ImageDefaults,
) -> Option<ObservedContainer> {
    let name = i.name.as_deref()?.trim_start_matches('/').to_string();
    let cfg = i.config.unwrap_or_default();
    let hc = i.host_config.unwrap_or_default();
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
                    MountKind::Volume => m.name.unwrap_or_default(),
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
            (name, NetworkAttachment { aliases })
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

/// The engine's create request for a replica.
fn create_body(r: &Replica) -> ContainerCreateBody {
    let s = &r.spec;
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
    let exposed: Vec<String> = port_bindings.keys().cloned().collect();
    let mounts: Vec<Mount> = s
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(match m.kind {
                MountKind::Bind => MountType::BIND,
                MountKind::Volume => MountType::VOLUME,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let host_config = HostConfig {
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
        network_mode: s.networks.keys().next().cloned(),
        ..Default::default()
    };
    let networking_config = s
        .networks
        .iter()
        .next()
        .map(|(name, attach)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                name.clone(),
                EndpointSettings {
                    aliases: Some(attach.aliases.clone()),
                    ..Default::default()
                },
            )])),
        });
    ContainerCreateBody {
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
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::split_tag;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("busybox:1"), ("busybox", "1"));
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("reg:5000/app"), ("reg:5000/app", "latest"));
        assert_eq!(split_tag("reg:5000/app:2"), ("reg:5000/app", "2"));
    }
}
