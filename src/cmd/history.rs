//! `convoy history`: the deploy history of the state directory, newest first, read straight
//! from its SQLite file (no daemon needed), as text or the versioned JSON document; and the
//! one-shot commands' side of writing it (`open_for_daemon`, `record`).
//!
//! Writing history never changes a command's outcome: every failure there is a warning, and
//! the blocking work (git2 for the commit's author, SQLite) runs on a blocking thread.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::{emit, emit_line, style, Outcome};
use crate::cli::{HistoryArgs, Output};
use crate::infra::history::History;
use crate::infra::source::Source;
use crate::model::history::HistoryEntry;
use crate::render::history::{history_json, history_text};

pub async fn run(args: &HistoryArgs, state_dir: &Path) -> Result<Outcome> {
    let dir = state_dir.to_path_buf();
    let (limit, fleet, stack) = (args.limit as usize, args.fleet.clone(), args.stack.clone());
    let read = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::infra::history::HistoryError>(match History::open_read_only(&dir)? {
            Some(h) => h.entries(limit, fleet.as_deref(), stack.as_deref())?,
            None => Vec::new(),
        })
    })
    .await?;
    let entries = match read {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "error: {e}\n(the daemon or the next `convoy apply` replaces an unreadable history with an empty one)"
            );
            return Ok(Outcome::Unavailable);
        }
    };
    match args.output {
        Output::Text => emit(&history_text(&entries, style())),
        Output::Json => emit_line(&history_json(&entries)),
    }
    Ok(Outcome::Listed)
}

/// The daemon's history (created when missing, replaced when corrupt); `None`, with a
/// warning, when the state directory cannot hold one: the daemon runs without it.
pub async fn open_for_daemon(state_dir: &Path) -> Option<Arc<History>> {
    let dir = state_dir.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        History::open(&dir, crate::model::history::DEFAULT_HISTORY_LIMIT)
    })
    .await;
    match opened {
        Ok(Ok(h)) => Some(Arc::new(h)),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no deploy history: cannot open it; convergence goes on");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "no deploy history: the open failed");
            None
        }
    }
}

/// Stores a one-shot command's `entry` (with the commit's author and message from `source`,
/// masked), keeping `limit` entries of its fleet. Failures are warnings.
pub async fn record(state_dir: &Path, limit: u32, entry: HistoryEntry, source: Box<dyn Source>) {
    record_all(state_dir, limit, vec![entry], source).await
}

/// `record` for several entries, stored in their order.
pub async fn record_all(
    state_dir: &Path,
    limit: u32,
    entries: Vec<HistoryEntry>,
    source: Box<dyn Source>,
) {
    let dir = state_dir.to_path_buf();
    let done = tokio::task::spawn_blocking(move || {
        let history = History::open(&dir, limit)?;
        let mut last = 0;
        for mut entry in entries {
            if let Some(meta) = source.commit_meta(&entry.commit) {
                entry.set_meta(meta);
            }
            entry.mask(&crate::reconcile::known_secrets());
            last = history.record(&entry)?;
        }
        Ok::<_, crate::infra::history::HistoryError>(last)
    })
    .await;
    match done {
        Ok(Ok(id)) => tracing::debug!(id, "history recorded"),
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot record the pass in the history"),
        Err(e) => tracing::warn!(error = %e, "cannot record the pass in the history"),
    }
}
