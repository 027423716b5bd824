//! The daemon's hosts: which it tracks, their watchers and background reconnects, what it
//! remembers of each between passes (last contact, what it ran), and their state for status.
//!
//! Part of the `Daemon` state machine (an `impl` block of it); it plans nothing and runs no
//! pass. What it remembers is rebuilt from observation after a restart ("git and the engines
//! are the truth").

use std::time::Duration;

use tokio::time::Instant;

use super::{watch, Daemon, HostState, HostTrack, Trigger, PARKED_RETRY};
use crate::core::pass::HostMemory;
use crate::infra::fleet::{backoff, ConnectError, Connection};
use crate::model::observed::ObservedHost;
use crate::model::outcome::PassReason;
use crate::reconcile::Loaded;

impl Daemon {
    /// Tracks exactly the hosts of the fleet file; hosts whose first connection failed for
    /// good are parked at once.
    pub(super) fn sync_hosts(&mut self) {
        let Some(l) = &self.loaded else { return };
        self.hosts.retain(|name, t| {
            let keep = l.desired.hosts.contains_key(name);
            if !keep {
                if let Some(w) = t.watcher.take() {
                    w.abort();
                }
            }
            keep
        });
        let now = Instant::now();
        for name in l.desired.hosts.keys() {
            let connected = self.fleet.engines.contains_key(name);
            let t = self
                .hosts
                .entry(name.clone())
                .or_insert_with(|| HostTrack::new(now, connected));
            if let Some(e) = self.fleet.failed.get(name).filter(|e| e.is_final) {
                if t.parked.is_none() {
                    // Fleet::connect said it at warn level already.
                    t.parked = Some(e.reason.clone());
                    t.retry_at = Some(now + PARKED_RETRY);
                }
            }
        }
    }

    pub(super) fn start_watchers(&mut self) {
        let Some(l) = &self.loaded else { return };
        for (name, engine) in &self.fleet.engines {
            let Some(t) = self.hosts.get_mut(name) else {
                continue;
            };
            let adopted: Vec<String> = l
                .desired
                .settings
                .adopted
                .iter()
                .filter(|a| &a.host == name)
                .map(|a| a.project.clone())
                .collect();
            if let Some(w) = t.watcher.as_ref().filter(|w| !w.is_finished()) {
                if t.watched_projects == adopted {
                    continue;
                }
                // A commit adopted or released a project on this host: follow its events from
                // the last one seen.
                w.abort();
            }
            t.watched_projects = adopted.clone();
            t.watcher = Some(self.tasks.spawn(watch::watch_host(
                name.clone(),
                engine.clone(),
                watch::Owned {
                    fleet: l.desired.fleet.clone(),
                    adopted,
                },
                t.last_event,
                self.opts.heartbeat,
                self.tx.clone(),
                self.cancel.child_token(),
            )));
        }
        // Reap what ended, so the set does not grow with every reconnect.
        while self.tasks.try_join_next().is_some() {}
    }

    pub(super) fn start_reconnects(&mut self) {
        let Some(l) = &self.loaded else { return };
        let now = Instant::now();
        let due: Vec<String> = self
            .hosts
            .iter()
            .filter(|(name, t)| {
                !t.connecting
                    && t.retry_at.is_some_and(|at| at <= now)
                    && !self.fleet.engines.contains_key(*name)
            })
            .map(|(n, _)| n.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let connector = self.fleet.connector(&l.desired, &self.opts.connect);
        for name in due {
            let Some(spec) = l.desired.hosts.get(&name).cloned() else {
                continue;
            };
            if let Some(t) = self.hosts.get_mut(&name) {
                t.connecting = true;
                tracing::debug!(host = %name, attempt = t.attempt, "reconnecting");
            }
            let connector = connector.clone();
            let tx = self.tx.clone();
            let cancel = self.cancel.clone();
            self.tasks.spawn(async move {
                let result = tokio::select! {
                    r = connector.connect(&spec) => r,
                    _ = cancel.cancelled() => return,
                };
                let _ = tx.send(Trigger::Connected {
                    host: spec.name.clone(),
                    result: result.map(Box::new),
                });
            });
        }
    }

    pub(super) fn connected(
        &mut self,
        host: String,
        result: Result<Box<Connection>, ConnectError>,
    ) {
        let Some(t) = self.hosts.get_mut(&host) else {
            return;
        };
        t.connecting = false;
        match result {
            Ok(conn) => {
                tracing::info!(host = %host, "connected");
                self.fleet.adopt(&host, *conn);
                t.last_contact = Instant::now();
                t.attempt = 0;
                t.retry_at = None;
                t.parked = None;
                t.down_requested = false;
                self.notifications.host_back(&host);
                // Observe it before anything else there (fencing happens in this pass).
                self.request(PassReason::HostBack { host });
            }
            Err(e) if e.is_final => {
                // Waiting will not heal it: say it once, and look again only now and then.
                if t.parked.as_deref() != Some(e.reason.as_str()) {
                    tracing::warn!(host = %host, reason = %e.reason, retry_in_secs = PARKED_RETRY.as_secs(), "cannot connect to the host; parked until it changes");
                }
                t.parked = Some(e.reason);
                t.retry_at = Some(Instant::now() + PARKED_RETRY);
            }
            Err(e) => {
                let delay = backoff(t.attempt);
                tracing::debug!(host = %host, reason = %e.reason, attempt = t.attempt, delay_ms = delay.as_millis() as u64, "reconnect failed");
                t.attempt = t.attempt.saturating_add(1);
                t.retry_at = Some(Instant::now() + delay);
            }
        }
    }

    /// What the planner may know of hosts it cannot see now.
    pub(super) fn memory(&self, loaded: &Loaded) -> HostMemory {
        let grace = Duration::from_secs(loaded.desired.settings.host_down_after_secs);
        let now = Instant::now();
        HostMemory {
            down: self
                .hosts
                .iter()
                .filter(|(name, t)| t.is_down(self.fleet.engines.contains_key(*name), now, grace))
                .map(|(n, _)| n.clone())
                .collect(),
            last_known: self
                .hosts
                .iter()
                .filter_map(|(n, t)| Some((n.clone(), t.last_known.clone()?)))
                .collect(),
        }
    }

    /// Every host that answered: its last contact and what it runs.
    pub(super) fn remember_run(
        &mut self,
        observed: &crate::model::observed::ObservedState,
        decided: &crate::core::pass::PassPlan,
    ) {
        for (name, obs) in &observed.hosts {
            if let (ObservedHost::Reachable(_), Some(t)) = (obs, self.hosts.get_mut(name)) {
                t.last_contact = Instant::now();
                t.last_known = Some(
                    decided
                        .snapshot
                        .existing
                        .iter()
                        .filter(|e| &e.host == name)
                        .cloned()
                        .collect(),
                );
            }
        }
    }

    /// A connected host that did not answer the observation: probe it; if that fails too, the
    /// connection is gone and the background reconnect takes over.
    pub(super) async fn probe_silent(&mut self, observed: &crate::model::observed::ObservedState) {
        let silent: Vec<String> = observed
            .hosts
            .iter()
            .filter(|(n, o)| {
                matches!(o, ObservedHost::Unreachable { .. }) && self.fleet.engines.contains_key(*n)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in silent {
            if let Err(reason) = self.fleet.probe(&name).await {
                self.fleet.disconnect(&name, &reason).await;
                if let Some(t) = self.hosts.get_mut(&name) {
                    if let Some(w) = t.watcher.take() {
                        w.abort();
                    }
                    t.retry_at = Some(Instant::now());
                }
            }
        }
    }

    /// Every tracked host's state, as status and metrics show it.
    pub(super) fn host_states(&self) -> Vec<HostState> {
        let now = Instant::now();
        let grace = self.grace().unwrap_or(Duration::MAX);
        self.hosts
            .iter()
            .map(|(name, t)| {
                let connected = self.fleet.engines.contains_key(name);
                let reason = self.fleet.failed.get(name).map(|e| e.reason.clone());
                let state = if connected {
                    "connected"
                } else if t.parked.is_some() {
                    "parked"
                } else if t.is_down(connected, now, grace) {
                    "down"
                } else {
                    "unreachable"
                };
                HostState {
                    name: name.clone(),
                    state,
                    reason: if connected {
                        None
                    } else {
                        reason.or(t.parked.clone())
                    },
                }
            })
            .collect()
    }
}
