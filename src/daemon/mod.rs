//! `convoy daemon`: the reconcile loop (observe, compare, act, wait) as a state machine that
//! runs until its shutdown future resolves.
//!
//! A pass is `reconcile::run_pass`, the same as `convoy apply`'s. What the `Daemon` adds is
//! *when* passes run and what it remembers between them. Triggers (`watch`: the repository's
//! files, per host an engine events stream with a heartbeat; timers: resync, reconnects, a host
//! crossing `host_down_after`, the error policy's requeue) become pass requests, each with its
//! `PassReason`, which is on the pass's span and in its report. The requeue delay after a pass
//! comes from one error policy (`policy`).
//!
//! Each host has one connection for the life of the process; a lost host is reconnected in the
//! background with backoff, so a pass never waits for it; a host whose failure cannot heal by
//! waiting (a changed host key) is parked, said once at warn level, and retried every minute.
//! One cancellation token reaches the watchers, the reconnect tasks (all in one `JoinSet`) and
//! the executor: on shutdown the step in flight finishes, nothing new starts, and the process
//! exits. The daemon keeps in memory only what observation rebuilds after a restart ("git and
//! the engines are the truth"), and a repository that stops validating leaves the last good
//! desired state in force ("a commit that does not validate changes nothing"). Its status is
//! published on a `watch` channel.

mod notify;
mod policy;
mod status;
#[cfg(test)]
mod tests;
mod watch;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch as status_watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::pass::HostMemory;
use crate::core::schedule::ExistingReplica;
use crate::infra::fleet::{backoff, ConnectError, ConnectOptions, Connection, Fleet};
use crate::infra::source::Source;
use crate::model::observed::ObservedHost;
use crate::model::outcome::{HoldReason, PassReason, PassResult, StepOutcome};
use crate::model::tree::TreeInputs;
use crate::reconcile::{self, LoadError, Loaded, PassObserver, PassOptions};

pub use policy::requeue;
pub use status::{
    ApiRequest, CommitError, Counters, DaemonHandle, DaemonStatus, FetchCause, Histogram,
    HostState, Pending, ServiceCount,
};
pub use watch::Trigger;

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub connect: ConnectOptions,
    /// Full re-observation at least this often, whatever else happens.
    pub resync: Duration,
    /// How often each connected host is pinged between passes.
    pub heartbeat: Duration,
    /// The fleet whose lock the process holds: a desired state naming another fleet is held
    /// back (acting on it would race whoever holds that fleet's lock).
    pub locked_fleet: Option<String>,
}

/// How long the repository's files must be quiet before a change is read: a checkout or an
/// editor writes several files, and a half-written tree must not be applied.
const FILE_QUIET: Duration = Duration::from_millis(300);

/// How often a parked host (a failure that waiting does not heal) is tried again.
const PARKED_RETRY: Duration = Duration::from_secs(60);

/// How long shutdown waits for the watchers and reconnects to end after cancellation.
const TASKS_GRACE: Duration = Duration::from_secs(2);

/// Per-host bookkeeping.
struct HostTrack {
    /// The last time the host answered anything (a ping, an event, an observation).
    last_contact: Instant,
    /// The running watcher (events + heartbeat), when connected.
    watcher: Option<AbortHandle>,
    /// Reconnection: when the next attempt is due, how many failed, and whether one runs.
    retry_at: Option<Instant>,
    attempt: u32,
    connecting: bool,
    /// The failure that waiting does not heal, once said: the host is parked.
    parked: Option<String>,
    /// Unix seconds of the last event seen: a resubscription starts there.
    last_event: Option<i64>,
    /// The replicas it ran when last observed: while it cannot be seen they are presumed to
    /// run there still (within the grace period), and they are what is placed elsewhere after.
    last_known: Option<Vec<ExistingReplica>>,
    /// `HostDown` was requested for the current outage.
    down_requested: bool,
}

impl HostTrack {
    /// Down: not connected, and silent for longer than `host_down_after` (`grace`).
    fn is_down(&self, connected: bool, now: Instant, grace: Duration) -> bool {
        !connected && now.duration_since(self.last_contact) > grace
    }

    fn new(now: Instant, connected: bool) -> HostTrack {
        HostTrack {
            // Never reached yet: the grace period starts when the host is first tracked (a
            // host cannot be lost before anyone tried to reach it).
            last_contact: now,
            watcher: None,
            retry_at: if connected { None } else { Some(now) },
            attempt: 0,
            connecting: false,
            parked: None,
            last_event: None,
            last_known: None,
            down_requested: false,
        }
    }
}

pub struct Daemon {
    source: Box<dyn Source>,
    opts: DaemonOptions,
    loaded: Option<Loaded>,
    fleet: Fleet,
    hosts: BTreeMap<String, HostTrack>,
    /// Passes requested now, oldest first; one pass answers all of them.
    requests: Vec<PassReason>,
    /// A pass the error policy asked for, and when.
    requeued: Option<(Instant, PassReason)>,
    /// Files changed: read them once they have been quiet until then.
    reload_at: Option<Instant>,
    /// The paths the last read of the source used (valid or not): the changes that matter.
    inputs: Option<TreeInputs>,
    /// Passes in a row that failed (the error policy's input).
    failing: u32,
    next_resync: Instant,
    passes: u64,
    tx: mpsc::UnboundedSender<Trigger>,
    rx: mpsc::UnboundedReceiver<Trigger>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    status: status_watch::Sender<DaemonStatus>,
    _files: Option<::notify::RecommendedWatcher>,
}

impl Daemon {
    /// A daemon on `source`; nothing is connected or read until `run`.
    pub fn new(source: Box<dyn Source>, opts: DaemonOptions) -> anyhow::Result<Daemon> {
        let (tx, rx) = mpsc::unbounded_channel();
        let files = match source.local_dir() {
            Some(dir) => Some(watch::watch_files(dir, tx.clone())?),
            None => None,
        };
        let (status, _) = status_watch::channel(DaemonStatus {
            phase: "starting",
            ..Default::default()
        });
        Ok(Daemon {
            source,
            next_resync: Instant::now() + opts.resync,
            opts,
            loaded: None,
            fleet: Fleet::empty(),
            hosts: BTreeMap::new(),
            requests: vec![PassReason::Start],
            requeued: None,
            reload_at: None,
            inputs: None,
            failing: 0,
            passes: 0,
            tx,
            rx,
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
            status,
            _files: files,
        })
    }

    /// The daemon's status as it changes.
    pub fn subscribe(&self) -> status_watch::Receiver<DaemonStatus> {
        self.status.subscribe()
    }

    /// Runs passes until `shutdown` resolves. Then the step in flight finishes, nothing new
    /// starts, every task ends and every connection closes.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        // Under systemd (`NOTIFY_SOCKET`): readiness, status and a watchdog fed by this loop.
        let (status, cancel) = (self.subscribe(), self.cancel.child_token());
        let beat = notify::start(&mut self.tasks, status, cancel);
        notify::tend(&beat, self.serve(shutdown)).await
    }

    async fn serve(mut self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let cancel = self.cancel.clone();
        // The one cancellation: the signal cancels the token, everything else listens to it.
        let signal = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested: finishing the steps in flight");
            cancel.cancel();
        });
        self.reload();
        if let Some(l) = &self.loaded {
            let opts = self.opts.connect.clone();
            self.fleet = tokio::select! {
                f = Fleet::connect(&l.desired, &opts) => f,
                _ = self.cancel.cancelled() => Fleet::empty(),
            };
            self.sync_hosts();
        }
        while !self.cancel.is_cancelled() {
            self.start_watchers();
            self.start_reconnects();
            if !self.requests.is_empty() && self.loaded.is_some() {
                self.pass().await;
                continue;
            }
            let wake = self.next_wake();
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                t = self.rx.recv() => match t {
                    Some(t) => self.handle(t).await,
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => self.on_timers().await,
            }
            // Take whatever else has arrived: one pass answers a burst of events.
            while let Ok(t) = self.rx.try_recv() {
                self.handle(t).await;
            }
        }
        self.publish(|s| s.phase = "stopping");
        tracing::info!(passes = self.passes, "shutting down");
        self.cancel.cancel();
        signal.abort();
        let tasks = std::mem::take(&mut self.tasks);
        if tokio::time::timeout(TASKS_GRACE, tasks.join_all())
            .await
            .is_err()
        {
            tracing::warn!("background tasks did not end in time; abandoned");
        }
        let fleet = std::mem::replace(&mut self.fleet, Fleet::empty());
        fleet.close().await;
    }

    /// Reads the source; on success the new desired state is in force. On failure every error
    /// is logged (as structured events, so JSON logs stay JSON) and the last good state stays.
    fn reload(&mut self) -> bool {
        match reconcile::load(self.source.as_ref(), None) {
            Ok(l)
                if self
                    .opts
                    .locked_fleet
                    .as_ref()
                    .is_some_and(|f| *f != l.desired.fleet) =>
            {
                tracing::error!(
                    locked = self.opts.locked_fleet.as_deref().unwrap_or_default(),
                    fleet = %l.desired.fleet,
                    "convoy.yaml names another fleet than the one this daemon locked: restart the daemon to follow it; keeping the last good state"
                );
                self.inputs = Some(l.inputs);
                self.publish(|s| s.held = Some(HoldReason::InvalidCommit));
                false
            }
            Ok(l) => {
                tracing::info!(commit = %l.commit, "desired state loaded");
                self.inputs = Some(l.inputs.clone());
                self.publish(|s| {
                    s.commit = Some(l.commit.clone());
                    s.held = None;
                });
                self.loaded = Some(l);
                true
            }
            Err(LoadError::Invalid {
                origin,
                errors,
                inputs,
            }) => {
                self.inputs = Some(inputs);
                for e in &errors {
                    tracing::error!(
                        file = %e.file,
                        line = e.line,
                        column = e.column,
                        key = %e.key,
                        error = %e,
                        "invalid manifest"
                    );
                }
                tracing::error!(
                    errors = errors.len(),
                    origin = %origin,
                    "the repository does not validate; keeping the last good state"
                );
                self.publish(|s| s.held = Some(HoldReason::InvalidCommit));
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the repository; keeping the last good state");
                self.publish(|s| s.held = Some(HoldReason::InvalidCommit));
                false
            }
        }
    }

    /// Tracks exactly the hosts of the fleet file; hosts whose first connection failed for
    /// good are parked at once.
    fn sync_hosts(&mut self) {
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

    fn start_watchers(&mut self) {
        let Some(l) = &self.loaded else { return };
        for (name, engine) in &self.fleet.engines {
            let Some(t) = self.hosts.get_mut(name) else {
                continue;
            };
            if t.watcher.as_ref().is_some_and(|w| !w.is_finished()) {
                continue;
            }
            t.watcher = Some(self.tasks.spawn(watch::watch_host(
                name.clone(),
                engine.clone(),
                l.desired.fleet.clone(),
                t.last_event,
                self.opts.heartbeat,
                self.tx.clone(),
                self.cancel.child_token(),
            )));
        }
        // Reap what ended, so the set does not grow with every reconnect.
        while self.tasks.try_join_next().is_some() {}
    }

    fn start_reconnects(&mut self) {
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

    async fn handle(&mut self, t: Trigger) {
        match t {
            Trigger::Files { changes } => {
                // Only what the manifests are made of: a log file written beside them is not a
                // change of the desired state.
                let concerns = match &self.inputs {
                    None => true,
                    Some(inputs) => changes.iter().any(|(p, cr)| inputs.concerns(p, *cr)),
                };
                if concerns {
                    self.reload_at = Some(Instant::now() + FILE_QUIET);
                } else {
                    tracing::trace!(?changes, "files changed that no manifest reads");
                }
            }
            Trigger::Contact { host } => {
                if let Some(t) = self.hosts.get_mut(&host) {
                    t.last_contact = Instant::now();
                }
            }
            Trigger::Event { host, event } => {
                tracing::debug!(host = %host, action = %event.action, container = %event.name, "engine event");
                if let Some(t) = self.hosts.get_mut(&host) {
                    t.last_contact = Instant::now();
                    t.last_event = Some(event.time);
                }
                self.request(PassReason::EngineEvent {
                    host,
                    action: event.action,
                    container: event.name,
                });
            }
            Trigger::Lost { host, reason } => {
                tracing::warn!(host = %host, %reason, "lost the connection to the host");
                self.fleet.disconnect(&host, &reason).await;
                if let Some(t) = self.hosts.get_mut(&host) {
                    t.watcher = None;
                    t.attempt = 0;
                    t.retry_at = Some(Instant::now());
                }
                self.request(PassReason::HostLost { host });
            }
            Trigger::Connected { host, result } => self.connected(host, result),
        }
    }

    fn connected(&mut self, host: String, result: Result<Box<Connection>, ConnectError>) {
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

    fn request(&mut self, reason: PassReason) {
        enqueue(&mut self.requests, reason);
    }

    /// Turns the timers that are due into pass requests (or a reload).
    async fn on_timers(&mut self) {
        let now = Instant::now();
        if self.reload_at.is_some_and(|at| at <= now) {
            self.reload_at = None;
            if self.reload() {
                if let Some(l) = &self.loaded {
                    self.fleet.align(&l.desired).await;
                }
                self.sync_hosts();
                self.request(PassReason::FilesChanged);
            }
        }
        if self.next_resync <= now {
            self.request(PassReason::Resync);
        }
        if let Some((at, _)) = &self.requeued {
            if *at <= now {
                let (_, reason) = self.requeued.take().expect("checked above");
                self.request(reason);
            }
        }
        if let Some(grace) = self.grace() {
            let crossed: Vec<String> = self
                .hosts
                .iter_mut()
                .filter(|(name, t)| {
                    !t.down_requested
                        && t.is_down(self.fleet.engines.contains_key(*name), now, grace)
                })
                .map(|(name, t)| {
                    t.down_requested = true;
                    name.clone()
                })
                .collect();
            for host in crossed {
                self.request(PassReason::HostDown { host });
            }
        }
    }

    fn grace(&self) -> Option<Duration> {
        self.loaded
            .as_ref()
            .map(|l| Duration::from_secs(l.desired.settings.host_down_after_secs))
    }

    /// The earliest of: the resync timer, the requeued pass, a settled file change, a due
    /// reconnect, a host crossing `host_down_after`.
    fn next_wake(&self) -> Instant {
        let mut wake = self.next_resync;
        if let Some((at, _)) = &self.requeued {
            wake = wake.min(*at);
        }
        if let Some(at) = self.reload_at {
            wake = wake.min(at);
        }
        let grace = self.grace();
        let now = Instant::now();
        for (name, t) in &self.hosts {
            if let Some(at) = t.retry_at.filter(|_| !t.connecting) {
                wake = wake.min(at);
            }
            if let (Some(grace), false) = (grace, self.fleet.engines.contains_key(name)) {
                let down_at = t.last_contact + grace;
                if !t.down_requested && down_at > now {
                    // A little after the boundary, so the pass sees the host as down.
                    wake = wake.min(down_at + Duration::from_millis(20));
                }
            }
        }
        wake
    }

    /// One pass for every request queued.
    async fn pass(&mut self) {
        let Some(loaded) = &self.loaded else { return };
        let requests = std::mem::take(&mut self.requests);
        let reason = requests.first().cloned().unwrap_or(PassReason::Resync);
        self.requeued = None;
        self.next_resync = Instant::now() + self.opts.resync;
        self.passes += 1;
        let memory = self.memory(loaded);
        for name in &memory.down {
            tracing::warn!(host = %name, "host is down (unreachable past host_down_after): its replicas are placed elsewhere");
        }
        self.publish(|s| s.phase = "passing");
        let run = reconcile::run_pass(
            &self.fleet,
            loaded,
            &memory,
            reason.clone(),
            &PassOptions::default(),
            &self.cancel,
            StepLog,
        )
        .await;
        if requests.len() > 1 {
            tracing::debug!(
                coalesced = requests.len(),
                "one pass answered several requests"
            );
        }
        self.remember(&run);
        self.probe_silent(&run.observed).await;
        let report = &run.report;
        match &report.result {
            PassResult::Failed => self.failing = self.failing.saturating_add(1),
            _ => self.failing = 0,
        }
        if let Some((delay, next)) = requeue(&report.result, self.failing) {
            if report.result == PassResult::Failed {
                tracing::warn!(
                    retry_in_ms = delay.as_millis() as u64,
                    "steps failed; retrying later"
                );
            }
            self.requeued = Some((Instant::now() + delay, next));
        }
        let disconnected: BTreeMap<String, String> = self
            .fleet
            .failed
            .iter()
            .map(|(h, e)| (h.clone(), e.reason.clone()))
            .collect();
        let passes = self.passes;
        self.publish(move |s| {
            s.phase = "idle";
            s.passes = passes;
            s.last_reason = Some(report.reason.clone());
            s.last_result = Some(report.result.clone());
            s.converged = report.converged;
            s.disconnected = disconnected;
        });
    }

    /// What the planner may know of hosts it cannot see now.
    fn memory(&self, loaded: &Loaded) -> HostMemory {
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
    fn remember(&mut self, run: &reconcile::PassRun) {
        let decided = &run.decided;
        for (name, obs) in &run.observed.hosts {
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
    async fn probe_silent(&mut self, observed: &crate::model::observed::ObservedState) {
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

    fn publish(&self, change: impl FnOnce(&mut DaemonStatus)) {
        self.status.send_modify(change);
    }
}

/// Queues a pass request; one asked for already (the same event twice) is not asked again: a
/// burst of requests is answered by one pass.
fn enqueue(requests: &mut Vec<PassReason>, reason: PassReason) {
    if !requests.contains(&reason) {
        requests.push(reason);
    }
}

/// The daemon's view of a pass as it runs: each step, logged.
struct StepLog;

impl PassObserver for StepLog {
    fn step_done(&self, o: &StepOutcome) {
        match &o.error {
            None => tracing::info!(host = %o.host, step = %o.step, "done"),
            Some(e) => tracing::warn!(host = %o.host, step = %o.step, error = %e, "failed"),
        }
    }
}
