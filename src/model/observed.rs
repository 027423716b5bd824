//! What the engines report, in Convoy's own types: the input of the planner on the observed side.
//!
//! `docker` builds these values from bollard's types; nothing past this boundary sees bollard.
//! The module holds data only: no I/O, no clock. Every collection is ordered, so a plan made from
//! an `ObservedState` is deterministic.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::model::spec::ContainerSpec;

/// Every host of the fleet as observed in one pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObservedState {
    pub hosts: BTreeMap<String, ObservedHost>,
}

/// One host: either what its engine reported, or why it could not be observed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
// One value per host, and most hosts are reachable: the unreachable variant being small saves
// nothing worth a box around every snapshot (the proxy's fields of issue 13 crossed the line).
#[allow(clippy::large_enum_variant)]
pub enum ObservedHost {
    Reachable(HostSnapshot),
    Unreachable { reason: String },
}

impl ObservedHost {
    pub fn snapshot(&self) -> Option<&HostSnapshot> {
        match self {
            ObservedHost::Reachable(s) => Some(s),
            ObservedHost::Unreachable { .. } => None,
        }
    }
}

/// What one reachable engine reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSnapshot {
    pub engine_version: String,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
    /// Containers carrying this fleet's ownership label, by name.
    pub containers: BTreeMap<String, ObservedContainer>,
    /// Names of every container Convoy does not own (another fleet's or nobody's): only their
    /// names are kept, to report clashes. They never appear in a plan ("only what carries the
    /// fleet's label is touched").
    pub foreign_names: BTreeSet<String>,
    /// Networks carrying this fleet's label, by engine name: every network of that name, as
    /// two processes creating it at once can leave several (the engine then refuses the name
    /// as ambiguous). Each carries its ID, which is what every engine call on it uses.
    pub networks: BTreeMap<String, Vec<ObservedNetwork>>,
    /// Volumes carrying this fleet's label, by engine name.
    pub volumes: BTreeMap<String, ObservedResource>,
    /// Network names present on the engine that this fleet does not own (clash detection).
    pub foreign_networks: BTreeSet<String>,
    /// Image reference as written → image ID, for the references the desired state uses and
    /// the host has.
    pub image_ids: BTreeMap<String, String>,
    /// What the host holds of the files the desired state needs; `None` when it needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Box<crate::model::files::FilesSeen>>,
    /// Quarantine records on this engine (`model::rollout`): specs that failed a rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantines: Vec<crate::model::rollout::QuarantineRecord>,
    /// Containers in `containers` that carry no fleet label but belong to a Compose project
    /// the fleet file adopts (`model::adopt`): container name → project. Their spec hash is
    /// empty, so the planner decides "in sync" for them from drift alone.
    /// Boxed: most snapshots have none, and `ObservedHost` stays small.
    #[serde(default, skip_serializing_if = "no_adoptions")]
    pub adopted: Box<BTreeMap<String, String>>,
    /// The host's proxy container (issue 13), read from its labels: not a replica, so not in
    /// `containers`. `None` when the host has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<Box<crate::model::proxy::ObservedProxy>>,
    /// Container name → engine network name → its IPv4 address there, for the containers in
    /// `containers` (issue 13: the proxy's backends are addressed by IP).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_ips: BTreeMap<String, BTreeMap<String, String>>,
}

fn no_adoptions(adopted: &BTreeMap<String, String>) -> bool {
    adopted.is_empty()
}

/// A volume Convoy owns on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedResource {
    pub stack: String,
    /// In-use count is not known from a list; the planner decides from desired containers.
    pub resource: String,
}

/// One network Convoy owns on a host, as inspected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObservedNetwork {
    pub id: String,
    pub stack: String,
    pub resource: String,
    /// Creation time as the engine reports it, its fraction of a second padded to nine digits
    /// so that two times of one engine compare as strings.
    pub created: String,
    /// Names of every container attached to it, the fleet's or not.
    pub containers: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// One container Convoy owns, as inspected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedContainer {
    pub id: String,
    pub name: String,
    pub stack: String,
    pub service: String,
    pub slot: String,
    /// `convoy.spec-hash` label; empty when missing.
    pub spec_hash: String,
    pub commit: String,
    /// Creation time as the engine reports it (RFC 3339).
    pub created: String,
    pub image_id: String,
    pub state: RunState,
    pub exit_code: i64,
    pub health: Option<Health>,
    pub restart_count: i64,
    /// The container's real settings, read from inspect, for drift detection.
    pub actual: ContainerSpec,
    /// What the image supplies when the spec leaves a field out.
    pub image_defaults: ImageDefaults,
}

impl ObservedContainer {
    /// The last exit code as status reports it: known for a container that exited, restarts
    /// or is dead. The engine resets it to 0 when it starts a container again, so a running
    /// container's last exit code is unknown, not 0.
    pub fn reported_exit_code(&self) -> Option<i64> {
        matches!(
            self.state,
            RunState::Exited | RunState::Restarting | RunState::Dead
        )
        .then_some(self.exit_code)
    }

    /// Restarting, or restarted three times or more: the engine keeps restarting it and it
    /// keeps failing.
    pub fn crash_looping(&self) -> bool {
        self.state == RunState::Restarting || self.restart_count >= 3
    }
}

/// The parts of an image's config that the engine applies to a container by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageDefaults {
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub stop_signal: Option<String>,
    /// Container paths the image declares as volumes (they get anonymous volumes).
    pub volumes: BTreeSet<String>,
    pub healthcheck: Option<crate::model::spec::Healthcheck>,
}
