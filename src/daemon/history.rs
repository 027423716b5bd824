//! The daemon's side of the deploy history: one writer task that stores, in order and off the
//! async threads, the entry of each pass that changed something and of each commit held back,
//! and the reader the API serves `GET /api/v1/history` from.
//!
//! History never stops convergence: the pass only queues its entry (a channel send), the
//! writer's failures are warnings, and an unreadable database was already replaced by
//! `infra::history` when it was opened. Commit authors and messages are read here (git2, in
//! the blocking thread) and every text is masked with the process's known secrets before it is
//! stored. It decides nothing about passes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::infra::history::History;
use crate::infra::source::Source;
use crate::model::history::HistoryEntry;

/// An entry to store, with the limit of the commit in force.
pub(super) struct Record {
    pub entry: HistoryEntry,
    pub limit: u32,
    pub dedup: Dedup,
}

/// When an entry is not stored because the fleet's newest entry already says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dedup {
    /// A pass that acted, failed or rolled back: always stored.
    Never,
    /// A held commit: not again while the newest entry holds the same commit for the same
    /// reason (a restart reads the held commit anew, and every pass under a quarantine is held).
    SameHold,
    /// A pass that found nothing to do: stored only as the first of its commit, so a revert
    /// to what already runs still shows in the history.
    SameCommit,
}

/// How many of the fleet's newest entries say whether a commit is recorded already.
const RECENT: usize = 50;

/// The sending end the daemon queues entries on; dropping it lets the writer finish.
pub(super) type Writer = mpsc::UnboundedSender<Record>;

/// Starts the writer: it stores what is queued, in order, until every sender is dropped.
pub(super) fn spawn_writer(
    tasks: &mut JoinSet<()>,
    history: Arc<History>,
    source: Arc<dyn Source>,
) -> Writer {
    let (tx, mut rx) = mpsc::unbounded_channel::<Record>();
    tasks.spawn(async move {
        while let Some(record) = rx.recv().await {
            let (history, source) = (history.clone(), source.clone());
            let done =
                tokio::task::spawn_blocking(move || store(&history, source.as_ref(), record)).await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "the history writer failed");
            }
        }
    });
    tx
}

/// Blocking: completes the entry (author, message, masking) and stores it.
fn store(history: &History, source: &dyn Source, record: Record) {
    let Record {
        mut entry,
        limit,
        dedup,
    } = record;
    let said = match dedup {
        Dedup::Never => false,
        Dedup::SameHold => history
            .latest(&entry.fleet)
            .ok()
            .flatten()
            .is_some_and(|l| l.commit == entry.commit && l.result == entry.result),
        // Among the fleet's recent entries: a hold of a newer commit in between does not make
        // the commit in force new again.
        Dedup::SameCommit => history
            .entries(RECENT, Some(&entry.fleet), None)
            .is_ok_and(|recent| recent.iter().any(|l| l.commit == entry.commit)),
    };
    if said {
        tracing::debug!(commit = %entry.commit, result = %entry.result, "the history says it already");
        return;
    }
    if let Some(meta) = source.commit_meta(&entry.commit) {
        entry.set_meta(meta);
    }
    entry.mask(&crate::reconcile::known_secrets());
    history.set_limit(limit);
    match history.record(&entry) {
        Ok(id) => {
            tracing::debug!(id, commit = %entry.commit, result = %entry.result, "history recorded")
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the pass in the history; convergence goes on")
        }
    }
}

/// Unix seconds now.
pub(super) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// What the API reads the history through: the store, limited to the daemon's fleet.
#[derive(Clone)]
pub struct HistoryReader {
    history: Arc<History>,
    fleet: Option<String>,
}

impl HistoryReader {
    pub(super) fn new(history: Arc<History>, fleet: Option<String>) -> HistoryReader {
        HistoryReader { history, fleet }
    }

    /// A reader of a history holding `entries` (stored in order), for the API's tests.
    #[cfg(test)]
    pub(crate) fn for_tests(
        state_dir: &std::path::Path,
        fleet: Option<&str>,
        entries: &[HistoryEntry],
    ) -> HistoryReader {
        let history = History::open(state_dir, 1000).expect("a history in a temporary directory");
        for e in entries {
            history.record(e).expect("an entry stored");
        }
        HistoryReader::new(Arc::new(history), fleet.map(String::from))
    }

    /// Up to `limit` entries, newest first, of the daemon's fleet, concerning `stack` when
    /// given. Runs on a blocking thread.
    pub async fn entries(
        &self,
        limit: usize,
        stack: Option<String>,
    ) -> Result<Vec<HistoryEntry>, String> {
        let (history, fleet) = (self.history.clone(), self.fleet.clone());
        tokio::task::spawn_blocking(move || {
            history
                .entries(limit, fleet.as_deref(), stack.as_deref())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the history read failed: {e}"))?
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
