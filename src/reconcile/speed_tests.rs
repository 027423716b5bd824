//! The planner's cost, measured where a clock may be read (the pure core reads none):
//! ordering, gates and steps are linear in services plus dependencies. Each round of the
//! ordering once scanned every service left, and each gate every replica: over 3 s for a chain
//! of 2000 services in a debug build.

use crate::core::pass::{plan_pass, HostMemory};
use crate::core::testkit::{desired, empty_observed, service, stack};
use crate::model::spec::{DependsCondition, DesiredState};

/// `n` services in one `depends_on` chain: each depends on the next.
fn chain(n: usize) -> DesiredState {
    let services = (0..n)
        .map(|i| {
            let mut s = service(&format!("s{i:04}"), 1);
            if i + 1 < n {
                s.depends_on
                    .insert(format!("s{:04}", i + 1), DependsCondition::ServiceStarted);
            }
            s
        })
        .collect();
    desired(&["h1"], vec![stack("web", services)])
}

/// Eight times the services take about eight times as long, not sixty-four. Judged by the
/// ratio of two runs on one thread, so a busy machine slows both alike.
#[test]
fn a_dependency_chain_plans_in_linear_time() {
    let (small, big) = (chain(300), chain(2400));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let timed = |d: &DesiredState| {
            let at = std::time::Instant::now();
            let p = plan_pass(d, &empty_observed(d), &HostMemory::default(), "c1").plan;
            (at.elapsed(), p.steps.len())
        };
        let (t_small, _) = timed(&small);
        let (t_big, steps) = timed(&big);
        let _ = tx.send((t_small, t_big, steps));
    });
    let (t_small, t_big, steps) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("planned within a minute");
    assert_eq!(steps, 2400, "one replica per service");
    assert!(
        t_big.as_secs_f64() < 24.0 * t_small.as_secs_f64() + 0.05,
        "8x the services took {t_big:?} against {t_small:?}: not linear"
    );
}
