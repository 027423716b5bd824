//! The per-host proxy at run time (issue 13): the container `convoy-proxy` made, replaced on a
//! new image and started, and its configuration shipped and applied with a graceful reload.
//!
//! One sync of a host: observe it, render its configuration (`core::proxy::render`, leaving out
//! the replicas this pass is about to stop), and when the file in the container differs (a new
//! plan, a replica that came or went, a hand edit), upload it beside the one in force, check it
//! with `haproxy -c`, put it in place, send SIGUSR2 (HAProxy's master-worker reload: the old
//! workers finish their connections, new ones take the new listeners) and poll the control
//! listener on the host's loopback until it answers for the new configuration's hash, within a
//! deadline. Never a restart for a configuration change. Syncs of one host take turns (a lock
//! per host), so two steps never ship over each other.
//!
//! The executor calls [`drain`] before it stops a replica of the fleet, [`admit`] after it
//! starts one (`proxy_admit`: the replica is in the configuration, disabled, while it starts,
//! and put into service through the master CLI when the engine's event says it is healthy, no
//! reload on that path), and [`sync_all`] once the pass's steps are done, which waits for the
//! admissions and adds the replicas that became healthy. A drain also waits, up to the
//! replica's stop grace period, until the old workers of earlier configurations have no
//! connection left to the replica (`infra::haproxy_cli`): a request under way through the
//! proxy ends before its replica is stopped. A drain that fails
//! is logged and the stop goes on: the proxy's health checks and retries then cover the gap.
//! It never touches a replica and decides nothing about the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::core::proxy::{ports, render};
use crate::infra::docker::Engine;
use crate::infra::files::HostShell;
use crate::model::proxy::{proxy_spec_hash, ProxySettings, CONTROL_PORT, PROXY_CONFIG_PATH};
use crate::model::spec::DesiredState;

#[path = "proxy_admit.rs"]
mod admit;
pub use admit::admit;

/// How long a reload may take to be answered for by the control listener.
const RELOAD_DEADLINE: Duration = Duration::from_secs(15);
/// How often the control listener is asked while a reload is under way.
const POLL: Duration = Duration::from_millis(20);

/// What the proxy syncs of one pass share.
pub struct ProxyCtx {
    fleet: String,
    desired: DesiredState,
    settings: ProxySettings,
    shells: BTreeMap<String, HostShell>,
    listener_ports: BTreeMap<ports::ServicePort, u16>,
    /// Per host: the replicas (container IDs) this pass stops, left out of every config; the
    /// lock makes one host's syncs take turns.
    hosts: BTreeMap<String, tokio::sync::Mutex<BTreeSet<String>>>,
    /// Per host: the admissions of new replicas under way (`proxy_admit`).
    admitting: std::sync::Mutex<BTreeMap<String, Vec<tokio::task::JoinHandle<()>>>>,
    /// Per host: the model of the configuration last shipped, whose disabled servers an
    /// admission puts into service.
    in_force: std::sync::Mutex<BTreeMap<String, render::ProxyModel>>,
    /// The pass's meshes: one made by a step gets its configuration in that step
    /// (`exec::mesh::ship_new`), not only at the end of the pass.
    meshes: Vec<crate::core::proxy::mesh::Mesh>,
    /// (host, container) of new meshes whose configuration was not seen in force in their
    /// step: the end-of-pass sync probes them even where the text is there.
    unconfirmed: std::sync::Mutex<BTreeSet<(String, String)>>,
}

impl ProxyCtx {
    /// The context of a pass over `desired`; `None` when the fleet has no `proxy:` (nothing
    /// is then done anywhere).
    pub fn new(
        desired: &DesiredState,
        shells: &BTreeMap<String, HostShell>,
        meshes: &[crate::core::proxy::mesh::Mesh],
    ) -> Option<Arc<ProxyCtx>> {
        let settings = desired.settings.proxy.clone()?;
        let listener_ports = match ports::listener_ports(desired) {
            Ok(p) => p,
            Err(e) => {
                // The manifest refuses such a state; kept safe here all the same.
                tracing::warn!(error = %e, "no cross-host listeners this pass");
                BTreeMap::new()
            }
        };
        Some(Arc::new(ProxyCtx {
            fleet: desired.fleet.clone(),
            settings,
            shells: shells.clone(),
            listener_ports,
            hosts: desired
                .hosts
                .keys()
                .map(|h| (h.clone(), tokio::sync::Mutex::new(BTreeSet::new())))
                .collect(),
            desired: desired.clone(),
            admitting: Default::default(),
            in_force: Default::default(),
            meshes: meshes.to_vec(),
            unconfirmed: Default::default(),
        }))
    }

    /// Records a new mesh whose configuration its step did not see in force.
    pub fn mesh_unconfirmed(&self, host: &str, name: &str) {
        self.unconfirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((host.to_string(), name.to_string()));
    }

    /// The new meshes recorded by [`ProxyCtx::mesh_unconfirmed`].
    pub fn unconfirmed_meshes(&self) -> BTreeSet<(String, String)> {
        self.unconfirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The pass's mesh whose container is `name` on `host`, with the host's shell; `None` for
    /// any other container.
    pub fn mesh(
        &self,
        host: &str,
        name: &str,
    ) -> Option<(&crate::core::proxy::mesh::Mesh, &HostShell)> {
        let m = self
            .meshes
            .iter()
            .find(|m| m.host == host && m.container == name)?;
        Some((m, self.shells.get(host)?))
    }
}

impl std::fmt::Debug for ProxyCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCtx")
            .field("fleet", &self.fleet)
            .field("image", &self.settings.image)
            .finish_non_exhaustive()
    }
}

/// Why a sync did not apply.
#[derive(Debug, thiserror::Error)]
#[error("proxy on host `{host}`: {message}")]
pub struct ProxyError {
    pub host: String,
    pub message: String,
}

/// Takes replica `id` out of its host's proxy before it is stopped: the new configuration is
/// in force (the reload answered) when this returns, and the connections the old workers
/// still had to it have ended, or `grace_secs` (its stop grace period, 10 s when unset) went
/// by. Never fails; a failure is logged and the stop goes on.
pub async fn drain(ctx: &ProxyCtx, engine: &Engine, id: &str, grace_secs: Option<i64>) {
    // Read before the reload: the replica's addresses are what the old workers' servers name.
    let addresses = match engine.container_addresses(id).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(host = %engine.host(), container = id, error = %e, "no addresses to drain");
            Vec::new()
        }
    };
    if let Err(e) = sync_host(ctx, engine, Some(id)).await {
        tracing::warn!(host = %engine.host(), container = id, error = %e, "could not take the replica out of the proxy first; stopping anyway");
        return;
    }
    if addresses.is_empty() {
        return;
    }
    let budget = Duration::from_secs(
        grace_secs
            .unwrap_or(DEFAULT_GRACE_SECS)
            .clamp(0, render::HARD_STOP_AFTER_SECS as i64) as u64,
    );
    wait_old_connections(ctx, engine.host(), id, &addresses, budget).await;
}

/// Docker's stop grace period when a service sets none.
const DEFAULT_GRACE_SECS: i64 = 10;
/// How often the old workers are asked while connections to a leaving replica remain.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// How long the master CLI may fail to answer (a reload re-executes the master) before a drain
/// stops waiting for it.
const MASTER_CLI_PATIENCE: Duration = Duration::from_secs(3);

/// Waits until the proxy's old workers have no connection left to `addresses`, within
/// `budget`: a request under way through a worker of the configuration before the drain ends
/// before the replica is stopped.
async fn wait_old_connections(
    ctx: &ProxyCtx,
    host: &str,
    id: &str,
    addresses: &[String],
    budget: Duration,
) {
    let shell = ctx.shells.get(host).cloned().unwrap_or(HostShell::Local);
    let started = tokio::time::Instant::now();
    let deadline = started + budget;
    let mut failing_since = None;
    loop {
        match crate::infra::haproxy_cli::old_connections(&shell, addresses).await {
            Ok(0) => {
                if started.elapsed() >= DRAIN_POLL {
                    tracing::info!(
                        host,
                        container = id,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "connections through the proxy's old workers ended"
                    );
                }
                return;
            }
            Ok(n) if tokio::time::Instant::now() >= deadline => {
                tracing::info!(host, container = id, connections = n, budget_s = budget.as_secs(), "connections through the proxy's old workers remain after the grace period; stopping anyway");
                return;
            }
            Ok(_) => failing_since = None,
            // The master re-executes itself on a reload and listens again a moment later:
            // asked again for a short while, then the stop goes on.
            Err(e) => {
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= MASTER_CLI_PATIENCE || tokio::time::Instant::now() >= deadline
                {
                    tracing::warn!(host, container = id, error = %e, "cannot ask the proxy's master which connections remain; stopping now");
                    return;
                }
            }
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Syncs every host's proxy (after the pass's steps): the errors, one per host that failed.
pub async fn sync_all(ctx: &ProxyCtx, engines: &BTreeMap<String, Engine>) -> Vec<ProxyError> {
    let syncs = engines
        .values()
        .filter(|e| ctx.hosts.contains_key(e.host()))
        .map(|e| sync_host(ctx, e, None));
    futures_util::future::join_all(syncs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// Brings one host's proxy to the configuration of its current replicas, without `leaving`
/// (and the replicas left out before in this pass).
pub async fn sync_host(
    ctx: &ProxyCtx,
    engine: &Engine,
    leaving: Option<&str>,
) -> Result<(), ProxyError> {
    let host = engine.host().to_string();
    let fail = |message: String| ProxyError {
        host: host.clone(),
        message,
    };
    let Some(lock) = ctx.hosts.get(&host) else {
        return Ok(());
    };
    // New replicas are admitted by their own tasks: the pass's sync comes after them.
    let admitting = admit::in_admission();
    if leaving.is_none() && !admitting {
        admit::settle(ctx, &host).await;
    }
    let mut left_out = lock.lock().await;
    if let Some(id) = leaving {
        left_out.insert(id.to_string());
    }
    let mut snap = engine
        .observe(&ctx.fleet, &BTreeMap::new())
        .await
        .map_err(|e| fail(e.to_string()))?;
    // After the steps, a replica still starting is added once healthy: wait for it (bounded by
    // the latest its healthcheck can pass), so the pass ends with it in the proxy. The ones
    // this pass started had their admissions (awaited above); this covers the others.
    if leaving.is_none() && !admitting {
        let deadline = tokio::time::Instant::now() + starting_budget(ctx, &snap);
        while still_starting(ctx, &snap) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(STARTING_POLL).await;
            snap = engine
                .observe(&ctx.fleet, &BTreeMap::new())
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
    }
    let model = render::model(&ctx.desired, &host, &snap, &left_out, &ctx.listener_ports);
    let text = render::render(&model);
    let hash = render::hash_of(&text).unwrap_or_default().to_string();
    ctx.in_force
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(host.clone(), model);
    let want = proxy_spec_hash(&ctx.settings.image);
    // The container itself: made, kept, or replaced start-first (`proxy_replace`).
    let made = super::proxy_replace::ensure(
        &super::proxy_replace::HostProxy {
            fleet: &ctx.fleet,
            image: &ctx.settings.image,
            want: &want,
            shell: ctx.shells.get(&host).cloned().unwrap_or(HostShell::Local),
            text: &text,
            hash: &hash,
        },
        engine,
        snap.proxy.as_deref(),
    )
    .await
    .map_err(fail)?;
    let current = match made {
        super::proxy_replace::Ensured::Made => return Ok(()),
        super::proxy_replace::Ensured::Keep(p) => p,
    };
    let id = current.id.clone();
    let running = current.running;
    let shipped = engine
        .download_file(&id, PROXY_CONFIG_PATH)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if shipped.as_deref() == Some(text.as_bytes()) && running {
        return Ok(());
    }
    if !running {
        engine
            .upload_file(&id, PROXY_CONFIG_PATH, text.as_bytes())
            .await
            .map_err(|e| fail(e.to_string()))?;
        engine
            .start(&id, crate::model::proxy::PROXY_CONTAINER)
            .await
            .map_err(|e| fail(e.to_string()))?;
        return wait_applied(ctx, &host, &hash).await.map_err(fail);
    }
    // Checked beside the one in force, so a configuration HAProxy refuses never replaces it.
    let candidate = format!("{PROXY_CONFIG_PATH}.new");
    engine
        .upload_file(&id, &candidate, text.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let check = engine
        .exec_output(&id, &["haproxy", "-c", "-q", "-f", &candidate])
        .await
        .map_err(|e| fail(e.to_string()))?;
    if check.exit_code != Some(0) {
        return Err(fail(format!(
            "haproxy refused the new configuration: {}",
            check.output.trim()
        )));
    }
    engine
        .upload_file(&id, PROXY_CONFIG_PATH, text.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    engine
        .signal(&id, "SIGUSR2")
        .await
        .map_err(|e| fail(e.to_string()))?;
    let started = tokio::time::Instant::now();
    wait_applied(ctx, &host, &hash).await.map_err(fail)?;
    tracing::info!(host = %host, hash = %hash, reload_ms = started.elapsed().as_millis() as u64, edited = shipped.is_some(), "proxy reloaded");
    Ok(())
}

/// How often a host is observed again while replicas of proxied services start.
const STARTING_POLL: Duration = Duration::from_millis(250);
/// The longest a sync waits for starting replicas.
const STARTING_CAP: Duration = Duration::from_secs(120);

/// Whether a replica of a service the proxy carries is still starting (health `starting`).
fn still_starting(ctx: &ProxyCtx, snap: &crate::model::observed::HostSnapshot) -> bool {
    snap.containers.values().any(|c| {
        c.state == crate::model::observed::RunState::Running
            && c.health == Some(crate::model::observed::Health::Starting)
            && ctx
                .desired
                .stacks
                .get(&c.stack)
                .and_then(|s| s.services.get(&c.service))
                .is_some_and(|s| !s.declared_tcp_ports().is_empty())
    })
}

/// The longest the starting replicas' healthchecks can take, capped.
fn starting_budget(ctx: &ProxyCtx, snap: &crate::model::observed::HostSnapshot) -> Duration {
    let ms = snap
        .containers
        .values()
        .filter_map(|c| ctx.desired.stacks.get(&c.stack)?.services.get(&c.service))
        .filter_map(|s| s.container.healthcheck.as_ref())
        .map(|h| h.latest_healthy_ms())
        .max()
        .unwrap_or(0);
    Duration::from_millis(ms).min(STARTING_CAP)
}

/// Polls the host's control listener until it answers for `hash`, within the deadline.
async fn wait_applied(ctx: &ProxyCtx, host: &str, hash: &str) -> Result<(), String> {
    let shell = ctx.shells.get(host).cloned().unwrap_or(HostShell::Local);
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), CONTROL_PORT);
    let path = format!("/convoy/{hash}");
    let deadline = tokio::time::Instant::now() + RELOAD_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let answer =
            crate::infra::probe::status_at(&shell, target, &path, left.min(Duration::from_secs(2)))
                .await;
        if answer == Ok(200) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the proxy did not answer for configuration {hash} within {}s (last: {answer:?})",
                RELOAD_DEADLINE.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
