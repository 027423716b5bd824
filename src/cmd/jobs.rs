//! `convoy jobs [--output json]` lists every job with its next run and last runs, read from
//! the job containers' labels on the engines (or, with `--daemon URL`, from the daemon's
//! status); `convoy jobs run NAME` starts one run now, directly on the fleet or through the
//! daemon's API (`POST /api/v1/jobs/{name}/run`); a run started here is recorded in the
//! deploy history as the daemon records one. Exit 0 listed or the run succeeded, 1 a
//! host could not be read or the run failed, 2 invalid input or daemon unavailable.
//!
//! It decides nothing about when jobs run (`core::jobs`); it prints through `emit` only.

use std::path::Path;

use anyhow::Result;
use hyper::http::Method;
use tokio_util::sync::CancellationToken;

use super::client::{explain, unavailable, Client};
use super::{emit, emit_line, load_repo, with_fleet, Outcome};
use crate::api::StatusDoc;
use crate::cli::{DaemonClientArgs, Output, RepoArgs};
use crate::core::jobs::{find_job, statuses, Trigger};
use crate::core::pass::HostMemory;
use crate::reconcile::observe_and_plan;
use crate::render::jobs::{jobs_json, jobs_text, run_line};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Every job of `desired` with its next time and its runs as `observed` records them (their
/// times and masked last lines read from the engines): `convoy jobs` and `convoy status`.
pub(super) async fn job_statuses(
    fleet: &crate::infra::fleet::Fleet,
    desired: &crate::model::spec::DesiredState,
    observed: &crate::model::observed::ObservedState,
) -> Vec<crate::model::job::JobStatus> {
    let runs = crate::exec::jobs::read_runs(&fleet.engines, observed, &desired.secret_values).await;
    statuses(desired, runs, now())
}

/// `convoy jobs`: every job, its next run and last runs.
pub async fn list(
    repo: &RepoArgs,
    client: &DaemonClientArgs,
    output: Output,
    state_dir: &Path,
) -> Result<Outcome> {
    if let Some(url) = &client.daemon {
        return list_daemon(url, client, output).await;
    }
    let Some(loaded) = load_repo(repo)? else {
        return Ok(Outcome::Invalid);
    };
    let (jobs, unreachable) = with_fleet(&loaded, state_dir, async |fleet| {
        let observed = fleet.observe(&loaded.desired).await;
        let unreachable = observed.hosts.values().any(|h| h.snapshot().is_none());
        (
            job_statuses(fleet, &loaded.desired, &observed).await,
            unreachable,
        )
    })
    .await;
    match output {
        Output::Json => emit_line(&jobs_json(&jobs)),
        Output::Text => emit(&jobs_text(&jobs)),
    }
    Ok(if unreachable {
        Outcome::SomeUnreachable
    } else {
        Outcome::AllReachable
    })
}

async fn list_daemon(url: &str, client: &DaemonClientArgs, output: Output) -> Result<Outcome> {
    let c = match Client::new(
        url,
        client.api_token_file.as_deref(),
        client.ca_file.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    let reply = match c.request(Method::GET, "/api/v1/status").await {
        Ok(r) => r,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    if reply.status != 200 {
        return Ok(unavailable(&explain(&c, &reply)));
    }
    let doc: StatusDoc = match serde_json::from_slice(&reply.body) {
        Ok(d) => d,
        Err(e) => {
            return Ok(unavailable(&format!(
                "the daemon at {} sent a status this convoy cannot read: {e}",
                c.url()
            )))
        }
    };
    match output {
        Output::Json => emit_line(&jobs_json(&doc.jobs)),
        Output::Text => emit(&jobs_text(&doc.jobs)),
    }
    Ok(Outcome::AllReachable)
}

/// `convoy jobs run NAME`: one run now.
pub async fn run(
    repo: &RepoArgs,
    client: &DaemonClientArgs,
    name: &str,
    state_dir: &Path,
) -> Result<Outcome> {
    if let Some(url) = &client.daemon {
        return run_daemon(url, client, name).await;
    }
    let source = super::open_source(repo)?;
    let Some(loaded) = super::load(source.as_ref(), None)? else {
        return Ok(Outcome::Invalid);
    };
    let (stack, service) = match find_job(&loaded.desired, name) {
        Ok((st, sv, _)) => (st.to_string(), sv.to_string()),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Outcome::Invalid);
        }
    };
    let out = with_fleet(&loaded, state_dir, async |fleet| {
        let planned = observe_and_plan(fleet, &loaded, &HostMemory::default()).await;
        let images = crate::reconcile::image_source(&loaded.desired).await;
        crate::exec::jobs::run_job(
            &fleet.engines,
            &images,
            &fleet.shells(&loaded.desired),
            &loaded.desired,
            &planned.observed,
            &planned.pass.plan.network_ids,
            &stack,
            &service,
            Trigger::Manual(now()),
            &loaded.commit,
            &CancellationToken::new(),
        )
        .await
    })
    .await;
    // In the deploy history as the daemon records a run by hand.
    let entry = out.history_entry(&loaded.desired.fleet, now() as f64);
    let limit = loaded.desired.settings.history_limit;
    super::history::record(state_dir, limit, entry, source).await;
    emit_line(&out.line());
    if out.error.is_none() {
        emit_line(&format!("  {}", run_line(&out.run)));
        for l in &out.run.last_lines {
            emit_line(&format!("    | {l}"));
        }
    }
    Ok(if out.succeeded() {
        Outcome::Converged
    } else {
        Outcome::NotConverged
    })
}

async fn run_daemon(url: &str, client: &DaemonClientArgs, name: &str) -> Result<Outcome> {
    let c = match Client::new(
        url,
        client.api_token_file.as_deref(),
        client.ca_file.as_deref(),
    ) {
        Ok(c) => c,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    let path = format!("/api/v1/jobs/{}/run", name.replace('/', "%2F"));
    let reply = match c.request(Method::POST, &path).await {
        Ok(r) => r,
        Err(e) => return Ok(unavailable(&e.to_string())),
    };
    if reply.status != 202 {
        return Ok(unavailable(&explain(&c, &reply)));
    }
    emit_line(&format!(
        "job `{name}` started by the daemon at {}",
        c.url()
    ));
    Ok(Outcome::Accepted)
}
