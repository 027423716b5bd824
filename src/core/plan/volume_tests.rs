//! Tests of the planner's volumes: a slot's anonymous volumes are created once, owned and kept,
//! the same for a replacement of the slot, never reported as orphans while the slot runs, and a
//! converged fleet plans nothing.

use super::tests::{converge, execute_in_memory, lines, plan_for, service, stack};
use super::*;
use crate::core::testkit::desired;
use crate::model::spec::{anonymous_volume_name, MountSpec};

fn with_anonymous(replicas: u32) -> DesiredState {
    let mut svc = service("web", "db", replicas);
    svc.container.mounts.push(MountSpec {
        kind: MountKind::Anonymous,
        source: String::new(),
        target: "/data".into(),
        read_only: false,
    });
    desired(&["h1"], vec![stack("web", vec![svc])])
}

#[test]
fn each_slot_gets_its_own_anonymous_volume_before_its_container() {
    let d = with_anonymous(2);
    let o = crate::core::testkit::empty_observed(&d);
    let p = plan_for(&d, &o);
    let v1 = anonymous_volume_name("web", "db", "1", "/data");
    let v2 = anonymous_volume_name("web", "db", "2", "/data");
    let vols: Vec<(&VolumeSpec, usize)> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::CreateVolume { volume, .. } => Some((volume, s.id)),
            _ => None,
        })
        .collect();
    assert_eq!(vols.len(), 2, "{:?}", lines(&p));
    assert_eq!(vols[0].0.engine_name, v1);
    assert_eq!(vols[1].0.engine_name, v2);
    assert_eq!(vols[0].0.labels[LABEL_SLOT], "1");
    assert_eq!(vols[0].0.labels[LABEL_SERVICE], "db");
    for s in &p.steps {
        if let Action::Create { replica, .. } = &s.action {
            let want = if replica.slot == "1" { &v1 } else { &v2 };
            assert_eq!(replica.spec.mounts[0].source, *want);
            assert_eq!(replica.spec.mounts[0].kind, MountKind::Volume);
            assert!(s.after.contains(if replica.slot == "1" {
                &vols[0].1
            } else {
                &vols[1].1
            }));
            // The hash is the service's, the same for every slot.
            assert_eq!(
                replica.spec_hash,
                d.stacks["web"].services["db"].container.hash()
            );
        }
    }
}

#[test]
fn a_converged_slot_with_anonymous_volumes_plans_nothing() {
    let d = with_anonymous(2);
    let o = converge(&d);
    let p = plan_for(&d, &o);
    assert!(p.steps.is_empty(), "{:?}", lines(&p));
    assert!(p.orphan_volumes.is_empty(), "{:?}", p.orphan_volumes);
    // So does `diff --base`'s assumed observation.
    let placed = crate::core::schedule::place(
        &d,
        &crate::core::schedule::snapshot(&d, &o, &BTreeSet::new(), &BTreeMap::new()),
    );
    let assumed = assume_converged(&d, &placed, "c1");
    let p = plan(&d, &placed, &assumed, "c1");
    assert!(p.steps.is_empty(), "{:?}", lines(&p));
    assert!(p.orphan_volumes.is_empty());
}

#[test]
fn a_replaced_slot_keeps_its_anonymous_volume() {
    let d = with_anonymous(1);
    let o = converge(&d);
    let mut changed = d.clone();
    changed
        .stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("db")
        .unwrap()
        .container
        .command = Some(vec!["sleep".into(), "2000".into()]);
    let p = plan_for(&changed, &o);
    assert_eq!(p.steps.len(), 1, "{:?}", lines(&p));
    let Action::Replace { replica, .. } = &p.steps[0].action else {
        panic!("{:?}", lines(&p));
    };
    assert_eq!(
        replica.spec.mounts[0].source,
        anonymous_volume_name("web", "db", "1", "/data")
    );
    let after = execute_in_memory(&p, &o);
    assert!(plan_for(&changed, &after).steps.is_empty());
}

/// Scaled down: the slot's volume stays, reported as an orphan, never removed.
#[test]
fn a_removed_slots_volume_is_an_orphan_never_removed() {
    let d = with_anonymous(2);
    let o = converge(&d);
    let p = plan_for(&with_anonymous(1), &o);
    assert_eq!(lines(&p).len(), 1, "{:?}", lines(&p));
    assert_eq!(
        p.orphan_volumes
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>(),
        vec![anonymous_volume_name("web", "db", "2", "/data")]
    );
}
