//! The less common service keys that tell the engine how to run the container: `privileged`,
//! `shm_size`, `dns_opt`, `dns_search`, `domainname`, `group_add`, `oom_score_adj`,
//! `oom_kill_disable`, `cgroup`, `cgroup_parent`, `uts`, `userns_mode`, `cpuset`,
//! `cpu_period`, `cpu_quota`, `cpu_rt_period`, `cpu_rt_runtime`, `mem_swappiness`,
//! `device_cgroup_rules`, `storage_opt`, `blkio_config`, `annotations`; and the service keys
//! that say again what another key says (`pids_limit` beside `deploy.resources.limits.pids`,
//! `scale` beside `deploy.replicas`) or ask nothing of a host (`attach`).
//!
//! Reads only the nodes handed in and writes into `ContainerSpec::more` and the service; no I/O.
//! The repeated keys are held in [`More`] until `deploy` is read too: a file that writes both
//! forms must have them agree, or nobody could tell which one the container runs with.

use super::duration_ns;
use crate::manifest::fleet::read_bytes;
use crate::manifest::typed::{join, Diag, Keys};
use crate::manifest::yaml::{Kind, Node};
use crate::model::engine_more::Blkio;
use crate::model::spec::{ContainerSpec, DeployMode, ServiceSpec};

/// The keys this file reads, for the dispatcher.
pub(super) const MORE_KEYS: &[&str] = &[
    "privileged",
    "shm_size",
    "dns_opt",
    "dns_search",
    "domainname",
    "group_add",
    "oom_score_adj",
    "oom_kill_disable",
    "cgroup",
    "cgroup_parent",
    "uts",
    "userns_mode",
    "cpuset",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "mem_swappiness",
    "device_cgroup_rules",
    "storage_opt",
    "blkio_config",
    "annotations",
    "pids_limit",
    "scale",
    "attach",
];

const BLKIO: Keys = Keys {
    supported: &[
        "weight",
        "weight_device",
        "device_read_bps",
        "device_write_bps",
        "device_read_iops",
        "device_write_iops",
    ],
    unsupported: &[],
    extensions: true,
};
const BLKIO_WEIGHT_DEVICE: Keys = Keys {
    supported: &["path", "weight"],
    unsupported: &[],
    extensions: true,
};
const BLKIO_THROTTLE: Keys = Keys {
    supported: &["path", "rate"],
    unsupported: &[],
    extensions: true,
};

/// One repeated key as written: its value and where.
struct Held<'n> {
    value: i64,
    node: &'n Node,
    path: String,
}

/// The keys of this file that are settled only once the whole service is read.
#[derive(Default)]
pub(super) struct More<'n> {
    pids_limit: Option<Held<'n>>,
    scale: Option<Held<'n>>,
}

impl<'n> More<'n> {
    /// Reads `field` (one of [`MORE_KEYS`]) into `c.more`, or holds it.
    pub(super) fn read(
        &mut self,
        d: &mut Diag,
        field: &str,
        v: &'n Node,
        path: &str,
        c: &mut ContainerSpec,
    ) {
        let m = &mut c.more;
        match field {
            "privileged" => m.privileged = d.bool(v, path).unwrap_or(false),
            "shm_size" => m.shm_size_bytes = read_bytes(d, v, path).filter(|n| *n > 0),
            "dns_opt" => m.dns_opt = strings(d, v, path, false),
            "dns_search" => m.dns_search = strings(d, v, path, false),
            "domainname" => m.domainname = d.string(v, path).filter(|s| !s.is_empty()),
            "group_add" => m.group_add = strings(d, v, path, true),
            "oom_score_adj" => m.oom_score_adj = ranged(d, v, path, -1000, 1000),
            "oom_kill_disable" => m.oom_kill_disable = d.bool(v, path).unwrap_or(false),
            "cgroup" => m.cgroup = one_of(d, v, path, &["host", "private"]),
            "cgroup_parent" => m.cgroup_parent = d.string(v, path).filter(|s| !s.is_empty()),
            "uts" => m.uts = one_of(d, v, path, &["host"]),
            "userns_mode" => m.userns_mode = one_of(d, v, path, &["host"]),
            "cpuset" => m.cpuset = read_cpuset(d, v, path),
            // The kernel's bounds: 1 ms to 1 s per period, a quota of 1 ms at least.
            "cpu_period" => m.cpu_period = ranged(d, v, path, 1000, 1_000_000),
            "cpu_quota" => {
                m.cpu_quota = match d.int(v, path) {
                    Some(-1) => None,
                    Some(n) if n >= 1000 => Some(n),
                    Some(n) => {
                        d.at(
                            v,
                            path,
                            format!("cpu_quota {n} is below 1000 microseconds (-1: no quota)"),
                        );
                        None
                    }
                    None => None,
                }
            }
            "cpu_rt_period" => m.cpu_rt_period = micros(d, v, path),
            "cpu_rt_runtime" => m.cpu_rt_runtime = micros(d, v, path),
            "mem_swappiness" => m.mem_swappiness = ranged(d, v, path, 0, 100),
            "device_cgroup_rules" => m.device_cgroup_rules = read_cgroup_rules(d, v, path),
            "storage_opt" => m.storage_opt = d.string_map(v, path, false).unwrap_or_default(),
            "blkio_config" => m.blkio = read_blkio(d, v, path),
            "annotations" => m.annotations = d.string_map(v, path, true).unwrap_or_default(),
            "pids_limit" => {
                // -1 and 0 are "no limit", as in `deploy.resources.limits.pids`.
                if let Some(value) = d.int(v, path) {
                    if value < -1 {
                        d.at(v, path, "pids_limit cannot be below -1 (-1: no limit)");
                    } else {
                        self.pids_limit = Some(Held {
                            value,
                            node: v,
                            path: path.to_string(),
                        });
                    }
                }
            }
            "scale" => {
                if let Some(n) = d.non_negative(v, path) {
                    self.scale = Some(Held {
                        value: i64::from(n),
                        node: v,
                        path: path.to_string(),
                    });
                }
            }
            // Compose attaches `up`'s output to the service's logs or not; Convoy attaches to
            // none (`convoy logs` reads them), so the value is checked and has no effect.
            "attach" => {
                d.bool(v, path);
            }
            _ => {}
        }
        if let (Some(rt), Some(period)) = (m.cpu_rt_runtime, m.cpu_rt_period) {
            if rt > period && matches!(field, "cpu_rt_runtime" | "cpu_rt_period") {
                d.at(
                    v,
                    path,
                    "cpu_rt_runtime is above cpu_rt_period: a period cannot hold it",
                );
            }
        }
    }

    /// Puts the held keys into the fields `deploy` fills; a value both forms give differently
    /// is an error at the service-level key. `replicas_at` is where `deploy.replicas` is
    /// written, if it is.
    pub(super) fn apply(
        self,
        d: &mut Diag,
        c: &mut ContainerSpec,
        svc: &mut ServiceSpec,
        replicas_at: &mut Option<(usize, usize)>,
    ) {
        if let Some(h) = self.pids_limit {
            // Zero and -1 are "none" in both forms.
            let wanted = Some(h.value).filter(|n| *n > 0);
            match c.pids_limit {
                Some(current) if current.max(0) != wanted.unwrap_or(0) => d.at(
                    h.node,
                    &h.path,
                    "`pids_limit` disagrees with `deploy.resources.limits.pids`: write one of them",
                ),
                Some(_) => {}
                None => c.pids_limit = wanted,
            }
        }
        if let Some(h) = self.scale {
            let n = u32::try_from(h.value).unwrap_or(u32::MAX);
            if svc.mode == DeployMode::Global {
                d.at(
                    h.node,
                    &h.path,
                    "`scale` cannot be used with `mode: global`",
                );
            } else if replicas_at.is_some() && svc.replicas != n {
                d.at(
                    h.node,
                    &h.path,
                    format!(
                        "`scale: {n}` disagrees with `deploy.replicas: {}`: write one of them",
                        svc.replicas
                    ),
                );
            } else if n > super::deploy::MAX_SERVICE_REPLICAS {
                d.at(
                    h.node,
                    &h.path,
                    format!(
                        "{n} replicas is more than the {} a service may have",
                        super::deploy::MAX_SERVICE_REPLICAS
                    ),
                );
            } else {
                svc.replicas = n;
                if replicas_at.is_none() {
                    *replicas_at = Some((h.node.line, h.node.col));
                }
            }
        }
    }
}

/// A string or a list of them; sorted when order means nothing to the engine.
fn strings(d: &mut Diag, v: &Node, path: &str, sort: bool) -> Vec<String> {
    let mut out: Vec<String> = d
        .string_or_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .map(|(s, _)| s)
        .filter(|s| !s.is_empty())
        .collect();
    if sort {
        out.sort();
        out.dedup();
    }
    out
}

fn ranged(d: &mut Diag, v: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
    let n = d.int(v, path)?;
    if !(min..=max).contains(&n) {
        let key = path.rsplit('.').next().unwrap_or(path);
        d.at(
            v,
            path,
            format!("{key} {n} is out of range ({min} to {max})"),
        );
        return None;
    }
    Some(n)
}

fn one_of(d: &mut Diag, v: &Node, path: &str, allowed: &[&str]) -> Option<String> {
    let s = d.string(v, path)?;
    if allowed.contains(&s.as_str()) {
        return Some(s);
    }
    let key = path.rsplit('.').next().unwrap_or(path);
    d.at(
        v,
        path,
        format!(
            "invalid {key} `{s}` (expected {})",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    );
    None
}

/// Microseconds, as an integer or a duration (`950ms`), as Compose takes the real-time keys.
fn micros(d: &mut Diag, v: &Node, path: &str) -> Option<i64> {
    if let Some(n) = v.as_int() {
        if n < 0 {
            d.at(v, path, "expected a non-negative number of microseconds");
            return None;
        }
        return Some(n);
    }
    duration_ns(d, v, path).map(|ns| ns / 1000)
}

/// `cpuset`: CPU numbers and ranges, comma-separated (`0-3,6`).
fn read_cpuset(d: &mut Diag, v: &Node, path: &str) -> Option<String> {
    let s = d.string(v, path)?;
    let s = s.trim().to_string();
    let number = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    let valid = !s.is_empty()
        && s.split(',').all(|part| match part.split_once('-') {
            Some((a, b)) => {
                number(a)
                    && number(b)
                    && a.parse::<u32>().ok() <= b.parse::<u32>().ok()
                    && a.parse::<u32>().is_ok()
            }
            None => number(part) && part.parse::<u32>().is_ok(),
        });
    if !valid {
        d.at(
            v,
            path,
            format!("invalid cpuset `{s}` (expected CPU numbers and ranges, such as `0-2,4`)"),
        );
        return None;
    }
    Some(s)
}

/// `device_cgroup_rules`: `<type> <major>:<minor> <access>` (`c 1:3 mr`, `a *:* rwm`), sorted.
fn read_cgroup_rules(d: &mut Diag, v: &Node, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (s, n)) in d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let num = |p: &str| p == "*" || (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        let valid = match parts.as_slice() {
            [kind, dev, access] => {
                matches!(*kind, "a" | "b" | "c")
                    && dev.split_once(':').is_some_and(|(a, b)| num(a) && num(b))
                    && !access.is_empty()
                    && access.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
            }
            _ => false,
        };
        if valid {
            // The engine keeps the rule as given: one spelling for one rule.
            out.push(parts.join(" "));
        } else {
            d.at(
                n,
                &format!("{path}[{i}]"),
                format!(
                    "invalid device cgroup rule `{s}` (expected `<a|b|c> <major>:<minor> <rwm>`, \
                     such as `c 1:3 mr`)"
                ),
            );
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `blkio_config`: the weight (10 to 1000) and per-device weights and throttles.
fn read_blkio(d: &mut Diag, v: &Node, path: &str) -> Blkio {
    let mut b = Blkio::default();
    let Some(entries) = d.map(v, path) else {
        return b;
    };
    let weight = |d: &mut Diag, v: &Node, path: &str| {
        ranged(d, v, path, 10, 1000).and_then(|n| u16::try_from(n).ok())
    };
    for (f, _k, fv, fpath) in d.fields(entries, path, &BLKIO) {
        if f == "weight" {
            b.weight = weight(d, fv, &fpath);
            continue;
        }
        let Kind::Seq(items) = &fv.kind else {
            d.at(fv, &fpath, "expected a list");
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{fpath}[{i}]");
            let Some(fields) = d.map(item, &ipath) else {
                continue;
            };
            let keys = if f == "weight_device" {
                &BLKIO_WEIGHT_DEVICE
            } else {
                &BLKIO_THROTTLE
            };
            let mut dev: Option<String> = None;
            let mut value: Option<i64> = None;
            for (g, _gk, gv, gpath) in d.fields(fields, &ipath, keys) {
                match g {
                    "path" => match d.string(gv, &gpath) {
                        Some(p) if p.starts_with('/') => dev = Some(p),
                        Some(p) => d.at(gv, &gpath, format!("device path `{p}` is not absolute")),
                        None => {}
                    },
                    "weight" => value = weight(d, gv, &gpath).map(i64::from),
                    "rate" if f.ends_with("_bps") => value = read_bytes(d, gv, &gpath),
                    "rate" => {
                        value = d.int(gv, &gpath).filter(|n| {
                            *n >= 0 || {
                                d.at(gv, &gpath, "expected a non-negative rate");
                                false
                            }
                        })
                    }
                    _ => {}
                }
            }
            let (Some(dev), Some(value)) = (dev, value) else {
                d.at(
                    item,
                    &ipath,
                    format!(
                        "expected `path` and `{}`",
                        if f == "weight_device" {
                            "weight"
                        } else {
                            "rate"
                        }
                    ),
                );
                continue;
            };
            match f {
                "weight_device" => b
                    .weight_device
                    .push((dev, u16::try_from(value).unwrap_or(0))),
                "device_read_bps" => b.device_read_bps.push((dev, value)),
                "device_write_bps" => b.device_write_bps.push((dev, value)),
                "device_read_iops" => b.device_read_iops.push((dev, value)),
                _ => b.device_write_iops.push((dev, value)),
            }
        }
    }
    b.weight_device.sort();
    b.device_read_bps.sort();
    b.device_write_bps.sort();
    b.device_read_iops.sort();
    b.device_write_iops.sort();
    // A path written twice in one list: the engine would keep one of them.
    for (name, list) in [
        ("device_read_bps", &b.device_read_bps),
        ("device_write_bps", &b.device_write_bps),
        ("device_read_iops", &b.device_read_iops),
        ("device_write_iops", &b.device_write_iops),
    ] {
        if list.windows(2).any(|w| w[0].0 == w[1].0) {
            d.at(
                v,
                &join(path, name),
                "a device is listed twice: one limit per device",
            );
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::super::keys::SERVICE;
    use super::MORE_KEYS;

    /// Every key read here is a supported service key, and no key is both.
    #[test]
    fn the_keys_read_here_are_supported_service_keys() {
        for k in MORE_KEYS {
            assert!(SERVICE.supported.contains(k), "{k}");
            assert!(!SERVICE.unsupported.iter().any(|(u, _)| u == k), "{k}");
        }
    }
}
