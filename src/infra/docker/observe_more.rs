//! The less common engine settings ([`EngineMore`]) read back from a container's inspect
//! answer, in the form the manifest writes them, so that `drift` compares like with like.
//!
//! It only reads and must not guess: where the engine reports its own default (0, an empty
//! string, `null`), the field is left empty, as a spec that does not write it is; where the
//! engine fills a default of its own that cannot be told from a value (the size of
//! `/dev/shm`, the cgroup namespace), the value is kept and `drift` compares it only when the
//! spec declares one.

use bollard::models::{ContainerConfig, HostConfig, HostConfigCgroupnsModeEnum};

use crate::model::engine_more::{Blkio, EngineMore};

fn text(v: &Option<String>) -> Option<String> {
    v.clone().filter(|s| !s.is_empty())
}

fn nonzero(v: Option<i64>) -> Option<i64> {
    v.filter(|n| *n != 0)
}

/// What the container runs with, of the settings `EngineMore` holds.
pub(super) fn read_more(hc: &HostConfig, cfg: &ContainerConfig) -> EngineMore {
    let sorted = |v: &Option<Vec<String>>| {
        let mut v = v.clone().unwrap_or_default();
        v.sort();
        v.dedup();
        v
    };
    let throttles = |v: &Option<Vec<bollard::models::ThrottleDevice>>| {
        let mut out: Vec<(String, i64)> = v
            .iter()
            .flatten()
            .filter_map(|t| Some((t.path.clone()?, t.rate.unwrap_or(0))))
            .collect();
        out.sort();
        out
    };
    let mut weight_device: Vec<(String, u16)> = hc
        .blkio_weight_device
        .iter()
        .flatten()
        .filter_map(|w| {
            Some((
                w.path.clone()?,
                u16::try_from(w.weight.unwrap_or(0)).unwrap_or(u16::MAX),
            ))
        })
        .collect();
    weight_device.sort();
    EngineMore {
        privileged: hc.privileged.unwrap_or(false),
        shm_size_bytes: hc.shm_size.filter(|n| *n > 0),
        dns_opt: hc.dns_options.clone().unwrap_or_default(),
        dns_search: hc.dns_search.clone().unwrap_or_default(),
        domainname: text(&cfg.domainname),
        group_add: sorted(&hc.group_add),
        oom_score_adj: nonzero(hc.oom_score_adj),
        oom_kill_disable: hc.oom_kill_disable.unwrap_or(false),
        cgroup: match hc.cgroupns_mode {
            Some(HostConfigCgroupnsModeEnum::HOST) => Some("host".into()),
            Some(HostConfigCgroupnsModeEnum::PRIVATE) => Some("private".into()),
            _ => None,
        },
        cgroup_parent: text(&hc.cgroup_parent),
        uts: text(&hc.uts_mode),
        userns_mode: text(&hc.userns_mode),
        cpuset: text(&hc.cpuset_cpus),
        cpu_period: nonzero(hc.cpu_period),
        // 0 and -1 are both "no quota" to the engine.
        cpu_quota: hc.cpu_quota.filter(|n| *n > 0),
        cpu_rt_period: nonzero(hc.cpu_realtime_period),
        cpu_rt_runtime: nonzero(hc.cpu_realtime_runtime),
        // -1 is how older engines say "not set".
        mem_swappiness: hc.memory_swappiness.filter(|n| *n >= 0),
        device_cgroup_rules: sorted(&hc.device_cgroup_rules),
        storage_opt: hc
            .storage_opt
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        blkio: Blkio {
            weight: hc.blkio_weight.filter(|w| *w > 0),
            weight_device,
            device_read_bps: throttles(&hc.blkio_device_read_bps),
            device_write_bps: throttles(&hc.blkio_device_write_bps),
            device_read_iops: throttles(&hc.blkio_device_read_iops),
            device_write_iops: throttles(&hc.blkio_device_write_iops),
        },
        annotations: hc
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container created without any of these settings, as a 20.10 engine reports it.
    #[test]
    fn the_engines_defaults_read_as_an_empty_value_but_for_its_own_fills() {
        let hc = HostConfig {
            privileged: Some(false),
            shm_size: Some(67_108_864),
            dns_options: Some(vec![]),
            dns_search: Some(vec![]),
            oom_score_adj: Some(0),
            oom_kill_disable: Some(false),
            cgroupns_mode: Some(HostConfigCgroupnsModeEnum::HOST),
            cgroup_parent: Some(String::new()),
            uts_mode: Some(String::new()),
            userns_mode: Some(String::new()),
            cpuset_cpus: Some(String::new()),
            cpu_period: Some(0),
            cpu_quota: Some(0),
            cpu_realtime_period: Some(0),
            cpu_realtime_runtime: Some(0),
            memory_swappiness: None,
            blkio_weight: Some(0),
            blkio_weight_device: Some(vec![]),
            ..Default::default()
        };
        let more = read_more(&hc, &ContainerConfig::default());
        assert_eq!(
            more,
            EngineMore {
                shm_size_bytes: Some(67_108_864),
                cgroup: Some("host".into()),
                ..Default::default()
            }
        );
    }
}
