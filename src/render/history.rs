//! The deploy history as people read it (`convoy history`): one block per entry, newest first,
//! with when, the commit and its subject, why the pass ran, how it ended, what changed per
//! service, heals, and why it failed or was held; and as the versioned JSON document.
//!
//! Pure: entries in, a `String` out.

use std::fmt::Write;

use super::Style;
use crate::model::history::{HistoryDoc, HistoryEntry, ServiceChanges};
use crate::model::outcome::PassResult;

/// `{"version": 1, "entries": [...]}` on one line.
pub fn history_json(entries: &[HistoryEntry]) -> String {
    serde_json::to_string(&HistoryDoc::new(entries.to_vec())).expect("history entries serialise")
}

/// The text form; `(no history yet)` when empty.
pub fn history_text(entries: &[HistoryEntry], style: Style) -> String {
    if entries.is_empty() {
        return "(no history yet)\n".into();
    }
    let mut out = String::new();
    for e in entries {
        let result = match &e.result {
            PassResult::Applied | PassResult::Converged => style.paint("32", &e.result.to_string()),
            PassResult::Held { .. } | PassResult::Superseded => {
                style.paint("33", &e.result.to_string())
            }
            PassResult::Failed | PassResult::RolledBack => style.paint("31", &e.result.to_string()),
        };
        let commit: String = e.commit.chars().take(12).collect();
        let subject = e
            .message
            .as_deref()
            .and_then(|m| m.lines().next())
            .unwrap_or("");
        let _ = writeln!(
            out,
            "{}  {}  {}{}",
            e.started_at,
            style.paint("1", &commit),
            result,
            if e.converged { ", converged" } else { "" }
        );
        if !subject.is_empty() || e.author.is_some() {
            let by = e
                .author
                .as_deref()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default();
            let _ = writeln!(out, "    {subject}{by}");
        }
        let _ = writeln!(out, "    trigger: {}, ended {}", e.trigger, e.ended_at);
        for c in &e.changes {
            let _ = writeln!(out, "    {}", change_line(c));
        }
        if !e.heals.is_empty() {
            let heals: Vec<String> = e.heals.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "    healed: {}", heals.join(", "));
        }
        for r in &e.rollouts {
            let reason = r
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    rollout {}/{} {} ({} of {} batches){reason}",
                r.stack, r.service, r.result, r.batches_done, r.batches
            );
        }
        if let Some(d) = &e.detail {
            let _ = writeln!(out, "    {d}");
        }
        for err in &e.errors {
            let _ = writeln!(out, "    error: {err}");
        }
        for f in &e.failures {
            let host = if f.host.is_empty() {
                String::new()
            } else {
                format!("[{}] ", f.host)
            };
            let _ = writeln!(out, "    failed: {host}{}: {}", f.step, f.error);
        }
        for (host, why) in &e.unreachable {
            let _ = writeln!(out, "    unreachable: {host}: {why}");
        }
    }
    out
}

fn change_line(c: &ServiceChanges) -> String {
    let name = if c.service.is_empty() {
        format!("{} (networks, volumes)", c.stack)
    } else {
        format!("{}/{}", c.stack, c.service)
    };
    let counts: Vec<String> = [
        ("created", c.created),
        ("replaced", c.replaced),
        ("started", c.started),
        ("removed", c.removed),
        ("restored", c.restored),
        ("resources", c.resources),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{what} {n}"))
    .collect();
    format!("{name}: {}", counts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::history::{entry_from_hold, CommitMeta, Hold};
    use crate::model::outcome::{HoldReason, PassReason};

    #[test]
    fn entries_read_as_blocks_and_json() {
        let mut e = entry_from_hold(Hold {
            fleet: "prod",
            commit: "0123456789abcdef",
            reason: HoldReason::InvalidCommit,
            trigger: PassReason::NewCommit {
                commit: "0123456789abcdef".into(),
            },
            message: "1 error(s) in commit 0123456789ab",
            errors: vec!["convoy.yaml:2:1: hosts: expected a map".into()],
            at: 1_700_000_000.0,
        });
        e.set_meta(CommitMeta {
            author: "Ann <ann@example.com>".into(),
            message: "Break the hosts\n\nbody".into(),
        });
        let mut applied = e.clone();
        applied.result = PassResult::Applied;
        applied.converged = true;
        applied.detail = None;
        applied.errors.clear();
        applied.changes.push(ServiceChanges {
            stack: "web".into(),
            service: "app".into(),
            replaced: 2,
            ..Default::default()
        });
        let text = history_text(&[e.clone(), applied], Style { colour: false });
        assert!(
            text.contains("2023-11-14T22:13:20Z  0123456789ab  held (invalid_commit)\n"),
            "{text}"
        );
        assert!(
            text.contains("    Break the hosts (Ann <ann@example.com>)\n"),
            "{text}"
        );
        assert!(
            text.contains("    error: convoy.yaml:2:1: hosts: expected a map\n"),
            "{text}"
        );
        assert!(text.contains("applied, converged\n"), "{text}");
        assert!(text.contains("    web/app: replaced 2\n"), "{text}");
        assert!(
            text.contains("trigger: new commit 0123456789abcdef"),
            "{text}"
        );
        assert_eq!(
            history_text(&[], Style { colour: false }),
            "(no history yet)\n"
        );
        let json: serde_json::Value = serde_json::from_str(&history_json(&[e])).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["entries"][0]["reason"], "invalid_commit");
    }
}
