//! The fleet's hosts at run time: one connection per host, and observation of all of them in
//! parallel.
//!
//! A local `unix://` host is its socket; an `ssh://` host is one multiplexed SSH master with a
//! forward of its Docker socket (`ssh`), opened once and used by every call of the process.
//! Connecting retries transient failures with exponential backoff and jitter inside a time
//! budget (zero for one-shot commands: one attempt bounded by `connect_timeout`), and never
//! retries what cannot heal by waiting (a changed host key, a refused key): failures stay typed
//! (`ConnectError::is_final`) so that the daemon can park such a host instead of retrying it
//! like a timeout. A host that cannot be connected to or observed becomes
//! `ObservedHost::Unreachable` with the reason; it never fails or delays the others beyond its
//! own timeout ("a failing host never blocks the others"). This module decides nothing about
//! what should run: it reports what is.
//!
//! A `Fleet` closes its SSH masters when dropped (synchronously, through the transport's
//! control folder) if `close` was not awaited: connections close on every path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tracing::Instrument;

use crate::infra::docker::Engine;
use crate::infra::ssh::{SshError, SshTimeouts, SshTransport, SshTunnel};
use crate::model::observed::{ObservedHost, ObservedState};
use crate::model::spec::{DesiredState, FleetSettings, HostAddress, HostSpec};

/// Hosts connected or observed at once.
const HOST_CONCURRENCY: usize = 16;

/// How connections are made.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Where per-process SSH control sockets live (under `c/<pid>`).
    pub state_dir: PathBuf,
    pub ssh: SshTimeouts,
    /// Total time to keep retrying a host whose failures may be transient.
    pub budget: Duration,
    /// How long one host may take to answer an observation.
    pub observe_timeout: Duration,
    /// How long the first ping through a new connection may take.
    pub ping_timeout: Duration,
}

/// Why a host could not be connected, and whether waiting can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectError {
    pub reason: String,
    /// Waiting will not help (a changed host key, a refused key, a wrong socket): retrying
    /// soon only repeats the failure.
    pub is_final: bool,
}

impl ConnectError {
    pub fn transient(reason: impl Into<String>) -> ConnectError {
        ConnectError {
            reason: reason.into(),
            is_final: false,
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl ConnectOptions {
    /// A one-shot command's connections: one attempt per host, bounded by `connect_timeout`.
    pub fn for_command(state_dir: &Path, settings: &FleetSettings) -> ConnectOptions {
        let timeout = Duration::from_secs(settings.connect_timeout_secs.max(1));
        let mut opts = ConnectOptions::new(state_dir);
        opts.ssh.connect = timeout;
        opts.ping_timeout = timeout;
        opts.budget = Duration::ZERO;
        opts
    }

    pub fn new(state_dir: &Path) -> ConnectOptions {
        ConnectOptions {
            state_dir: state_dir.to_path_buf(),
            ssh: SshTimeouts {
                connect: Duration::from_secs(5),
                ..SshTimeouts::default()
            },
            budget: Duration::from_secs(8),
            observe_timeout: Duration::from_secs(20),
            ping_timeout: Duration::from_secs(5),
        }
    }
}

/// Connected engines by host name, and the reason for each host that could not be connected.
pub struct Fleet {
    pub engines: BTreeMap<String, Engine>,
    pub failed: BTreeMap<String, ConnectError>,
    tunnels: BTreeMap<String, SshTunnel>,
    transport: Option<Arc<SshTransport>>,
    observe_timeout: Duration,
}

impl Fleet {
    /// A fleet with no connections (a daemon whose repository does not validate yet).
    pub fn empty() -> Fleet {
        Fleet {
            engines: BTreeMap::new(),
            failed: BTreeMap::new(),
            tunnels: BTreeMap::new(),
            transport: None,
            observe_timeout: Duration::from_secs(20),
        }
    }

    /// Connects to every host of `desired`, at most `HOST_CONCURRENCY` at once.
    pub async fn connect(desired: &DesiredState, opts: &ConnectOptions) -> Fleet {
        let mut fleet = Fleet {
            engines: BTreeMap::new(),
            failed: BTreeMap::new(),
            tunnels: BTreeMap::new(),
            transport: None,
            observe_timeout: opts.observe_timeout,
        };
        if needs_ssh(desired) {
            match SshTransport::new(&opts.state_dir) {
                Ok(t) => fleet.transport = Some(Arc::new(t)),
                Err(e) => {
                    // Without a control folder no ssh host can be reached; local ones still can.
                    for h in desired.hosts.values() {
                        if matches!(h.address, HostAddress::Ssh { .. }) {
                            fleet.failed.insert(
                                h.name.clone(),
                                ConnectError {
                                    reason: e.to_string(),
                                    is_final: true,
                                },
                            );
                        }
                    }
                }
            }
        }
        let transport = fleet.transport.clone();
        let hosts: Vec<&HostSpec> = desired
            .hosts
            .values()
            .filter(|h| !fleet.failed.contains_key(&h.name))
            .collect();
        let results: Vec<_> = futures_util::stream::iter(hosts.into_iter().map(|h| {
            let transport = transport.clone();
            let span = tracing::info_span!("connect", host = %h.name);
            async move {
                (
                    h.name.clone(),
                    connect_host(h, transport.as_deref(), opts).await,
                )
            }
            .instrument(span)
        }))
        .buffer_unordered(HOST_CONCURRENCY)
        .collect()
        .await;
        for (name, result) in results {
            match result {
                Ok(conn) => {
                    fleet.engines.insert(name.clone(), conn.engine);
                    if let Some(t) = conn.tunnel {
                        fleet.tunnels.insert(name, t);
                    }
                }
                Err(e) => {
                    tracing::warn!(host = %name, reason = %e.reason, is_final = e.is_final, "host unreachable");
                    fleet.failed.insert(name, e);
                }
            }
        }
        fleet
    }

    /// Observes every connected host in parallel.
    pub async fn observe(&self, desired: &DesiredState) -> ObservedState {
        // The image each service wants: a host reports the current ID of the images its
        // containers should run, so a tag that moved shows as drift.
        let images: BTreeMap<(String, String), String> = desired
            .stacks
            .iter()
            .flat_map(|(st, stack)| {
                stack
                    .services
                    .iter()
                    .map(move |(sv, svc)| ((st.clone(), sv.clone()), svc.container.image.clone()))
            })
            .collect();
        let images = &images;
        // What the hosts hold of the files the desired state needs, beside the engines' answer:
        // one round trip per host, none when it needs none.
        let shells = self.shells(desired);
        let files = crate::infra::files::check(&shells, desired);
        let engines = futures_util::stream::iter(self.engines.iter().map(|(name, engine)| {
            async move {
                let started = Instant::now();
                let r = tokio::time::timeout(self.observe_timeout, engine.observe_with_adopted(desired, name, images))
                    .await;
                tracing::debug!(host = %name, elapsed_ms = started.elapsed().as_millis() as u64, "observed");
                (name.clone(), r)
            }
        }))
        .buffer_unordered(HOST_CONCURRENCY)
        .collect::<Vec<_>>();
        let (results, files) = tokio::join!(engines, files);
        let mut state = ObservedState::default();
        for (name, r) in results {
            let host = match r {
                Ok(Ok(snap)) => ObservedHost::Reachable(snap),
                Ok(Err(e)) => ObservedHost::Unreachable {
                    reason: e.to_string(),
                },
                Err(_) => ObservedHost::Unreachable {
                    reason: format!("no answer within {:?}", self.observe_timeout),
                },
            };
            state.hosts.insert(name, host);
        }
        crate::infra::files::apply_seen(&mut state, files);
        for (name, e) in &self.failed {
            state.hosts.insert(
                name.clone(),
                ObservedHost::Unreachable {
                    reason: e.reason.clone(),
                },
            );
        }
        state
    }

    /// A shell on each connected host, for the files it needs (`infra::files`): through the
    /// host's ssh master, or the local `sh` for a `unix://` host.
    pub fn shells(
        &self,
        desired: &DesiredState,
    ) -> BTreeMap<String, crate::infra::files::HostShell> {
        self.engines
            .keys()
            .filter_map(|h| {
                let shell = match self.tunnels.get(h) {
                    Some(t) => crate::infra::files::HostShell::Ssh(t.shell_target()),
                    None => match desired.hosts.get(h).map(|s| &s.address) {
                        Some(HostAddress::Unix { .. }) => crate::infra::files::HostShell::Local,
                        _ => return None,
                    },
                };
                Some((h.clone(), shell))
            })
            .collect()
    }

    /// A handle that connects single hosts without borrowing the fleet, so that the daemon
    /// can reconnect lost hosts in the background while passes go on.
    pub fn connector(&mut self, desired: &DesiredState, opts: &ConnectOptions) -> Connector {
        if needs_ssh(desired) && self.transport.is_none() {
            match SshTransport::new(&opts.state_dir) {
                Ok(t) => self.transport = Some(Arc::new(t)),
                // Each ssh host's connect then fails with "no ssh transport"; say why once.
                Err(e) => tracing::warn!(error = %e, "ssh hosts cannot be reached"),
            }
        }
        Connector {
            transport: self.transport.clone(),
            // One attempt per call: the caller paces retries with its own backoff.
            opts: ConnectOptions {
                budget: Duration::ZERO,
                ..opts.clone()
            },
        }
    }

    /// Takes a connection made by a `Connector` into the fleet.
    pub fn adopt(&mut self, host: &str, conn: Connection) {
        self.failed.remove(host);
        self.engines.insert(host.to_string(), conn.engine);
        if let Some(t) = conn.tunnel {
            self.tunnels.insert(host.to_string(), t);
        }
    }

    /// Forgets a host's connection (closing its SSH master): it failed, and the next
    /// `reconnect` opens a new one.
    pub async fn disconnect(&mut self, host: &str, reason: &str) {
        self.engines.remove(host);
        if let Some(t) = self.tunnels.remove(host) {
            t.close().await;
        }
        self.failed
            .insert(host.to_string(), ConnectError::transient(reason));
    }

    /// Drops hosts that left the fleet file and notes new ones as not yet connected.
    pub async fn align(&mut self, desired: &DesiredState) {
        let gone: Vec<String> = self
            .engines
            .keys()
            .chain(self.failed.keys())
            .filter(|h| !desired.hosts.contains_key(*h))
            .cloned()
            .collect();
        for h in gone {
            self.engines.remove(&h);
            self.failed.remove(&h);
            if let Some(t) = self.tunnels.remove(&h) {
                t.close().await;
            }
        }
        for h in desired.hosts.keys() {
            if !self.engines.contains_key(h) && !self.failed.contains_key(h) {
                self.failed
                    .insert(h.clone(), ConnectError::transient("not connected yet"));
            }
        }
    }

    /// One timed liveness probe of a connected host: for SSH hosts the master and a ping
    /// through the forward (the master alone says Ok while the network is dead).
    pub async fn probe(&self, host: &str) -> Result<Duration, String> {
        let started = Instant::now();
        if let Some(t) = self.tunnels.get(host) {
            t.check().await.map_err(|e| e.to_string())?;
        } else if let Some(e) = self.engines.get(host) {
            tokio::time::timeout(Duration::from_secs(3), e.ping())
                .await
                .map_err(|_| format!("host `{host}` did not answer a ping within 3s"))?
                .map_err(|e| e.to_string())?;
        } else {
            return Err(format!("host `{host}` is not connected"));
        }
        Ok(started.elapsed())
    }

    /// Closes every SSH master and the process's control folder. Masters run as their own
    /// processes and would outlive Convoy otherwise.
    pub async fn close(mut self) {
        let tunnels = std::mem::take(&mut self.tunnels);
        futures_util::future::join_all(tunnels.into_values().map(SshTunnel::close)).await;
        if let Some(t) = self.transport.take() {
            t.shutdown();
        }
    }
}

impl Drop for Fleet {
    /// The guard behind "connections close on every path": a fleet dropped without `close`
    /// (an early return, an error, a panic) still closes its masters, synchronously.
    fn drop(&mut self) {
        if let Some(t) = self.transport.take() {
            if !self.tunnels.is_empty() {
                tracing::debug!(
                    masters = self.tunnels.len(),
                    "fleet dropped without close: closing its ssh masters"
                );
            }
            t.shutdown();
        }
    }
}

fn needs_ssh(desired: &DesiredState) -> bool {
    desired
        .hosts
        .values()
        .any(|h| matches!(h.address, HostAddress::Ssh { .. }))
}

/// One host's connection: its engine, and the SSH master behind it for `ssh://` hosts.
pub struct Connection {
    pub engine: Engine,
    tunnel: Option<SshTunnel>,
}

/// Connects single hosts; see `Fleet::connector`.
#[derive(Clone)]
pub struct Connector {
    transport: Option<Arc<SshTransport>>,
    opts: ConnectOptions,
}

impl Connector {
    pub async fn connect(&self, host: &HostSpec) -> Result<Connection, ConnectError> {
        connect_host(host, self.transport.as_deref(), &self.opts).await
    }
}

/// Connects one host, retrying transient failures with exponential backoff and jitter until
/// the budget is spent.
async fn connect_host(
    host: &HostSpec,
    transport: Option<&SshTransport>,
    opts: &ConnectOptions,
) -> Result<Connection, ConnectError> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let result = match &host.address {
            HostAddress::Unix { path } => connect_unix(host, path, opts.ping_timeout).await,
            HostAddress::Ssh { .. } => match transport {
                Some(t) => connect_ssh(host, t, opts).await,
                None => Err(Failure::Final("no ssh transport".into())),
            },
        };
        match result {
            Ok(c) => return Ok(c),
            Err(Failure::Final(reason)) => {
                return Err(ConnectError {
                    reason,
                    is_final: true,
                })
            }
            Err(Failure::Transient(reason)) => {
                let delay = backoff(attempt);
                if started.elapsed() + delay >= opts.budget {
                    return Err(ConnectError::transient(reason));
                }
                tracing::debug!(host = %host.name, attempt, %reason, delay_ms = delay.as_millis() as u64, "retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

enum Failure {
    /// Waiting will not help: say so at once.
    Final(String),
    Transient(String),
}

/// 200 ms, 400 ms, 800 ms ... capped at 5 s, each with up to 50% jitter so that many
/// Convoy processes (or hosts) do not retry in lockstep.
pub fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(5)).min(5_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base + nanos % (base / 2 + 1))
}

async fn connect_unix(
    host: &HostSpec,
    path: &Path,
    ping_timeout: Duration,
) -> Result<Connection, Failure> {
    let engine = Engine::unix(&host.name, path).map_err(|e| Failure::Final(e.to_string()))?;
    match tokio::time::timeout(ping_timeout, engine.ping()).await {
        Ok(Ok(())) => Ok(Connection {
            engine,
            tunnel: None,
        }),
        Ok(Err(e)) => Err(Failure::Transient(format!(
            "cannot reach the engine at unix://{}: {}",
            path.display(),
            e.message
        ))),
        Err(_) => Err(Failure::Transient(format!(
            "the engine at unix://{} did not answer within {ping_timeout:?}",
            path.display()
        ))),
    }
}

async fn connect_ssh(
    host: &HostSpec,
    transport: &SshTransport,
    opts: &ConnectOptions,
) -> Result<Connection, Failure> {
    let tunnel = transport
        .connect(host, &opts.ssh)
        .await
        .map_err(|e| match e {
            SshError::HostKeyChanged { .. }
            | SshError::UnknownHostKey { .. }
            | SshError::AuthFailed { .. }
            | SshError::EngineNotAnswering { .. }
            | SshError::Other { .. }
            | SshError::Setup { .. } => Failure::Final(e.to_string()),
            _ => Failure::Transient(e.to_string()),
        })?;
    let engine = match Engine::unix(&host.name, tunnel.docker_socket()) {
        Ok(e) => e,
        Err(e) => {
            tunnel.close().await;
            return Err(Failure::Final(e.to_string()));
        }
    };
    match tokio::time::timeout(opts.ping_timeout, engine.ping()).await {
        Ok(Ok(())) => Ok(Connection {
            engine,
            tunnel: Some(tunnel),
        }),
        Ok(Err(e)) => {
            tunnel.close().await;
            Err(Failure::Transient(e.to_string()))
        }
        Err(_) => {
            tunnel.close().await;
            Err(Failure::Transient(format!(
                "the engine of host `{}` did not answer within {:?}",
                host.name, opts.ping_timeout
            )))
        }
    }
}

/// `--state-dir`, else `$XDG_STATE_HOME/convoy`, else `~/.local/state/convoy`.
pub fn default_state_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("convoy");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/convoy")
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff(0);
        assert!(first >= Duration::from_millis(200) && first <= Duration::from_millis(300));
        let third = backoff(2);
        assert!(third >= Duration::from_millis(800) && third <= Duration::from_millis(1200));
        assert!(backoff(30) <= Duration::from_millis(7_500));
    }
}
