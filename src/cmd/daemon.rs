//! `convoy daemon`: sets up the daemon's connections and signals and runs it until SIGTERM.
//!
//! The daemon holds the fleet's lock (`infra::lock`) for its whole life, so a second daemon or
//! an `apply` from the same machine waits for it instead of racing it. The fleet is the one the
//! repository names when the daemon starts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Outcome;
use crate::cli::{DaemonArgs, LockArgs};
use crate::daemon::{Daemon, DaemonOptions};
use crate::infra::fleet::ConnectOptions;
use crate::infra::source::{Source, WorkDir};
use crate::manifest::FLEET_FILE;

pub async fn run(args: DaemonArgs, state_dir: &Path) -> Result<Outcome> {
    let repo = std::path::PathBuf::from(args.repo.as_deref().unwrap_or("."));
    let repo = repo.as_path();
    let resync_secs = args.resync.unwrap_or(30);
    let heartbeat_ms = args.heartbeat_ms.unwrap_or(1000);
    let lock = LockArgs {
        lock_timeout: args.lock_timeout.unwrap_or(60),
    };
    // Registered before anything slow (the lock, the first connect): a SIGTERM that arrives
    // early is then a clean shutdown, not the default action that kills the process.
    let mut shutdown = Box::pin(shutdown_signal()?);
    let source = WorkDir::new(repo)
        .with_context(|| format!("cannot read the fleet repository `{}`", repo.display()))?;
    let locked_fleet = fleet_name(&source);
    let _lock = match &locked_fleet {
        Some(fleet) => {
            let timeout = Duration::from_secs(lock.lock_timeout);
            tokio::select! {
                held = crate::infra::lock::acquire(state_dir, fleet, timeout) => Some(held?),
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
    let mut connect = ConnectOptions::new(state_dir);
    // A daemon must notice a dead link within seconds: short keepalives (1 s x 2 is 2.1 s
    // measured), and an observation that waits for nobody for long.
    connect.ssh.keepalive_interval_secs = 1;
    connect.ssh.keepalive_count = 2;
    connect.observe_timeout = Duration::from_secs(3);
    let opts = DaemonOptions {
        connect,
        resync: Duration::from_secs(resync_secs.max(1)),
        heartbeat: Duration::from_millis(heartbeat_ms.max(100)),
        locked_fleet,
    };
    let daemon = Daemon::new(Box::new(source), opts)?;
    daemon.run(shutdown).await;
    Ok(Outcome::Stopped)
}

/// The fleet the repository names: from a desired state that validates, else from the fleet
/// file's `fleet:` alone (a stack that does not validate yet must not leave the daemon
/// unlocked). Read through the source, so its bounds and repository checks apply.
fn fleet_name(source: &WorkDir) -> Option<String> {
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
