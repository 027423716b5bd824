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

mod facts;
mod history;
mod hosts;
mod intake;
mod jobs;
mod notifications;
mod notify;
mod pass;
mod policy;
mod progress;
mod status;
#[cfg(test)]
mod tests;
mod watch;
mod windows;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as status_watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::schedule::ExistingReplica;
use crate::infra::fleet::{ConnectOptions, Fleet};
use crate::infra::source::Source;
use crate::model::outcome::{PassReason, StepOutcome};
use crate::model::tree::TreeInputs;
use crate::reconcile::{Loaded, PassObserver};

pub use facts::{HostFact, ReplicaFact, StepFact};
pub use history::HistoryReader;
pub use notifications::{notify_once, JobNotifier};
pub use policy::requeue;
pub use status::{
    ApiRequest, CommitError, Counters, DaemonHandle, DaemonStatus, FetchCause, Histogram,
    HostState, Pending, RolloutCount, ServiceCount,
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
    /// How often a remote is fetched (± 10 %), besides webhooks.
    pub poll: Duration,
}

/// How long the repository's files must be quiet before a change is read: a checkout or an
/// editor writes several files, and a half-written tree must not be applied.
const FILE_QUIET: Duration = Duration::from_millis(300);

/// How often a parked host (a failure that waiting does not heal) is tried again.
const PARKED_RETRY: Duration = Duration::from_secs(60);

/// How long shutdown gives queued notifications to be delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(2);

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
    /// The adopted Compose projects whose events the running watcher follows.
    watched_projects: Vec<String>,
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
            watched_projects: Vec::new(),
        }
    }
}

pub struct Daemon {
    source: Arc<dyn Source>,
    opts: DaemonOptions,
    /// The desired state in force.
    loaded: Option<Loaded>,
    /// A newer one read and valid, for the next pass to bring into force (or hold).
    candidate: Option<Loaded>,
    intake: intake::Intake,
    counters: Counters,
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
    api_tx: mpsc::UnboundedSender<ApiRequest>,
    api_rx: mpsc::UnboundedReceiver<ApiRequest>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    status: status_watch::Sender<DaemonStatus>,
    /// The file watch of a working directory, or the ref watch of a followed local repository.
    _watch: Option<::notify::RecommendedWatcher>,
    /// The deploy history, when the state directory has one, and its writer once running.
    history: Option<Arc<crate::infra::history::History>>,
    history_tx: Option<history::Writer>,
    /// A commit that sync windows hold in part (`windows`).
    windows: windows::Windows,
    /// The job timer (`jobs`).
    jobs: jobs::JobTimer,
    /// Notification endpoints, what was said, and the delivery (`notifications`).
    notifications: notifications::Notifications,
}

impl Daemon {
    /// A daemon on `source`; nothing is connected or read until `run`.
    pub fn new(source: Arc<dyn Source>, opts: DaemonOptions) -> anyhow::Result<Daemon> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (api_tx, api_rx) = mpsc::unbounded_channel();
        let watcher = match (source.local_dir(), source.watch_refs()) {
            (Some(dir), _) => Some(watch::watch_files(dir, tx.clone())?),
            (None, Some(git_dir)) => Some(watch::watch_refs(&git_dir, tx.clone())?),
            (None, None) => None,
        };
        // Credentials are masked in every line the process writes from here on.
        crate::reconcile::register_secrets(&source.secrets().into_iter().collect());
        let notify_counts = crate::infra::notify::NotifyCounts::default();
        let (status, _) = status_watch::channel(DaemonStatus {
            notifications: notify_counts.clone(),
            phase: "starting",
            source: source.describe(),
            branch: source.followed_branch(),
            ..Default::default()
        });
        Ok(Daemon {
            intake: intake::Intake::new(source.is_remote(), opts.poll),
            source,
            next_resync: Instant::now() + opts.resync,
            opts,
            loaded: None,
            candidate: None,
            counters: Counters::default(),
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
            api_tx,
            api_rx,
            cancel: CancellationToken::new(),
            tasks: JoinSet::new(),
            status,
            _watch: watcher,
            history: None,
            history_tx: None,
            windows: Default::default(),
            jobs: jobs::JobTimer::new(),
            notifications: notifications::Notifications::new(notify_counts),
        })
    }

    /// Records passes and held commits in `history` (before `api_handle`, so the API reads it).
    pub fn set_history(&mut self, history: Arc<crate::infra::history::History>) {
        self.history = Some(history);
    }

    /// What an API server needs: the status, and a way to ask for syncs, fetches and diffs.
    pub fn api_handle(&self) -> DaemonHandle {
        DaemonHandle {
            status: self.subscribe(),
            requests: self.api_tx.clone(),
            history: self
                .history
                .clone()
                .map(|h| HistoryReader::new(h, self.opts.locked_fleet.clone())),
        }
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
        if let Some(h) = &self.history {
            self.history_tx = Some(history::spawn_writer(
                &mut self.tasks,
                h.clone(),
                self.source.clone(),
            ));
        }
        if self.source.is_remote() && self.source.latest().is_err() {
            // Nothing fetched yet (the first fetch failed): fetch now, backing off from here.
            self.intake.next_poll = Some(Instant::now());
        } else {
            self.reload();
        }
        self.resume_notifications();
        if let Some(l) = &self.candidate {
            let opts = self.opts.connect.clone();
            self.fleet = tokio::select! {
                f = Fleet::connect(&l.desired, &opts) => f,
                _ = self.cancel.cancelled() => Fleet::empty(),
            };
            // The hosts of the first commit are tracked before it is decided: the guard
            // observes them.
            self.loaded = self.candidate.take();
            self.sync_hosts();
            self.candidate = self.loaded.take();
        }
        while !self.cancel.is_cancelled() {
            self.start_watchers();
            self.start_reconnects();
            let something = self.loaded.is_some() || self.candidate.is_some();
            if !self.requests.is_empty() && something {
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
                Some(r) = self.api_rx.recv() => self.api(r).await,
                Some(out) = self.jobs.rx.recv() => self.job_done(out).await,
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
        // The history writer ends once what is queued is stored.
        self.history_tx = None;
        self.notifications.flush(NOTIFY_GRACE).await;
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
            Trigger::Refs => self.refs_changed(),
            Trigger::Fetched { result } => self.fetched(result),
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
            if let Some(why) = self.reload() {
                self.request(why);
            }
        }
        self.poll_due(now);
        self.windows_due(now);
        if self.next_resync <= now {
            // A followed branch is read again too: a missed ref event must not leave a pushed
            // commit waiting for the next push (the read is cheap when nothing moved).
            if self.source.local_dir().is_none() {
                if let Some(why) = self.reload() {
                    self.request(why);
                }
            }
            self.request(PassReason::Resync);
        }
        if self.jobs.next_at.is_some_and(|at| at <= now) {
            self.jobs_tick().await;
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
        if let Some(at) = self.intake.next_poll {
            wake = wake.min(at);
        }
        if let Some(at) = self.windows.wake {
            wake = wake.min(at);
        }
        if let Some(at) = self.jobs.next_at.filter(|_| self.loaded.is_some()) {
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

    fn publish(&self, change: impl FnOnce(&mut DaemonStatus)) {
        self.status.send_modify(change);
    }

    /// Queues `entry` for the history (nothing when there is none); never waits.
    fn record_history(&self, entry: crate::model::history::HistoryEntry, dedup: history::Dedup) {
        let Some(tx) = &self.history_tx else {
            return;
        };
        let limit = self
            .loaded
            .as_ref()
            .map(|l| l.desired.settings.history_limit)
            .unwrap_or(crate::model::history::DEFAULT_HISTORY_LIMIT);
        let _ = tx.send(history::Record {
            entry,
            limit,
            dedup,
        });
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
