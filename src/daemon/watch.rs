//! The daemon's triggers: file changes in the repository, ref changes of a followed local
//! repository, and per host an engine event stream with a heartbeat.
//!
//! Watchers only report; they never plan or act. A host watcher ends when its events stream
//! ends or a heartbeat ping fails or times out, and says so (`Lost`): the SSH master's own
//! check is not enough, it answers Ok while the network is dead. It also ends, silently, when
//! its cancellation token is cancelled (shutdown).

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use tokio_util::sync::CancellationToken;

use crate::infra::docker::{Engine, EngineEvent};
use crate::infra::fleet::{ConnectError, Connection};

/// Why the loop should wake.
pub enum Trigger {
    /// Files of the repository changed: each path relative to the root, and whether it was
    /// created or removed (not only modified).
    Files { changes: Vec<(String, bool)> },
    /// A ref of the followed local repository changed (a push into it).
    Refs,
    /// A fetch of the remote ended.
    Fetched { result: Result<(), String> },
    /// The host answered a heartbeat.
    Contact { host: String },
    /// An engine event about one of the fleet's containers.
    Event { host: String, event: EngineEvent },
    /// The host's connection failed.
    Lost { host: String, reason: String },
    /// A background (re)connection finished.
    Connected {
        host: String,
        result: Result<Box<Connection>, ConnectError>,
    },
}

/// Watches the repository directory (recursively, `.git` aside) and sends `Files` with what
/// changed; the daemon decides whether it concerns the manifests. The returned watcher must be
/// kept alive.
pub fn watch_files(
    dir: &Path,
    tx: UnboundedSender<Trigger>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    // Events carry the watched path as given: a canonical root makes them comparable.
    let root = dir.canonicalize()?;
    let base = root.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        let created_or_removed = event.kind.is_create() || event.kind.is_remove();
        if !(event.kind.is_modify() || created_or_removed) {
            return;
        }
        // A rename shows as a modify of both names: treat it as the two names coming and going.
        let renamed = matches!(
            event.kind,
            notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
        );
        let changes: Vec<(String, bool)> = event
            .paths
            .iter()
            .filter_map(|p| p.strip_prefix(&base).ok())
            .filter(|rel| !rel.components().any(|c| c.as_os_str() == ".git"))
            .map(|rel| {
                (
                    rel.to_string_lossy().into_owned(),
                    created_or_removed || renamed,
                )
            })
            .collect();
        if !changes.is_empty() {
            let _ = tx.send(Trigger::Files { changes });
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Watches a git directory for ref updates (`refs/`, `packed-refs`, `HEAD`) and sends `Refs`:
/// a `git push` into a bare repository on this machine starts a pass at once, with nothing
/// else running. Object writes and lock files are not changes of a ref. The returned watcher
/// must be kept alive.
pub fn watch_refs(
    git_dir: &Path,
    tx: UnboundedSender<Trigger>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let root = git_dir.canonicalize()?;
    let base = root.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if !(event.kind.is_modify() || event.kind.is_create() || event.kind.is_remove()) {
            return;
        }
        let is_ref = event.paths.iter().any(|p| {
            let Ok(rel) = p.strip_prefix(&base) else {
                return false;
            };
            let name = rel.to_string_lossy();
            !name.ends_with(".lock")
                && (name.starts_with("refs/") || name == "packed-refs" || name == "HEAD")
        });
        if is_ref {
            let _ = tx.send(Trigger::Refs);
        }
    })?;
    watcher.watch(&root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Whose containers' events a host watcher follows: the fleet's, and the Compose projects
/// adopted on that host.
pub struct Owned {
    pub fleet: String,
    pub adopted: Vec<String>,
}

/// Follows one host: the events of its fleet's containers and of the Compose projects adopted
/// on it, and a ping every `heartbeat`. Ends with `Lost`.
pub async fn watch_host(
    host: String,
    engine: Engine,
    owned: Owned,
    since: Option<i64>,
    heartbeat: Duration,
    tx: UnboundedSender<Trigger>,
    cancel: CancellationToken,
) {
    let events = engine.events(&owned.fleet, &owned.adopted, since);
    tokio::pin!(events);
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            item = events.next() => match item {
                Some(Ok(event)) => {
                    if tx.send(Trigger::Event { host: host.clone(), event }).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the engine's event stream ended".to_string(),
            },
            _ = tick.tick() => {
                // A ping through the forward: fails fast when the master is gone, and times
                // out when the network is silently dead.
                match tokio::time::timeout(heartbeat.max(Duration::from_secs(1)) * 2, engine.ping()).await {
                    Ok(Ok(())) => {
                        if tx.send(Trigger::Contact { host: host.clone() }).is_err() {
                            return;
                        }
                    }
                    Ok(Err(e)) => break e.to_string(),
                    Err(_) => break format!("no answer to a ping within {:?}", heartbeat.max(Duration::from_secs(1)) * 2),
                }
            }
        }
    };
    let _ = tx.send(Trigger::Lost { host, reason });
}
