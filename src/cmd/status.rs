//! `convoy status`: desired against running replicas per service, with health, restarts and
//! the last log lines of troubled containers. Those lines are the container's own output, shown
//! as it is except for known secret values, which are masked ("secrets stay masked": a service
//! that echoes its password as it crashes must not put it on a terminal or in a JSON document).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::{emit, emit_line, load_repo, with_fleet, Outcome};
use crate::cli::{Output, RepoArgs};
use crate::core::pass::HostMemory;
use crate::core::schedule::Assignment;
use crate::infra::fleet::Fleet;
use crate::model::observed::{ObservedHost, RunState};
use crate::model::spec::{container_name, mask_secrets};
use crate::reconcile::{observe_and_plan, Loaded, Planned};
use crate::render::status::{status_json, status_text, FleetStatus, ReplicaStatus, ServiceStatus};

pub async fn run(repo: &RepoArgs, output: Output, state_dir: &Path) -> Result<Outcome> {
    let Some(loaded) = load_repo(repo)? else {
        return Ok(Outcome::Invalid);
    };
    let (planned, services) = with_fleet(&loaded, state_dir, async |fleet| {
        let planned = observe_and_plan(fleet, &loaded, &HostMemory::default()).await;
        let services = services(fleet, &loaded, &planned).await;
        (planned, services)
    })
    .await;
    let plan = &planned.pass.plan;
    let status = FleetStatus {
        fleet: &loaded.desired.fleet,
        commit: &loaded.commit,
        services,
        unreachable: &plan.unreachable,
        orphan_volumes: &plan.orphan_volumes,
    };
    match output {
        Output::Json => emit_line(&status_json(&status)),
        Output::Text => emit(&status_text(&status)),
    }
    Ok(if plan.unreachable.is_empty() {
        Outcome::AllReachable
    } else {
        Outcome::SomeUnreachable
    })
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
            });
        entry.desired += 1;
        let name = container_name(&key.stack, &key.service, &key.slot);
        let (host, pending) = match a {
            Assignment::Host { host } => (host.clone(), None),
            Assignment::Pending { reason } => (String::new(), Some(reason.clone())),
        };
        let observed = planned
            .observed
            .hosts
            .get(&host)
            .and_then(ObservedHost::snapshot)
            .and_then(|s| s.containers.get(&name));
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
            exit_code: observed
                .filter(|c| {
                    matches!(
                        c.state,
                        RunState::Exited | RunState::Restarting | RunState::Dead
                    ) || c.restart_count > 0
                })
                .map(|c| c.exit_code),
            crash_loop: observed
                .is_some_and(|c| c.state == RunState::Restarting || c.restart_count >= 3),
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
    services.into_values().collect()
}
