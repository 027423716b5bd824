//! The Docker Engine API, behind Convoy's own types.
//!
//! The only module that speaks bollard. It turns engine answers into `observed` values and
//! plan steps into API calls, one call at a time; ordering, parallelism and retries belong to
//! the executor. It lists and touches only what carries this fleet's ownership label, apart from
//! reading the names of other containers and networks to report clashes ("only what carries the
//! fleet's label is touched").
//! The engine is reached through a unix socket: the local one, or the local end of an SSH
//! forward (`ssh`).
//!
//! The parts: `observe` reads a host into Convoy's observed types, `create` turns a replica into
//! the engine's create request, `streams` lists the fleet's containers, reads their logs and
//! runs execs for people at a terminal; this file holds the [`Engine`], its errors and the calls that
//! change the engine (images, networks, volumes, containers) or follow it (status, events, logs).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, RemoveContainerOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};

use crate::model::observed::{Health, RunState};
use crate::model::plan::{short_id, Replica};
use crate::model::spec::{
    NetworkSpec, VolumeSpec, LABEL_FLEET, LABEL_RESOURCE, LABEL_SPEC_HASH, LABEL_STACK,
};

mod adopt;
mod build;
mod create;
mod create_more;
mod health_wait;
mod hooks;
mod jobs;
pub use jobs::JobExit;
mod observe;
mod observe_more;
mod prestart;
mod probe_addr;
mod proxy;
pub use proxy::{ExecOutput, EXEC_OUTPUT_BYTES};
mod rollout;
mod streams;

pub use build::{BuildError, BUILD_ERROR_LINES};
pub use health_wait::HealthWait;
pub use hooks::{HookRun, HOOK_OUTPUT_LINES};
pub use probe_addr::ProbeAddr;
pub use streams::{
    normalise_time, ExecChunk, ExecSession, ListedContainer, LogLine, LogRange, LogSource,
};

use create::create_body;
use observe::{health, run_state};

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

impl DockerError {
    /// The engine refused because of a conflict: a container name in use, a removal already
    /// under way.
    pub fn is_conflict(&self) -> bool {
        self.status == Some(409)
    }

    /// Another removal of the same container is under way (a killed process's, say).
    pub fn is_removal_in_progress(&self) -> bool {
        self.is_conflict() && self.message.contains("already in progress")
    }
}

/// What holds a container name, as inspected: enough to decide whether to adopt it, replace
/// it or leave it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub id: String,
    /// Its `convoy.fleet` label, if it has one.
    pub fleet: Option<String>,
    /// Its `convoy.spec-hash` label; empty when missing.
    pub spec_hash: String,
    pub state: RunState,
    /// Names of the networks it is attached to.
    pub networks: BTreeSet<String>,
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
    /// Restarts the engine made (a crash loop shows here between two looks).
    pub restart_count: i64,
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

    /// The host's name in the fleet.
    pub fn host(&self) -> &str {
        &self.host
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

    /// Pulls `image` unless the engine has it already (or always, with `always`).
    pub async fn ensure_image(&self, image: &str, always: bool) -> Result<(), DockerError> {
        self.ensure_image_for(image, None, always).await
    }

    /// [`Self::ensure_image`] for a `platform` (`linux/arm64`): an image the engine holds for
    /// another platform under the same reference is pulled again for this one.
    pub async fn ensure_image_for(
        &self,
        image: &str,
        platform: Option<&str>,
        always: bool,
    ) -> Result<(), DockerError> {
        if !always {
            match self.docker.inspect_image(image).await {
                Ok(i)
                    if platform.is_none_or(|p| {
                        platform_matches(
                            p,
                            i.os.as_deref().unwrap_or_default(),
                            i.architecture.as_deref().unwrap_or_default(),
                            i.variant.as_deref().unwrap_or_default(),
                        )
                    }) =>
                {
                    return Ok(())
                }
                Ok(_)
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(self.err(format!("inspect image `{image}`"), e)),
            }
        }
        let (name, tag) = split_tag(image);
        let mut stream = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(name.to_string()),
                tag: Some(tag.to_string()),
                platform: platform.unwrap_or_default().to_string(),
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
    pub async fn load_image<S>(&self, tar: S, image: &str) -> Result<(), DockerError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, bollard::errors::Error>>
            + Send
            + 'static,
    {
        let op = || format!("cannot load image `{image}`");
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

    /// Creates an owned network and returns the ID to use: the engine checks the name first
    /// (`CheckDuplicate`), and a network of that name that is ours already is success. The
    /// check is not atomic on the engine (two creates at once still both succeed on 20.10), so
    /// after a create the network of that name that came first is the one kept: a younger one
    /// that this call made is removed again before anything is attached to it, and the plan
    /// heals what slips through ("only what carries the fleet's label is touched").
    pub async fn create_network(
        &self,
        fleet: &str,
        stack: &str,
        net: &NetworkSpec,
    ) -> Result<String, DockerError> {
        let name = &net.engine_name;
        let op = || format!("create network `{name}`");
        let mut labels: HashMap<String, String> = net.labels.clone().into_iter().collect();
        labels.insert(LABEL_FLEET.into(), fleet.into());
        labels.insert(LABEL_STACK.into(), stack.into());
        labels.insert(LABEL_RESOURCE.into(), name.clone());
        let (ipam, options) = create::network_ipam(net);
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some(net.driver.clone()),
            internal: Some(net.internal),
            labels: Some(labels),
            ipam,
            options,
            ..Default::default()
        };
        // bollard's request type has no `CheckDuplicate` (newer engines always check): the
        // body is sent with it added.
        let mut body = serde_json::to_value(&req).map_err(|e| DockerError {
            host: self.host.clone(),
            op: op(),
            message: e.to_string(),
            status: None,
        })?;
        body["CheckDuplicate"] = serde_json::Value::Bool(true);
        let body = bytes::Bytes::from(body.to_string());
        let docker = self.docker.clone().with_request_modifier(move |mut r| {
            *r.body_mut() = bollard::body_full(body.clone());
            r
        });
        for _ in 0..3 {
            match docker.create_network(req.clone()).await {
                Ok(created) => {
                    let kept = self.first_owned_network(fleet, name).await?;
                    return match kept {
                        Some(first) if first != created.id => {
                            tracing::info!(network = %name, kept = %short_id(&first), removed = %short_id(&created.id),
                                "another process created the same network at once: the first one is kept");
                            // Not removable (something came to it meanwhile): it stays a
                            // duplicate, which the next plan heals.
                            if let Err(e) = self.remove_network(&created.id, name).await {
                                tracing::warn!(error = %e, "the younger copy stays for now");
                            }
                            Ok(first)
                        }
                        _ => Ok(created.id),
                    };
                }
                // Created meanwhile: ours (a concurrent step or process) is what we wanted;
                // someone else's must not get our containers attached.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409, ..
                }) => {
                    if let Some(first) = self.first_owned_network(fleet, name).await? {
                        return Ok(first);
                    }
                    if !self.networks_named(name, None).await?.is_empty() {
                        return Err(DockerError {
                            host: self.host.clone(),
                            op: op(),
                            message: format!(
                                "a network of that name exists and is not owned by fleet `{fleet}`"
                            ),
                            status: Some(409),
                        });
                    }
                    // Removed between the create and the list: try again.
                }
                Err(e) => return Err(self.err(op(), e)),
            }
        }
        Err(DockerError {
            host: self.host.clone(),
            op: op(),
            message: "the name kept being taken and freed; try again".into(),
            status: Some(409),
        })
    }

    /// The ID of the first-created network of this fleet named `name` (lowest ID among equal
    /// times), if there is one.
    async fn first_owned_network(
        &self,
        fleet: &str,
        name: &str,
    ) -> Result<Option<String>, DockerError> {
        let mut nets = self.networks_named(name, Some(fleet)).await?;
        nets.sort();
        Ok(nets.into_iter().next().map(|(_, id)| id))
    }

    /// (creation time, ID) of every network named exactly `name`, only `fleet`'s when given.
    async fn networks_named(
        &self,
        name: &str,
        fleet: Option<&str>,
    ) -> Result<Vec<(String, String)>, DockerError> {
        let mut filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        if let Some(fleet) = fleet {
            filters.insert("label".into(), vec![format!("{LABEL_FLEET}={fleet}")]);
        }
        let nets = self
            .docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| self.err(format!("list networks named `{name}`"), e))?;
        // The engine's name filter matches parts of names too.
        Ok(nets
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| {
                Some((
                    observe::sortable_time(n.created.as_deref().unwrap_or_default()),
                    n.id?,
                ))
            })
            .collect())
    }

    /// Removes a network by ID (`name` is for messages): a name can be ambiguous, an ID not.
    pub async fn remove_network(&self, id: &str, name: &str) -> Result<(), DockerError> {
        match self.docker.remove_network(id).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("remove network `{name}` ({})", short_id(id)), e)),
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
    /// `network_ids` maps the replica's network names to the IDs to attach it to (the fleet's
    /// own networks: a name can be ambiguous); a name not in it is used as is (external ones).
    /// A name held already is an error with status 409 ([`DockerError::is_conflict`]).
    pub async fn create_container(
        &self,
        replica: &Replica,
        network_ids: &BTreeMap<String, String>,
    ) -> Result<String, DockerError> {
        let body = create_body(replica, network_ids);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(replica.name.clone()),
                    // The engine then runs the image it holds for that platform, or says
                    // that it holds none.
                    platform: replica.spec.platform.clone().unwrap_or_default(),
                }),
                body,
            )
            .await
            .map_err(|e| self.err(format!("create container `{}`", replica.name), e))?;
        // Engines before API 1.44 accept one network at create: connect the others now,
        // before the container starts, so it never runs half-attached.
        let first: BTreeSet<String> = replica.spec.networks.keys().take(1).cloned().collect();
        self.connect_networks(&created.id, replica, network_ids, &first)
            .await?;
        Ok(created.id)
    }

    /// Connects container `id` to each of the replica's networks not in `attached`.
    pub async fn connect_networks(
        &self,
        id: &str,
        replica: &Replica,
        network_ids: &BTreeMap<String, String>,
        attached: &BTreeSet<String>,
    ) -> Result<(), DockerError> {
        for (net, attach) in &replica.spec.networks {
            if attached.contains(net) {
                continue;
            }
            let target = network_ids.get(net).unwrap_or(net);
            self.docker
                .connect_network(
                    target,
                    NetworkConnectRequest {
                        container: id.to_string(),
                        endpoint_config: Some(EndpointSettings {
                            aliases: Some(attach.aliases.clone()),
                            // Looked up again at start: by this ID, not the name.
                            network_id: network_ids.get(net).cloned(),
                            ipam_config: create::endpoint_ipam(attach),
                            links: Some(replica.spec.share.engine_links.clone())
                                .filter(|l| !l.is_empty()),
                            ..Default::default()
                        }),
                    },
                )
                .await
                .map_err(|e| {
                    self.err(format!("connect `{}` to network `{net}`", replica.name), e)
                })?;
        }
        Ok(())
    }

    /// What holds a container name: its ID, ownership and spec-hash labels, state and the
    /// networks it is attached to; `None` when no container has that name.
    pub async fn holder(&self, name: &str) -> Result<Option<Holder>, DockerError> {
        match self.docker.inspect_container(name, None).await {
            Ok(i) => {
                let labels = i
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default();
                let state = i.state.unwrap_or_default();
                Ok(Some(Holder {
                    id: i.id.unwrap_or_default(),
                    fleet: labels.get(LABEL_FLEET).cloned(),
                    spec_hash: labels.get(LABEL_SPEC_HASH).cloned().unwrap_or_default(),
                    state: run_state(state.status),
                    networks: i
                        .network_settings
                        .and_then(|n| n.networks)
                        .unwrap_or_default()
                        .into_keys()
                        .collect(),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(format!("inspect container `{name}`"), e)),
        }
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
        self.stop(id, name, grace).await?;
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
                    restart_count: i.restart_count.unwrap_or(0),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(format!("inspect container `{name}`"), e)),
        }
    }

    /// The engine's event stream for this fleet's containers (die, destroy, health, oom), and
    /// for those of the Compose projects `adopted` on this host, from `since` (Unix seconds)
    /// when given. The stream never times out on its own; it ends when the connection does,
    /// which is one of the ways a lost host is noticed.
    pub fn events(
        &self,
        fleet: &str,
        adopted: &[String],
        since: Option<i64>,
    ) -> impl futures_util::Stream<Item = Result<EngineEvent, DockerError>> + Send + 'static {
        let mut filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                ["die", "destroy", "health_status", "oom", "stop", "kill"]
                    .map(str::to_string)
                    .to_vec(),
            ),
        ]);
        // The engine ANDs label filters: with adopted projects the labels are matched here,
        // on the attributes each event carries (a container's labels).
        if adopted.is_empty() {
            filters.insert("label".to_string(), vec![format!("{LABEL_FLEET}={fleet}")]);
        }
        let (fleet, adopted) = (fleet.to_string(), adopted.to_vec());
        let host = self.host.clone();
        self.docker
            .events(Some(bollard::query_parameters::EventsOptions {
                since: since.map(|s| s.to_string()),
                until: None,
                filters: Some(filters),
            }))
            .filter_map(move |item| {
                let out = match item {
                    Ok(m) => {
                        let attrs = m.actor.and_then(|a| a.attributes).unwrap_or_default();
                        let ours = attrs.get(LABEL_FLEET) == Some(&fleet)
                            || attrs
                                .get(crate::model::adopt::COMPOSE_PROJECT)
                                .is_some_and(|p| adopted.contains(p));
                        ours.then(|| {
                            Ok(EngineEvent {
                                action: m.action.unwrap_or_default(),
                                name: attrs.get("name").cloned().unwrap_or_default(),
                                time: m.time.unwrap_or(0),
                            })
                        })
                    }
                    Err(e) => Some(Err(DockerError {
                        host: host.clone(),
                        op: "follow events".into(),
                        message: root_cause(&e),
                        status: None,
                    })),
                };
                futures_util::future::ready(out)
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

/// An engine ID as the docker CLI shows it.
fn split_tag(image: &str) -> (&str, &str) {
    // A colon after the last slash separates the tag; one before it is a registry port.
    if let Some((name, digest)) = image.split_once('@') {
        return (name, digest);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// Whether an image for `os`/`arch`/`variant` (as image inspect reports them) is one for
/// `platform` (`linux/amd64`, `linux/arm64/v8`); a platform without a variant takes any.
fn platform_matches(platform: &str, os: &str, arch: &str, variant: &str) -> bool {
    let mut parts = platform.split('/');
    let (want_os, want_arch, want_variant) = (parts.next(), parts.next(), parts.next());
    want_os == Some(os)
        && want_arch == Some(arch)
        && want_variant
            .is_none_or(|v| v == variant || (arch == "arm64" && v == "v8" && variant.is_empty()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_image_matches_its_platform_and_no_other() {
        use super::platform_matches;
        assert!(platform_matches("linux/amd64", "linux", "amd64", ""));
        assert!(!platform_matches("linux/arm64", "linux", "amd64", ""));
        assert!(platform_matches("linux/arm64/v8", "linux", "arm64", "v8"));
        // arm64 images often leave the variant out; v8 is the only one.
        assert!(platform_matches("linux/arm64/v8", "linux", "arm64", ""));
        assert!(!platform_matches("linux/arm/v7", "linux", "arm", "v6"));
        assert!(platform_matches("linux/arm", "linux", "arm", "v7"));
    }

    use super::split_tag;

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(split_tag("busybox:1"), ("busybox", "1"));
        assert_eq!(split_tag("busybox"), ("busybox", "latest"));
        assert_eq!(split_tag("reg:5000/app"), ("reg:5000/app", "latest"));
        assert_eq!(split_tag("reg:5000/app:2"), ("reg:5000/app", "2"));
    }
}
