//! The less common engine settings of a replica ([`EngineMore`]) put into the engine's create
//! request: `Config.Domainname` and the host config's privileges, namespaces, cgroup limits,
//! block I/O and annotations.
//!
//! A pure translation, as `create`: it must not call the engine, pick defaults of its own or
//! drop a field, since what it leaves out the engine fills in and `drift` would see it. An
//! unset field stays `None`, so a spec that uses none of these sends what it sent before.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum, ResourcesBlkioWeightDevice,
    ThrottleDevice,
};

use crate::model::engine_more::EngineMore;

/// `body` with `more`'s settings added.
pub(super) fn with_more(mut body: ContainerCreateBody, more: &EngineMore) -> ContainerCreateBody {
    if more.domainname.is_some() {
        body.domainname = more.domainname.clone();
    }
    let hc = body.host_config.get_or_insert_with(HostConfig::default);
    fill_host_config(hc, more);
    body
}

fn list(v: &[String]) -> Option<Vec<String>> {
    Some(v.to_vec()).filter(|v| !v.is_empty())
}

fn map(m: &std::collections::BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    Some(m.clone().into_iter().collect()).filter(|m: &HashMap<_, _>| !m.is_empty())
}

fn throttles(v: &[(String, i64)]) -> Option<Vec<ThrottleDevice>> {
    Some(
        v.iter()
            .map(|(path, rate)| ThrottleDevice {
                path: Some(path.clone()),
                rate: Some(*rate),
            })
            .collect(),
    )
    .filter(|v: &Vec<_>| !v.is_empty())
}

fn fill_host_config(hc: &mut HostConfig, m: &EngineMore) {
    if m.privileged {
        hc.privileged = Some(true);
    }
    hc.shm_size = m.shm_size_bytes.or(hc.shm_size);
    hc.dns_options = list(&m.dns_opt).or(hc.dns_options.take());
    hc.dns_search = list(&m.dns_search).or(hc.dns_search.take());
    hc.group_add = list(&m.group_add).or(hc.group_add.take());
    hc.oom_score_adj = m.oom_score_adj.or(hc.oom_score_adj);
    if m.oom_kill_disable {
        hc.oom_kill_disable = Some(true);
    }
    if let Some(mode) = &m.cgroup {
        hc.cgroupns_mode = Some(match mode.as_str() {
            "host" => HostConfigCgroupnsModeEnum::HOST,
            _ => HostConfigCgroupnsModeEnum::PRIVATE,
        });
    }
    hc.cgroup_parent = m.cgroup_parent.clone().or(hc.cgroup_parent.take());
    hc.uts_mode = m.uts.clone().or(hc.uts_mode.take());
    hc.userns_mode = m.userns_mode.clone().or(hc.userns_mode.take());
    hc.cpuset_cpus = m.cpuset.clone().or(hc.cpuset_cpus.take());
    hc.cpu_period = m.cpu_period.or(hc.cpu_period);
    hc.cpu_quota = m.cpu_quota.or(hc.cpu_quota);
    hc.cpu_realtime_period = m.cpu_rt_period.or(hc.cpu_realtime_period);
    hc.cpu_realtime_runtime = m.cpu_rt_runtime.or(hc.cpu_realtime_runtime);
    hc.memory_swappiness = m.mem_swappiness.or(hc.memory_swappiness);
    hc.device_cgroup_rules = list(&m.device_cgroup_rules).or(hc.device_cgroup_rules.take());
    hc.storage_opt = map(&m.storage_opt).or(hc.storage_opt.take());
    hc.annotations = map(&m.annotations).or(hc.annotations.take());
    let b = &m.blkio;
    hc.blkio_weight = b.weight.or(hc.blkio_weight);
    if !b.weight_device.is_empty() {
        hc.blkio_weight_device = Some(
            b.weight_device
                .iter()
                .map(|(path, w)| ResourcesBlkioWeightDevice {
                    path: Some(path.clone()),
                    weight: Some(usize::from(*w)),
                })
                .collect(),
        );
    }
    hc.blkio_device_read_bps = throttles(&b.device_read_bps).or(hc.blkio_device_read_bps.take());
    hc.blkio_device_write_bps = throttles(&b.device_write_bps).or(hc.blkio_device_write_bps.take());
    hc.blkio_device_read_iops = throttles(&b.device_read_iops).or(hc.blkio_device_read_iops.take());
    hc.blkio_device_write_iops =
        throttles(&b.device_write_iops).or(hc.blkio_device_write_iops.take());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::engine_more::Blkio;

    #[test]
    fn an_empty_value_changes_nothing_of_the_request() {
        let body = ContainerCreateBody {
            image: Some("busybox:1".into()),
            host_config: Some(HostConfig {
                memory: Some(1 << 26),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(with_more(body.clone(), &EngineMore::default()), body);
    }

    #[test]
    fn every_setting_reaches_its_engine_field() {
        let more = EngineMore {
            privileged: true,
            shm_size_bytes: Some(1 << 27),
            dns_opt: vec!["ndots:2".into()],
            dns_search: vec!["example.org".into()],
            domainname: Some("example.org".into()),
            group_add: vec!["audio".into()],
            oom_score_adj: Some(-500),
            oom_kill_disable: true,
            cgroup: Some("host".into()),
            cgroup_parent: Some("parent".into()),
            uts: Some("host".into()),
            userns_mode: Some("host".into()),
            cpuset: Some("0".into()),
            cpu_period: Some(100_000),
            cpu_quota: Some(50_000),
            cpu_rt_period: Some(1_000_000),
            cpu_rt_runtime: Some(950_000),
            mem_swappiness: Some(10),
            device_cgroup_rules: vec!["c 1:3 mr".into()],
            storage_opt: [("size".to_string(), "1G".to_string())].into(),
            blkio: Blkio {
                weight: Some(300),
                weight_device: vec![("/dev/sda".into(), 400)],
                device_read_bps: vec![("/dev/sda".into(), 1 << 20)],
                device_write_bps: vec![("/dev/sda".into(), 2 << 20)],
                device_read_iops: vec![("/dev/sda".into(), 100)],
                device_write_iops: vec![("/dev/sda".into(), 200)],
            },
            annotations: [("a".to_string(), "b".to_string())].into(),
        };
        let body = with_more(ContainerCreateBody::default(), &more);
        assert_eq!(body.domainname.as_deref(), Some("example.org"));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.privileged, Some(true));
        assert_eq!(hc.shm_size, Some(1 << 27));
        assert_eq!(hc.dns_options, Some(vec!["ndots:2".to_string()]));
        assert_eq!(hc.dns_search, Some(vec!["example.org".to_string()]));
        assert_eq!(hc.group_add, Some(vec!["audio".to_string()]));
        assert_eq!(hc.oom_score_adj, Some(-500));
        assert_eq!(hc.oom_kill_disable, Some(true));
        assert_eq!(hc.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::HOST));
        assert_eq!(hc.cgroup_parent.as_deref(), Some("parent"));
        assert_eq!(hc.uts_mode.as_deref(), Some("host"));
        assert_eq!(hc.userns_mode.as_deref(), Some("host"));
        assert_eq!(hc.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!((hc.cpu_period, hc.cpu_quota), (Some(100_000), Some(50_000)));
        assert_eq!(
            (hc.cpu_realtime_period, hc.cpu_realtime_runtime),
            (Some(1_000_000), Some(950_000))
        );
        assert_eq!(hc.memory_swappiness, Some(10));
        assert_eq!(hc.device_cgroup_rules, Some(vec!["c 1:3 mr".to_string()]));
        assert_eq!(hc.storage_opt.unwrap()["size"], "1G");
        assert_eq!(hc.annotations.unwrap()["a"], "b");
        assert_eq!(hc.blkio_weight, Some(300));
        assert_eq!(hc.blkio_weight_device.unwrap()[0].weight, Some(400));
        assert_eq!(hc.blkio_device_read_bps.unwrap()[0].rate, Some(1 << 20));
        assert_eq!(hc.blkio_device_write_bps.unwrap()[0].rate, Some(2 << 20));
        assert_eq!(hc.blkio_device_read_iops.unwrap()[0].rate, Some(100));
        assert_eq!(hc.blkio_device_write_iops.unwrap()[0].rate, Some(200));
    }
}
