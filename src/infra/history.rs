//! The deploy history's store: `<state_dir>/history.db`, SQLite in WAL mode, written by the
//! daemon and by `convoy apply` alike and read by `convoy history` and the API.
//!
//! Each entry is kept as its JSON (`model::history::HistoryEntry`) beside the columns queries
//! need (fleet, commit, start, result) and a side table of the stacks it concerns, for
//! `--stack`. Entries beyond the fleet's `history_limit` are pruned as each is written.
//!
//! It must never stop convergence: it blocks (call it from a blocking context), and a file
//! that is not a database or is corrupt is moved aside (`history.db.corrupt-<unix time>`) with
//! a warning and the history starts again empty. Two processes writing at once take turns
//! through SQLite's own locking (WAL, a busy timeout, write transactions taken at once).
//! History is a record, not a source of truth ("git and the engines are the truth"): deleting
//! the file loses the record only.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::model::history::{HistoryEntry, DEFAULT_HISTORY_LIMIT};

/// The file under the state directory.
pub const FILE: &str = "history.db";
/// The schema this code writes (`PRAGMA user_version`); a newer one is only ever additive.
const SCHEMA_VERSION: i32 = 1;
/// How long a writer waits for another process's write to end.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The most entries one query returns, whatever it asks.
pub const MAX_QUERY: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history database {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("history database {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An open history database.
pub struct History {
    path: PathBuf,
    limit: AtomicU32,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").field("path", &self.path).finish()
    }
}

/// The history file of `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

impl History {
    /// Opens (creating) the history of `state_dir`, keeping `limit` entries per fleet. A file
    /// that is not a usable database is moved aside with a warning and replaced by an empty
    /// one; an error only when not even a new one can be made (a state directory that cannot
    /// be written).
    pub fn open(state_dir: &Path, limit: u32) -> Result<History, HistoryError> {
        let path = path(state_dir);
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| HistoryError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        let conn = match open_checked(&path) {
            Ok(c) => c,
            Err(e) if is_corrupt(&e) => {
                move_aside(&path, &e)?;
                open_checked(&path).map_err(|source| HistoryError::Sqlite {
                    path: path.clone(),
                    source,
                })?
            }
            Err(source) => return Err(HistoryError::Sqlite { path, source }),
        };
        Ok(History {
            path,
            limit: AtomicU32::new(limit.max(1)),
            conn: Mutex::new(conn),
        })
    }

    /// Opens the history of `state_dir` to read it only: `None` when there is none yet. A
    /// corrupt file is an error here (the next writer replaces it).
    pub fn open_read_only(state_dir: &Path) -> Result<Option<History>, HistoryError> {
        let path = path(state_dir);
        if !path.exists() {
            return Ok(None);
        }
        let sqlite = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        // Read-write without create: a reader of a WAL database needs its shared memory file.
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        let version: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sqlite)?;
        if version == 0 {
            // Created and not yet written: nothing in it.
            init_schema(&conn).map_err(sqlite)?;
        }
        Ok(Some(History {
            path,
            limit: AtomicU32::new(DEFAULT_HISTORY_LIMIT),
            conn: Mutex::new(conn),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries kept per fleet from the next write on (`history_limit` of the commit in force).
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    /// Stores `entry` (its `id` is assigned) and prunes its fleet's entries beyond the limit;
    /// returns the id. A database found corrupt is replaced (with a warning) and the entry
    /// written into the new one.
    pub fn record(&self, entry: &HistoryEntry) -> Result<i64, HistoryError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = self.limit.load(Ordering::Relaxed);
        match insert(&mut conn, entry, limit) {
            Ok(id) => Ok(id),
            Err(e) if is_corrupt(&e) => {
                move_aside(&self.path, &e)?;
                *conn = open_checked(&self.path).map_err(|source| self.sqlite(source))?;
                insert(&mut conn, entry, limit).map_err(|source| self.sqlite(source))
            }
            Err(source) => Err(self.sqlite(source)),
        }
    }

    /// The newest entry of `fleet`, if any.
    pub fn latest(&self, fleet: &str) -> Result<Option<HistoryEntry>, HistoryError> {
        Ok(self.entries(1, Some(fleet), None)?.into_iter().next())
    }

    /// Up to `limit` entries (at most `MAX_QUERY`), newest first, of `fleet` (all fleets when
    /// `None`) and concerning `stack` (all when `None`). Rows that do not decode (written by a
    /// newer, incompatible Convoy) are skipped.
    pub fn entries(
        &self,
        limit: usize,
        fleet: Option<&str>,
        stack: Option<&str>,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = limit.min(MAX_QUERY) as i64;
        let sql = "SELECT e.id, e.entry FROM entries e
                   WHERE (?1 IS NULL OR e.fleet = ?1)
                     AND (?2 IS NULL OR EXISTS (SELECT 1 FROM entry_stacks s
                                                WHERE s.entry_id = e.id AND s.stack = ?2))
                   ORDER BY e.id DESC LIMIT ?3";
        let rows = (|| {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map(params![fleet, stack, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })()
        .map_err(|source| self.sqlite(source))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, json)| match serde_json::from_str::<HistoryEntry>(&json) {
                Ok(mut e) => {
                    e.id = id;
                    Some(e)
                }
                Err(err) => {
                    tracing::debug!(id, error = %err, "a history entry does not decode; skipped");
                    None
                }
            })
            .collect())
    }

    /// Commits that applied cleanly (`HistoryEntry::is_good`), newest first, each once: what
    /// `convoy rollback --last` may go back to. All fleets of the file.
    pub fn good_commits(&self, limit: usize) -> Vec<String> {
        self.good_commits_of(None, limit)
    }

    /// `good_commits` of one fleet (all when `None`). Read errors give an empty list (logged).
    pub fn good_commits_of(&self, fleet: Option<&str>, limit: usize) -> Vec<String> {
        let entries = match self.entries(MAX_QUERY, fleet, None) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the history");
                return Vec::new();
            }
        };
        let mut out: Vec<String> = Vec::new();
        for e in entries.into_iter().filter(HistoryEntry::is_good) {
            if !out.contains(&e.commit) {
                out.push(e.commit);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }

    fn sqlite(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }
}

/// Opens `path` (creating it), sets WAL and the busy timeout, checks it, and makes the schema.
fn open_checked(path: &Path) -> Result<Connection, rusqlite::Error> {
    let created = !path.exists();
    let conn = Connection::open(path)?;
    if created {
        // Commit messages and errors are the fleet's business only.
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
    }
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Garbage in the file shows here ("file is not a database").
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::debug!(%mode, "the history database is not in WAL mode");
    }
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            Some(check),
        ));
    }
    init_schema(&conn)?;
    Ok(conn)
}

fn init_schema(conn: &Connection) -> Result<(), rusqlite::Error> {
    let version: i32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE;
         CREATE TABLE IF NOT EXISTS entries (
             id INTEGER PRIMARY KEY AUTOINCREMENT,
             fleet TEXT NOT NULL,
             commit_id TEXT NOT NULL,
             started_at TEXT NOT NULL,
             result TEXT NOT NULL,
             entry TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS entries_fleet ON entries (fleet, id);
         CREATE INDEX IF NOT EXISTS entries_commit ON entries (commit_id);
         CREATE TABLE IF NOT EXISTS entry_stacks (
             stack TEXT NOT NULL,
             entry_id INTEGER NOT NULL,
             PRIMARY KEY (stack, entry_id)
         ) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS entry_stacks_entry ON entry_stacks (entry_id);
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
}

fn insert(conn: &mut Connection, entry: &HistoryEntry, limit: u32) -> Result<i64, rusqlite::Error> {
    let json = serde_json::to_string(entry)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    // IMMEDIATE: the write lock is taken now, so two writers queue on the busy timeout
    // instead of one failing when it upgrades a read.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO entries (fleet, commit_id, started_at, result, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![entry.fleet, entry.commit, entry.started_at, entry.result.code(), json],
    )?;
    let id = tx.last_insert_rowid();
    for stack in entry.stacks() {
        tx.execute(
            "INSERT OR IGNORE INTO entry_stacks (stack, entry_id) VALUES (?1, ?2)",
            params![stack, id],
        )?;
    }
    // The fleet's newest `limit` stay.
    let cutoff: Option<i64> = tx
        .query_row(
            "SELECT id FROM entries WHERE fleet = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
            params![entry.fleet, i64::from(limit)],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(cutoff) = cutoff {
        tx.execute(
            "DELETE FROM entry_stacks WHERE entry_id IN
                 (SELECT id FROM entries WHERE fleet = ?1 AND id <= ?2)",
            params![entry.fleet, cutoff],
        )?;
        tx.execute(
            "DELETE FROM entries WHERE fleet = ?1 AND id <= ?2",
            params![entry.fleet, cutoff],
        )?;
    }
    tx.commit()?;
    Ok(id)
}

/// Whether `e` says the file is not a (sound) database.
fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Moves a corrupt database (and its WAL and shared memory files) aside, with a warning.
fn move_aside(path: &Path, why: &rusqlite::Error) -> Result<(), HistoryError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{now}"));
    let aside = PathBuf::from(aside);
    tracing::warn!(
        path = %path.display(),
        moved_to = %aside.display(),
        error = %why,
        "the history database is unreadable: moved aside, history starts again empty"
    );
    fs::rename(path, &aside).map_err(|source| HistoryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            let mut to = aside.as_os_str().to_owned();
            to.push(suffix);
            let _ = fs::rename(&side, PathBuf::from(to));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
