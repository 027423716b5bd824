//! The rollout's planning: a spec change becomes batches over the hosts, heals stay immediate,
//! a rollout is taken up from the labels (kept `.prev` replicas, replicas already changed), a
//! failed one found on the labels is put back and quarantined, and a quarantined spec is never
//! tried again while the version that runs is kept.

use crate::core::plan::tests::{converge, execute_in_memory, lines, plan_for, service, stack};
use crate::core::testkit::desired;
use crate::model::observed::{Health, ObservedContainer, ObservedHost, ObservedState, RunState};
use crate::model::plan::{Action, Reason};
use crate::model::rollout::{prev_name, QuarantineRecord, UpdateOrder};
use crate::model::spec::{DesiredState, PortBinding, RestartName};

fn web(replicas: u32, parallelism: u32) -> DesiredState {
    let mut s = service("web", "app", replicas);
    s.rollout.update.parallelism = parallelism;
    desired(&["h1", "h2", "h3"], vec![stack("web", vec![s])])
}

fn change(d: &mut DesiredState) {
    let s = d
        .stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap();
    s.container.command = Some(vec!["sleep".into(), "2000".into()]);
}

fn containers(o: &mut ObservedState) -> impl Iterator<Item = (&String, &mut ObservedContainer)> {
    o.hosts.iter_mut().flat_map(|(h, obs)| match obs {
        ObservedHost::Reachable(s) => s.containers.values_mut().map(move |c| (h, c)).collect(),
        ObservedHost::Unreachable { .. } => Vec::new(),
    })
}

/// `name` on its host becomes the kept `.prev` of a new replica of `d`'s spec, `state`.
fn half_done(o: &mut ObservedState, d: &DesiredState, name: &str, state: RunState) {
    let hash = d.stacks["web"].services["app"].container.hash();
    for obs in o.hosts.values_mut() {
        let ObservedHost::Reachable(s) = obs else {
            continue;
        };
        if let Some(mut old) = s.containers.remove(name) {
            let mut new = old.clone();
            old.name = prev_name(name);
            old.id = format!("{}-old", old.id);
            old.state = RunState::Exited;
            s.containers.insert(old.name.clone(), old);
            new.spec_hash = hash.clone();
            new.state = state;
            new.actual.command = Some(vec!["sleep".into(), "2000".into()]);
            s.containers.insert(name.to_string(), new);
        }
    }
}

#[test]
fn a_spec_change_rolls_out_in_batches_across_the_hosts() {
    let mut d = web(4, 2);
    let o = converge(&d);
    change(&mut d);
    let p = plan_for(&d, &o);
    assert_eq!(p.rollouts.len(), 1, "{:?}", lines(&p));
    let r = &p.rollouts[0];
    assert_eq!((r.batches, r.members.len(), r.replicas), (2, 4, 4));
    let batch = |b: usize| -> Vec<String> {
        r.members
            .iter()
            .filter(|m| m.batch == b)
            .map(|m| m.name.clone())
            .collect()
    };
    assert_eq!(batch(0), ["web-app-1", "web-app-2"]);
    assert_eq!(batch(1), ["web-app-3", "web-app-4"]);
    // Slots 1 and 2 are on two hosts: a batch spans hosts.
    let hosts: std::collections::BTreeSet<&str> = r
        .members
        .iter()
        .filter(|m| m.batch == 0)
        .map(|m| m.host.as_str())
        .collect();
    assert_eq!(hosts.len(), 2);
    assert!(r.members.iter().all(|m| m.keep_prev));
    assert!(r.members.iter().all(|m| m.order == UpdateOrder::StopFirst));
    // Every member is a Replace step of the plan.
    for m in &r.members {
        assert!(matches!(p.steps[m.step].action, Action::Replace { .. }));
    }
    // parallelism 0: one batch of all.
    let mut d0 = web(4, 0);
    let o0 = converge(&d0);
    change(&mut d0);
    assert_eq!(plan_for(&d0, &o0).rollouts[0].batches, 1);
    // Rollout settings are no part of the spec: changing them alone plans nothing.
    let mut d2 = web(4, 3);
    d2.stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap()
        .rollout
        .update
        .monitor_ms = 1;
    assert!(plan_for(&d2, &o).is_converged());
}

#[test]
fn heals_and_one_shot_services_are_not_rolled() {
    let d = web(2, 1);
    let mut o = converge(&d);
    for (_, c) in containers(&mut o) {
        if c.name == "web-app-1" {
            c.health = Some(Health::Unhealthy);
        }
    }
    let p = plan_for(&d, &o);
    assert!(p.rollouts.is_empty(), "{:?}", p.rollouts);
    assert_eq!(lines(&p).len(), 1);

    let mut d = web(2, 1);
    let s = d
        .stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap();
    s.container.restart.name = RestartName::No;
    let o = converge(&d);
    change(&mut d);
    let p = plan_for(&d, &o);
    assert!(p.rollouts.is_empty());
    assert_eq!(p.summary().replace, 2);
}

#[test]
fn start_first_falls_back_where_a_host_port_is_fixed_and_says_so() {
    let mut d = web(2, 1);
    let s = d
        .stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap();
    s.rollout.update.order = UpdateOrder::StartFirst;
    let o = converge(&d);
    change(&mut d);
    let p = plan_for(&d, &o);
    assert!(p.rollouts[0]
        .members
        .iter()
        .all(|m| m.order == UpdateOrder::StartFirst));

    let s = d
        .stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap();
    s.container.ports = vec![PortBinding {
        host_ip: String::new(),
        host_port: Some(8080),
        container_port: 80,
        protocol: "tcp".into(),
    }];
    let o = converge(&web(2, 1));
    let p = plan_for(&d, &o);
    assert!(p.rollouts[0]
        .members
        .iter()
        .all(|m| m.order == UpdateOrder::StopFirst));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("stop-first") && n.contains("8080")),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_rollout_is_taken_up_from_the_labels() {
    let mut d = web(3, 1);
    let mut o = converge(&d);
    change(&mut d);
    // A process ended after slot 1 was replaced and before it was proven.
    half_done(&mut o, &d, "web-app-1", RunState::Running);
    let p = plan_for(&d, &o);
    let r = &p.rollouts[0];
    let names: Vec<&str> = r.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["web-app-2", "web-app-3"]);
    assert_eq!(r.changed.len(), 1);
    assert_eq!(r.changed[0].name, "web-app-1");
    // The kept replica is not removed by the plan: the rollout removes it when it succeeds.
    assert!(
        !lines(&p).iter().any(|l| l.contains(".prev")),
        "{:?}",
        lines(&p)
    );
    // Slot 1's kept replica is the one to go back to; the others keep theirs.
    assert!(r.members.iter().all(|m| m.keep_prev));
    // A replica replaced again while an older one is kept: the older one stays kept.
    let mut d3 = d.clone();
    d3.stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap()
        .container
        .command = Some(vec!["sleep".into(), "3000".into()]);
    let p3 = plan_for(&d3, &o);
    let m1 = p3.rollouts[0]
        .members
        .iter()
        .find(|m| m.name == "web-app-1")
        .unwrap();
    assert!(!m1.keep_prev);
}

#[test]
fn a_failed_rollout_found_on_the_labels_is_put_back_and_quarantined() {
    let mut d = web(3, 1);
    let mut o = converge(&d);
    change(&mut d);
    half_done(&mut o, &d, "web-app-1", RunState::Exited);
    let p = plan_for(&d, &o);
    assert!(p.rollouts.is_empty(), "{:?}", p.rollouts);
    let restores: Vec<&Action> = p
        .steps
        .iter()
        .map(|s| &s.action)
        .filter(|a| matches!(a, Action::Restore { .. }))
        .collect();
    assert_eq!(restores.len(), 1, "{:?}", lines(&p));
    let Action::Restore { name, reason, .. } = restores[0] else {
        unreachable!()
    };
    assert_eq!(name, "web-app-1");
    assert!(matches!(reason, Reason::RolloutFailed { .. }));
    let records = p
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::RecordQuarantine { .. }))
        .count();
    assert_eq!(records, 3, "a record on every host of the service");
    assert_eq!(p.quarantined.len(), 1);
    // Nothing else of the service is replaced by the failed spec.
    assert_eq!(p.summary().replace, 1, "{:?}", lines(&p));

    // The next pass: quarantined, and the version that runs is left alone.
    let o2 = execute_in_memory(&p, &o);
    let p2 = plan_for(&d, &o2);
    assert!(p2.steps.is_empty(), "{:?}", lines(&p2));
    assert!(p2.rollouts.is_empty());
    assert_eq!(p2.quarantined.len(), 1);
    assert!(!p2.is_converged());

    // Under `failure_action: pause`, nothing is done and the replicas say why.
    let mut dp = d.clone();
    dp.stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap()
        .rollout
        .update
        .failure_action = crate::model::rollout::FailureAction::Pause;
    let pp = plan_for(&dp, &o);
    assert!(pp.steps.is_empty(), "{:?}", lines(&pp));
    assert!(pp.pending.iter().all(|r| r.reason.contains("paused")));
    assert_eq!(pp.pending.len(), 3);
}

#[test]
fn a_quarantined_spec_is_never_tried_and_the_old_version_is_healed() {
    let mut d = web(2, 1);
    let mut o = converge(&d);
    change(&mut d);
    let hash = d.stacks["web"].services["app"].container.hash();
    for obs in o.hosts.values_mut() {
        if let ObservedHost::Reachable(s) = obs {
            s.quarantines.push(QuarantineRecord {
                stack: "web".into(),
                service: "app".into(),
                spec_hash: hash.clone(),
                commit: "c0".into(),
                reason: "web-app-1 on host `h1`: exited with code 3".into(),
                batch: 1,
                host: "h1".into(),
                at: String::new(),
                id: "rec".into(),
            });
        }
    }
    // A crashed old replica is started again, as the old version.
    for (_, c) in containers(&mut o) {
        if c.name == "web-app-2" {
            c.state = RunState::Exited;
            c.exit_code = 137;
        }
    }
    // An unhealthy one is restarted.
    for (_, c) in containers(&mut o) {
        if c.name == "web-app-1" {
            c.health = Some(Health::Unhealthy);
        }
    }
    let p = plan_for(&d, &o);
    assert_eq!(
        lines(&p)
            .iter()
            .map(|l| l.split_once(' ').unwrap().1)
            .collect::<Vec<_>>(),
        [
            "> web-app-1  (start: unhealthy)",
            "> web-app-2  (start: stopped (exit code 137))"
        ]
    );
    assert!(p.rollouts.is_empty());
    assert_eq!(p.quarantined.len(), 1);
    // A spec that changes to anything else is tried at once, and the old records go then.
    let mut d2 = d.clone();
    d2.stacks
        .get_mut("web")
        .unwrap()
        .services
        .get_mut("app")
        .unwrap()
        .container
        .command = Some(vec!["sleep".into(), "4000".into()]);
    let p2 = plan_for(&d2, &o);
    assert!(p2.quarantined.is_empty());
    assert_eq!(p2.rollouts[0].stale_records.len(), 3);
}
