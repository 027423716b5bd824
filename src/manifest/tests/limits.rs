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

/// `replicas: 1000000` took 10.9 s and 3.6 GB to plan: a service has at most 1000 replicas.
#[test]
fn replicas_per_service_are_bounded() {
    let e = web_errs("services:\n  a:\n    image: x\n    deploy:\n      replicas: 1000001\n  b:\n    image: x\n    deploy:\n      replicas: 1000\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:5:17: services.a.deploy.replicas: 1000001 replicas is more than the 1000 a service may have"]
    );
}

/// And a fleet at most 10,000 in all, a global service counting one per host it may run on;
/// the service that passes the bound is named.
#[test]
fn replicas_per_fleet_are_bounded() {
    let thousand = |names: &[&str]| {
        let mut c = String::from("services:\n");
        for n in names {
            c.push_str(&format!(
                "  {n}:\n    image: x\n    deploy:\n      replicas: 1000\n"
            ));
        }
        c
    };
    let a = thousand(&["s0", "s1", "s2", "s3", "s4"]);
    let b = thousand(&["s5", "s6", "s7", "s8", "s9"]);
    let fleet = "fleet: prod\nhosts:\n  h1:\n    address: ssh://h1\n  h2:\n    address: ssh://h2\n";
    // 10,000 exactly is allowed.
    let s = ok(&[
        ("convoy.yaml", fleet),
        ("stacks/a/compose.yaml", &a),
        ("stacks/b/compose.yaml", &b),
    ]);
    assert_eq!(s.stacks.len(), 2);
    // One more replica, by a global service on two hosts, is not.
    let c = "services:\n  g:\n    image: x\n    deploy:\n      mode: global\n";
    let e = errs(&[
        ("convoy.yaml", fleet),
        ("stacks/a/compose.yaml", &a),
        ("stacks/b/compose.yaml", &b),
        ("stacks/c/compose.yaml", c),
    ]);
    assert_eq!(
        e,
        vec!["stacks/c/compose.yaml:2:3: services.g: the fleet would run more than 10000 replicas in all with this service (a global service counts one per host it may run on)"]
    );
    // Where `replicas` is written, it is pointed at.
    let c = "services:\n  r:\n    image: x\n    deploy:\n      replicas: 1\n";
    let e = errs(&[
        ("convoy.yaml", fleet),
        ("stacks/a/compose.yaml", &a),
        ("stacks/b/compose.yaml", &b),
        ("stacks/c/compose.yaml", c),
    ]);
    assert_eq!(
        e,
        vec!["stacks/c/compose.yaml:5:17: services.r.deploy.replicas: the fleet would run more than 10000 replicas in all with this service (a global service counts one per host it may run on)"]
    );
}
