//! Field-level comparison of a desired `ContainerSpec` with what the engine really runs.
//!
//! Drift is read from inspect, not from labels: a container changed with `docker update`, or
//! recreated by hand with Convoy's labels and another setting, shows here field by field. Fields
//! the spec leaves out are compared with what the image supplies by default, so an unset
//! `command` does not look like drift. Pure: no I/O. Values of secret variables never leave this
//! module in clear: they are reported as changed, never shown.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::observed::ImageDefaults;
use crate::model::spec::{ContainerSpec, MountKind, RestartName};

pub use crate::model::plan::FieldChange;

pub const MASK: &str = "(secret)";
const NONE: &str = "(none)";

/// Every field where `actual` (from inspect) differs from `desired`, in a fixed order.
pub fn container_drift(
    desired: &ContainerSpec,
    actual: &ContainerSpec,
    image: &ImageDefaults,
    secret_env: &BTreeSet<String>,
) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, old: String, new: String| {
        if old != new {
            out.push(FieldChange {
                field: field.to_string(),
                old,
                new,
            });
        }
    };

    push("image", actual.image.clone(), desired.image.clone());

    // The engine's merge of a container's config with its image's (moby's `merge`): an empty or
    // absent entrypoint takes the image's command when no command is given, and an absent
    // entrypoint takes the image's; a non-empty entrypoint leaves the command as given.
    let nonempty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    let want_entry = match &desired.entrypoint {
        None => image.entrypoint.clone(),
        Some(e) => Some(e.clone()),
    };
    let want_cmd = if nonempty(&desired.entrypoint) || nonempty(&desired.command) {
        desired.command.clone()
    } else {
        image.command.clone()
    };
    push("entrypoint", words(&actual.entrypoint), words(&want_entry));
    push("command", words(&actual.command), words(&want_cmd));

    // Environment: the image's variables overlaid with the spec's, compared per variable.
    let mut want_env = image.env.clone();
    want_env.extend(desired.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    diff_maps(
        "environment",
        &actual.env,
        &want_env,
        |k| secret_env.contains(k) || crate::model::spec::is_secret_name(k),
        &mut out,
    );

    // Labels: the image's overlaid with the user's; Convoy's own labels are compared elsewhere.
    let mut want_labels = image.labels.clone();
    want_labels.extend(desired.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let actual_labels: BTreeMap<String, String> = actual
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("convoy."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    want_labels.retain(|k, _| !k.starts_with("convoy."));
    diff_maps("labels", &actual_labels, &want_labels, |_| false, &mut out);

    let mut push = |field: &str, old: String, new: String| {
        if old != new {
            out.push(FieldChange {
                field: field.to_string(),
                old,
                new,
            });
        }
    };
    push(
        "ports",
        list(actual.ports.iter().map(port_str)),
        list(desired.ports.iter().map(port_str)),
    );
    // Anonymous volumes for paths the image declares are the engine's doing, not drift.
    let actual_mounts: Vec<String> = actual
        .mounts
        .iter()
        .filter(|m| {
            !(m.kind == MountKind::Volume
                && image.volumes.contains(&m.target)
                && !desired.mounts.iter().any(|d| d.target == m.target))
        })
        .map(mount_str)
        .collect();
    let mut want_mounts: Vec<String> = desired.mounts.iter().map(mount_str).collect();
    let mut actual_mounts = actual_mounts;
    // Compared as sets: the engine does not keep the order they were written in.
    want_mounts.sort();
    actual_mounts.sort();
    push(
        "volumes",
        list(actual_mounts.into_iter()),
        list(want_mounts.into_iter()),
    );
    push("restart", restart_str(actual), restart_str(desired));
    // The engine fills what a healthcheck leaves out from the image's, field by field.
    let mut want_health = match (&desired.healthcheck, &image.healthcheck) {
        (Some(d), Some(i)) => Some(crate::model::spec::Healthcheck {
            test: if d.test.is_empty() {
                i.test.clone()
            } else {
                d.test.clone()
            },
            interval_ns: d.interval_ns.filter(|n| *n > 0).or(i.interval_ns),
            timeout_ns: d.timeout_ns.filter(|n| *n > 0).or(i.timeout_ns),
            retries: d.retries.filter(|n| *n > 0).or(i.retries),
            start_period_ns: d.start_period_ns.filter(|n| *n > 0).or(i.start_period_ns),
            start_interval_ns: d
                .start_interval_ns
                .filter(|n| *n > 0)
                .or(i.start_interval_ns),
        }),
        (d, i) => d.clone().or_else(|| i.clone()),
    };
    // Engines before API 1.44 (Docker 25) do not know `start_interval` and drop it: when the
    // engine reports none, the spec's cannot be told from a change, and counting it would
    // replace the container on every pass.
    if let (Some(want), Some(have)) = (&mut want_health, &actual.healthcheck) {
        if have.start_interval_ns.is_none() {
            want.start_interval_ns = None;
        }
    }
    // A healthcheck without a test (`healthcheck: {}`, or only durations) on an image without
    // one is no healthcheck: the engine has nothing to run and reports none.
    if want_health.as_ref().is_some_and(|h| h.test.is_empty()) {
        want_health = None;
    }
    // Zero means "the default" to the engine, which then reports nothing.
    if let Some(want) = &mut want_health {
        for v in [
            &mut want.interval_ns,
            &mut want.timeout_ns,
            &mut want.retries,
            &mut want.start_period_ns,
            &mut want.start_interval_ns,
        ] {
            if v.is_some_and(|n| n <= 0) {
                *v = None;
            }
        }
    }
    push(
        "healthcheck",
        health_str(&actual.healthcheck),
        health_str(&want_health),
    );
    push(
        "user",
        opt(&actual.user.clone().filter(|u| !u.is_empty())),
        opt(&desired
            .user
            .clone()
            .or_else(|| image.user.clone())
            .filter(|u| !u.is_empty())),
    );
    push(
        "working_dir",
        opt(&actual.working_dir.clone().filter(|u| !u.is_empty())),
        opt(&desired
            .working_dir
            .clone()
            .or_else(|| image.working_dir.clone())
            .filter(|u| !u.is_empty())),
    );
    // Without a hostname the engine uses the container ID: only a declared one is compared.
    if desired.hostname.is_some() {
        push("hostname", opt(&actual.hostname), opt(&desired.hostname));
    }
    push(
        "stop_signal",
        opt(&actual.stop_signal.clone().filter(|s| !s.is_empty())),
        opt(&desired
            .stop_signal
            .clone()
            .or_else(|| image.stop_signal.clone())
            .filter(|s| !s.is_empty())),
    );
    push(
        "stop_grace_period",
        opt_num(actual.stop_grace_period_secs, "s"),
        opt_num(desired.stop_grace_period_secs, "s"),
    );
    push(
        "cap_add",
        list(actual.cap_add.iter().cloned()),
        list(desired.cap_add.iter().cloned()),
    );
    push(
        "cap_drop",
        list(actual.cap_drop.iter().cloned()),
        list(desired.cap_drop.iter().cloned()),
    );
    push(
        "read_only",
        actual.read_only.to_string(),
        desired.read_only.to_string(),
    );
    push(
        "stdin_open",
        actual.stdin_open.to_string(),
        desired.stdin_open.to_string(),
    );
    push("tty", actual.tty.to_string(), desired.tty.to_string());
    push("tmpfs", map_str(&actual.tmpfs), map_str(&desired.tmpfs));
    push(
        "init",
        actual.init.unwrap_or(false).to_string(),
        desired.init.unwrap_or(false).to_string(),
    );
    push(
        "extra_hosts",
        list(actual.extra_hosts.iter().cloned()),
        list(desired.extra_hosts.iter().cloned()),
    );
    push(
        "dns",
        list(actual.dns.iter().cloned()),
        list(desired.dns.iter().cloned()),
    );
    push(
        "sysctls",
        map_str(&actual.sysctls),
        map_str(&desired.sysctls),
    );
    push(
        "ulimits",
        list(
            actual
                .ulimits
                .iter()
                .map(|(k, u)| format!("{k}={}:{}", u.soft, u.hard)),
        ),
        list(
            desired
                .ulimits
                .iter()
                .map(|(k, u)| format!("{k}={}:{}", u.soft, u.hard)),
        ),
    );
    // Without `logging`, or with options but no driver, the engine's default driver applies
    // (and the daemon's default options are merged in): only what the spec declares is compared.
    if let Some(want) = &desired.logging {
        let have = actual
            .logging
            .clone()
            .unwrap_or(crate::model::spec::Logging {
                driver: String::new(),
                options: BTreeMap::new(),
            });
        if !want.driver.is_empty() {
            push("logging.driver", opt_str(&have.driver), want.driver.clone());
        }
        let have_opts: BTreeMap<String, String> = want
            .options
            .keys()
            .filter_map(|k| Some((k.clone(), have.options.get(k)?.clone())))
            .collect();
        diff_maps(
            "logging.options",
            &have_opts,
            &want.options,
            |_| false,
            &mut out,
        );
    }
    let mut push = |field: &str, old: String, new: String| {
        if old != new {
            out.push(FieldChange {
                field: field.to_string(),
                old,
                new,
            });
        }
    };
    // With a hostname set, the engine adds it as an alias on each network: not drift unless
    // the spec names it.
    // In `host` or `none` mode the engine reports the one network of that name: the mode's
    // own, compared as `network_mode`.
    let nets = |c: &ContainerSpec, engine: bool| {
        list(
            c.networks
                .iter()
                .filter(|(name, _)| !engine || c.network_mode.as_ref() != Some(*name))
                .map(|(name, a)| {
                    let wanted = desired.networks.get(name);
                    let mut aliases: Vec<String> = a
                        .aliases
                        .iter()
                        .filter(|al| {
                            !engine
                                || Some(al.as_str()) != c.hostname.as_deref()
                                || wanted.is_some_and(|w| w.aliases.contains(al))
                        })
                        .cloned()
                        .collect();
                    aliases.sort();
                    aliases.dedup();
                    // A fixed address, in one spelling on both sides (IPv6 has several).
                    let canon = |ip: &Option<String>| {
                        ip.as_deref().map(|s| {
                            s.parse::<::core::net::IpAddr>()
                                .map_or_else(|_| s.to_string(), |ip| ip.to_string())
                        })
                    };
                    let fixed: String = [canon(&a.ipv4_address), canon(&a.ipv6_address)]
                        .into_iter()
                        .flatten()
                        .map(|ip| format!(" ip {ip}"))
                        .collect();
                    format!("{name} ({}){fixed}", aliases.join(" "))
                }),
        )
    };
    push("networks", nets(actual, true), nets(desired, false));
    push(
        "network_mode",
        opt(&actual.network_mode),
        opt(&desired.network_mode),
    );
    // `volumes_from` as the engine keeps it (`<name>[:ro]`, resolved by the planner; the
    // engine's `container:<ID>` network mode is read as the name in `colocate`). Lifecycle
    // hooks are not compared: the engine keeps no record of them (`model::hooks`).
    push(
        "volumes_from",
        actual.share.engine_volumes_from.join(", "),
        desired.share.engine_volumes_from.join(", "),
    );
    push(
        "links",
        actual.share.engine_links.join(", "),
        desired.share.engine_links.join(", "),
    );
    // The engine reports 0 (or -1 for pids) for "no limit": so does a spec that writes it.
    let limit = |v: Option<i64>| v.filter(|n| *n > 0);
    push(
        "deploy.resources.limits.memory",
        opt_bytes(limit(actual.memory_bytes)),
        opt_bytes(limit(desired.memory_bytes)),
    );
    push(
        "deploy.resources.limits.cpus",
        opt_cpus(limit(actual.nano_cpus)),
        opt_cpus(limit(desired.nano_cpus)),
    );
    push(
        "deploy.resources.limits.pids",
        opt_num(limit(actual.pids_limit), ""),
        opt_num(limit(desired.pids_limit), ""),
    );
    push(
        "deploy.resources.reservations.memory",
        opt_bytes(limit(actual.memory_reservation_bytes)),
        opt_bytes(limit(desired.memory_reservation_bytes)),
    );
    // The engine sets memory plus swap to twice the memory when only the memory is limited,
    // and to -1 on a kernel that cannot limit swap (it warns and goes on): only a declared
    // value is compared, and not with a host that cannot keep it.
    if let (Some(want), Some(have)) = (desired.memory_swap_bytes, actual.memory_swap_bytes) {
        if have != -1 || want == -1 {
            push("memswap_limit", swap_str(have), swap_str(want));
        }
    }
    push(
        "cpu_shares",
        opt_num(limit(actual.cpu_shares), ""),
        opt_num(limit(desired.cpu_shares), ""),
    );
    // The engine's exposed ports are the image's, the published ones and `expose`'s, merged:
    // only the ports the spec exposes are looked for. (A port taken out of `expose` changes
    // the spec hash, which replaces the container anyway.)
    if desired.expose.iter().any(|p| !actual.expose.contains(p)) {
        push(
            "expose",
            list(
                desired
                    .expose
                    .iter()
                    .filter(|p| actual.expose.contains(p))
                    .cloned(),
            ),
            list(desired.expose.iter().cloned()),
        );
    }
    // With `pid: host` or `ipc: host` on an SELinux host, the engine adds `label=disable`
    // (spelled `disable` by some versions) of its own.
    let engine_added = |o: &String| {
        matches!(o.as_str(), "disable" | "label=disable" | "label:disable")
            && !desired.security_opt.contains(o)
    };
    push(
        "security_opt",
        list(
            actual
                .security_opt
                .iter()
                .filter(|o| !engine_added(o))
                .cloned(),
        ),
        list(desired.security_opt.iter().cloned()),
    );
    let device = |d: &crate::model::spec::DeviceMapping| {
        format!("{}:{}:{}", d.host, d.container, d.permissions)
    };
    push(
        "devices",
        list(actual.devices.iter().map(device)),
        list(desired.devices.iter().map(device)),
    );
    // Without `ipc` the engine's own default (`private` or `shareable`, per daemon) applies,
    // and without `runtime` its default runtime: only declared ones are compared.
    if desired.ipc.is_some() {
        push("ipc", opt(&actual.ipc), opt(&desired.ipc));
    }
    push("pid", opt(&actual.pid), opt(&desired.pid));
    if desired.runtime.is_some() {
        push("runtime", opt(&actual.runtime), opt(&desired.runtime));
    }
    // `platform` is not compared: the engine reports only the OS of a container, and the
    // spec hash carries a change of it.
    push(
        "gpus",
        list(actual.device_requests.iter().map(device_request_str)),
        list(desired.device_requests.iter().map(device_request_str)),
    );
    super::drift_more::more_drift(&desired.more, &actual.more, &mut out);
    out
}

/// `count=all caps=gpu,utility driver=nvidia ids=0,1 opts=k=v`, the parts that are set.
fn device_request_str(r: &crate::model::spec::DeviceRequest) -> String {
    let mut parts = Vec::new();
    if !r.driver.is_empty() {
        parts.push(format!("driver={}", r.driver));
    }
    match r.count {
        -1 => parts.push("count=all".into()),
        0 => {}
        n => parts.push(format!("count={n}")),
    }
    if !r.device_ids.is_empty() {
        parts.push(format!("ids={}", r.device_ids.join(",")));
    }
    parts.push(format!("capabilities={}", r.capabilities.join(",")));
    if !r.options.is_empty() {
        parts.push(format!("options={}", map_str(&r.options)));
    }
    format!("[{}]", parts.join(" "))
}

/// Memory plus swap, -1 being unlimited swap.
fn swap_str(v: i64) -> String {
    if v == -1 {
        "unlimited".into()
    } else {
        opt_bytes(Some(v))
    }
}

fn diff_maps(
    prefix: &str,
    actual: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
    is_secret: impl Fn(&str) -> bool,
    out: &mut Vec<FieldChange>,
) {
    let keys: BTreeSet<&String> = actual.keys().chain(desired.keys()).collect();
    for key in keys {
        let (old, new) = (actual.get(key), desired.get(key));
        if old == new {
            continue;
        }
        let show = |v: Option<&String>| match v {
            None => NONE.to_string(),
            Some(_) if is_secret(key) => MASK.to_string(),
            Some(v) => format!("{v:?}"),
        };
        out.push(FieldChange {
            field: format!("{prefix}.{key}"),
            old: show(old),
            new: show(new),
        });
    }
}

/// A healthcheck as people write it: `CMD true, interval 5s, retries 2`.
fn health_str(h: &Option<crate::model::spec::Healthcheck>) -> String {
    let Some(h) = h else {
        return NONE.into();
    };
    let mut parts = vec![h.test.join(" ")];
    let dur = |ns: i64| {
        if ns % 1_000_000_000 == 0 {
            format!("{}s", ns / 1_000_000_000)
        } else {
            format!("{}ms", ns / 1_000_000)
        }
    };
    for (name, v) in [
        ("interval", h.interval_ns),
        ("timeout", h.timeout_ns),
        ("start_period", h.start_period_ns),
        ("start_interval", h.start_interval_ns),
    ] {
        if let Some(ns) = v {
            parts.push(format!("{name} {}", dur(ns)));
        }
    }
    if let Some(r) = h.retries {
        parts.push(format!("retries {r}"));
    }
    parts.join(", ")
}

fn words(v: &Option<Vec<String>>) -> String {
    match v {
        None => NONE.into(),
        Some(w) if w.is_empty() => NONE.into(),
        Some(w) => format!("{w:?}"),
    }
}

fn opt_str(v: &str) -> String {
    if v.is_empty() {
        NONE.into()
    } else {
        v.to_string()
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| NONE.into())
}

fn opt_num(v: Option<i64>, unit: &str) -> String {
    v.map(|n| format!("{n}{unit}"))
        .unwrap_or_else(|| NONE.into())
}

pub fn opt_bytes(v: Option<i64>) -> String {
    match v {
        None => NONE.into(),
        Some(b) if b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        Some(b) if b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        Some(b) if b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        Some(b) => format!("{b}B"),
    }
}

fn opt_cpus(v: Option<i64>) -> String {
    v.map(|n| format!("{}", n as f64 / 1e9))
        .unwrap_or_else(|| NONE.into())
}

fn list(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        NONE.into()
    } else {
        v.join(", ")
    }
}

fn map_str(m: &BTreeMap<String, String>) -> String {
    list(m.iter().map(|(k, v)| {
        if v.is_empty() {
            k.clone()
        } else {
            format!("{k}={v}")
        }
    }))
}

fn port_str(p: &crate::model::spec::PortBinding) -> String {
    let host = match (p.host_ip.as_str(), p.host_port) {
        ("", Some(port)) => format!("{port}:"),
        (ip, Some(port)) => format!("{ip}:{port}:"),
        ("", None) => String::new(),
        (ip, None) => format!("{ip}::"),
    };
    format!("{host}{}/{}", p.container_port, p.protocol)
}

fn mount_str(m: &crate::model::spec::MountSpec) -> String {
    format!(
        "{}:{}{}",
        m.source,
        m.target,
        if m.read_only { ":ro" } else { "" }
    )
}

fn restart_str(c: &ContainerSpec) -> String {
    match (c.restart.name, c.restart.max_attempts) {
        (RestartName::OnFailure, Some(n)) if n > 0 => format!("on-failure:{n}"),
        (name, _) => name.as_engine_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Edit = Box<dyn Fn(&mut ContainerSpec)>;
    use crate::model::spec::{MountSpec, RestartPolicy};

    fn base() -> ContainerSpec {
        ContainerSpec {
            image: "busybox:1".into(),
            command: Some(vec!["sleep".into(), "1000".into()]),
            ..Default::default()
        }
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            env: [("PATH".to_string(), "/bin".to_string())].into(),
            command: Some(vec!["sh".into()]),
            ..Default::default()
        }
    }

    /// What the engine reports for a container created from `spec` on `image()`.
    fn as_engine_reports(spec: &ContainerSpec) -> ContainerSpec {
        let mut a = spec.clone();
        let mut env = image().env;
        env.extend(spec.env.clone());
        a.env = env;
        if a.command.is_none() {
            a.command = image().command;
        }
        a
    }

    #[test]
    fn identical_container_has_no_drift() {
        let d = base();
        assert!(container_drift(&d, &as_engine_reports(&d), &image(), &BTreeSet::new()).is_empty());
        let mut no_cmd = base();
        no_cmd.command = None;
        let actual = as_engine_reports(&no_cmd);
        assert!(container_drift(&no_cmd, &actual, &image(), &BTreeSet::new()).is_empty());
    }

    #[test]
    fn memory_changed_by_docker_update_is_drift() {
        let mut d = base();
        d.memory_bytes = Some(64 << 20);
        let mut a = as_engine_reports(&d);
        a.memory_bytes = Some(128 << 20);
        let drift = container_drift(&d, &a, &image(), &BTreeSet::new());
        assert_eq!(
            drift,
            vec![FieldChange {
                field: "deploy.resources.limits.memory".into(),
                old: "128MiB".into(),
                new: "64MiB".into()
            }]
        );
    }

    #[test]
    fn secret_values_are_masked() {
        let mut d = base();
        d.env.insert("DB_PASSWORD".into(), "hunter2".into());
        d.env.insert("FROM_FILE".into(), "s3cret".into());
        let mut a = as_engine_reports(&d);
        a.env.insert("DB_PASSWORD".into(), "old-pass".into());
        a.env.insert("FROM_FILE".into(), "old".into());
        let secret: BTreeSet<String> = ["FROM_FILE".to_string()].into();
        let drift = container_drift(&d, &a, &image(), &secret);
        assert_eq!(drift.len(), 2);
        let text = format!("{drift:?}");
        assert!(!text.contains("hunter2") && !text.contains("old-pass"));
        assert!(!text.contains("s3cret"));
        assert!(drift.iter().all(|c| c.old == MASK && c.new == MASK));
    }

    #[test]
    fn every_field_change_is_seen() {
        let d = base();
        let cases: Vec<(&str, Edit)> = vec![
            ("image", Box::new(|c| c.image = "busybox:2".into())),
            (
                "environment.A",
                Box::new(|c| {
                    c.env.insert("A".into(), "1".into());
                }),
            ),
            (
                "restart",
                Box::new(|c| {
                    c.restart = RestartPolicy {
                        name: RestartName::Always,
                        max_attempts: None,
                    }
                }),
            ),
            (
                "volumes",
                Box::new(|c| {
                    c.mounts.push(MountSpec {
                        kind: MountKind::Bind,
                        source: "/srv".into(),
                        target: "/data".into(),
                        read_only: true,
                    })
                }),
            ),
            ("read_only", Box::new(|c| c.read_only = true)),
            ("user", Box::new(|c| c.user = Some("1000".into()))),
            (
                "cap_add",
                Box::new(|c| c.cap_add = vec!["NET_ADMIN".into()]),
            ),
            (
                "deploy.resources.limits.cpus",
                Box::new(|c| c.nano_cpus = Some(500_000_000)),
            ),
            ("cpu_shares", Box::new(|c| c.cpu_shares = Some(512))),
            ("expose", Box::new(|c| c.expose = vec!["9000/tcp".into()])),
            (
                "security_opt",
                Box::new(|c| c.security_opt = vec!["no-new-privileges:true".into()]),
            ),
            (
                "devices",
                Box::new(|c| {
                    c.devices = vec![crate::model::spec::DeviceMapping {
                        host: "/dev/null".into(),
                        container: "/dev/x".into(),
                        permissions: "rwm".into(),
                    }]
                }),
            ),
            ("ipc", Box::new(|c| c.ipc = Some("host".into()))),
            ("pid", Box::new(|c| c.pid = Some("host".into()))),
            ("runtime", Box::new(|c| c.runtime = Some("runsc".into()))),
        ];
        for (field, change) in cases {
            let mut want = d.clone();
            change(&mut want);
            let drift = container_drift(&want, &as_engine_reports(&d), &image(), &BTreeSet::new());
            assert_eq!(drift.len(), 1, "{field}: {drift:?}");
            assert_eq!(drift[0].field, field);
        }
    }

    #[test]
    fn engine_normal_forms_are_not_drift() {
        let mut d = base();
        d.mounts = vec![
            MountSpec {
                kind: MountKind::Bind,
                source: "/srv/b".into(),
                target: "/a".into(),
                read_only: false,
            },
            MountSpec {
                kind: MountKind::Bind,
                source: "/srv/a".into(),
                target: "/b".into(),
                read_only: false,
            },
        ];
        d.logging = Some(crate::model::spec::Logging {
            driver: String::new(),
            options: [("max-size".to_string(), "1m".to_string())].into(),
        });
        d.pids_limit = Some(0);
        d.hostname = Some("h".into());
        d.networks.insert(
            "s_default".into(),
            crate::model::spec::NetworkAttachment {
                aliases: vec!["app".into()],
                ..Default::default()
            },
        );
        let mut a = as_engine_reports(&d);
        a.mounts.reverse();
        a.logging = Some(crate::model::spec::Logging {
            driver: "json-file".into(),
            options: [
                ("max-size".to_string(), "1m".to_string()),
                ("max-file".to_string(), "3".to_string()),
            ]
            .into(),
        });
        a.pids_limit = None;
        a.networks
            .get_mut("s_default")
            .unwrap()
            .aliases
            .push("h".into());
        assert_eq!(container_drift(&d, &a, &image(), &BTreeSet::new()), vec![]);
        // An alias changed by hand is drift.
        a.networks.get_mut("s_default").unwrap().aliases = vec!["other".into()];
        let drift = container_drift(&d, &a, &image(), &BTreeSet::new());
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].field, "networks");
    }

    /// `healthcheck: {}` (or only durations) keeps the image's; on an image without one the
    /// engine runs none and reports none. Counting that as drift replaced the container on
    /// every pass.
    #[test]
    fn an_empty_healthcheck_is_the_images_and_not_drift() {
        let empty = crate::model::spec::Healthcheck {
            test: vec![],
            interval_ns: None,
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
            start_interval_ns: None,
        };
        let only_interval = crate::model::spec::Healthcheck {
            interval_ns: Some(5_000_000_000),
            ..empty.clone()
        };
        for h in [empty, only_interval] {
            let mut d = base();
            d.healthcheck = Some(h);
            // What inspect gives for it: a config without a test, which reads as none.
            let mut a = as_engine_reports(&d);
            a.healthcheck = None;
            assert_eq!(container_drift(&d, &a, &image(), &BTreeSet::new()), vec![]);
        }
        // On an image with a healthcheck, the image's is what runs: still no drift.
        let img = ImageDefaults {
            healthcheck: Some(crate::model::spec::Healthcheck {
                test: vec!["CMD".into(), "probe".into()],
                interval_ns: Some(30_000_000_000),
                timeout_ns: None,
                retries: None,
                start_period_ns: None,
                start_interval_ns: None,
            }),
            ..image()
        };
        let mut d = base();
        d.healthcheck = Some(crate::model::spec::Healthcheck {
            test: vec![],
            interval_ns: None,
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
            start_interval_ns: None,
        });
        let mut a = as_engine_reports(&d);
        a.healthcheck = img.healthcheck.clone();
        assert_eq!(container_drift(&d, &a, &img, &BTreeSet::new()), vec![]);
        // A healthcheck that appears by hand on such a container is drift.
        a.healthcheck = img.healthcheck.clone();
        let drift = container_drift(&d, &a, &image(), &BTreeSet::new());
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].field, "healthcheck");
    }

    #[test]
    fn the_engines_merge_with_the_image_is_not_drift() {
        let img = ImageDefaults {
            entrypoint: Some(vec!["/entry".into()]),
            command: Some(vec!["serve".into()]),
            healthcheck: Some(crate::model::spec::Healthcheck {
                test: vec!["CMD".into(), "probe".into()],
                interval_ns: Some(30_000_000_000),
                timeout_ns: Some(5_000_000_000),
                retries: Some(3),
                start_period_ns: None,
                start_interval_ns: None,
            }),
            ..Default::default()
        };
        // `entrypoint: []` with no command: the engine runs the image's command, no entrypoint.
        let mut d = base();
        d.command = None;
        d.entrypoint = Some(vec![]);
        // A healthcheck that sets only the interval: the rest comes from the image.
        d.healthcheck = Some(crate::model::spec::Healthcheck {
            test: vec![],
            interval_ns: Some(2_000_000_000),
            timeout_ns: None,
            retries: None,
            start_period_ns: None,
            start_interval_ns: None,
        });
        let mut a = d.clone();
        a.entrypoint = None;
        a.command = Some(vec!["serve".into()]);
        a.healthcheck = Some(crate::model::spec::Healthcheck {
            test: vec!["CMD".into(), "probe".into()],
            interval_ns: Some(2_000_000_000),
            timeout_ns: Some(5_000_000_000),
            retries: Some(3),
            start_period_ns: None,
            start_interval_ns: None,
        });
        assert_eq!(container_drift(&d, &a, &img, &BTreeSet::new()), vec![]);
        // A non-empty entrypoint without a command: no command at all.
        d.entrypoint = Some(vec!["sh".into()]);
        a.entrypoint = Some(vec!["sh".into()]);
        a.command = None;
        assert_eq!(container_drift(&d, &a, &img, &BTreeSet::new()), vec![]);
    }

    /// The engine's normal forms of the keys added after the first release: exposed ports
    /// merged with the image's and the published ones, swap set by itself, its default ipc
    /// mode and runtime, `label=disable` of its own.
    #[test]
    fn engine_normal_forms_of_the_newer_keys_are_not_drift() {
        let mut d = base();
        d.expose = vec!["9000/tcp".into()];
        d.ports = vec![crate::model::spec::PortBinding {
            host_ip: String::new(),
            host_port: Some(8080),
            container_port: 80,
            protocol: "tcp".into(),
        }];
        d.memory_bytes = Some(64 << 20);
        d.pid = Some("host".into());
        let mut a = as_engine_reports(&d);
        a.expose = vec!["443/tcp".into(), "80/tcp".into(), "9000/tcp".into()];
        a.memory_swap_bytes = Some(128 << 20);
        a.ipc = Some("private".into());
        a.runtime = Some("runc".into());
        a.security_opt = vec!["label=disable".into()];
        assert_eq!(container_drift(&d, &a, &image(), &BTreeSet::new()), vec![]);

        // A declared swap total is compared, except with a host that cannot limit swap.
        d.memory_swap_bytes = Some(96 << 20);
        let drift = container_drift(&d, &a, &image(), &BTreeSet::new());
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(
            (drift[0].field.as_str(), drift[0].old.as_str()),
            ("memswap_limit", "128MiB")
        );
        a.memory_swap_bytes = Some(-1);
        assert_eq!(container_drift(&d, &a, &image(), &BTreeSet::new()), vec![]);

        // A declared ipc mode or runtime is compared; an exposed port gone is drift.
        d.memory_swap_bytes = None;
        d.ipc = Some("shareable".into());
        d.runtime = Some("runc".into());
        a.expose = vec!["80/tcp".into()];
        let fields: Vec<String> = container_drift(&d, &a, &image(), &BTreeSet::new())
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["expose", "ipc"]);
    }

    /// A container converged by a release that knew none of the newer keys reads as it did.
    #[test]
    fn a_container_without_the_newer_keys_has_no_drift_from_them() {
        let mut d = base();
        d.memory_bytes = Some(64 << 20);
        let mut a = as_engine_reports(&d);
        a.memory_swap_bytes = Some(128 << 20);
        a.ipc = Some("private".into());
        a.runtime = Some("runc".into());
        a.expose = vec!["80/tcp".into()];
        assert_eq!(container_drift(&d, &a, &image(), &BTreeSet::new()), vec![]);
    }

    fn gpu(count: i64, ids: &[&str], caps: &[&str]) -> crate::model::spec::DeviceRequest {
        crate::model::spec::DeviceRequest {
            driver: String::new(),
            count,
            device_ids: ids.iter().map(|s| s.to_string()).collect(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            options: BTreeMap::new(),
        }
    }

    /// `network_mode: host`: the engine reports the mode and one network named `host`.
    #[test]
    fn network_mode_as_the_engine_reports_it_is_not_drift() {
        for mode in ["host", "none"] {
            let mut d = base();
            d.network_mode = Some(mode.into());
            let mut a = as_engine_reports(&d);
            a.networks.insert(
                mode.into(),
                crate::model::spec::NetworkAttachment::default(),
            );
            assert_eq!(container_drift(&d, &a, &image(), &BTreeSet::new()), vec![]);
        }
        // A container on the stack's network that should be on the host's, and back.
        let mut d = base();
        d.network_mode = Some("host".into());
        let mut a = base();
        a.networks.insert(
            "web_default".into(),
            crate::model::spec::NetworkAttachment {
                aliases: vec!["app".into()],
                ..Default::default()
            },
        );
        let a = as_engine_reports(&a);
        let drift = container_drift(&d, &a, &image(), &BTreeSet::new());
        let fields: Vec<(&str, &str, &str)> = drift
            .iter()
            .map(|c| (c.field.as_str(), c.old.as_str(), c.new.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("networks", "web_default (app)", "(none)"),
                ("network_mode", "(none)", "host")
            ]
        );
        let drift = container_drift(&a, &as_engine_reports(&d), &image(), &BTreeSet::new());
        assert!(drift.iter().any(|c| c.field == "network_mode"), "{drift:?}");
    }

    /// Device requests read back as written are not drift; one changed by hand is.
    #[test]
    fn device_requests_are_compared_with_inspect() {
        let mut d = base();
        d.device_requests = vec![
            gpu(-1, &[], &["gpu"]),
            gpu(0, &["0", "1"], &["compute", "gpu"]),
        ];
        // `platform` is never compared: the engine does not report it on a container.
        d.platform = Some("linux/arm64".into());
        let mut a = as_engine_reports(&d);
        a.platform = None;
        assert_eq!(container_drift(&d, &a, &image(), &BTreeSet::new()), vec![]);
        a.device_requests[0].count = 1;
        let drift = container_drift(&d, &a, &image(), &BTreeSet::new());
        assert_eq!(drift.len(), 1, "{drift:?}");
        assert_eq!(drift[0].field, "gpus");
        assert_eq!(
            drift[0].new,
            "[count=all capabilities=gpu], [ids=0,1 capabilities=compute,gpu]"
        );
        // A container of an older release has none and wants none.
        let d = base();
        assert_eq!(
            container_drift(&d, &as_engine_reports(&d), &image(), &BTreeSet::new()),
            vec![]
        );
    }
}
