//! `convoy status`: desired against running replicas per service, with health, restarts and
//! the last log lines of troubled containers. Those lines are the container's own output, shown
//! as it is except for known secret values, which are masked ("secrets stay masked": a service
//! that echoes its password as it crashes must not put it on a terminal or in a JSON document).
//!
//! With `--daemon URL` it observes nothing itself: it asks a running daemon
//! (`GET /api/v1/status`) and prints the daemon's document, as text or as it came.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::Result;

use super::client::{explain, unavailable, Client};
use super::{emit, emit_line, load_repo, with_fleet, Outcome};
use crate::api::StatusDoc;
use crate::cli::{Output, RepoArgs};
use crate::core::pass::HostMemory;
use crate::core::schedule::Assignment;
use crate::infra::fleet::Fleet;
use crate::model::observed::{ObservedContainer, ObservedHost, RunState};
use crate::model::spec::mask_secrets;
use crate::reconcile::{observe_and_plan, Loaded, Planned};
use crate::render::status::{
    quarantine_line, rollout_progress_line, rollout_report_line, status_json, status_text,
    FleetStatus, ReplicaStatus, ServiceStatus,
};

pub async fn run(repo: &RepoArgs, output: Output, state_dir: &Path) -> Result<Outcome> {
    let Some(loaded) = load_repo(repo)? else {
        return Ok(Outcome::Invalid);
    };
    let (planned, services, jobs) = with_fleet(&loaded, state_dir, async |fleet| {
        let planned = observe_and_plan(fleet, &loaded, &HostMemory::default()).await;
        let services = services(fleet, &loaded, &planned).await;
        let jobs = jobs(fleet, &loaded, &planned).await;
        (planned, services, jobs)
    })
    .await;
    let plan = &planned.pass.plan;
    let status = FleetStatus {
        fleet: &loaded.desired.fleet,
        commit: &loaded.commit,
        services,
        unreachable: &plan.unreachable,
        orphan_volumes: &plan.orphan_volumes,
        quarantined: &plan.quarantined,
        jobs: &jobs,
    };
    match output {
        Output::Json => emit_line(&status_json(&status)),
        Output::Text => {
            emit(&status_text(&status));
            // Changes a sync window holds now: which stack, which window, until when.
            let holds = super::windows::holds_now(&loaded.desired, super::windows::now_secs());
            for line in super::windows::held_lines(plan, &holds) {
                emit(&format!("held: {line}\n"));
            }
            // Services a `before:` job holds on the spec they run (`core::jobs`, slot `*`).
            for p in plan.pending.iter().filter(|p| p.slot == "*") {
                emit(&format!(
                    "held: service `{}/{}` stays on its running spec: {}\n",
                    p.stack, p.service, p.reason
                ));
            }
        }
    }
    Ok(if plan.unreachable.is_empty() {
        Outcome::AllReachable
    } else {
        Outcome::SomeUnreachable
    })
}

/// `convoy status --daemon URL`: the daemon's own status. Exit 0 when every host is connected,
/// 1 when some is not, 2 when the daemon cannot be asked.
pub async fn run_daemon(
    url: &str,
    token_file: Option<&Path>,
    ca_file: Option<&Path>,
    output: Output,
) -> Result<Outcome> {
    // Without `--ca-file`, an `https://` daemon is checked against the system's roots.
    let client = match Client::new(url, token_file, ca_file) {
        Ok(c) => c,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    let reply = match client
        .request(hyper::http::Method::GET, "/api/v1/status")
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    if reply.status != 200 {
        return Ok(unavailable(&explain(&client, &reply)));
    }
    let doc: StatusDoc = match serde_json::from_slice(&reply.body) {
        Ok(d) => d,
        Err(e) => {
            let msg = format!(
                "the daemon at {} sent a status this convoy cannot read: {e}",
                client.url()
            );
            return Ok(unavailable(&msg));
        }
    };
    match output {
        Output::Json => emit(&String::from_utf8_lossy(&reply.body)),
        Output::Text => emit(&daemon_text(&doc)),
    }
    Ok(if doc.hosts.iter().all(|h| h.state == "connected") {
        Outcome::AllReachable
    } else {
        Outcome::SomeUnreachable
    })
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// A pass reason as the API serialises it (`{"kind": "host_lost", "host": "a"}`) in one line.
fn reason_text(reason: &serde_json::Value) -> String {
    let Some(obj) = reason.as_object() else {
        return reason.to_string();
    };
    let kind = obj
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or("?")
        .replace('_', " ");
    let rest: Vec<String> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "kind")
        .map(|(k, v)| match v.as_str() {
            Some(s) => format!("{k} {s}"),
            None => format!("{k} {v}"),
        })
        .collect();
    if rest.is_empty() {
        kind
    } else {
        format!("{kind} ({})", rest.join(", "))
    }
}

fn daemon_text(d: &StatusDoc) -> String {
    let mut out = String::new();
    let ready = if d.ready { "ready" } else { "not ready" };
    let _ = writeln!(out, "daemon     {}, {ready}", d.phase);
    let _ = writeln!(out, "source     {}", d.source);
    match (&d.applied_commit, &d.applied_commit_time) {
        (Some(c), Some(t)) => {
            let _ = writeln!(out, "applied    {} ({t})", short(c));
        }
        (Some(c), None) => {
            let _ = writeln!(out, "applied    {}", short(c));
        }
        (None, _) => {
            let _ = writeln!(out, "applied    none yet");
        }
    }
    if let Some(p) = &d.pending_commit {
        let _ = writeln!(
            out,
            "pending    {} held ({}): {}",
            short(&p.commit),
            p.reason,
            p.message
        );
        for e in &p.errors {
            let _ = writeln!(
                out,
                "  error: {}:{}:{}: {}: {}",
                e.file, e.line, e.column, e.key, e.message
            );
        }
    }
    for w in &d.sync_windows {
        let _ = writeln!(
            out,
            "  window: stack `{}` held by sync window {} ({} `{}` {}) until {}{}",
            w.stack,
            w.window,
            w.kind,
            w.schedule,
            w.timezone,
            w.opens_at.as_deref().unwrap_or("no opening in sight"),
            if w.manual_sync {
                ""
            } else {
                " (manual_sync: false)"
            }
        );
    }
    match &d.last_pass {
        Some(p) => {
            let mut line = format!("last pass  {}", p.finished_at);
            if let Some(ms) = p.duration_ms {
                let _ = write!(line, ", {ms} ms");
            }
            if let Some(r) = &p.reason {
                let _ = write!(line, ", {}", reason_text(r));
            }
            if let Some(r) = &p.result {
                let _ = write!(line, ": {r}");
                if let Some(h) = &p.hold_reason {
                    let _ = write!(line, " ({h})");
                }
            }
            line.push_str(if p.converged {
                ", converged"
            } else {
                ", not converged"
            });
            let _ = writeln!(out, "{line}");
            for r in &p.rollouts {
                let _ = writeln!(out, "  {}", rollout_report_line(r));
            }
        }
        None => {
            let _ = writeln!(out, "last pass  none yet");
        }
    }
    let _ = writeln!(out, "passes     {}", d.passes);
    if !d.rollouts.is_empty() || !d.quarantined.is_empty() {
        out.push('\n');
    }
    for r in &d.rollouts {
        let _ = writeln!(out, "{}", rollout_progress_line(r));
    }
    for q in &d.quarantined {
        let _ = writeln!(out, "! {}", quarantine_line(q));
    }
    if !d.services.is_empty() {
        let names: Vec<String> = d
            .services
            .iter()
            .map(|s| format!("{}/{}", s.stack, s.service))
            .collect();
        let w = names
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max("SERVICE".len());
        let _ = writeln!(out, "\n{:<w$}  DESIRED  RUNNING  PENDING", "SERVICE");
        for (name, s) in names.iter().zip(&d.services) {
            let _ = writeln!(
                out,
                "{name:<w$}  {:<7}  {:<7}  {}",
                s.desired, s.running, s.pending
            );
        }
    }
    out.push_str(&crate::render::jobs::jobs_summary(&d.jobs));
    if !d.hosts.is_empty() {
        let w = d
            .hosts
            .iter()
            .map(|h| h.name.len())
            .max()
            .unwrap_or(0)
            .max("HOST".len());
        let _ = writeln!(out, "\n{:<w$}  STATE", "HOST");
        for h in &d.hosts {
            let line = match &h.reason {
                Some(r) => format!("{:<w$}  {:<11}  {r}", h.name, h.state),
                None => format!("{:<w$}  {}", h.name, h.state),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// The jobs with their runs (`convoy jobs`'s view); nothing is read when the repository has
/// no job.
async fn jobs(
    fleet: &Fleet,
    loaded: &Loaded,
    planned: &Planned,
) -> Vec<crate::model::job::JobStatus> {
    if crate::core::jobs::jobs(&loaded.desired).is_empty() {
        return Vec::new();
    }
    super::jobs::job_statuses(fleet, &loaded.desired, &planned.observed).await
}

async fn services(fleet: &Fleet, loaded: &Loaded, planned: &Planned) -> Vec<ServiceStatus> {
    let mut services: BTreeMap<(String, String), ServiceStatus> = BTreeMap::new();
    for (key, a) in &planned.pass.placement.replicas {
        let entry = services
            .entry((key.stack.clone(), key.service.clone()))
            .or_insert_with(|| ServiceStatus {
                stack: key.stack.clone(),
                service: key.service.clone(),
                desired: 0,
                running: 0,
                replicas: Vec::new(),
                endpoints: Vec::new(),
            });
        entry.desired += 1;
        let name = loaded
            .desired
            .replica_name(&key.stack, &key.service, &key.slot);
        let (host, pending) = match a {
            Assignment::Host { host } => (host.clone(), None),
            Assignment::Pending { reason } => (String::new(), Some(reason.clone())),
        };
        let observed = planned
            .observed
            .hosts
            .get(&host)
            .and_then(ObservedHost::snapshot)
            .and_then(|s| {
                // An adopted Compose container holds its slot under Compose's name.
                s.containers.get(&name).or_else(|| {
                    s.containers.values().find(|c| {
                        s.adopted.contains_key(&c.name)
                            && (&c.stack, &c.service, &c.slot)
                                == (&key.stack, &key.service, &key.slot)
                    })
                })
            });
        let name = observed.map_or(name, |c| c.name.clone());
        if observed.is_some_and(|c| c.state == RunState::Running) {
            entry.running += 1;
        }
        entry.replicas.push(ReplicaStatus {
            name,
            host,
            pending,
            state: observed.map(|c| c.state),
            health: observed.and_then(|c| c.health),
            restarts: observed.map(|c| c.restart_count).unwrap_or(0),
            exit_code: observed.and_then(ObservedContainer::reported_exit_code),
            crash_loop: observed.is_some_and(ObservedContainer::crash_looping),
            last_logs: Vec::new(),
        });
    }
    // A crash loop is reported with what the container said last.
    for s in services.values_mut() {
        for r in &mut s.replicas {
            let troubled = r.restarts > 0
                || r.state == Some(RunState::Restarting)
                || r.exit_code.is_some_and(|c| c != 0);
            if let (true, Some(engine)) = (troubled, fleet.engines.get(&r.host)) {
                r.last_logs = engine
                    .recent_logs(&r.name, 5)
                    .await
                    .iter()
                    .map(|line| mask_secrets(line, &loaded.desired.secret_values))
                    .collect();
            }
        }
    }
    endpoints(loaded, planned, &mut services);
    services.into_values().collect()
}

/// Each service's listeners in the per-host proxies (issue 13), from what each host runs now.
fn endpoints(
    loaded: &Loaded,
    planned: &Planned,
    services: &mut BTreeMap<(String, String), ServiceStatus>,
) {
    use crate::core::proxy::{ports, render};
    if loaded.desired.settings.proxy.is_none() {
        return;
    }
    let listener_ports = ports::listener_ports(&loaded.desired).unwrap_or_default();
    for (host, h) in &planned.observed.hosts {
        let Some(snap) = h.snapshot() else { continue };
        let m = render::model(
            &loaded.desired,
            host,
            snap,
            &Default::default(),
            &listener_ports,
        );
        let mut add = |stack: &str, service: &str, kind, address: String, replicas| {
            if let Some(s) = services.get_mut(&(stack.to_string(), service.to_string())) {
                s.endpoints.push(crate::render::status::Endpoint {
                    host: host.clone(),
                    kind,
                    address,
                    replicas,
                });
            }
        };
        for l in &m.ingress {
            for r in &l.routes {
                let local = r.backends.iter().filter(|b| !b.backup).count();
                add(
                    &r.stack,
                    &r.service,
                    "ingress",
                    format!("{}:{}", l.bind_ip, l.port),
                    local,
                );
            }
        }
        for c in &m.cross {
            add(
                &c.stack,
                &c.service,
                "cross-host",
                format!("{}:{}", c.address, c.port),
                c.backends.len(),
            );
        }
    }
    // Discovery: on a host without a replica of a service, its stack's mesh answers for it.
    for mesh in &planned.pass.meshes {
        for r in &mesh.routes {
            let weight: u32 = r.endpoints.iter().map(|e| e.weight).sum();
            if let Some(s) = services.get_mut(&(mesh.stack.clone(), r.service.clone())) {
                s.endpoints.push(crate::render::status::Endpoint {
                    host: mesh.host.clone(),
                    kind: "mesh",
                    address: format!("{}:{}", r.service, r.port),
                    replicas: weight as usize,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{HostDoc, LastPassDoc, PendingDoc, ServiceDoc};
    use crate::model::rollout::{QuarantineRecord, RolloutProgress, RolloutReport, RolloutResult};

    #[test]
    fn a_daemons_status_reads_as_text() {
        let doc = StatusDoc {
            jobs: vec![crate::model::job::JobStatus {
                stack: "web".into(),
                name: "migrate".into(),
                schedule: None,
                timezone: "UTC".into(),
                concurrency: Default::default(),
                next_run: None,
                last_runs: Vec::new(),
            }],
            version: 1,
            applied_commit: Some("0123456789abcdef0123".into()),
            applied_commit_time: Some("2024-03-01T12:00:05Z".into()),
            pending_commit: Some(PendingDoc {
                commit: "fedcba9876543210".into(),
                reason: "invalid_commit".into(),
                message: "1 error".into(),
                errors: vec![crate::api::CommitErrorDoc {
                    file: "convoy.yaml".into(),
                    line: 3,
                    column: 5,
                    key: "hosts.a".into(),
                    message: "unknown key".into(),
                }],
            }),
            ready: true,
            phase: "idle".into(),
            source: "repo (main)".into(),
            last_pass: Some(LastPassDoc {
                finished_at: "2024-03-01T12:00:10Z".into(),
                duration_ms: Some(80),
                reason: Some(serde_json::json!({"kind": "host_lost", "host": "b"})),
                result: Some("held".into()),
                hold_reason: Some("deletion_guard".into()),
                converged: false,
                rollouts: vec![RolloutReport {
                    stack: "web".into(),
                    service: "api".into(),
                    to_hash: "abc123abc123abc123".into(),
                    result: RolloutResult::RolledBack {
                        reason: "api-1: unhealthy".into(),
                        batch: 1,
                        host: "host1".into(),
                    },
                    batches_done: 1,
                    batches: 2,
                    updated: 0,
                }],
            }),
            passes: 3,
            services: vec![ServiceDoc {
                stack: "web".into(),
                service: "app".into(),
                desired: 2,
                running: 1,
                pending: 1,
            }],
            hosts: vec![HostDoc {
                name: "b".into(),
                state: "unreachable".into(),
                reason: Some("timed out".into()),
            }],
            rollouts: vec![RolloutProgress {
                stack: "web".into(),
                service: "app".into(),
                to_hash: "0a0a0a0a0a0a0a0a".into(),
                batch: 2,
                batches: 4,
                updated: 1,
                replicas: 4,
                done: false,
            }],
            quarantined: vec![QuarantineRecord {
                stack: "web".into(),
                service: "api".into(),
                spec_hash: "abc123abc123abc123".into(),
                commit: "def456def456def456".into(),
                reason: "api-1: unhealthy".into(),
                batch: 1,
                host: "host1".into(),
                at: "2024-03-01T12:00:09Z".into(),
                id: String::new(),
            }],
            sync_windows: vec![crate::api::SyncWindowDoc {
                stack: "web".into(),
                window: 0,
                kind: "deny".into(),
                schedule: "0 22 * * 5".into(),
                timezone: "Europe/Berlin".into(),
                manual_sync: false,
                opens_at: Some("2024-03-04T09:00:00Z".into()),
            }],
        };
        let text = daemon_text(&doc);
        for want in [
            "  window: stack `web` held by sync window 0 (deny `0 22 * * 5` Europe/Berlin) until 2024-03-04T09:00:00Z (manual_sync: false)",
            "daemon     idle, ready",
            "\njobs\n  web/migrate: runs once per spec\n    no run yet\n",
            "applied    0123456789ab (2024-03-01T12:00:05Z)",
            "pending    fedcba987654 held (invalid_commit): 1 error",
            "  error: convoy.yaml:3:5: hosts.a: unknown key",
            "last pass  2024-03-01T12:00:10Z, 80 ms, host lost (host b): held (deletion_guard), not converged",
            "web/app  2        1        1",
            "b     unreachable  timed out",
            "  rollout web/api rolled back: spec abc123abc123 failed in batch 1 of 2 on host host1: api-1: unhealthy",
            "\nrollout web/app: batch 2 of 4, 1 of 4 replicas updated\n",
            "! quarantined web/api spec abc123abc123 (commit def456def456) since 2024-03-01T12:00:09Z: api-1: unhealthy (batch 1, host host1)\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
    }
}
