//! The desired state as Convoy's own types: fleet, hosts, stacks, services and the normalised
//! container spec, plus the label scheme that records ownership on the engines and the spec hash.
//!
//! This module is the contract between `manifest` (which produces these values from files) and
//! the planning core (`schedule`, `plan`, `render`). It does no I/O and knows nothing of Compose
//! syntax or of bollard: every value here is already validated and normalised, so two manifests
//! that mean the same container produce equal `ContainerSpec`s and equal hashes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Label naming the fleet that owns a container, network or volume ("only what carries the
/// fleet's label is touched").
pub const LABEL_FLEET: &str = "convoy.fleet";
pub const LABEL_STACK: &str = "convoy.stack";
pub const LABEL_SERVICE: &str = "convoy.service";
pub const LABEL_SLOT: &str = "convoy.slot";
pub const LABEL_SPEC_HASH: &str = "convoy.spec-hash";
pub const LABEL_COMMIT: &str = "convoy.commit";
/// On networks and volumes: the Compose-level name (`default`, `data`) inside the stack.
pub const LABEL_RESOURCE: &str = "convoy.resource";

/// Everything one commit of a fleet repository asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredState {
    pub fleet: String,
    /// Hosts by name; a repository without `hosts:` has one host `local`.
    pub hosts: BTreeMap<String, HostSpec>,
    pub stacks: BTreeMap<String, StackSpec>,
    pub settings: FleetSettings,
    /// Values that must never be shown (see `manifest`): masked in diffs, reports and errors.
    #[serde(skip)]
    pub secret_values: BTreeSet<String>,
    /// The content of relative bind mounts and configs, the values of secrets, and the
    /// manifest's warnings about them. Never serialised (a secret's value is in it).
    #[serde(skip)]
    pub files: crate::model::files::FilePayload,
    /// Engine names of networks that containers outside the plan use (jobs, and services a
    /// run-once job holds: `core::jobs`): the planner never removes them. Empty as loaded.
    #[serde(skip)]
    pub kept_networks: BTreeSet<String>,
}

/// Replaces every occurrence of a secret value in `text` with `(secret)`, longest first so that
/// a secret containing another is masked whole.
pub fn mask_secrets(text: &str, secrets: &BTreeSet<String>) -> String {
    if secrets.is_empty() || !secrets.iter().any(|s| text.contains(s.as_str())) {
        return text.to_string();
    }
    let mut by_len: Vec<&String> = secrets.iter().collect();
    by_len.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in by_len {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "(secret)");
        }
    }
    out
}

/// `history_limit`'s default: deploy history entries kept per fleet.
pub const DEFAULT_HISTORY_LIMIT: u32 = 1000;

/// Fleet-wide settings from `convoy.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSettings {
    /// How long a host may be unreachable before its replicas are placed elsewhere.
    pub host_down_after_secs: u64,
    /// How long `apply` waits for a dependency to become healthy or complete.
    pub dependency_timeout_secs: u64,
    /// How long a one-shot command gives an unreachable host (one attempt, no retries).
    pub connect_timeout_secs: u64,
    /// The deletion guard: a commit that removes a whole stack, or more than this share of the
    /// running replicas, is held by the daemon until released. `None`: off.
    pub prune_guard_percent: Option<u8>,
    /// `builder:`: the host whose engine builds `build:` images, or `local` for the engine of
    /// the machine Convoy runs on. `None`: the local engine when there is one, else the first
    /// host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    /// `history_limit:`: deploy history entries kept per fleet (older ones are pruned).
    #[serde(skip)]
    pub history_limit: u32,
    /// `adopt:`: Compose projects started outside Convoy that the fleet owns from now on
    /// (`model::adopt`), in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<crate::model::adopt::Adoption>,
    /// `sync_windows:`: when new commits are not applied to which stacks
    /// (`model::sync_window`; evaluated by `core::windows`). Not part of any hash.
    #[serde(skip)]
    pub sync_windows: Vec<crate::model::sync_window::SyncWindow>,
    /// `notifications:`: where passes, holds, hosts and jobs are told (`model::notify`).
    /// Never serialised: a chat URL is a credential.
    #[serde(skip)]
    pub notifications: Vec<crate::model::notify_spec::NotificationSpec>,
    /// `proxy:`: the per-host proxy (`model::proxy`, issue 13). `None`: no proxy container
    /// anywhere, and no service has ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<crate::model::proxy::ProxySettings>,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            host_down_after_secs: 30,
            dependency_timeout_secs: 120,
            connect_timeout_secs: 5,
            prune_guard_percent: Some(50),
            builder: None,
            history_limit: DEFAULT_HISTORY_LIMIT,
            adopted: Vec::new(),
            sync_windows: Vec::new(),
            notifications: Vec::new(),
            proxy: None,
        }
    }
}

/// One host of the fleet as `convoy.yaml` declares it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostSpec {
    pub name: String,
    pub address: HostAddress,
    /// Path of the Docker socket on the host (used for `ssh://` hosts).
    pub docker_socket: String,
    pub labels: BTreeMap<String, String>,
    pub capacity: Option<Capacity>,
    pub images: ImagePolicy,
    pub ssh: SshSettings,
    pub cordon: bool,
    pub drain: bool,
    /// `files_dir`, `secrets_dir`, `secrets_on_disk`: where shipped files and secrets go.
    pub files: crate::model::files::HostFiles,
    /// `internal_address`: the address other hosts' proxies reach this host's cross-host
    /// listeners at (issue 13), written or taken from the SSH address; `None` where neither
    /// gives one (the manifest requires it there when `proxy:` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HostAddress {
    /// A local engine socket: `unix:///var/run/docker.sock`.
    Unix { path: PathBuf },
    /// An engine reached over SSH: `ssh://user@host:port`.
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
}

impl std::fmt::Display for HostAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostAddress::Unix { path } => write!(f, "unix://{}", path.display()),
            HostAddress::Ssh { user, host, port } => {
                write!(f, "ssh://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                write!(f, "{host}")?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// SSH settings; fleet-wide defaults already merged with the host's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SshSettings {
    pub user: Option<String>,
    pub identity_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImagePolicy {
    /// The host pulls images from its registry.
    #[default]
    Pull,
    /// Convoy copies images from the local engine to the host.
    Push,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// One stack: a Compose file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackSpec {
    pub name: String,
    /// Repository-relative path of the Compose file, for messages.
    pub file: String,
    pub services: BTreeMap<String, ServiceSpec>,
    /// Networks by their Compose name (`default` included when a service uses it).
    pub networks: BTreeMap<String, NetworkSpec>,
    /// Named volumes by their Compose name.
    pub volumes: BTreeMap<String, VolumeSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    /// The engine-side name: `<stack>_<network>`.
    pub engine_name: String,
    pub driver: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// `external: true`: Convoy neither creates nor removes it.
    pub external: bool,
    /// `driver_opts`: options of the network driver, sent on create.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// `ipam`: the address management, sent on create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
}

/// A network's `ipam`: its driver and address pools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ipam {
    pub driver: Option<String>,
    pub config: Vec<IpamPool>,
}

/// One address pool of an `ipam` config, as written (addresses checked by the manifest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    /// The engine-side name: `<stack>_<volume>`, or the `name:`/external name as written.
    pub engine_name: String,
    pub driver: String,
    /// Never serialised: driver options often carry credentials (`o: password=...`).
    #[serde(skip)]
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub external: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployMode {
    Replicated,
    Global,
}

/// Named as Compose names them (`service_healthy`), hence the shared prefix.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependsCondition {
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// Where a service may run. Filled by `manifest`, read by `schedule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// `x-convoy.hosts`: the hosts the service may run on (None: all).
    pub hosts: Option<Vec<String>>,
    /// `deploy.placement.constraints`, parsed.
    pub constraints: Vec<Constraint>,
    /// `deploy.placement.preferences[].spread`: label keys (`node.labels.` stripped).
    pub spread: Vec<String>,
    pub max_replicas_per_node: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Constraint {
    pub attribute: ConstraintAttribute,
    pub equal: bool,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintAttribute {
    Hostname,
    Label(String),
}

/// One service of a stack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSpec {
    pub name: String,
    pub mode: DeployMode,
    /// Total replicas for `replicated`; ignored for `global`.
    pub replicas: u32,
    pub depends_on: BTreeMap<String, DependsCondition>,
    pub placement: Placement,
    /// Reservations used for placement (memory reservation is also applied to the container).
    pub reserve_nano_cpus: Option<i64>,
    pub reserve_memory_bytes: Option<i64>,
    /// Names of environment variables whose values must never be shown (secret-looking names and
    /// everything read from an `env_file`).
    pub secret_env: BTreeSet<String>,
    pub container: ContainerSpec,
    /// The dependencies written with `depends_on.<name>.restart: true`: when one of them is
    /// replaced or started again in a pass, this service's replicas are replaced after it.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub restart_with: BTreeSet<String>,
    /// `deploy.update_config`, `deploy.rollback_config` and the `x-convoy` keys of a rollout.
    /// Not in the spec hash: changing them replaces nothing.
    #[serde(default)]
    pub rollout: crate::model::rollout::RolloutSpec,
    /// `x-convoy.job`: the service runs to completion at its scheduled times, or once per
    /// spec (`model::job`). Not in the spec hash; out of the serialised form while none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<crate::model::job::JobSpec>,
    /// `x-convoy.ingress` (or `proxy.ingress`): the published ports the host's proxy holds for
    /// this service (taken out of `container.ports`) and their routing (`model::proxy`). Not in
    /// the spec hash; out of the serialised form while none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<crate::model::proxy::IngressSpec>,
    /// Container ports a `ports` entry marks `app_protocol: http`: the proxy and the meshes
    /// carry them as HTTP/1 (connections to the next hop kept and reused, a request the
    /// replica dropped unanswered retried on another one) instead of as bytes. Not in the
    /// spec hash (the engine never sees it); out of the serialised form while empty.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub http_ports: BTreeSet<u16>,
}

impl ServiceSpec {
    /// A service that runs to completion: its container having exited 0 is converged.
    pub fn is_one_shot(&self) -> bool {
        self.container.restart.name == RestartName::No
    }

    /// The container ports the service declares, for discovery and the proxy's cross-host
    /// listeners (issue 13): `expose`, the container side of `ports`, and the container side of
    /// the ports its ingress holds. Sorted, each once.
    pub fn declared_ports(&self) -> Vec<crate::model::proxy::DeclaredPort> {
        use crate::model::proxy::{protocol_name, DeclaredPort};
        let mut out: Vec<DeclaredPort> = Vec::new();
        for e in &self.container.expose {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            if let Ok(port) = port.parse::<u16>() {
                out.push(DeclaredPort {
                    port,
                    protocol: protocol_name(proto),
                });
            }
        }
        for p in &self.container.ports {
            out.push(DeclaredPort {
                port: p.container_port,
                protocol: protocol_name(&p.protocol),
            });
        }
        for p in self.ingress.iter().flat_map(|i| &i.ports) {
            out.push(DeclaredPort {
                port: p.container_port,
                protocol: "tcp",
            });
        }
        out.sort();
        out.dedup();
        out
    }

    /// The TCP ports of [`ServiceSpec::declared_ports`]: the ones a proxy can carry.
    pub fn declared_tcp_ports(&self) -> Vec<u16> {
        self.declared_ports()
            .into_iter()
            .filter(|p| p.protocol == "tcp")
            .map(|p| p.port)
            .collect()
    }
}

/// The normalised container configuration: what the engine is asked to run. Every collection is
/// ordered (BTree or sorted Vec) so the hash and the rendered diff are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The image reference exactly as written in the manifest.
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    pub ports: Vec<PortBinding>,
    pub mounts: Vec<MountSpec>,
    /// User labels (Convoy's own labels are added by the executor, not here).
    pub labels: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    pub healthcheck: Option<Healthcheck>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub stop_signal: Option<String>,
    pub stop_grace_period_secs: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    /// Container path → mount options (`size=64m`); empty string when none.
    pub tmpfs: BTreeMap<String, String>,
    pub init: Option<bool>,
    /// `host:ip` entries, sorted.
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub sysctls: BTreeMap<String, String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    pub logging: Option<Logging>,
    /// Engine network name → aliases (the service name is always an alias).
    pub networks: BTreeMap<String, NetworkAttachment>,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub pids_limit: Option<i64>,
    pub memory_reservation_bytes: Option<i64>,
    // Upgrades are invisible: every field below was added after the first release and is left
    // out of the serialised form (so out of the hash) while empty, so a spec that does not use
    // it hashes as before and no converged container is replaced by an upgrade alone
    // (`tests::hash_of_a_spec_without_the_newer_fields_is_unchanged`).
    /// `expose`: container ports, `<port>/<protocol>`, sorted; the engine's `ExposedPorts`
    /// (nothing is published).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// `memswap_limit`: memory plus swap; -1 is unlimited swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap_bytes: Option<i64>,
    /// `cpu_shares`: the relative CPU weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// `security_opt`, sorted (`no-new-privileges:true`, `seccomp=unconfined`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// `devices`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    /// `ipc`: `host`, `private` or `shareable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// `pid`: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// `runtime`: the OCI runtime (`runc`, `runsc`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// `container_name`: the engine name of the service's one replica, instead of
    /// `<stack>-<service>-<slot>` (see `replica_name`). Ownership stays with the labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    // `network_mode`, `platform`, `gpus` and `deploy.resources.reservations.devices` (issue 9):
    // kept together, each skipped while empty like the fields above.
    /// `network_mode`: `host` or `none` (the container joins no network of the stack); `None`
    /// for the stack's networks (`networks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `platform`: `os/arch[/variant]` the image is pulled and the container created for. The
    /// engine does not report it on a container, so a change is seen through the hash only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `gpus` and `deploy.resources.reservations.devices`: the engine's `DeviceRequests`, in
    /// the order written (Compose's order: the reservations, then `gpus`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_requests: Vec<DeviceRequest>,
    /// `stdin_open`: the container's stdin stays open (`OpenStdin`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_open: bool,
    /// `tty`: a pseudo-terminal for the main process.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// `pull_policy`: when the executor pulls the image. Never serialised, so never in the
    /// hash: changing when an image is pulled must not replace a container.
    #[serde(skip)]
    pub pull_policy: PullPolicy,
    /// `build:`: the image is built from the repository (issue 9). Only its content hash is
    /// serialised, so the spec hash (and so drift) moves exactly when the context or an
    /// option that shapes the image does; `image` is the reference the build produces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildSpec>,
    /// The less common engine settings (`privileged`, `shm_size`, `cgroup`, ...), out of the
    /// serialised form while none is set.
    #[serde(
        default,
        skip_serializing_if = "crate::model::engine_more::EngineMore::is_empty"
    )]
    pub more: crate::model::engine_more::EngineMore,
    /// Relative bind mounts, `configs` and `secrets` (issue 9): by content address, turned
    /// into bind mounts per host by the planner (`core::files::for_host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::model::files::FileMount>,
    /// `post_start` and `pre_stop`: commands the executor runs in the container (no engine
    /// setting, so in the hash only); out of the serialised form while none is declared.
    #[serde(default, skip_serializing_if = "crate::model::hooks::Hooks::is_empty")]
    pub hooks: crate::model::hooks::Hooks,
    /// `volumes_from` (`network_mode: service:`/`container:` is in `network_mode`); out of the
    /// serialised form while empty.
    #[serde(
        default,
        skip_serializing_if = "crate::model::share::Sharing::is_empty"
    )]
    pub share: crate::model::share::Sharing,
}

/// A service's `build:` as the executor needs it: the content hash (serialised, into the spec
/// hash) and, never serialised, what to send to the builder. Equal when the hashes are equal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BuildSpec {
    /// Hex SHA-256 of the context's files (after `.dockerignore`), the Dockerfile, the build
    /// args, the target and the labels.
    pub hash: String,
    #[serde(skip)]
    pub input: std::sync::Arc<BuildInput>,
}

impl PartialEq for BuildSpec {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}
impl Eq for BuildSpec {}

/// What a build sends to the builder, read from the commit's tree by the manifest. Shared
/// (`Arc`) by every replica's spec, never serialised; `Debug` shows neither bytes nor args
/// (build args may be secrets).
#[derive(Clone, Default)]
pub struct BuildInput {
    /// The tag Convoy knows the build by: `convoy-build/<stack>-<context folder>:<hash16>`.
    pub tag: String,
    /// More tags for the same image: `image:` when given, then `build.tags`.
    pub tags: Vec<String>,
    /// Repository path of the context folder, for messages.
    pub context: String,
    /// The context's files that `.dockerignore` keeps: path inside the context → bytes,
    /// sorted by path. Shared by the services that build the same context.
    pub files: std::sync::Arc<Vec<(String, Vec<u8>)>>,
    /// The Dockerfile's path inside the context (an inline one is among `files`).
    pub dockerfile: String,
    pub args: BTreeMap<String, String>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub no_cache: bool,
    pub pull: bool,
    /// The service's `platform` (`linux/arm64`): what the image is built for.
    pub platform: Option<String>,
}

impl std::fmt::Debug for BuildInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildInput")
            .field("tag", &self.tag)
            .field("context", &self.context)
            .field("files", &self.files.len())
            .field("dockerfile", &self.dockerfile)
            .finish_non_exhaustive()
    }
}

/// Compose's `pull_policy`, as the executor honours it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull what the host is missing (Compose's default, and `if_not_present`).
    #[default]
    Missing,
    /// Pull before every create or replace, so a tag that moved is run as it is now.
    Always,
    /// Never pull: a host without the image fails the step, saying so.
    Never,
    /// `build:` services only: build the image when the builder lacks the tag of this
    /// context's hash, as `missing` does for them (a build is content-addressed, so a present
    /// tag is this very build); never pulled from a registry.
    Build,
}

impl PullPolicy {
    /// The Compose spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
            PullPolicy::Build => "build",
        }
    }
}

/// A request for devices from a device driver (GPUs): the engine's `DeviceRequest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceRequest {
    /// Empty: the engine picks the driver that has the capabilities.
    pub driver: String,
    /// How many devices; -1 for all of them, 0 when `device_ids` names them.
    pub count: i64,
    pub device_ids: Vec<String>,
    /// The capabilities every device must have (`gpu`, `compute`, ...), sorted.
    pub capabilities: Vec<String>,
    pub options: BTreeMap<String, String>,
}

/// A host device made available in the container (`/dev/fuse:/dev/fuse:rwm`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceMapping {
    pub host: String,
    pub container: String,
    /// cgroup permissions: some of `r`, `w`, `m`, in that order (`rwm` when not written).
    pub permissions: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortBinding {
    /// Host IP, empty for all interfaces.
    pub host_ip: String,
    /// Host port; None lets the engine choose.
    pub host_port: Option<u16>,
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MountSpec {
    pub kind: MountKind,
    /// Absolute host path for binds; engine volume name for volumes.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Volume,
    /// An anonymous volume (`volumes: ["/data"]`): `source` is empty in the service's spec,
    /// and each slot gets its own named volume, [`anonymous_volume_name`], which survives the
    /// slot's replacement as Compose keeps them. [`ContainerSpec::for_slot`] turns it into a
    /// `Volume` of that name; only the service's spec (and so its hash) has this kind.
    Anonymous,
}

/// The engine name of a slot's anonymous volume at `target`: stack, service and slot, and a
/// short hash of the container path (paths hold characters volume names may not).
/// Deterministic, so a replacement of the slot mounts the same volume.
pub fn anonymous_volume_name(stack: &str, service: &str, slot: &str, target: &str) -> String {
    let digest = Sha256::digest(target.as_bytes());
    let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stack}_{service}_{slot}_anon_{short}")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartName {
    No,
    Always,
    OnFailure,
    #[default]
    UnlessStopped,
}

impl RestartName {
    /// The engine's spelling.
    pub fn as_engine_str(self) -> &'static str {
        match self {
            RestartName::No => "no",
            RestartName::Always => "always",
            RestartName::OnFailure => "on-failure",
            RestartName::UnlessStopped => "unless-stopped",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub name: RestartName,
    /// Only meaningful with `on-failure`.
    pub max_attempts: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// Engine form: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<i64>,
    pub start_period_ns: Option<i64>,
    pub start_interval_ns: Option<i64>,
}

impl Healthcheck {
    /// The latest a replica with this healthcheck can turn healthy: start period plus interval
    /// times retries (engine defaults 0 s, 30 s and 3 where unset); 0 for `NONE`.
    pub fn latest_healthy_ms(&self) -> u64 {
        if self.test.first().map(String::as_str) == Some("NONE") {
            return 0;
        }
        let ms = |ns: Option<i64>, default_s: i64| {
            ns.unwrap_or(default_s * 1_000_000_000).max(0) / 1_000_000
        };
        let floor = ms(self.start_period_ns, 0)
            + ms(self.interval_ns, 30) * self.retries.unwrap_or(3).max(1);
        floor.max(0) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logging {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttachment {
    pub aliases: Vec<String>,
    // Upgrades are invisible: left out of the hash while empty, as the newer container fields.
    /// `ipv4_address`: a fixed address on this network, in the network's `ipam` subnet (the
    /// manifest allows it only on a service of one replica). In canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// `ipv6_address`, the same for IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
}

impl ContainerSpec {
    /// The spec a slot's container runs: each anonymous volume made the slot's own named
    /// volume (see [`MountKind::Anonymous`]). Everything else is as written.
    pub fn for_slot(&self, stack: &str, service: &str, slot: &str) -> ContainerSpec {
        let mut out = self.clone();
        for m in &mut out.mounts {
            if m.kind == MountKind::Anonymous {
                m.kind = MountKind::Volume;
                m.source = anonymous_volume_name(stack, service, slot, &m.target);
            }
        }
        out
    }

    /// The engine names of a slot's anonymous volumes.
    pub fn anonymous_volumes(&self, stack: &str, service: &str, slot: &str) -> Vec<String> {
        self.mounts
            .iter()
            .filter(|m| m.kind == MountKind::Anonymous)
            .map(|m| anonymous_volume_name(stack, service, slot, &m.target))
            .collect()
    }

    /// A short, stable hash of the normalised spec. The commit is never part of it, so a commit
    /// that does not change a service leaves its containers alone.
    pub fn hash(&self) -> String {
        // serde_json over ordered collections is deterministic; the struct's field order is fixed.
        let bytes = serde_json::to_vec(self).expect("a ContainerSpec always serialises");
        let digest = Sha256::digest(&bytes);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The engine name of a replica: `<stack>-<service>-<slot>`.
pub fn container_name(stack: &str, service: &str, slot: &str) -> String {
    format!("{stack}-{service}-{slot}")
}

/// The engine name of a service's replica in `slot`: its `container_name` when it has one (the
/// manifest allows it only on a service of one replica), else `container_name(stack, service,
/// slot)`. Every place that looks a replica up by name goes through here.
pub fn replica_name(stack: &str, service: &ServiceSpec, slot: &str) -> String {
    match &service.container.container_name {
        Some(name) => name.clone(),
        None => container_name(stack, &service.name, slot),
    }
}

impl DesiredState {
    /// `replica_name` by stack and service name; a service the state does not have gets the
    /// scheme's name.
    pub fn replica_name(&self, stack: &str, service: &str, slot: &str) -> String {
        match self.stacks.get(stack).and_then(|s| s.services.get(service)) {
            Some(svc) => replica_name(stack, svc, slot),
            None => container_name(stack, service, slot),
        }
    }
}

/// Whether an environment variable's name looks secret: its value is masked everywhere.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|word| upper.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = ContainerSpec {
            image: "busybox:1".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 16);
        b.env.insert("A".into(), "1".into());
        assert_ne!(a.hash(), b.hash());
    }

    /// Upgrades are invisible: a spec written before a field existed hashes as it did then, so
    /// a container converged by the previous release is not replaced by the upgrade alone. The
    /// constant is the hash this spec had before `expose`, `security_opt`, `devices`, `ipc`,
    /// `pid`, `runtime`, `cpu_shares`, `memswap_limit`, `container_name` and `pull_policy` were
    /// added.
    #[test]
    fn hash_of_a_spec_without_the_newer_fields_is_unchanged() {
        let mut s = ContainerSpec {
            image: "busybox:1".into(),
            command: Some(vec!["sleep".into(), "3600".into()]),
            ports: vec![PortBinding {
                host_ip: "127.0.0.1".into(),
                host_port: Some(8080),
                container_port: 80,
                protocol: "tcp".into(),
            }],
            memory_bytes: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            cap_add: vec!["NET_ADMIN".into()],
            ..Default::default()
        };
        s.env.insert("A".into(), "1".into());
        s.networks.insert(
            "web_default".into(),
            NetworkAttachment {
                aliases: vec!["app".into()],
                ..Default::default()
            },
        );
        assert_eq!(s.hash(), "b6552aa0fc49b276");
    }

    /// Neither a pull policy nor an absent `container_name` moves the hash; a name does.
    #[test]
    fn pull_policy_is_out_of_the_hash_and_container_name_in_it() {
        let a = ContainerSpec {
            image: "busybox:1".into(),
            ..Default::default()
        };
        let mut b = a.clone();
        b.pull_policy = PullPolicy::Always;
        assert_eq!(a.hash(), b.hash());
        b.pull_policy = PullPolicy::Never;
        assert_eq!(a.hash(), b.hash());
        b.container_name = Some("web".into());
        assert_ne!(a.hash(), b.hash());
    }

    /// `network_mode`, `platform` and device requests are out of the serialised form while
    /// empty (the pinned hash above covers that) and in it once set.
    #[test]
    fn network_mode_platform_and_device_requests_move_the_hash_once_set() {
        let a = ContainerSpec {
            image: "busybox:1".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&a).unwrap();
        for field in ["network_mode", "platform", "device_requests"] {
            assert!(!json.contains(field), "{field} in {json}");
        }
        let mut b = a.clone();
        b.network_mode = Some("host".into());
        assert_ne!(a.hash(), b.hash());
        let mut b = a.clone();
        b.platform = Some("linux/amd64".into());
        assert_ne!(a.hash(), b.hash());
        let mut b = a.clone();
        b.device_requests.push(DeviceRequest {
            driver: String::new(),
            count: -1,
            device_ids: vec![],
            capabilities: vec!["gpu".into()],
            options: BTreeMap::new(),
        });
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn replica_name_is_the_container_name_when_given() {
        let mut svc = ServiceSpec {
            name: "app".into(),
            mode: DeployMode::Replicated,
            replicas: 1,
            depends_on: BTreeMap::new(),
            placement: Placement::default(),
            reserve_nano_cpus: None,
            reserve_memory_bytes: None,
            secret_env: BTreeSet::new(),
            container: ContainerSpec::default(),
            restart_with: BTreeSet::new(),
            rollout: Default::default(),
            job: None,
            ingress: None,
            http_ports: BTreeSet::new(),
        };
        assert_eq!(replica_name("web", &svc, "1"), "web-app-1");
        svc.container.container_name = Some("my-app".into());
        assert_eq!(replica_name("web", &svc, "1"), "my-app");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("DB_PASSWORD"));
        assert!(is_secret_name("api_key"));
        assert!(is_secret_name("GithubToken"));
        assert!(!is_secret_name("PORT"));
    }
}
