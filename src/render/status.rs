//! `convoy status`: desired against running replicas per service, with health, restarts and
//! the last lines of troubled containers, as text and JSON. The document types live here; the
//! command fills them from a pass's observation. The lines of rollouts (in flight, ended) and
//! of quarantined specs are here too, shared with the daemon's status (`status --daemon`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::model::observed::{Health, RunState};
use crate::model::plan::{short_id, OrphanVolume, JSON_VERSION};
use crate::model::rollout::{QuarantineRecord, RolloutProgress, RolloutReport, RolloutResult};

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub stack: String,
    pub service: String,
    pub desired: usize,
    pub running: usize,
    pub replicas: Vec<ReplicaStatus>,
    /// Where the per-host proxies take the service's traffic (issue 13), per host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
}

/// One listener of a host's proxy for a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub host: String,
    /// `ingress` (a published port), `cross-host` (on the host's internal address) or `mesh`
    /// (the stack's mesh container on a host without a replica of the service: discovery).
    pub kind: &'static str,
    /// `ip:port`, or `:port` for every address of the host; for `mesh`, `service:port` as the
    /// stack's containers on that host call it.
    pub address: String,
    /// The replicas it sends to on this host now; for `mesh`, the replicas placed on the
    /// other hosts it sends to.
    pub replicas: usize,
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
    /// The last exit code, for containers that exited or are restarting (unknown while one runs:
    /// the engine resets it on each start).
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
    /// Services whose desired spec failed a rollout and is not tried again.
    pub quarantined: &'a [QuarantineRecord],
    /// Jobs with their next time and last runs, as `convoy jobs` and the daemon's status show
    /// them.
    pub jobs: &'a [crate::model::job::JobStatus],
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
        quarantined: &'a [QuarantineRecord],
        jobs: &'a [crate::model::job::JobStatus],
    }
    let doc = Doc {
        version: JSON_VERSION,
        fleet: s.fleet,
        commit: s.commit,
        services: &s.services,
        unreachable: s.unreachable,
        orphan_volumes: s.orphan_volumes,
        quarantined: s.quarantined,
        jobs: s.jobs,
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
            let looping = match (r.crash_loop, r.exit_code) {
                (true, Some(code)) => format!(", crash loop (last exit code {code})"),
                (true, None) => ", crash loop".to_string(),
                (false, _) => String::new(),
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
        for e in &svc.endpoints {
            let whose = if e.kind == "mesh" {
                "on other hosts"
            } else {
                "here"
            };
            let _ = writeln!(
                out,
                "  endpoint {:<21} {:<12} {}, {} replica(s) {whose}",
                e.address, e.host, e.kind, e.replicas
            );
        }
    }
    out.push_str(&crate::render::jobs::jobs_summary(s.jobs));
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
    if !s.quarantined.is_empty() {
        out.push('\n');
    }
    for q in s.quarantined {
        let _ = writeln!(out, "! {}", quarantine_line(q));
    }
    out
}

/// A quarantined spec in one line: `quarantined shop/web spec 0123456789ab (commit
/// fedcba987654) since <at>: <reason> (batch 1, host h1)`.
pub fn quarantine_line(q: &QuarantineRecord) -> String {
    format!(
        "quarantined {}/{} spec {} (commit {}) since {}: {} (batch {}, host {})",
        q.stack,
        q.service,
        short_id(&q.spec_hash),
        short_id(&q.commit),
        q.at,
        q.reason,
        q.batch,
        q.host
    )
}

/// A rollout in flight in one line: `rollout shop/web: batch 2 of 4, 1 of 4 replicas updated`.
pub fn rollout_progress_line(p: &RolloutProgress) -> String {
    let batch = if p.batch == 0 {
        format!("starting, {} batches", p.batches)
    } else {
        format!("batch {} of {}", p.batch, p.batches)
    };
    format!(
        "rollout {}/{}: {batch}, {} of {} replicas updated",
        p.stack, p.service, p.updated, p.replicas
    )
}

/// How a rollout of the last pass ended, in one line.
pub fn rollout_report_line(r: &RolloutReport) -> String {
    let name = format!("{}/{}", r.stack, r.service);
    let spec = short_id(&r.to_hash);
    match &r.result {
        RolloutResult::Completed => format!(
            "rollout {name} completed: spec {spec}, {} of {} batches, {} replicas updated",
            r.batches_done, r.batches, r.updated
        ),
        RolloutResult::RolledBack {
            reason,
            batch,
            host,
        } => format!(
            "rollout {name} rolled back: spec {spec} failed in batch {batch} of {} on host {host}: {reason}",
            r.batches
        ),
        RolloutResult::Paused {
            reason,
            batch,
            host,
        } => format!(
            "rollout {name} paused: spec {spec} failed in batch {batch} of {} on host {host}: {reason} ({} replicas updated)",
            r.batches, r.updated
        ),
        RolloutResult::Interrupted => format!(
            "rollout {name} interrupted after {} of {} batches ({} replicas updated); the next pass continues it",
            r.batches_done, r.batches, r.updated
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> QuarantineRecord {
        QuarantineRecord {
            stack: "shop".into(),
            service: "web".into(),
            spec_hash: "abc123abc123abc123abc123".into(),
            commit: "def456def456def456def456".into(),
            reason: "web-2: not up within the progress deadline (120s)".into(),
            batch: 1,
            host: "host1".into(),
            at: "2024-03-01T12:00:09Z".into(),
            id: "c0nta1ner".into(),
        }
    }

    fn report(result: RolloutResult) -> RolloutReport {
        RolloutReport {
            stack: "shop".into(),
            service: "web".into(),
            to_hash: "abc123abc123abc123abc123".into(),
            result,
            batches_done: 2,
            batches: 4,
            updated: 2,
        }
    }

    #[test]
    fn rollouts_and_quarantines_read_as_located_lines() {
        assert_eq!(
            quarantine_line(&record()),
            "quarantined shop/web spec abc123abc123 (commit def456def456) since \
             2024-03-01T12:00:09Z: web-2: not up within the progress deadline (120s) \
             (batch 1, host host1)"
        );
        let mut p = RolloutProgress {
            stack: "shop".into(),
            service: "web".into(),
            to_hash: "abc".into(),
            batch: 2,
            batches: 4,
            updated: 1,
            replicas: 4,
            done: false,
        };
        assert_eq!(
            rollout_progress_line(&p),
            "rollout shop/web: batch 2 of 4, 1 of 4 replicas updated"
        );
        p.batch = 0;
        assert_eq!(
            rollout_progress_line(&p),
            "rollout shop/web: starting, 4 batches, 1 of 4 replicas updated"
        );
        assert_eq!(
            rollout_report_line(&report(RolloutResult::Completed)),
            "rollout shop/web completed: spec abc123abc123, 2 of 4 batches, 2 replicas updated"
        );
        assert_eq!(
            rollout_report_line(&report(RolloutResult::RolledBack {
                reason: "web-3: exited with code 1".into(),
                batch: 2,
                host: "host2".into(),
            })),
            "rollout shop/web rolled back: spec abc123abc123 failed in batch 2 of 4 on host \
             host2: web-3: exited with code 1"
        );
        assert_eq!(
            rollout_report_line(&report(RolloutResult::Paused {
                reason: "web-3: unhealthy".into(),
                batch: 2,
                host: "host2".into(),
            })),
            "rollout shop/web paused: spec abc123abc123 failed in batch 2 of 4 on host host2: \
             web-3: unhealthy (2 replicas updated)"
        );
        assert_eq!(
            rollout_report_line(&report(RolloutResult::Interrupted)),
            "rollout shop/web interrupted after 2 of 4 batches (2 replicas updated); the next \
             pass continues it"
        );
    }

    #[test]
    fn fleet_status_shows_quarantined_specs_as_text_and_json() {
        let unreachable = BTreeMap::new();
        let quarantined = [record()];
        let s = FleetStatus {
            fleet: "prod",
            commit: "c1",
            services: Vec::new(),
            unreachable: &unreachable,
            orphan_volumes: &[],
            quarantined: &quarantined,
            jobs: &[],
        };
        let text = status_text(&s);
        assert!(
            text.contains("\n! quarantined shop/web spec abc123abc123 (commit def456def456)"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&status_json(&s)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(
            v["quarantined"],
            serde_json::json!([{"stack": "shop", "service": "web",
                "spec_hash": "abc123abc123abc123abc123", "commit": "def456def456def456def456",
                "reason": "web-2: not up within the progress deadline (120s)", "batch": 1,
                "host": "host1", "at": "2024-03-01T12:00:09Z"}])
        );
        // Nothing quarantined: nothing said.
        let s = FleetStatus {
            quarantined: &[],
            ..s
        };
        assert!(!status_text(&s).contains("quarantined"));
        // No job: no jobs section, and an empty list in JSON.
        assert!(!status_text(&s).contains("jobs"));
        let v: serde_json::Value = serde_json::from_str(&status_json(&s)).unwrap();
        assert_eq!(v["jobs"], serde_json::json!([]));
    }

    #[test]
    fn fleet_status_lists_jobs_with_their_last_run_and_next_time() {
        use crate::model::job::{Concurrency, JobRun, JobStatus, RunPhase};
        let unreachable = BTreeMap::new();
        let jobs = [
            JobStatus {
                stack: "shop".into(),
                name: "nightly".into(),
                schedule: Some("@daily".into()),
                timezone: "UTC".into(),
                concurrency: Concurrency::Forbid,
                next_run: Some("2024-03-02T00:00:00Z".into()),
                last_runs: vec![JobRun {
                    host: "host1".into(),
                    container: "shop-nightly-job-1709251200".into(),
                    scheduled: Some(1_709_251_200),
                    scheduled_at: Some("2024-03-01T00:00:00Z".into()),
                    phase: RunPhase::Failed,
                    exit_code: Some(2),
                    started: Some(1_709_251_201),
                    finished: Some(1_709_251_205),
                    duration_secs: Some(4),
                    spec_hash: "h".into(),
                    commit: "c1".into(),
                    manual: false,
                    last_lines: vec!["no space left".into()],
                }],
            },
            JobStatus {
                stack: "shop".into(),
                name: "migrate".into(),
                schedule: None,
                timezone: "UTC".into(),
                concurrency: Concurrency::Forbid,
                next_run: None,
                last_runs: Vec::new(),
            },
        ];
        let s = FleetStatus {
            fleet: "prod",
            commit: "c1",
            services: Vec::new(),
            unreachable: &unreachable,
            orphan_volumes: &[],
            quarantined: &[],
            jobs: &jobs,
        };
        let text = status_text(&s);
        assert!(
            text.ends_with(
                "\njobs\n  shop/nightly: `@daily` (UTC), next run 2024-03-02T00:00:00Z\n    last: \
                 2024-03-01T00:00:00Z on host1: failed, exit code 2, 4s \
                 (shop-nightly-job-1709251200)\n  shop/migrate: runs once per spec\n    no run \
                 yet\n"
            ),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&status_json(&s)).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["jobs"][0]["name"], "nightly");
        assert_eq!(v["jobs"][0]["last_runs"][0]["exit_code"], 2);
        assert_eq!(v["jobs"][1]["schedule"], serde_json::Value::Null);
    }
}
