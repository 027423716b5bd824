//! The container's less common engine settings, kept together in one value of
//! [`ContainerSpec`](super::spec::ContainerSpec): `privileged`, `shm_size`, `dns_opt`,
//! `dns_search`, `domainname`, `group_add`, `oom_score_adj`, `oom_kill_disable`, `cgroup`,
//! `cgroup_parent`, `uts`, `userns_mode`, `cpuset`, the CPU period and quota (real-time ones
//! too), `mem_swappiness`, `device_cgroup_rules`, `storage_opt`, `blkio_config` and
//! `annotations` (issue 9).
//!
//! Data only, already validated by the manifest. "Upgrades are invisible": every field is left
//! out of the serialised form while empty, and the whole value while every field is, so a spec
//! that uses none of them hashes as before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

fn is_false(b: &bool) -> bool {
    !*b
}

/// The engine settings of a container that Compose files use less often.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineMore {
    /// `privileged`: every capability and device of the host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    /// `shm_size`: bytes of `/dev/shm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size_bytes: Option<i64>,
    /// `dns_opt`, in the order written (resolv.conf keeps it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_opt: Vec<String>,
    /// `dns_search`, in the order written (the first domain is tried first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    /// `group_add`: supplementary groups of the main process, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_kill_disable: bool,
    /// `cgroup`: the cgroup namespace, `host` or `private`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// `uts`: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    /// `userns_mode`: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    /// `cpuset`: the CPUs the container may use (`0-2,4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// `cpu_period`, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period: Option<i64>,
    /// `cpu_quota`, microseconds per period (-1: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<i64>,
    /// `cpu_rt_period`, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<i64>,
    /// `cpu_rt_runtime`, microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<i64>,
    /// `mem_swappiness`, 0 to 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_swappiness: Option<i64>,
    /// `device_cgroup_rules` (`c 1:3 mr`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Blkio::is_empty")]
    pub blkio: Blkio,
    /// `annotations`: OCI annotations of the container (engine API 1.43 and later).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl EngineMore {
    pub fn is_empty(&self) -> bool {
        *self == EngineMore::default()
    }
}

/// `blkio_config`: the block I/O weight and throttles. Device lists are sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blkio {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
    /// (device path, weight).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<(String, u16)>,
    /// (device path, bytes per second).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<(String, i64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<(String, i64)>,
    /// (device path, operations per second).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<(String, i64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<(String, i64)>,
}

impl Blkio {
    pub fn is_empty(&self) -> bool {
        *self == Blkio::default()
    }
}
