//! `convoy apply`: one verified pass. The plan is printed before anything is done, each step
//! as it ends (on a terminal), and the report after a second observation. The pass holds the
//! fleet's lock (`infra::lock`) from before it observes until it has verified, so two applies
//! from one machine take turns instead of racing.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Result;

use super::{emit, emit_line, load, open_source, style, with_fleet, Outcome};
use crate::cli::{LockArgs, Output, RepoArgs};
use crate::core::pass::HostMemory;
use crate::model::outcome::{PassReason, StepOutcome};
use crate::model::plan::Plan;
use crate::reconcile::{run_pass, PassObserver, PassOptions};
use crate::render;

/// Prints the plan before acting and, on a terminal, each step as it ends.
struct Progress {
    text: bool,
    steps: bool,
}

impl PassObserver for Progress {
    fn planned(&self, plan: &Plan) {
        if self.text {
            emit(&render::plan_text(plan, style()));
        }
    }

    fn step_done(&self, o: &StepOutcome) {
        if self.steps {
            let mark = if o.error.is_some() { "failed" } else { "done" };
            eprintln!("  [{}] {} {}", o.host, mark, o.step);
        }
    }

    fn rollout_progress(&self, p: &crate::model::rollout::RolloutProgress) {
        if self.text && !p.done {
            eprintln!(
                "  rollout {}/{}: batch {} of {}, {} of {} replicas updated",
                p.stack, p.service, p.batch, p.batches, p.updated, p.replicas
            );
        }
    }
}

pub async fn run(
    repo: &RepoArgs,
    pull: bool,
    output: Output,
    state_dir: &Path,
    lock: LockArgs,
    force: bool,
) -> Result<Outcome> {
    let source = open_source(repo)?;
    let Some(mut loaded) = load(source.as_ref(), None)? else {
        record_refusal(state_dir, source).await;
        return Ok(Outcome::Invalid);
    };
    let _lock = crate::infra::lock::acquire(
        state_dir,
        &loaded.desired.fleet,
        std::time::Duration::from_secs(lock.lock_timeout),
    )
    .await?;
    // Sync windows: a held stack keeps what it runs (healed from its own containers).
    let mut holds = super::windows::holds_now(&loaded.desired, super::windows::now_secs());
    if force {
        holds = super::windows::force(holds);
    }
    loaded.frozen = holds;
    let text = output == Output::Text;
    let progress = Progress {
        text,
        steps: text && std::io::stderr().is_terminal(),
    };
    let opts = PassOptions { pull, verify: true };
    // SIGINT or SIGTERM: the steps in flight finish (a rollout stops after the batch in
    // flight, its kept replicas stay for the next pass) and nothing new starts; a second
    // signal ends the process at once.
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_signal = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            for n in 0..2 {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                if n == 0 {
                    tracing::warn!(
                        "interrupted: finishing the steps in flight (again to stop at once)"
                    );
                    cancel.cancel();
                } else {
                    std::process::exit(130);
                }
            }
        })
    };
    let started = now();
    let notify_dir = source.local_dir().map(Path::to_path_buf);
    let run = with_fleet(&loaded, state_dir, async |fleet| {
        run_pass(
            fleet,
            &loaded,
            &HostMemory::default(),
            PassReason::Command {
                name: "apply".into(),
            },
            &opts,
            &cancel,
            progress,
        )
        .await
    })
    .await;
    on_signal.abort();
    for stack in &run.held {
        if let Some(h) = loaded.frozen.get(stack) {
            eprintln!("held: {}", h.line());
        }
    }
    let job_runs = run.jobs;
    let report = run.report;
    // The pass, then its run-once jobs' runs, each a job entry (as the daemon records them).
    let mut entries: Vec<_> =
        crate::model::history::entry_from_report(&report, &report.result, started, now())
            .into_iter()
            .collect();
    entries.extend(
        job_runs
            .iter()
            .map(|j| j.history_entry(&loaded.desired.fleet, now())),
    );
    if !entries.is_empty() {
        let limit = loaded.desired.settings.history_limit;
        super::history::record_all(state_dir, limit, entries, source).await;
    }
    match output {
        Output::Text => emit(&render::apply_text(&report, style())),
        Output::Json => emit_line(&render::apply_json(&report)),
    }
    // After the report is out: at most a few seconds for the endpoints (`notify_once`).
    crate::daemon::notify_once(&loaded, notify_dir, &report, &job_runs, started).await;
    Ok(if report.converged {
        Outcome::Converged
    } else {
        Outcome::NotConverged
    })
}

/// A commit `apply` refused (it does not validate): recorded as held, like the daemon's.
async fn record_refusal(state_dir: &Path, source: Box<dyn crate::infra::source::Source>) {
    let Err(crate::reconcile::LoadError::Invalid {
        origin,
        commit,
        errors,
        ..
    }) = crate::reconcile::load(source.as_ref(), None)
    else {
        return;
    };
    let fleet = super::daemon::fleet_name(source.as_ref()).unwrap_or_default();
    let message = format!("{} error(s) in {origin}; nothing was changed", errors.len());
    let entry = crate::model::history::entry_from_hold(crate::model::history::Hold {
        fleet: &fleet,
        commit: &commit,
        reason: crate::model::outcome::HoldReason::InvalidCommit,
        trigger: PassReason::Command {
            name: "apply".into(),
        },
        message: &message,
        errors: errors.iter().map(ToString::to_string).collect(),
        at: now(),
    });
    super::history::record(
        state_dir,
        crate::model::history::DEFAULT_HISTORY_LIMIT,
        entry,
        source,
    )
    .await;
}

/// Unix seconds now.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}
