//! `convoy daemon`: the reconcile loop (observe, compare, act, wait) that runs until SIGTERM.
//!
//! A pass is the same pipeline as `convoy apply` (`app::observe_and_plan`, then the
//! executor). What the loop adds is *when* passes run and what it remembers between them:
//! a change to the repository's files, an engine event (die, destroy, health, oom), a host lost
//! or regained, a host crossing `host_down_after`, and a periodic full re-observation as the
//! safety net (events are missed while a connection is down, and an engine keeps only its last
//! 256). Each host has one connection for the life of the process; a host that fails is
//! reconnected in the background with exponential backoff, so a pass never waits for it. The
//! loop keeps in memory only what observation rebuilds after a restart: when each host was last
//! reached (DESIGN.md, invariant 3). A repository that stops validating leaves the last good
//! desired state in force (invariant 5).

mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::app::{self, Loaded};
use crate::cli::RepoArgs;
use crate::executor::{self, ExecOptions};
use crate::fleet::{backoff, ConnectOptions, Connection, Fleet};
use crate::observed::ObservedHost;

pub use watch::Trigger;

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub repo: PathBuf,
    pub connect: ConnectOptions,
    /// Full re-observation at least this often, whatever else happens.
    pub resync: Duration,
    /// How often each connected host is pinged between passes.
    pub heartbeat: Duration,
}

/// Per-host bookkeeping of the loop.
struct HostTrack {
    /// The last time the host answered anything (a ping, an event, an observation).
    last_contact: Instant,
    /// The running watcher (events + heartbeat), when connected.
    watcher: Option<JoinHandle<()>>,
    /// Reconnection: when the next attempt is due, how many failed, and whether one is running.
    retry_at: Option<Instant>,
    attempt: u32,
    connecting: bool,
    /// Unix seconds of the last event seen: a resubscription starts there.
    last_event: Option<i64>,
    /// The replicas it ran when last observed: while it cannot be seen they are presumed to
    /// run there still (within the grace period), and they are what is placed elsewhere after.
    last_known: Option<Vec<crate::schedule::ExistingReplica>>,
}

/// Runs passes until `shutdown` resolves; an in-flight pass finishes first.
pub async fn run(
    opts: DaemonOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Trigger>();
    let _files = watch::watch_files(&opts.repo, tx.clone())?;
    let repo = RepoArgs {
        repo: opts.repo.clone(),
        rev: None,
    };
    let started = Instant::now();
    let mut loaded: Option<Loaded> = load(&repo);
    let mut fleet = match &loaded {
        Some(l) => Fleet::connect(&l.desired, &opts.connect).await,
        None => Fleet::empty(),
    };
    let mut hosts: BTreeMap<String, HostTrack> = BTreeMap::new();
    if let Some(l) = &loaded {
        sync_hosts(&mut hosts, &mut fleet, l, started).await;
        for name in fleet.engines.keys() {
            if let Some(t) = hosts.get_mut(name) {
                t.last_contact = Instant::now();
            }
        }
    }
    let mut dirty = true;
    let mut reload = false;
    // Files changed: reload once they have been quiet for FILE_QUIET.
    let mut reload_at: Option<Instant> = None;
    // Passes in a row whose steps failed: the next one waits longer (kube-rs' error policy).
    let mut failing: u32 = 0;
    let mut next_resync = Instant::now() + opts.resync;
    tokio::pin!(shutdown);
    let mut passes: u64 = 0;
    loop {
        if let Some(l) = &loaded {
            start_watchers(&mut hosts, &fleet, l, &tx, opts.heartbeat);
            start_reconnects(&mut hosts, &mut fleet, l, &opts.connect, &tx);
        }
        if reload {
            reload = false;
            reload_at = Some(Instant::now() + FILE_QUIET);
        }
        let files_settled = reload_at.is_some_and(|at| at <= Instant::now());
        if !dirty && !files_settled {
            let mut wake = next_wake(&hosts, &loaded, next_resync);
            if let Some(at) = reload_at {
                wake = wake.min(at);
            }
            tokio::select! {
                _ = &mut shutdown => break,
                t = rx.recv() => {
                    let Some(t) = t else { break };
                    handle(t, &mut hosts, &mut fleet, &mut dirty, &mut reload).await;
                }
                _ = tokio::time::sleep_until(wake) => {
                    if reload_at.is_none_or(|at| at > Instant::now()) {
                        dirty = true;
                    }
                }
            }
            // Take whatever else has arrived: one pass answers a burst of events.
            while let Ok(t) = rx.try_recv() {
                handle(t, &mut hosts, &mut fleet, &mut dirty, &mut reload).await;
            }
            continue;
        }
        if files_settled {
            reload_at = None;
            if let Some(l) = load(&repo) {
                fleet.align(&l.desired).await;
                loaded = Some(l);
                if let Some(l) = &loaded {
                    sync_hosts(&mut hosts, &mut fleet, l, started).await;
                }
            }
        }
        dirty = false;
        next_resync = Instant::now() + opts.resync;
        let Some(l) = &loaded else { continue };
        passes += 1;
        let span = tracing::info_span!("pass", n = passes, commit = %l.commit);
        let outcome = pass(l, &mut fleet, &mut hosts).instrument(span).await;
        match outcome {
            PassOutcome::Idle => failing = 0,
            PassOutcome::Acted => {
                failing = 0;
                // Something was done: look again shortly to confirm (or finish) convergence.
                next_resync = next_resync.min(Instant::now() + Duration::from_millis(200));
            }
            PassOutcome::Failed => {
                // What failed will likely fail again at once (a pull, a rejected create): wait
                // longer each time instead of retrying five times a second.
                let delay = backoff(failing).max(Duration::from_millis(200));
                failing = failing.saturating_add(1);
                tracing::warn!(
                    retry_in_ms = delay.as_millis() as u64,
                    "steps failed; retrying later"
                );
                next_resync = next_resync.min(Instant::now() + delay);
            }
        }
    }
    tracing::info!(passes, "shutting down");
    for t in hosts.values_mut() {
        if let Some(w) = t.watcher.take() {
            w.abort();
        }
    }
    fleet.close().await;
    Ok(())
}

fn load(repo: &RepoArgs) -> Option<Loaded> {
    match app::load(repo, None) {
        Ok(Some(l)) => {
            tracing::info!(commit = %l.commit, "desired state loaded");
            Some(l)
        }
        // Errors were printed with their locations; the last good state stays in force.
        Ok(None) => {
            tracing::error!("the repository does not validate; keeping the last good state");
            None
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot read the repository; keeping the last good state");
            None
        }
    }
}

/// Tracks exactly the hosts of the fleet file.
async fn sync_hosts(
    hosts: &mut BTreeMap<String, HostTrack>,
    fleet: &mut Fleet,
    l: &Loaded,
    started: Instant,
) {
    hosts.retain(|name, t| {
        let keep = l.desired.hosts.contains_key(name);
        if !keep {
            if let Some(w) = t.watcher.take() {
                w.abort();
            }
        }
        keep
    });
    for name in l.desired.hosts.keys() {
        hosts.entry(name.clone()).or_insert_with(|| HostTrack {
            // Never reached yet: the grace period starts when the host is first tracked (a
            // host cannot be lost before anyone tried to reach it).
            last_contact: Instant::now().max(started),
            watcher: None,
            retry_at: if fleet.engines.contains_key(name) {
                None
            } else {
                Some(Instant::now())
            },
            attempt: 0,
            connecting: false,
            last_event: None,
            last_known: None,
        });
    }
}

fn start_watchers(
    hosts: &mut BTreeMap<String, HostTrack>,
    fleet: &Fleet,
    l: &Loaded,
    tx: &mpsc::UnboundedSender<Trigger>,
    heartbeat: Duration,
) {
    for (name, engine) in &fleet.engines {
        let Some(t) = hosts.get_mut(name) else {
            continue;
        };
        if t.watcher.as_ref().is_some_and(|w| !w.is_finished()) {
            continue;
        }
        t.watcher = Some(tokio::spawn(watch::watch_host(
            name.clone(),
            engine.clone(),
            l.desired.fleet.clone(),
            t.last_event,
            heartbeat,
            tx.clone(),
        )));
    }
}

fn start_reconnects(
    hosts: &mut BTreeMap<String, HostTrack>,
    fleet: &mut Fleet,
    l: &Loaded,
    opts: &ConnectOptions,
    tx: &mpsc::UnboundedSender<Trigger>,
) {
    let now = Instant::now();
    let due: Vec<String> = hosts
        .iter()
        .filter(|(name, t)| {
            !t.connecting
                && t.retry_at.is_some_and(|at| at <= now)
                && !fleet.engines.contains_key(*name)
        })
        .map(|(n, _)| n.clone())
        .collect();
    if due.is_empty() {
        return;
    }
    let connector = fleet.connector(&l.desired, opts);
    for name in due {
        let Some(spec) = l.desired.hosts.get(&name).cloned() else {
            continue;
        };
        if let Some(t) = hosts.get_mut(&name) {
            t.connecting = true;
        }
        let connector = connector.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = connector.connect(&spec).await;
            let _ = tx.send(Trigger::Connected {
                host: spec.name.clone(),
                result: result.map(Box::new),
            });
        });
    }
}

async fn handle(
    t: Trigger,
    hosts: &mut BTreeMap<String, HostTrack>,
    fleet: &mut Fleet,
    dirty: &mut bool,
    reload: &mut bool,
) {
    match t {
        Trigger::Files => {
            // Debounced by the loop: a checkout or an editor writes several files, and a
            // half-written tree must not be applied.
            *reload = true;
        }
        Trigger::Contact { host } => {
            if let Some(t) = hosts.get_mut(&host) {
                t.last_contact = Instant::now();
            }
        }
        Trigger::Event { host, event } => {
            tracing::debug!(host = %host, action = %event.action, container = %event.name, "engine event");
            if let Some(t) = hosts.get_mut(&host) {
                t.last_contact = Instant::now();
                t.last_event = Some(event.time);
            }
            *dirty = true;
        }
        Trigger::Lost { host, reason } => {
            tracing::warn!(host = %host, %reason, "lost the connection to the host");
            fleet.disconnect(&host, &reason).await;
            if let Some(t) = hosts.get_mut(&host) {
                t.watcher = None;
                t.attempt = 0;
                t.retry_at = Some(Instant::now());
            }
            *dirty = true;
        }
        Trigger::Connected { host, result } => {
            let Some(t) = hosts.get_mut(&host) else {
                return;
            };
            t.connecting = false;
            match result {
                Ok(conn) => {
                    let conn: Connection = *conn;
                    tracing::info!(host = %host, "connected");
                    fleet.adopt(&host, conn);
                    t.last_contact = Instant::now();
                    t.attempt = 0;
                    t.retry_at = None;
                    // Observe it before anything else there (fencing happens in this pass).
                    *dirty = true;
                }
                Err(reason) => {
                    let delay = backoff(t.attempt);
                    tracing::debug!(host = %host, %reason, attempt = t.attempt, delay_ms = delay.as_millis() as u64, "reconnect failed");
                    t.attempt = t.attempt.saturating_add(1);
                    t.retry_at = Some(Instant::now() + delay);
                }
            }
        }
    }
}

/// The earliest of: the resync timer, a due reconnect, a host crossing `host_down_after`.
fn next_wake(
    hosts: &BTreeMap<String, HostTrack>,
    loaded: &Option<Loaded>,
    resync: Instant,
) -> Instant {
    let mut wake = resync;
    let grace = loaded
        .as_ref()
        .map(|l| Duration::from_secs(l.desired.settings.host_down_after_secs));
    for t in hosts.values() {
        if let Some(at) = t.retry_at.filter(|_| !t.connecting) {
            wake = wake.min(at);
        }
        if let (Some(grace), None) = (grace, &t.watcher) {
            let down_at = t.last_contact + grace;
            if down_at > Instant::now() {
                // A little after the boundary, so the pass sees the host as down.
                wake = wake.min(down_at + Duration::from_millis(20));
            }
        }
    }
    wake
}

/// How long the repository's files must be quiet before a change is read.
const FILE_QUIET: Duration = Duration::from_millis(300);

/// What a pass did, for when the next one runs.
enum PassOutcome {
    /// Nothing to do.
    Idle,
    /// Steps ran and all succeeded.
    Acted,
    /// Some steps failed.
    Failed,
}

/// One pass: observe, place, plan, execute.
async fn pass(
    l: &Loaded,
    fleet: &mut Fleet,
    hosts: &mut BTreeMap<String, HostTrack>,
) -> PassOutcome {
    let grace = Duration::from_secs(l.desired.settings.host_down_after_secs);
    let now = Instant::now();
    // The fleet is moved into the pass and back: the pipeline owns it while it runs.
    let taken = std::mem::replace(fleet, Fleet::empty());
    let down: BTreeSet<String> = hosts
        .iter()
        .filter(|(name, t)| {
            !taken.engines.contains_key(*name) && now.duration_since(t.last_contact) > grace
        })
        .map(|(n, _)| n.clone())
        .collect();
    let memory = app::HostMemory {
        last_known: hosts
            .iter()
            .filter_map(|(n, t)| Some((n.clone(), t.last_known.clone()?)))
            .collect(),
        down: down.clone(),
    };
    let mut p = app::observe_and_plan(l, taken, &memory).await;
    for (name, obs) in &p.observed.hosts {
        if let (ObservedHost::Reachable(_), Some(t)) = (obs, hosts.get_mut(name)) {
            t.last_contact = Instant::now();
            t.last_known = Some(
                p.snapshot
                    .existing
                    .iter()
                    .filter(|e| &e.host == name)
                    .cloned()
                    .collect(),
            );
        }
    }
    // A connected host that did not answer the observation: probe it; if that fails too, the
    // connection is gone and the background reconnect takes over.
    let silent: Vec<String> = p
        .observed
        .hosts
        .iter()
        .filter(|(n, o)| {
            matches!(o, ObservedHost::Unreachable { .. }) && p.fleet.engines.contains_key(*n)
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in silent {
        if let Err(reason) = p.fleet.probe(&name).await {
            p.fleet.disconnect(&name, &reason).await;
            if let Some(t) = hosts.get_mut(&name) {
                if let Some(w) = t.watcher.take() {
                    w.abort();
                }
                t.retry_at = Some(Instant::now());
            }
        }
    }
    for name in &down {
        tracing::warn!(host = %name, "host is down (unreachable past host_down_after): its replicas are placed elsewhere");
    }
    let steps = p.plan.steps.len();
    let mut outcome = PassOutcome::Idle;
    if steps > 0 {
        let opts = ExecOptions {
            dependency_timeout: Duration::from_secs(l.desired.settings.dependency_timeout_secs),
            ..Default::default()
        };
        let images = app::image_source(&l.desired).await;
        let report = executor::execute(&p.plan, &p.fleet.engines, &opts, &images, |o| {
            match &o.error {
                None => tracing::info!(host = %o.host, step = %o.step, "done"),
                Some(e) => tracing::warn!(host = %o.host, step = %o.step, error = %e, "failed"),
            }
        })
        .await;
        let failed = report.failures().count();
        tracing::info!(steps, failed, "pass executed");
        outcome = if failed > 0 {
            PassOutcome::Failed
        } else {
            PassOutcome::Acted
        };
    } else {
        tracing::debug!(converged = p.plan.is_converged(), "pass: nothing to do");
    }
    *fleet = p.fleet;
    outcome
}
