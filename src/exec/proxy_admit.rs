//! A new replica into its host's proxy the moment the engine says it is healthy (issue 13:
//! "configuration change to applied in the proxy: <= 100 ms after the container is healthy").
//!
//! Started for each replica the pass creates and starts ([`admit`]), in the background: (1) a
//! sync of the host's proxy ships, checks (`haproxy -c`) and reloads into a configuration that
//! carries the replica as a `disabled` server (`core::proxy::render`), while its healthcheck
//! runs; (2) the master CLI session is opened and the engine's events for that container are
//! watched (no polling); (3) on `health_status: healthy` (and its readiness probe answering,
//! where it has one, as a rollout counts it up), its servers are put into service with
//! `set server <section>/<server> state ready` on the open session: one line, no reload, no new
//! connection; (4) a last sync reloads into the configuration where it is plainly in service,
//! so the file says what runs. A replica that dies, turns unhealthy or outlives its
//! healthcheck's budget is never put into service here; step (4) then drops it.
//!
//! Guarantees kept: only configurations `haproxy -c` accepted are ever in force (the runtime
//! change enables a server of a checked configuration); syncs of one host still take turns
//! (steps 1 and 4 are ordinary syncs); a sync of the pass's end waits for these tasks
//! ([`settle`]). It never creates, stops or removes a container.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{sync_host, ProxyCtx};
use crate::infra::docker::{Engine, HealthWait};
use crate::infra::files::HostShell;
use crate::infra::haproxy_cli::MasterCli;
use crate::model::proxy::MASTER_CLI_PORT;
use crate::model::rollout::Readiness;

tokio::task_local! {
    /// Set inside an admission task: its syncs neither wait for admissions nor for starting
    /// replicas (the other replicas have their own tasks).
    static ADMITTING: ();
}

/// How often, and how long at most, a healthy replica's readiness probe is asked.
const READY_POLL: Duration = Duration::from_millis(25);
const READY_LIMIT: Duration = Duration::from_secs(30);
/// The longest a master CLI session may take to open.
const CLI_OPEN: Duration = Duration::from_secs(5);

/// Whether the current task is an admission (its syncs do not wait for others).
pub(super) fn in_admission() -> bool {
    ADMITTING.try_with(|_| ()).is_ok()
}

/// Starts the admission of replica `name` of `stack`/`service`, just started on `engine`'s
/// host; a service the proxy does not carry (no declared TCP port) is left alone.
pub fn admit(ctx: &Arc<ProxyCtx>, engine: &Engine, stack: &str, service: &str, name: &str) {
    let host = engine.host().to_string();
    if !ctx.hosts.contains_key(&host) {
        return;
    }
    let Some(svc) = ctx
        .desired
        .stacks
        .get(stack)
        .and_then(|s| s.services.get(service))
    else {
        return;
    };
    if svc.declared_tcp_ports().is_empty() {
        return;
    }
    let budget = svc
        .container
        .healthcheck
        .as_ref()
        .map(|h| Duration::from_millis(h.latest_healthy_ms()))
        .unwrap_or_default()
        .min(super::STARTING_CAP);
    let readiness = svc.rollout.readiness.clone();
    let task = tokio::spawn(ADMITTING.scope(
        (),
        run(
            ctx.clone(),
            engine.clone(),
            name.to_string(),
            budget,
            readiness,
        ),
    ));
    ctx.admitting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(host)
        .or_default()
        .push(task);
}

/// Waits for the admissions under way on `host` (each is bounded by its replica's budget).
pub async fn settle(ctx: &ProxyCtx, host: &str) {
    let tasks = ctx
        .admitting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(host)
        .unwrap_or_default();
    for t in tasks {
        let _ = t.await;
    }
}

async fn run(
    ctx: Arc<ProxyCtx>,
    engine: Engine,
    name: String,
    budget: Duration,
    readiness: Option<Readiness>,
) {
    let host = engine.host().to_string();
    // (1) In the configuration, disabled, while its healthcheck runs.
    if let Err(e) = sync_host(&ctx, &engine, None).await {
        tracing::warn!(host = %host, container = %name, error = %e, "proxy: staging the new replica failed");
    }
    // (2) The session, opened while the healthcheck runs, and the engine's word on health.
    let shell = ctx.shells.get(&host).cloned().unwrap_or(HostShell::Local);
    let (cli, health) = tokio::join!(
        MasterCli::open(&shell, MASTER_CLI_PORT, CLI_OPEN),
        engine.wait_healthy(&name, budget + Duration::from_secs(1))
    );
    match health {
        Ok(HealthWait::Healthy { at_nanos }) if ready(&engine, &shell, &name, &readiness).await => {
            // (3) Into service at once, in the configuration in force.
            let servers = ctx
                .in_force
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&host)
                .map(|m| crate::core::proxy::render::servers_of(m, &name))
                .unwrap_or_default();
            if servers.is_empty() {
                tracing::debug!(host = %host, container = %name, "proxy: no disabled server for the replica; the reload puts it in");
            } else {
                match into_service(cli, &shell, &servers).await {
                    Ok(()) => {
                        tracing::info!(host = %host, container = %name, servers = servers.len(), after_healthy_ms = since_ms(at_nanos), "proxy: replica in service")
                    }
                    Err(e) => {
                        tracing::warn!(host = %host, container = %name, error = %e, "proxy: the runtime API did not put the replica into service; the reload does")
                    }
                }
            }
        }
        Ok(HealthWait::NoHealthcheck) => {}
        Ok(other) => {
            tracing::debug!(host = %host, container = %name, outcome = ?other, "proxy: the replica did not become healthy")
        }
        Err(e) => {
            tracing::warn!(host = %host, container = %name, error = %e, "proxy: cannot watch the replica's health")
        }
    }
    // (4) The file says what runs.
    if let Err(e) = sync_host(&ctx, &engine, None).await {
        tracing::warn!(host = %host, container = %name, error = %e, "proxy: sync after the replica's health failed");
    }
}

/// Whether the replica answers its readiness probe (`x-convoy.readiness`), when it has one:
/// a rollout counts it up only then, and so does the proxy. Probed every [`READY_POLL`] within
/// [`READY_LIMIT`].
async fn ready(engine: &Engine, shell: &HostShell, name: &str, probe: &Option<Readiness>) -> bool {
    let Some(p) = probe else { return true };
    let until = tokio::time::Instant::now() + READY_LIMIT;
    loop {
        let answer = crate::infra::probe::http_status(
            shell,
            engine,
            name,
            p.port,
            &p.path,
            Duration::from_secs(2),
        )
        .await;
        if answer.as_ref().ok() == Some(&p.expect) {
            return true;
        }
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

/// `set server <section>/<server> state ready` for each of `servers` on the session; a session
/// that broke (the master re-executes itself on every reload, closing its CLI connections) is
/// opened again once.
async fn into_service(
    cli: Result<MasterCli, String>,
    shell: &HostShell,
    servers: &[(String, String)],
) -> Result<(), String> {
    let mut cli = match cli {
        Ok(c) => c,
        Err(_) => MasterCli::open(shell, MASTER_CLI_PORT, CLI_OPEN).await?,
    };
    for (section, server) in servers {
        let line = format!("@1 set server {section}/{server} state ready");
        let answer = match cli.command(&line).await {
            Ok(a) => a,
            Err(_) => {
                cli = MasterCli::open(shell, MASTER_CLI_PORT, CLI_OPEN).await?;
                cli.command(&line).await?
            }
        };
        if !answer.is_empty() {
            return Err(format!("`{section}/{server}`: {answer}"));
        }
    }
    Ok(())
}

/// Milliseconds from the engine's time `at` (Unix nanoseconds) to now, when known.
fn since_ms(at: Option<i64>) -> Option<u64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_nanos() as i64;
    Some((now - at?).max(0) as u64 / 1_000_000)
}
