//! `convoy export --to swarm`: one `docker stack deploy` file per stack (`<stack>.yaml`, with
//! the `version: "3.8"` line Docker 20.10 still requires), and the files it refers to.
//!
//! Convoy's keys become Swarm's: `x-convoy.hosts` a placement constraint (a node label when
//! there are several hosts), the fleet's host labels `docker node update` commands, configs and
//! repository files Swarm configs, secrets external Swarm secrets (or files, when asked),
//! named volumes keep their engine names so data on a node stays where it is. Bridge networks
//! become overlay networks (a stack's network spans the swarm). Everything else Swarm cannot
//! run is an `Unexpressed` note. Pure; it writes nothing.

use std::collections::BTreeMap;

use yaml_rust2::Yaml;

use super::{
    dump, duration_ms, duration_ns, int, interpolated, s, string_map, strings, ExportFile,
    ExportOptions, Exported, Map, Unexpressed,
};
use crate::model::files::{FileKind, FileMount, FilePayload};
use crate::model::rollout::{UpdateConfig, UpdateOrder};
use crate::model::spec::{
    ConstraintAttribute, DeployMode, DesiredState, MountKind, RestartName, ServiceSpec, StackSpec,
};

/// The stack file's format line: Docker 20.10's `docker stack deploy` refuses a file without.
const VERSION: &str = "3.8";

pub fn export(desired: &DesiredState, opts: ExportOptions) -> Exported {
    let mut out = Exported::default();
    for host in desired.hosts.values() {
        for (k, v) in &host.labels {
            out.commands.push(format!(
                "docker node update --label-add {k}={v} {}",
                host.name
            ));
        }
    }
    for stack in desired.stacks.values() {
        let mut ctx = Ctx {
            stack,
            payload: &desired.files,
            opts,
            out: &mut out,
            configs: Map::new(),
            secrets: Map::new(),
        };
        let doc = ctx.stack_doc();
        out.files.push(ExportFile {
            path: format!("{}.yaml", stack.name),
            data: dump(&doc).into_bytes(),
            secret: false,
        });
    }
    out
}

struct Ctx<'a> {
    stack: &'a StackSpec,
    payload: &'a FilePayload,
    opts: ExportOptions,
    out: &'a mut Exported,
    configs: Map,
    secrets: Map,
}

impl Ctx<'_> {
    fn note(&mut self, service: &str, what: impl Into<String>) {
        self.out.unexpressed.push(Unexpressed {
            stack: self.stack.name.clone(),
            service: service.to_string(),
            what: what.into(),
        });
    }

    /// The folder, next to the stack file, that holds its configs and secrets.
    fn files_dir(&self) -> String {
        format!("{}.files", self.stack.name)
    }

    fn stack_doc(&mut self) -> Yaml {
        let mut doc = Map::new();
        doc.put_str("version", VERSION);
        let mut services = Map::new();
        for svc in self.stack.services.values() {
            let m = self.service(svc);
            services.put(&svc.name, m.into_yaml());
        }
        doc.put_map("services", services);
        doc.put_map("networks", self.networks());
        doc.put_map("volumes", self.volumes());
        doc.put_map("configs", std::mem::take(&mut self.configs));
        doc.put_map("secrets", std::mem::take(&mut self.secrets));
        doc.into_yaml()
    }

    fn networks(&mut self) -> Map {
        let mut out = Map::new();
        for (name, n) in &self.stack.networks {
            let mut m = Map::new();
            if n.external {
                m.put("external", Yaml::Boolean(true));
                m.put_str("name", &n.engine_name);
                out.put(name, m.into_yaml());
                continue;
            }
            let driver = match n.driver.as_str() {
                "" | "bridge" => "overlay",
                other => other,
            };
            m.put_str("driver", driver);
            if n.internal {
                m.put("internal", Yaml::Boolean(true));
            }
            m.put_map("driver_opts", string_map(&n.driver_opts));
            m.put_map("labels", string_map(&n.labels));
            if let Some(ipam) = &n.ipam {
                let mut im = Map::new();
                if let Some(d) = &ipam.driver {
                    im.put_str("driver", d);
                }
                let pools = ipam
                    .config
                    .iter()
                    .map(|p| {
                        let mut pm = Map::new();
                        for (k, v) in [
                            ("subnet", &p.subnet),
                            ("ip_range", &p.ip_range),
                            ("gateway", &p.gateway),
                        ] {
                            if let Some(v) = v {
                                pm.put_str(k, v);
                            }
                        }
                        pm.put_map("aux_addresses", string_map(&p.aux_addresses));
                        pm.into_yaml()
                    })
                    .collect();
                im.put_list("config", pools);
                m.put_map("ipam", im);
            }
            out.put(name, m.into_yaml());
        }
        out
    }

    fn volumes(&mut self) -> Map {
        let mut out = Map::new();
        let stack = self.stack;
        for (name, v) in &stack.volumes {
            let mut m = Map::new();
            if v.external {
                m.put("external", Yaml::Boolean(true));
                m.put_str("name", &v.engine_name);
                out.put(name, m.into_yaml());
                continue;
            }
            // The same engine name as Convoy's: a node keeps its data.
            m.put_str("name", &v.engine_name);
            if !v.driver.is_empty() && v.driver != "local" {
                m.put_str("driver", &v.driver);
            }
            if !v.driver_opts.is_empty() {
                if self.opts.include_secrets {
                    m.put_map("driver_opts", string_map(&v.driver_opts));
                } else {
                    self.note(
                        "",
                        format!(
                            "volume {name}: driver_opts left out (they may hold credentials); add them, or export with --include-secrets"
                        ),
                    );
                }
            }
            m.put_map("labels", string_map(&v.labels));
            out.put(name, m.into_yaml());
        }
        out
    }

    fn service(&mut self, svc: &ServiceSpec) -> Map {
        let c = &svc.container;
        let name = svc.name.as_str();
        let mut m = Map::new();
        m.put_str("image", &c.image);
        if c.build.is_some() {
            self.note(
                name,
                format!(
                    "build: Swarm nodes do not build; push `{}` to a registry the nodes pull from",
                    c.image
                ),
            );
        }
        if let Some(cmd) = &c.entrypoint {
            m.put_list("entrypoint", strings(cmd));
        }
        if let Some(cmd) = &c.command {
            m.put_list("command", strings(cmd));
        }
        let mut env = Map::new();
        for (k, v) in &c.env {
            if svc.secret_env.contains(k) && !self.opts.include_secrets {
                // Interpolated by `docker stack deploy` from its own environment.
                env.put(k, interpolated(&format!("${{{k}}}")));
                self.note(
                    name,
                    format!("environment {k} holds a secret: written as ${{{k}}}; set {k} where `docker stack deploy` runs, or export with --include-secrets"),
                );
            } else {
                env.put_str(k, v);
            }
        }
        m.put_map("environment", env);
        m.put_list("ports", self.ports(svc));
        let volumes = self.volume_mounts(svc);
        let (configs, secrets) = self.files(svc);
        m.put_list("volumes", volumes);
        m.put_list("configs", configs);
        m.put_list("secrets", secrets);
        m.put("networks", self.service_networks(svc));
        if let Some(h) = &c.healthcheck {
            m.put_map("healthcheck", healthcheck(h));
        }
        m.put_map("labels", string_map(&c.labels));
        for (key, value) in [
            ("user", &c.user),
            ("working_dir", &c.working_dir),
            ("hostname", &c.hostname),
            ("stop_signal", &c.stop_signal),
        ] {
            if let Some(v) = value {
                m.put_str(key, v);
            }
        }
        if let Some(secs) = c.stop_grace_period_secs {
            m.put_str("stop_grace_period", &format!("{secs}s"));
        }
        m.put_list("cap_add", strings(&c.cap_add));
        m.put_list("cap_drop", strings(&c.cap_drop));
        if c.read_only {
            m.put("read_only", Yaml::Boolean(true));
        }
        if let Some(init) = c.init {
            m.put("init", Yaml::Boolean(init));
        }
        if c.tty {
            m.put("tty", Yaml::Boolean(true));
        }
        if c.stdin_open {
            m.put("stdin_open", Yaml::Boolean(true));
        }
        m.put_list("extra_hosts", strings(&c.extra_hosts));
        m.put_list("dns", strings(&c.dns));
        m.put_map("sysctls", string_map(&c.sysctls));
        let mut ulimits = Map::new();
        for (k, u) in &c.ulimits {
            let mut um = Map::new();
            um.put("soft", int(u.soft));
            um.put("hard", int(u.hard));
            ulimits.put(k, um.into_yaml());
        }
        m.put_map("ulimits", ulimits);
        if let Some(l) = &c.logging {
            let mut lm = Map::new();
            lm.put_str("driver", &l.driver);
            lm.put_map("options", string_map(&l.options));
            m.put_map("logging", lm);
        }
        m.put_list("expose", strings(&c.expose));
        m.put_map("deploy", self.deploy(svc));
        self.unsupported(svc);
        m
    }

    fn ports(&mut self, svc: &ServiceSpec) -> Vec<Yaml> {
        let mut out = Vec::new();
        for p in &svc.container.ports {
            let mut m = Map::new();
            m.put("target", int(p.container_port.into()));
            if let Some(h) = p.host_port {
                m.put("published", int(h.into()));
            }
            m.put_str("protocol", &p.protocol);
            // The routing mesh: every node answers on the published port.
            m.put_str("mode", "ingress");
            if !p.host_ip.is_empty() {
                self.note(
                    &svc.name,
                    format!(
                        "port {}: the host address {} is not expressible (the routing mesh listens on every node address)",
                        p.container_port, p.host_ip
                    ),
                );
            }
            out.push(m.into_yaml());
        }
        out
    }

    fn volume_mounts(&mut self, svc: &ServiceSpec) -> Vec<Yaml> {
        let c = &svc.container;
        let by_engine = super::volume_names(self.stack);
        let mut out = Vec::new();
        for mount in &c.mounts {
            let mut m = Map::new();
            match mount.kind {
                MountKind::Volume => {
                    m.put_str("type", "volume");
                    let source = by_engine
                        .get(mount.source.as_str())
                        .copied()
                        .unwrap_or(&mount.source);
                    m.put_str("source", source);
                }
                MountKind::Anonymous => m.put_str("type", "volume"),
                MountKind::Bind => {
                    m.put_str("type", "bind");
                    m.put_str("source", &mount.source);
                    self.note(
                        &svc.name,
                        format!(
                            "bind mount {}: the host path must exist on every node the service may run on",
                            mount.source
                        ),
                    );
                }
            }
            m.put_str("target", &mount.target);
            if mount.read_only {
                m.put("read_only", Yaml::Boolean(true));
            }
            out.push(m.into_yaml());
        }
        for (target, options) in &c.tmpfs {
            let mut m = Map::new();
            m.put_str("type", "tmpfs");
            m.put_str("target", target);
            match options.strip_prefix("size=") {
                Some(size) if !size.contains(',') => {
                    let mut t = Map::new();
                    t.put_str("size", size);
                    m.put_map("tmpfs", t);
                }
                _ if options.is_empty() => {}
                _ => self.note(
                    &svc.name,
                    format!("tmpfs {target}: only a size is expressible, not `{options}`"),
                ),
            }
            out.push(m.into_yaml());
        }
        out
    }

    /// Configs, secrets and repository files: (service configs, service secrets); a file that
    /// cannot be a config is noted.
    fn files(&mut self, svc: &ServiceSpec) -> (Vec<Yaml>, Vec<Yaml>) {
        let mut configs = Vec::new();
        let mut secrets = Vec::new();
        for f in &svc.container.files {
            match f.kind {
                FileKind::Secret => secrets.push(self.secret(f)),
                FileKind::Config | FileKind::Bind => {
                    if let Some(c) = self.config(svc, f) {
                        configs.push(c);
                    }
                }
            }
        }
        (configs, secrets)
    }

    fn config(&mut self, svc: &ServiceSpec, f: &FileMount) -> Option<Yaml> {
        let name = match f.kind {
            FileKind::Bind => {
                let clean: String = f
                    .name
                    .trim_start_matches("./")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                format!("file_{clean}")
            }
            _ => f.name.clone(),
        };
        let data = super::single_file(self.payload, &f.address);
        let Some(data) = data else {
            self.note(
                &svc.name,
                format!(
                    "{} at {}: a folder cannot be a Swarm config; build it into the image or use a volume",
                    f.label(),
                    f.target
                ),
            );
            return None;
        };
        if f.kind == FileKind::Bind && !f.read_only {
            self.note(
                &svc.name,
                format!(
                    "{} at {}: exported as a read-only Swarm config (a container cannot write to it)",
                    f.name, f.target
                ),
            );
        }
        let path = format!("{}/configs/{name}", self.files_dir());
        if !self.out.files.iter().any(|e| e.path == path) {
            self.out.files.push(ExportFile {
                path: path.clone(),
                data,
                secret: false,
            });
            let mut top = Map::new();
            top.put_str("file", &format!("./{path}"));
            self.configs.put(&name, top.into_yaml());
        }
        Some(file_ref(&name, f))
    }

    fn secret(&mut self, f: &FileMount) -> Yaml {
        let engine_name = format!("{}_{}", self.stack.name, f.name);
        let key = FilePayload::secret_key(&self.stack.name, &f.name);
        let mut top = Map::new();
        if self.opts.include_secrets {
            let path = format!("{}/secrets/{}", self.files_dir(), f.name);
            if let Some(value) = self.payload.secrets.get(&key) {
                if !self.out.files.iter().any(|e| e.path == path) {
                    self.out.files.push(ExportFile {
                        path: path.clone(),
                        data: value.data.clone(),
                        secret: true,
                    });
                }
            }
            top.put_str("file", &format!("./{path}"));
        } else {
            top.put("external", Yaml::Boolean(true));
            top.put_str("name", &engine_name);
            let command = format!(
                "docker secret create {engine_name} -   # the value of secret `{}` of stack {} on stdin",
                f.name, self.stack.name
            );
            if !self.out.commands.contains(&command) {
                self.out.commands.push(command);
            }
        }
        self.secrets.put(&f.name, top.into_yaml());
        file_ref(&f.name, f)
    }

    fn service_networks(&mut self, svc: &ServiceSpec) -> Yaml {
        let by_engine: BTreeMap<&str, &str> = self
            .stack
            .networks
            .iter()
            .map(|(name, n)| (n.engine_name.as_str(), name.as_str()))
            .collect();
        let mut m = Map::new();
        for (engine, a) in &svc.container.networks {
            let name = by_engine.get(engine.as_str()).copied().unwrap_or(engine);
            let mut am = Map::new();
            let aliases: Vec<Yaml> = a
                .aliases
                .iter()
                .filter(|x| **x != svc.name)
                .map(|x| s(x))
                .collect();
            am.put_list("aliases", aliases);
            if a.ipv4_address.is_some() || a.ipv6_address.is_some() {
                self.note(
                    &svc.name,
                    format!(
                        "network {name}: a fixed address is not expressible for a Swarm service"
                    ),
                );
            }
            m.put(
                name,
                if am.is_empty() {
                    Yaml::Null
                } else {
                    am.into_yaml()
                },
            );
        }
        m.into_yaml()
    }

    fn deploy(&mut self, svc: &ServiceSpec) -> Map {
        let mut d = Map::new();
        match svc.mode {
            DeployMode::Global => d.put_str("mode", "global"),
            DeployMode::Replicated => {
                d.put_str("mode", "replicated");
                d.put("replicas", int(svc.replicas.into()));
            }
        }
        d.put_map("placement", self.placement(svc));
        let c = &svc.container;
        let mut limits = Map::new();
        if let Some(n) = c.nano_cpus {
            limits.put_str("cpus", &cpus(n));
        }
        if let Some(b) = c.memory_bytes {
            limits.put("memory", int(b));
        }
        let mut reservations = Map::new();
        if let Some(n) = svc.reserve_nano_cpus {
            reservations.put_str("cpus", &cpus(n));
        }
        if let Some(b) = svc.reserve_memory_bytes.or(c.memory_reservation_bytes) {
            reservations.put("memory", int(b));
        }
        let mut resources = Map::new();
        resources.put_map("limits", limits);
        resources.put_map("reservations", reservations);
        d.put_map("resources", resources);
        let mut restart = Map::new();
        let condition = match c.restart.name {
            // A job runs to completion: never restarted by the swarm.
            _ if svc.job.is_some() => "none",
            RestartName::No => "none",
            RestartName::OnFailure => "on-failure",
            RestartName::Always | RestartName::UnlessStopped => "any",
        };
        if let Some(j) = &svc.job {
            match &j.schedule {
                Some(expr) => self.note(
                    &svc.name,
                    format!("x-convoy.job schedule `{expr}`: Swarm has no schedule; the service runs once at deploy (restart_policy none); run it at its times from outside, e.g. `docker service update --force`"),
                ),
                None if !j.before.is_empty() => self.note(
                    &svc.name,
                    format!("x-convoy.job before: [{}]: Swarm starts the job and those services together", j.before.join(", ")),
                ),
                None => {}
            }
        }
        restart.put_str("condition", condition);
        if let Some(n) = c.restart.max_attempts {
            restart.put("max_attempts", int(n));
        }
        d.put_map("restart_policy", restart);
        d.put_map("update_config", update_config(&svc.rollout.update));
        d.put_map("rollback_config", update_config(&svc.rollout.rollback));
        if svc.rollout.readiness.is_some() {
            self.note(
                &svc.name,
                "x-convoy.readiness: Swarm gates a rollout on the healthcheck only; fold the probe into the healthcheck",
            );
        }
        d
    }

    fn placement(&mut self, svc: &ServiceSpec) -> Map {
        let p = &svc.placement;
        let mut constraints = Vec::new();
        match p.hosts.as_deref() {
            Some([one]) => constraints.push(s(&format!("node.hostname == {one}"))),
            Some(hosts) if hosts.len() > 1 => {
                let label = format!("convoy.{}.{}", self.stack.name, svc.name);
                constraints.push(s(&format!("node.labels.{label} == true")));
                for h in hosts {
                    self.out
                        .commands
                        .push(format!("docker node update --label-add {label}=true {h}"));
                }
            }
            _ => {}
        }
        for c in &p.constraints {
            let op = if c.equal { "==" } else { "!=" };
            let attr = match &c.attribute {
                ConstraintAttribute::Hostname => "node.hostname".to_string(),
                ConstraintAttribute::Label(k) => format!("node.labels.{k}"),
            };
            constraints.push(s(&format!("{attr} {op} {}", c.value)));
        }
        let mut m = Map::new();
        m.put_list("constraints", constraints);
        let prefs: Vec<Yaml> = p
            .spread
            .iter()
            .map(|k| {
                let mut pm = Map::new();
                pm.put_str("spread", &format!("node.labels.{k}"));
                pm.into_yaml()
            })
            .collect();
        m.put_list("preferences", prefs);
        if let Some(n) = p.max_replicas_per_node {
            m.put("max_replicas_per_node", int(n.into()));
        }
        m
    }

    /// Notes for what a Swarm service cannot run.
    fn unsupported(&mut self, svc: &ServiceSpec) {
        let c = &svc.container;
        let mut notes: Vec<String> = Vec::new();
        if !svc.depends_on.is_empty() {
            notes.push(
                "depends_on: Swarm starts services in any order; make them wait for each other"
                    .into(),
            );
        }
        if let Some(n) = &c.container_name {
            notes.push(format!("container_name {n}: Swarm names tasks itself"));
        }
        if !c.hooks.is_empty() {
            notes
                .push("lifecycle hooks (post_start, pre_stop, pre_start): not run by Swarm".into());
        }
        if !c.share.is_empty() {
            notes.push("volumes_from, network_mode service:/container: or links: not available to Swarm services".into());
        }
        if let Some(mode) = &c.network_mode {
            notes.push(format!(
                "network_mode {mode}: attach the service to the `{mode}` network instead"
            ));
        }
        for (what, set) in [
            ("devices", !c.devices.is_empty()),
            (
                "gpus and device reservations",
                !c.device_requests.is_empty(),
            ),
            ("security_opt", !c.security_opt.is_empty()),
            ("ipc", c.ipc.is_some()),
            ("pid", c.pid.is_some()),
            ("runtime", c.runtime.is_some()),
            ("platform", c.platform.is_some()),
            ("pids_limit", c.pids_limit.is_some()),
            ("memswap_limit", c.memory_swap_bytes.is_some()),
            ("cpu_shares", c.cpu_shares.is_some()),
            (
                "privileged, shm_size and the other less common engine settings",
                !c.more.is_empty(),
            ),
        ] {
            if set {
                notes.push(format!("{what}: ignored by `docker stack deploy`"));
            }
        }
        for n in notes {
            self.note(&svc.name, n);
        }
    }
}

/// A service's reference to a config or secret, long syntax.
fn file_ref(name: &str, f: &FileMount) -> Yaml {
    let mut m = Map::new();
    m.put_str("source", name);
    m.put_str("target", &f.target);
    if let Some(uid) = f.uid {
        m.put_str("uid", &uid.to_string());
    }
    if let Some(gid) = f.gid {
        m.put_str("gid", &gid.to_string());
    }
    if let Some(mode) = f.mode {
        m.put("mode", int(mode.into()));
    }
    m.into_yaml()
}

fn healthcheck(h: &crate::model::spec::Healthcheck) -> Map {
    let mut m = Map::new();
    if h.test.first().map(String::as_str) == Some("NONE") {
        m.put("disable", Yaml::Boolean(true));
        return m;
    }
    m.put_list("test", strings(&h.test));
    for (key, ns) in [
        ("interval", h.interval_ns),
        ("timeout", h.timeout_ns),
        ("start_period", h.start_period_ns),
    ] {
        if let Some(ns) = ns {
            m.put_str(key, &duration_ns(ns));
        }
    }
    if let Some(r) = h.retries {
        m.put("retries", int(r));
    }
    m
}

fn update_config(u: &UpdateConfig) -> Map {
    let mut m = Map::new();
    m.put("parallelism", int(u.parallelism.into()));
    m.put_str("delay", &duration_ms(u.delay_ms));
    m.put_str(
        "order",
        match u.order {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        },
    );
    m.put_str("monitor", &duration_ms(u.monitor_ms));
    m.put_str("failure_action", &u.failure_action.to_string());
    m.put(
        "max_failure_ratio",
        Yaml::Real(format!("{}", u.max_failure_ratio)),
    );
    m
}

/// CPUs from nano-CPUs, as Compose writes them (`"0.5"`).
fn cpus(nano: i64) -> String {
    let whole = nano / 1_000_000_000;
    let frac = nano % 1_000_000_000;
    if frac == 0 {
        format!("{whole}")
    } else {
        let f = format!("{frac:09}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
}
