//! The bodies of notifications and commit statuses: a one-line text for people (Slack's
//! `text`, Discord's `content`), the generic kind's compact versioned JSON, and the forges'
//! status requests (GitHub and Gitea share one shape; GitLab has its own).
//!
//! The generic body (version 1) is one line of JSON: `version`, `timestamp` (RFC 3339, UTC: a
//! receiver refuses old ones against replay), `fleet`, `event` and the event's fields. Fields
//! are only ever added; an incompatible change bumps `version`. Pure: a value in, a string out.
//! It must not add anything the event does not carry (events are masked already).

use serde::Serialize;

use crate::model::notify::{CommitStatus, Event, Notification};

/// Version of the generic body.
pub const GENERIC_VERSION: u32 = 1;

/// Discord refuses `content` over 2000 characters; Slack's limit is far higher.
const CHAT_CAP: usize = 1900;

#[derive(Serialize)]
struct Generic<'a> {
    version: u32,
    timestamp: String,
    fleet: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// The generic kind's body: compact JSON on one line.
pub fn generic_body(n: &Notification) -> String {
    let body = Generic {
        version: GENERIC_VERSION,
        timestamp: crate::model::time::rfc3339(n.at as f64),
        fleet: &n.fleet,
        event: &n.event,
    };
    serde_json::to_string(&body).expect("plain data serialises")
}

/// The message as one line for people.
pub fn text(n: &Notification) -> String {
    let fleet = &n.fleet;
    let line = match &n.event {
        Event::Started { commit, hosts } => {
            format!("{fleet}: applying {} to {hosts} host(s)", short(commit))
        }
        Event::Applied { commit, hosts } => {
            format!("{fleet}: {} applied ({hosts})", short(commit))
        }
        Event::Failed {
            commit,
            reason,
            hosts,
        } => format!("{fleet}: {} failed ({hosts} ok): {reason}", short(commit)),
        Event::RolledBack {
            commit,
            reason,
            hosts,
        } => format!(
            "{fleet}: {} rolled back ({hosts} ok): {reason}",
            short(commit)
        ),
        Event::Held {
            commit,
            hold_reason,
            reason,
        } => format!(
            "{fleet}: {} held ({}): {reason}; the last good commit keeps running",
            short(commit),
            hold_reason.code()
        ),
        Event::Healed {
            replicas,
            by_reason,
            ..
        } => {
            let why: Vec<String> = by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
            format!("{fleet}: healed {replicas} replica(s) ({})", why.join(", "))
        }
        Event::HostDown { host } => {
            format!("{fleet}: host {host} is down; its replicas are placed elsewhere")
        }
        Event::HostUp { host } => format!("{fleet}: host {host} is back"),
        Event::JobFailed { run } => format!(
            "{fleet}: job {}/{} failed on {} (exit code {}, {} ms)",
            run.stack, run.job, run.host, run.exit_code, run.duration_ms
        ),
        Event::JobSucceeded { run } => format!(
            "{fleet}: job {}/{} succeeded on {} ({} ms)",
            run.stack, run.job, run.host, run.duration_ms
        ),
    };
    crate::model::notify::one_line(&line, CHAT_CAP)
}

/// Slack's incoming webhook body.
pub fn slack_body(n: &Notification) -> String {
    serde_json::json!({ "text": text(n) }).to_string()
}

/// Discord's webhook body (mentions off: a reason text cannot ping anyone).
pub fn discord_body(n: &Notification) -> String {
    serde_json::json!({ "content": text(n), "allowed_mentions": { "parse": [] } }).to_string()
}

/// GitHub's and Gitea's `POST .../statuses/{sha}` body.
pub fn github_status_body(s: &CommitStatus) -> String {
    serde_json::json!({
        "state": s.state.github(),
        "context": s.context,
        "description": s.description,
    })
    .to_string()
}

/// GitLab's `POST .../statuses/{sha}` body.
pub fn gitlab_status_body(s: &CommitStatus) -> String {
    serde_json::json!({
        "state": s.state.gitlab(),
        "name": s.context,
        "description": s.description,
    })
    .to_string()
}

fn short(commit: &str) -> &str {
    match commit.char_indices().nth(12) {
        Some((i, _)) if crate::model::notify::is_full_commit(commit) => &commit[..i],
        _ => commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::notify::{commit_status, HostCount};
    use crate::model::outcome::HoldReason;

    fn n(event: Event) -> Notification {
        Notification {
            fleet: "prod".into(),
            at: 1_700_000_000,
            event,
        }
    }

    #[test]
    fn generic_body_is_one_versioned_line_with_a_timestamp() {
        let body = generic_body(&n(Event::Applied {
            commit: "a".repeat(40),
            hosts: HostCount { ok: 3, total: 4 },
        }));
        assert!(!body.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(v["fleet"], "prod");
        assert_eq!(v["event"], "applied");
        assert_eq!(v["hosts"]["ok"], 3);
        assert_eq!(v["hosts"]["total"], 4);
    }

    #[test]
    fn held_generic_body_names_the_hold_reason() {
        let body = generic_body(&n(Event::Held {
            commit: "c".into(),
            hold_reason: HoldReason::SyncWindow,
            reason: "inside a deny window".into(),
        }));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["event"], "held");
        assert_eq!(v["hold_reason"], "sync_window");
    }

    #[test]
    fn chat_bodies_are_one_line_and_discord_mentions_nobody() {
        let e = n(Event::Failed {
            commit: "b".repeat(40),
            reason: "line one\nline two @everyone".into(),
            hosts: HostCount { ok: 3, total: 4 },
        });
        let t = text(&e);
        assert_eq!(
            t,
            "prod: bbbbbbbbbbbb failed (3/4 hosts ok): line one line two @everyone"
        );
        let d: serde_json::Value = serde_json::from_str(&discord_body(&e)).unwrap();
        assert_eq!(d["allowed_mentions"]["parse"], serde_json::json!([]));
        let s: serde_json::Value = serde_json::from_str(&slack_body(&e)).unwrap();
        assert_eq!(s["text"], t);
    }

    #[test]
    fn status_bodies_use_each_forges_words() {
        let s = commit_status(
            "prod",
            &Event::RolledBack {
                commit: "d".repeat(40),
                reason: "health gate".into(),
                hosts: HostCount { ok: 2, total: 3 },
            },
        )
        .unwrap();
        let gh: serde_json::Value = serde_json::from_str(&github_status_body(&s)).unwrap();
        assert_eq!(gh["state"], "failure");
        assert_eq!(gh["context"], "convoy/prod");
        assert_eq!(gh["description"], "rolled back (2/3 hosts ok): health gate");
        let gl: serde_json::Value = serde_json::from_str(&gitlab_status_body(&s)).unwrap();
        assert_eq!(gl["state"], "failed");
        assert_eq!(gl["name"], "convoy/prod");
    }
}
