//! The fleet's hosts at run time: one connection per host, and observation of all of them in
//! parallel.
//!
//! A host that cannot be connected to or observed becomes `ObservedHost::Unreachable` with the
//! reason; it never fails or delays the others beyond its own timeout (DESIGN.md, invariant 4).
//! This module decides nothing about what should run: it reports what is.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::docker::Engine;
use crate::observed::{ObservedHost, ObservedState};
use crate::schedule::{Assignment, Placement};
use crate::spec::{DesiredState, HostAddress, HostSpec};

/// How long one host may take to answer an observation.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Connected engines by host name, and the reason for each host that could not be connected.
pub struct Fleet {
    pub engines: BTreeMap<String, Engine>,
    pub failed: BTreeMap<String, String>,
    /// Round-trip of the connection's first ping, per connected host.
    pub rtt: BTreeMap<String, Duration>,
}

impl Fleet {
    /// Connects to every host of `desired` at once.
    pub async fn connect(desired: &DesiredState) -> Fleet {
        let attempts = futures_util::future::join_all(
            desired
                .hosts
                .values()
                .map(|h| async move { (h.name.clone(), connect_host(h).await) }),
        )
        .await;
        let mut fleet = Fleet {
            engines: BTreeMap::new(),
            failed: BTreeMap::new(),
            rtt: BTreeMap::new(),
        };
        for (name, result) in attempts {
            match result {
                Ok((engine, rtt)) => {
                    fleet.engines.insert(name.clone(), engine);
                    fleet.rtt.insert(name, rtt);
                }
                Err(reason) => {
                    tracing::warn!(host = %name, %reason, "host unreachable");
                    fleet.failed.insert(name, reason);
                }
            }
        }
        fleet
    }

    /// Observes every connected host in parallel. `placement` says which images each host
    /// needs, so their current IDs are read too.
    pub async fn observe(&self, desired: &DesiredState, placement: &Placement) -> ObservedState {
        let mut images: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for (key, a) in &placement.replicas {
            if let Assignment::Host { host } = a {
                if let Some(svc) = desired
                    .stacks
                    .get(&key.stack)
                    .and_then(|s| s.services.get(&key.service))
                {
                    images
                        .entry(host.as_str())
                        .or_default()
                        .insert(svc.container.image.clone());
                }
            }
        }
        let empty = BTreeSet::new();
        let results = futures_util::future::join_all(self.engines.iter().map(|(name, engine)| {
            let images = images.get(name.as_str()).unwrap_or(&empty);
            async move {
                let started = Instant::now();
                let r = tokio::time::timeout(OBSERVE_TIMEOUT, engine.observe(&desired.fleet, images))
                    .await;
                tracing::debug!(host = %name, elapsed_ms = started.elapsed().as_millis() as u64, "observed");
                (name.clone(), r)
            }
        }))
        .await;
        let mut state = ObservedState::default();
        for (name, r) in results {
            let host = match r {
                Ok(Ok(snap)) => ObservedHost::Reachable(snap),
                Ok(Err(e)) => ObservedHost::Unreachable {
                    reason: e.to_string(),
                },
                Err(_) => ObservedHost::Unreachable {
                    reason: format!("no answer within {}s", OBSERVE_TIMEOUT.as_secs()),
                },
            };
            state.hosts.insert(name, host);
        }
        for (name, reason) in &self.failed {
            state.hosts.insert(
                name.clone(),
                ObservedHost::Unreachable {
                    reason: reason.clone(),
                },
            );
        }
        state
    }
}

async fn connect_host(host: &HostSpec) -> Result<(Engine, Duration), String> {
    match &host.address {
        HostAddress::Unix { path } => {
            let engine = Engine::unix(&host.name, path).map_err(|e| e.to_string())?;
            let started = Instant::now();
            match tokio::time::timeout(Duration::from_secs(5), engine.ping()).await {
                Ok(Ok(())) => Ok((engine, started.elapsed())),
                Ok(Err(e)) => Err(format!(
                    "cannot reach the engine at unix://{}: {}",
                    path.display(),
                    e.message
                )),
                Err(_) => Err(format!(
                    "the engine at unix://{} did not answer within 5s",
                    path.display()
                )),
            }
        }
        HostAddress::Ssh { .. } => Err(format!(
            "ssh hosts are not supported by this build yet ({})",
            host.address
        )),
    }
}
