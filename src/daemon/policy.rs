//! The daemon's error policy, as one small synchronous function: what a pass's result asks of
//! the next pass (as kube-rs' `error_policy` does). Nothing else decides a requeue delay.

use std::time::Duration;

use crate::infra::fleet::backoff;
use crate::model::outcome::{PassReason, PassResult};

/// How soon a pass acted on is looked at again: long enough for the engine to report what
/// the steps did, short enough that a convergence finishes promptly.
const CONFIRM_AFTER: Duration = Duration::from_millis(200);

/// After a pass that ended with `result` (`failing` failed passes in a row, this one included),
/// when the next pass should run and why; `None` leaves it to triggers and the resync timer.
pub fn requeue(result: &PassResult, failing: u32) -> Option<(Duration, PassReason)> {
    match result {
        // Something was done, or a pass was cut short by a newer commit that may yet be
        // refused: look again shortly to confirm (or finish) convergence.
        PassResult::Applied | PassResult::RolledBack | PassResult::Superseded => {
            Some((CONFIRM_AFTER, PassReason::Confirm))
        }
        // What failed will likely fail again at once (a pull, a rejected create): wait longer
        // each time instead of retrying five times a second.
        PassResult::Failed => Some((
            backoff(failing.saturating_sub(1)).max(CONFIRM_AFTER),
            PassReason::Retry { attempt: failing },
        )),
        PassResult::Converged | PassResult::Held { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_and_success_confirms() {
        let (first, why) = requeue(&PassResult::Failed, 1).unwrap();
        assert_eq!(why, PassReason::Retry { attempt: 1 });
        let (later, _) = requeue(&PassResult::Failed, 6).unwrap();
        assert!(later > first, "{later:?} <= {first:?}");
        assert_eq!(
            requeue(&PassResult::Applied, 0),
            Some((CONFIRM_AFTER, PassReason::Confirm))
        );
        assert_eq!(requeue(&PassResult::Converged, 0), None);
    }
}
