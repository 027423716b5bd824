//! `POST /api/v1/sync?force=true`: whether a forced sync may override the sync windows that
//! hold the newest commit, decided from the daemon's published status so a refusal is said to
//! the caller at once (409) instead of only in the daemon's log.
//!
//! Reads `DaemonStatus` only; it never touches the fleet.

use crate::daemon::DaemonStatus;

/// Why a forced sync is refused: every window holding a stack says `manual_sync: false`.
/// `None`: accepted (stacks whose windows allow it are released; the others stay held).
pub fn force_refusal(s: &DaemonStatus) -> Option<String> {
    if s.sync_windows.is_empty() || s.sync_windows.iter().any(|h| h.manual_sync) {
        return None;
    }
    let commit = s.pending.as_ref().map(|p| p.commit.as_str()).unwrap_or("?");
    let held: Vec<String> = s
        .sync_windows
        .iter()
        .map(|h| {
            format!(
                "stack `{}` by window {} (`{}`) until {}",
                h.stack,
                h.window,
                h.schedule,
                h.opens_at
                    .map(|t| crate::model::time::rfc3339(t as f64))
                    .unwrap_or_else(|| "no opening in sight".into())
            )
        })
        .collect();
    Some(format!(
        "--force refused: commit {commit} is held by sync windows that do not allow manual syncs (manual_sync: false): {}",
        held.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sync_window::{WindowHold, WindowKind};

    fn hold(stack: &str, manual_sync: bool) -> WindowHold {
        WindowHold {
            stack: stack.into(),
            window: 0,
            kind: WindowKind::Deny,
            schedule: "* * * * *".into(),
            timezone: "UTC".into(),
            manual_sync,
            opens_at: None,
        }
    }

    #[test]
    fn a_force_is_refused_only_when_no_holding_window_allows_it() {
        let mut s = DaemonStatus::default();
        assert_eq!(force_refusal(&s), None);
        s.sync_windows = vec![hold("web", false)];
        let msg = force_refusal(&s).unwrap();
        assert!(
            msg.contains("manual_sync: false") && msg.contains("stack `web`"),
            "{msg}"
        );
        s.sync_windows.push(hold("db", true));
        assert_eq!(force_refusal(&s), None);
    }
}
