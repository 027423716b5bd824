//! Builders of desired and observed state for the tests of the planning core: the hosts,
//! services, stacks and desired states that `plan` and `schedule` tests start from, made the same
//! way in both so that a fixture means one thing everywhere.
//!
//! Test-only (compiled under `cfg(test)`). Each builder gives the plainest value that is still
//! valid and leaves every variation to the test, which sets the fields it is about; a builder
//! must not grow a default that some test relies on without saying so. "the planning core is
//! pure": like the code it feeds, it does no I/O and uses no `HashMap`.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::observed::{HostSnapshot, ObservedHost, ObservedState};
use crate::model::spec::{
    ContainerSpec, DeployMode, DesiredState, FleetSettings, HostAddress, HostSpec, ImagePolicy,
    Placement, ServiceSpec, SshSettings, StackSpec,
};

/// The fleet every test state belongs to.
pub const FLEET: &str = "t";

/// A host reached through the local docker socket: no labels, capacity, cordon or drain.
pub fn host(name: &str) -> HostSpec {
    HostSpec {
        name: name.into(),
        address: HostAddress::Unix {
            path: "/var/run/docker.sock".into(),
        },
        docker_socket: "/var/run/docker.sock".into(),
        labels: BTreeMap::new(),
        capacity: None,
        images: ImagePolicy::Pull,
        ssh: SshSettings::default(),
        cordon: false,
        drain: false,
        files: Default::default(),
        internal_address: None,
    }
}

/// A replicated service of `replicas` running `busybox:1`, with nothing else set: no command,
/// network, dependency, placement rule or reservation.
pub fn service(name: &str, replicas: u32) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        mode: DeployMode::Replicated,
        replicas,
        depends_on: BTreeMap::new(),
        placement: Placement::default(),
        reserve_nano_cpus: None,
        reserve_memory_bytes: None,
        secret_env: BTreeSet::new(),
        container: ContainerSpec {
            image: "busybox:1".into(),
            ..Default::default()
        },
        restart_with: BTreeSet::new(),
        rollout: Default::default(),
        job: None,
        ingress: None,
        http_ports: BTreeSet::new(),
    }
}

/// A stack of `services` from `stacks/<name>/compose.yaml`, with no networks or volumes.
pub fn stack(name: &str, services: Vec<ServiceSpec>) -> StackSpec {
    StackSpec {
        name: name.into(),
        file: format!("stacks/{name}/compose.yaml"),
        services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
    }
}

/// The desired state of fleet [`FLEET`]: `hosts` built by [`host`], `stacks`, default settings
/// and no secrets.
pub fn desired(hosts: &[&str], stacks: Vec<StackSpec>) -> DesiredState {
    DesiredState {
        secret_values: Default::default(),
        fleet: FLEET.into(),
        hosts: hosts.iter().map(|h| (h.to_string(), host(h))).collect(),
        stacks: stacks.into_iter().map(|s| (s.name.clone(), s)).collect(),
        settings: FleetSettings::default(),
        files: Default::default(),
        kept_networks: Default::default(),
    }
}

/// Every host of `d` reachable and empty: what the engines report before a first apply.
pub fn empty_observed(d: &DesiredState) -> ObservedState {
    ObservedState {
        hosts: d
            .hosts
            .keys()
            .map(|h| (h.clone(), ObservedHost::Reachable(HostSnapshot::default())))
            .collect(),
    }
}
