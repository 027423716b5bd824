//! Containers that share another's namespace or volumes (issue 9): `network_mode:
//! service:<name>` / `container:<name>` (kept in `ContainerSpec::network_mode` as written) and
//! `volumes_from`, kept here, with `links` (the engine's endpoint links, to the linked
//! service's replicas on the same host). A `service:` source is a service of the same stack: the
//! dependent's slot k runs on the host of the source's slot k (`core::schedule::colocate`),
//! and the planner resolves the source to that replica's engine name; a `container:` source
//! is a container outside Convoy, named as it is.
//!
//! Data only, validated by the manifest. Left out of the serialised spec while empty, so a
//! spec without it hashes as before; the resolved engine names are never serialised (they
//! depend on the slot, and the hash is the service's).

use serde::{Deserialize, Serialize};

/// Where a namespace or volumes come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShareSource {
    /// A service of the same stack.
    Service(String),
    /// A container outside Convoy, by its engine name.
    Container(String),
}

/// One `volumes_from` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesFrom {
    pub source: ShareSource,
    pub read_only: bool,
}

/// `volumes_from`, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharing {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<VolumesFrom>,
    /// The engine's `VolumesFrom` (`<engine name>[:ro]`): resolved per slot by the planner,
    /// read back by observation. Never serialised.
    #[serde(skip)]
    pub engine_volumes_from: Vec<String>,
    /// `links`, in the order written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// The engine's endpoint `Links` (`<engine name>:<alias>`, sorted): the linked services'
    /// replicas on the same host, resolved by the planner, read back by observation. Never
    /// serialised.
    #[serde(skip)]
    pub engine_links: Vec<String>,
}

/// One `links` entry: `service[:alias]` (the alias is the service's name when not written).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub service: String,
    pub alias: String,
}

impl Sharing {
    pub fn is_empty(&self) -> bool {
        self.volumes_from.is_empty()
            && self.engine_volumes_from.is_empty()
            && self.links.is_empty()
            && self.engine_links.is_empty()
    }
}

/// The service a `network_mode` names with `service:`, if it does.
pub fn network_source_service(network_mode: Option<&str>) -> Option<&str> {
    network_mode?.strip_prefix("service:")
}
