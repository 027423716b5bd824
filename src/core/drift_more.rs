//! Drift of the less common engine settings ([`EngineMore`]): each compared with what the
//! engine reports, modelling the engine's own normal forms so that a converged container is
//! never replaced on the next pass.
//!
//! Pure, as `drift`. Where the engine fills a default of its own (the size of `/dev/shm`, the
//! cgroup namespace) only a declared value is compared; where a kernel or an older engine
//! silently drops a setting (swappiness on cgroup v2, annotations before API 1.43, the block
//! I/O weight without a weight-aware scheduler, `oom_kill_disable` on cgroup v2), a setting
//! the engine does not report is not counted as drift: the spec hash still carries a change of
//! it.

use crate::model::engine_more::EngineMore;
use crate::model::plan::FieldChange;

const NONE: &str = "(none)";

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| NONE.to_string(), T::to_string)
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        NONE.into()
    } else {
        v.join(", ")
    }
}

fn pairs<T: std::fmt::Display>(v: &[(String, T)]) -> String {
    let all: Vec<String> = v.iter().map(|(p, n)| format!("{p}={n}")).collect();
    list(&all)
}

fn map(m: &std::collections::BTreeMap<String, String>) -> String {
    let all: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    list(&all)
}

/// Every field of `desired` that `actual` (from inspect) does not have, in a fixed order.
pub fn more_drift(desired: &EngineMore, actual: &EngineMore, out: &mut Vec<FieldChange>) {
    let mut push = |field: &str, old: String, new: String| {
        if old != new {
            out.push(FieldChange {
                field: field.to_string(),
                old,
                new,
            });
        }
    };
    let (d, a) = (desired, actual);
    push(
        "privileged",
        a.privileged.to_string(),
        d.privileged.to_string(),
    );
    // The engine gives every container a `/dev/shm` (64 MiB): only a declared size counts.
    if d.shm_size_bytes.is_some() {
        push("shm_size", opt(&a.shm_size_bytes), opt(&d.shm_size_bytes));
    }
    push("dns_opt", list(&a.dns_opt), list(&d.dns_opt));
    push("dns_search", list(&a.dns_search), list(&d.dns_search));
    push("domainname", opt(&a.domainname), opt(&d.domainname));
    push("group_add", list(&a.group_add), list(&d.group_add));
    push(
        "oom_score_adj",
        opt(&a.oom_score_adj),
        opt(&d.oom_score_adj),
    );
    // cgroup v2 has no switch for the OOM killer: the engine drops the setting, reporting false.
    if !d.oom_kill_disable || a.oom_kill_disable {
        push(
            "oom_kill_disable",
            a.oom_kill_disable.to_string(),
            d.oom_kill_disable.to_string(),
        );
    }
    // The engine's default namespace depends on the host's cgroup version.
    if d.cgroup.is_some() {
        push("cgroup", opt(&a.cgroup), opt(&d.cgroup));
    }
    push(
        "cgroup_parent",
        opt(&a.cgroup_parent),
        opt(&d.cgroup_parent),
    );
    push("uts", opt(&a.uts), opt(&d.uts));
    push("userns_mode", opt(&a.userns_mode), opt(&d.userns_mode));
    push("cpuset", opt(&a.cpuset), opt(&d.cpuset));
    push("cpu_period", opt(&a.cpu_period), opt(&d.cpu_period));
    push("cpu_quota", opt(&a.cpu_quota), opt(&d.cpu_quota));
    push(
        "cpu_rt_period",
        opt(&a.cpu_rt_period),
        opt(&d.cpu_rt_period),
    );
    push(
        "cpu_rt_runtime",
        opt(&a.cpu_rt_runtime),
        opt(&d.cpu_rt_runtime),
    );
    // Only a declared value, and only where the host keeps one: an engine may report its
    // kernel's default for a container that asked for none.
    if a.mem_swappiness.is_some() && d.mem_swappiness.is_some() {
        push(
            "mem_swappiness",
            opt(&a.mem_swappiness),
            opt(&d.mem_swappiness),
        );
    }
    push(
        "device_cgroup_rules",
        list(&a.device_cgroup_rules),
        list(&d.device_cgroup_rules),
    );
    push("storage_opt", map(&a.storage_opt), map(&d.storage_opt));
    let (db, ab) = (&d.blkio, &a.blkio);
    if ab.weight.is_some() || db.weight.is_none() {
        push("blkio_config.weight", opt(&ab.weight), opt(&db.weight));
    }
    push(
        "blkio_config.weight_device",
        pairs(&ab.weight_device),
        pairs(&db.weight_device),
    );
    for (name, have, want) in [
        (
            "blkio_config.device_read_bps",
            &ab.device_read_bps,
            &db.device_read_bps,
        ),
        (
            "blkio_config.device_write_bps",
            &ab.device_write_bps,
            &db.device_write_bps,
        ),
        (
            "blkio_config.device_read_iops",
            &ab.device_read_iops,
            &db.device_read_iops,
        ),
        (
            "blkio_config.device_write_iops",
            &ab.device_write_iops,
            &db.device_write_iops,
        ),
    ] {
        push(name, pairs(have), pairs(want));
    }
    // Engines before API 1.43 drop annotations: none reported is no evidence of a change.
    if !a.annotations.is_empty() {
        push("annotations", map(&a.annotations), map(&d.annotations));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(d: &EngineMore, a: &EngineMore) -> Vec<String> {
        let mut out = Vec::new();
        more_drift(d, a, &mut out);
        out.into_iter()
            .map(|c| format!("{}: {} -> {}", c.field, c.old, c.new))
            .collect()
    }

    #[test]
    fn nothing_declared_and_the_engines_defaults_are_in_sync() {
        let engine = EngineMore {
            shm_size_bytes: Some(64 << 20),
            cgroup: Some("host".into()),
            ..Default::default()
        };
        assert!(drift(&EngineMore::default(), &engine).is_empty());
    }

    #[test]
    fn a_declared_value_the_engine_does_not_have_is_drift() {
        let want = EngineMore {
            privileged: true,
            shm_size_bytes: Some(128 << 20),
            dns_search: vec!["a.example".into()],
            cgroup: Some("private".into()),
            cpuset: Some("0".into()),
            ..Default::default()
        };
        let have = EngineMore {
            shm_size_bytes: Some(64 << 20),
            cgroup: Some("host".into()),
            ..Default::default()
        };
        assert_eq!(
            drift(&want, &have),
            [
                "privileged: false -> true",
                "shm_size: 67108864 -> 134217728",
                "dns_search: (none) -> a.example",
                "cgroup: host -> private",
                "cpuset: (none) -> 0",
            ]
        );
        assert!(drift(&want, &want).is_empty());
    }

    /// What a kernel or an older engine drops is not drift; what it keeps is compared.
    #[test]
    fn settings_a_host_drops_are_not_drift() {
        let want = EngineMore {
            oom_kill_disable: true,
            mem_swappiness: Some(10),
            annotations: [("a".to_string(), "b".to_string())].into(),
            blkio: crate::model::engine_more::Blkio {
                weight: Some(300),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(drift(&want, &EngineMore::default()).is_empty());
        let mut kept = want.clone();
        kept.mem_swappiness = Some(60);
        kept.annotations = [("a".to_string(), "c".to_string())].into();
        assert_eq!(
            drift(&want, &kept),
            ["mem_swappiness: 60 -> 10", "annotations: a=c -> a=b",]
        );
        // Set by hand on a container that should not have it: seen.
        let by_hand = EngineMore {
            oom_kill_disable: true,
            ..Default::default()
        };
        assert_eq!(
            drift(&EngineMore::default(), &by_hand),
            ["oom_kill_disable: true -> false"]
        );
    }
}
