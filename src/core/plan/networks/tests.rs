//! Duplicate networks in the plan: which one is kept, what is replaced to move off the others,
//! and that they go by ID, after what used them, and never while something not of the fleet is
//! attached. Fixtures from `core::testkit` (through the plan tests' stack and service builders)
//! and the plan tests' in-memory engine, which refuses to remove a network in use.

use std::collections::BTreeSet;

use super::super::tests::{converge, execute_in_memory, lines, plan_for, service, stack};
use crate::core::testkit::desired;
use crate::model::observed::{HostSnapshot, ObservedHost, ObservedNetwork, ObservedState};
use crate::model::plan::Action;
use crate::model::spec::DesiredState;

/// Stack `web`: `app` x2 on `web_default`.
fn web() -> DesiredState {
    desired(&["h1"], vec![stack("web", vec![service("web", "app", 2)])])
}

fn snap(o: &mut ObservedState) -> &mut HostSnapshot {
    match o.hosts.get_mut("h1") {
        Some(ObservedHost::Reachable(s)) => s,
        _ => panic!("h1 not reachable"),
    }
}

/// A network of the fleet named `web_default` with `containers` attached.
fn net(id: &str, created: &str, containers: &[&str]) -> ObservedNetwork {
    ObservedNetwork {
        id: id.into(),
        stack: "web".into(),
        resource: "web_default".into(),
        created: created.into(),
        containers: containers.iter().map(|c| c.to_string()).collect(),
    }
}

/// The IDs of the networks named `web_default` the plan removes.
fn removed(p: &crate::model::plan::Plan) -> Vec<String> {
    p.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::RemoveNetwork { name, id } if name == "web_default" => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn kept_id(p: &crate::model::plan::Plan) -> &str {
    &p.network_ids["h1"]["web_default"]
}

#[test]
fn an_empty_duplicate_is_removed_by_id_and_nothing_is_replaced() {
    let d = web();
    let mut o = converge(&d);
    let first = snap(&mut o).networks["web_default"][0].id.clone();
    snap(&mut o)
        .networks
        .get_mut("web_default")
        .unwrap()
        .push(net("zz-dup", "99", &[]));
    let p = plan_for(&d, &o);
    assert_eq!(lines(&p), vec!["h1 - network web_default"]);
    assert_eq!(removed(&p), vec!["zz-dup"]);
    assert_eq!(kept_id(&p), first);
    // Healed in one pass.
    let after = execute_in_memory(&p, &o);
    assert_eq!(snap(&mut after.clone()).networks["web_default"].len(), 1);
    assert!(plan_for(&d, &after).steps.is_empty());
}

#[test]
fn the_network_with_containers_is_kept_and_those_on_the_other_are_replaced_first() {
    let d = web();
    let mut o = converge(&d);
    // Two processes at once: app-1 came up on one copy of the network, app-2 on the other,
    // which is the older one.
    let nets = vec![
        net("bbb", "02", &["web-app-1"]),
        net("aaa", "01", &["web-app-2"]),
    ];
    snap(&mut o).networks.insert("web_default".into(), nets);
    let p = plan_for(&d, &o);
    // Equal attachments: the oldest is kept, the container on the other one is replaced.
    assert_eq!(kept_id(&p), "aaa");
    assert_eq!(
        lines(&p),
        vec!["h1 ~ web-app-1  (drift)", "h1 - network web_default"]
    );
    match &p.steps[0].action {
        Action::Replace { changes, .. } => {
            assert_eq!(changes[0].field, "networks.web_default");
            assert_eq!(changes[0].old, "duplicate network bbb");
            assert_eq!(changes[0].new, "network aaa");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(removed(&p), vec!["bbb"]);
    // The network goes only after what was attached to it.
    assert_eq!(p.steps[1].after, vec![0]);
    let after = execute_in_memory(&p, &o);
    assert!(plan_for(&d, &after).steps.is_empty());
    let mut after = after;
    let healed = &snap(&mut after).networks["web_default"];
    assert_eq!(healed.len(), 1);
    assert_eq!(
        healed[0].containers,
        BTreeSet::from(["web-app-1".to_string(), "web-app-2".to_string()])
    );
}

#[test]
fn more_containers_attached_outweigh_age() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 3)])]);
    let mut o = converge(&d);
    let nets = vec![
        net("old", "01", &["web-app-1"]),
        net("new", "02", &["web-app-2", "web-app-3"]),
    ];
    snap(&mut o).networks.insert("web_default".into(), nets);
    let p = plan_for(&d, &o);
    assert_eq!(kept_id(&p), "new");
    assert_eq!(
        lines(&p),
        vec!["h1 ~ web-app-1  (drift)", "h1 - network web_default"]
    );
}

#[test]
fn the_choice_does_not_depend_on_the_order_observed() {
    let d = web();
    let o = converge(&d);
    // Same age, nothing attached: the lowest ID.
    let mut nets = vec![
        net("b2", "01", &[]),
        net("a1", "01", &[]),
        net("c3", "01", &[]),
    ];
    for _ in 0..nets.len() {
        let mut o = o.clone();
        snap(&mut o)
            .networks
            .insert("web_default".into(), nets.clone());
        let p = plan_for(&d, &o);
        assert_eq!(kept_id(&p), "a1");
        let mut gone = removed(&p);
        gone.sort();
        assert_eq!(gone, vec!["b2", "c3"]);
        nets.rotate_left(1);
    }
}

#[test]
fn a_new_stack_on_two_copies_creates_its_containers_on_the_kept_one() {
    let d = web();
    let mut o = crate::core::testkit::empty_observed(&d);
    snap(&mut o).networks.insert(
        "web_default".into(),
        vec![net("y", "02", &[]), net("x", "01", &[])],
    );
    let p = plan_for(&d, &o);
    assert_eq!(
        lines(&p),
        vec![
            "h1 + web-app-1  (missing, image busybox:1)",
            "h1 + web-app-2  (missing, image busybox:1)",
            "h1 - network web_default",
        ]
    );
    assert_eq!(kept_id(&p), "x");
    assert_eq!(removed(&p), vec!["y"]);
    let after = execute_in_memory(&p, &o);
    assert!(plan_for(&d, &after).steps.is_empty());
}

#[test]
fn a_copy_with_a_container_not_of_the_fleet_attached_stays_with_a_note() {
    let d = desired(&["h1"], vec![stack("web", vec![service("web", "app", 3)])]);
    let mut o = converge(&d);
    let nets = vec![
        net("first", "01", &["web-app-1", "web-app-3"]),
        net("second", "02", &["someone-else", "web-app-2"]),
    ];
    snap(&mut o).networks.insert("web_default".into(), nets);
    snap(&mut o).foreign_names.insert("someone-else".into());
    let p = plan_for(&d, &o);
    // Ours moves to the kept copy; the other copy is left alone, and the plan says why.
    assert_eq!(kept_id(&p), "first");
    assert_eq!(lines(&p), vec!["h1 ~ web-app-2  (drift)"]);
    assert!(removed(&p).is_empty());
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("web_default") && n.contains("someone-else")),
        "{:?}",
        p.notes
    );
}

#[test]
fn every_copy_of_a_network_no_longer_used_goes_after_its_containers() {
    let d = web();
    let mut o = converge(&d);
    snap(&mut o)
        .networks
        .get_mut("web_default")
        .unwrap()
        .push(net("zz-dup", "99", &[]));
    let none = desired(&["h1"], vec![]);
    let p = plan_for(&none, &o);
    assert_eq!(
        lines(&p),
        vec![
            "h1 - web-app-1  (stack `web` removed)",
            "h1 - web-app-2  (stack `web` removed)",
            "h1 - network web_default",
            "h1 - network web_default",
        ]
    );
    assert_eq!(p.steps[2].after, vec![0, 1]);
    assert_eq!(p.steps[3].after, vec![0, 1]);
    let after = execute_in_memory(&p, &o);
    assert!(plan_for(&none, &after).steps.is_empty());
}

#[test]
fn a_container_never_started_on_a_name_held_twice_is_replaced_not_started() {
    let d = web();
    let mut o = converge(&d);
    let s = snap(&mut o);
    // Created before the second copy appeared, never started: attached to neither yet.
    for n in s.networks.get_mut("web_default").unwrap() {
        n.containers.clear();
    }
    s.networks
        .get_mut("web_default")
        .unwrap()
        .push(net("zz-dup", "99", &[]));
    for c in s.containers.values_mut() {
        c.state = crate::model::observed::RunState::Created;
    }
    let p = plan_for(&d, &o);
    assert_eq!(
        lines(&p),
        vec![
            "h1 ~ web-app-1  (drift)",
            "h1 ~ web-app-2  (drift)",
            "h1 - network web_default",
        ]
    );
    match &p.steps[0].action {
        Action::Replace { changes, .. } => {
            assert_eq!(changes[0].old, "one of 2 networks of that name")
        }
        other => panic!("{other:?}"),
    }
}
