//! The key tables of the Compose subset: for each map Convoy reads (the file, a service,
//! `deploy` and its parts, a port, a mount, a network, ...), which keys are supported, which are
//! valid Compose but not supported yet (each with a hint), and whether `x-*` extensions are
//! allowed. Every other key is unknown and gets the nearest valid key as a suggestion.
//!
//! Data only: no reading, no checks. A key added to `supported` here must be read by the
//! section that owns the map, or it would be accepted and silently ignored, which the reader
//! never does with anything real.

use crate::manifest::typed::Keys;

pub(super) const TOP: Keys = Keys {
    // `include` is resolved by `expand` before the stack is read.
    supported: &[
        "version", "name", "services", "networks", "volumes", "include", "configs", "secrets",
    ],
    unsupported: &[(
        "models",
        "AI models are run by Docker Desktop's model runner, which fleet hosts do not have",
    )],
    extensions: true,
};

pub(super) const SERVICE: Keys = Keys {
    supported: &[
        "image",
        "command",
        "entrypoint",
        "environment",
        "env_file",
        "ports",
        "volumes",
        "labels",
        "restart",
        "healthcheck",
        "depends_on",
        "user",
        "working_dir",
        "hostname",
        "stop_signal",
        "stop_grace_period",
        "cap_add",
        "cap_drop",
        "read_only",
        "stdin_open",
        "tty",
        "tmpfs",
        "init",
        "extra_hosts",
        "dns",
        "sysctls",
        "ulimits",
        "logging",
        "networks",
        "deploy",
        "expose",
        "mem_limit",
        "memswap_limit",
        "mem_reservation",
        "cpus",
        "cpu_shares",
        "security_opt",
        "devices",
        "ipc",
        "pid",
        "runtime",
        "pull_policy",
        "container_name",
        "network_mode",
        "platform",
        "gpus",
        // Read in `build` (issue 9).
        "build",
        "configs",
        "secrets",
        // Convoy's own extension, read strictly (see `X_CONVOY`).
        "x-convoy",
        // Local development only (`docker compose watch`): a warning, not an error, so a file
        // written for both stays usable as it is.
        "develop",
        // The less common engine settings and the keys that repeat another (`engine_more`).
        "privileged",
        "shm_size",
        "dns_opt",
        "dns_search",
        "domainname",
        "group_add",
        "oom_score_adj",
        "oom_kill_disable",
        "cgroup",
        "cgroup_parent",
        "uts",
        "userns_mode",
        "cpuset",
        "cpu_period",
        "cpu_quota",
        "cpu_rt_period",
        "cpu_rt_runtime",
        "mem_swappiness",
        "device_cgroup_rules",
        "storage_opt",
        "blkio_config",
        "annotations",
        "pids_limit",
        "scale",
        "attach",
        // Another container's volumes, beside it, and links (`share`).
        "volumes_from",
        "links",
        // Lifecycle hooks, run by the executor through the engine's exec (`hooks`).
        "post_start",
        "pre_stop",
        // Run in a one-off container before the replica starts (`exec::hooks`).
        "pre_start",
        // Resolved by `expand` (`extends`, `profiles`) before the service is read.
        "extends",
        "profiles",
    ],
    unsupported: &[
        (
            "cpu_count",
            "a Windows container setting; Linux containers take `cpus` or `cpu_quota`",
        ),
        (
            "cpu_percent",
            "a Windows container setting; Linux containers take `cpus` or `cpu_quota`",
        ),
        (
            "credential_spec",
            "a Windows container setting (gMSA credentials)",
        ),
        (
            "external_links",
            "links to containers outside the stack: join an external network both are on and use their names",
        ),
        (
            "isolation",
            "a Windows container setting",
        ),
        ("label_file", "use `labels`"),
        (
            "mac_address",
            "engines before API 1.44 take it only in a container field Convoy's engine client no longer sends; set it on a network attachment once supported",
        ),
        (
            "models",
            "AI models are run by Docker Desktop's model runner, which fleet hosts do not have",
        ),
        (
            "provider",
            "provider services are run by plugins of the Compose CLI on the machine that runs it, not by an engine",
        ),
        (
            "pull_refresh_after",
            "a pull schedule needs a record of when each host last pulled: use `pull_policy: always` or `apply --pull`",
        ),
        (
            "use_api_socket",
            "it hands the engine's socket and the local Docker credentials of the machine running Compose to the container; Convoy never ships credentials",
        ),
    ],
    extensions: true,
};

pub(super) const DEPLOY: Keys = Keys {
    supported: &[
        "mode",
        "replicas",
        "resources",
        "restart_policy",
        "placement",
        // Read in `rollout` (issue 10).
        "update_config",
        "rollback_config",
    ],
    unsupported: &[
        (
            "endpoint_mode",
            "a Swarm load-balancing mode: on a network the service name resolves to every replica, which is what `dnsrr` means; remove it",
        ),
        ("labels", "use the service's `labels`"),
    ],
    extensions: true,
};
pub(super) const RESOURCES: Keys = Keys {
    supported: &["limits", "reservations"],
    unsupported: &[],
    extensions: true,
};
pub(super) const LIMITS: Keys = Keys {
    supported: &["cpus", "memory", "pids"],
    unsupported: &[],
    extensions: true,
};
pub(super) const RESERVATIONS: Keys = Keys {
    supported: &["cpus", "memory", "devices"],
    unsupported: &[(
        "generic_resources",
        "Swarm's generic resources are advertised by Swarm nodes; use `devices` or `gpus`, and `x-convoy.hosts` to place the service",
    )],
    extensions: true,
};
pub(super) const RESTART_POLICY: Keys = Keys {
    // `delay` and `window` are read and checked, then left to the engine: it restarts with
    // its own back-off (100 ms, doubling, reset after 10 s of running) and counts attempts
    // without a window; neither can be set per container (README, "restart_policy").
    supported: &["condition", "max_attempts", "delay", "window"],
    unsupported: &[],
    extensions: true,
};
/// An entry of `gpus` or of `deploy.resources.reservations.devices`.
pub(super) const DEVICE_REQUEST: Keys = Keys {
    supported: &["capabilities", "count", "device_ids", "driver", "options"],
    unsupported: &[],
    extensions: true,
};
pub(super) const PLACEMENT: Keys = Keys {
    supported: &["constraints", "preferences", "max_replicas_per_node"],
    unsupported: &[],
    extensions: true,
};
pub(super) const PREFERENCE: Keys = Keys {
    supported: &["spread"],
    unsupported: &[],
    extensions: true,
};
pub(super) const HEALTHCHECK: Keys = Keys {
    supported: &[
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "start_interval",
        "disable",
    ],
    unsupported: &[],
    extensions: true,
};
pub(super) const LOGGING: Keys = Keys {
    supported: &["driver", "options"],
    unsupported: &[],
    extensions: true,
};
pub(super) const PORT: Keys = Keys {
    supported: &[
        "target",
        "published",
        "host_ip",
        "protocol",
        "mode",
        "app_protocol",
    ],
    unsupported: &[(
        "name",
        "a port's name is metadata for tools Convoy does not run; remove it",
    )],
    extensions: true,
};
pub(super) const MOUNT: Keys = Keys {
    supported: &["type", "source", "target", "read_only", "bind", "volume"],
    unsupported: &[
        (
            "consistency",
            "a Docker Desktop for Mac setting that Linux engines ignore; remove it",
        ),
        ("tmpfs", "use the service's `tmpfs`"),
        (
            "image",
            "image mounts need engine API 1.47; not supported yet",
        ),
    ],
    extensions: true,
};
pub(super) const MOUNT_BIND: Keys = Keys {
    supported: &[],
    unsupported: &[
        (
            "propagation",
            "bind mounts use the engine's default propagation (rprivate)",
        ),
        (
            "create_host_path",
            "a missing host path is an error of the engine's mount API",
        ),
        (
            "recursive",
            "submounts are bound read-only recursively where the engine can",
        ),
        (
            "selinux",
            "relabelling (`z`, `Z`) needs the engine's bind syntax, which Convoy does not use",
        ),
    ],
    extensions: true,
};
pub(super) const MOUNT_VOLUME: Keys = Keys {
    supported: &[],
    unsupported: &[
        (
            "labels",
            "label the volume where it is declared (top-level `volumes`)",
        ),
        (
            "nocopy",
            "a new volume is filled from the image's files at its path",
        ),
        ("subpath", "needs engine API 1.45"),
    ],
    extensions: true,
};
pub(super) const DEPENDS: Keys = Keys {
    supported: &["condition", "required", "restart"],
    unsupported: &[],
    extensions: true,
};
pub(super) const ATTACHMENT: Keys = Keys {
    supported: &["aliases", "ipv4_address", "ipv6_address"],
    unsupported: &[
        (
            "driver_opts",
            "endpoints are made with the network driver's defaults",
        ),
        (
            "gw_priority",
            "needs engine API 1.48; the first network written is the default gateway",
        ),
        ("interface_name", "needs engine API 1.49"),
        (
            "link_local_ips",
            "the engine assigns link-local addresses itself",
        ),
        (
            "mac_address",
            "engines before API 1.44 ignore a MAC address per network",
        ),
        (
            "priority",
            "networks are connected in the order of their names",
        ),
    ],
    extensions: true,
};
pub(super) const ENV_FILE: Keys = Keys {
    supported: &["path", "required"],
    unsupported: &[(
        "format",
        "env files are read in Compose's default format; remove `format`",
    )],
    extensions: false,
};
pub(super) const ULIMIT: Keys = Keys {
    supported: &["soft", "hard"],
    unsupported: &[],
    extensions: true,
};
/// The older `external: {name: x}` of networks and volumes.
pub(super) const EXTERNAL: Keys = Keys {
    supported: &["name"],
    unsupported: &[],
    extensions: true,
};
pub(super) const VOLUME: Keys = Keys {
    supported: &["driver", "driver_opts", "labels", "name", "external"],
    unsupported: &[],
    extensions: true,
};
pub(super) const NETWORK: Keys = Keys {
    supported: &[
        "driver",
        "driver_opts",
        "internal",
        "ipam",
        "labels",
        "name",
        "external",
    ],
    unsupported: &[
        (
            "attachable",
            "a Swarm overlay setting: Convoy's networks are local to each host; remove it",
        ),
        ("enable_ipv4", "needs engine API 1.47; networks have IPv4"),
        (
            "enable_ipv6",
            "IPv6 networks need an IPv6 `ipam` subnet on every host",
        ),
    ],
    extensions: true,
};
pub(super) const X_CONVOY: Keys = Keys {
    supported: &["hosts", "progress_deadline", "readiness", "job", "ingress"],
    unsupported: &[],
    extensions: false,
};
pub(super) const IPAM: Keys = Keys {
    supported: &["driver", "config"],
    unsupported: &[("options", "options of IPAM drivers other than the default")],
    extensions: true,
};
pub(super) const IPAM_POOL: Keys = Keys {
    supported: &["subnet", "ip_range", "gateway", "aux_addresses"],
    unsupported: &[],
    extensions: true,
};
/// A service's `build:` in its long form (`build.rs`).
pub(super) const BUILD: Keys = Keys {
    supported: &[
        "context",
        "dockerfile",
        "dockerfile_inline",
        "args",
        "target",
        "labels",
        "no_cache",
        "pull",
        "tags",
    ],
    // The builder is driven through the engine's classic build API, which has none of these,
    // or they would make the image depend on more than the commit.
    unsupported: &[
        (
            "additional_contexts",
            "one context per build: move the files into the context",
        ),
        (
            "cache_from",
            "the builder keeps its own cache; a build is skipped when its content is unchanged",
        ),
        (
            "cache_to",
            "the builder keeps its own cache; a build is skipped when its content is unchanged",
        ),
        (
            "entitlements",
            "builds run without extra privileges; do the privileged part at run time",
        ),
        (
            "extra_hosts",
            "builds use the builder's own name resolution",
        ),
        ("isolation", "Windows only"),
        ("network", "builds use the builder's default network"),
        (
            "platforms",
            "one platform, the builder's: build on a host of the platform you need",
        ),
        (
            "privileged",
            "builds run without extra privileges; do the privileged part at run time",
        ),
        (
            "secrets",
            "build secrets need BuildKit, which Convoy's builder does not drive; use a build arg \
             with a secret-looking name (masked) or fetch the secret at run time",
        ),
        ("shm_size", "builds use the builder's default shared memory"),
        (
            "ssh",
            "the builder gets no SSH agent: vendor the sources into the repository",
        ),
        ("ulimits", "builds use the builder's default limits"),
    ],
    extensions: true,
};
/// A top-level `configs` entry.
pub(super) const CONFIG: Keys = Keys {
    supported: &["file", "content", "environment"],
    unsupported: &[
        (
            "external",
            "an external config lives in a Swarm, which Convoy does not use: use `file`, `content` or `environment`",
        ),
        ("name", "the config is known by its key"),
        (
            "template_driver",
            "templates are rendered by Swarm; render the file in the repository",
        ),
        ("labels", "labels belong to Swarm's config objects; Convoy writes a file"),
        ("driver", "drivers belong to Swarm's secret stores; Convoy writes a file"),
        (
            "driver_opts",
            "drivers belong to Swarm's secret stores; Convoy writes a file",
        ),
    ],
    extensions: true,
};
/// A top-level `secrets` entry.
pub(super) const SECRET: Keys = Keys {
    supported: &["file", "environment"],
    unsupported: &[
        (
            "external",
            "an external secret lives in a Swarm, which Convoy does not use: use `file` or `environment`",
        ),
        ("name", "the secret is known by its key"),
        (
            "template_driver",
            "templates are rendered by Swarm; render the file in the repository",
        ),
        ("labels", "labels belong to Swarm's config objects; Convoy writes a file"),
        ("driver", "drivers belong to Swarm's secret stores; Convoy writes a file"),
        (
            "driver_opts",
            "drivers belong to Swarm's secret stores; Convoy writes a file",
        ),
    ],
    extensions: true,
};
/// The long syntax of a service's `configs` and `secrets` entry.
pub(super) const SERVICE_FILE: Keys = Keys {
    supported: &["source", "target", "uid", "gid", "mode"],
    unsupported: &[],
    extensions: true,
};
/// `deploy.update_config` and `deploy.rollback_config` (`rollout.rs`): Swarm's keys.
pub(super) const UPDATE_CONFIG: Keys = Keys {
    supported: &[
        "parallelism",
        "delay",
        "order",
        "monitor",
        "failure_action",
        "max_failure_ratio",
    ],
    unsupported: &[],
    extensions: true,
};
/// `x-convoy: {readiness: ...}` (`rollout.rs`): Convoy's own, read strictly as `X_CONVOY`.
pub(super) const READINESS: Keys = Keys {
    supported: &["port", "path", "expect"],
    unsupported: &[],
    extensions: false,
};
/// `x-convoy: {ingress: {...}}` (`ingress.rs`): Convoy's own, read strictly as `X_CONVOY`.
pub(super) const INGRESS: Keys = Keys {
    supported: &["hosts", "path"],
    unsupported: &[],
    extensions: false,
};
/// `x-convoy: {job: ...}` (`job.rs`): Convoy's own, read strictly as `X_CONVOY`.
pub(super) const JOB: Keys = Keys {
    supported: &[
        "schedule",
        "timezone",
        "concurrency",
        "deadline",
        "history",
        "before",
    ],
    unsupported: &[],
    extensions: false,
};
