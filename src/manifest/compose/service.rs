//! One service: the dispatch of its keys to the section readers, and the keys that need no file
//! of their own (`image`, `command`, `environment`, `restart`, `tmpfs`, `extra_hosts`,
//! `ulimits`, `logging`, `x-convoy`, ...; the engine options are read in `engine_options`).
//! It also settles what depends on several keys at once:
//! `environment` over `env_file`, `deploy.restart_policy` agreeing with `restart`, the default
//! network (none with `network_mode`),
//! and the normal order of ports and mounts so that equal meaning gives an equal spec.
//!
//! No I/O (env files are read through the `RepoTree` in `env_file`), and no checks across
//! services: those are gathered into `Gathered` and run once every service is read.

use std::collections::{BTreeMap, BTreeSet};

use super::deploy::read_deploy;
use super::engine_more::{More, MORE_KEYS};
use super::engine_options::{
    read_container_name, read_cpu_shares, read_devices, read_expose, read_gpus, read_ipc,
    read_network_mode, read_pid, read_platform, read_pull_policy, read_runtime, read_security_opt,
    LegacyResources,
};
use super::engine_rules::{image_reference_problem, is_ip};
use super::healthcheck::read_healthcheck;
use super::keys::{LOGGING, SERVICE, ULIMIT, X_CONVOY};
use super::networks::Attachment;
use super::{duration_ns, user_labels, Gathered, HealthDecl, Stack};
use crate::manifest::typed::{join, Diag};
use crate::manifest::values::shell_split;
use crate::manifest::yaml::{Kind, Node};
use crate::manifest::MIN_SECRET_LEN;
use crate::model::spec::{
    is_secret_name, ContainerSpec, DeployMode, Logging, NetworkAttachment, Placement, PullPolicy,
    RestartName, RestartPolicy, ServiceSpec, Ulimit,
};

impl Stack<'_> {
    pub(super) fn read_service<'n>(
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
            restart_with: BTreeSet::new(),
            rollout: Default::default(),
            job: None,
            ingress: None,
            http_ports: BTreeSet::new(),
        };
        let mut image = None;
        let mut env_file_env: BTreeMap<String, String> = BTreeMap::new();
        let mut environment: Option<Vec<(String, Option<String>)>> = None;
        // As written, with the line, for a disagreement with `deploy.restart_policy`.
        let mut restart: Option<(RestartPolicy, String, usize)> = None;
        let mut deploy_restart = None;
        let mut network_names: Vec<Attachment<'_>> = Vec::new();
        let mut saw_networks = false;
        let mut legacy = LegacyResources::default();
        let mut container_name_at: Option<(&Node, String)> = None;
        let mut pre_start_at: Option<(&Node, String)> = None;
        let mut build = None;
        let mut pull_build_at: Option<(&Node, String)> = None;
        let mut more = More::default();

        super::rollout::refuse_dotted_x_convoy(d, entries, path);
        for (field, _k, v, fpath) in d.fields(entries, path, &SERVICE) {
            match field {
                "image" => {
                    if let Some(s) = d.string(v, &fpath) {
                        if s.trim().is_empty() {
                            d.at(v, &fpath, "the image is empty");
                        } else if let Some(why) = image_reference_problem(&s) {
                            d.at(v, &fpath, format!("invalid image reference `{s}`: {why}"));
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
                "ports" => self.read_ports(d, v, &fpath, &mut c, &mut svc.http_ports, g),
                "volumes" => self.read_mounts(d, v, &fpath, &mut c),
                "configs" => self.read_service_files(
                    d,
                    v,
                    &fpath,
                    &mut c,
                    crate::model::files::FileKind::Config,
                ),
                "secrets" => self.read_service_files(
                    d,
                    v,
                    &fpath,
                    &mut c,
                    crate::model::files::FileKind::Secret,
                ),
                "labels" => c.labels = user_labels(d, v, &fpath),
                "restart" => {
                    if let Some(s) = d.string(v, &fpath) {
                        match parse_restart(&s) {
                            Ok(r) => restart = Some((r, s, v.line)),
                            Err(m) => d.at(v, &fpath, m),
                        }
                    }
                }
                "healthcheck" => {
                    c.healthcheck = read_healthcheck(d, v, &fpath);
                    g.health = match &c.healthcheck {
                        Some(h) if h.test.first().map(String::as_str) == Some("NONE") => {
                            HealthDecl::Disabled
                        }
                        _ => HealthDecl::Declared,
                    };
                }
                "depends_on" => self.read_depends(d, v, &fpath, &mut svc, g),
                "user" => c.user = d.string(v, &fpath),
                "working_dir" => {
                    c.working_dir = d.string(v, &fpath);
                    if let Some(w) = c.working_dir.as_ref().filter(|w| !w.starts_with('/')) {
                        d.at(
                            v,
                            &fpath,
                            format!("working_dir `{w}` is not an absolute path"),
                        );
                    }
                }
                "hostname" => c.hostname = d.string(v, &fpath),
                "stop_signal" => c.stop_signal = d.string(v, &fpath),
                "stop_grace_period" => {
                    c.stop_grace_period_secs =
                        duration_ns(d, v, &fpath).map(|ns| ns / 1_000_000_000)
                }
                "cap_add" => c.cap_add = sorted_strings(d, v, &fpath),
                "cap_drop" => c.cap_drop = sorted_strings(d, v, &fpath),
                "read_only" => c.read_only = d.bool(v, &fpath).unwrap_or(false),
                "stdin_open" => c.stdin_open = d.bool(v, &fpath).unwrap_or(false),
                "tty" => c.tty = d.bool(v, &fpath).unwrap_or(false),
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
                "deploy" => {
                    deploy_restart =
                        read_deploy(d, v, &fpath, &mut svc, &mut c, &mut g.place.replicas)
                }
                "x-convoy" => {
                    svc.placement.hosts =
                        self.read_x_convoy(d, v, &fpath, &mut svc.rollout, &mut svc.job, g)
                }
                "develop" => self.warn(
                    d,
                    v,
                    &fpath,
                    "`develop` (watch and sync) belongs to local development with `docker compose \
                     watch` and is ignored: Convoy deploys what the commit holds"
                        .into(),
                ),
                "expose" => c.expose = read_expose(d, v, &fpath),
                "mem_limit" | "memswap_limit" | "mem_reservation" | "cpus" => {
                    legacy.read(d, field, v, &fpath)
                }
                "cpu_shares" => c.cpu_shares = read_cpu_shares(d, v, &fpath),
                "security_opt" => c.security_opt = read_security_opt(d, v, &fpath),
                "devices" => c.devices = read_devices(d, v, &fpath),
                "ipc" => c.ipc = read_ipc(d, v, &fpath),
                "pid" => c.pid = read_pid(d, v, &fpath),
                "runtime" => c.runtime = read_runtime(d, v, &fpath),
                // `build` is for `build:` services, checked once every key is read.
                "pull_policy" if v.scalar() == Some("build") => {
                    c.pull_policy = PullPolicy::Build;
                    pull_build_at = Some((v, fpath.clone()));
                }
                "pull_policy" => c.pull_policy = read_pull_policy(d, v, &fpath).unwrap_or_default(),
                "build" => build = self.read_build(d, v, &fpath),
                "container_name" => {
                    c.container_name = read_container_name(d, v, &fpath);
                    container_name_at = Some((v, fpath.clone()));
                }
                "network_mode" => {
                    c.network_mode = read_network_mode(d, v, &fpath);
                    super::share::network_source(c.network_mode.as_deref(), v, &fpath, &mut svc, g);
                }
                "links" => c.share.links = super::share::read_links(d, v, &fpath, &mut svc, g),
                "volumes_from" => {
                    c.share.volumes_from =
                        super::share::read_volumes_from(d, v, &fpath, &mut svc, g)
                }
                "platform" => c.platform = read_platform(d, v, &fpath),
                "gpus" => {
                    // After the reservations' requests whichever key comes first (`deploy`
                    // puts its own in front).
                    let mut gpus = read_gpus(d, v, &fpath);
                    c.device_requests.append(&mut gpus);
                }
                f if MORE_KEYS.contains(&f) => more.read(d, f, v, &fpath, &mut c),
                "post_start" => c.hooks.post_start = self.read_hooks(d, v, &fpath),
                "pre_stop" => c.hooks.pre_stop = self.read_hooks(d, v, &fpath),
                "pre_start" => {
                    let (hooks, per_replica) = self.read_pre_start(d, v, &fpath);
                    c.hooks.pre_start = hooks;
                    pre_start_at = (!per_replica).then(|| (v, fpath.clone()));
                }
                _ => {}
            }
        }

        legacy.apply(d, &mut c, &mut svc);
        more.apply(d, &mut c, &mut svc, &mut g.place.replicas);
        super::job::check_service(d, &svc, &c.hooks, g, &g.job);
        self.warn_pre_start_per_replica(d, pre_start_at, &svc);

        // One name holds one container per engine: a second replica, or a global service's
        // copy on a second host, would take it from the first on every pass.
        if let (Some(n), Some((v, fpath))) = (&c.container_name, container_name_at) {
            if svc.mode == DeployMode::Global {
                d.at(
                    v,
                    &fpath,
                    format!(
                        "`container_name: {n}` on a global service: each host would run a \
                         container of that name; remove `container_name` or run one replica"
                    ),
                );
            } else if svc.replicas != 1 {
                d.at(
                    v,
                    &fpath,
                    format!(
                        "`container_name: {n}` with {} replicas: a container name holds one \
                         replica; remove `container_name` or set `deploy.replicas: 1`",
                        svc.replicas
                    ),
                );
            }
        }

        let written = |name: &str| entries.iter().any(|(k, _)| k.scalar() == Some(name));
        match image {
            Some(i) => c.image = i,
            // A service with only `build` has its one error already, naming `build`.
            None if !written("image") && !written("build") => {
                d.at(key, path, "missing `image`");
            }
            None => {}
        }
        if let Some(b) = build {
            let given = (!c.image.is_empty()).then(|| c.image.clone());
            if let Some((spec, image)) =
                self.finish_build(d, b, given.as_deref(), name, c.platform.as_deref())
            {
                c.image = image;
                c.build = Some(spec);
            }
        }
        if let (Some((v, fpath)), false) = (pull_build_at, written("build")) {
            d.at(
                v,
                &fpath,
                "`pull_policy: build` needs `build`: add the build, or use always, missing or never",
            );
        }

        // environment wins over env_file; a bare `K` takes its value from the variables and is
        // dropped when they have none, as Compose does.
        d.secrets.extend(
            env_file_env
                .values()
                .filter(|v| v.chars().count() >= MIN_SECRET_LEN)
                .cloned(),
        );
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
        // Their values are kept out of every message of the file, whatever quotes them.
        d.secrets.extend(
            c.env
                .iter()
                .filter(|(k, v)| svc.secret_env.contains(*k) && v.chars().count() >= MIN_SECRET_LEN)
                .map(|(_, v)| v.clone()),
        );

        c.restart = settle_restart(d, restart, deploy_restart);

        // A container in the host's network namespace, or in none, joins no network: Compose
        // refuses `networks` beside it, and published ports have nothing to publish through.
        if let Some(mode) = c.network_mode.clone() {
            for (key, why) in [
                ("networks", "joins no network"),
                ("ports", "has no ports of its own to publish"),
            ] {
                if let Some((k, _)) = entries.iter().find(|(k, _)| k.scalar() == Some(key)) {
                    d.at(
                        k,
                        &join(path, key),
                        format!(
                            "`{key}` cannot be used with `network_mode: {mode}`: the container \
                             {why}"
                        ),
                    );
                }
            }
            saw_networks = true;
            network_names.clear();
        }
        super::share::refuse_beside_shared_network(d, entries, path, c.network_mode.as_deref());
        if !saw_networks {
            network_names.push(Attachment {
                name: "default".into(),
                aliases: Vec::new(),
                ipv4_address: None,
                ipv6_address: None,
                fixed_at: None,
            });
        }
        for a in network_names {
            let engine = match self.networks.get(&a.name) {
                Some(n) => n.engine_name.clone(),
                None => self.default_network().engine_name,
            };
            // A fixed address holds one container, as a container name does.
            if let Some((v, fpath)) = &a.fixed_at {
                if svc.mode == DeployMode::Global || svc.replicas != 1 {
                    d.at(
                        v,
                        fpath,
                        "a fixed address holds one replica: remove it or set `deploy.replicas: 1`",
                    );
                }
            }
            let mut aliases = a.aliases;
            aliases.push(name.to_string());
            aliases.sort();
            aliases.dedup();
            c.networks.insert(
                engine,
                NetworkAttachment {
                    aliases,
                    ipv4_address: a.ipv4_address,
                    ipv6_address: a.ipv6_address,
                },
            );
            g.networks.push(a.name);
        }

        super::ingress::settle(
            d,
            g.ingress.take(),
            self.input.proxy,
            self.input.hosts.is_some(),
            &mut svc,
            &mut c,
        );
        c.ports.sort();
        c.mounts
            .sort_by(|a, b| a.target.cmp(&b.target).then_with(|| a.cmp(b)));
        svc.container = c;
        (d.errors.len() == before).then_some(svc)
    }

    /// `x-convoy`: gives `hosts`; the rollout's keys go into `rollout`, `job` into `job`.
    fn read_x_convoy<'n>(
        &self,
        d: &mut Diag,
        v: &'n Node,
        path: &str,
        rollout: &mut crate::model::rollout::RolloutSpec,
        job: &mut Option<crate::model::job::JobSpec>,
        g: &mut Gathered<'n>,
    ) -> Option<Vec<String>> {
        let entries = d.map(v, path)?;
        let mut hosts = None;
        for (field, _k, v, fpath) in d.fields(entries, path, &X_CONVOY) {
            if field == "job" {
                *job = super::job::read_job(d, v, &fpath, &mut g.job);
                continue;
            }
            if field == "ingress" {
                g.ingress = super::ingress::read_ingress(d, v, &fpath);
                continue;
            }
            if field != "hosts" {
                super::rollout::read_x_convoy_key(d, field, v, &fpath, rollout);
                continue;
            }
            let Some(list) = d.string_list(v, &fpath) else {
                continue;
            };
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
}

pub(super) fn command(d: &mut Diag, v: &Node, path: &str) -> Option<Vec<String>> {
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

/// `restart` and `deploy.restart_policy` together: they must mean the same. `condition: any`
/// (written `always`) agrees with `unless-stopped` too, which then wins as the more precise.
fn settle_restart(
    d: &mut Diag,
    restart: Option<(RestartPolicy, String, usize)>,
    deploy: Option<(RestartPolicy, &Node, String)>,
) -> RestartPolicy {
    match (restart, deploy) {
        (Some((r, written, line)), Some((p, node, ppath))) => {
            let agree =
                r == p || (r.name == RestartName::UnlessStopped && p.name == RestartName::Always);
            if !agree {
                let policy = match (p.name, p.max_attempts) {
                    (RestartName::No, _) => "condition: none".to_string(),
                    (RestartName::OnFailure, Some(n)) => {
                        format!("condition: on-failure, max_attempts: {n}")
                    }
                    (RestartName::OnFailure, None) => "condition: on-failure".to_string(),
                    _ => "condition: any".to_string(),
                };
                d.at(
                    node,
                    &ppath,
                    format!(
                        "`{policy}` disagrees with `restart: {written}` (line {line}): remove one \
                         of them, or make them say the same"
                    ),
                );
            }
            r
        }
        (None, Some((p, _, _))) => p,
        (Some((r, _, _)), None) => r,
        (None, None) => RestartPolicy::default(),
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

fn read_extra_hosts(d: &mut Diag, v: &Node, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match &v.kind {
        Kind::Map(entries) => {
            for (k, v) in entries {
                let host = k.scalar().unwrap_or_default();
                let hpath = join(path, host);
                let ips = match &v.kind {
                    Kind::Seq(_) => d.string_list(v, &hpath).unwrap_or_default(),
                    _ => d.string(v, &hpath).map(|s| (s, v)).into_iter().collect(),
                };
                for (ip, node) in ips {
                    if is_extra_host_ip(&ip) {
                        out.push(format!("{host}:{ip}"));
                    } else {
                        d.at(node, &hpath, extra_host_ip_error(host, &ip));
                    }
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
                    Some((h, ip)) if !h.is_empty() && !is_extra_host_ip(ip) => {
                        d.at(n, &format!("{path}[{i}]"), extra_host_ip_error(h, ip))
                    }
                    Some((h, ip)) if !h.is_empty() => out.push(format!("{h}:{ip}")),
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

/// An address for an extra host as the engine takes it: an IP address, or `host-gateway`.
fn is_extra_host_ip(ip: &str) -> bool {
    ip == "host-gateway" || is_ip(ip)
}

fn extra_host_ip_error(host: &str, ip: &str) -> String {
    format!(
        "invalid address `{ip}` for extra host `{host}` (expected an IP address or `host-gateway`)"
    )
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
        // -1 is "unlimited" (`memlock: -1`, as Elasticsearch asks), and the largest value.
        let order = |n: i64| if n == -1 { i64::MAX } else { n };
        match limit {
            Some(l) if l.soft < -1 || l.hard < -1 => d.at(
                v,
                &upath,
                "a ulimit cannot be negative (-1 means unlimited)",
            ),
            Some(l) if order(l.soft) > order(l.hard) => {
                d.at(v, &upath, "the soft limit is above the hard limit")
            }
            Some(l) => {
                out.insert(name, l);
            }
            None => {}
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
