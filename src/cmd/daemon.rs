//! `convoy daemon`: sets up the daemon's connections and signals and runs it until SIGTERM.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use super::Outcome;
use crate::daemon::{Daemon, DaemonOptions};
use crate::infra::fleet::ConnectOptions;
use crate::infra::source::WorkDir;

pub async fn run(
    repo: &Path,
    resync_secs: u64,
    heartbeat_ms: u64,
    state_dir: &Path,
) -> Result<Outcome> {
    // Registered before anything slow (the first connect): a SIGTERM that arrives early is
    // then a clean shutdown, not the default action that kills the process.
    let shutdown = shutdown_signal()?;
    let source = WorkDir::new(repo)
        .with_context(|| format!("cannot read the fleet repository `{}`", repo.display()))?;
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
    };
    let daemon = Daemon::new(Box::new(source), opts)?;
    daemon.run(shutdown).await;
    Ok(Outcome::Stopped)
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
