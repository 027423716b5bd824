//! `convoy hosts`: every host's reachability, round trip, engine version and capacity.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{emit, emit_line, load_repo, with_fleet, Outcome};
use crate::cli::{Output, RepoArgs};
use crate::core::pass::HostMemory;
use crate::model::observed::ObservedHost;
use crate::reconcile::observe_and_plan;
use crate::render::hosts::{hosts_json, hosts_text, HostReport};

pub async fn run(repo: &RepoArgs, output: Output, state_dir: &Path) -> Result<Outcome> {
    let Some(loaded) = load_repo(repo)? else {
        return Ok(Outcome::Invalid);
    };
    let (planned, rtt) = with_fleet(&loaded, state_dir, async |fleet| {
        let planned = observe_and_plan(fleet, &loaded, &HostMemory::default()).await;
        let mut rtt: BTreeMap<String, Duration> = BTreeMap::new();
        for name in fleet.engines.keys() {
            if let Ok(d) = fleet.probe(name).await {
                rtt.insert(name.clone(), d);
            }
        }
        (planned, rtt)
    })
    .await;
    let mut reports = Vec::new();
    for (name, spec) in &loaded.desired.hosts {
        let observed = planned.observed.hosts.get(name);
        let snap = observed.and_then(ObservedHost::snapshot);
        reports.push(HostReport {
            name: name.clone(),
            address: spec.address.to_string(),
            reachable: snap.is_some(),
            reason: match observed {
                Some(ObservedHost::Unreachable { reason }) => Some(reason.clone()),
                None => Some("not observed".into()),
                _ => None,
            },
            rtt_ms: rtt.get(name).map(|d| d.as_secs_f64() * 1000.0),
            docker_version: snap.map(|s| s.engine_version.clone()),
            cpus: snap.map(|s| s.nano_cpus as f64 / 1e9),
            memory_bytes: snap.map(|s| s.memory_bytes),
            containers: snap.map(|s| s.containers.len()),
            labels: spec.labels.clone(),
        });
    }
    match output {
        Output::Json => emit_line(&hosts_json(&loaded.desired.fleet, &reports)),
        Output::Text => emit(&hosts_text(&reports)),
    }
    Ok(if reports.iter().all(|r| r.reachable) {
        Outcome::AllReachable
    } else {
        Outcome::SomeUnreachable
    })
}
