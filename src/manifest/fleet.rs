//! The fleet file `convoy.yaml`: the fleet id, the hosts (address, labels, capacity, SSH
//! settings), which stacks to read, and fleet-wide settings.
//!
//! It is read as written: no variable interpolation (explicit is simpler to review); only `~/`
//! in SSH paths is expanded with the `HOME` of the environment map handed in. No I/O.
//!
//! Two hosts must be two engines: an engine written twice (the same socket, or the same SSH
//! machine and port with the same socket on it) would have Convoy move replicas between two
//! names of one engine. SSH values go into a generated ssh config, so one that could add an
//! option of its own (a control character, a quote) is refused here, where it is written.

use std::collections::{BTreeMap, BTreeSet};
// Address types only: `core` has no I/O ("the planning core is pure"); `std::net` re-exports them
// next to sockets, which the core may not name.
use ::core::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use super::typed::{Diag, Keys};
use super::values::{parse_bytes, parse_duration_ns};
use super::yaml::{Kind, Node};
use crate::model::spec::{
    Capacity, FleetSettings, HostAddress, HostSpec, ImagePolicy, SshSettings,
};

pub const FLEET_FILE: &str = "convoy.yaml";
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The most deploy history entries `history_limit` may keep per fleet.
const MAX_HISTORY_LIMIT: u32 = 1_000_000;

const TOP: Keys = Keys {
    supported: &[
        "fleet",
        "hosts",
        "stacks",
        "images",
        "ssh",
        "host_down_after",
        "dependency_timeout",
        "connect_timeout",
        "prune_guard",
        "profiles",
        "builder",
        "files_dir",
        "secrets_dir",
        "secrets_on_disk",
        "history_limit",
        "adopt",
        "sync_windows",
        "notifications",
        "proxy",
    ],
    unsupported: &[],
    extensions: false,
};
const HOST: Keys = Keys {
    supported: &[
        "address",
        "docker_socket",
        "labels",
        "capacity",
        "images",
        "ssh",
        "cordon",
        "drain",
        "files_dir",
        "secrets_dir",
        "secrets_on_disk",
        "internal_address",
    ],
    unsupported: &[],
    extensions: false,
};
const CAPACITY: Keys = Keys {
    supported: &["cpus", "memory"],
    unsupported: &[],
    extensions: false,
};
const SSH: Keys = Keys {
    supported: &["user", "identity_file", "known_hosts", "config_file"],
    unsupported: &[],
    extensions: false,
};

/// What `convoy.yaml` says.
pub struct Fleet {
    pub fleet: String,
    pub hosts: BTreeMap<String, HostSpec>,
    /// `stacks:` as written (None: read every folder under `stacks/`), with each name's node.
    pub stacks: Option<Vec<(String, Node)>>,
    pub settings: FleetSettings,
    /// `profiles:`: the Compose profiles enabled for each stack, by stack name, with the node
    /// of each stack name (a name no stack has is an error once the stacks are read).
    pub profiles: BTreeMap<String, BTreeSet<String>>,
    pub profile_stacks: Vec<(String, Node)>,
    /// `adopt:` entries (also in `settings.adopted`), each with the node of its stack name,
    /// checked against the stacks once they are read.
    pub adopt_stacks: Vec<(crate::model::adopt::Adoption, Node)>,
    /// The stack names `sync_windows:` lists, checked against the stacks once they are read.
    pub window_stacks: Vec<super::sync_windows::WindowStack>,
}

/// `[a-zA-Z0-9_.-]+`: fleet ids and host names end up in labels and file names.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// SSH settings as written, each still unset when absent, so a host can override key by key.
#[derive(Default, Clone)]
struct SshPartial {
    user: Option<String>,
    identity_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    config_file: Option<PathBuf>,
}

pub fn read(d: &mut Diag, root: &Node, env: &BTreeMap<String, String>) -> Option<Fleet> {
    let entries = match &root.kind {
        Kind::Map(entries) => entries,
        _ => {
            if root.is_null() {
                d.file_level("the fleet file is empty; it needs at least `fleet: <id>`");
            } else {
                d.at(root, "", "expected a map with `fleet:` and `hosts:`");
            }
            return None;
        }
    };
    let before = d.errors.len();
    let mut fleet = None;
    let mut hosts_node = None;
    let mut stacks = None;
    let mut images = ImagePolicy::default();
    let mut ssh = SshPartial::default();
    let mut settings = FleetSettings::default();
    let mut profiles = BTreeMap::new();
    let mut profile_stacks = Vec::new();
    let mut builder: Option<(&Node, String)> = None;
    let mut fleet_files = crate::model::files::HostFiles::default();
    let mut adopted = Vec::new();
    let mut window_stacks = Vec::new();
    for (name, _k, v, path) in d.fields(entries, "", &TOP) {
        match name {
            "sync_windows" => {
                (settings.sync_windows, window_stacks) = super::sync_windows::read(d, v, &path)
            }
            "adopt" => adopted = super::adopt::read(d, v, &path),
            "notifications" => settings.notifications = super::notify::read(d, v, &path),
            "proxy" => settings.proxy = super::proxy::read_settings(d, v, &path),
            "files_dir" | "secrets_dir" | "secrets_on_disk" => {
                read_files_setting(d, name, v, &path, &mut fleet_files)
            }
            "fleet" => {
                if let Some(s) = d.string(v, &path) {
                    if is_plain_name(&s) {
                        fleet = Some(s);
                    } else {
                        d.at(
                            v,
                            &path,
                            "a fleet id is a non-empty string of letters, digits, `_`, `.` and `-`",
                        );
                    }
                }
            }
            "hosts" => hosts_node = Some((v, path)),
            "stacks" => {
                if let Some(list) = d.string_list(v, &path) {
                    let mut names: Vec<(String, Node)> = Vec::new();
                    for (i, (s, n)) in list.into_iter().enumerate() {
                        if names.iter().any(|(o, _)| *o == s) {
                            d.at(
                                n,
                                &format!("{path}[{i}]"),
                                format!("stack `{s}` is listed twice"),
                            );
                        } else {
                            names.push((s, n.clone()));
                        }
                    }
                    stacks = Some(names);
                }
            }
            "images" => images = read_images(d, v, &path).unwrap_or_default(),
            "ssh" => ssh = read_ssh(d, v, &path, env, SshPartial::default()),
            "host_down_after" => {
                if let Some(s) = read_secs(d, v, &path) {
                    settings.host_down_after_secs = s;
                }
            }
            "dependency_timeout" => {
                if let Some(s) = read_secs(d, v, &path) {
                    settings.dependency_timeout_secs = s;
                }
            }
            "prune_guard" => {
                if let Some(s) = d.string(v, &path) {
                    match parse_prune_guard(&s) {
                        Ok(p) => settings.prune_guard_percent = p,
                        Err(m) => d.at(v, &path, m),
                    }
                }
            }
            "profiles" => {
                (profiles, profile_stacks) = read_profiles(d, v, &path);
            }
            "builder" => {
                if let Some(s) = d.string(v, &path) {
                    settings.builder = Some(s.clone());
                    builder = Some((v, s));
                }
            }
            "history_limit" => {
                if let Some(n) = d.int(v, &path) {
                    match u32::try_from(n) {
                        Ok(n) if (1..=MAX_HISTORY_LIMIT).contains(&n) => settings.history_limit = n,
                        _ => d.at(
                            v,
                            &path,
                            format!("expected a number of entries from 1 to {MAX_HISTORY_LIMIT}"),
                        ),
                    }
                }
            }
            "connect_timeout" => {
                if let Some(s) = read_secs(d, v, &path) {
                    if s == 0 {
                        d.at(v, "connect_timeout", "must be at least 1s");
                    } else {
                        settings.connect_timeout_secs = s;
                    }
                }
            }
            _ => {}
        }
    }
    if fleet.is_none() && !entries.iter().any(|(k, _)| k.scalar() == Some("fleet")) {
        d.at(root, "fleet", "missing `fleet: <id>`");
    }

    let mut hosts = BTreeMap::new();
    // Engine identity → the first host written with it.
    let mut engines: BTreeMap<String, String> = BTreeMap::new();
    let hosts_at = hosts_node.as_ref().map(|(n, p)| (*n, p.clone()));
    match hosts_node {
        Some((node, path)) => {
            if let Some(entries) = d.map(node, &path) {
                if entries.is_empty() {
                    d.at(
                        node,
                        &path,
                        "no hosts listed; leave `hosts:` out to use the local engine",
                    );
                }
                for (k, v) in entries {
                    let name = k.scalar().unwrap_or_default().to_string();
                    let hpath = format!("{path}.{name}");
                    if !is_plain_name(&name) {
                        d.at(
                            k,
                            &hpath,
                            "a host name is letters, digits, `_`, `.` and `-`",
                        );
                        continue;
                    }
                    if let Some(h) =
                        read_host(d, &name, k, v, &hpath, env, images, &ssh, &fleet_files)
                    {
                        let engine = engine_identity(&h);
                        if let Some(first) = engines.get(&engine) {
                            let at = entry(v, "address").unwrap_or(k);
                            d.at(
                                at,
                                &format!("{hpath}.address"),
                                format!(
                                    "host `{name}` reaches the same engine as host `{first}` \
                                     ({engine}): one engine is one host"
                                ),
                            );
                        } else {
                            engines.insert(engine, name.clone());
                        }
                        hosts.insert(name, h);
                    }
                }
            }
        }
        None => {
            // No `hosts:`: the engine this process would talk to anyway.
            let path = env
                .get("DOCKER_HOST")
                .and_then(|h| h.strip_prefix("unix://"))
                .filter(|p| p.starts_with('/'))
                .unwrap_or(DEFAULT_SOCKET)
                .to_string();
            hosts.insert(
                "local".to_string(),
                HostSpec {
                    name: "local".into(),
                    address: HostAddress::Unix {
                        path: PathBuf::from(&path),
                    },
                    docker_socket: path,
                    labels: BTreeMap::new(),
                    capacity: None,
                    images,
                    ssh: finish_ssh(ssh.clone()),
                    cordon: false,
                    drain: false,
                    files: fleet_files.clone(),
                    internal_address: None,
                },
            );
        }
    }
    super::proxy::settle_internal_addresses(
        d,
        &mut hosts,
        hosts_at.as_ref().map(|(n, p)| (*n, p.as_str())),
        settings.proxy.is_some(),
    );
    // `builder:` names a host of the fleet, or `local` (the engine of the machine Convoy runs on).
    if let Some((v, name)) = builder {
        if name != "local" && !hosts.contains_key(&name) {
            let known: Vec<&str> = hosts.keys().map(String::as_str).collect();
            d.at(
                v,
                "builder",
                format!(
                    "unknown host `{name}` (expected `local` or one of the hosts: {})",
                    known.join(", ")
                ),
            );
        }
    }
    super::adopt::check_hosts(d, &adopted, &hosts);
    settings.adopted = adopted.iter().map(|(a, _, _)| a.clone()).collect();
    let adopt_stacks = adopted.into_iter().map(|(a, _, s)| (a, s)).collect();
    if d.errors.len() > before {
        return None;
    }
    Some(Fleet {
        fleet: fleet?,
        hosts,
        stacks,
        settings,
        profiles,
        profile_stacks,
        adopt_stacks,
        window_stacks,
    })
}

/// The enabled profiles by stack, and each stack name's node.
type Profiles = (BTreeMap<String, BTreeSet<String>>, Vec<(String, Node)>);

/// `profiles: {<stack>: [names]}`: which Compose profiles each stack runs, as
/// `COMPOSE_PROFILES` says for Compose. Off unless listed here.
fn read_profiles(d: &mut Diag, v: &Node, path: &str) -> Profiles {
    let mut out = BTreeMap::new();
    let mut nodes = Vec::new();
    for (k, list) in d.map(v, path).unwrap_or_default() {
        let stack = k.scalar().unwrap_or_default().to_string();
        let spath = format!("{path}.{stack}");
        let mut names = BTreeSet::new();
        let items = match &list.kind {
            _ if list.is_null() => Vec::new(),
            _ => d.string_list(list, &spath).unwrap_or_default(),
        };
        for (i, (name, n)) in items.into_iter().enumerate() {
            if crate::manifest::compose::is_profile_name(&name) {
                names.insert(name);
            } else {
                d.at(
                    n,
                    &format!("{spath}[{i}]"),
                    "a profile name is letters, digits, `_`, `.` and `-`, starting with a letter \
                     or digit (at least two characters)",
                );
            }
        }
        out.insert(stack.clone(), names);
        nodes.push((stack, k.clone()));
    }
    (out, nodes)
}

fn read_images(d: &mut Diag, v: &Node, path: &str) -> Option<ImagePolicy> {
    match d.string(v, path)?.as_str() {
        "pull" => Some(ImagePolicy::Pull),
        "push" => Some(ImagePolicy::Push),
        _ => {
            d.at(v, path, "expected `pull` or `push`");
            None
        }
    }
}

/// `prune_guard: 50%` (the share of running replicas a commit may remove before the daemon
/// holds it), or `off`.
fn parse_prune_guard(s: &str) -> Result<Option<u8>, String> {
    let t = s.trim();
    if matches!(t, "off" | "false" | "none") {
        return Ok(None);
    }
    let n = t.strip_suffix('%').unwrap_or(t).trim();
    match n.parse::<u8>() {
        Ok(p) if (1..=100).contains(&p) => Ok(Some(p)),
        _ => Err(format!(
            "expected a percentage from 1% to 100% (the share of running replicas a commit may remove), or `off`; got `{t}`"
        )),
    }
}

fn read_secs(d: &mut Diag, v: &Node, path: &str) -> Option<u64> {
    let s = d.string(v, path)?;
    match parse_duration_ns(&s) {
        Ok(ns) if ns > 0 => Some((ns as u64).div_ceil(1_000_000_000)),
        Ok(_) => {
            d.at(v, path, "expected a positive duration");
            None
        }
        Err(m) => {
            d.at(v, path, m);
            None
        }
    }
}

fn read_ssh(
    d: &mut Diag,
    v: &Node,
    path: &str,
    env: &BTreeMap<String, String>,
    base: SshPartial,
) -> SshPartial {
    let mut out = base;
    let Some(entries) = d.map(v, path) else {
        return out;
    };
    for (name, _k, v, kpath) in d.fields(entries, path, &SSH) {
        let Some(s) = d.string(v, &kpath) else {
            continue;
        };
        if let Some(problem) = ssh_value_problem(&s) {
            let what = match name {
                "user" => "an ssh user",
                "identity_file" => "an identity file path",
                "known_hosts" => "a known hosts file path",
                _ => "an ssh config file path",
            };
            d.at(v, &kpath, format!("{what} {problem}"));
            continue;
        }
        if name == "user" {
            out.user = Some(s);
            continue;
        }
        let p = match s.strip_prefix("~/") {
            Some(rest) => match env.get("HOME") {
                Some(home) => PathBuf::from(home).join(rest),
                None => {
                    d.at(v, &kpath, "cannot expand `~/`: HOME is not set");
                    continue;
                }
            },
            None => PathBuf::from(s),
        };
        match name {
            "identity_file" => out.identity_file = Some(p),
            "known_hosts" => out.known_hosts = Some(p),
            "config_file" => out.config_file = Some(p),
            _ => {}
        }
    }
    out
}

fn finish_ssh(p: SshPartial) -> SshSettings {
    SshSettings {
        user: p.user,
        identity_file: p.identity_file,
        known_hosts: p.known_hosts,
        config_file: p.config_file,
    }
}

/// `unix:///path` or `ssh://[user@]host[:port]`.
pub fn parse_address(s: &str) -> Result<HostAddress, String> {
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err(
                "a unix address needs an absolute path: `unix:///var/run/docker.sock`".into(),
            );
        }
        return Ok(HostAddress::Unix {
            path: PathBuf::from(path),
        });
    }
    if let Some(rest) = s.strip_prefix("ssh://") {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err("empty user in ssh address".into()),
            None => (None, rest),
        };
        if let Some(problem) = user.as_deref().and_then(ssh_value_problem) {
            return Err(format!("the user of an ssh address {problem}"));
        }
        // `[::1]:22` keeps its brackets off the host; a bare IPv6 address has no port.
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            match inner.split_once(']') {
                Some((h, "")) => (h.to_string(), None),
                Some((h, p)) => match p.strip_prefix(':') {
                    Some(p) => (h.to_string(), Some(p)),
                    None => return Err("invalid ssh address".into()),
                },
                None => return Err("invalid ssh address: unclosed `[`".into()),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
            return Err("invalid ssh address: expected `ssh://[user@]host[:port]`".into());
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err("invalid ssh port".into()),
            },
            None => None,
        };
        return Ok(HostAddress::Ssh { user, host, port });
    }
    Err("expected `unix:///path/docker.sock` or `ssh://[user@]host[:port]`".into())
}

#[allow(clippy::too_many_arguments)]
fn read_host(
    d: &mut Diag,
    name: &str,
    key: &Node,
    v: &Node,
    path: &str,
    env: &BTreeMap<String, String>,
    fleet_images: ImagePolicy,
    fleet_ssh: &SshPartial,
    fleet_files: &crate::model::files::HostFiles,
) -> Option<HostSpec> {
    let entries = d.map(v, path)?;
    let before = d.errors.len();
    let mut address = None;
    let mut host = HostSpec {
        name: name.to_string(),
        address: HostAddress::Unix {
            path: PathBuf::from(DEFAULT_SOCKET),
        },
        docker_socket: DEFAULT_SOCKET.to_string(),
        labels: BTreeMap::new(),
        capacity: None,
        images: fleet_images,
        ssh: SshSettings::default(),
        cordon: false,
        drain: false,
        files: Default::default(),
        internal_address: None,
    };
    host.files = fleet_files.clone();
    let mut ssh = fleet_ssh.clone();
    for (field, _k, v, kpath) in d.fields(entries, path, &HOST) {
        match field {
            "address" => {
                if let Some(s) = d.string(v, &kpath) {
                    match parse_address(&s) {
                        Ok(a) => address = Some(a),
                        Err(m) => d.at(v, &kpath, m),
                    }
                }
            }
            "docker_socket" => {
                if let Some(s) = d.string(v, &kpath) {
                    if !s.starts_with('/') {
                        d.at(v, &kpath, "expected an absolute path");
                    } else if let Some(problem) = ssh_value_problem(&s) {
                        d.at(v, &kpath, format!("a docker socket path {problem}"));
                    } else {
                        host.docker_socket = s;
                    }
                }
            }
            "labels" => {
                if let Some(m) = d.string_map(v, &kpath, false) {
                    host.labels = m;
                }
            }
            "capacity" => host.capacity = read_capacity(d, v, &kpath),
            "images" => {
                if let Some(i) = read_images(d, v, &kpath) {
                    host.images = i;
                }
            }
            "ssh" => ssh = read_ssh(d, v, &kpath, env, ssh),
            "cordon" => host.cordon = d.bool(v, &kpath).unwrap_or(false),
            "drain" => host.drain = d.bool(v, &kpath).unwrap_or(false),
            "files_dir" | "secrets_dir" | "secrets_on_disk" => {
                read_files_setting(d, field, v, &kpath, &mut host.files)
            }
            "internal_address" => {
                host.internal_address = super::proxy::read_internal_address(d, v, &kpath)
            }
            _ => {}
        }
    }
    let socket_set = entries
        .iter()
        .any(|(k, _)| k.scalar() == Some("docker_socket"));
    match address {
        Some(a) => {
            // A local engine's socket is its address; keep the two in agreement.
            if let (HostAddress::Unix { path }, false) = (&a, socket_set) {
                host.docker_socket = path.to_string_lossy().into_owned();
            }
            host.address = a;
        }
        None if !entries.iter().any(|(k, _)| k.scalar() == Some("address")) => {
            d.at(
                key,
                path,
                "missing `address` (`unix:///...` or `ssh://host`)",
            );
        }
        None => {}
    }
    host.ssh = finish_ssh(ssh);
    (d.errors.len() == before).then_some(host)
}

/// `files_dir`, `secrets_dir` (absolute paths, no character a shell or ssh would read) and
/// `secrets_on_disk`, fleet-wide or per host.
fn read_files_setting(
    d: &mut Diag,
    key: &str,
    v: &Node,
    path: &str,
    files: &mut crate::model::files::HostFiles,
) {
    if key == "secrets_on_disk" {
        if let Some(b) = d.bool(v, path) {
            files.secrets_on_disk = b;
        }
        return;
    }
    let Some(s) = d.string(v, path) else { return };
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '.'));
    if !s.starts_with('/') || s.trim_end_matches('/').is_empty() {
        d.at(v, path, "expected an absolute path (not `/` itself)");
    } else if !plain || s.split('/').any(|p| p == "..") {
        d.at(
            v,
            path,
            "a path of letters, digits, `/`, `_`, `-` and `.` without `..`",
        );
    } else if key == "files_dir" {
        files.files_dir = s.trim_end_matches('/').to_string();
    } else {
        files.secrets_dir = s.trim_end_matches('/').to_string();
    }
}

fn read_capacity(d: &mut Diag, v: &Node, path: &str) -> Option<Capacity> {
    let entries = d.map(v, path)?;
    let mut cap = Capacity {
        nano_cpus: None,
        memory_bytes: None,
    };
    for (field, _k, v, kpath) in d.fields(entries, path, &CAPACITY) {
        match field {
            "cpus" => {
                if let Some(n) = d.number(v, &kpath) {
                    if n > 0.0 && n < 1e9 {
                        cap.nano_cpus = Some((n * 1e9).round() as i64);
                    } else {
                        d.at(v, &kpath, "expected a positive number of cpus");
                    }
                }
            }
            "memory" => cap.memory_bytes = read_bytes(d, v, &kpath),
            _ => {}
        }
    }
    Some(cap)
}

/// A byte size written as a number of bytes or a string like `8g`.
pub fn read_bytes(d: &mut Diag, v: &Node, path: &str) -> Option<i64> {
    if let Some(n) = v.as_int() {
        if n < 0 {
            d.at(v, path, "expected a non-negative size");
            return None;
        }
        return Some(n);
    }
    let s = d.string(v, path)?;
    match parse_bytes(&s) {
        Ok(n) => Some(n),
        Err(m) => {
            d.at(v, path, m);
            None
        }
    }
}

/// Why a value cannot go into the generated ssh config, if it cannot: there, a newline would
/// start an option of its own, and a quote end the value early.
fn ssh_value_problem(s: &str) -> Option<&'static str> {
    if s.chars().any(char::is_control) {
        Some("cannot hold a control character (a newline, a tab, ...)")
    } else if s.contains('"') {
        Some("cannot hold a double quote")
    } else {
        None
    }
}

/// The value of `key` in a map node.
fn entry<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// What makes two hosts one engine, in a normal form: the socket for a local engine; for SSH,
/// the machine (names are case-insensitive, an IP address has one spelling), the port (22 when
/// none is written) and the socket on it. The user does not count: two users of one machine
/// reach the same socket.
pub fn engine_identity(h: &HostSpec) -> String {
    match &h.address {
        HostAddress::Unix { path } => format!("unix://{}", normal_socket(path)),
        HostAddress::Ssh { host, port, .. } => {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            let host = match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
                Ok(ip) => ip.to_string(),
                Err(_) => host,
            };
            format!(
                "ssh://{host}:{}, socket {}",
                port.unwrap_or(22),
                normal_socket(Path::new(&h.docker_socket))
            )
        }
    }
}

/// A socket path with `.`, `..`, repeated and trailing slashes resolved as written, and
/// `/var/run` read as `/run`, which it is a link to on every current Linux.
fn normal_socket(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.first().map(String::as_str) == Some("var")
        && parts.get(1).map(String::as_str) == Some("run")
    {
        parts.remove(0);
    }
    format!("/{}", parts.join("/"))
}
