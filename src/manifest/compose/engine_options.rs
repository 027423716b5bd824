//! The service keys that tell the engine how to run the container and need no file of their
//! own: `expose`, Compose's older resource keys (`mem_limit`, `memswap_limit`,
//! `mem_reservation`, `cpus`, `cpu_shares`), `security_opt`, `devices`, `ipc`, `pid`, `runtime`
//! `pull_policy`, `container_name`, `network_mode`, `platform` and `gpus` (whose entries are
//! read as `deploy.resources.reservations.devices` are, in `deploy`).
//!
//! Reads only the nodes handed in; no I/O. The older resource keys mean the same as
//! `deploy.resources`, so they are held in [`LegacyResources`] until `deploy` is read too, and
//! land in the same fields: a file that writes both must have them agree, or nobody could tell
//! which one the container runs with.

use super::deploy::{memory, nano_cpus, read_device_requests};
use super::ports::port_range;
use crate::manifest::fleet::read_bytes;
use crate::manifest::typed::Diag;
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::{ContainerSpec, DeviceMapping, DeviceRequest, PullPolicy, ServiceSpec};

/// The most ports one `expose` range may name: `1-65535` would be a typo, not a wish.
const MAX_EXPOSE_RANGE: u32 = 1024;

/// `expose`: `80`, `"8000-8002"`, `"53/udp"`, each as the engine keys it (`80/tcp`), sorted.
pub(super) fn read_expose(d: &mut Diag, v: &Node, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (s, n)) in d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let ipath = format!("{path}[{i}]");
        let (ports, proto) = s.split_once('/').unwrap_or((s.as_str(), "tcp"));
        if !matches!(proto, "tcp" | "udp" | "sctp") {
            d.at(
                n,
                &ipath,
                format!("invalid protocol `{proto}` in `{s}` (expected tcp, udp or sctp)"),
            );
            continue;
        }
        match port_range(ports) {
            Ok((a, b)) if u32::from(b) - u32::from(a) >= MAX_EXPOSE_RANGE => d.at(
                n,
                &ipath,
                format!("the range `{ports}` exposes more than {MAX_EXPOSE_RANGE} ports"),
            ),
            Ok((a, b)) => out.extend((a..=b).map(|p| format!("{p}/{proto}"))),
            Err(m) => d.at(
                n,
                &ipath,
                format!("{m} in `expose` (expected a container port)"),
            ),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `security_opt`, sorted: the engine applies each by its own kind, so order means nothing.
pub(super) fn read_security_opt(d: &mut Diag, v: &Node, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (s, n)) in d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let ipath = format!("{path}[{i}]");
        // Both `kind=value` and the older `kind:value` are the engine's.
        let (kind, value) = match s.find(['=', ':']) {
            Some(at) => (&s[..at], Some(&s[at + 1..])),
            None => (s.as_str(), None),
        };
        let problem = match (kind, value) {
            ("no-new-privileges", None | Some("true" | "false")) => None,
            ("no-new-privileges", Some(_)) => Some("expected `no-new-privileges:true` or `:false`"),
            // The engine takes a seccomp profile's JSON, not its path: Compose reads the file
            // on the machine that runs it, which for Convoy is not the host.
            ("seccomp", Some("unconfined")) => None,
            ("seccomp", _) => Some(
                "a seccomp profile file is not supported yet (it needs files from the \
                 repository shipped to the hosts); only `seccomp=unconfined` is",
            ),
            ("apparmor" | "label", Some(v)) if !v.is_empty() => None,
            ("systempaths" | "writable-cgroups", Some(_)) => None,
            _ => Some(
                "expected `no-new-privileges`, `seccomp=unconfined`, `apparmor=<profile>`, \
                 `label=<option>`, `systempaths=unconfined` or `writable-cgroups=<bool>`",
            ),
        };
        match problem {
            Some(why) => d.at(n, &ipath, format!("invalid security option `{s}`: {why}")),
            None => out.push(s),
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `devices`, short syntax: `/dev/x`, `/dev/x:/dev/y`, `/dev/x:/dev/y:rwm`, sorted.
pub(super) fn read_devices(d: &mut Diag, v: &Node, path: &str) -> Vec<DeviceMapping> {
    let mut out: Vec<DeviceMapping> = Vec::new();
    for (i, (s, n)) in d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let ipath = format!("{path}[{i}]");
        match parse_device(&s) {
            Ok(dev) if out.iter().any(|o| o.container == dev.container) => d.at(
                n,
                &ipath,
                format!("`{}` is mapped twice in the container", dev.container),
            ),
            Ok(dev) => out.push(dev),
            Err(m) => d.at(n, &ipath, m),
        }
    }
    out.sort();
    out
}

fn parse_device(s: &str) -> Result<DeviceMapping, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "invalid device `{s}`: CDI device names are not supported yet; expected \
             `/dev/<host>[:/dev/<container>[:rwm]]`"
        ));
    }
    let parts: Vec<&str> = s.split(':').collect();
    let is_perms = |p: &str| {
        !p.is_empty() && p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) && {
            let mut seen: Vec<char> = p.chars().collect();
            seen.dedup();
            seen.len() == p.len()
        }
    };
    let (host, container, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => {
            return Err(format!(
                "invalid device `{s}` (expected `host[:container[:rwm]]`)"
            ))
        }
    };
    if !container.starts_with('/') {
        return Err(format!(
            "invalid device `{s}`: the container path `{container}` is not absolute"
        ));
    }
    if !is_perms(perms) {
        return Err(format!(
            "invalid device `{s}`: permissions `{perms}` are not some of r, w and m"
        ));
    }
    // The engine keeps what it is given: one spelling (`rwm` order) for one meaning.
    let permissions: String = ['r', 'w', 'm']
        .into_iter()
        .filter(|c| perms.contains(*c))
        .collect();
    Ok(DeviceMapping {
        host: host.to_string(),
        container: container.to_string(),
        permissions,
    })
}

/// `ipc`: the namespaces the engine makes itself; sharing another's is not supported yet.
pub(super) fn read_ipc(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    match s.as_str() {
        "host" | "private" | "shareable" | "none" => Some(s),
        _ if s.starts_with("service:") || s.starts_with("container:") => {
            d.at(
                v,
                path,
                format!("`ipc: {s}` is not supported yet: the two services would have to be placed together"),
            );
            None
        }
        _ => {
            d.at(
                v,
                path,
                format!("invalid ipc mode `{s}` (expected host, private, shareable or none)"),
            );
            None
        }
    }
}

/// `pid`: `host` (the engine's own namespace per container is the default, written nowhere).
pub(super) fn read_pid(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    match s.as_str() {
        "host" => Some(s),
        _ if s.starts_with("service:") || s.starts_with("container:") => {
            d.at(
                v,
                path,
                format!("`pid: {s}` is not supported yet: the two services would have to be placed together"),
            );
            None
        }
        _ => {
            d.at(v, path, format!("invalid pid mode `{s}` (expected host)"));
            None
        }
    }
}

/// `runtime`: a name the engine knows (checked by the engine at create: hosts differ).
pub(super) fn read_runtime(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        d.at(v, path, format!("invalid runtime name `{s}`"));
        return None;
    }
    Some(s)
}

/// `pull_policy`: `missing` (and its old spelling `if_not_present`), `always` and `never` are
/// honoured by the executor; `build` waits for `build:`, and the periodic ones (`daily`,
/// `weekly`) for a record of when each host last pulled.
pub(super) fn read_pull_policy(d: &mut Diag, v: &Node, path: &str) -> Option<PullPolicy> {
    let s = d.string(v, path)?;
    let why = match s.as_str() {
        "missing" | "if_not_present" => return Some(PullPolicy::Missing),
        "always" => return Some(PullPolicy::Always),
        "never" => return Some(PullPolicy::Never),
        "build" => "`pull_policy: build` is not supported yet: build is not supported yet".into(),
        "daily" | "weekly" => format!(
            "`pull_policy: {s}` is not supported yet: use `always` or `missing` (`apply --pull` \
             pulls every image again)"
        ),
        _ if s.starts_with("every_") => format!(
            "`pull_policy: {s}` is not supported yet: use `always` or `missing` (`apply --pull` \
             pulls every image again)"
        ),
        _ => format!("invalid pull policy `{s}` (expected always, missing, never or build)"),
    };
    d.at(v, path, why);
    None
}

/// `container_name`: a name the engine accepts (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`, as Docker checks
/// it); a leading `/`, which the engine strips, is stripped too.
pub(super) fn read_container_name(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    let name = s.strip_prefix('/').unwrap_or(&s);
    let mut chars = name.chars();
    let valid = name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        d.at(
            v,
            path,
            format!(
                "invalid container name `{s}`: Docker names start with a letter or digit and go \
                 on with letters, digits, `_`, `.` or `-` (two characters at least)"
            ),
        );
        return None;
    }
    Some(name.to_string())
}

/// `network_mode`: `host`, `none`, or another container's namespace: `service:<name>` (a
/// service of the stack, placed beside it by `share`) or `container:<name>` (a container
/// outside Convoy).
pub(super) fn read_network_mode(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    match s.as_str() {
        "host" | "none" => Some(s),
        _ if s.starts_with("service:") || s.starts_with("container:") => {
            let (_, name) = s.split_once(':').unwrap_or_default();
            if name.is_empty() {
                d.at(v, path, format!("`network_mode: {s}` names no source"));
                None
            } else {
                Some(s)
            }
        }
        // `bridge` and the stack's networks are what `networks` is for.
        _ => {
            d.at(
                v,
                path,
                format!(
                    "invalid network mode `{s}` (expected host, none, service:<name> or \
                     container:<name>; attach networks with `networks`)"
                ),
            );
            None
        }
    }
}

/// `platform`: `os/arch` or `os/arch/variant` (`linux/amd64`, `linux/arm64/v8`), lower case as
/// registries name them.
pub(super) fn read_platform(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    let parts: Vec<&str> = s.split('/').collect();
    let valid = (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !valid {
        d.at(
            v,
            path,
            format!(
                "invalid platform `{s}` (expected os/arch or os/arch/variant, such as linux/amd64)"
            ),
        );
        return None;
    }
    Some(s)
}

/// `gpus`: `all`, or a list of requests as in `deploy.resources.reservations.devices`, each
/// with the `gpu` capability added, as Compose does.
pub(super) fn read_gpus(d: &mut Diag, v: &Node, path: &str) -> Vec<DeviceRequest> {
    if let Kind::Scalar { .. } = &v.kind {
        return match d.string(v, path).as_deref() {
            Some("all") => vec![DeviceRequest {
                driver: String::new(),
                count: -1,
                device_ids: Vec::new(),
                capabilities: vec!["gpu".into()],
                options: Default::default(),
            }],
            Some(o) => {
                d.at(
                    v,
                    path,
                    format!("invalid gpus `{o}` (expected `all` or a list)"),
                );
                Vec::new()
            }
            None => Vec::new(),
        };
    }
    read_device_requests(d, v, path, true)
}

/// `cpu_shares`: the engine's relative weight; the kernel's bounds.
pub(super) fn read_cpu_shares(d: &mut Diag, v: &Node, path: &str) -> Option<i64> {
    let n = d.int(v, path)?;
    if !(2..=262_144).contains(&n) {
        d.at(
            v,
            path,
            format!("cpu_shares {n} is out of range (2 to 262144; 1024 is the default)"),
        );
        return None;
    }
    Some(n)
}

/// One older resource key as written: its value and where.
struct Held<'n> {
    value: i64,
    node: &'n Node,
    path: String,
}

/// Compose's older resource keys, held until `deploy` is read too.
#[derive(Default)]
pub(super) struct LegacyResources<'n> {
    mem_limit: Option<Held<'n>>,
    mem_reservation: Option<Held<'n>>,
    cpus: Option<Held<'n>>,
    memswap_limit: Option<Held<'n>>,
}

impl<'n> LegacyResources<'n> {
    /// Reads `field` (one of the four keys this holds).
    pub(super) fn read(&mut self, d: &mut Diag, field: &str, v: &'n Node, path: &str) {
        let value = match field {
            "mem_limit" => memory(d, v, path, "limit"),
            "mem_reservation" => memory(d, v, path, "reservation"),
            "cpus" => match d.number(v, path) {
                // 0 is "no limit" in Compose's older form.
                Some(0.0) => Some(0),
                Some(_) => nano_cpus(d, v, path),
                None => None,
            },
            // -1: unlimited swap.
            "memswap_limit" if v.as_int() == Some(-1) || v.scalar() == Some("-1") => Some(-1),
            "memswap_limit" => read_bytes(d, v, path),
            _ => return,
        };
        let Some(value) = value else { return };
        let held = Some(Held {
            value,
            node: v,
            path: path.to_string(),
        });
        match field {
            "mem_limit" => self.mem_limit = held,
            "mem_reservation" => self.mem_reservation = held,
            "cpus" => self.cpus = held,
            _ => self.memswap_limit = held,
        }
    }

    /// Puts the values into the fields `deploy.resources` fills; a value both forms give
    /// differently is an error at the older key.
    pub(super) fn apply(self, d: &mut Diag, c: &mut ContainerSpec, svc: &mut ServiceSpec) {
        let merge =
            |d: &mut Diag, held: &Option<Held<'_>>, field: &mut Option<i64>, deploy: &str| {
                let Some(h) = held else { return };
                // Zero is "none" in both forms.
                let wanted = Some(h.value).filter(|n| *n > 0);
                match field.filter(|n| *n > 0) {
                    Some(current) if Some(current) != wanted => d.at(
                        h.node,
                        &h.path,
                        format!(
                            "`{}` disagrees with `{deploy}`: write one of them",
                            h.path.rsplit('.').next().unwrap_or_default()
                        ),
                    ),
                    Some(_) => {}
                    None => *field = wanted,
                }
            };
        merge(
            d,
            &self.mem_limit,
            &mut c.memory_bytes,
            "deploy.resources.limits.memory",
        );
        merge(
            d,
            &self.cpus,
            &mut c.nano_cpus,
            "deploy.resources.limits.cpus",
        );
        merge(
            d,
            &self.mem_reservation,
            &mut c.memory_reservation_bytes,
            "deploy.resources.reservations.memory",
        );
        // The reservation also places the service, as `deploy`'s does.
        svc.reserve_memory_bytes = c.memory_reservation_bytes.or(svc.reserve_memory_bytes);
        // `deploy` checked its own pair; a pair that mixes the forms is checked here.
        if let (Some(limit), Some(reservation)) = (
            c.memory_bytes.filter(|m| *m > 0),
            c.memory_reservation_bytes.filter(|m| *m > 0),
        ) {
            if reservation > limit && (self.mem_limit.is_some() || self.mem_reservation.is_some()) {
                let h = self
                    .mem_reservation
                    .as_ref()
                    .or(self.mem_limit.as_ref())
                    .expect("one of them is written");
                d.at(
                    h.node,
                    &h.path,
                    "the memory reservation is above the memory limit",
                );
            }
        }
        if let Some(h) = &self.memswap_limit {
            // The engine refuses swap without a memory limit, and a total below the memory.
            match c.memory_bytes.filter(|m| *m > 0) {
                None => d.at(
                    h.node,
                    &h.path,
                    "`memswap_limit` needs a memory limit (`mem_limit` or \
                     `deploy.resources.limits.memory`)",
                ),
                Some(limit) if h.value != -1 && h.value < limit => d.at(
                    h.node,
                    &h.path,
                    "`memswap_limit` is memory plus swap: it cannot be below the memory limit \
                     (-1 means unlimited swap)",
                ),
                Some(_) => c.memory_swap_bytes = Some(h.value),
            }
        }
    }
}
