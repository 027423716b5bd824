//! The planner and adopted Compose containers: kept when what runs matches the file, replaced
//! by a labelled replica on the first change, removed only when the adopted project's service
//! left the file, and nothing un-labelled that the adoption record does not name ever touched.

use super::tests::{
    arb_desired, arb_mutations, converge, execute_in_memory, lines, mutate, plan_for, service,
    stack,
};
use super::*;
use crate::core::testkit::desired;
use proptest::prelude::*;

/// What observation reports once Compose project `<stack>` runs the replicas of `o` instead
/// of Convoy: every container of each stack in `stacks` renamed the way `docker-compose` v1
/// names it (`<project>_<service>_<n>`), without Convoy's labels (no spec hash, no commit),
/// marked adopted.
fn as_compose(o: &mut ObservedState, stacks: &[&str]) {
    as_compose_named(o, stacks, "_");
}

/// `as_compose` with Compose's separator `sep`: `_` for `docker-compose` v1, `-` for v2, whose
/// names are then Convoy's own for a stack named as the project.
fn as_compose_named(o: &mut ObservedState, stacks: &[&str], sep: &str) {
    for obs in o.hosts.values_mut() {
        let ObservedHost::Reachable(snap) = obs else {
            continue;
        };
        let names: Vec<String> = snap
            .containers
            .values()
            .filter(|c| stacks.contains(&c.stack.as_str()))
            .map(|c| c.name.clone())
            .collect();
        for old in names {
            let mut c = snap.containers.remove(&old).unwrap();
            let new = [c.stack.as_str(), &c.service, &c.slot].join(sep);
            c.name = new.clone();
            c.spec_hash = String::new();
            c.commit = String::new();
            for n in snap.networks.values_mut().flatten() {
                if n.containers.remove(&old) {
                    n.containers.insert(new.clone());
                }
            }
            snap.adopted.insert(new.clone(), c.stack.clone());
            snap.containers.insert(new, c);
        }
    }
}

fn snap_mut<'a>(o: &'a mut ObservedState, host: &str) -> &'a mut HostSnapshot {
    match o.hosts.get_mut(host) {
        Some(ObservedHost::Reachable(s)) => s,
        _ => panic!("no snapshot of {host}"),
    }
}

fn shop() -> DesiredState {
    desired(
        &["h1"],
        vec![stack(
            "shop",
            vec![service("shop", "web", 1), service("shop", "db", 1)],
        )],
    )
}

#[test]
fn an_adopted_project_that_matches_the_file_plans_nothing_and_says_so() {
    let d = shop();
    let mut o = converge(&d);
    as_compose(&mut o, &["shop"]);
    let p = plan_for(&d, &o);
    assert_eq!(lines(&p), Vec::<String>::new());
    assert!(p.is_converged());
    assert_eq!(
        p.notes,
        [
            "h1: shop_db_1 in sync, adopted (Compose project `shop`, stack `shop`, service `db`)",
            "h1: shop_web_1 in sync, adopted (Compose project `shop`, stack `shop`, service `web`)",
        ]
    );
}

#[test]
fn a_change_replaces_exactly_that_adopted_container_with_a_labelled_one() {
    let mut d = shop();
    let mut o = converge(&d);
    as_compose(&mut o, &["shop"]);
    let web = d
        .stacks
        .get_mut("shop")
        .unwrap()
        .services
        .get_mut("web")
        .unwrap();
    web.container.env.insert("MODE".into(), "fast".into());
    let p = plan_for(&d, &o);
    assert_eq!(p.steps.len(), 1, "{:?}", lines(&p));
    let old_id = snap_mut(&mut o, "h1").containers["shop_web_1"].id.clone();
    match &p.steps[0].action {
        Action::Replace {
            old_id: id,
            replica,
            changes,
            ..
        } => {
            assert_eq!(id, &old_id);
            assert_eq!(replica.name, "shop-web-1");
            assert!(
                changes.iter().any(|c| c.field == "environment.MODE"),
                "{changes:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The untouched service stays adopted; once replaced, the other is Convoy's and the fleet
    // converges.
    let after = execute_in_memory(&p, &o);
    let again = plan_for(&d, &after);
    assert!(again.steps.is_empty(), "{:?}", lines(&again));
    assert_eq!(again.notes.len(), 1, "{:?}", again.notes);
    assert!(again.notes[0].contains("shop_db_1 in sync, adopted"));
}

#[test]
fn a_compose_v2_container_holding_the_replicas_own_name_is_kept_then_replaced_in_place() {
    let mut d = shop();
    let mut o = converge(&d);
    as_compose_named(&mut o, &["shop"], "-");
    let p = plan_for(&d, &o);
    assert!(p.steps.is_empty(), "{:?}", lines(&p));
    assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    assert!(p.notes[1].starts_with("h1: shop-web-1 in sync, adopted"));
    let old_id = snap_mut(&mut o, "h1").containers["shop-web-1"].id.clone();
    d.stacks
        .get_mut("shop")
        .unwrap()
        .services
        .get_mut("web")
        .unwrap()
        .container
        .user = Some("1000".into());
    let p = plan_for(&d, &o);
    assert_eq!(p.steps.len(), 1, "{:?}", lines(&p));
    assert!(
        matches!(&p.steps[0].action, Action::Replace { old_id: id, replica, .. }
            if id == &old_id && replica.name == "shop-web-1")
    );
}

#[test]
fn an_adopted_container_the_engine_reports_differently_is_replaced_despite_no_hash() {
    let d = shop();
    let mut o = converge(&d);
    as_compose(&mut o, &["shop"]);
    snap_mut(&mut o, "h1")
        .containers
        .get_mut("shop_db_1")
        .unwrap()
        .actual
        .memory_bytes = Some(1 << 20);
    assert_eq!(
        lines(&plan_for(&d, &o))
            .iter()
            .filter(|l| l.contains("shop-db-1"))
            .count(),
        1
    );
}

#[test]
fn an_adopted_service_the_file_no_longer_has_is_removed_and_nothing_unlabelled_is_touched() {
    let mut d = shop();
    let mut o = converge(&d);
    as_compose(&mut o, &["shop"]);
    // Another Compose project on the same host, not adopted: only its names are observed.
    let snap = snap_mut(&mut o, "h1");
    snap.foreign_names.insert("other_web_1".into());
    snap.foreign_names.insert("shop-cache-1".into());
    d.stacks.get_mut("shop").unwrap().services.remove("db");
    let p = plan_for(&d, &o);
    assert_eq!(p.steps.len(), 1, "{:?}", lines(&p));
    match &p.steps[0].action {
        Action::Remove { name, .. } => assert_eq!(name, "shop_db_1"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stopped_adopted_container_is_started_in_place() {
    let d = shop();
    let mut o = converge(&d);
    as_compose(&mut o, &["shop"]);
    snap_mut(&mut o, "h1")
        .containers
        .get_mut("shop_web_1")
        .unwrap()
        .state = crate::model::observed::RunState::Exited;
    let p = plan_for(&d, &o);
    assert_eq!(p.steps.len(), 1, "{:?}", lines(&p));
    assert!(matches!(&p.steps[0].action, Action::Start { name, .. } if name == "shop_web_1"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// "Only what carries the fleet's label is touched", grown by the adoption record: with
    /// some stacks run by adopted Compose projects and the usual hands and crashes, every step
    /// on an existing container names one observation owns (labelled or adopted) by its ID,
    /// none names a foreign one, and one execution converges.
    #[test]
    fn adopted_containers_and_nothing_else_unlabelled_are_touched(
        d in arb_desired(),
        adopt in prop::collection::vec(any::<bool>(), 4),
        muts in arb_mutations(),
    ) {
        let mut o = converge(&d);
        let stacks: Vec<String> = d
            .stacks
            .keys()
            .enumerate()
            .filter(|(i, _)| adopt[*i % adopt.len()])
            .map(|(_, s)| s.clone())
            .collect();
        let refs: Vec<&str> = stacks.iter().map(String::as_str).collect();
        as_compose(&mut o, &refs);
        prop_assert!(plan_for(&d, &o).steps.is_empty(), "{:?}", lines(&plan_for(&d, &o)));
        mutate(&mut o, &muts);
        let p = plan_for(&d, &o);
        for step in &p.steps {
            let snap = o.hosts[&step.host].snapshot().unwrap();
            let owned_id = |id: &str| snap.containers.values().any(|c| c.id == id);
            match &step.action {
                Action::Remove { name, id, .. } | Action::Start { name, id, .. } => {
                    prop_assert!(!snap.foreign_names.contains(name));
                    prop_assert_eq!(&snap.containers[name].id, id);
                }
                Action::Replace { replica, old_id, .. } => {
                    prop_assert!(!snap.foreign_names.contains(&replica.name));
                    prop_assert!(owned_id(old_id));
                }
                Action::Create { replica, .. } => {
                    prop_assert!(!snap.foreign_names.contains(&replica.name));
                    prop_assert!(!snap.containers.contains_key(&replica.name));
                }
                _ => {}
            }
        }
        let after = execute_in_memory(&p, &o);
        let again = plan_for(&d, &after);
        prop_assert!(again.steps.is_empty(), "{:?}", lines(&again));
    }
}
