//! A plan as `convoy diff` shows it (in the style of `terraform plan`) and as JSON, and the
//! report of `convoy apply`.
//!
//! Pure: a value in, a `String` out. Secret values never reach this module in clear: `drift`
//! masks them, and container specs are never printed whole.

use std::fmt::Write;

use serde::Serialize;

use super::Style;
use crate::model::outcome::PassReport;
use crate::model::plan::{Action, Plan, Summary, JSON_VERSION};

/// The plan as `convoy diff` prints it.
pub fn plan_text(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "fleet `{}` at {}", plan.fleet, plan.commit);
    let mut hosts: Vec<&str> = plan.steps.iter().map(|s| s.host.as_str()).collect();
    hosts.dedup();
    hosts.sort_unstable();
    hosts.dedup();
    for host in hosts {
        let _ = writeln!(out, "\nhost {host}");
        for step in plan.steps.iter().filter(|s| s.host == host) {
            write_step(&mut out, &step.action, style);
        }
    }
    for (host, reason) in &plan.unreachable {
        let _ = writeln!(
            out,
            "\n{} host {host} is unreachable: {reason} (nothing planned there)",
            style.paint("31", "!")
        );
    }
    for c in &plan.conflicts {
        let _ = writeln!(
            out,
            "{} conflict on host {}: {}",
            style.paint("31", "!"),
            c.host,
            c.reason
        );
    }
    for p in &plan.pending {
        let _ = writeln!(
            out,
            "{} pending {}-{}-{}: {}",
            style.paint("33", "?"),
            p.stack,
            p.service,
            p.slot,
            p.reason
        );
    }
    for v in &plan.orphan_volumes {
        let _ = writeln!(
            out,
            "  volume `{}` on host {} belongs to no desired service of stack `{}` (kept: Convoy never deletes data)",
            v.name, v.host, v.stack
        );
    }
    for r in &plan.rollouts {
        write_rollout(&mut out, r, style);
    }
    for q in &plan.quarantined {
        let _ = writeln!(
            out,
            "{} quarantined {}/{} spec {} (from {}): {}; the running version is kept",
            style.paint("31", "!"),
            q.stack,
            q.service,
            crate::model::plan::short_id(&q.spec_hash),
            crate::model::plan::short_id(&q.commit),
            q.reason
        );
    }
    for j in &plan.jobs {
        let before = if j.before.is_empty() {
            String::new()
        } else {
            format!(", before {}", j.before.join(", "))
        };
        let _ = writeln!(
            out,
            "{} job {}/{} runs once (spec {}{before})",
            style.paint("32", "*"),
            j.stack,
            j.service,
            crate::model::plan::short_id(&j.spec_hash)
        );
    }
    for change in &plan.proxy {
        let _ = writeln!(out, "{}", change.line());
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let s = plan.summary();
    if plan.steps.is_empty() && plan.proxy.is_empty() {
        let _ = writeln!(out, "\nNo changes. {}", in_sync_line(plan));
    } else {
        // The proxies' count only when there is one, so a fleet without them reads as before.
        let proxies = if plan.proxy.is_empty() {
            String::new()
        } else {
            format!(", {} proxy change(s)", plan.proxy.len())
        };
        let _ = writeln!(
            out,
            "\nPlan: {} to create, {} to replace, {} to start, {} to remove, {} network/volume change(s){proxies}.",
            s.create, s.replace, s.start, s.remove, s.resources
        );
    }
    out
}

fn in_sync_line(plan: &Plan) -> &'static str {
    if plan.is_converged() {
        "The fleet matches the repository."
    } else {
        "The fleet does not fully match the repository (see above)."
    }
}

fn write_step(out: &mut String, action: &Action, style: Style) {
    match action {
        Action::CreateNetwork { network, .. } => {
            let _ = writeln!(
                out,
                "  {} network {}",
                style.paint("32", "+"),
                network.engine_name
            );
        }
        Action::CreateVolume { volume, .. } => {
            let _ = writeln!(
                out,
                "  {} volume {}",
                style.paint("32", "+"),
                volume.engine_name
            );
        }
        Action::RemoveNetwork { name, .. } => {
            let _ = writeln!(out, "  {} network {name}", style.paint("31", "-"));
        }
        Action::Create { replica, reason } => {
            let _ = writeln!(
                out,
                "  {} {}  ({}, image {})",
                style.paint("32", "+"),
                replica.name,
                reason,
                replica.spec.image
            );
        }
        Action::Replace {
            replica,
            changes,
            reason,
            ..
        } => {
            let _ = writeln!(
                out,
                "  {} {}  ({reason})",
                style.paint("33", "~"),
                replica.name
            );
            for c in changes {
                let _ = writeln!(out, "      {}: {} → {}", c.field, c.old, c.new);
            }
        }
        Action::Start { name, reason, .. } => {
            let _ = writeln!(
                out,
                "  {} {name}  (start: {reason})",
                style.paint("36", ">")
            );
        }
        Action::Remove { name, reason, .. } => {
            let _ = writeln!(out, "  {} {name}  ({reason})", style.paint("31", "-"));
        }
        Action::Restore { .. } | Action::RecordQuarantine { .. } => {
            let line = action.line();
            let (mark, rest) = line.split_at(1);
            let _ = writeln!(out, "  {}{rest}", style.paint("35", mark));
        }
    }
}

/// A rollout as the batches it will run.
fn write_rollout(out: &mut String, r: &crate::model::rollout::Rollout, style: Style) {
    let u = &r.update;
    let _ = writeln!(
        out,
        "
{} rollout {}/{} to spec {}: {} of {} replica(s) in {} batch(es) of {}, {}, monitor {}, delay {}, on failure {}",
        style.paint("33", "~"),
        r.stack,
        r.service,
        crate::model::plan::short_id(&r.to_hash),
        r.members.len(),
        r.replicas,
        r.batches,
        u.batch_size(r.members.len()),
        r.members.first().map(|m| m.order).unwrap_or(u.order),
        secs(u.monitor_ms),
        secs(u.delay_ms),
        u.failure_action
    );
    for b in 0..r.batches {
        let names: Vec<String> = r
            .members
            .iter()
            .filter(|m| m.batch == b)
            .map(|m| format!("{} on {}", m.name, m.host))
            .collect();
        let _ = writeln!(out, "    batch {}: {}", b + 1, names.join(", "));
    }
    if !r.changed.is_empty() {
        let names: Vec<String> = r
            .changed
            .iter()
            .map(|c| format!("{} on {}", c.name, c.host))
            .collect();
        let _ = writeln!(out, "    updated before, watched: {}", names.join(", "));
    }
}

fn secs(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}ms", ms)
    }
}

/// The plan as JSON: `{"version": 1, "fleet", "commit", "in_sync", "summary", "steps", ...}`.
pub fn plan_json(plan: &Plan) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        in_sync: bool,
        summary: Summary,
        #[serde(flatten)]
        plan: &'a Plan,
    }
    let doc = Doc {
        version: JSON_VERSION,
        in_sync: plan.is_converged(),
        summary: plan.summary(),
        plan,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `convoy apply`'s closing text: failures, then either "converged" or what remains.
pub fn apply_text(report: &PassReport, style: Style) -> String {
    let mut out = String::new();
    for f in report.failures() {
        let _ = writeln!(
            out,
            "failed on host {}: {}: {}",
            f.host,
            f.step,
            f.error.as_deref().unwrap_or_default()
        );
    }
    for f in &report.pull_failures {
        let _ = writeln!(out, "failed: {f}");
    }
    for r in &report.rollouts {
        use crate::model::rollout::RolloutResult;
        match &r.result {
            RolloutResult::RolledBack {
                reason,
                batch,
                host,
            } => {
                let _ = writeln!(
                    out,
                    "rolled back {}/{}: batch {batch} of {} failed on host {host}: {reason}; the previous version runs again and spec {} is quarantined",
                    r.stack,
                    r.service,
                    r.batches,
                    crate::model::plan::short_id(&r.to_hash)
                );
            }
            RolloutResult::Paused {
                reason,
                batch,
                host,
            } => {
                let _ = writeln!(
                    out,
                    "paused {}/{}: batch {batch} of {} failed on host {host}: {reason} (failure_action: pause)",
                    r.stack, r.service, r.batches
                );
            }
            RolloutResult::Interrupted => {
                let _ = writeln!(
                    out,
                    "interrupted {}/{} after batch {} of {}: the next pass continues it",
                    r.stack, r.service, r.batches_done, r.batches
                );
            }
            RolloutResult::Completed => {
                let _ = writeln!(
                    out,
                    "rolled out {}/{}: {} batch(es), {} replica(s) on spec {}",
                    r.stack,
                    r.service,
                    r.batches,
                    r.updated,
                    crate::model::plan::short_id(&r.to_hash)
                );
            }
        }
    }
    let failed = report.failures().count();
    let done = report.outcomes.len() - failed;
    if report.converged {
        let _ = writeln!(
            out,
            "\nApplied {done} step(s). Converged: the fleet matches {}.",
            report.commit
        );
    } else {
        let _ = writeln!(
            out,
            "\nApplied {done} step(s), {failed} failed. Not converged; what remains:"
        );
        if let Some(remaining) = &report.remaining {
            out.push_str(&plan_text(remaining, style));
        }
    }
    out
}

/// `convoy apply --output json`: `{"version": 1, "converged", "plan", "outcomes",
/// "pull_failures", "remaining", "result", "reason", "timings"}`.
pub fn apply_json(report: &PassReport) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        converged: bool,
        plan: &'a Plan,
        outcomes: &'a [crate::model::outcome::StepOutcome],
        pull_failures: &'a [String],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        rollouts: &'a [crate::model::rollout::RolloutReport],
        remaining: &'a Option<Plan>,
        #[serde(flatten)]
        result: &'a crate::model::outcome::PassResult,
        reason: &'a crate::model::outcome::PassReason,
        timings: &'a crate::model::outcome::Timings,
    }
    let doc = Doc {
        version: JSON_VERSION,
        converged: report.converged,
        plan: &report.plan,
        outcomes: &report.outcomes,
        pull_failures: &report.pull_failures,
        rollouts: &report.rollouts,
        remaining: &report.remaining,
        result: &report.result,
        reason: &report.reason,
        timings: &report.timings,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
