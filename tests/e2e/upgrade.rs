//! Upgrades are invisible: a fleet converged by the previous release (the binary of the commit
//! in `tests/upgrade-base`, built by `scripts/build-upgrade-base`) is in sync for this one, and
//! applying it replaces nothing. Labels, the spec hash and drift must stay compatible.

use crate::harness::*;

/// The previous release's binary; required wherever Docker is.
fn base_binary() -> Option<String> {
    match std::env::var("CONVOY_UPGRADE_BIN") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if docker_required() => {
            panic!("CONVOY_UPGRADE_BIN is not set: scripts/test builds it with scripts/build-upgrade-base")
        }
        _ => {
            eprintln!("SKIPPED: CONVOY_UPGRADE_BIN not set (scripts/build-upgrade-base)");
            None
        }
    }
}

#[test]
fn a_fleet_converged_by_the_previous_release_is_in_sync_and_nothing_is_replaced() {
    if !docker_available() {
        return;
    }
    let Some(old) = base_binary() else { return };
    let t = TestFleet::new();
    previous_release_key_stack(&t, (18393, 18394));
    t.convoy_with(&old, &["apply"]).outcome(Outcome::Converged);
    let before = t.engine_view();
    assert_eq!(before.len(), 2, "{before:?}");

    let diff = t.convoy(&["diff"]).outcome(Outcome::InSync);
    assert!(diff.stdout.contains("No changes"), "{}", diff.stdout);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(
        t.engine_view(),
        before,
        "the upgrade alone replaced a container"
    );
}
