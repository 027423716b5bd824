//! One reconcile pass for every caller: load the desired state from a source, observe the fleet,
//! plan (`core::pass::plan_pass`), execute, and say how it went in a `PassReport`.
//!
//! `convoy diff` stops after planning, `convoy apply` runs a pass and verifies it by observing
//! again, and every daemon pass is `run_pass` with the reason it was requested. There is no
//! second pipeline. Nothing here prints: callers see the plan and each step's outcome as they
//! happen through a `PassObserver`, and everything else in the report. Nothing here decides when
//! a pass runs (the daemon does) or what an outcome means for an exit code (`main` does).

mod jobs;
mod secrets;
#[cfg(test)]
mod speed_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::core::pass::{plan_pass, HostMemory, PassPlan};
use crate::core::schedule::{Assignment, Placement};
use crate::exec::{self, ExecOptions, ImageSource, StepOutcome};
use crate::infra::docker::Engine;
use crate::infra::fleet::Fleet;
use crate::infra::source::{Source, SourceError};
use crate::manifest::{self, ManifestError, ManifestErrors};
use crate::model::observed::ObservedState;
use crate::model::outcome::{PassReason, PassReport, PassResult, Timings};
use crate::model::plan::Plan;
use crate::model::spec::{DesiredState, ImagePolicy};
use crate::model::tree::{RecordingTree, TreeInputs};

pub use secrets::{known_secrets, register_secrets};

/// A desired state that validated, the commit it was read at, and the paths it was made of.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub desired: DesiredState,
    pub commit: String,
    /// The content key of the commit (see `Tree::key`).
    pub key: Option<String>,
    pub commit_time: Option<i64>,
    pub inputs: TreeInputs,
    /// Stacks a sync window holds whose spec in force is not known (a one-shot `apply`, a
    /// daemon's first commit): their plan is cut down to heals of what runs
    /// (`core::windows::freeze`). Empty: nothing frozen.
    pub frozen: BTreeMap<String, crate::core::windows::WindowHold>,
}

/// Why a desired state could not be loaded. Either way nothing is changed on the fleet.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the fleet repository `{origin}`: {source}")]
    Source {
        origin: String,
        #[source]
        source: SourceError,
    },
    #[error("{} error(s) in {origin}; nothing was changed", errors.len())]
    Invalid {
        origin: String,
        /// The commit read, and its content key: the same content is not tried twice.
        commit: String,
        key: Option<String>,
        errors: Vec<ManifestError>,
        /// What was read before the errors were found (a fix may come in any of these).
        inputs: Box<TreeInputs>,
    },
}

/// Reads and validates the source at `rev` (its own revision when `None`) with the process
/// environment for interpolation.
pub fn load(source: &dyn Source, rev: Option<&str>) -> Result<Loaded, LoadError> {
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_with_env(source, rev, &env)
}

pub fn load_with_env(
    source: &dyn Source,
    rev: Option<&str>,
    env: &BTreeMap<String, String>,
) -> Result<Loaded, LoadError> {
    let tree = source.tree(rev).map_err(|e| LoadError::Source {
        origin: source.describe(),
        source: e,
    })?;
    let recording = RecordingTree::new(tree.tree.as_ref());
    // SOPS-encrypted files of the stacks open with this process's keys (`--age-key-file`, gpg).
    let keys = crate::infra::sops_keys::process_keys();
    let result = manifest::load_with_keys(&recording, env, keys.as_ref());
    let inputs = recording.into_inputs();
    match result {
        Ok(desired) => {
            // Known from here on to every writer of the process ("secrets stay masked").
            register_secrets(&desired.secret_values);
            Ok(Loaded {
                desired,
                commit: tree.commit,
                key: tree.key,
                commit_time: tree.commit_time,
                inputs,
                frozen: BTreeMap::new(),
            })
        }
        Err(ManifestErrors(errors)) => Err(LoadError::Invalid {
            origin: tree.tree.describe(),
            commit: tree.commit,
            key: tree.key,
            errors,
            inputs: Box::new(inputs),
        }),
    }
}

/// What one observation of the fleet and the plan made from it say.
pub struct Planned {
    pub observed: ObservedState,
    pub pass: PassPlan,
    /// The frozen stacks (`Loaded::frozen`) of which the plan held something back.
    pub held: BTreeSet<String>,
}

/// Observes every connected host (borrowing the fleet) and plans against what they run.
pub async fn observe_and_plan(fleet: &Fleet, loaded: &Loaded, memory: &HostMemory) -> Planned {
    let observed = fleet.observe(&loaded.desired).await;
    let mut pass = plan_pass(&loaded.desired, &observed, memory, &loaded.commit);
    let held = crate::core::windows::freeze(&mut pass.plan, &observed, &loaded.frozen);
    Planned {
        observed,
        pass,
        held,
    }
}

/// How `run_pass` acts.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Pull every image where it is placed first (`apply --pull`), then observe again.
    pub pull: bool,
    /// Observe and plan again after acting, so the report says what is, not what was tried.
    pub verify: bool,
}

/// Sees a pass as it happens; the command layer prints from here, the daemon logs.
pub trait PassObserver: Send + Sync + 'static {
    /// The plan is made and about to be executed.
    fn planned(&self, _plan: &Plan) {}
    /// A step ended (in completion order).
    fn step_done(&self, _outcome: &StepOutcome) {}
    /// A rollout opened a batch, had a batch up, or ended (`done`).
    fn rollout_progress(&self, _progress: &crate::model::rollout::RolloutProgress) {}
}

/// The executor's rollout hook that tells `observer`.
fn progress_hook(observer: std::sync::Arc<impl PassObserver>) -> exec::ProgressHook {
    exec::ProgressHook(std::sync::Arc::new(move |p| observer.rollout_progress(p)))
}

/// An observer that sees nothing.
pub struct Quiet;
impl PassObserver for Quiet {}

/// A pass's report, and what it saw and decided (the daemon remembers what each host ran from
/// here).
pub struct PassRun {
    pub report: PassReport,
    pub observed: ObservedState,
    pub decided: PassPlan,
    /// Stacks whose changes a sync window held in this pass (`Loaded::frozen`).
    pub held: BTreeSet<String>,
    /// The run-once jobs this pass ran, as they ended.
    pub jobs: Vec<exec::jobs::JobOutcome>,
}

/// One pass: observe, plan, execute; with `verify`, observe and plan again. Cancelling `cancel`
/// lets the steps in flight finish and starts nothing new.
pub async fn run_pass(
    fleet: &Fleet,
    loaded: &Loaded,
    memory: &HostMemory,
    reason: PassReason,
    opts: &PassOptions,
    cancel: &CancellationToken,
    observer: impl PassObserver,
) -> PassRun {
    let started = Instant::now();
    let span = tracing::info_span!("pass", reason = %reason, commit = %loaded.commit);
    async move {
        let images = image_source(&loaded.desired).await;
        let mut planned = observe_and_plan(fleet, loaded, memory).await;
        let mut pull_failures = Vec::new();
        if opts.pull {
            // Pull where placement puts each service, then look again: a moved tag is drift.
            pull_failures = pull_images(loaded, fleet, &planned.pass.placement).await;
            planned = observe_and_plan(fleet, loaded, memory).await;
        }
        let observe_ms = ms(started.elapsed());
        observer.planned(&planned.pass.plan);
        // Files, configs and secrets on their hosts before the steps that bind them.
        let mut plan = planned.pass.plan.clone();
        let shells = fleet.shells(&loaded.desired);
        pull_failures.extend(
            exec::files::prepare(&mut plan, &loaded.desired, &planned.observed, &shells).await,
        );
        let exec_started = Instant::now();
        // The per-host proxy (issue 13), when the fleet has one: replicas leave it before they
        // stop, and every host's is synced once the steps are done.
        let proxy = exec::proxy::ProxyCtx::new(&loaded.desired, &shells, &planned.pass.meshes);
        let (outcomes, rollouts) =
            if planned.pass.plan.steps.is_empty() && planned.pass.plan.rollouts.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                let mut exec_opts = ExecOptions {
                    dependency_timeout: Duration::from_secs(
                        loaded.desired.settings.dependency_timeout_secs,
                    ),
                    shells: shells.clone(),
                    proxy: proxy.clone(),
                    ..Default::default()
                };
                let observer = std::sync::Arc::new(observer);
                let seen = observer.clone();
                exec_opts.rollout_progress = Some(progress_hook(observer.clone()));
                let report = exec::execute(
                    &plan,
                    &fleet.engines,
                    &exec_opts,
                    &images,
                    cancel,
                    move |o| seen.step_done(o),
                )
                .await;
                (report.outcomes, report.rollouts)
            };
        // Run-once jobs after the pass's steps, then what their `before:` held (`jobs`).
        let (outcomes, rollouts, job_runs) = jobs::run_due(
            fleet,
            loaded,
            memory,
            &planned.pass.plan,
            (outcomes, rollouts),
            &images,
            &shells,
            cancel,
        )
        .await;
        if let Some(p) = &proxy {
            for e in exec::proxy::sync_all(p, &fleet.engines).await {
                tracing::warn!(host = %e.host, error = %e.message, "proxy not in sync");
            }
        }
        // The mesh containers' configuration, once their containers run (`exec::mesh`).
        pull_failures.extend(exec::mesh::failures(
            &exec::mesh::sync(
                &planned.pass.meshes,
                &fleet.engines,
                &shells,
                cancel,
                &proxy
                    .as_ref()
                    .map(|p| p.unconfirmed_meshes())
                    .unwrap_or_default(),
            )
            .await,
        ));
        let execute_ms = ms(exec_started.elapsed());
        let verify_started = Instant::now();
        let after = if opts.verify {
            // The report says what was attempted, the engines say what is.
            Some(observe_and_plan(fleet, loaded, memory).await)
        } else {
            None
        };
        if !outcomes.is_empty() {
            // What no container uses any more, after a pass that changed something.
            let now = match &after {
                Some(a) => a.observed.clone(),
                None => fleet.observe(&loaded.desired).await,
            };
            exec::files::collect_garbage(&loaded.desired, &planned.observed, &now, &shells).await;
        }
        let remaining = after.map(|a| a.pass.plan);
        let verify_ms = ms(verify_started.elapsed());
        let failed = outcomes.iter().any(|o| o.error.is_some()) || !pull_failures.is_empty();
        // A run-once job that failed leaves nothing to do (it runs again only for a new spec),
        // but the state the commit asks for was not reached: not converged.
        let converged = planned.held.is_empty()
            && pull_failures.is_empty()
            && job_runs.iter().all(|j| j.succeeded())
            && remaining
                .as_ref()
                .unwrap_or(&planned.pass.plan)
                .is_converged()
            && (remaining.is_some() || outcomes.is_empty());
        let rolled_back = rollouts.iter().any(|r| {
            matches!(
                r.result,
                crate::model::rollout::RolloutResult::RolledBack { .. }
            )
        });
        let result = if rolled_back {
            PassResult::RolledBack
        } else if failed {
            PassResult::Failed
        } else if outcomes.is_empty() && !planned.pass.plan.quarantined.is_empty() {
            // The quarantined spec is not tried again: held, not a failure to retry.
            PassResult::Held {
                reason: crate::model::outcome::HoldReason::QuarantinedSpec,
            }
        } else if outcomes.is_empty() && !planned.held.is_empty() {
            // A sync window holds a change: what runs is kept, the rest waits for the window.
            PassResult::Held {
                reason: crate::model::outcome::HoldReason::SyncWindow,
            }
        } else if outcomes.is_empty() {
            PassResult::Converged
        } else {
            PassResult::Applied
        };
        tracing::info!(
            result = result.code(),
            steps = outcomes.len(),
            failed = outcomes.iter().filter(|o| o.error.is_some()).count(),
            converged,
            "pass ended"
        );
        PassRun {
            report: PassReport {
                reason,
                commit: loaded.commit.clone(),
                result,
                converged,
                plan: planned.pass.plan.clone(),
                outcomes,
                pull_failures,
                rollouts,
                remaining,
                timings: Timings {
                    observe_ms,
                    execute_ms,
                    verify_ms,
                    total_ms: ms(started.elapsed()),
                },
            },
            observed: planned.observed,
            decided: planned.pass,
            held: planned.held,
            jobs: job_runs,
        }
    }
    .instrument(span)
    .await
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// `apply --pull`: pull every image a host runs, so a tag that moved shows as drift.
async fn pull_images(loaded: &Loaded, fleet: &Fleet, placement: &Placement) -> Vec<String> {
    let mut wanted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (key, a) in &placement.replicas {
        if let Assignment::Host { host } = a {
            if let Some(svc) = loaded
                .desired
                .stacks
                .get(&key.stack)
                .and_then(|s| s.services.get(&key.service))
            {
                wanted
                    .entry((host.clone(), svc.container.image.clone()))
                    .or_default()
                    .push(format!("{}/{}", key.stack, key.service));
            }
        }
    }
    let results = futures_util::future::join_all(wanted.into_iter().filter_map(
        |((host, image), services)| {
            let engine = fleet.engines.get(&host)?.clone();
            Some(async move {
                let r = engine.ensure_image(&image, true).await;
                (services, r)
            })
        },
    ))
    .await;
    let mut failures = Vec::new();
    for (mut services, r) in results {
        if let Err(e) = r {
            services.dedup();
            failures.push(format!("{e} (needed by {})", services.join(", ")));
        }
    }
    failures
}

/// The local engine (for `images: push`) and the hosts that take pushed images.
pub async fn image_source(desired: &DesiredState) -> ImageSource {
    let push_hosts: BTreeSet<String> = desired
        .hosts
        .values()
        .filter(|h| h.images == ImagePolicy::Push)
        .map(|h| h.name.clone())
        .collect();
    let (local, local_error) = if push_hosts.is_empty() {
        (None, None)
    } else {
        match local_engine().await {
            Ok(e) => (Some(e), None),
            Err(why) => (None, Some(why)),
        }
    };
    ImageSource {
        push_hosts,
        local,
        local_error,
        builder: desired.settings.builder.clone(),
    }
}

/// The engine of the machine Convoy runs on: `DOCKER_HOST` (unix) or the default socket.
pub async fn local_engine() -> Result<Engine, String> {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let engine = Engine::unix("(local)", std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    engine
        .ping()
        .await
        .map_err(|e| format!("the local engine at unix://{path} does not answer: {e}"))?;
    Ok(engine)
}
