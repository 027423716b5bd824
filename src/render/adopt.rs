//! The compose file `convoy adopt` writes for a running Compose project: inferred from what the
//! engine reports of its containers (`model::adopt::ProjectView`), so that the first `diff`
//! after adoption finds it in sync.
//!
//! Written are the settings a person writes in a compose file (image, command, entrypoint,
//! environment, ports, volumes, networks, healthcheck, restart, labels, user, working
//! directory, and the less common limits and capabilities when set), each only where it
//! differs from what the image or the engine gives anyway. Values of secret-looking variables
//! (`model::spec::is_secret_name`) never reach the compose file: it says `${NAME}` and the
//! value goes to the stack's `.env`, which the caller must tell the user to encrypt. Every `$`
//! of a written value is doubled, so interpolation gives back the value that runs. The stack
//! is pinned to its host (`node.hostname`), where its volumes' data is. Pure: a value in, text
//! out; it must not print, and must not put a secret's value anywhere but the `.env` text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::model::compose_project::ProjectView;
use crate::model::observed::ObservedContainer;
use crate::model::spec::{is_secret_name, Healthcheck, MountKind, RestartName};

/// What `infer` makes of a project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inferred {
    /// The stack's `compose.yaml`.
    pub compose: String,
    /// The stack's `.env`: one line per secret-looking value; empty when there is none.
    pub dotenv: String,
    /// The names of the variables in `dotenv`, in order.
    pub secret_names: Vec<String>,
    /// What the inference could not carry over as it runs (said to the user, never secrets).
    pub notes: Vec<String>,
}

/// The compose file (and `.env`) of `view`, adopted on `host`. Networks and volumes whose
/// engine names are in `taken` (another stack of the repository makes or uses them: the same
/// project adopted on another host) are written `external: true`, so that no two stacks would
/// make one name.
pub fn infer(view: &ProjectView, host: &str, taken: &BTreeSet<String>) -> Inferred {
    let mut out = Inferred::default();
    let mut by_service: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
    for c in &view.containers {
        by_service.entry(c.service.as_str()).or_default().push(c);
    }
    let mut dotenv: BTreeMap<String, String> = BTreeMap::new();
    let mut used_networks: BTreeMap<String, ()> = BTreeMap::new();
    let mut used_volumes: BTreeMap<String, ()> = BTreeMap::new();
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# Adopted by `convoy adopt` from Compose project `{}` on host `{host}`.",
        view.project
    );
    y.push_str("services:\n");
    for (service, replicas) in &mut by_service {
        replicas.sort_by_key(|c| (c.slot.parse::<u64>().unwrap_or(u64::MAX), c.slot.clone()));
        let c = replicas[0];
        let slots: Vec<&str> = replicas.iter().map(|c| c.slot.as_str()).collect();
        let expected: Vec<String> = (1..=replicas.len()).map(|i| i.to_string()).collect();
        if slots != expected {
            out.notes.push(format!(
                "service `{service}` runs numbers {}: Convoy runs slots 1 to {}, so the others are replaced",
                slots.join(", "),
                replicas.len()
            ));
        }
        if replicas.iter().any(|r| r.actual != c.actual) {
            out.notes.push(format!(
                "the containers of service `{service}` differ; the file is written from {}, the others are replaced",
                c.name
            ));
        }
        let _ = writeln!(y, "  {}:", key(service));
        service_body(&mut y, c, view, host, &mut dotenv, &mut out);
        if replicas.len() > 1 {
            let _ = writeln!(y, "    deploy:\n      replicas: {}", replicas.len());
            pin(&mut y, host, "      ");
        } else {
            y.push_str("    deploy:\n");
            pin(&mut y, host, "      ");
        }
        for net in c.actual.networks.keys() {
            if c.actual.network_mode.is_none() {
                used_networks.insert(net.clone(), ());
            }
        }
        for m in &c.actual.mounts {
            if m.kind == MountKind::Volume && view.volumes.contains_key(&m.source) {
                used_volumes.insert(m.source.clone(), ());
            }
        }
    }
    if !used_networks.is_empty() {
        y.push_str("networks:\n");
        for engine in used_networks.keys() {
            let (k, external) = resource_key(&view.networks, engine);
            let external = external || taken.contains(engine);
            if taken.contains(engine) {
                out.notes.push(format!(
                    "networks `{engine}` is another stack's too: written `external: true`, Convoy does not make it"
                ));
            }
            let _ = writeln!(y, "  {}:\n    name: {}", key(&k), quote(engine));
            if external {
                y.push_str("    external: true\n");
            }
        }
    }
    if !used_volumes.is_empty() {
        y.push_str("volumes:\n");
        for engine in used_volumes.keys() {
            let (k, external) = resource_key(&view.volumes, engine);
            let external = external || taken.contains(engine);
            if taken.contains(engine) {
                out.notes.push(format!(
                    "volumes `{engine}` is another stack's too: written `external: true`, Convoy does not make it"
                ));
            }
            let _ = writeln!(y, "  {}:\n    name: {}", key(&k), quote(engine));
            if external {
                y.push_str("    external: true\n");
            }
        }
    }
    out.compose = y;
    for (name, value) in &dotenv {
        let _ = writeln!(out.dotenv, "{name}={}", dotenv_value(value));
        out.secret_names.push(name.clone());
    }
    out
}

fn pin(y: &mut String, host: &str, indent: &str) {
    let _ = writeln!(
        y,
        "{indent}placement:\n{indent}  constraints: [{}]",
        quote(&format!("node.hostname=={host}"))
    );
}

/// The Compose-level key of a network or volume: the project's own name for it, else (an
/// external one) its engine name made a key.
fn resource_key(names: &BTreeMap<String, String>, engine: &str) -> (String, bool) {
    match names.get(engine) {
        Some(k) if !k.is_empty() => (k.clone(), false),
        _ => (
            engine
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
            true,
        ),
    }
}

fn service_body(
    y: &mut String,
    c: &ObservedContainer,
    view: &ProjectView,
    host: &str,
    dotenv: &mut BTreeMap<String, String>,
    out: &mut Inferred,
) {
    let a = &c.actual;
    let d = &c.image_defaults;
    let _ = host;
    let _ = writeln!(y, "    image: {}", quote(&a.image));
    if a.entrypoint.is_some() && a.entrypoint != d.entrypoint {
        let _ = writeln!(
            y,
            "    entrypoint: {}",
            list(a.entrypoint.as_deref().unwrap_or_default())
        );
    }
    if a.command.is_some() && a.command != d.command {
        let _ = writeln!(
            y,
            "    command: {}",
            list(a.command.as_deref().unwrap_or_default())
        );
    }
    let env: Vec<(&String, &String)> = a
        .env
        .iter()
        .filter(|(k, v)| d.env.get(*k) != Some(*v))
        .collect();
    if !env.is_empty() {
        y.push_str("    environment:\n");
        for (k, v) in env {
            if is_secret_name(k) {
                // One `.env` for the stack: a name two services give two values is told
                // apart by the service's name.
                let mut var = k.clone();
                if dotenv.get(&var).is_some_and(|old| old != v) {
                    var = format!("{}_{k}", env_name(&c.service));
                }
                dotenv.insert(var.clone(), v.clone());
                let _ = writeln!(y, "      {}: \"${{{var}}}\"", key(k));
            } else {
                let _ = writeln!(y, "      {}: {}", key(k), quote(v));
            }
        }
    }
    if a.network_mode.is_none() && !a.ports.is_empty() {
        y.push_str("    ports:\n");
        for p in &a.ports {
            let ip = if p.host_ip.is_empty() || p.host_ip == "0.0.0.0" {
                String::new()
            } else if p.host_ip.contains(':') {
                format!("[{}]:", p.host_ip)
            } else {
                format!("{}:", p.host_ip)
            };
            let host_port = p.host_port.map(|h| format!("{h}:")).unwrap_or_default();
            let text = if ip.is_empty() && host_port.is_empty() {
                format!("{}/{}", p.container_port, p.protocol)
            } else if host_port.is_empty() {
                format!("{ip}:{}/{}", p.container_port, p.protocol)
            } else {
                format!("{ip}{host_port}{}/{}", p.container_port, p.protocol)
            };
            let _ = writeln!(y, "      - {}", quote(&text));
        }
    }
    let mounts: Vec<String> = a
        .mounts
        .iter()
        .filter_map(|m| {
            let ro = if m.read_only { ":ro" } else { "" };
            match m.kind {
                MountKind::Bind => Some(format!("{}:{}{ro}", m.source, m.target)),
                MountKind::Volume if view.volumes.contains_key(&m.source) => {
                    let (k, _) = resource_key(&view.volumes, &m.source);
                    Some(format!("{k}:{}{ro}", m.target))
                }
                // The image's own `VOLUME`s: the engine makes those again.
                _ if d.volumes.contains(&m.target) => None,
                _ => {
                    out.notes.push(format!(
                        "{}: the anonymous volume at {} is not carried over: a replacement gets a new one",
                        c.name, m.target
                    ));
                    Some(m.target.clone())
                }
            }
        })
        .collect();
    if !mounts.is_empty() {
        y.push_str("    volumes:\n");
        for m in mounts {
            let _ = writeln!(y, "      - {}", quote(&m));
        }
    }
    match &a.network_mode {
        Some(mode) => {
            let _ = writeln!(y, "    network_mode: {}", quote(mode));
        }
        None => {
            // Only the default network, with no alias but the service's (which Convoy adds):
            // Compose's default, left out.
            let plain = a.networks.len() == 1
                && a.networks.iter().all(|(engine, att)| {
                    resource_key(&view.networks, engine).0 == "default"
                        && att.aliases.iter().all(|al| al == &c.service)
                        && att.ipv4_address.is_none()
                        && att.ipv6_address.is_none()
                });
            if !plain && !a.networks.is_empty() {
                y.push_str("    networks:\n");
                for (engine, att) in &a.networks {
                    let _ = writeln!(y, "      {}:", key(&resource_key(&view.networks, engine).0));
                    let aliases: Vec<String> = att
                        .aliases
                        .iter()
                        .filter(|al| *al != &c.service)
                        .cloned()
                        .collect();
                    if !aliases.is_empty() {
                        let _ = writeln!(y, "        aliases: {}", list(&aliases));
                    }
                    if let Some(ip) = &att.ipv4_address {
                        let _ = writeln!(y, "        ipv4_address: {}", quote(ip));
                    }
                    if let Some(ip) = &att.ipv6_address {
                        let _ = writeln!(y, "        ipv6_address: {}", quote(ip));
                    }
                }
            }
        }
    }
    if let Some(h) = a
        .healthcheck
        .as_ref()
        .filter(|h| Some(*h) != d.healthcheck.as_ref())
    {
        healthcheck(y, h);
    }
    // Always written: Compose's default is `no`, Convoy's `unless-stopped`.
    let restart = match a.restart.name {
        RestartName::No => "no".to_string(),
        RestartName::Always => "always".into(),
        RestartName::UnlessStopped => "unless-stopped".into(),
        RestartName::OnFailure => match a.restart.max_attempts {
            Some(n) if n > 0 => format!("on-failure:{n}"),
            _ => "on-failure".into(),
        },
    };
    let _ = writeln!(y, "    restart: {}", quote(&restart));
    let labels: Vec<(&String, &String)> = a
        .labels
        .iter()
        .filter(|(k, v)| d.labels.get(*k) != Some(*v) && !k.starts_with("convoy."))
        .collect();
    if !labels.is_empty() {
        y.push_str("    labels:\n");
        for (k, v) in labels {
            let _ = writeln!(y, "      {}: {}", quote(k), quote(v));
        }
    }
    let opt = |y: &mut String, name: &str, v: &Option<String>, default: &Option<String>| {
        if let Some(v) = v.as_ref().filter(|v| Some(*v) != default.as_ref()) {
            let _ = writeln!(y, "    {name}: {}", quote(v));
        }
    };
    opt(y, "user", &a.user, &d.user);
    opt(y, "working_dir", &a.working_dir, &d.working_dir);
    opt(y, "stop_signal", &a.stop_signal, &d.stop_signal);
    if let Some(s) = a.stop_grace_period_secs {
        let _ = writeln!(y, "    stop_grace_period: {s}s");
    }
    for (name, values) in [
        ("cap_add", &a.cap_add),
        ("cap_drop", &a.cap_drop),
        ("extra_hosts", &a.extra_hosts),
        ("dns", &a.dns),
    ] {
        if !values.is_empty() {
            let _ = writeln!(y, "    {name}: {}", list(values));
        }
    }
    if a.read_only {
        y.push_str("    read_only: true\n");
    }
    if let Some(init) = a.init {
        let _ = writeln!(y, "    init: {init}");
    }
    if let Some(m) = a.memory_bytes {
        let _ = writeln!(y, "    mem_limit: {m}");
    }
    if let Some(n) = a.nano_cpus {
        let _ = writeln!(y, "    cpus: {}", n as f64 / 1e9);
    }
    if let Some(p) = a.pids_limit {
        let _ = writeln!(y, "    pids_limit: {p}");
    }
    if !a.tmpfs.is_empty() {
        y.push_str("    tmpfs:\n");
        for (path, opts) in &a.tmpfs {
            let t = if opts.is_empty() {
                path.clone()
            } else {
                format!("{path}:{opts}")
            };
            let _ = writeln!(y, "      - {}", quote(&t));
        }
    }
    if let Some(l) = a
        .logging
        .as_ref()
        .filter(|l| l.driver != "json-file" || !l.options.is_empty())
    {
        let _ = writeln!(y, "    logging:\n      driver: {}", quote(&l.driver));
        if !l.options.is_empty() {
            y.push_str("      options:\n");
            for (k, v) in &l.options {
                let _ = writeln!(y, "        {}: {}", quote(k), quote(v));
            }
        }
    }
}

fn healthcheck(y: &mut String, h: &Healthcheck) {
    y.push_str("    healthcheck:\n");
    if h.test.first().map(String::as_str) == Some("NONE") {
        y.push_str("      disable: true\n");
        return;
    }
    let _ = writeln!(y, "      test: {}", list(&h.test));
    for (name, v) in [
        ("interval", h.interval_ns),
        ("timeout", h.timeout_ns),
        ("start_period", h.start_period_ns),
        ("start_interval", h.start_interval_ns),
    ] {
        if let Some(ns) = v.filter(|n| *n > 0) {
            let _ = writeln!(y, "      {name}: {}", duration(ns));
        }
    }
    if let Some(r) = h.retries.filter(|r| *r > 0) {
        let _ = writeln!(y, "      retries: {r}");
    }
}

/// A duration in the largest unit that holds it whole.
fn duration(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{}us", ns / 1_000)
    }
}

/// A YAML double-quoted scalar (JSON's string syntax, which YAML reads alike) with every `$`
/// doubled, so that Compose's interpolation gives the value back.
fn quote(s: &str) -> String {
    serde_json::to_string(&s.replace('$', "$$")).expect("a string serialises")
}

/// A map key: plain when it is one, else quoted.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && !s.starts_with(['-', '.'])
    {
        s.to_string()
    } else {
        quote(s)
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// A service name as a variable-name prefix: upper case, `_` for anything else.
fn env_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A `.env` value: single-quoted (literal) when it can be, else double-quoted with escapes.
fn dotenv_value(v: &str) -> String {
    if !v.contains(['\'', '\n', '\r']) {
        return format!("'{v}'");
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
