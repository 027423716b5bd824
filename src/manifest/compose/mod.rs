//! One Compose file (already parsed and interpolated) → a `StackSpec` in normalised form.
//!
//! Convoy supports a subset of Compose. Every key is sorted into one of three kinds at every
//! level: supported (read here), valid Compose but not supported yet (an error with a hint), or
//! unknown (an error with the nearest valid key). Nothing real is silently ignored, except the
//! `x-*` extension fields Compose itself ignores.
//!
//! `expand` first resolves `include`, `extends` and `profiles` into one tree (its nodes still
//! located in the file that writes them; `sources` reads and numbers those files). This file
//! reads the top level (`name`, `volumes`, `networks`, `services`) and runs the checks that
//! span services (dependencies, clashing host ports, which networks are used); a service's
//! keys are dispatched in `service`, and each Compose section has a file of its own. The key
//! tables are in `keys`. No I/O: the only file access is `env_file` and the files `include`
//! and `extends` name, through the `RepoTree` handed in. "Secrets stay masked": the values of env files, of secret-named variables and of
//! secret-named `environment` entries are masked in every message of the file, also where one
//! quotes only part of a value. A stack with any error gives no `StackSpec` at all ("a
//! repository that does not validate changes nothing").

mod build;
mod depends;
mod deploy;
mod engine_more;
mod engine_options;
mod engine_rules;
mod env_file;
mod expand;
mod extends;
mod files;
pub(super) use env_file::resolve;
mod healthcheck;
mod hooks;
mod ingress;
mod job;
mod keys;
mod networks;
mod ports;
mod profiles;
mod rollout;
mod sources;
pub use profiles::is_profile_name;
mod service;
mod share;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};

use super::typed::{join, Diag};
use super::values::parse_duration_ns;
use super::yaml::{Kind, Node};
use super::RepoTree;
use super::MIN_SECRET_LEN;
use crate::model::spec::{
    is_secret_name, DependsCondition, NetworkSpec, PortBinding, StackSpec, VolumeSpec,
};
use keys::TOP;
use ports::{port_label, ports_clash};

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
    /// The profiles enabled for each stack (`profiles:` in `convoy.yaml`), by stack name.
    pub profiles: &'a BTreeMap<String, BTreeSet<String>>,
    /// `proxy:` in `convoy.yaml`, when set (`x-convoy.ingress` needs it).
    pub proxy: Option<&'a crate::model::proxy::ProxySettings>,
}

struct Stack<'a> {
    input: &'a Input<'a>,
    name: String,
    volumes: BTreeMap<String, VolumeSpec>,
    networks: BTreeMap<String, NetworkSpec>,
    /// Relative binds, configs and secrets read so far (`files`).
    files: files::StackFiles,
    /// Build contexts read so far in this load, by repository path (`build::ContextCache`).
    build_contexts: build::ContextCache,
}

/// A stack as read, with where each service is written, for the checks across stacks.
pub struct Read {
    pub spec: StackSpec,
    /// By service name.
    pub places: BTreeMap<String, Place>,
    /// The content of its relative binds and configs, its secrets' values, its warnings.
    pub files: crate::model::files::FilePayload,
}

/// Where a service is written: (line, column) of its key and of its `deploy.replicas`.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub key: (usize, usize),
    pub replicas: Option<(usize, usize)>,
}

/// Cross-service facts gathered while reading services.
struct Gathered<'n> {
    ports: Vec<(PortBinding, &'n Node, String)>,
    depends: Vec<Dependency<'n>>,
    networks: Vec<String>,
    health: HealthDecl,
    place: Place,
    /// `service:` sources of `network_mode` and `volumes_from` (`share`).
    shares: Vec<Dependency<'n>>,
    /// `x-convoy.job` as written (`job`).
    job: Option<job::JobAt<'n>>,
    /// `x-convoy.ingress` as written (`ingress`).
    ingress: Option<ingress::IngressAt<'n>>,
}

/// One `depends_on` entry as written.
struct Dependency<'n> {
    service: String,
    node: &'n Node,
    path: String,
    condition: DependsCondition,
}

/// What a service says about its healthcheck, for `service_healthy` on it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HealthDecl {
    /// No `healthcheck` key.
    Absent,
    /// `disable: true` or `test: [NONE]`.
    Disabled,
    /// A test of its own, or an empty one that keeps the image's.
    Declared,
}

/// Reads one stack; `None` after recording its errors, every message masked.
pub fn read(d: &mut Diag, root: &Node, input: &Input<'_>) -> Option<Read> {
    // `include`, `extends` and `profiles` first: the services are read as one tree. A file
    // without them is read as written (no copy of its tree).
    let read = if expand::needed(root) {
        let ex = expand::expand(d, root, input);
        let mut read = ex.root.as_ref().and_then(|root| read_stack(d, root, input));
        if let Some(expanded) = &ex.root {
            for (key, service) in &ex.left_out {
                if !check_alone(d, expanded, key, service, input) {
                    read = None;
                }
            }
        }
        sources::relocate(d, &ex.files, read.as_mut().map(|r| &mut r.places));
        read
    } else {
        read_stack(d, root, input)
    };
    let secrets = secrets_of(d, input);
    d.mask(&secrets);
    read
}

/// The values to mask in a file's messages: those it read, and its secret-named variables.
fn secrets_of(d: &Diag, input: &Input<'_>) -> BTreeSet<String> {
    let mut secrets = d.secrets.clone();
    secrets.extend(
        input
            .vars
            .iter()
            .filter(|(k, v)| is_secret_name(k) && v.chars().count() >= MIN_SECRET_LEN)
            .map(|(_, v)| v.clone()),
    );
    secrets
}

/// Reads a service its profiles leave out on its own, keeping the errors about it; whether
/// it has none.
fn check_alone(
    d: &mut Diag,
    expanded: &Node,
    key: &Node,
    service: &Node,
    input: &Input<'_>,
) -> bool {
    let mut scratch = Diag::new(&d.file);
    let _ = read_stack(&mut scratch, &expand::alone(expanded, key, service), input);
    let prefix = join("services", key.scalar().unwrap_or_default());
    scratch.secrets.extend(d.secrets.iter().cloned());
    let secrets = secrets_of(&scratch, input);
    scratch.mask(&secrets);
    let mut clean = true;
    for e in scratch.errors {
        if e.key == prefix || e.key.starts_with(&format!("{prefix}.")) {
            d.errors.push(e);
            clean = false;
        }
    }
    d.secrets.extend(scratch.secrets);
    clean
}

fn read_stack(d: &mut Diag, root: &Node, input: &Input<'_>) -> Option<Read> {
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
        files: Default::default(),
        build_contexts: Default::default(),
    };
    if let Some((_, _, v, path)) = get("configs") {
        stack.read_file_defs(d, v, path, crate::model::files::FileKind::Config);
    }
    if let Some((_, _, v, path)) = get("secrets") {
        stack.read_file_defs(d, v, path, crate::model::files::FileKind::Secret);
    }
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
                    if crate::model::proxy::is_mesh_service(&sname) {
                        d.at(
                            k,
                            &spath,
                            "`convoy-mesh.<host>` names Convoy's discovery mesh of the stack on that host; rename the service",
                        );
                        continue;
                    }
                    let mut g = Gathered {
                        ports: Vec::new(),
                        depends: Vec::new(),
                        networks: Vec::new(),
                        health: HealthDecl::Absent,
                        place: Place {
                            key: (k.line, k.col),
                            replicas: None,
                        },
                        shares: Vec::new(),
                        job: None,
                        ingress: None,
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
        for dep in &g.depends {
            if dep.service == *sname {
                d.at(dep.node, &dep.path, "a service cannot depend on itself");
            } else if !gathered.contains_key(&dep.service) {
                d.at(
                    dep.node,
                    &dep.path,
                    format!("depends on unknown service `{}`", dep.service),
                );
            }
        }
        for (p, node, path) in &g.ports {
            if let Some((_, other)) = seen_ports.iter().find(|(q, o)| {
                o != sname
                    && ports_clash(p, q)
                    && !ingress::share_port(services.get(sname), services.get(o))
            }) {
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
    depends::report_cycles(d, &gathered);
    depends::report_unhealthy_gates(d, &gathered);
    share::report_colocation(d, &gathered, &services);
    let jobs: BTreeMap<String, job::JobAt<'_>> = gathered
        .iter_mut()
        .filter_map(|(n, g)| Some((n.clone(), g.job.take()?)))
        .collect();
    job::check_stack(d, &gathered, &jobs);

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
    Some(Read {
        spec: StackSpec {
            name: stack.name,
            file: d.file.clone(),
            services,
            networks,
            volumes: stack.volumes,
        },
        places: gathered.into_iter().map(|(n, g)| (n, g.place)).collect(),
        files: stack.files.payload.into_inner(),
    })
}

/// User labels of a service, network or volume: a map or a list of `k=v`. Convoy's own
/// `convoy.` namespace is refused: its labels record ownership ("only what carries the
/// fleet's label is touched"), and a user's would be overwritten, or ignored by drift.
fn user_labels(d: &mut Diag, v: &Node, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, value, node) in d.list_or_dict(v, path, '=').unwrap_or_default() {
        if k.starts_with("convoy.") {
            let at = match &v.kind {
                Kind::Seq(items) => {
                    let i = items.iter().position(|it| std::ptr::eq(it, node));
                    format!("{path}[{}]", i.unwrap_or_default())
                }
                _ => join(path, &k),
            };
            d.at(
                node,
                &at,
                format!("label `{k}` is in Convoy's own `convoy.` namespace: choose another name"),
            );
            continue;
        }
        out.insert(k, value.unwrap_or_default());
    }
    out
}

fn is_service_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
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
