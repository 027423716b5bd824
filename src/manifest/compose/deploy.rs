//! A service's `deploy`: mode and replicas, resource limits and reservations, the Swarm-style
//! `restart_policy`, `placement` (constraints, spread preferences, replicas per node), and the
//! device requests of `resources.reservations.devices` (`gpus` reads its own with them).
//!
//! Reads only the node handed in and writes only into the service and container specs; no I/O.
//! The restart policy is given back with where it was written rather than set, because the
//! service's `restart` may say the same or something else, and the dispatcher decides that.

use super::engine_rules::{MIN_MEMORY_BYTES, MIN_NANO_CPUS};
use super::keys::{
    DEPLOY, DEVICE_REQUEST, LIMITS, PLACEMENT, PREFERENCE, RESERVATIONS, RESOURCES, RESTART_POLICY,
};
use crate::manifest::fleet::read_bytes;
use crate::manifest::typed::Diag;
use crate::manifest::yaml::{Kind, Node};
use crate::model::spec::{
    Constraint, ConstraintAttribute, ContainerSpec, DeployMode, DeviceRequest, Placement,
    RestartName, RestartPolicy, ServiceSpec,
};

/// The most replicas one service may ask for: each is a container to place, plan and run, and
/// a typo (`replicas: 1000000`) must not take minutes and gigabytes to plan (README, "The
/// repository").
pub const MAX_SERVICE_REPLICAS: u32 = 1000;

/// Reads `deploy` into the service and container; gives the restart policy it sets, if any,
/// with its node and path.
pub(super) fn read_deploy<'n>(
    d: &mut Diag,
    v: &'n Node,
    path: &str,
    svc: &mut ServiceSpec,
    c: &mut ContainerSpec,
    replicas_at: &mut Option<(usize, usize)>,
) -> Option<(RestartPolicy, &'n Node, String)> {
    let entries = d.map(v, path)?;
    let mut restart = None;
    let mut replicas_node = None;
    // Where the memory reservation is written.
    let mut reservation_at: Option<(&Node, String)> = None;
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
                *replicas_at = Some((fv.line, fv.col));
                if let Some(n) = d.non_negative(fv, &fpath) {
                    if n > MAX_SERVICE_REPLICAS {
                        d.at(
                            fv,
                            &fpath,
                            format!(
                                "{n} replicas is more than the {MAX_SERVICE_REPLICAS} a service may have"
                            ),
                        );
                    }
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
                                c.memory_bytes = memory(d, lv, &lpath, "limit");
                            }
                            ("limits", "pids") => c.pids_limit = d.int(lv, &lpath),
                            ("reservations", "cpus") => {
                                svc.reserve_nano_cpus = nano_cpus(d, lv, &lpath)
                            }
                            ("reservations", "devices") => {
                                // Compose's order: these requests, then `gpus`'.
                                let mut devices = read_device_requests(d, lv, &lpath, false);
                                devices.append(&mut c.device_requests);
                                c.device_requests = devices;
                            }
                            ("reservations", "memory") => {
                                let m = memory(d, lv, &lpath, "reservation");
                                c.memory_reservation_bytes = m;
                                svc.reserve_memory_bytes = m;
                                reservation_at = Some((lv, lpath.clone()));
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
                        // Checked, then left to the engine's own back-off (see `keys`).
                        "delay" | "window" => {
                            let _ = super::duration_ns(d, pv, &ppath);
                        }
                        _ => {}
                    }
                }
                if policy.name != RestartName::OnFailure {
                    policy.max_attempts = None;
                }
                restart = Some((policy, fv, fpath.clone()));
            }
            "placement" => read_placement(d, fv, &fpath, &mut svc.placement),
            "update_config" => {
                super::rollout::read_update_config(d, fv, &fpath, &mut svc.rollout.update, false)
            }
            "rollback_config" => {
                super::rollout::read_update_config(d, fv, &fpath, &mut svc.rollout.rollback, true)
            }
            _ => {}
        }
    }
    if svc.mode == DeployMode::Global {
        if let Some((n, p)) = replicas_node {
            d.at(n, &p, "`replicas` cannot be used with `mode: global`");
        }
    }
    // The engine refuses a limit below the reservation.
    if let (Some(limit), Some(reservation), Some((n, p))) = (
        c.memory_bytes.filter(|m| *m > 0),
        c.memory_reservation_bytes.filter(|m| *m > 0),
        reservation_at,
    ) {
        if reservation > limit {
            d.at(n, &p, "the memory reservation is above the memory limit");
        }
    }
    restart
}

/// A memory limit or reservation: 0 is none; anything else at least the engine's minimum.
pub(super) fn memory(d: &mut Diag, v: &Node, path: &str, what: &str) -> Option<i64> {
    let m = read_bytes(d, v, path)?;
    if m > 0 && m < MIN_MEMORY_BYTES {
        d.at(
            v,
            path,
            format!("a memory {what} below 6 MiB is refused by the engine (0 means none)"),
        );
        return None;
    }
    Some(m)
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

pub(super) fn nano_cpus(d: &mut Diag, v: &Node, path: &str) -> Option<i64> {
    let n = d.number(v, path)?;
    if !(0.0..1e9).contains(&n) || ((n * 1e9).round() as i64) < MIN_NANO_CPUS {
        d.at(
            v,
            path,
            "expected at least 0.01 cpus (the engine's minimum; leave it out for no limit)",
        );
        return None;
    }
    Some((n * 1e9).round() as i64)
}

/// A list of device requests (`capabilities`, `count`, `device_ids`, `driver`, `options`). A
/// request with neither `count` nor `device_ids` asks for all the devices (Compose's default).
pub(super) fn read_device_requests(
    d: &mut Diag,
    v: &Node,
    path: &str,
    gpus: bool,
) -> Vec<DeviceRequest> {
    let mut out = Vec::new();
    let Kind::Seq(items) = &v.kind else {
        d.at(v, path, format!("expected a list, found {}", v.type_name()));
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        let Some(entries) = d.map(item, &ipath) else {
            continue;
        };
        let mut r = DeviceRequest {
            driver: String::new(),
            count: 0,
            device_ids: Vec::new(),
            capabilities: Vec::new(),
            options: Default::default(),
        };
        let mut count_at: Option<&Node> = None;
        let mut wrote_capabilities = false;
        let before = d.errors.len();
        for (f, _k, fv, fpath) in d.fields(entries, &ipath, &DEVICE_REQUEST) {
            match f {
                "capabilities" => {
                    wrote_capabilities = true;
                    r.capabilities = d
                        .string_list(fv, &fpath)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect();
                }
                "count" => {
                    count_at = Some(fv);
                    if fv.scalar() == Some("all") {
                        r.count = -1;
                    } else {
                        match d.int(fv, &fpath) {
                            Some(n) if n > 0 => r.count = n,
                            Some(n) => d.at(
                                fv,
                                &fpath,
                                format!("invalid count {n} (expected a positive number or `all`)"),
                            ),
                            None => {}
                        }
                    }
                }
                "device_ids" => {
                    r.device_ids = d
                        .string_list(fv, &fpath)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect();
                }
                "driver" => r.driver = d.string(fv, &fpath).unwrap_or_default(),
                "options" => r.options = d.string_map(fv, &fpath, false).unwrap_or_default(),
                _ => {}
            }
        }
        if let (Some(n), false) = (count_at, r.device_ids.is_empty()) {
            d.at(
                n,
                &format!("{ipath}.count"),
                "`count` and `device_ids` cannot both be set",
            );
        }
        if !gpus && !wrote_capabilities {
            d.at(item, &ipath, "missing `capabilities` (for example `[gpu]`)");
        }
        if gpus {
            r.capabilities.push("gpu".into());
        }
        if r.count == 0 && r.device_ids.is_empty() {
            r.count = -1;
        }
        r.capabilities.sort();
        r.capabilities.dedup();
        if d.errors.len() == before {
            out.push(r);
        }
    }
    out
}
