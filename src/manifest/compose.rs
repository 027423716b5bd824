//! One Compose file (already parsed and interpolated) → a `StackSpec` in normalised form.
//!
//! Convoy supports a subset of Compose. Every key is sorted into one of three kinds at every
//! level: supported (read here), valid Compose but not supported yet (an error with a hint), or
//! unknown (an error with the nearest valid key). Nothing real is silently ignored, except the
//! `x-*` extension fields Compose itself ignores. No I/O except through the `RepoTree` handed in
//! for `env_file`; values read from env files never appear in messages.

use std::collections::{BTreeMap, BTreeSet};

use super::typed::{join, Diag, Keys};
use super::values::{dotenv_map, parse_dotenv, parse_duration_ns, shell_split};
use super::yaml::{Kind, Node};
use super::{ManifestError, RepoTree};
use crate::model::spec::{
    is_secret_name, Constraint, ConstraintAttribute, ContainerSpec, DependsCondition, DeployMode,
    Healthcheck, Logging, MountKind, MountSpec, NetworkAttachment, NetworkSpec, Placement,
    PortBinding, RestartName, RestartPolicy, ServiceSpec, StackSpec, Ulimit, VolumeSpec,
};

const TOP: Keys = Keys {
    supported: &["version", "name", "services", "networks", "volumes"],
    unsupported: &[
        ("include", "put the services in this file"),
        ("models", ""),
        ("secrets", "use environment variables or a bind mount"),
        ("configs", "use environment variables or a bind mount"),
    ],
    extensions: true,
};

const SERVICE: Keys = Keys {
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
        "tmpfs",
        "init",
        "extra_hosts",
        "dns",
        "sysctls",
        "ulimits",
        "logging",
        "networks",
        "deploy",
        // Convoy's own extension, read strictly (see `X_CONVOY`).
        "x-convoy",
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
        ("configs", "use environment variables or a bind mount"),
        (
            "container_name",
            "Convoy names containers `<stack>-<service>-<slot>`",
        ),
        ("cpu_count", ""),
        ("cpu_percent", ""),
        ("cpu_period", ""),
        ("cpu_quota", ""),
        ("cpu_rt_period", ""),
        ("cpu_rt_runtime", ""),
        ("cpu_shares", ""),
        ("cpus", "use `deploy.resources.limits.cpus`"),
        ("cpuset", ""),
        ("credential_spec", ""),
        ("develop", ""),
        ("device_cgroup_rules", ""),
        ("devices", ""),
        ("dns_opt", ""),
        ("dns_search", ""),
        ("domainname", ""),
        (
            "expose",
            "services on one network reach each other without it",
        ),
        ("extends", "use YAML anchors and `<<` merge keys"),
        ("external_links", ""),
        ("gpus", ""),
        ("group_add", ""),
        ("ipc", ""),
        ("isolation", ""),
        ("label_file", "use `labels`"),
        ("links", "services on one network reach each other by name"),
        ("mac_address", ""),
        ("mem_limit", "use `deploy.resources.limits.memory`"),
        (
            "mem_reservation",
            "use `deploy.resources.reservations.memory`",
        ),
        ("mem_swappiness", ""),
        ("memswap_limit", ""),
        ("models", ""),
        ("network_mode", "use `networks`"),
        ("oom_kill_disable", ""),
        ("oom_score_adj", ""),
        ("pid", ""),
        ("pids_limit", "use `deploy.resources.limits.pids`"),
        ("platform", ""),
        ("post_start", ""),
        ("pre_stop", ""),
        (
            "privileged",
            "use `cap_add` for the capabilities the service needs",
        ),
        ("profiles", "put optional services in a stack of their own"),
        ("provider", ""),
        (
            "pull_policy",
            "images are pulled or pushed as `convoy.yaml` says",
        ),
        ("pull_refresh_after", ""),
        ("runtime", ""),
        ("scale", "use `deploy.replicas`"),
        ("secrets", "use environment variables or a bind mount"),
        ("security_opt", ""),
        ("shm_size", ""),
        ("stdin_open", ""),
        ("storage_opt", ""),
        ("tty", ""),
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

const DEPLOY: Keys = Keys {
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
const RESOURCES: Keys = Keys {
    supported: &["limits", "reservations"],
    unsupported: &[],
    extensions: true,
};
const LIMITS: Keys = Keys {
    supported: &["cpus", "memory", "pids"],
    unsupported: &[],
    extensions: true,
};
const RESERVATIONS: Keys = Keys {
    supported: &["cpus", "memory"],
    unsupported: &[("devices", ""), ("generic_resources", "")],
    extensions: true,
};
const RESTART_POLICY: Keys = Keys {
    supported: &["condition", "max_attempts"],
    unsupported: &[("delay", ""), ("window", "")],
    extensions: true,
};
const PLACEMENT: Keys = Keys {
    supported: &["constraints", "preferences", "max_replicas_per_node"],
    unsupported: &[],
    extensions: true,
};
const PREFERENCE: Keys = Keys {
    supported: &["spread"],
    unsupported: &[],
    extensions: true,
};
const HEALTHCHECK: Keys = Keys {
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
const LOGGING: Keys = Keys {
    supported: &["driver", "options"],
    unsupported: &[],
    extensions: true,
};
const PORT: Keys = Keys {
    supported: &["target", "published", "host_ip", "protocol", "mode"],
    unsupported: &[("name", ""), ("app_protocol", "")],
    extensions: true,
};
const MOUNT: Keys = Keys {
    supported: &["type", "source", "target", "read_only", "bind", "volume"],
    unsupported: &[
        ("consistency", ""),
        ("tmpfs", "use the service's `tmpfs`"),
        ("image", ""),
    ],
    extensions: true,
};
const MOUNT_BIND: Keys = Keys {
    supported: &[],
    unsupported: &[
        ("propagation", ""),
        ("create_host_path", ""),
        ("recursive", ""),
        ("selinux", ""),
    ],
    extensions: true,
};
const MOUNT_VOLUME: Keys = Keys {
    supported: &[],
    unsupported: &[("labels", ""), ("nocopy", ""), ("subpath", "")],
    extensions: true,
};
const DEPENDS: Keys = Keys {
    supported: &["condition", "required", "restart"],
    unsupported: &[],
    extensions: true,
};
const ATTACHMENT: Keys = Keys {
    supported: &["aliases"],
    unsupported: &[
        ("driver_opts", ""),
        ("gw_priority", ""),
        ("interface_name", ""),
        ("ipv4_address", ""),
        ("ipv6_address", ""),
        ("link_local_ips", ""),
        ("mac_address", ""),
        ("priority", ""),
    ],
    extensions: true,
};
const ENV_FILE: Keys = Keys {
    supported: &["path", "required"],
    unsupported: &[("format", "")],
    extensions: false,
};
const ULIMIT: Keys = Keys {
    supported: &["soft", "hard"],
    unsupported: &[],
    extensions: true,
};
const VOLUME: Keys = Keys {
    supported: &["driver", "driver_opts", "labels", "name", "external"],
    unsupported: &[],
    extensions: true,
};
const NETWORK: Keys = Keys {
    supported: &["driver", "internal", "labels", "name", "external"],
    unsupported: &[
        ("attachable", ""),
        ("driver_opts", ""),
        ("enable_ipv4", ""),
        ("enable_ipv6", ""),
        ("ipam", ""),
    ],
    extensions: true,
};
const X_CONVOY: Keys = Keys {
    supported: &["hosts"],
    unsupported: &[],
    extensions: false,
};

const ANONYMOUS_VOLUME: &str =
    "anonymous volumes are not supported yet: declare a named volume in the top-level `volumes`";
const RELATIVE_BIND: &str = "is not supported: the hosts do not have the repository; \
     use an absolute path or a named volume";
const DEPENDS_CONDITIONS: &str =
    "(expected service_started, service_healthy or service_completed_successfully)";
const NOT_REQUIRED: &str = "`required: false` is not supported yet: every dependency is required";

/// Compose's rule for project names, which become the prefix of every engine name.
pub fn is_stack_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
}

/// What one stack needs from the outside world.
pub struct Input<'a> {
    /// The folder under `stacks/`.
    pub folder_name: &'a str,
    /// Repository path of the folder holding the Compose file (`stacks/web`).
    pub dir: &'a str,
    /// Variables for `environment: [K]` (the `.env` file overlaid with the environment map).
    pub vars: &'a BTreeMap<String, String>,
    pub tree: &'a dyn RepoTree,
    /// The fleet's host names, when `convoy.yaml` could be read.
    pub hosts: Option<&'a BTreeSet<String>>,
}

struct Stack<'a> {
    input: &'a Input<'a>,
    name: String,
    volumes: BTreeMap<String, VolumeSpec>,
    networks: BTreeMap<String, NetworkSpec>,
}

/// Cross-service facts gathered while reading services.
struct Gathered<'n> {
    ports: Vec<(PortBinding, &'n Node, String)>,
    depends: Vec<(String, &'n Node, String)>,
    networks: Vec<String>,
}

pub fn read(d: &mut Diag, root: &Node, input: &Input<'_>) -> Option<StackSpec> {
    let entries = match &root.kind {
        Kind::Map(entries) => entries.as_slice(),
        _ if root.is_null() => {
            d.file_level("the compose file is empty");
            return None;
        }
        _ => {
            d.at(root, "", "expected a map with `services:`");
            return None;
        }
    };
    let before = d.errors.len();
    let fields = d.fields(entries, "", &TOP);
    let get = |n: &str| fields.iter().find(|f| f.0 == n);

    let mut name = input.folder_name.to_string();
    let mut name_node = None;
    if let Some((_, _, v, path)) = get("name") {
        if let Some(s) = d.string(v, path) {
            name = s;
            name_node = Some((*v, path.clone()));
        }
    }
    if !is_stack_name(&name) {
        let msg = format!(
            "stack name `{name}` is not valid: use lowercase letters, digits, `_` and `-`, starting with a letter or digit"
        );
        match name_node {
            Some((n, p)) => d.at(n, &p, msg),
            None => d.file_level(msg),
        }
    }
    let mut stack = Stack {
        input,
        name,
        volumes: BTreeMap::new(),
        networks: BTreeMap::new(),
    };
    if let Some((_, _, v, path)) = get("volumes") {
        stack.read_volumes(d, v, path);
    }
    let mut declared_networks: BTreeMap<String, NetworkSpec> = BTreeMap::new();
    if let Some((_, _, v, path)) = get("networks") {
        declared_networks = stack.read_networks(d, v, path);
    }
    stack.networks = declared_networks;

    let mut services = BTreeMap::new();
    let mut gathered: BTreeMap<String, Gathered<'_>> = BTreeMap::new();
    match get("services") {
        Some((_, _, v, path)) => {
            if let Some(entries) = d.map(v, path) {
                if entries.is_empty() {
                    d.at(v, path, "a stack needs at least one service");
                }
                for (k, v) in entries {
                    let sname = k.scalar().unwrap_or_default().to_string();
                    let spath = join(path, &sname);
                    if !is_service_name(&sname) {
                        d.at(
                            k,
                            &spath,
                            "a service name is letters, digits, `_`, `.` and `-`",
                        );
                        continue;
                    }
                    let mut g = Gathered {
                        ports: Vec::new(),
                        depends: Vec::new(),
                        networks: Vec::new(),
                    };
                    if let Some(s) = stack.read_service(d, &sname, k, v, &spath, &mut g) {
                        services.insert(sname.clone(), s);
                    }
                    gathered.insert(sname, g);
                }
            }
        }
        None => d.file_level("no `services:` in the compose file"),
    }

    // Cross-service checks.
    let mut seen_ports: Vec<(PortBinding, String)> = Vec::new();
    for (sname, g) in &gathered {
        for (dep, node, path) in &g.depends {
            if dep == sname {
                d.at(node, path, "a service cannot depend on itself");
            } else if !gathered.contains_key(dep) {
                d.at(node, path, format!("depends on unknown service `{dep}`"));
            }
        }
        for (p, node, path) in &g.ports {
            if let Some((_, other)) = seen_ports
                .iter()
                .find(|(q, o)| o != sname && ports_clash(p, q))
            {
                d.at(
                    node,
                    path,
                    format!(
                        "host port {} is also published by service `{other}`",
                        port_label(p)
                    ),
                );
            }
        }
        for (p, _, _) in &g.ports {
            seen_ports.push((p.clone(), sname.clone()));
        }
    }
    report_cycles(d, &gathered);

    // Only the networks some service uses are created, as Compose does.
    let used: BTreeSet<&String> = gathered.values().flat_map(|g| g.networks.iter()).collect();
    let mut networks = BTreeMap::new();
    for n in used {
        if let Some(spec) = stack.networks.get(n) {
            networks.insert(n.clone(), spec.clone());
        } else if n == "default" {
            networks.insert(n.clone(), stack.default_network());
        }
    }

    if d.errors.len() > before {
        return None;
    }
    Some(StackSpec {
        name: stack.name,
        file: d.file.clone(),
        services,
        networks,
        volumes: stack.volumes,
    })
}

fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn ports_clash(a: &PortBinding, b: &PortBinding) -> bool {
    let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
    a.host_port.is_some()
        && a.host_port == b.host_port
        && a.protocol == b.protocol
        && (a.host_ip == b.host_ip || wildcard(&a.host_ip) || wildcard(&b.host_ip))
}

fn port_label(p: &PortBinding) -> String {
    let port = p.host_port.unwrap_or_default();
    if p.host_ip.is_empty() {
        format!("{port}/{}", p.protocol)
    } else {
        format!("{}:{port}/{}", p.host_ip, p.protocol)
    }
}

fn report_cycles(d: &mut Diag, gathered: &BTreeMap<String, Gathered<'_>>) {
    for (start, g) in gathered {
        for (first, node, path) in g.depends.iter().filter(|(dep, _, _)| dep != start) {
            // Depth-first from this edge; a path back to `start` is a cycle through it.
            let mut stack = vec![(first.clone(), vec![start.clone(), first.clone()])];
            let mut visited = BTreeSet::new();
            while let Some((cur, trail)) = stack.pop() {
                if cur == *start {
                    d.at(
                        node,
                        path,
                        format!("dependency cycle: {}", trail.join(" -> ")),
                    );
                    break;
                }
                if !visited.insert(cur.clone()) {
                    continue;
                }
                if let Some(next) = gathered.get(&cur) {
                    for (dep, _, _) in &next.depends {
                        let mut t = trail.clone();
                        t.push(dep.clone());
                        stack.push((dep.clone(), t));
                    }
                }
            }
        }
    }
}

/// Joins a relative path onto a repository folder; None when it leaves the repository.
pub fn resolve(dir: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

fn duration_ns(d: &mut Diag, v: &Node, path: &str) -> Option<i64> {
    let s = d.string(v, path)?;
    match parse_duration_ns(&s) {
        Ok(ns) if ns >= 0 => Some(ns),
        Ok(_) => {
            d.at(v, path, "expected a non-negative duration");
            None
        }
        Err(m) => {
            d.at(v, path, m);
            None
        }
    }
}

fn nano_cpus(d: &mut Diag, v: &Node, path: &str) -> Option<i64> {
    let n = d.number(v, path)?;
    if !(0.0..1e9).contains(&n) {
        d.at(v, path, "expected a non-negative number of cpus");
        return None;
    }
    Some((n * 1e9).round() as i64)
}

fn command(d: &mut Diag, v: &Node, path: &str) -> Option<Vec<String>> {
    if v.is_null() {
        return None;
    }
    match &v.kind {
        Kind::Seq(_) => Some(
            d.string_list(v, path)?
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        ),
        _ => {
            let s = d.string(v, path)?;
            match shell_split(&s) {
                Ok(words) => Some(words),
                Err(m) => {
                    d.at(v, path, m);
                    None
                }
            }
        }
    }
}

fn parse_restart(s: &str) -> Result<RestartPolicy, String> {
    let bad = || {
        format!(
            "invalid restart policy `{s}` (expected no, always, on-failure[:N] or unless-stopped)"
        )
    };
    let (name, max) = match s {
        "no" => (RestartName::No, None),
        "always" => (RestartName::Always, None),
        "unless-stopped" => (RestartName::UnlessStopped, None),
        "on-failure" => (RestartName::OnFailure, None),
        _ => match s.strip_prefix("on-failure:") {
            Some(n) => match n.parse::<i64>() {
                Ok(n) if n >= 0 => (RestartName::OnFailure, Some(n)),
                _ => return Err(bad()),
            },
            None => return Err(bad()),
        },
    };
    Ok(RestartPolicy {
        name,
        max_attempts: max,
    })
}

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| match p.trim().parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("invalid port `{p}`")),
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(format!("invalid port range `{s}`"));
            }
            Ok((a, b))
        }
        None => {
            let n = one(s)?;
            Ok((n, n))
        }
    }
}

/// `[[ip:]host:]container[/protocol]` with ranges (`8080-8081:80-81`) and `[v6]:host:container`.
pub fn parse_port(s: &str) -> Result<Vec<PortBinding>, String> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s, "tcp"),
    };
    if !matches!(proto, "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol `{proto}` (expected tcp, udp or sctp)"
        ));
    }
    let (ip, host, container) = if let Some(rest) = spec.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid port `{s}`"))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| format!("invalid port `{s}`"))?;
        let (h, c) = after
            .split_once(':')
            .ok_or_else(|| format!("invalid port `{s}`"))?;
        (ip, h, c)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.as_slice() {
            [c] => ("", "", *c),
            [h, c] => ("", *h, *c),
            [ip, h, c] => (*ip, *h, *c),
            _ => return Err(format!("invalid port `{s}`")),
        }
    };
    let (c0, c1) = port_range(container)?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(port_range(host)?)
    };
    if let Some((h0, h1)) = host_range {
        if h1 - h0 != c1 - c0 {
            return Err(format!(
                "host and container port ranges of `{s}` differ in size"
            ));
        }
    }
    Ok((0..=(c1 - c0))
        .map(|i| PortBinding {
            host_ip: ip.to_string(),
            host_port: host_range.map(|(h0, _)| h0 + i),
            container_port: c0 + i,
            protocol: proto.to_string(),
        })
        .collect())
}

impl Stack<'_> {
    fn default_network(&self) -> NetworkSpec {
        NetworkSpec {
            engine_name: format!("{}_default", self.name),
            driver: "bridge".into(),
            internal: false,
            labels: BTreeMap::new(),
            external: false,
        }
    }

    fn read_volumes(&mut self, d: &mut Diag, v: &Node, path: &str) {
        let Some(entries) = d.map(v, path) else {
            return;
        };
        for (k, v) in entries {
            let name = k.scalar().unwrap_or_default().to_string();
            let vpath = join(path, &name);
            let Some(fields) = d.map(v, &vpath) else {
                continue;
            };
            let mut spec = VolumeSpec {
                engine_name: format!("{}_{name}", self.name),
                driver: "local".into(),
                driver_opts: BTreeMap::new(),
                labels: BTreeMap::new(),
                external: false,
            };
            let mut explicit_name = None;
            for (field, _k, v, fpath) in d.fields(fields, &vpath, &VOLUME) {
                match field {
                    "driver" => spec.driver = d.string(v, &fpath).unwrap_or_default(),
                    "driver_opts" => {
                        spec.driver_opts = d.string_map(v, &fpath, false).unwrap_or_default()
                    }
                    "labels" => spec.labels = d.string_map(v, &fpath, true).unwrap_or_default(),
                    "name" => explicit_name = d.string(v, &fpath),
                    "external" => spec.external = d.bool(v, &fpath).unwrap_or(false),
                    _ => {}
                }
            }
            if let Some(n) = explicit_name {
                spec.engine_name = n;
            } else if spec.external {
                spec.engine_name = name.clone();
            }
            self.volumes.insert(name, spec);
        }
    }

    fn read_networks(
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
            };
            let mut explicit_name = None;
            for (field, _k, v, fpath) in d.fields(fields, &npath, &NETWORK) {
                match field {
                    "driver" => spec.driver = d.string(v, &fpath).unwrap_or_default(),
                    "internal" => spec.internal = d.bool(v, &fpath).unwrap_or(false),
                    "labels" => spec.labels = d.string_map(v, &fpath, true).unwrap_or_default(),
                    "name" => explicit_name = d.string(v, &fpath),
                    "external" => spec.external = d.bool(v, &fpath).unwrap_or(false),
                    _ => {}
                }
            }
            if let Some(n) = explicit_name {
                spec.engine_name = n;
            } else if spec.external {
                spec.engine_name = name.clone();
            }
            out.insert(name, spec);
        }
        out
    }

    fn read_service<'n>(
        &self,
        d: &mut Diag,
        name: &str,
        key: &Node,
        v: &'n Node,
        path: &str,
        g: &mut Gathered<'n>,
    ) -> Option<ServiceSpec> {
        let entries = d.map(v, path)?;
        let before = d.errors.len();
        let mut c = ContainerSpec::default();
        let mut svc = ServiceSpec {
            name: name.to_string(),
            mode: DeployMode::Replicated,
            replicas: 1,
            depends_on: BTreeMap::new(),
            placement: Placement::default(),
            reserve_nano_cpus: None,
            reserve_memory_bytes: None,
            secret_env: BTreeSet::new(),
            container: ContainerSpec::default(),
        };
        let mut image = None;
        let mut env_file_env: BTreeMap<String, String> = BTreeMap::new();
        let mut environment: Option<Vec<(String, Option<String>)>> = None;
        let mut restart: Option<RestartPolicy> = None;
        let mut deploy_restart: Option<RestartPolicy> = None;
        let mut network_names: Vec<(String, Vec<String>)> = Vec::new();
        let mut saw_networks = false;

        for (field, _k, v, fpath) in d.fields(entries, path, &SERVICE) {
            match field {
                "image" => {
                    if let Some(s) = d.string(v, &fpath) {
                        if s.trim().is_empty() {
                            d.at(v, &fpath, "the image is empty");
                        } else {
                            image = Some(s);
                        }
                    }
                }
                "command" => c.command = command(d, v, &fpath),
                "entrypoint" => c.entrypoint = command(d, v, &fpath),
                "environment" => {
                    environment = d
                        .list_or_dict(v, &fpath, '=')
                        .map(|l| l.into_iter().map(|(k, v, _)| (k, v)).collect());
                }
                "env_file" => {
                    env_file_env = self.read_env_files(d, v, &fpath, &mut svc.secret_env);
                }
                "ports" => self.read_ports(d, v, &fpath, &mut c, g),
                "volumes" => self.read_mounts(d, v, &fpath, &mut c),
                "labels" => c.labels = d.string_map(v, &fpath, true).unwrap_or_default(),
                "restart" => {
                    if let Some(s) = d.string(v, &fpath) {
                        match parse_restart(&s) {
                            Ok(r) => restart = Some(r),
                            Err(m) => d.at(v, &fpath, m),
                        }
                    }
                }
                "healthcheck" => c.healthcheck = read_healthcheck(d, v, &fpath),
                "depends_on" => self.read_depends(d, v, &fpath, &mut svc, g),
                "user" => c.user = d.string(v, &fpath),
                "working_dir" => c.working_dir = d.string(v, &fpath),
                "hostname" => c.hostname = d.string(v, &fpath),
                "stop_signal" => c.stop_signal = d.string(v, &fpath),
                "stop_grace_period" => {
                    c.stop_grace_period_secs =
                        duration_ns(d, v, &fpath).map(|ns| ns / 1_000_000_000)
                }
                "cap_add" => c.cap_add = sorted_strings(d, v, &fpath),
                "cap_drop" => c.cap_drop = sorted_strings(d, v, &fpath),
                "read_only" => c.read_only = d.bool(v, &fpath).unwrap_or(false),
                "tmpfs" => {
                    for (s, n) in d.string_or_list(v, &fpath).unwrap_or_default() {
                        let (p, opts) = s.split_once(':').unwrap_or((&s, ""));
                        if !p.starts_with('/') {
                            d.at(n, &fpath, format!("tmpfs path `{p}` is not absolute"));
                        } else {
                            c.tmpfs.insert(p.to_string(), opts.to_string());
                        }
                    }
                }
                "init" => c.init = d.bool(v, &fpath),
                "extra_hosts" => c.extra_hosts = read_extra_hosts(d, v, &fpath),
                "dns" => {
                    // Order is meaning here (the first server is asked first), so it is kept.
                    c.dns = d
                        .string_or_list(v, &fpath)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect();
                }
                "sysctls" => c.sysctls = d.string_map(v, &fpath, true).unwrap_or_default(),
                "ulimits" => c.ulimits = read_ulimits(d, v, &fpath),
                "logging" => c.logging = read_logging(d, v, &fpath),
                "networks" => {
                    saw_networks = true;
                    network_names = self.read_attachments(d, v, &fpath);
                }
                "deploy" => deploy_restart = read_deploy(d, v, &fpath, &mut svc, &mut c),
                "x-convoy" => svc.placement.hosts = self.read_x_convoy(d, v, &fpath),
                _ => {}
            }
        }

        match image {
            Some(i) => c.image = i,
            None if !entries.iter().any(|(k, _)| k.scalar() == Some("image")) => {
                d.at(key, path, "missing `image`");
            }
            None => {}
        }

        // environment wins over env_file; a bare `K` takes its value from the variables and is
        // dropped when they have none, as Compose does.
        c.env = env_file_env;
        for (k, v) in environment.unwrap_or_default() {
            match v.or_else(|| self.input.vars.get(&k).cloned()) {
                Some(v) => {
                    c.env.insert(k, v);
                }
                None => {
                    c.env.remove(&k);
                }
            }
        }
        for k in c.env.keys() {
            if is_secret_name(k) {
                svc.secret_env.insert(k.clone());
            }
        }

        c.restart = deploy_restart.or(restart).unwrap_or_default();

        if !saw_networks {
            network_names.push(("default".into(), Vec::new()));
        }
        for (net, aliases) in network_names {
            let engine = match self.networks.get(&net) {
                Some(n) => n.engine_name.clone(),
                None => self.default_network().engine_name,
            };
            let mut aliases = aliases;
            aliases.push(name.to_string());
            aliases.sort();
            aliases.dedup();
            c.networks.insert(engine, NetworkAttachment { aliases });
            g.networks.push(net);
        }

        c.ports.sort();
        c.mounts
            .sort_by(|a, b| a.target.cmp(&b.target).then_with(|| a.cmp(b)));
        svc.container = c;
        (d.errors.len() == before).then_some(svc)
    }

    fn read_x_convoy(&self, d: &mut Diag, v: &Node, path: &str) -> Option<Vec<String>> {
        let entries = d.map(v, path)?;
        let mut hosts = None;
        for (_field, _k, v, fpath) in d.fields(entries, path, &X_CONVOY) {
            let list = d.string_list(v, &fpath)?;
            if list.is_empty() {
                d.at(v, &fpath, "no host listed: the service could run nowhere");
                continue;
            }
            let mut names = Vec::new();
            for (i, (h, n)) in list.into_iter().enumerate() {
                if let Some(known) = self.input.hosts {
                    if !known.contains(&h) {
                        d.at(
                            n,
                            &format!("{fpath}[{i}]"),
                            format!("unknown host `{h}` (not in convoy.yaml)"),
                        );
                        continue;
                    }
                }
                names.push(h);
            }
            names.sort();
            names.dedup();
            hosts = Some(names);
        }
        hosts
    }

    fn read_env_files(
        &self,
        d: &mut Diag,
        v: &Node,
        path: &str,
        secret: &mut BTreeSet<String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let items: Vec<&Node> = match &v.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![v],
        };
        for (i, item) in items.into_iter().enumerate() {
            let ipath = if matches!(v.kind, Kind::Seq(_)) {
                format!("{path}[{i}]")
            } else {
                path.to_string()
            };
            let (file, required) = match &item.kind {
                Kind::Map(entries) => {
                    let mut file = None;
                    let mut required = true;
                    for (field, _k, v, fpath) in d.fields(entries, &ipath, &ENV_FILE) {
                        match field {
                            "path" => file = d.string(v, &fpath),
                            "required" => required = d.bool(v, &fpath).unwrap_or(true),
                            _ => {}
                        }
                    }
                    match file {
                        Some(f) => (f, required),
                        None => {
                            if !entries.iter().any(|(k, _)| k.scalar() == Some("path")) {
                                d.at(item, &ipath, "missing `path`");
                            }
                            continue;
                        }
                    }
                }
                _ => match d.string(item, &ipath) {
                    Some(s) => (s, true),
                    None => continue,
                },
            };
            let Some(repo_path) = resolve(self.input.dir, &file) else {
                d.at(
                    item,
                    &ipath,
                    format!("env file `{file}` is outside the repository"),
                );
                continue;
            };
            let bytes = match self.input.tree.read(&repo_path) {
                Ok(Some(b)) => b,
                Ok(None) if !required => continue,
                Ok(None) => {
                    d.at(item, &ipath, format!("env file `{repo_path}` not found"));
                    continue;
                }
                Err(e) => {
                    d.at(
                        item,
                        &ipath,
                        format!("cannot read env file `{repo_path}`: {e}"),
                    );
                    continue;
                }
            };
            let env_err = |line: usize, message: String| ManifestError {
                file: repo_path.clone(),
                line,
                column: if line > 0 { 1 } else { 0 },
                key: String::new(),
                message,
            };
            let Ok(text) = String::from_utf8(bytes) else {
                d.errors.push(env_err(0, "not valid utf-8".into()));
                continue;
            };
            let vars = self.input.vars;
            let lookup = |n: &str| vars.get(n).cloned();
            match parse_dotenv(&text).and_then(|e| dotenv_map(&e, &lookup)) {
                Ok(map) => {
                    for (k, v) in map {
                        secret.insert(k.clone());
                        out.insert(k, v);
                    }
                }
                Err((line, m)) => d.errors.push(env_err(line, m)),
            }
        }
        out
    }

    fn read_ports<'n>(
        &self,
        d: &mut Diag,
        v: &'n Node,
        path: &str,
        c: &mut ContainerSpec,
        g: &mut Gathered<'n>,
    ) {
        let Kind::Seq(items) = &v.kind else {
            d.at(v, path, format!("expected a list, found {}", v.type_name()));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let bindings = match &item.kind {
                Kind::Map(entries) => read_long_port(d, entries, &ipath),
                _ => match d.string(item, &ipath) {
                    Some(s) => match parse_port(&s) {
                        Ok(b) => Some(b),
                        Err(m) => {
                            d.at(item, &ipath, m);
                            None
                        }
                    },
                    None => None,
                },
            };
            for b in bindings.unwrap_or_default() {
                if c.ports.iter().any(|p| ports_clash(p, &b)) {
                    d.at(
                        item,
                        &ipath,
                        format!(
                            "host port {} is published twice by this service",
                            port_label(&b)
                        ),
                    );
                    continue;
                }
                if b.host_port.is_some() {
                    g.ports.push((b.clone(), item, ipath.clone()));
                }
                c.ports.push(b);
            }
        }
    }

    fn read_mounts(&self, d: &mut Diag, v: &Node, path: &str, c: &mut ContainerSpec) {
        let Kind::Seq(items) = &v.kind else {
            d.at(v, path, format!("expected a list, found {}", v.type_name()));
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let mount = match &item.kind {
                Kind::Map(entries) => self.read_long_mount(d, item, entries, &ipath),
                _ => d
                    .string(item, &ipath)
                    .and_then(|s| self.short_mount(d, item, &ipath, &s)),
            };
            if let Some(m) = mount {
                if c.mounts.iter().any(|o| o.target == m.target) {
                    d.at(item, &ipath, format!("`{}` is mounted twice", m.target));
                    continue;
                }
                c.mounts.push(m);
            }
        }
    }

    /// Checks a mount source and gives (kind, engine-side source).
    fn mount_source(
        &self,
        d: &mut Diag,
        node: &Node,
        path: &str,
        kind: Option<MountKind>,
        source: &str,
    ) -> Option<(MountKind, String)> {
        if source.is_empty() {
            d.at(node, path, ANONYMOUS_VOLUME);
            return None;
        }
        let looks_relative = source.starts_with('.') || source.starts_with('~');
        let kind = kind.unwrap_or(if source.starts_with('/') || looks_relative {
            MountKind::Bind
        } else {
            MountKind::Volume
        });
        match kind {
            MountKind::Bind => {
                if !source.starts_with('/') {
                    d.at(
                        node,
                        path,
                        format!("relative bind-mount source `{source}` {RELATIVE_BIND}"),
                    );
                    return None;
                }
                Some((MountKind::Bind, source.to_string()))
            }
            MountKind::Volume => match self.volumes.get(source) {
                Some(v) => Some((MountKind::Volume, v.engine_name.clone())),
                None => {
                    d.at(
                        node,
                        path,
                        format!("volume `{source}` is not declared in the top-level `volumes`"),
                    );
                    None
                }
            },
        }
    }

    fn short_mount(&self, d: &mut Diag, node: &Node, path: &str, s: &str) -> Option<MountSpec> {
        let parts: Vec<&str> = s.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [_] => ("", parts[0], ""),
            [a, b] => (*a, *b, ""),
            [a, b, m] => (*a, *b, *m),
            _ => {
                d.at(
                    node,
                    path,
                    format!("invalid volume `{s}` (expected `source:target[:ro]`)"),
                );
                return None;
            }
        };
        let mut read_only = false;
        for opt in mode.split(',').filter(|o| !o.is_empty()) {
            match opt {
                "ro" => read_only = true,
                "rw" => read_only = false,
                other => {
                    d.at(
                        node,
                        path,
                        format!("volume option `{other}` is not supported yet"),
                    );
                    return None;
                }
            }
        }
        if !target.starts_with('/') {
            d.at(
                node,
                path,
                format!("mount target `{target}` is not an absolute path"),
            );
            return None;
        }
        let (kind, source) = self.mount_source(d, node, path, None, source)?;
        Some(MountSpec {
            kind,
            source,
            target: target.to_string(),
            read_only,
        })
    }

    fn read_long_mount(
        &self,
        d: &mut Diag,
        node: &Node,
        entries: &[(Node, Node)],
        path: &str,
    ) -> Option<MountSpec> {
        let before = d.errors.len();
        let mut kind = None;
        let mut source = String::new();
        let mut target = None;
        let mut read_only = false;
        let mut saw_type = false;
        for (field, _k, v, fpath) in d.fields(entries, path, &MOUNT) {
            match field {
                "type" => {
                    saw_type = true;
                    match d.string(v, &fpath).as_deref() {
                        Some("bind") => kind = Some(MountKind::Bind),
                        Some("volume") => kind = Some(MountKind::Volume),
                        Some("tmpfs") => d.at(
                            v,
                            &fpath,
                            "mount type `tmpfs` is not supported yet: use the service's `tmpfs`",
                        ),
                        Some(t @ ("cluster" | "npipe" | "image")) => {
                            d.at(v, &fpath, format!("mount type `{t}` is not supported yet"))
                        }
                        Some(t) => d.at(
                            v,
                            &fpath,
                            format!("invalid mount type `{t}` (expected bind or volume)"),
                        ),
                        None => {}
                    }
                }
                "source" => source = d.string(v, &fpath).unwrap_or_default(),
                "target" => target = d.string(v, &fpath),
                "read_only" => read_only = d.bool(v, &fpath).unwrap_or(false),
                "bind" => {
                    if let Some(e) = d.map(v, &fpath) {
                        d.fields(e, &fpath, &MOUNT_BIND);
                    }
                }
                "volume" => {
                    if let Some(e) = d.map(v, &fpath) {
                        d.fields(e, &fpath, &MOUNT_VOLUME);
                    }
                }
                _ => {}
            }
        }
        if !saw_type {
            d.at(node, path, "missing `type` (bind or volume)");
        }
        let Some(target) = target else {
            d.at(node, path, "missing `target`");
            return None;
        };
        if !target.starts_with('/') {
            d.at(
                node,
                path,
                format!("mount target `{target}` is not an absolute path"),
            );
            return None;
        }
        if d.errors.len() > before {
            return None;
        }
        let (kind, source) = self.mount_source(d, node, path, kind, &source)?;
        Some(MountSpec {
            kind,
            source,
            target,
            read_only,
        })
    }

    fn read_depends<'n>(
        &self,
        d: &mut Diag,
        v: &'n Node,
        path: &str,
        svc: &mut ServiceSpec,
        g: &mut Gathered<'n>,
    ) {
        match &v.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{path}[{i}]");
                    if let Some(s) = d.string(item, &ipath) {
                        svc.depends_on
                            .insert(s.clone(), DependsCondition::ServiceStarted);
                        g.depends.push((s, item, ipath));
                    }
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let dep = k.scalar().unwrap_or_default().to_string();
                    let dpath = join(path, &dep);
                    let Some(fields) = d.map(v, &dpath) else {
                        continue;
                    };
                    let mut cond = DependsCondition::ServiceStarted;
                    for (field, fk, fv, fpath) in d.fields(fields, &dpath, &DEPENDS) {
                        match field {
                            "condition" => match d.string(fv, &fpath).as_deref() {
                                Some("service_started") => cond = DependsCondition::ServiceStarted,
                                Some("service_healthy") => cond = DependsCondition::ServiceHealthy,
                                Some("service_completed_successfully") => {
                                    cond = DependsCondition::ServiceCompletedSuccessfully
                                }
                                Some(other) => d.at(
                                    fv,
                                    &fpath,
                                    format!("invalid condition `{other}` {DEPENDS_CONDITIONS}"),
                                ),
                                None => {}
                            },
                            "required" => {
                                let required = d.bool(fv, &fpath);
                                if required == Some(false) {
                                    d.at(fv, &fpath, NOT_REQUIRED);
                                }
                            }
                            "restart" => d.at(fk, &fpath, "`restart` is not supported yet"),
                            _ => {}
                        }
                    }
                    svc.depends_on.insert(dep.clone(), cond);
                    g.depends.push((dep, k, dpath));
                }
            }
            _ => d.at(
                v,
                path,
                format!("expected a list or a map, found {}", v.type_name()),
            ),
        }
    }

    fn read_attachments(&self, d: &mut Diag, v: &Node, path: &str) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
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
                        out.push((name, Vec::new()));
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
                    let mut aliases = Vec::new();
                    if let Some(fields) = d.map(v, &npath) {
                        for (_f, _k, av, apath) in d.fields(fields, &npath, &ATTACHMENT) {
                            aliases = d
                                .string_list(av, &apath)
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(s, _)| s)
                                .collect();
                        }
                    }
                    out.push((name, aliases));
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

fn sorted_strings(d: &mut Diag, v: &Node, path: &str) -> Vec<String> {
    let mut out: Vec<String> = d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn read_long_port(d: &mut Diag, entries: &[(Node, Node)], path: &str) -> Option<Vec<PortBinding>> {
    let before = d.errors.len();
    let mut target = None;
    let mut published = None;
    let mut host_ip = String::new();
    let mut protocol = "tcp".to_string();
    for (field, _k, v, fpath) in d.fields(entries, path, &PORT) {
        match field {
            "target" => {
                target = d.int(v, &fpath).and_then(|n| match u16::try_from(n) {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        d.at(v, &fpath, "expected a port number (1-65535)");
                        None
                    }
                })
            }
            "published" => {
                if let Some(s) = d.string(v, &fpath) {
                    match port_range(&s) {
                        Ok((a, b)) if a == b => published = Some(a),
                        Ok(_) => d.at(
                            v,
                            &fpath,
                            "a published port range is not supported in the long syntax yet",
                        ),
                        Err(m) => d.at(v, &fpath, m),
                    }
                }
            }
            "host_ip" => host_ip = d.string(v, &fpath).unwrap_or_default(),
            "protocol" => match d.string(v, &fpath) {
                Some(p) if matches!(p.as_str(), "tcp" | "udp" | "sctp") => protocol = p,
                Some(p) => d.at(
                    v,
                    &fpath,
                    format!("invalid protocol `{p}` (expected tcp, udp or sctp)"),
                ),
                None => {}
            },
            "mode" => match d.string(v, &fpath).as_deref() {
                // Without a routing mesh both publish on the host that runs the replica.
                Some("host" | "ingress") | None => {}
                Some(m) => d.at(
                    v,
                    &fpath,
                    format!("invalid mode `{m}` (expected host or ingress)"),
                ),
            },
            _ => {}
        }
    }
    if d.errors.len() > before {
        return None;
    }
    let Some(target) = target else {
        if let Some((k, _)) = entries.first() {
            d.at(k, path, "missing `target`");
        }
        return None;
    };
    Some(vec![PortBinding {
        host_ip,
        host_port: published,
        container_port: target,
        protocol,
    }])
}

fn read_healthcheck(d: &mut Diag, v: &Node, path: &str) -> Option<Healthcheck> {
    let entries = d.map(v, path)?;
    let mut h = Healthcheck {
        test: Vec::new(),
        interval_ns: None,
        timeout_ns: None,
        retries: None,
        start_period_ns: None,
        start_interval_ns: None,
    };
    let mut disable = false;
    let mut test_node = None;
    for (field, _k, v, fpath) in d.fields(entries, path, &HEALTHCHECK) {
        match field {
            "test" => {
                test_node = Some((v, fpath.clone()));
                match &v.kind {
                    Kind::Seq(_) => {
                        let list: Vec<String> = d
                            .string_list(v, &fpath)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(s, _)| s)
                            .collect();
                        match list.first().map(String::as_str) {
                            Some("NONE" | "CMD" | "CMD-SHELL") => h.test = list,
                            _ => d.at(
                                v,
                                &fpath,
                                "a test list starts with `CMD`, `CMD-SHELL` or `NONE`",
                            ),
                        }
                    }
                    _ => {
                        if let Some(s) = d.string(v, &fpath) {
                            h.test = vec!["CMD-SHELL".into(), s];
                        }
                    }
                }
            }
            "interval" => h.interval_ns = duration_ns(d, v, &fpath),
            "timeout" => h.timeout_ns = duration_ns(d, v, &fpath),
            "start_period" => h.start_period_ns = duration_ns(d, v, &fpath),
            "start_interval" => h.start_interval_ns = duration_ns(d, v, &fpath),
            "retries" => h.retries = d.non_negative(v, &fpath).map(i64::from),
            "disable" => disable = d.bool(v, &fpath).unwrap_or(false),
            _ => {}
        }
    }
    if disable {
        if let Some((n, p)) = test_node {
            d.at(n, &p, "`test` and `disable: true` exclude each other");
        }
        h.test = vec!["NONE".into()];
    }
    Some(h)
}

fn read_extra_hosts(d: &mut Diag, v: &Node, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match &v.kind {
        Kind::Map(entries) => {
            for (k, v) in entries {
                let host = k.scalar().unwrap_or_default();
                let hpath = join(path, host);
                let ips = match &v.kind {
                    Kind::Seq(_) => d
                        .string_list(v, &hpath)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect(),
                    _ => d.string(v, &hpath).into_iter().collect::<Vec<_>>(),
                };
                for ip in ips {
                    out.push(format!("{host}:{ip}"));
                }
            }
        }
        _ => {
            for (i, (s, n)) in d
                .string_list(v, path)
                .unwrap_or_default()
                .into_iter()
                .enumerate()
            {
                // `host=ip` first: an IPv6 address has colons of its own.
                let split = s.split_once('=').or_else(|| s.split_once(':'));
                match split {
                    Some((h, ip)) if !h.is_empty() && !ip.is_empty() => {
                        out.push(format!("{h}:{ip}"))
                    }
                    _ => d.at(
                        n,
                        &format!("{path}[{i}]"),
                        format!("invalid extra host `{s}` (expected `host:ip`)"),
                    ),
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn read_ulimits(d: &mut Diag, v: &Node, path: &str) -> BTreeMap<String, Ulimit> {
    let mut out = BTreeMap::new();
    let Some(entries) = d.map(v, path) else {
        return out;
    };
    for (k, v) in entries {
        let name = k.scalar().unwrap_or_default().to_string();
        let upath = join(path, &name);
        let limit = match &v.kind {
            Kind::Map(fields) => {
                let mut soft = None;
                let mut hard = None;
                for (f, _k, fv, fpath) in d.fields(fields, &upath, &ULIMIT) {
                    match f {
                        "soft" => soft = d.int(fv, &fpath),
                        "hard" => hard = d.int(fv, &fpath),
                        _ => {}
                    }
                }
                match (soft, hard) {
                    (Some(soft), Some(hard)) => Some(Ulimit { soft, hard }),
                    _ => {
                        d.at(v, &upath, "expected both `soft` and `hard`");
                        None
                    }
                }
            }
            _ => d.int(v, &upath).map(|n| Ulimit { soft: n, hard: n }),
        };
        if let Some(l) = limit {
            out.insert(name, l);
        }
    }
    out
}

fn read_logging(d: &mut Diag, v: &Node, path: &str) -> Option<Logging> {
    let entries = d.map(v, path)?;
    // An empty driver means the engine's default driver.
    let mut l = Logging {
        driver: String::new(),
        options: BTreeMap::new(),
    };
    for (f, _k, fv, fpath) in d.fields(entries, path, &LOGGING) {
        match f {
            "driver" => l.driver = d.string(fv, &fpath).unwrap_or_default(),
            "options" => l.options = d.string_map(fv, &fpath, false).unwrap_or_default(),
            _ => {}
        }
    }
    Some(l)
}

/// Reads `deploy` into the service and container; gives the restart policy it sets, if any.
fn read_deploy(
    d: &mut Diag,
    v: &Node,
    path: &str,
    svc: &mut ServiceSpec,
    c: &mut ContainerSpec,
) -> Option<RestartPolicy> {
    let entries = d.map(v, path)?;
    let mut restart = None;
    let mut replicas_node = None;
    for (f, _k, fv, fpath) in d.fields(entries, path, &DEPLOY) {
        match f {
            "mode" => match d.string(fv, &fpath).as_deref() {
                Some("replicated") => svc.mode = DeployMode::Replicated,
                Some("global") => svc.mode = DeployMode::Global,
                Some(m) => d.at(
                    fv,
                    &fpath,
                    format!("invalid mode `{m}` (expected replicated or global)"),
                ),
                None => {}
            },
            "replicas" => {
                if let Some(n) = d.non_negative(fv, &fpath) {
                    svc.replicas = n;
                    replicas_node = Some((fv, fpath.clone()));
                }
            }
            "resources" => {
                let Some(res) = d.map(fv, &fpath) else {
                    continue;
                };
                for (rf, _rk, rv, rpath) in d.fields(res, &fpath, &RESOURCES) {
                    let Some(inner) = d.map(rv, &rpath) else {
                        continue;
                    };
                    let keys = if rf == "limits" {
                        &LIMITS
                    } else {
                        &RESERVATIONS
                    };
                    for (lf, _lk, lv, lpath) in d.fields(inner, &rpath, keys) {
                        match (rf, lf) {
                            ("limits", "cpus") => c.nano_cpus = nano_cpus(d, lv, &lpath),
                            ("limits", "memory") => {
                                c.memory_bytes = super::fleet::read_bytes(d, lv, &lpath)
                            }
                            ("limits", "pids") => c.pids_limit = d.int(lv, &lpath),
                            ("reservations", "cpus") => {
                                svc.reserve_nano_cpus = nano_cpus(d, lv, &lpath)
                            }
                            ("reservations", "memory") => {
                                let m = super::fleet::read_bytes(d, lv, &lpath);
                                c.memory_reservation_bytes = m;
                                svc.reserve_memory_bytes = m;
                            }
                            _ => {}
                        }
                    }
                }
            }
            "restart_policy" => {
                let Some(rp) = d.map(fv, &fpath) else {
                    continue;
                };
                let mut policy = RestartPolicy {
                    // Swarm's default condition is `any`.
                    name: RestartName::Always,
                    max_attempts: None,
                };
                for (pf, _pk, pv, ppath) in d.fields(rp, &fpath, &RESTART_POLICY) {
                    match pf {
                        "condition" => match d.string(pv, &ppath).as_deref() {
                            Some("none") => policy.name = RestartName::No,
                            Some("on-failure") => policy.name = RestartName::OnFailure,
                            Some("any") => policy.name = RestartName::Always,
                            Some(o) => d.at(
                                pv,
                                &ppath,
                                format!(
                                    "invalid condition `{o}` (expected none, on-failure or any)"
                                ),
                            ),
                            None => {}
                        },
                        "max_attempts" => {
                            policy.max_attempts = d.non_negative(pv, &ppath).map(i64::from)
                        }
                        _ => {}
                    }
                }
                if policy.name != RestartName::OnFailure {
                    policy.max_attempts = None;
                }
                restart = Some(policy);
            }
            "placement" => read_placement(d, fv, &fpath, &mut svc.placement),
            _ => {}
        }
    }
    if svc.mode == DeployMode::Global {
        if let Some((n, p)) = replicas_node {
            d.at(n, &p, "`replicas` cannot be used with `mode: global`");
        }
    }
    restart
}

fn read_placement(d: &mut Diag, v: &Node, path: &str, placement: &mut Placement) {
    let Some(entries) = d.map(v, path) else {
        return;
    };
    for (f, _k, fv, fpath) in d.fields(entries, path, &PLACEMENT) {
        match f {
            "constraints" => {
                for (i, (s, n)) in d
                    .string_list(fv, &fpath)
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    match parse_constraint(&s) {
                        Ok(c) => placement.constraints.push(c),
                        Err(m) => d.at(n, &format!("{fpath}[{i}]"), m),
                    }
                }
            }
            "preferences" => {
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
                    let Some(pe) = d.map(item, &ipath) else {
                        continue;
                    };
                    for (_pf, _pk, pv, ppath) in d.fields(pe, &ipath, &PREFERENCE) {
                        if let Some(s) = d.string(pv, &ppath) {
                            match s.strip_prefix("node.labels.") {
                                Some(label) if !label.is_empty() => {
                                    placement.spread.push(label.to_string())
                                }
                                _ => d.at(
                                    pv,
                                    &ppath,
                                    "only `spread: node.labels.<label>` is supported",
                                ),
                            }
                        }
                    }
                }
            }
            "max_replicas_per_node" => placement.max_replicas_per_node = d.non_negative(fv, &fpath),
            _ => {}
        }
    }
}

/// `node.hostname==x`, `node.labels.zone!=b`.
pub fn parse_constraint(s: &str) -> Result<Constraint, String> {
    let (attr, equal, value) = if let Some((a, v)) = s.split_once("==") {
        (a, true, v)
    } else if let Some((a, v)) = s.split_once("!=") {
        (a, false, v)
    } else {
        return Err(format!(
            "invalid constraint `{s}` (expected `attribute==value` or `attribute!=value`)"
        ));
    };
    let (attr, value) = (attr.trim(), value.trim());
    if value.is_empty() {
        return Err(format!("invalid constraint `{s}`: no value"));
    }
    let attribute = if attr == "node.hostname" {
        ConstraintAttribute::Hostname
    } else if let Some(label) = attr.strip_prefix("node.labels.").filter(|l| !l.is_empty()) {
        ConstraintAttribute::Label(label.to_string())
    } else {
        return Err(format!(
            "constraints on `{attr}` are not supported yet: use `node.hostname` or `node.labels.<label>`"
        ));
    };
    Ok(Constraint {
        attribute,
        equal,
        value: value.to_string(),
    })
}
