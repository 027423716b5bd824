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
    unsupported: &[("models", "")],
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
        "configs",
        "secrets",
        // Convoy's own extension, read strictly (see `X_CONVOY`).
        "x-convoy",
        // Resolved by `expand` (`extends`, `profiles`) before the service is read.
        "extends",
        "profiles",
    ],
    unsupported: &[
        ("annotations", ""),
        ("attach", ""),
        ("blkio_config", ""),
        (
            "build",
            "build and push the image, then reference it by `image`",
        ),
        ("cgroup", ""),
        ("cgroup_parent", ""),
        ("cpu_count", ""),
        ("cpu_percent", ""),
        ("cpu_period", ""),
        ("cpu_quota", ""),
        ("cpu_rt_period", ""),
        ("cpu_rt_runtime", ""),
        ("cpuset", ""),
        ("credential_spec", ""),
        ("develop", ""),
        ("device_cgroup_rules", ""),
        ("dns_opt", ""),
        ("dns_search", ""),
        ("domainname", ""),
        ("external_links", ""),
        ("group_add", ""),
        ("isolation", ""),
        ("label_file", "use `labels`"),
        ("links", "services on one network reach each other by name"),
        ("mac_address", ""),
        ("mem_swappiness", ""),
        ("models", ""),
        // `host` and `none` are read; these need the two containers on one host.
        ("oom_kill_disable", ""),
        ("oom_score_adj", ""),
        ("pids_limit", "use `deploy.resources.limits.pids`"),
        // Compose's lifecycle hooks: commands run in the container around its start and stop.
        ("post_start", ""),
        ("pre_start", ""),
        ("pre_stop", ""),
        (
            "privileged",
            "use `cap_add` for the capabilities the service needs",
        ),
        ("provider", ""),
        ("pull_refresh_after", ""),
        ("scale", "use `deploy.replicas`"),
        ("shm_size", ""),
        ("storage_opt", ""),
        ("use_api_socket", ""),
        ("userns_mode", ""),
        ("uts", ""),
        (
            "volumes_from",
            "declare a named volume and mount it in both services",
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
    ],
    unsupported: &[
        ("endpoint_mode", ""),
        ("labels", "use the service's `labels`"),
        ("rollback_config", ""),
        ("update_config", ""),
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
    unsupported: &[("generic_resources", "")],
    extensions: true,
};
pub(super) const RESTART_POLICY: Keys = Keys {
    supported: &["condition", "max_attempts"],
    // The engine restarts with its own back-off (100 ms, doubling, reset after 10 s of
    // running) and counts attempts without a window: neither can be set per container.
    unsupported: &[
        (
            "delay",
            "the engine waits with its own back-off (100 ms, doubling); remove `delay`",
        ),
        (
            "window",
            "the engine counts every restart without a window; remove `window`",
        ),
    ],
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
    supported: &["target", "published", "host_ip", "protocol", "mode"],
    unsupported: &[("name", ""), ("app_protocol", "")],
    extensions: true,
};
pub(super) const MOUNT: Keys = Keys {
    supported: &["type", "source", "target", "read_only", "bind", "volume"],
    unsupported: &[
        ("consistency", ""),
        ("tmpfs", "use the service's `tmpfs`"),
        ("image", ""),
    ],
    extensions: true,
};
pub(super) const MOUNT_BIND: Keys = Keys {
    supported: &[],
    unsupported: &[
        ("propagation", ""),
        ("create_host_path", ""),
        ("recursive", ""),
        ("selinux", ""),
    ],
    extensions: true,
};
pub(super) const MOUNT_VOLUME: Keys = Keys {
    supported: &[],
    unsupported: &[("labels", ""), ("nocopy", ""), ("subpath", "")],
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
        ("driver_opts", ""),
        ("gw_priority", ""),
        ("interface_name", ""),
        ("link_local_ips", ""),
        ("mac_address", ""),
        ("priority", ""),
    ],
    extensions: true,
};
pub(super) const ENV_FILE: Keys = Keys {
    supported: &["path", "required"],
    unsupported: &[("format", "")],
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
    unsupported: &[("attachable", ""), ("enable_ipv4", ""), ("enable_ipv6", "")],
    extensions: true,
};
pub(super) const X_CONVOY: Keys = Keys {
    supported: &["hosts"],
    unsupported: &[],
    extensions: false,
};
pub(super) const IPAM: Keys = Keys {
    supported: &["driver", "config"],
    unsupported: &[("options", "")],
    extensions: true,
};
pub(super) const IPAM_POOL: Keys = Keys {
    supported: &["subnet", "ip_range", "gateway", "aux_addresses"],
    unsupported: &[],
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
        ("template_driver", ""),
        ("labels", ""),
        ("driver", ""),
        ("driver_opts", ""),
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
        ("template_driver", ""),
        ("labels", ""),
        ("driver", ""),
        ("driver_opts", ""),
    ],
    extensions: true,
};
/// The long syntax of a service's `configs` and `secrets` entry.
pub(super) const SERVICE_FILE: Keys = Keys {
    supported: &["source", "target", "uid", "gid", "mode"],
    unsupported: &[],
    extensions: true,
};
