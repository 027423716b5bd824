//! Sync windows as `convoy.yaml` declares them (`sync_windows:`): times when new commits are
//! not applied to some stacks (`deny`), or the only times they are (`allow`). The evaluation
//! (is a change allowed now, which window holds it, when it opens) is `core::windows`.
//!
//! Types only (and the one line a hold is said in): nothing here reads a clock or decides
//! anything.

use serde::Serialize;

use crate::model::schedule::Schedule;

/// `kind: deny | allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// While open, new commits are not applied to its stacks.
    Deny,
    /// New commits are applied to its stacks only while one of their allow windows is open.
    Allow,
}

impl WindowKind {
    pub fn code(&self) -> &'static str {
        match self {
            WindowKind::Deny => "deny",
            WindowKind::Allow => "allow",
        }
    }
}

/// One entry of `sync_windows:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncWindow {
    pub kind: WindowKind,
    /// When the window opens (in its time zone).
    pub schedule: Schedule,
    /// How long it stays open after each scheduled time, in seconds (> 0).
    pub duration_secs: i64,
    /// The stacks it applies to; `None` (the key left out): every stack.
    pub stacks: Option<Vec<String>>,
    /// Whether `convoy sync --force` (and `apply --force`) may apply a change this window
    /// holds. Default `true`: a commit cannot lift the window that holds it (the windows of
    /// the commit in force count too), so a forced sync is the way to ship a fix during a
    /// freeze; `false` makes the window a hard freeze.
    pub manual_sync: bool,
}

impl SyncWindow {
    /// Whether the window applies to `stack`.
    pub fn names(&self, stack: &str) -> bool {
        self.stacks
            .as_ref()
            .is_none_or(|s| s.iter().any(|n| n == stack))
    }
}

/// Why a stack's change is held at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowHold {
    pub stack: String,
    /// The window's index in `sync_windows:` (of the commit whose windows hold it).
    pub window: usize,
    pub kind: WindowKind,
    pub schedule: String,
    pub timezone: String,
    /// Whether `sync --force` may apply the change: every window that holds it allows manual
    /// syncs.
    pub manual_sync: bool,
    /// When changes are allowed again, Unix seconds; `None`: not within the search horizon.
    pub opens_at: Option<i64>,
}

impl WindowHold {
    /// One line: `stack `web` is held by sync window 0 (deny `0 22 * * 5` UTC) until ...`.
    pub fn line(&self) -> String {
        let until = match self.opens_at {
            Some(t) => format!("until {}", crate::model::time::rfc3339(t as f64)),
            None => "with no opening in sight".to_string(),
        };
        let what = match self.kind {
            WindowKind::Deny => "deny window",
            WindowKind::Allow => "outside allow window",
        };
        let force = if self.manual_sync {
            "`convoy sync --force` applies it now"
        } else {
            "manual_sync: false, so no forced sync either"
        };
        format!(
            "stack `{}` is held by sync window {} ({what} `{}` {}) {until}: {force}",
            self.stack, self.window, self.schedule, self.timezone
        )
    }
}
