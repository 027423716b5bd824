//! What a small input may cost: a dependency chain of thousands of services validates in well
//! under a second (the checks are linear in services plus edges), and replica counts have
//! documented upper bounds, per service and per fleet, refused with a located error.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use std::time::Duration;

use super::*;

/// A stack of `n` services, each depending on the next one.
fn chain(n: usize) -> String {
    let mut compose = String::from("services:\n");
    for i in 0..n {
        compose.push_str(&format!("  s{i}:\n    image: busybox\n"));
        if i + 1 < n {
            compose.push_str(&format!("    depends_on: [s{}]\n", i + 1));
        }
    }
    compose
}

/// `f`'s result when it finishes within `limit`, run on a thread of its own. A deadline on the
/// test, not a clock in the code under test: the reader itself never reads one ("the planning
/// core is pure"), and a regression fails here after `limit` instead of hanging the run.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_dependency_chain_of_2000_validates_in_well_under_a_second() {
    // Generous for a debug build on a busy machine; the cubic cycle check took over a minute.
    let services = within(Duration::from_secs(2), || {
        let compose = chain(2000);
        ok(&files(&web(&compose))).stacks["web"].services.len()
    });
    assert_eq!(services, Some(2000), "not validated within 2 s");
    // A cycle through the whole chain is found as fast, and reported once.
    let errors = within(Duration::from_secs(2), || {
        let compose = chain(2000).replace(
            "  s1999:\n    image: busybox\n",
            "  s1999:\n    image: busybox\n    depends_on: [s0]\n",
        );
        web_errs(&compose)
    })
    .expect("not validated within 2 s");
    assert_eq!(errors.len(), 1, "{:?}", errors.first());
    assert!(
        errors[0].starts_with(
            "stacks/web/compose.yaml:4:18: services.s0.depends_on[0]: dependency cycle: s0 -> s1 -> s2 -> s3 -> "
        ),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].ends_with(" -> s1998 -> s1999 -> s0"),
        "{}",
        errors[0]
    );
}
