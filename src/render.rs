//! Plans and reports as text for people and JSON for programs.
//!
//! Pure: a value in, a `String` out. Colour is a parameter (the caller knows whether stdout is
//! a terminal). Secret values never reach this module in clear: `drift` masks them, and
//! container specs are never printed whole.

use std::fmt::Write;

use serde::Serialize;

use crate::plan::{Action, Plan, JSON_VERSION};

/// ANSI colour on or off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

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
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    let s = plan.summary();
    if plan.steps.is_empty() {
        let _ = writeln!(out, "\nNo changes. {}", in_sync_line(plan));
    } else {
        let _ = writeln!(
            out,
            "\nPlan: {} to create, {} to replace, {} to start, {} to remove, {} network/volume change(s).",
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
        Action::RemoveNetwork { name } => {
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
    }
}

/// The plan as JSON: `{"version": 1, "fleet", "commit", "in_sync", "summary", "steps", ...}`.
pub fn plan_json(plan: &Plan) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        in_sync: bool,
        summary: crate::plan::Summary,
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

/// One line per step, for progress and for the apply report.
pub fn step_line(action: &Action) -> String {
    let mut s = String::new();
    write_step(&mut s, action, Style { colour: false });
    s.lines().next().unwrap_or_default().trim().to_string()
}
