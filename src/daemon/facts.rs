//! What the daemon publishes beyond the per-service counts, for the dashboard: every replica the
//! last pass placed (host or the scheduler's reason, state, health, restarts, crash loop, image,
//! commit, spec hash, and the masked last lines of a troubled one), what each host's engine
//! reported (version, CPUs, memory, round-trip time of a ping, since when it is silent), and the
//! steps of the pass in flight (so a heal shows while it happens). Also the plan of the newest
//! commit as `convoy diff` prints it, for the dashboard's diff view.
//!
//! Bookkeeping after a pass, and a few bounded reads (a ping per host, the last log lines of
//! troubled replicas, each under a short timeout) in a task of their own: it decides nothing,
//! must not make the daemon's loop wait on a host, and must not put a secret in the status (log
//! lines are masked with the desired state's secret values before they are kept).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use super::Daemon;
use crate::core::schedule::{Assignment, Placement};
use crate::model::observed::{Health, ObservedContainer, ObservedHost, ObservedState, RunState};
use crate::model::outcome::{PassReport, StepOutcome};
use crate::model::plan::{short_id, Action, Plan};
use crate::model::spec::mask_secrets;

/// Lines kept of a troubled replica's log.
const LOG_LINES: usize = 5;
/// Troubled replicas whose logs one pass reads (the rest show without lines).
const MAX_LOG_READS: usize = 10;
/// How long one log read or one ping may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// One desired replica as the last pass saw it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplicaFact {
    pub stack: String,
    pub service: String,
    pub slot: String,
    pub name: String,
    /// Where it is placed; empty when pending.
    pub host: String,
    /// The scheduler's reason when no host can take it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// None: placed but no container exists (missing).
    pub state: Option<RunState>,
    pub health: Option<Health>,
    pub restarts: i64,
    /// The last exit code of an exited or restarting container (unknown while one runs).
    pub exit_code: Option<i64>,
    /// Restarting, or restarted three times or more (the rule of `convoy status`).
    pub crash_loop: bool,
    /// The image the container runs (as created), or the desired one when none exists.
    pub image: String,
    /// The commit label of the container.
    pub commit: String,
    /// The spec-hash label (a rollout compares it with its `to_hash`).
    pub spec_hash: String,
    /// Short container ID (changes when a replica is replaced).
    pub container: String,
    /// The last lines of a troubled container, secrets masked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub last_logs: Vec<String>,
}

/// What a host's engine reported when last observed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HostFact {
    pub name: String,
    pub engine_version: String,
    pub cpus: f64,
    pub memory_bytes: i64,
    /// Containers the fleet owns there.
    pub containers: usize,
    /// Round-trip time of a Docker ping after the last pass, in milliseconds.
    pub rtt_ms: Option<f64>,
    /// Unix seconds of the last observation that answered.
    pub seen_at: Option<f64>,
    /// Unix seconds since the host has been silent (not connected), as the daemon counts
    /// `host_down_after` from.
    pub silent_since: Option<f64>,
    pub cordoned: bool,
    pub drained: bool,
}

/// One step of the pass in flight, as a plain line (`+ web-app-1 (missing)`), with the replica
/// it brings up (if any) and what that replica will run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepFact {
    pub id: usize,
    pub host: String,
    pub kind: &'static str,
    pub line: String,
    /// The replica the step creates, replaces, starts or restores; empty for other steps.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// For a create or a replace: the new container's spec hash, image and commit.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub spec_hash: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub commit: String,
}

/// The steps of `plan` as the status shows them while the pass runs.
pub(super) fn steps_in_flight(plan: &Plan) -> Vec<StepFact> {
    plan.steps
        .iter()
        .map(|s| {
            let mut f = StepFact {
                id: s.id,
                host: s.host.clone(),
                kind: s.action.kind(),
                line: s.action.line(),
                name: String::new(),
                spec_hash: String::new(),
                image: String::new(),
                commit: String::new(),
            };
            match &s.action {
                Action::Create { replica, .. } | Action::Replace { replica, .. } => {
                    f.name = replica.name.clone();
                    f.spec_hash = replica.spec_hash.clone();
                    f.image = replica.image.clone();
                    f.commit = plan.commit.clone();
                }
                Action::Start { name, .. } | Action::Restore { name, .. } => {
                    f.name = name.clone();
                }
                _ => {}
            }
            f
        })
        .collect()
}

/// A step of the pass in flight ended: it leaves the list, and the replica it brought up shows
/// as running what the step gave it (its container ID is known at the next observation).
pub(super) fn step_done(s: &mut super::DaemonStatus, o: &StepOutcome) {
    let Some(i) = s.in_flight.iter().position(|f| f.id == o.id) else {
        return;
    };
    let f = s.in_flight.remove(i);
    if o.error.is_some() || f.name.is_empty() {
        return;
    }
    let Some(r) = s.replicas.iter_mut().find(|r| r.name == f.name) else {
        return;
    };
    r.host = f.host;
    r.pending = None;
    r.state = Some(RunState::Running);
    r.health = None;
    r.exit_code = None;
    r.crash_loop = false;
    r.last_logs.clear();
    r.container.clear();
    if !f.spec_hash.is_empty() {
        r.restarts = 0;
        r.spec_hash = f.spec_hash;
        r.image = f.image;
        r.commit = f.commit;
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The replicas of `placement` with what `observed` says of each (no logs yet).
pub(super) fn replica_facts(
    desired: Option<&crate::model::spec::DesiredState>,
    placement: &Placement,
    observed: &ObservedState,
) -> Vec<ReplicaFact> {
    let mut out = Vec::new();
    for (key, a) in &placement.replicas {
        let name = match desired {
            Some(d) => d.replica_name(&key.stack, &key.service, &key.slot),
            None => crate::model::spec::container_name(&key.stack, &key.service, &key.slot),
        };
        let desired_image = desired
            .and_then(|d| d.stacks.get(&key.stack))
            .and_then(|s| s.services.get(&key.service))
            .map(|s| s.container.image.clone())
            .unwrap_or_default();
        let (host, pending) = match a {
            Assignment::Host { host } => (host.clone(), None),
            Assignment::Pending { reason } => (String::new(), Some(reason.clone())),
        };
        let c = observed
            .hosts
            .get(&host)
            .and_then(ObservedHost::snapshot)
            .and_then(|s| {
                // An adopted Compose container holds its slot under Compose's name.
                s.containers.get(&name).or_else(|| {
                    s.containers.values().find(|c| {
                        s.adopted.contains_key(&c.name)
                            && (&c.stack, &c.service, &c.slot)
                                == (&key.stack, &key.service, &key.slot)
                    })
                })
            });
        out.push(ReplicaFact {
            stack: key.stack.clone(),
            service: key.service.clone(),
            slot: key.slot.clone(),
            name: c.map_or(name, |c| c.name.clone()),
            host,
            pending,
            state: c.map(|c| c.state),
            health: c.and_then(|c| c.health),
            restarts: c.map(|c| c.restart_count).unwrap_or(0),
            exit_code: c.and_then(ObservedContainer::reported_exit_code),
            crash_loop: c.is_some_and(ObservedContainer::crash_looping),
            image: c
                .map(|c| c.actual.image.clone())
                .filter(|i| !i.is_empty())
                .unwrap_or(desired_image),
            commit: c.map(|c| c.commit.clone()).unwrap_or_default(),
            spec_hash: c.map(|c| c.spec_hash.clone()).unwrap_or_default(),
            container: c.map(|c| short_id(&c.id)).unwrap_or_default(),
            last_logs: Vec::new(),
        });
    }
    out
}

/// Troubled: restarted, restarting, or exited with an error: its last lines are worth reading.
fn troubled(r: &ReplicaFact) -> bool {
    r.restarts > 0 || r.state == Some(RunState::Restarting) || r.exit_code.is_some_and(|c| c != 0)
}

impl Daemon {
    /// Publishes the replicas, hosts and (cleared) steps in flight after a pass, at once and
    /// without I/O; then, off the loop (a host that stopped answering must not hold it), a
    /// ping per connected host and the last log lines of troubled replicas, each bounded, are
    /// read and published as they come. A replica a step of this pass brought up keeps what
    /// `step_done` wrote: the observation was made before the step.
    pub(super) fn publish_facts(
        &mut self,
        observed: &ObservedState,
        placement: &Placement,
        report: &PassReport,
    ) {
        let desired = self.loaded.as_ref().map(|l| &l.desired);
        let mut replicas = replica_facts(desired, placement, observed);
        let done: std::collections::BTreeSet<usize> = report
            .outcomes
            .iter()
            .filter(|o| o.error.is_none())
            .map(|o| o.id)
            .collect();
        let touched: std::collections::BTreeSet<String> = steps_in_flight(&report.plan)
            .into_iter()
            .filter(|f| done.contains(&f.id) && !f.name.is_empty())
            .map(|f| f.name)
            .collect();
        let (previous_hosts, previous_replicas): (BTreeMap<String, HostFact>, Vec<ReplicaFact>) = {
            let now = self.status.borrow();
            (
                now.host_facts
                    .iter()
                    .map(|h| (h.name.clone(), h.clone()))
                    .collect(),
                now.replicas.clone(),
            )
        };
        for r in replicas.iter_mut() {
            let before = previous_replicas.iter().find(|k| k.name == r.name);
            match before {
                Some(kept) if touched.contains(&r.name) => *r = kept.clone(),
                // The same container, still troubled: its lines stay until read again.
                Some(kept) if kept.container == r.container && troubled(r) => {
                    r.last_logs = kept.last_logs.clone()
                }
                _ => {}
            }
        }
        let (wall, mono) = (now(), Instant::now());
        let mut hosts = Vec::new();
        for (name, track) in &self.hosts {
            // A host not seen now keeps what it reported last.
            let mut fact = previous_hosts
                .get(name)
                .cloned()
                .unwrap_or_else(|| HostFact {
                    name: name.clone(),
                    ..HostFact::default()
                });
            if let Some(s) = observed.hosts.get(name).and_then(ObservedHost::snapshot) {
                fact.engine_version = s.engine_version.clone();
                fact.cpus = s.nano_cpus as f64 / 1e9;
                fact.memory_bytes = s.memory_bytes;
                fact.containers = s.containers.len();
                fact.seen_at = Some(wall);
            }
            let connected = self.fleet.engines.contains_key(name);
            if !connected {
                fact.rtt_ms = None;
            }
            fact.silent_since =
                (!connected).then(|| wall - mono.duration_since(track.last_contact).as_secs_f64());
            if let Some(spec) = desired.and_then(|d| d.hosts.get(name)) {
                fact.cordoned = spec.cordon;
                fact.drained = spec.drain;
            }
            hosts.push(fact);
        }
        let secrets = desired.map(|d| d.secret_values.clone()).unwrap_or_default();
        let reads: Vec<(String, crate::infra::docker::Engine)> = replicas
            .iter()
            .filter(|r| troubled(r) && r.last_logs.is_empty())
            .filter_map(|r| Some((r.name.clone(), self.fleet.engines.get(&r.host)?.clone())))
            .take(MAX_LOG_READS)
            .collect();
        let pings: Vec<(String, crate::infra::docker::Engine)> = self
            .fleet
            .engines
            .iter()
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        self.publish(move |s| {
            s.replicas = replicas;
            s.host_facts = hosts;
            s.in_flight.clear();
        });
        let status = self.status.clone();
        tokio::spawn(async move {
            let pings = futures_util::future::join_all(pings.into_iter().map(
                |(name, engine)| async move {
                    let started = Instant::now();
                    let ok = matches!(
                        tokio::time::timeout(READ_TIMEOUT, engine.ping()).await,
                        Ok(Ok(()))
                    );
                    (name, ok.then(|| started.elapsed().as_secs_f64() * 1000.0))
                },
            ));
            let logs = futures_util::future::join_all(reads.into_iter().map(
                |(name, engine)| async move {
                    let lines =
                        tokio::time::timeout(READ_TIMEOUT, engine.recent_logs(&name, LOG_LINES))
                            .await
                            .unwrap_or_default();
                    (name, lines)
                },
            ));
            let (pings, logs) = futures_util::future::join(pings, logs).await;
            status.send_modify(move |s| {
                for (name, rtt) in pings {
                    if let Some(h) = s.host_facts.iter_mut().find(|h| h.name == name) {
                        h.rtt_ms = rtt;
                    }
                }
                for (name, lines) in logs {
                    if let Some(r) = s.replicas.iter_mut().find(|r| r.name == name) {
                        r.last_logs = lines.iter().map(|l| mask_secrets(l, &secrets)).collect();
                    }
                }
            });
        });
    }

    /// The plan of the newest valid commit as `convoy diff` prints it (no colour).
    pub(super) async fn diff_text(&self) -> Result<String, String> {
        let plan = self.diff_plan().await?;
        Ok(crate::render::plan_text(
            &plan,
            crate::render::Style { colour: false },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(state: Option<RunState>, restarts: i64, exit: Option<i64>) -> ReplicaFact {
        ReplicaFact {
            stack: "web".into(),
            service: "app".into(),
            slot: "1".into(),
            name: "web-app-1".into(),
            host: "a".into(),
            pending: None,
            state,
            health: None,
            restarts,
            exit_code: exit,
            crash_loop: false,
            image: "nginx".into(),
            commit: "c".into(),
            spec_hash: "h".into(),
            container: "abc".into(),
            last_logs: Vec::new(),
        }
    }

    #[test]
    fn a_step_done_leaves_the_pass_and_brings_its_replica_up() {
        let mut s = super::super::DaemonStatus {
            replicas: vec![fact(None, 2, Some(1))],
            ..Default::default()
        };
        let step = |id: usize, name: &str| StepFact {
            id,
            host: "b".into(),
            kind: "create",
            line: format!("+ {name} (missing)"),
            name: name.into(),
            spec_hash: "h2".into(),
            image: "nginx:2".into(),
            commit: "c2".into(),
        };
        s.in_flight = vec![step(1, "web-app-1"), step(2, "web-app-2")];
        let outcome = |id: usize, error: Option<&str>| StepOutcome {
            id,
            host: "b".into(),
            step: String::new(),
            error: error.map(str::to_string),
        };
        // A failed step leaves the list and changes no replica.
        step_done(&mut s, &outcome(2, Some("refused")));
        assert_eq!(s.in_flight.len(), 1);
        assert_eq!(s.replicas[0].state, None);
        step_done(&mut s, &outcome(1, None));
        assert!(s.in_flight.is_empty());
        let r = &s.replicas[0];
        assert_eq!(r.state, Some(RunState::Running));
        assert_eq!((r.host.as_str(), r.spec_hash.as_str()), ("b", "h2"));
        assert_eq!((r.image.as_str(), r.commit.as_str()), ("nginx:2", "c2"));
        assert_eq!(
            (r.restarts, r.exit_code, r.container.as_str()),
            (0, None, "")
        );
        // A step not in flight (another pass's) is ignored.
        step_done(&mut s, &outcome(9, None));
    }

    #[test]
    fn only_troubled_replicas_have_their_logs_read() {
        assert!(!troubled(&fact(Some(RunState::Running), 0, None)));
        assert!(!troubled(&fact(None, 0, None)));
        assert!(troubled(&fact(Some(RunState::Running), 1, None)));
        assert!(troubled(&fact(Some(RunState::Restarting), 0, Some(1))));
        assert!(troubled(&fact(Some(RunState::Exited), 0, Some(2))));
        assert!(!troubled(&fact(Some(RunState::Exited), 0, Some(0))));
    }
}
