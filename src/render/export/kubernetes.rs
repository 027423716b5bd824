//! `convoy export --to kubernetes`: one multi-document file per stack (`<stack>.yaml`) holding
//! a Namespace named after the stack and, per service, its workload (a Deployment; a
//! StatefulSet for one replica with named volumes; a DaemonSet for `mode: global`; a Job for a
//! one-shot `restart: "no"` or `on-failure` service or a run-once job; a CronJob for a
//! scheduled job), a Service when it has ports or
//! dependents, ConfigMaps for configs and repository files, PersistentVolumeClaims for named
//! volumes, and Secrets only when their values are asked for.
//!
//! Convoy's keys map onto the pod spec: placement to node affinity, `spread` to topology
//! spread, healthchecks to probes (the readiness probe to an HTTP readiness probe), limits and
//! reservations to resources, `update_config` to the rolling-update strategy, hooks to
//! `postStart`, `preStop` and init containers. Names are made DNS-1123 labels. What has no
//! Kubernetes form is an `Unexpressed` note. Pure; it writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::Yaml;

use super::{
    dump, int, interpolated, s, string_map, strings, ExportFile, ExportOptions, Exported, Map,
    Unexpressed,
};
use crate::model::files::{FileKind, FileMount, FilePayload};
use crate::model::job::Concurrency;
use crate::model::rollout::{FailureAction, UpdateOrder};
use crate::model::spec::{
    ConstraintAttribute, DeployMode, DesiredState, Healthcheck, MountKind, RestartName,
    ServiceSpec, StackSpec,
};

/// Storage a claim asks for when the Compose file cannot say (it never does).
const DEFAULT_CLAIM: &str = "1Gi";

pub fn export(desired: &DesiredState, opts: ExportOptions) -> Exported {
    let mut out = Exported::default();
    for host in desired.hosts.values() {
        for (k, v) in &host.labels {
            out.commands
                .push(format!("kubectl label node {} {k}={v}", host.name));
        }
    }
    for stack in desired.stacks.values() {
        let mut ctx = Ctx {
            stack,
            ns: dns_label(&stack.name),
            payload: &desired.files,
            opts,
            out: &mut out,
            docs: Vec::new(),
            secret_docs: false,
        };
        ctx.stack();
        let text: String = ctx
            .docs
            .iter()
            .map(|d| format!("---\n{}", dump(d)))
            .collect();
        let secret = ctx.secret_docs;
        out.files.push(ExportFile {
            path: format!("{}.yaml", stack.name),
            data: text.into_bytes(),
            secret,
        });
    }
    out
}

/// `name` as a DNS-1123 label: lowercase letters, digits and `-`, at most 63, starting and
/// ending with a letter or digit.
pub fn dns_label(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed: String = mapped.trim_matches('-').chars().take(63).collect();
    let trimmed = trimmed.trim_end_matches('-').to_string();
    if trimmed.is_empty() {
        "x".into()
    } else {
        trimmed
    }
}

struct Ctx<'a> {
    stack: &'a StackSpec,
    ns: String,
    payload: &'a FilePayload,
    opts: ExportOptions,
    out: &'a mut Exported,
    docs: Vec<Yaml>,
    /// A Secret with values is in the file: it is written 0600.
    secret_docs: bool,
}

fn object(api: &str, kind: &str, name: &str, ns: Option<&str>, labels: Option<Map>) -> Map {
    let mut m = Map::new();
    m.put_str("apiVersion", api);
    m.put_str("kind", kind);
    let mut meta = Map::new();
    meta.put_str("name", name);
    if let Some(ns) = ns {
        meta.put_str("namespace", ns);
    }
    if let Some(l) = labels {
        meta.put_map("labels", l);
    }
    m.put_map("metadata", meta);
    m
}

/// Seconds, rounded up, at least `min`.
fn secs(ns: i64, min: i64) -> i64 {
    ((ns + 999_999_999) / 1_000_000_000).max(min)
}

impl Ctx<'_> {
    fn note(&mut self, service: &str, what: impl Into<String>) {
        self.out.unexpressed.push(Unexpressed {
            stack: self.stack.name.clone(),
            service: service.to_string(),
            what: what.into(),
        });
    }

    fn labels(&self, svc: &str) -> Map {
        let mut m = Map::new();
        m.put_str("app.kubernetes.io/name", &dns_label(svc));
        m.put_str("app.kubernetes.io/part-of", &self.ns);
        m
    }

    fn selector(&self, svc: &str) -> Map {
        let mut m = Map::new();
        m.put_str("app.kubernetes.io/name", &dns_label(svc));
        m.put_str("app.kubernetes.io/part-of", &self.ns);
        m
    }

    fn stack(&mut self) {
        if self.ns != self.stack.name {
            let what = format!(
                "namespace {}: the stack's name as a DNS-1123 label",
                self.ns
            );
            self.note("", what);
        }
        let ns = object("v1", "Namespace", &self.ns.clone(), None, None);
        self.docs.push(ns.into_yaml());
        self.claims();
        let dependents: BTreeSet<String> = self
            .stack
            .services
            .values()
            .flat_map(|s| s.depends_on.keys().cloned())
            .collect();
        if self.stack.networks.len() > 1 || self.stack.networks.values().any(|n| n.internal) {
            self.note(
                "",
                "networks: pods share one flat network; isolate them with NetworkPolicies",
            );
        }
        for svc in self.stack.services.values() {
            self.service(svc, dependents.contains(&svc.name));
        }
    }

    fn claims(&mut self) {
        let ns = self.ns.clone();
        for (name, v) in &self.stack.volumes {
            if v.external {
                self.note(
                    "",
                    format!(
                        "external volume {name}: create a PersistentVolumeClaim `{}` for it",
                        dns_label(name)
                    ),
                );
                continue;
            }
            let mut c = object(
                "v1",
                "PersistentVolumeClaim",
                &dns_label(name),
                Some(&ns),
                None,
            );
            let mut spec = Map::new();
            spec.put_list("accessModes", vec![s("ReadWriteOnce")]);
            let mut req = Map::new();
            req.put_str("storage", DEFAULT_CLAIM);
            let mut res = Map::new();
            res.put_map("requests", req);
            spec.put_map("resources", res);
            c.put_map("spec", spec);
            self.docs.push(c.into_yaml());
            self.note(
                "",
                format!("volume {name}: a claim of {DEFAULT_CLAIM} (Compose gives no size) in the default storage class; the data is not moved"),
            );
            if v.driver != "local" && !v.driver.is_empty() {
                self.note(
                    "",
                    format!(
                        "volume {name}: driver {} has no Kubernetes form; pick a storage class",
                        v.driver
                    ),
                );
            }
        }
    }

    fn service(&mut self, svc: &ServiceSpec, has_dependents: bool) {
        let name = dns_label(&svc.name);
        if name != svc.name {
            self.note(&svc.name, format!("named `{name}` (a DNS-1123 label)"));
        }
        let c = &svc.container;
        let job = svc.job.as_ref();
        let one_shot = job.is_some()
            || matches!(c.restart.name, RestartName::No | RestartName::OnFailure)
                && svc.mode == DeployMode::Replicated;
        let named_volumes = c.mounts.iter().any(|m| m.kind == MountKind::Volume);
        let cron = match job.and_then(|j| j.schedule.as_deref()) {
            Some(expr) => match cron_schedule(expr) {
                Some(cron) => Some(cron),
                None => {
                    self.note(
                        &svc.name,
                        format!("x-convoy.job schedule `{expr}`: a CronJob's schedule has minutes at the finest and no `@every` of this interval; no workload is written"),
                    );
                    return;
                }
            },
            None => None,
        };
        let (api, kind) = if cron.is_some() {
            ("batch/v1", "CronJob")
        } else if one_shot {
            ("batch/v1", "Job")
        } else if svc.mode == DeployMode::Global {
            ("apps/v1", "DaemonSet")
        } else if named_volumes && svc.replicas == 1 {
            ("apps/v1", "StatefulSet")
        } else {
            ("apps/v1", "Deployment")
        };
        if named_volumes && svc.replicas > 1 && kind == "Deployment" {
            self.note(
                &svc.name,
                format!("{} replicas share a named volume: its ReadWriteOnce claim needs a ReadWriteMany storage class", svc.replicas),
            );
        }
        let ns = self.ns.clone();
        let mut w = object(api, kind, &name, Some(&ns), Some(self.labels(&svc.name)));
        let mut spec = Map::new();
        let pod = self.pod(svc, one_shot);
        let mut template = Map::new();
        let mut tmeta = Map::new();
        tmeta.put_map("labels", self.labels(&svc.name));
        if !c.labels.is_empty() {
            tmeta.put_map("annotations", string_map(&c.labels));
        }
        template.put_map("metadata", tmeta);
        template.put_map("spec", pod);
        match kind {
            "CronJob" => {
                let j = job.expect("a CronJob is a job");
                // Convoy's default deadline is the schedule's period: say it in full.
                let deadline = j.deadline_secs.or_else(|| {
                    let expr = j.schedule.as_deref()?;
                    let period = crate::model::schedule::Schedule::parse(expr, Some(&j.timezone))
                        .ok()?
                        .period(0)?;
                    u64::try_from(period).ok()
                });
                spec.put_str("schedule", cron.as_deref().unwrap_or_default());
                spec.put_str("timeZone", &j.timezone);
                spec.put_str(
                    "concurrencyPolicy",
                    match j.concurrency {
                        Concurrency::Forbid => "Forbid",
                        Concurrency::Allow => "Allow",
                        Concurrency::Replace => "Replace",
                    },
                );
                if let Some(d) = deadline {
                    spec.put("startingDeadlineSeconds", int(d as i64));
                }
                spec.put("successfulJobsHistoryLimit", int(j.history.into()));
                spec.put("failedJobsHistoryLimit", int(j.history.into()));
                let mut jspec = Map::new();
                jspec.put("backoffLimit", int(0));
                if let Some(d) = deadline {
                    jspec.put("activeDeadlineSeconds", int(d as i64));
                }
                jspec.put_map("template", template);
                let mut jt = Map::new();
                jt.put_map("spec", jspec);
                spec.put_map("jobTemplate", jt);
                w.put_map("spec", spec);
                self.docs.push(w.into_yaml());
                return;
            }
            "Job" if job.is_some() => {
                let j = job.expect("checked");
                spec.put("backoffLimit", int(0));
                if let Some(d) = j.deadline_secs {
                    spec.put("activeDeadlineSeconds", int(d as i64));
                }
                if !j.before.is_empty() {
                    self.note(
                        &svc.name,
                        format!("x-convoy.job before: [{}]: Kubernetes starts the Job and those workloads together; make them wait for it (an init container, or your deploy tool's pre-sync hook)", j.before.join(", ")),
                    );
                }
            }
            "Job" => {
                spec.put("completions", int(svc.replicas.max(1).into()));
                spec.put("parallelism", int(svc.replicas.max(1).into()));
                let retries = match c.restart.name {
                    RestartName::OnFailure => c.restart.max_attempts.unwrap_or(6),
                    _ => 0,
                };
                spec.put("backoffLimit", int(retries));
            }
            _ => {
                if kind != "DaemonSet" {
                    spec.put("replicas", int(svc.replicas.into()));
                }
                let mut sel = Map::new();
                sel.put_map("matchLabels", self.selector(&svc.name));
                spec.put_map("selector", sel);
                if kind == "StatefulSet" {
                    spec.put_str("serviceName", &name);
                }
                self.strategy(svc, kind, &mut spec);
            }
        }
        spec.put_map("template", template);
        w.put_map("spec", spec);
        self.docs.push(w.into_yaml());
        self.kube_service(svc, has_dependents || kind == "StatefulSet");
    }

    fn strategy(&mut self, svc: &ServiceSpec, kind: &str, spec: &mut Map) {
        let u = &svc.rollout.update;
        let step = if u.parallelism == 0 {
            s("100%")
        } else {
            int(u.parallelism.into())
        };
        let mut ru = Map::new();
        match (kind, u.order) {
            ("Deployment", UpdateOrder::StopFirst) => {
                ru.put("maxUnavailable", step);
                ru.put("maxSurge", int(0));
            }
            ("Deployment", UpdateOrder::StartFirst) => {
                ru.put("maxUnavailable", int(0));
                ru.put("maxSurge", step);
            }
            ("DaemonSet", _) => ru.put("maxUnavailable", step),
            _ => {}
        }
        let mut st = Map::new();
        st.put_str("type", "RollingUpdate");
        st.put_map("rollingUpdate", ru);
        let key = if kind == "Deployment" {
            "strategy"
        } else {
            "updateStrategy"
        };
        spec.put_map(key, st);
        let monitor = (u.monitor_ms / 1000) as i64;
        if monitor > 0 {
            spec.put("minReadySeconds", int(monitor));
        }
        if kind == "Deployment" {
            let deadline = ((svc.rollout.progress_deadline_ms / 1000) as i64).max(monitor + 1);
            spec.put("progressDeadlineSeconds", int(deadline));
        }
        if u.delay_ms > 0 {
            self.note(
                &svc.name,
                "update_config.delay: Kubernetes has no pause between batches",
            );
        }
        if u.failure_action != FailureAction::Pause {
            self.note(
                &svc.name,
                format!("update_config.failure_action {}: a failed Deployment rollout stops; undo it with `kubectl rollout undo`", u.failure_action),
            );
        }
    }

    fn pod(&mut self, svc: &ServiceSpec, one_shot: bool) -> Map {
        let c = &svc.container;
        let mut pod = Map::new();
        let mut volumes: Vec<Yaml> = Vec::new();
        let mut container = self.container(svc, &mut volumes);
        let mut inits = Vec::new();
        for (i, h) in c.hooks.pre_start.iter().enumerate() {
            let mut ic = Map::new();
            ic.put_str("name", &format!("pre-start-{}", i + 1));
            ic.put_str("image", &c.image);
            ic.put_list("command", strings(&h.command));
            if let Some(mounts) = container_mounts(&container) {
                ic.put("volumeMounts", mounts);
            }
            inits.push(ic.into_yaml());
        }
        let mut lifecycle = Map::new();
        for (key, hooks) in [
            ("postStart", &c.hooks.post_start),
            ("preStop", &c.hooks.pre_stop),
        ] {
            match hooks.as_slice() {
                [] => {}
                [h] => {
                    let mut exec = Map::new();
                    exec.put_list("command", strings(&h.command));
                    let mut hm = Map::new();
                    hm.put_map("exec", exec);
                    lifecycle.put_map(key, hm);
                    if h.user.is_some()
                        || h.privileged
                        || h.working_dir.is_some()
                        || !h.environment.is_empty()
                    {
                        self.note(&svc.name, format!("{key} hook: only its command carries over (not its user, privileges, working_dir or environment)"));
                    }
                }
                _ => self.note(
                    &svc.name,
                    format!("{key}: Kubernetes runs one hook; {} declared", hooks.len()),
                ),
            }
        }
        container.put_map("lifecycle", lifecycle);
        pod.put_list("initContainers", inits);
        pod.put_list("containers", vec![container.into_yaml()]);
        pod.put_list("volumes", volumes);
        pod.put_str(
            "restartPolicy",
            if one_shot {
                if c.restart.name == RestartName::OnFailure {
                    "OnFailure"
                } else {
                    "Never"
                }
            } else {
                "Always"
            },
        );
        if let Some(secs) = c.stop_grace_period_secs {
            pod.put("terminationGracePeriodSeconds", int(secs));
        }
        if let Some(h) = &c.hostname {
            pod.put_str("hostname", &dns_label(h));
        }
        let mut aliases: BTreeMap<String, Vec<Yaml>> = BTreeMap::new();
        for e in &c.extra_hosts {
            if let Some((host, ip)) = e.split_once(':') {
                aliases.entry(ip.to_string()).or_default().push(s(host));
            }
        }
        let aliases: Vec<Yaml> = aliases
            .into_iter()
            .map(|(ip, names)| {
                let mut m = Map::new();
                m.put_str("ip", &ip);
                m.put_list("hostnames", names);
                m.into_yaml()
            })
            .collect();
        pod.put_list("hostAliases", aliases);
        if !c.dns.is_empty() {
            let mut d = Map::new();
            d.put_list("nameservers", strings(&c.dns));
            pod.put_map("dnsConfig", d);
        }
        let mut psc = Map::new();
        let sysctls: Vec<Yaml> = c
            .sysctls
            .iter()
            .map(|(k, v)| {
                let mut m = Map::new();
                m.put_str("name", k);
                m.put_str("value", v);
                m.into_yaml()
            })
            .collect();
        psc.put_list("sysctls", sysctls);
        pod.put_map("securityContext", psc);
        match c.network_mode.as_deref() {
            Some("host") => pod.put("hostNetwork", Yaml::Boolean(true)),
            Some(other) => self.note(
                &svc.name,
                format!("network_mode {other}: no Kubernetes form"),
            ),
            None => {}
        }
        if c.ipc.as_deref() == Some("host") {
            pod.put("hostIPC", Yaml::Boolean(true));
        } else if let Some(ipc) = &c.ipc {
            self.note(&svc.name, format!("ipc {ipc}: no Kubernetes form"));
        }
        if c.pid.as_deref() == Some("host") {
            pod.put("hostPID", Yaml::Boolean(true));
        }
        if let Some(rt) = &c.runtime {
            pod.put_str("runtimeClassName", &dns_label(rt));
            self.note(
                &svc.name,
                format!(
                    "runtime {rt}: a RuntimeClass `{}` must exist",
                    dns_label(rt)
                ),
            );
        }
        pod.put_map("affinity", self.affinity(svc));
        let spread: Vec<Yaml> = svc
            .placement
            .spread
            .iter()
            .map(|k| {
                let mut m = Map::new();
                m.put("maxSkew", int(1));
                m.put_str("topologyKey", k);
                m.put_str("whenUnsatisfiable", "ScheduleAnyway");
                let mut sel = Map::new();
                sel.put_map("matchLabels", self.selector(&svc.name));
                m.put_map("labelSelector", sel);
                m.into_yaml()
            })
            .collect();
        pod.put_list("topologySpreadConstraints", spread);
        self.unsupported(svc);
        pod
    }

    fn affinity(&mut self, svc: &ServiceSpec) -> Map {
        let p = &svc.placement;
        let mut exprs = Vec::new();
        if let Some(hosts) = &p.hosts {
            exprs.push(expr("kubernetes.io/hostname", "In", hosts));
        }
        for c in &p.constraints {
            let key = match &c.attribute {
                ConstraintAttribute::Hostname => "kubernetes.io/hostname".to_string(),
                ConstraintAttribute::Label(k) => k.clone(),
            };
            let op = if c.equal { "In" } else { "NotIn" };
            exprs.push(expr(&key, op, std::slice::from_ref(&c.value)));
        }
        let mut aff = Map::new();
        if !exprs.is_empty() {
            let mut term = Map::new();
            term.put_list("matchExpressions", exprs);
            let mut req = Map::new();
            req.put_list("nodeSelectorTerms", vec![term.into_yaml()]);
            let mut na = Map::new();
            na.put_map("requiredDuringSchedulingIgnoredDuringExecution", req);
            aff.put_map("nodeAffinity", na);
        }
        match p.max_replicas_per_node {
            Some(1) => {
                let mut sel = Map::new();
                sel.put_map("matchLabels", self.selector(&svc.name));
                let mut term = Map::new();
                term.put_map("labelSelector", sel);
                term.put_str("topologyKey", "kubernetes.io/hostname");
                let mut anti = Map::new();
                anti.put_list(
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    vec![term.into_yaml()],
                );
                aff.put_map("podAntiAffinity", anti);
            }
            Some(n) => self.note(
                &svc.name,
                format!(
                    "max_replicas_per_node {n}: only 1 has a Kubernetes form (pod anti-affinity)"
                ),
            ),
            None => {}
        }
        aff
    }

    fn container(&mut self, svc: &ServiceSpec, volumes: &mut Vec<Yaml>) -> Map {
        let c = &svc.container;
        let mut m = Map::new();
        m.put_str("name", &dns_label(&svc.name));
        m.put_str("image", &c.image);
        if c.build.is_some() {
            self.note(
                &svc.name,
                format!(
                    "build: push `{}` to a registry the cluster pulls from",
                    c.image
                ),
            );
        }
        // Docker's entrypoint is Kubernetes' command, and Docker's command its args.
        if let Some(e) = &c.entrypoint {
            m.put_list("command", raw_strings(e));
        }
        if let Some(a) = &c.command {
            m.put_list("args", raw_strings(a));
        }
        if let Some(w) = &c.working_dir {
            m.put("workingDir", raw(w));
        }
        m.put_list("env", self.env(svc));
        let mut ports = Vec::new();
        for p in &c.ports {
            let mut pm = Map::new();
            pm.put("containerPort", int(p.container_port.into()));
            pm.put_str("protocol", &p.protocol.to_uppercase());
            ports.push(pm.into_yaml());
        }
        m.put_list("ports", ports);
        let mut mounts = Vec::new();
        self.mounts(svc, &mut mounts, volumes);
        m.put_list("volumeMounts", mounts);
        if let Some(h) = &c.healthcheck {
            if let Some(probe) = probe(h) {
                m.put("livenessProbe", probe.clone());
                if svc.rollout.readiness.is_none() {
                    m.put("readinessProbe", probe);
                }
            }
        }
        if let Some(r) = &svc.rollout.readiness {
            let mut get = Map::new();
            get.put_str("path", &r.path);
            get.put("port", int(r.port.into()));
            let mut p = Map::new();
            p.put_map("httpGet", get);
            m.put_map("readinessProbe", p);
        }
        let mut limits = Map::new();
        if let Some(n) = c.nano_cpus {
            limits.put_str("cpu", &format!("{}m", (n / 1_000_000).max(1)));
        }
        if let Some(b) = c.memory_bytes {
            limits.put_str("memory", &b.to_string());
        }
        let mut requests = Map::new();
        if let Some(n) = svc.reserve_nano_cpus {
            requests.put_str("cpu", &format!("{}m", (n / 1_000_000).max(1)));
        }
        if let Some(b) = svc.reserve_memory_bytes.or(c.memory_reservation_bytes) {
            requests.put_str("memory", &b.to_string());
        }
        let mut res = Map::new();
        res.put_map("limits", limits);
        res.put_map("requests", requests);
        m.put_map("resources", res);
        let mut sc = Map::new();
        if let Some(u) = &c.user {
            let (uid, gid) = u
                .split_once(':')
                .map_or((u.as_str(), None), |(a, b)| (a, Some(b)));
            match uid.parse::<i64>() {
                Ok(n) => sc.put("runAsUser", int(n)),
                Err(_) => self.note(
                    &svc.name,
                    format!("user {u}: Kubernetes takes a numeric user ID"),
                ),
            }
            if let Some(g) = gid.and_then(|g| g.parse::<i64>().ok()) {
                sc.put("runAsGroup", int(g));
            }
        }
        if c.read_only {
            sc.put("readOnlyRootFilesystem", Yaml::Boolean(true));
        }
        if c.more.privileged {
            sc.put("privileged", Yaml::Boolean(true));
        }
        let mut caps = Map::new();
        caps.put_list("add", strings(&c.cap_add));
        caps.put_list("drop", strings(&c.cap_drop));
        sc.put_map("capabilities", caps);
        m.put_map("securityContext", sc);
        if c.tty {
            m.put("tty", Yaml::Boolean(true));
        }
        if c.stdin_open {
            m.put("stdin", Yaml::Boolean(true));
        }
        m
    }

    fn env(&mut self, svc: &ServiceSpec) -> Vec<Yaml> {
        let c = &svc.container;
        let secret_name = format!("{}-env", dns_label(&svc.name));
        let mut secret_values = Map::new();
        let mut out = Vec::new();
        for (k, v) in &c.env {
            let mut e = Map::new();
            e.put("name", raw(k));
            if svc.secret_env.contains(k) {
                let mut key = Map::new();
                key.put_str("name", &secret_name);
                key.put("key", raw(k));
                let mut from = Map::new();
                from.put_map("secretKeyRef", key);
                e.put_map("valueFrom", from);
                secret_values.put(k, raw(v));
            } else {
                e.put("value", raw(v));
            }
            out.push(e.into_yaml());
        }
        if !secret_values.is_empty() {
            if self.opts.include_secrets {
                let ns = self.ns.clone();
                let mut obj = object("v1", "Secret", &secret_name, Some(&ns), None);
                obj.put_str("type", "Opaque");
                obj.put_map("stringData", secret_values);
                self.docs.push(obj.into_yaml());
                self.secret_docs = true;
            } else {
                self.out.commands.push(format!(
                    "kubectl -n {} create secret generic {secret_name} --from-env-file=FILE   # the secret environment of {}/{}",
                    self.ns, self.stack.name, svc.name
                ));
            }
        }
        out
    }

    fn mounts(&mut self, svc: &ServiceSpec, mounts: &mut Vec<Yaml>, volumes: &mut Vec<Yaml>) {
        let c = &svc.container;
        let by_engine = super::volume_names(self.stack);
        let mut n = 0;
        let mut vol = |mounts: &mut Vec<Yaml>,
                       volumes: &mut Vec<Yaml>,
                       source: Map,
                       target: &str,
                       read_only: bool,
                       sub_path: Option<&str>| {
            n += 1;
            let name = format!("v{n}");
            let mut vm = Map::new();
            vm.put_str("name", &name);
            vm.put_str("mountPath", target);
            if let Some(p) = sub_path {
                vm.put_str("subPath", p);
            }
            if read_only {
                vm.put("readOnly", Yaml::Boolean(true));
            }
            mounts.push(vm.into_yaml());
            let mut v = Map::new();
            v.put_str("name", &name);
            for (k, val) in source.0 {
                v.0.insert(k, val);
            }
            volumes.push(v.into_yaml());
        };
        for m in &c.mounts {
            let mut src = Map::new();
            match m.kind {
                MountKind::Volume => {
                    let name = by_engine
                        .get(m.source.as_str())
                        .copied()
                        .unwrap_or(&m.source);
                    let mut claim = Map::new();
                    claim.put_str("claimName", &dns_label(name));
                    src.put_map("persistentVolumeClaim", claim);
                }
                MountKind::Anonymous => src.put("emptyDir", Yaml::Hash(Default::default())),
                MountKind::Bind => {
                    let mut hp = Map::new();
                    hp.put_str("path", &m.source);
                    src.put_map("hostPath", hp);
                    self.note(
                        &svc.name,
                        format!(
                            "bind mount {}: a hostPath volume; the path must exist on every node",
                            m.source
                        ),
                    );
                }
            }
            vol(mounts, volumes, src, &m.target, m.read_only, None);
        }
        for (target, options) in &c.tmpfs {
            let mut ed = Map::new();
            ed.put_str("medium", "Memory");
            if let Some(size) = options.strip_prefix("size=").filter(|s| !s.contains(',')) {
                ed.put_str("sizeLimit", &k8s_quantity(size));
            }
            let mut src = Map::new();
            src.put_map("emptyDir", ed);
            vol(mounts, volumes, src, target, false, None);
        }
        for f in &c.files {
            let Some((src, key)) = self.file_source(svc, f) else {
                continue;
            };
            vol(
                mounts,
                volumes,
                src,
                &f.target,
                f.read_only || f.kind != FileKind::Bind,
                Some(&key),
            );
        }
    }

    /// The volume source of a config, secret or repository file and the key it is mounted
    /// from; `None` (noted) when it cannot be one.
    fn file_source(&mut self, svc: &ServiceSpec, f: &FileMount) -> Option<(Map, String)> {
        let ns = self.ns.clone();
        let key = "content".to_string();
        let mut item = Map::new();
        item.put_str("key", &key);
        item.put_str("path", &key);
        if let Some(mode) = f.mode {
            item.put("mode", int(mode.into()));
        }
        if f.kind == FileKind::Secret {
            let name = dns_label(&format!("secret-{}", f.name));
            let value_key = FilePayload::secret_key(&self.stack.name, &f.name);
            if self.opts.include_secrets {
                if !self.docs.iter().any(|d| {
                    d["metadata"]["name"].as_str() == Some(&name)
                        && d["kind"].as_str() == Some("Secret")
                }) {
                    let mut obj = object("v1", "Secret", &name, Some(&ns), None);
                    obj.put_str("type", "Opaque");
                    let mut data = Map::new();
                    if let Some(v) = self.payload.secrets.get(&value_key) {
                        use base64::Engine as _;
                        data.put_str(
                            &key,
                            &base64::engine::general_purpose::STANDARD.encode(&v.data),
                        );
                    }
                    obj.put_map("data", data);
                    self.docs.push(obj.into_yaml());
                    self.secret_docs = true;
                }
            } else {
                let cmd = format!(
                    "kubectl -n {ns} create secret generic {name} --from-file={key}=FILE   # the value of secret `{}` of stack {}",
                    f.name, self.stack.name
                );
                if !self.out.commands.contains(&cmd) {
                    self.out.commands.push(cmd);
                }
            }
            let mut sv = Map::new();
            sv.put_str("secretName", &name);
            sv.put_list("items", vec![item.into_yaml()]);
            let mut src = Map::new();
            src.put_map("secret", sv);
            return Some((src, key));
        }
        let data = super::single_file(self.payload, &f.address);
        let Some(data) = data else {
            self.note(&svc.name, format!("{} at {}: a folder cannot be a ConfigMap key; build it into the image or use a volume", f.label(), f.target));
            return None;
        };
        if f.kind == FileKind::Bind && !f.read_only {
            self.note(
                &svc.name,
                format!(
                    "{} at {}: mounted read-only from a ConfigMap",
                    f.name, f.target
                ),
            );
        }
        let base = match f.kind {
            FileKind::Bind => format!("file-{}", f.name.trim_start_matches("./")),
            _ => format!("config-{}", f.name),
        };
        let name = dns_label(&base);
        if !self.docs.iter().any(|d| {
            d["metadata"]["name"].as_str() == Some(&name) && d["kind"].as_str() == Some("ConfigMap")
        }) {
            let mut obj = object("v1", "ConfigMap", &name, Some(&ns), None);
            let mut map = Map::new();
            match String::from_utf8(data) {
                Ok(text) => {
                    map.put(&key, raw(&text));
                    obj.put_map("data", map);
                }
                Err(e) => {
                    use base64::Engine as _;
                    map.put_str(
                        &key,
                        &base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                    );
                    obj.put_map("binaryData", map);
                }
            }
            self.docs.push(obj.into_yaml());
        }
        let mut cv = Map::new();
        cv.put_str("name", &name);
        cv.put_list("items", vec![item.into_yaml()]);
        let mut src = Map::new();
        src.put_map("configMap", cv);
        Some((src, key))
    }

    fn kube_service(&mut self, svc: &ServiceSpec, needed: bool) {
        let c = &svc.container;
        let mut ports: BTreeSet<(u16, String, Option<u16>)> = BTreeSet::new();
        for p in &c.ports {
            ports.insert((p.container_port, p.protocol.to_uppercase(), p.host_port));
            if !p.host_ip.is_empty() {
                self.note(
                    &svc.name,
                    format!(
                        "port {}: the host address {} has no Kubernetes form",
                        p.container_port, p.host_ip
                    ),
                );
            }
        }
        for e in &c.expose {
            let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
            if let Ok(port) = port.parse::<u16>() {
                ports.insert((port, proto.to_uppercase(), None));
            }
        }
        if ports.is_empty() && !needed {
            return;
        }
        let published = ports.iter().any(|p| p.2.is_some());
        let ns = self.ns.clone();
        let mut obj = object(
            "v1",
            "Service",
            &dns_label(&svc.name),
            Some(&ns),
            Some(self.labels(&svc.name)),
        );
        let mut spec = Map::new();
        if published {
            // A published port answers outside the cluster, as Compose's does outside the host.
            spec.put_str("type", "LoadBalancer");
        }
        spec.put_map("selector", self.selector(&svc.name));
        if ports.is_empty() {
            // Dependents need a name only: a headless Service gives it.
            spec.put_str("clusterIP", "None");
        }
        let list: Vec<Yaml> = ports
            .iter()
            .map(|(port, proto, host)| {
                let mut m = Map::new();
                m.put_str("name", &format!("{}-{port}", proto.to_lowercase()));
                m.put("port", int(host.unwrap_or(*port).into()));
                m.put("targetPort", int((*port).into()));
                m.put_str("protocol", proto);
                m.into_yaml()
            })
            .collect();
        spec.put_list("ports", list);
        obj.put_map("spec", spec);
        self.docs.push(obj.into_yaml());
    }

    fn unsupported(&mut self, svc: &ServiceSpec) {
        let c = &svc.container;
        let mut notes: Vec<String> = Vec::new();
        if !svc.depends_on.is_empty() {
            notes.push("depends_on: Kubernetes starts pods in any order; wait in an init container or retry".into());
        }
        if let Some(n) = &c.container_name {
            notes.push(format!("container_name {n}: Kubernetes names pods itself"));
        }
        if !c.share.is_empty() {
            notes.push(
                "volumes_from or links: share through a volume, or run sidecars in one pod".into(),
            );
        }
        for (what, set) in [
            ("devices", !c.devices.is_empty()),
            (
                "gpus and device reservations (a device plugin's resources)",
                !c.device_requests.is_empty(),
            ),
            ("security_opt", !c.security_opt.is_empty()),
            (
                "platform (a nodeSelector on kubernetes.io/arch)",
                c.platform.is_some(),
            ),
            ("pids_limit", c.pids_limit.is_some()),
            ("memswap_limit", c.memory_swap_bytes.is_some()),
            ("cpu_shares", c.cpu_shares.is_some()),
            ("ulimits", !c.ulimits.is_empty()),
            (
                "logging (the cluster's log collection decides)",
                c.logging.is_some(),
            ),
            ("stop_signal", c.stop_signal.is_some()),
            ("init", c.init.is_some()),
            ("the less common engine settings other than privileged", {
                let mut m = c.more.clone();
                m.privileged = false;
                !m.is_empty()
            }),
        ] {
            if set {
                notes.push(format!("{what}: no Kubernetes form"));
            }
        }
        for n in notes {
            self.note(&svc.name, n);
        }
    }
}

/// A value as Kubernetes reads it: `$(VAR)` is a reference there, so a literal `$(` is
/// written `$$(`; a `$` alone is kept.
/// A CronJob schedule for a job's: a 5-field expression or a macro as written (Kubernetes
/// reads both), and `@every` where whole minutes or hours divide the hour or the day evenly
/// (`@every 15m` is `*/15 * * * *`, both counted from the hour as Convoy counts from the epoch);
/// `None` where no schedule says the same.
fn cron_schedule(expr: &str) -> Option<String> {
    if !expr.starts_with("@every") {
        return Some(expr.to_string());
    }
    let secs = crate::model::schedule::Schedule::parse(expr, None)
        .ok()?
        .period(0)?;
    match secs {
        60 => Some("* * * * *".into()),
        s if s % 60 == 0 && s < 3600 && 3600 % s == 0 => Some(format!("*/{} * * * *", s / 60)),
        3600 => Some("0 * * * *".into()),
        s if s % 3600 == 0 && s < 86_400 && 86_400 % s == 0 => {
            Some(format!("0 */{} * * *", s / 3600))
        }
        86_400 => Some("0 0 * * *".into()),
        _ => None,
    }
}

fn raw(v: &str) -> Yaml {
    interpolated(&v.replace("$(", "$$("))
}

fn raw_strings(items: &[String]) -> Vec<Yaml> {
    items.iter().map(|v| raw(v)).collect()
}

fn expr(key: &str, op: &str, values: &[String]) -> Yaml {
    let mut m = Map::new();
    m.put_str("key", key);
    m.put_str("operator", op);
    m.put_list("values", strings(values));
    m.into_yaml()
}

/// The container's mounts, for an init container that needs the same volumes.
fn container_mounts(container: &Map) -> Option<Yaml> {
    container
        .0
        .get(&Yaml::String("volumeMounts".into()))
        .cloned()
}

/// A healthcheck as an exec probe; `None` for `NONE`.
fn probe(h: &Healthcheck) -> Option<Yaml> {
    let command: Vec<Yaml> = match h.test.first().map(String::as_str) {
        Some("CMD") => raw_strings(&h.test[1..]),
        Some("CMD-SHELL") => {
            let mut v = vec![raw("/bin/sh"), raw("-c")];
            v.extend(raw_strings(&h.test[1..]));
            v
        }
        _ => return None,
    };
    let mut exec = Map::new();
    exec.put_list("command", command);
    let mut p = Map::new();
    p.put_map("exec", exec);
    if let Some(ns) = h.start_period_ns {
        p.put("initialDelaySeconds", int(secs(ns, 0)));
    }
    if let Some(ns) = h.interval_ns {
        p.put("periodSeconds", int(secs(ns, 1)));
    }
    if let Some(ns) = h.timeout_ns {
        p.put("timeoutSeconds", int(secs(ns, 1)));
    }
    if let Some(r) = h.retries {
        p.put("failureThreshold", int(r.max(1)));
    }
    Some(p.into_yaml())
}

/// A Compose size (`64m`, `1g`, `1024`) as a Kubernetes quantity.
fn k8s_quantity(size: &str) -> String {
    let lower = size.to_ascii_lowercase();
    for (suffix, unit) in [("k", "Ki"), ("m", "Mi"), ("g", "Gi")] {
        if let Some(n) = lower
            .strip_suffix(suffix)
            .or_else(|| lower.strip_suffix(&format!("{suffix}b")))
        {
            return format!("{n}{unit}");
        }
    }
    lower.trim_end_matches('b').to_string()
}
