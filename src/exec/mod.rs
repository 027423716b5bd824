//! Runs a `Plan`: the only place where steps become Docker calls.
//!
//! Steps form a graph (`Step::after`): networks and volumes before the containers that use
//! them, dependencies before dependents. Independent steps run in parallel with a global bound
//! and a bound per host; a step whose prerequisite failed is skipped, not attempted. `depends_on`
//! conditions (healthy, completed) are waited for by polling the engine with a deadline. A host
//! that fails never blocks steps on other hosts ("a failing host never blocks the others"). The
//! executor decides nothing: it does what the plan says, and the next observation tells what
//! really happened.
//!
//! Networks are named to the engine by ID (`Plan::network_ids`, and the IDs that `CreateNetwork`
//! steps return), since a name two processes created twice is ambiguous. A replica whose name a
//! killed process left taken, and a removal some other process started, are dealt with within
//! the step (`names`).
//!
//! Cancellation: when the token given to `execute` is cancelled, a step whose engine call is in
//! flight finishes it, a gate wait ends at once, and no step starts another engine call; the
//! steps not started report that they were not started. A container is never left half made
//! by a shutdown: create and start of one replica are one step.

mod build;
pub mod files;
mod hooks;
pub mod jobs;
pub mod mesh;
mod names;
mod prestart;
pub mod proxy;
mod proxy_replace;
mod rollout;
#[cfg(test)]
mod rollout_progress_tests;

pub use rollout::ProgressHook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::infra::docker::{ContainerStatus, DockerError, Engine};
use crate::model::observed::{Health, RunState};
use crate::model::plan::{Action, Gate, Plan, Reason, Replica, Step};
use crate::model::spec::{DependsCondition, PullPolicy};

/// The error of a step that never started because the pass was cancelled.
pub const NOT_STARTED: &str = "not started: shutting down";

/// One pull per (host, image): the first step that needs it pulls, the others wait for it.
type Pulls = BTreeMap<(String, String), Pull>;

/// The pull of one image on one host, shared by the steps that need it.
#[derive(Default)]
struct Pull {
    /// A service with `pull_policy: always` uses the image here: pulled even when present.
    always: bool,
    cell: Arc<OnceCell<Result<(), String>>>,
}

/// Host → network name → the ID containers are attached to: the plan's kept networks, and
/// those its steps create as they do.
type NetworkIds = Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>>;

#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Steps in flight across the fleet.
    pub parallel: usize,
    /// Steps in flight on one host.
    pub parallel_per_host: usize,
    /// How long a `depends_on` condition may take.
    pub dependency_timeout: Duration,
    /// A shell on each host, for rollouts' readiness probes (`exec::rollout`).
    pub shells: BTreeMap<String, crate::infra::files::HostShell>,
    /// Told where each rollout is (batch k of n, replicas updated), for the daemon's status.
    pub rollout_progress: Option<ProgressHook>,
    /// The per-host proxy (issue 13): replicas are taken out of it before they stop.
    pub proxy: Option<Arc<proxy::ProxyCtx>>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            parallel: 64,
            // Engines queue what they cannot run at once; a high bound keeps the engine, not
            // Convoy, the bottleneck (measured by benches/apply.rs).
            parallel_per_host: 32,
            dependency_timeout: Duration::from_secs(120),
            shells: BTreeMap::new(),
            rollout_progress: None,
            proxy: None,
        }
    }
}

/// Where hosts get images from: hosts in `push_hosts` receive them from the local engine
/// (`images: push`), the others pull from their registry.
#[derive(Clone, Default)]
pub struct ImageSource {
    pub push_hosts: std::collections::BTreeSet<String>,
    pub local: Option<Engine>,
    /// Why `local` is missing when a host needs it.
    pub local_error: Option<String>,
    /// `builder:` from `convoy.yaml`: where `build:` images are built (`build`).
    pub builder: Option<String>,
}

pub use crate::model::outcome::StepOutcome;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub outcomes: Vec<StepOutcome>,
    /// How each rollout of the plan ended.
    pub rollouts: Vec<crate::model::rollout::RolloutReport>,
}

/// Executes every step of `plan` on `engines` (hosts without an engine fail their steps).
/// `progress` is called as each step ends, in completion order.
pub async fn execute(
    plan: &Plan,
    engines: &BTreeMap<String, Engine>,
    opts: &ExecOptions,
    images: &ImageSource,
    cancel: &CancellationToken,
    progress: impl Fn(&StepOutcome) + Send + Sync + 'static,
) -> Report {
    let progress = Arc::new(progress);
    let global = Arc::new(Semaphore::new(opts.parallel.max(1)));
    let per_host: BTreeMap<String, Arc<Semaphore>> = engines
        .keys()
        .map(|h| {
            (
                h.clone(),
                Arc::new(Semaphore::new(opts.parallel_per_host.max(1))),
            )
        })
        .collect();
    // One pull per (host, image), however many replicas need it.
    let mut pulls: Pulls = BTreeMap::new();
    for step in &plan.steps {
        if let Action::Create { replica, .. } | Action::Replace { replica, .. } = &step.action {
            let policy = replica.spec.pull_policy;
            if policy == PullPolicy::Never {
                continue;
            }
            let pull = pulls
                .entry((step.host.clone(), replica.spec.image.clone()))
                .or_default();
            pull.always |= policy == PullPolicy::Always;
        }
    }
    let pulls = Arc::new(pulls);
    let (senders, receivers): (Vec<_>, Vec<_>) = plan
        .steps
        .iter()
        .map(|_| watch::channel::<Option<bool>>(None))
        .unzip();
    let engines = Arc::new(engines.clone());
    let builds = Arc::new(build::Builds::new(
        images.builder.clone(),
        engines.clone(),
        images.push_hosts.clone(),
    ));
    let network_ids: NetworkIds = Arc::new(Mutex::new(plan.network_ids.clone()));
    // Rollouts: each member step waits for its batch to open; a driver per rollout opens them.
    let errors: Arc<Mutex<BTreeMap<usize, String>>> = Arc::default();
    let mut members: BTreeMap<
        usize,
        (
            crate::model::rollout::Member,
            watch::Receiver<rollout::Gate>,
        ),
    > = BTreeMap::new();
    let mut drivers = Vec::new();
    for r in &plan.rollouts {
        let (gate, rx) = watch::channel(rollout::Gate::default());
        for m in &r.members {
            members.insert(m.step, (m.clone(), rx.clone()));
        }
        drivers.push(rollout::Driver {
            rollout: r.clone(),
            fleet: plan.fleet.clone(),
            engines: engines.clone(),
            shells: opts.shells.clone(),
            gate,
            steps: r
                .members
                .iter()
                .map(|m| (m.step, receivers[m.step].clone()))
                .collect(),
            errors: errors.clone(),
            cancel: cancel.clone(),
            progress: opts.rollout_progress.clone(),
            stopping: Default::default(),
            proxy: opts.proxy.clone(),
        });
    }
    let members = Arc::new(members);
    let mut tasks = Vec::new();
    for (step, tx) in plan.steps.iter().cloned().zip(senders) {
        let deps: Vec<watch::Receiver<Option<bool>>> =
            step.after.iter().map(|i| receivers[*i].clone()).collect();
        let ctx = StepContext {
            engines: engines.clone(),
            global: global.clone(),
            host_limit: per_host.get(&step.host).cloned(),
            pulls: pulls.clone(),
            network_ids: network_ids.clone(),
            images: images.clone(),
            fleet: plan.fleet.clone(),
            opts: opts.clone(),
            cancel: cancel.clone(),
            builds: builds.clone(),
            member: members.get(&step.id).cloned(),
        };
        let progress = progress.clone();
        let secrets = plan.secret_values.clone();
        let errors = errors.clone();
        let span = tracing::info_span!("step", host = %step.host, id = step.id);
        tasks.push(tokio::spawn(async move {
            // Engines echo what they were given (a mount's options, say): mask secrets first.
            let error = run_step(&ctx, &step, deps)
                .instrument(span)
                .await
                .err()
                .map(|e| crate::model::spec::mask_secrets(&e, &secrets));
            if let Some(e) = &error {
                errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(step.id, e.clone());
            }
            let _ = tx.send(Some(error.is_none()));
            let outcome = StepOutcome {
                id: step.id,
                host: step.host.clone(),
                step: step.action.line(),
                error,
            };
            progress(&outcome);
            outcome
        }));
    }
    let drivers: Vec<_> = drivers
        .into_iter()
        .map(|d| {
            let span = tracing::info_span!("rollout", stack = %d.rollout.stack, service = %d.rollout.service);
            tokio::spawn(d.run().instrument(span))
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        match t.await {
            Ok(o) => outcomes.push(o),
            Err(e) => tracing::error!(error = %e, "step task failed"),
        }
    }
    outcomes.sort_by_key(|o| o.id);
    let mut rollouts = Vec::new();
    for d in drivers {
        match d.await {
            Ok(r) => rollouts.push(r),
            Err(e) => tracing::error!(error = %e, "rollout task failed"),
        }
    }
    Report { outcomes, rollouts }
}

struct StepContext {
    engines: Arc<BTreeMap<String, Engine>>,
    global: Arc<Semaphore>,
    host_limit: Option<Arc<Semaphore>>,
    pulls: Arc<Pulls>,
    network_ids: NetworkIds,
    images: ImageSource,
    fleet: String,
    opts: ExecOptions,
    cancel: CancellationToken,
    builds: Arc<build::Builds>,
    /// The step's place in a rollout, and the gate of its batches.
    member: Option<(
        crate::model::rollout::Member,
        watch::Receiver<rollout::Gate>,
    )>,
}

async fn run_step(
    ctx: &StepContext,
    step: &Step,
    deps: Vec<watch::Receiver<Option<bool>>>,
) -> Result<(), String> {
    for mut rx in deps {
        let ok = match rx.wait_for(|v| v.is_some()).await {
            Ok(v) => v.unwrap_or(false),
            Err(_) => false,
        };
        if !ok {
            return Err("skipped: a step it depends on failed".into());
        }
    }
    for gate in &step.gates {
        wait_gate(ctx, gate).await?;
    }
    if let Some((member, gate)) = &ctx.member {
        rollout::wait_open(&mut gate.clone(), member.batch).await?;
    }
    let engine = ctx
        .engines
        .get(&step.host)
        .ok_or_else(|| format!("host `{}` is not connected", step.host))?;
    let _global = ctx.global.acquire().await.map_err(|e| e.to_string())?;
    let _host = match &ctx.host_limit {
        Some(s) => Some(s.acquire().await.map_err(|e| e.to_string())?),
        None => None,
    };
    // The last point before an engine call: a cancelled pass starts nothing new.
    if ctx.cancel.is_cancelled() {
        return Err(NOT_STARTED.into());
    }
    let result: Result<(), DockerError> = match &step.action {
        Action::CreateNetwork { stack, network } => {
            match engine.create_network(&ctx.fleet, stack, network).await {
                Ok(id) => {
                    ctx.network_ids
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(step.host.clone())
                        .or_default()
                        .insert(network.engine_name.clone(), id);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Action::CreateVolume { stack, volume } => {
            engine.create_volume(&ctx.fleet, stack, volume).await
        }
        Action::RemoveNetwork { name, id } => engine.remove_network(id, name).await,
        Action::Create { replica, .. } => {
            // A pull can take minutes: shutdown does not wait for it (nothing is made yet).
            tokio::select! {
                r = ensure_image(ctx, engine, &step.host, replica) => r?,
                _ = ctx.cancel.cancelled() => return Err(NOT_STARTED.into()),
            }
            if ctx.cancel.is_cancelled() {
                return Err(NOT_STARTED.into());
            }
            create_and_start(ctx, engine, &step.host, replica).await
        }
        Action::Replace {
            replica,
            old_id,
            old_grace_secs,
            ..
        } => {
            // A pull can take minutes: shutdown does not wait for it (nothing is made yet).
            tokio::select! {
                r = ensure_image(ctx, engine, &step.host, replica) => r?,
                _ = ctx.cancel.cancelled() => return Err(NOT_STARTED.into()),
            }
            if ctx.cancel.is_cancelled() {
                return Err(NOT_STARTED.into());
            }
            // In a rollout, the old container is kept as `<name>.prev` for the way back.
            if let Some((member, _)) = &ctx.member {
                // Stopped here (not kept running for a start-first batch): out of the proxy
                // first. A kept one is taken out when the driver stops it.
                let stops_here = !member.keep_prev
                    || member.order == crate::model::rollout::UpdateOrder::StopFirst;
                if let (Some(p), true) = (&ctx.opts.proxy, stops_here) {
                    proxy::drain(p, engine, old_id, *old_grace_secs).await;
                }
                rollout::replace_member(
                    engine,
                    replica,
                    old_id,
                    *old_grace_secs,
                    member,
                    &ctx.cancel,
                )
                .await
                .map_err(|e| e.to_string())?;
                return create_and_start(ctx, engine, &step.host, replica)
                    .await
                    .map_err(|e| e.to_string());
            }
            // Stop-first: the old container frees its name and host ports before the new one
            // is created.
            if let Some(p) = &ctx.opts.proxy {
                proxy::drain(p, engine, old_id, *old_grace_secs).await;
            }
            let pre_stop = &replica.spec.hooks.pre_stop;
            hooks::pre_stop(
                engine,
                old_id,
                &replica.name,
                pre_stop,
                *old_grace_secs,
                &ctx.cancel,
            )
            .await;
            match names::remove(engine, old_id, &replica.name, *old_grace_secs, &ctx.cancel).await {
                Ok(()) => create_and_start(ctx, engine, &step.host, replica).await,
                Err(e) => Err(e),
            }
        }
        Action::Start {
            stack,
            service,
            id,
            name,
            reason,
        } => {
            let started = if *reason == Reason::Paused {
                engine.unpause(id, name).await
            } else if *reason == Reason::Unhealthy {
                // A kept version under quarantine: restarted in place (`core::plan::rollout`).
                engine.restart(id, name).await
            } else {
                engine.start(id, name).await
            };
            // Into the host's proxy once healthy, as for a replica just made.
            if let (Ok(()), Some(p)) = (&started, &ctx.opts.proxy) {
                proxy::admit(p, engine, stack, service, name);
            }
            started
        }
        Action::Remove {
            id,
            name,
            grace_secs,
            pre_stop,
            ..
        } => {
            if let Some(p) = &ctx.opts.proxy {
                proxy::drain(p, engine, id, *grace_secs).await;
            }
            hooks::pre_stop(engine, id, name, pre_stop, *grace_secs, &ctx.cancel).await;
            names::remove(engine, id, name, *grace_secs, &ctx.cancel).await
        }
        Action::Restore { name, .. } => {
            match rollout::restore(engine, name, crate::model::rollout::UpdateOrder::StopFirst)
                .await
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(DockerError {
                    host: step.host.clone(),
                    op: format!("restore `{name}`"),
                    message: format!("`{}` is gone", crate::model::rollout::prev_name(name)),
                    status: None,
                }),
                Err(e) => Err(e),
            }
        }
        Action::RecordQuarantine { record, image } => {
            let mut record = record.clone();
            if record.at.is_empty() {
                record.at = rollout::now_rfc3339();
            }
            engine.record_quarantine(&ctx.fleet, &record, image).await
        }
    };
    result.map_err(|e| e.to_string())
}

/// Makes the replica's image present on the host as its `pull_policy` says: `missing` pulls
/// (or pushes) what the host lacks, `always` pulls even what it has (once per pass and host,
/// so a tag that moved runs as it is now), `never` fetches nothing and fails the step when the
/// host lacks the image.
async fn ensure_image(
    ctx: &StepContext,
    engine: &Engine,
    host: &str,
    replica: &Replica,
) -> Result<(), String> {
    if replica.spec.build.is_some() {
        return ctx.builds.ensure(engine, host, replica).await;
    }
    let image = &replica.spec.image;
    if replica.spec.pull_policy == PullPolicy::Never {
        return match engine.image_id(image).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(format!(
                "image `{image}` is not on host `{host}`, and service `{}/{}` has `pull_policy: \
                 never`: load the image on the host, or change the pull policy",
                replica.stack, replica.service
            )),
            Err(e) => Err(e.to_string()),
        };
    }
    let Some(Pull { always, cell }) = ctx.pulls.get(&(host.to_string(), image.clone())) else {
        return Ok(());
    };
    cell.get_or_init(|| async {
        let image = &replica.spec.image;
        if ctx.images.push_hosts.contains(host) {
            let Some(local) = &ctx.images.local else {
                return Err(format!(
                    "host `{host}` takes pushed images (`images: push`) but the local engine is not reachable: {}",
                    ctx.images.local_error.as_deref().unwrap_or("not connected")
                ));
            };
            crate::infra::images::push_image(local, engine, host, image)
                .await
                .map(|_| ())
                .map_err(|e| format!("cannot push image `{image}` to host `{host}`: {e}"))
        } else {
            if *always {
                tracing::debug!(image = %image, "pull_policy: always: pulling");
            }
            engine
                .ensure_image_for(image, replica.spec.platform.as_deref(), *always)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await
    .clone()
}

/// Makes `replica`'s image present on `host` as a create step's would be (`ensure_image`:
/// `pull_policy`, `images: push`, `build:` built and shipped), for a container outside a plan:
/// a job's run (`jobs`). A shutdown abandons it, as it does a step's pull.
async fn ensure_image_alone(
    engines: &BTreeMap<String, Engine>,
    host: &str,
    replica: &Replica,
    images: &ImageSource,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let engine = engines
        .get(host)
        .ok_or_else(|| format!("host `{host}` is not connected"))?;
    let engines = Arc::new(engines.clone());
    let mut pulls: Pulls = BTreeMap::new();
    if replica.spec.pull_policy != PullPolicy::Never {
        pulls.insert(
            (host.to_string(), replica.spec.image.clone()),
            Pull {
                always: replica.spec.pull_policy == PullPolicy::Always,
                cell: Default::default(),
            },
        );
    }
    let ctx = StepContext {
        engines: engines.clone(),
        global: Arc::new(Semaphore::new(1)),
        host_limit: None,
        pulls: Arc::new(pulls),
        network_ids: Arc::default(),
        images: images.clone(),
        fleet: String::new(),
        opts: ExecOptions::default(),
        cancel: cancel.clone(),
        builds: Arc::new(build::Builds::new(
            images.builder.clone(),
            engines,
            images.push_hosts.clone(),
        )),
        member: None,
    };
    tokio::select! {
        r = ensure_image(&ctx, engine, host, replica) => r,
        _ = cancel.cancelled() => Err(NOT_STARTED.into()),
    }
}

/// Creates and starts a replica on the networks the plan keeps (by ID), taking over a name a
/// killed process left taken (`names`).
async fn create_and_start(
    ctx: &StepContext,
    engine: &Engine,
    host: &str,
    replica: &Replica,
) -> Result<(), DockerError> {
    let ids = ctx
        .network_ids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(host)
        .cloned()
        .unwrap_or_default();
    names::create_and_start(
        engine,
        &ctx.fleet,
        replica,
        &ids,
        &ctx.cancel,
        ctx.opts.dependency_timeout,
    )
    .await?;
    // Into the host's proxy as soon as the engine says it is healthy (in the background); a
    // mesh gets its configuration now, so that the names it answers work from this step on.
    if let Some(p) = &ctx.opts.proxy {
        proxy::admit(p, engine, &replica.stack, &replica.service, &replica.name);
        if let Some((m, shell)) = p.mesh(host, &replica.name) {
            if !mesh::ship_new(m, engine, shell, &ctx.cancel).await {
                p.mesh_unconfirmed(host, &replica.name);
            }
        }
    }
    hooks::after_start(engine, replica, ctx.opts.dependency_timeout, &ctx.cancel).await
}

/// Waits until every container of a dependency meets the condition, or fails at the deadline
/// or as soon as the condition can no longer hold (unhealthy, exited non-zero).
async fn wait_gate(ctx: &StepContext, gate: &Gate) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + ctx.opts.dependency_timeout;
    let what = match gate.condition {
        DependsCondition::ServiceStarted => "started",
        DependsCondition::ServiceHealthy => "healthy",
        DependsCondition::ServiceCompletedSuccessfully => "completed successfully",
    };
    for (host, name) in &gate.containers {
        let Some(engine) = ctx.engines.get(host) else {
            return Err(format!(
                "dependency `{}` runs on host `{host}`, which is not connected",
                gate.service
            ));
        };
        loop {
            let status = engine.status(name).await.map_err(|e| e.to_string())?;
            match gate_verdict(gate.condition, status) {
                Verdict::Met => break,
                Verdict::Failed(why) => {
                    return Err(format!(
                        "dependency `{}` ({name} on host `{host}`) did not become {what}: {why}",
                        gate.service
                    ))
                }
                Verdict::Wait => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "dependency `{}` ({name} on host `{host}`) not {what} after {}s",
                    gate.service,
                    ctx.opts.dependency_timeout.as_secs()
                ));
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Err(NOT_STARTED.into()),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
    Ok(())
}

enum Verdict {
    Met,
    Wait,
    Failed(String),
}

fn gate_verdict(cond: DependsCondition, status: Option<ContainerStatus>) -> Verdict {
    let Some(s) = status else {
        return Verdict::Wait;
    };
    match cond {
        DependsCondition::ServiceStarted => match s.state {
            RunState::Running | RunState::Exited => Verdict::Met,
            _ => Verdict::Wait,
        },
        DependsCondition::ServiceHealthy => match (s.state, s.health) {
            (_, Some(Health::Healthy)) => Verdict::Met,
            (_, Some(Health::Unhealthy)) => Verdict::Failed("it is unhealthy".into()),
            // No healthcheck: running is as healthy as it gets (Compose would refuse; the
            // manifest already warns about it).
            (RunState::Running, None) => Verdict::Met,
            (RunState::Exited | RunState::Dead, _) => {
                Verdict::Failed(format!("it exited with code {}", s.exit_code))
            }
            _ => Verdict::Wait,
        },
        DependsCondition::ServiceCompletedSuccessfully => match s.state {
            RunState::Exited if s.exit_code == 0 => Verdict::Met,
            RunState::Exited | RunState::Dead => {
                Verdict::Failed(format!("it exited with code {}", s.exit_code))
            }
            _ => Verdict::Wait,
        },
    }
}
