//! Runs a service's rollout as the plan describes it (`model::rollout::Rollout`): opens its
//! batches one by one, waits for each batch's new replicas to be up (running, healthy where
//! they have a healthcheck, answering the readiness probe where there is one) within the
//! progress deadline, waits `delay`, and watches every replica changed so far for `monitor`
//! after its update. Failures over `max_failure_ratio` lead where `failure_action` says: the
//! way back the plan carries (every changed replica's kept `<name>.prev` takes its name back
//! and runs, and the spec is quarantined on every host of the service), a pause, or on.
//!
//! It decides nothing the plan does not say; it only keeps time and looks at the engines.
//! Cancellation: the batch in flight finishes its steps, no further batch opens, and the
//! kept replicas stay for the next pass, which continues from the labels.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::infra::docker::{ContainerStatus, DockerError, Engine};
use crate::infra::files::HostShell;
use crate::model::observed::{Health, RunState};
use crate::model::plan::Replica;
use crate::model::rollout::{
    prev_name, FailureAction, Member, QuarantineRecord, Rollout, RolloutProgress, RolloutReport,
    RolloutResult, UpdateConfig, UpdateOrder,
};

/// How often replicas are looked at while a rollout waits: short, since each look is one
/// inspect and the time to notice a healthy replica is the rollout's overhead per batch.
const POLL: Duration = Duration::from_millis(50);
/// While a batch's replicas are not up yet: what Convoy adds to each batch is mostly the time
/// to notice that they are (measured by `scripts/bench-rollout`).
const READY_POLL: Duration = Duration::from_millis(25);

/// What the member steps of one rollout wait for: how many batches are open, or why none
/// will open any more.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    pub opened: usize,
    pub closed: Option<String>,
}

/// Waits until batch `batch` is open; the error is why it never will be.
pub async fn wait_open(rx: &mut watch::Receiver<Gate>, batch: usize) -> Result<(), String> {
    match rx
        .wait_for(|g| g.opened > batch || g.closed.is_some())
        .await
    {
        Ok(g) if g.opened > batch => Ok(()),
        Ok(g) => Err(g.closed.clone().unwrap_or_default()),
        Err(_) => Err("not started: the rollout ended".into()),
    }
}

/// Replaces a member's old container, keeping it as `<name>.prev` when the plan says so:
/// stopped first (`stop-first`), or still running until the driver has seen the new one up
/// (`start-first`).
pub async fn replace_member(
    engine: &Engine,
    replica: &Replica,
    old_id: &str,
    old_grace: Option<i64>,
    member: &Member,
    cancel: &CancellationToken,
) -> Result<(), DockerError> {
    if !member.keep_prev {
        return super::names::remove(engine, old_id, &replica.name, old_grace, cancel).await;
    }
    let prev = prev_name(&replica.name);
    // A container holding the kept name that is not the one to keep (a restore that ended
    // half-way) goes first: the last version that ran is the one to keep.
    if let Some(id) = engine.container_id(&prev).await? {
        if id != old_id {
            engine.remove(&id, &prev, Some(0)).await?;
        }
    }
    if member.order == UpdateOrder::StopFirst {
        super::hooks::pre_stop(
            engine,
            old_id,
            &replica.name,
            &replica.spec.hooks.pre_stop,
            old_grace,
            cancel,
        )
        .await;
        engine.stop(old_id, &replica.name, old_grace).await?;
    }
    engine.rename(old_id, &replica.name, &prev).await
}

/// Sees where each rollout is (`ExecOptions::rollout_progress`): called when a batch opens,
/// when its replicas are up, and when the rollout ends. It must return at once (the daemon
/// writes its status channel from here); it is called from the rollout's own task.
#[derive(Clone)]
pub struct ProgressHook(pub Arc<dyn Fn(&RolloutProgress) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

/// Everything a driver needs, shared with the step tasks.
pub struct Driver {
    pub rollout: Rollout,
    pub fleet: String,
    pub engines: Arc<BTreeMap<String, Engine>>,
    pub shells: BTreeMap<String, HostShell>,
    pub gate: watch::Sender<Gate>,
    /// Step id → its completion (`Some(true)`: succeeded).
    pub steps: BTreeMap<usize, watch::Receiver<Option<bool>>>,
    /// Step id → its error, for the report of a failure.
    pub errors: Arc<Mutex<BTreeMap<usize, String>>>,
    pub cancel: CancellationToken,
    /// Told where the rollout is, when someone watches (the daemon's status).
    pub progress: Option<ProgressHook>,
    /// Stops of kept replicas still running (`start-first`).
    pub stopping: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The per-host proxy (issue 13): a kept replica is taken out of it before it stops.
    pub proxy: Option<Arc<super::proxy::ProxyCtx>>,
}

/// A replica changed by the rollout, as the driver follows it.
struct Watched {
    host: String,
    name: String,
    /// 0-based batch.
    batch: usize,
    since: Instant,
    ready_at: Option<Instant>,
    restarts: i64,
    failed: bool,
}

enum Look {
    Up,
    Waiting,
    Failed(String),
}

impl Driver {
    fn engine(&self, host: &str) -> Result<&Engine, String> {
        self.engines
            .get(host)
            .ok_or_else(|| format!("host `{host}` is not connected"))
    }

    /// Tells the progress hook, if any, where the rollout is: `batch` is 1-based.
    fn tell(&self, batch: usize, watched: &[Watched], done: bool) {
        if let Some(hook) = &self.progress {
            (hook.0)(&RolloutProgress {
                stack: self.rollout.stack.clone(),
                service: self.rollout.service.clone(),
                to_hash: self.rollout.to_hash.clone(),
                batch: batch.min(self.rollout.batches) as u32,
                batches: self.rollout.batches as u32,
                updated: watched.iter().filter(|w| !w.failed).count() as u32,
                replicas: self.rollout.replicas as u32,
                done,
            });
        }
    }

    /// The rollout's report; every end goes through here, so the hook hears of it too.
    fn report(&self, result: RolloutResult, done: usize, watched: &[Watched]) -> RolloutReport {
        self.tell(done, watched, true);
        RolloutReport {
            stack: self.rollout.stack.clone(),
            service: self.rollout.service.clone(),
            to_hash: self.rollout.to_hash.clone(),
            result,
            batches_done: done as u32,
            batches: self.rollout.batches as u32,
            updated: watched.iter().filter(|w| !w.failed).count() as u32,
        }
    }

    /// Stops the kept replicas of `batch`'s `start-first` members without waiting.
    fn stop_in_background(&self, batch: usize) {
        let mut handles = Vec::new();
        for m in self
            .rollout
            .members
            .iter()
            .filter(|m| m.batch == batch && m.keep_prev && m.order == UpdateOrder::StartFirst)
        {
            let Ok(engine) = self.engine(&m.host) else {
                continue;
            };
            let (engine, prev, grace, host) = (
                engine.clone(),
                prev_name(&m.name),
                m.grace_secs,
                m.host.clone(),
            );
            let proxy = self.proxy.clone();
            handles.push(tokio::spawn(async move {
                if let Some(p) = &proxy {
                    super::proxy::drain(p, &engine, &prev, grace).await;
                }
                if let Err(e) = engine.stop(&prev, &prev, grace).await {
                    tracing::warn!(host = %host, container = %prev, error = %e, "stopping the previous replica failed");
                }
            }));
        }
        self.stopping
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(handles);
    }

    /// Waits for the background stops.
    async fn settle(&self) {
        let handles = std::mem::take(&mut *self.stopping.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.await;
        }
    }

    /// Runs the rollout to its end, the background stops included.
    pub async fn run(self) -> RolloutReport {
        let report = self.drive().await;
        self.settle().await;
        report
    }

    async fn drive(&self) -> RolloutReport {
        let r = &self.rollout;
        let deadline = Duration::from_millis(r.deadline_ms);
        let now = Instant::now();
        let mut watched: Vec<Watched> = r
            .changed
            .iter()
            .map(|c| Watched {
                host: c.host.clone(),
                name: c.name.clone(),
                batch: 0,
                since: now,
                ready_at: None,
                restarts: 0,
                failed: false,
            })
            .collect();
        let mut failures: Vec<(String, String, usize)> = Vec::new();
        tracing::info!(stack = %r.stack, service = %r.service, batches = r.batches, "rollout started");
        for b in 0..r.batches.max(1) {
            if b < r.batches {
                if self.cancel.is_cancelled() {
                    self.close(crate::exec::NOT_STARTED);
                    return self.report(RolloutResult::Interrupted, b, &watched);
                }
                let _ = self.gate.send(Gate {
                    opened: b + 1,
                    closed: None,
                });
                self.tell(b + 1, &watched, false);
                for m in r.members.iter().filter(|m| m.batch == b) {
                    let ok = match self.steps.get(&m.step) {
                        Some(rx) => {
                            let mut rx = rx.clone();
                            matches!(
                                rx.wait_for(|v| v.is_some()).await.map(|v| *v),
                                Ok(Some(true))
                            )
                        }
                        None => false,
                    };
                    if ok {
                        watched.push(Watched {
                            host: m.host.clone(),
                            name: m.name.clone(),
                            batch: b,
                            since: Instant::now(),
                            ready_at: None,
                            restarts: 0,
                            failed: false,
                        });
                    } else {
                        let why = self
                            .errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&m.step)
                            .cloned()
                            .unwrap_or_else(|| "its step failed".into());
                        if why.starts_with("not started") {
                            // Cancelled before its engine call: the next pass continues.
                            self.close(crate::exec::NOT_STARTED);
                            return self.report(RolloutResult::Interrupted, b, &watched);
                        }
                        failures.push((m.host.clone(), format!("{}: {why}", m.name), b));
                    }
                }
            }
            // Wait for this batch (and, in the first, replicas changed before) to be up.
            loop {
                if self.cancel.is_cancelled() {
                    // The batch's steps are done: the next pass watches its replicas.
                    self.close(crate::exec::NOT_STARTED);
                    return self.report(RolloutResult::Interrupted, b + 1, &watched);
                }
                self.look(&mut watched, &mut failures, deadline).await;
                if let Some(end) = self.verdict(&watched, &failures, b).await {
                    return end;
                }
                let pending = watched
                    .iter()
                    .any(|w| !w.failed && w.ready_at.is_none() && w.batch <= b);
                if !pending {
                    break;
                }
                tokio::time::sleep(READY_POLL).await;
            }
            self.tell(b + 1, &watched, false);
            // start-first: the old replicas of this batch stop now that the new ones are up,
            // in the background (the next batch need not wait for their grace period); they
            // are waited for before a rollback, a clean-up or the end.
            self.stop_in_background(b);
            if b + 1 < r.batches && r.update.delay_ms > 0 {
                let until = Instant::now() + Duration::from_millis(r.update.delay_ms);
                while Instant::now() < until {
                    if self.cancel.is_cancelled() {
                        self.close(crate::exec::NOT_STARTED);
                        return self.report(RolloutResult::Interrupted, b + 1, &watched);
                    }
                    tokio::time::sleep(POLL.min(until - Instant::now())).await;
                    self.look(&mut watched, &mut failures, deadline).await;
                    if let Some(end) = self.verdict(&watched, &failures, b).await {
                        return end;
                    }
                }
            }
        }
        // The rollout ends one `monitor` after its last batch was up.
        let monitor = Duration::from_millis(r.update.monitor_ms);
        loop {
            let last = watched.iter().filter_map(|w| w.ready_at).max();
            match last {
                Some(t) if Instant::now() < t + monitor => {}
                _ => break,
            }
            if self.cancel.is_cancelled() {
                return self.report(RolloutResult::Interrupted, r.batches, &watched);
            }
            tokio::time::sleep(POLL).await;
            self.look(&mut watched, &mut failures, deadline).await;
            if let Some(end) = self
                .verdict(&watched, &failures, r.batches.saturating_sub(1))
                .await
            {
                return end;
            }
        }
        self.clean_up(&watched).await;
        tracing::info!(stack = %r.stack, service = %r.service, "rollout completed");
        self.report(RolloutResult::Completed, r.batches, &watched)
    }

    /// Looks at every watched replica once: up, still coming, or failed.
    async fn look(
        &self,
        watched: &mut [Watched],
        failures: &mut Vec<(String, String, usize)>,
        deadline: Duration,
    ) {
        let monitor = Duration::from_millis(self.rollout.update.monitor_ms);
        let looks = futures_util::future::join_all(watched.iter().map(|w| async {
            if w.failed {
                return None;
            }
            if let Some(t) = w.ready_at {
                if t.elapsed() > monitor {
                    return None;
                }
            }
            Some(self.look_one(w).await)
        }))
        .await;
        for (w, look) in watched.iter_mut().zip(looks) {
            let Some(look) = look else { continue };
            match look {
                Ok((Look::Up, restarts)) => {
                    if w.ready_at.is_none() {
                        w.ready_at = Some(Instant::now());
                        w.restarts = restarts;
                    } else if restarts > w.restarts {
                        w.failed = true;
                        failures.push((
                            w.host.clone(),
                            format!("{}: restarted within monitor", w.name),
                            w.batch,
                        ));
                    }
                }
                Ok((Look::Waiting, _)) if w.ready_at.is_none() && w.since.elapsed() > deadline => {
                    w.failed = true;
                    failures.push((
                        w.host.clone(),
                        format!(
                            "{}: not up within the progress deadline ({}s)",
                            w.name,
                            deadline.as_secs()
                        ),
                        w.batch,
                    ));
                }
                Ok((Look::Waiting, _)) => {}
                Ok((Look::Failed(why), _)) => {
                    w.failed = true;
                    failures.push((w.host.clone(), format!("{}: {why}", w.name), w.batch));
                }
                Err(e) => {
                    tracing::debug!(host = %w.host, container = %w.name, error = %e, "rollout look failed");
                }
            }
        }
    }

    async fn look_one(&self, w: &Watched) -> Result<(Look, i64), String> {
        let engine = self.engine(&w.host)?;
        let Some(s) = engine.status(&w.name).await.map_err(|e| e.to_string())? else {
            return Ok((Look::Failed("gone".into()), 0));
        };
        let look = match verdict_of(&s, w.ready_at.is_some()) {
            Look::Up => match &self.rollout.readiness {
                Some(probe) => match self.probe(&w.host, &w.name, probe).await {
                    Ok(code) if code == probe.expect => Look::Up,
                    Ok(code) if w.ready_at.is_some() => Look::Failed(format!(
                        "readiness probe answered {code}, not {}",
                        probe.expect
                    )),
                    _ => Look::Waiting,
                },
                None => Look::Up,
            },
            other => other,
        };
        Ok((look, s.restart_count))
    }

    async fn probe(
        &self,
        host: &str,
        name: &str,
        probe: &crate::model::rollout::Readiness,
    ) -> Result<u16, String> {
        let engine = self.engine(host)?;
        let shell = self
            .shells
            .get(host)
            .ok_or_else(|| format!("no shell on host `{host}` for the readiness probe"))?;
        crate::infra::probe::http_status(
            shell,
            engine,
            name,
            probe.port,
            &probe.path,
            Duration::from_secs(2),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Decides whether the failures so far end the rollout, and ends it as `failure_action`
    /// says.
    async fn verdict(
        &self,
        watched: &[Watched],
        failures: &[(String, String, usize)],
        batch: usize,
    ) -> Option<RolloutReport> {
        let (host, why, b) = failures.first()?.clone();
        // Replicas changed: those watched, and those whose step failed (never watched).
        let step_failures = failures
            .len()
            .saturating_sub(watched.iter().filter(|w| w.failed).count());
        let changed = (watched.len() + step_failures).max(1);
        let ratio = failures.len() as f64 / changed as f64;
        let u = &self.rollout.update;
        if ratio <= u.max_failure_ratio || u.failure_action == FailureAction::Continue {
            return None;
        }
        let batch_no = (b.min(batch) + 1) as u32;
        tracing::warn!(stack = %self.rollout.stack, service = %self.rollout.service, host = %host, batch = batch_no, reason = %why, action = %u.failure_action, "rollout failed");
        if u.failure_action == FailureAction::Pause {
            self.close("not started: rollout paused (failure_action: pause)");
            return Some(self.report(
                RolloutResult::Paused {
                    reason: why,
                    batch: batch_no,
                    host,
                },
                batch + 1,
                watched,
            ));
        }
        self.close("not started: rollout rolled back");
        self.settle().await;
        self.roll_back(watched).await;
        self.quarantine(&why, batch_no, &host).await;
        Some(self.report(
            RolloutResult::RolledBack {
                reason: why,
                batch: batch_no,
                host,
            },
            batch + 1,
            watched,
        ))
    }

    fn close(&self, why: &str) {
        let opened = self.gate.borrow().opened;
        let _ = self.gate.send(Gate {
            opened,
            closed: Some(why.to_string()),
        });
    }

    /// Every replica this rollout changed (or tried to) goes back to its kept previous one, in
    /// batches of `rollback_config.parallelism`.
    async fn roll_back(&self, watched: &[Watched]) {
        let mut targets: Vec<(String, String)> = watched
            .iter()
            .map(|w| (w.host.clone(), w.name.clone()))
            .collect();
        let opened = self.gate.borrow().opened;
        for m in self.rollout.members.iter().filter(|m| m.batch < opened) {
            if !targets.iter().any(|(h, n)| h == &m.host && n == &m.name) {
                targets.push((m.host.clone(), m.name.clone()));
            }
        }
        let cfg: UpdateConfig = self.rollout.rollback;
        let size = cfg.batch_size(targets.len());
        let chunks: Vec<&[(String, String)]> = targets.chunks(size.max(1)).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            if i > 0 {
                // `rollback_config`: the previous batch runs again before the next one goes
                // back, then `delay`.
                self.wait_running(chunks[i - 1]).await;
                tokio::time::sleep(Duration::from_millis(cfg.delay_ms)).await;
            }
            let results =
                futures_util::future::join_all(chunk.iter().map(|(host, name)| async move {
                    let engine = self.engine(host)?;
                    restore(engine, name, cfg.order)
                        .await
                        .map_err(|e| e.to_string())
                }))
                .await;
            for ((host, name), r) in chunk.iter().zip(results) {
                match r {
                    Ok(true) => {
                        tracing::info!(host = %host, container = %name, "restored the previous replica")
                    }
                    Ok(false) => {
                        tracing::warn!(host = %host, container = %name, "no previous replica to restore")
                    }
                    Err(e) => {
                        tracing::error!(host = %host, container = %name, error = %e, "restore failed")
                    }
                }
            }
        }
    }

    /// Waits, within the progress deadline, until the restored replicas run.
    async fn wait_running(&self, replicas: &[(String, String)]) {
        let until = Instant::now() + Duration::from_millis(self.rollout.deadline_ms);
        for (host, name) in replicas {
            let Ok(engine) = self.engine(host) else {
                continue;
            };
            while Instant::now() < until {
                match engine.status(name).await {
                    Ok(Some(s)) if s.state == RunState::Running => break,
                    Ok(None) | Err(_) => break,
                    _ => tokio::time::sleep(POLL).await,
                }
            }
        }
    }

    /// Writes the quarantine record on every host of the service.
    async fn quarantine(&self, reason: &str, batch: u32, host: &str) {
        let r = &self.rollout;
        let record = QuarantineRecord {
            stack: r.stack.clone(),
            service: r.service.clone(),
            spec_hash: r.to_hash.clone(),
            commit: r.commit.clone(),
            reason: reason.to_string(),
            batch,
            host: host.to_string(),
            at: now_rfc3339(),
            id: String::new(),
        };
        let mut images = r.record_images.clone();
        for m in &r.members {
            if !images.contains_key(&m.host) {
                if let Ok(engine) = self.engine(&m.host) {
                    if let Ok(Some(image)) = engine.image_of(&m.name).await {
                        images.insert(m.host.clone(), image);
                    }
                }
            }
        }
        for (h, image) in images {
            if let Ok(engine) = self.engine(&h) {
                if let Err(e) = engine.record_quarantine(&self.fleet, &record, &image).await {
                    tracing::error!(host = %h, error = %e, "writing the quarantine record failed");
                }
            }
        }
    }

    /// A rollout that succeeded: the kept previous replicas and the records of older specs go.
    async fn clean_up(&self, watched: &[Watched]) {
        self.settle().await;
        let r = &self.rollout;
        let mut gone: Vec<(String, String)> = watched
            .iter()
            .map(|w| (w.host.clone(), prev_name(&w.name)))
            .collect();
        gone.extend(r.kept.iter().map(|k| (k.host.clone(), k.name.clone())));
        gone.extend(r.stale_records.iter().cloned());
        futures_util::future::join_all(gone.iter().map(|(host, name)| async move {
            if let Ok(engine) = self.engine(host) {
                if let Err(e) = engine.remove(name, name, None).await {
                    tracing::warn!(host = %host, container = %name, error = %e, "removing after the rollout failed");
                }
            }
        }))
        .await;
    }
}

/// Up, waiting or failed, from one inspect. `proven`: the replica was up before (a failure
/// now is one within `monitor`).
fn verdict_of(s: &ContainerStatus, proven: bool) -> Look {
    match (s.state, s.health) {
        (_, Some(Health::Unhealthy)) => Look::Failed("unhealthy".into()),
        (RunState::Exited | RunState::Dead, _) => {
            Look::Failed(format!("exited with code {}", s.exit_code))
        }
        (RunState::Restarting, _) => Look::Failed("crash loop (restarting)".into()),
        (RunState::Running, Some(Health::Healthy) | None) => Look::Up,
        (RunState::Running, Some(Health::Starting)) if proven => Look::Up,
        _ => Look::Waiting,
    }
}

/// Puts `<name>.prev` back as `name` and runs it; false when there is none to put back.
pub async fn restore(engine: &Engine, name: &str, order: UpdateOrder) -> Result<bool, DockerError> {
    let prev = prev_name(name);
    let Some(prev_id) = engine.container_id(&prev).await? else {
        return Ok(false);
    };
    let new_id = engine.container_id(name).await?;
    match (new_id, order) {
        (Some(id), UpdateOrder::StartFirst) => {
            // The failed one steps aside, the previous one runs, then the failed one goes.
            let aside = format!("{name}.failed");
            if let Some(old) = engine.container_id(&aside).await? {
                engine.remove(&old, &aside, Some(0)).await?;
            }
            engine.rename(&id, name, &aside).await?;
            engine.rename(&prev_id, &prev, name).await?;
            engine.start(&prev_id, name).await?;
            engine.remove(&id, &aside, None).await?;
        }
        (Some(id), UpdateOrder::StopFirst) => {
            engine.remove(&id, name, None).await?;
            engine.rename(&prev_id, &prev, name).await?;
            engine.start(&prev_id, name).await?;
        }
        (None, _) => {
            engine.rename(&prev_id, &prev, name).await?;
            engine.start(&prev_id, name).await?;
        }
    }
    Ok(true)
}

/// Now, for a quarantine record.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    crate::model::time::rfc3339(secs)
}
