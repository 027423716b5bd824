//! `convoy status`: desired against running replicas per service, with health, restarts and
//! the last lines of troubled containers, as text and JSON. The document types live here; the
//! command fills them from a pass's observation.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::model::observed::{Health, RunState};
use crate::model::plan::{OrphanVolume, JSON_VERSION};

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub stack: String,
    pub service: String,
    pub desired: usize,
    pub running: usize,
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Serialize)]
pub struct ReplicaStatus {
    pub name: String,
    pub host: String,
    /// Why the replica has no host, when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    pub state: Option<RunState>,
    pub health: Option<Health>,
    pub restarts: i64,
    /// The last exit code, for containers that exited or are restarting.
    pub exit_code: Option<i64>,
    /// Restarting, or restarted three times or more: the engine keeps restarting it and it
    /// keeps failing.
    pub crash_loop: bool,
    /// The last lines a restarting or failed container printed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub last_logs: Vec<String>,
}

/// The whole status of a fleet at a commit.
pub struct FleetStatus<'a> {
    pub fleet: &'a str,
    pub commit: &'a str,
    pub services: Vec<ServiceStatus>,
    pub unreachable: &'a BTreeMap<String, String>,
    pub orphan_volumes: &'a [OrphanVolume],
}

pub fn status_json(s: &FleetStatus) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        version: u32,
        fleet: &'a str,
        commit: &'a str,
        services: &'a [ServiceStatus],
        unreachable: &'a BTreeMap<String, String>,
        orphan_volumes: &'a [OrphanVolume],
    }
    let doc = Doc {
        version: JSON_VERSION,
        fleet: s.fleet,
        commit: s.commit,
        services: &s.services,
        unreachable: s.unreachable,
        orphan_volumes: s.orphan_volumes,
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub fn status_text(s: &FleetStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "fleet `{}` at {}", s.fleet, s.commit);
    for svc in &s.services {
        let _ = writeln!(
            out,
            "\n{}/{}  {}/{} running",
            svc.stack, svc.service, svc.running, svc.desired
        );
        for r in &svc.replicas {
            let state = match (r.state, r.exit_code) {
                (None, _) => "missing".to_string(),
                (Some(RunState::Exited), Some(code)) => format!("exited ({code})"),
                (Some(st), _) => format!("{st:?}").to_lowercase(),
            };
            let health = r
                .health
                .map(|h| format!(", {}", format!("{h:?}").to_lowercase()))
                .unwrap_or_default();
            let looping = if r.crash_loop {
                format!(", crash loop (last exit code {})", r.exit_code.unwrap_or(0))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  {:<32} {:<12} {state}{health}, {} restart(s){looping}",
                r.name,
                if r.host.is_empty() {
                    "(pending)"
                } else {
                    &r.host
                },
                r.restarts
            );
            if let Some(reason) = &r.pending {
                let _ = writeln!(out, "      pending: {reason}");
            }
            for line in &r.last_logs {
                let _ = writeln!(out, "      | {line}");
            }
        }
    }
    for (host, reason) in s.unreachable {
        let _ = writeln!(out, "\n! host {host} is unreachable: {reason}");
    }
    for v in s.orphan_volumes {
        let _ = writeln!(
            out,
            "  orphaned volume `{}` on host {} (stack `{}`): kept",
            v.name, v.host, v.stack
        );
    }
    out
}
