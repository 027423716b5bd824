//! The host's proxy container itself (issue 13): made when there is none, and replaced on a new
//! image START-FIRST where the host allows it, so that the one moment connections could drop
//! does not drop them.
//!
//! HAProxy binds its listeners with SO_REUSEPORT on Linux, so a second proxy in the host's
//! network namespace can hold the same ports as the one in service. A replacement starts the
//! new container beside the old one (under the name the old one does not hold, see
//! `model::proxy::spare_name`), with the configuration of its own spec (the rendered text names
//! the spec, so its hash differs from the old one's), waits until the new one answers for that
//! hash on the shared control port (the kernel spreads connections over both, so an answer for
//! the new hash comes from the new one), then drains the old one (no restart policy, SIGUSR1:
//! HAProxy's soft stop, bounded by the configuration's `hard-stop-after`) and removes it, and
//! names the new one `convoy-proxy`. When the host refuses the second proxy (it exits or
//! restarts: the old image set `noreuseport`, or the ports are taken otherwise; or it does not
//! answer within a deadline), the old way is taken, logged: the old one removed first, then the
//! new one made and started (stop-first, connections through it may drop).
//!
//! A pass interrupted in the middle leaves two proxy containers on the host: the next sync keeps
//! the one `model::proxy::settle` chooses and drains the other. It decides nothing about the
//! configuration (that is `exec::proxy::sync_host`'s) and never touches a replica.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::infra::docker::Engine;
use crate::infra::files::HostShell;
use crate::model::proxy::{
    proxy_command, settle, spare_name, ObservedProxy, ProxySettle, CONTROL_PORT, PROXY_CONFIG_PATH,
    PROXY_CONTAINER,
};

/// How long a new proxy beside the old one may take to answer before the host is taken to
/// refuse it (a bind that fails ends HAProxy within milliseconds).
pub const START_FIRST_DEADLINE: Duration = Duration::from_secs(10);
/// How long a proxy made without one beside it (stop-first) may take to answer.
const FRESH_DEADLINE: Duration = Duration::from_secs(15);
/// How long a drained proxy may keep finishing its connections: HAProxy's own
/// `hard-stop-after` and a margin.
pub const DRAIN_BOUND: Duration =
    Duration::from_secs(crate::core::proxy::render::HARD_STOP_AFTER_SECS + 5);
/// How often the control listener is asked while a new proxy starts.
const POLL: Duration = Duration::from_millis(20);

/// What the sync of one host needs of this module.
pub struct HostProxy<'a> {
    pub fleet: &'a str,
    pub image: &'a str,
    /// `proxy_spec_hash(image)`.
    pub want: &'a str,
    pub shell: HostShell,
    /// The configuration for this host and the hash it answers for.
    pub text: &'a str,
    pub hash: &'a str,
}

/// What [`ensure`] left for the sync to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The proxy of the wanted spec, kept: the sync ships and reloads as usual (or starts it,
    /// when it does not run).
    Keep(ObservedProxy),
    /// A proxy was made and answers for the configuration: nothing more to do.
    Made,
}

/// Brings the host's proxy containers to one of the wanted spec, from the observed one(s).
pub async fn ensure(
    p: &HostProxy<'_>,
    engine: &Engine,
    observed: Option<&ObservedProxy>,
) -> Result<Ensured, String> {
    let host = engine.host();
    let Some(decision) = settle(observed, p.want) else {
        make_fresh(p, engine).await?;
        return Ok(Ensured::Made);
    };
    match decision {
        ProxySettle::Keep {
            keep,
            remove,
            rename,
        } => {
            for other in &remove {
                tracing::info!(host = %host, container = %other.name, "finishing an interrupted proxy replacement: draining the other proxy");
                drain(engine, other).await?;
            }
            if rename {
                engine
                    .rename(&keep.id, &keep.name, PROXY_CONTAINER)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(Ensured::Keep(ObservedProxy {
                name: PROXY_CONTAINER.to_string(),
                ..keep
            }))
        }
        ProxySettle::Create { remove } => {
            for other in &remove {
                engine
                    .remove(&other.id, &other.name, Some(10))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            make_fresh(p, engine).await?;
            Ok(Ensured::Made)
        }
        ProxySettle::StartFirst { old, remove } => {
            for other in &remove {
                drain(engine, other).await?;
            }
            replace(p, engine, &old).await?;
            Ok(Ensured::Made)
        }
    }
}

/// Replaces `old` (running) start-first, or stop-first when the host refuses.
async fn replace(p: &HostProxy<'_>, engine: &Engine, old: &ObservedProxy) -> Result<(), String> {
    let host = engine.host();
    engine
        .ensure_image(p.image, false)
        .await
        .map_err(|e| e.to_string())?;
    let name = spare_name(old);
    let started = tokio::time::Instant::now();
    let refused = match start_beside(p, engine, name).await {
        Ok(id) => {
            drain(engine, old).await?;
            if name != PROXY_CONTAINER {
                engine
                    .rename(&id, name, PROXY_CONTAINER)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tracing::info!(host = %host, image = p.image, hash = p.hash, took_ms = started.elapsed().as_millis() as u64, "proxy replaced start-first (connections drained)");
            return Ok(());
        }
        Err(refused) => refused,
    };
    tracing::warn!(host = %host, image = p.image, reason = %refused, "the host refused a second proxy beside the old one: replacing it stop-first, connections through it may drop");
    engine
        .remove(&old.id, &old.name, Some(10))
        .await
        .map_err(|e| e.to_string())?;
    make_fresh(p, engine).await
}

/// Starts the new proxy as `name` beside the one in service and waits until it answers. On a
/// refusal, the new container is removed again and the reason returned.
async fn start_beside(p: &HostProxy<'_>, engine: &Engine, name: &str) -> Result<String, String> {
    let id = make(p, engine, name).await?;
    match wait_answers(p, engine, &id, START_FIRST_DEADLINE).await {
        Ok(()) => Ok(id),
        Err(reason) => {
            if let Err(e) = engine.remove(&id, name, Some(0)).await {
                tracing::warn!(host = %engine.host(), error = %e, "could not remove the refused new proxy");
            }
            Err(reason)
        }
    }
}

/// Makes and starts `convoy-proxy` with no proxy beside it (stop-first, or the first one).
async fn make_fresh(p: &HostProxy<'_>, engine: &Engine) -> Result<(), String> {
    engine
        .ensure_image(p.image, false)
        .await
        .map_err(|e| e.to_string())?;
    let id = make(p, engine, PROXY_CONTAINER).await?;
    tracing::info!(host = %engine.host(), hash = p.hash, "proxy started");
    wait_answers(p, engine, &id, FRESH_DEADLINE).await
}

/// Creates the proxy container `name`, uploads its configuration and starts it.
async fn make(p: &HostProxy<'_>, engine: &Engine, name: &str) -> Result<String, String> {
    let id = engine
        .create_proxy(name, p.fleet, p.image, proxy_command(), p.want)
        .await
        .map_err(|e| e.to_string())?;
    engine
        .upload_file(&id, PROXY_CONFIG_PATH, p.text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    engine.start(&id, name).await.map_err(|e| e.to_string())?;
    Ok(id)
}

/// Drains and removes one proxy container (a running one finishes its connections).
async fn drain(engine: &Engine, p: &ObservedProxy) -> Result<(), String> {
    engine
        .drain_proxy(&p.id, &p.name, DRAIN_BOUND)
        .await
        .map_err(|e| e.to_string())
}

/// Polls the control listener until it answers for `p.hash`, within `deadline`; fails early
/// when container `id` stopped or was restarted (it could not bind).
async fn wait_answers(
    p: &HostProxy<'_>,
    engine: &Engine,
    id: &str,
    deadline: Duration,
) -> Result<(), String> {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), CONTROL_PORT);
    let path = format!("/convoy/{}", p.hash);
    let until = tokio::time::Instant::now() + deadline;
    let mut asked = 0u32;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let answer = crate::infra::probe::status_at(
            &p.shell,
            target,
            &path,
            left.min(Duration::from_secs(2)),
        )
        .await;
        if answer == Ok(200) {
            return Ok(());
        }
        // The engine is asked less often than the listener: every 10th poll.
        if asked % 10 == 0 {
            match engine.proxy_state(id).await.map_err(|e| e.to_string())? {
                Some(s) if s.running && s.restarts == 0 => {}
                Some(s) => {
                    return Err(format!(
                        "the new proxy exited (restarted {} time(s)): it could not bind beside the old one",
                        s.restarts
                    ))
                }
                None => return Err("the new proxy is gone".into()),
            }
        }
        asked += 1;
        if tokio::time::Instant::now() >= until {
            return Err(format!(
                "the new proxy did not answer for configuration {} within {}s (last: {answer:?})",
                p.hash,
                deadline.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
