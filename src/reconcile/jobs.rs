//! A pass's run-once jobs (`Plan::jobs`): run after the pass's own steps, each on the host the
//! scheduler chooses, and reported as steps of the pass (a failed run is a failed step, so a
//! failed `before:` job fails the pass like a failed batch). When one succeeded, the fleet is
//! observed and planned again and what its `before:` held is executed in the same pass.
//!
//! Nothing here decides what is due (`core::jobs`) or prints.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{observe_and_plan, Loaded};
use crate::core::jobs::Trigger;
use crate::core::pass::HostMemory;
use crate::exec::{self, ExecOptions, ImageSource, StepOutcome};
use crate::infra::fleet::Fleet;
use crate::model::plan::Plan;
use crate::model::rollout::RolloutReport;

/// Runs `plan`'s due jobs after `done` (the outcomes and rollouts of its steps), then the
/// services they released; returns every outcome, the jobs' numbered after the plan's steps,
/// and the jobs' runs themselves (for `job_succeeded`/`job_failed` notifications).
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_due(
    fleet: &Fleet,
    loaded: &Loaded,
    memory: &HostMemory,
    plan: &Plan,
    done: (Vec<StepOutcome>, Vec<RolloutReport>),
    images: &ImageSource,
    shells: &BTreeMap<String, crate::infra::files::HostShell>,
    cancel: &CancellationToken,
) -> (
    Vec<StepOutcome>,
    Vec<RolloutReport>,
    Vec<exec::jobs::JobOutcome>,
) {
    let (mut outcomes, mut rollouts) = done;
    let mut runs = Vec::new();
    if plan.jobs.is_empty() || cancel.is_cancelled() {
        return (outcomes, rollouts, runs);
    }
    // What the fleet runs now: the networks this pass created, the hosts' state.
    let now = observe_and_plan(fleet, loaded, memory).await;
    let mut next_id = plan.steps.len();
    let mut released = false;
    for due in &plan.jobs {
        let out = exec::jobs::run_job(
            &fleet.engines,
            images,
            shells,
            &loaded.desired,
            &now.observed,
            &now.pass.plan.network_ids,
            &due.stack,
            &due.service,
            Trigger::Once,
            &loaded.commit,
            cancel,
        )
        .await;
        released |= out.succeeded() && !due.before.is_empty();
        let mut error = match (&out.error, out.run.exit_code) {
            (Some(e), _) => Some(e.clone()),
            _ if out.timed_out => Some("killed at its deadline".to_string()),
            (None, Some(0)) => None,
            (None, Some(c)) => Some(format!("exit code {c}")),
            (None, None) => Some("did not end".to_string()),
        };
        if let (Some(e), false) = (&mut error, out.run.last_lines.is_empty()) {
            e.push_str(&format!(
                "; last lines:\n  {}",
                out.run.last_lines.join("\n  ")
            ));
        }
        if let (Some(e), false) = (&mut error, due.before.is_empty()) {
            e.push_str(&format!(
                "\n  the rollout of {} stopped: they stay on their running spec",
                due.before.join(", ")
            ));
        }
        outcomes.push(StepOutcome {
            id: next_id,
            host: out.run.host.clone(),
            step: format!(
                "* job {}/{} (run once, spec {})",
                due.stack,
                due.service,
                short(&due.spec_hash)
            ),
            error,
        });
        next_id += 1;
        runs.push(out);
    }
    if !released || cancel.is_cancelled() {
        return (outcomes, rollouts, runs);
    }
    // What the jobs held goes now, in this pass.
    let again = observe_and_plan(fleet, loaded, memory).await;
    let mut plan2 = again.pass.plan.clone();
    plan2.jobs.clear();
    if plan2.steps.is_empty() && plan2.rollouts.is_empty() {
        return (outcomes, rollouts, runs);
    }
    let shells = shells.clone();
    let failures =
        exec::files::prepare(&mut plan2, &loaded.desired, &again.observed, &shells).await;
    for f in failures {
        outcomes.push(StepOutcome {
            id: next_id,
            host: String::new(),
            step: "files".into(),
            error: Some(f),
        });
        next_id += 1;
    }
    let opts = ExecOptions {
        dependency_timeout: Duration::from_secs(loaded.desired.settings.dependency_timeout_secs),
        shells,
        ..Default::default()
    };
    let report = exec::execute(&plan2, &fleet.engines, &opts, images, cancel, |_| {}).await;
    for mut o in report.outcomes {
        o.id += next_id;
        outcomes.push(o);
    }
    rollouts.extend(report.rollouts);
    (outcomes, rollouts, runs)
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}
