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
use crate::api::{self, ApiConfig, Listener};
use crate::cli::DaemonArgs;
use crate::daemon::{ApiRequest, Daemon, DaemonHandle, DaemonOptions};
use crate::infra::fleet::ConnectOptions;
use crate::infra::source::{
    open_follow, redact_userinfo, FollowOptions, Limits, SignaturePolicy, Source,
};
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
    if let Some(file) = &cfg.age_key_file {
        crate::infra::sops_keys::install_from_config(file);
    }
    let state_dir = cfg
        .state_dir
        .clone()
        .unwrap_or_else(crate::infra::fleet::default_state_dir);
    let source = open_followed(&cfg, &state_dir)?;
    if source.is_remote() {
        // The first fetch, so that the fleet to lock is known; a failure leaves it to the
        // daemon's polling (the cache may hold an older commit meanwhile).
        let s = source.clone();
        let fetch = tokio::task::spawn_blocking(move || s.fetch());
        tokio::select! {
            done = fetch => match done? {
                Ok(()) => {}
                Err(e) => tracing::warn!(error = %e, "the first fetch failed; retrying while running"),
            },
            // git is bounded by its own timeout; a stop request does not wait for it.
            _ = &mut shutdown => return Ok(Outcome::Stopped),
        }
    }
    let api = match api_server(&cfg, source.followed_branch()).await {
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
    let repo_dir = notify_repo_dir(&cfg, source.as_ref());
    let mut daemon = Daemon::new(source, opts)?;
    daemon.set_notifications(cfg.notifications.clone(), repo_dir);
    if let Some(history) = super::history::open_for_daemon(&state_dir).await {
        daemon.set_history(history);
    }
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

/// Where `convoy.yaml`'s relative notification paths start: the folder of `convoy.yaml` on this
/// machine (a working directory, or a local repository's work tree); none for a remote.
fn notify_repo_dir(cfg: &DaemonConfig, source: &dyn Source) -> Option<PathBuf> {
    if let Some(dir) = source.local_dir() {
        return Some(dir.to_path_buf());
    }
    let repo = Path::new(&cfg.repo);
    if source.is_remote() || cfg.repo.contains("://") || !repo.is_dir() {
        return None;
    }
    Some(match &cfg.path {
        Some(p) => repo.join(p),
        None => repo.to_path_buf(),
    })
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
    let source = open_follow(&cfg.repo, opts).with_context(|| {
        format!(
            "cannot follow the fleet repository `{}`",
            redact_userinfo(&cfg.repo)
        )
    })?;
    if cfg.require_signed && source.local_dir().is_some() {
        anyhow::bail!(
            "--require-signed needs a branch to follow (working files carry no signature): give --branch, or a bare repository or remote as --repo"
        );
    }
    Ok(Arc::from(source))
}

/// The API's listener, bound before anything else so that an address in use is an error at
/// start (exit 2), not a daemon without its API. `None` with `--listen off`.
async fn api_server(
    cfg: &DaemonConfig,
    branch: Option<String>,
) -> Result<Option<(Listener, ApiConfig)>> {
    let Some(listen) = cfg.listen else {
        return Ok(None);
    };
    let read = |p: &Option<PathBuf>| -> Result<Option<String>> {
        Ok(match p {
            Some(p) => Some(api::read_secret_file(p)?),
            None => None,
        })
    };
    let api_cfg = ApiConfig {
        listen,
        tls: cfg.tls.clone(),
        insecure_listen: cfg.insecure_listen,
        api_token: read(&cfg.api_token_file)?,
        webhook_secret: read(&cfg.webhook_secret_file)?,
        metrics_token: cfg.metrics_token,
        branch: branch.or_else(|| cfg.branch.clone()).unwrap_or_default(),
    };
    // Masked in every line the process writes, though the API never logs them.
    let secrets = [&api_cfg.api_token, &api_cfg.webhook_secret]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    crate::reconcile::register_secrets(&secrets);
    let listener = api::bind(&api_cfg).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = listener.is_tls(), "API listening");
    Ok(Some((listener, api_cfg)))
}

async fn serve_api(api: (Listener, ApiConfig), handle: DaemonHandle, stop: CancellationToken) {
    let (listener, cfg) = api;
    if let Err(e) = api::serve(listener, cfg, handle, stop).await {
        tracing::error!(error = %e, "the API stopped");
    }
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
pub(super) fn fleet_name(source: &dyn Source) -> Option<String> {
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
