//! A frozen service is healed with the spec it runs: the services a failed or pending
//! `before:` job holds (a removed replica made again with the running spec hash, an exited one
//! started in place, a dead one made anew from its own config, nothing given the new spec, the
//! new spec rolling out once the job succeeded, a service that runs nothing waiting whole),
//! and `from_running`, the copy of a running replica into another slot.

use super::*;
use crate::core::pass::{assume_observed, plan_pass, HostMemory};
use crate::core::testkit::{desired, service, stack};
use crate::model::job::{JobSpec, LABEL_JOB};
use crate::model::observed::ObservedHost;
use crate::model::spec::{DesiredState, MountSpec, ServiceSpec};

/// Stack `s` on hosts `a` and `b`: a run-once job `migrate` (running `migrate`) before `web`
/// (`replicas` of `web_image`).
fn gated(migrate: &str, web_image: &str, replicas: u32) -> DesiredState {
    let mut job = service("migrate", 1);
    job.container.command = Some(vec![migrate.into()]);
    job.job = Some(JobSpec {
        before: vec!["web".into()],
        ..Default::default()
    });
    let mut web = service("web", replicas);
    web.container.image = web_image.into();
    desired(&["a", "b"], vec![stack("s", vec![job, web])])
}

fn svc<'d>(d: &'d DesiredState, name: &str) -> &'d ServiceSpec {
    &d.stacks["s"].services[name]
}

/// The run-once container of `d`'s `migrate` on host `a`, ended with `exit`.
fn job_run(d: &DesiredState, exit: i64) -> ObservedContainer {
    let job = svc(d, "migrate");
    let mut c = running("job", job.container.clone());
    c.actual.labels.insert(LABEL_JOB.into(), "once".into());
    c.name = crate::model::job::job_container_name("s", "migrate", "once-x");
    c.id = format!("id-{}-{exit}", c.name);
    c.service = "migrate".into();
    c.spec_hash = job.container.hash();
    c.state = RunState::Exited;
    c.exit_code = exit;
    c
}

fn containers<'o>(
    o: &'o mut ObservedState,
    host: &str,
) -> &'o mut BTreeMap<String, ObservedContainer> {
    match o.hosts.get_mut(host).unwrap() {
        ObservedHost::Reachable(s) => &mut s.containers,
        _ => unreachable!(),
    }
}

/// The container `name` on whichever host runs it.
fn replica<'o>(o: &'o mut ObservedState, name: &str) -> &'o mut ObservedContainer {
    let host = ["a", "b"]
        .into_iter()
        .find(|h| containers(o, h).contains_key(name))
        .unwrap();
    containers(o, host).get_mut(name).unwrap()
}

/// `old` converged (its job succeeded) on the fleet, with `new`'s job run ended with `exit`.
fn running_old(old: &DesiredState, new: &DesiredState, exit: Option<i64>) -> ObservedState {
    let mut o = assume_observed(old, "c1");
    let mut ok = job_run(old, 0);
    ok.name.push_str("-old");
    containers(&mut o, "a").insert(ok.name.clone(), ok);
    if let Some(exit) = exit {
        let run = job_run(new, exit);
        containers(&mut o, "a").insert(run.name.clone(), run);
    }
    o
}

/// Every replica a plan makes or replaces for `web`, as (name, spec hash, image).
fn made(plan: &Plan) -> Vec<(String, String, String)> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Create { replica, .. } | Action::Replace { replica, .. }
                if replica.service == "web" =>
            {
                Some((
                    replica.name.clone(),
                    replica.spec_hash.clone(),
                    replica.spec.image.clone(),
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_removed_replica_of_a_gated_service_is_made_again_with_its_running_spec() {
    let old = gated("m1", "busybox:1", 2);
    let new = gated("m2", "busybox:2", 2);
    let old_hash = svc(&old, "web").container.hash();
    let new_hash = svc(&new, "web").container.hash();
    assert_ne!(old_hash, new_hash);
    for exit in [Some(3), None] {
        let mut o = running_old(&old, &new, exit);
        // `docker rm -f` of `s-web-1`, wherever it runs.
        for h in ["a", "b"] {
            containers(&mut o, h).remove("s-web-1");
        }
        let p = plan_pass(&new, &o, &HostMemory::default(), "c2").plan;
        // Made again with the old spec (hash, image, labels), nothing with the new one.
        let m = made(&p);
        assert_eq!(m.len(), 1, "{exit:?}: {:?}", p.steps);
        assert_eq!(
            m[0],
            ("s-web-1".into(), old_hash.clone(), "busybox:1".into()),
            "{exit:?}"
        );
        let Action::Create { replica, reason } = &p
            .steps
            .iter()
            .find(|s| matches!(&s.action, Action::Create { .. }))
            .unwrap()
            .action
        else {
            unreachable!()
        };
        assert_eq!(*reason, Reason::Missing);
        assert_eq!(replica.labels[LABEL_SPEC_HASH], old_hash);
        assert_eq!(replica.labels[LABEL_SLOT], "1");
        assert_eq!(replica.labels[LABEL_FLEET], "t");
        assert!(p.rollouts.iter().all(|r| r.service != "web"));
        // The job is not run again once it failed; it is due while no run of its spec exists.
        assert_eq!(p.jobs.len(), usize::from(exit.is_none()), "{exit:?}");
        // Still held, and said so.
        assert!(!p.is_converged());
        assert!(
            p.pending
                .iter()
                .any(|x| x.service == "web" && x.slot == "*" && x.reason.contains("s/migrate")),
            "{:?}",
            p.pending
        );
        assert!(
            p.notes.iter().any(|n| n.contains(&format!(
                "`s/web` stays on its running spec {} until job `s/migrate`",
                &old_hash[..12]
            ))),
            "{:?}",
            p.notes
        );
    }
}

#[test]
fn nothing_of_a_gated_service_takes_the_new_spec_and_what_stopped_starts_in_place() {
    let old = gated("m1", "busybox:1", 2);
    let new = gated("m2", "busybox:2", 3);
    let mut o = running_old(&old, &new, Some(3));
    let c = replica(&mut o, "s-web-2");
    c.state = RunState::Exited;
    c.exit_code = 137;
    let p = plan_pass(&new, &o, &HostMemory::default(), "c2").plan;
    let lines: Vec<String> = p.steps.iter().map(|s| s.action.line()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("> s-web-2")),
        "started in place: {lines:?}"
    );
    // The third replica (a scale-up) is made too, with the running spec.
    let old_hash = svc(&old, "web").container.hash();
    assert_eq!(
        made(&p),
        vec![("s-web-3".into(), old_hash, "busybox:1".into())],
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("~ ")), "{lines:?}");
    assert!(p.rollouts.is_empty());
}

#[test]
fn a_replica_on_a_lost_host_moves_with_the_running_spec() {
    let old = gated("m1", "busybox:1", 2);
    let new = gated("m2", "busybox:2", 2);
    let mut o = running_old(&old, &new, Some(3));
    let lost = ["a", "b"]
        .into_iter()
        .find(|h| containers(&mut o, h).contains_key("s-web-1"))
        .unwrap();
    let other = if lost == "a" { "b" } else { "a" };
    o.hosts.insert(
        lost.into(),
        ObservedHost::Unreachable {
            reason: "gone".into(),
        },
    );
    let memory = HostMemory {
        down: [lost.to_string()].into(),
        ..Default::default()
    };
    let p = plan_pass(&new, &o, &memory, "c2").plan;
    let created: Vec<(&str, &Replica)> = p
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Create { replica, .. } => Some((s.host.as_str(), replica.as_ref())),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1, "{:?}", p.steps);
    assert_eq!(created[0].0, other);
    assert_eq!(created[0].1.name, "s-web-1");
    assert_eq!(created[0].1.spec_hash, svc(&old, "web").container.hash());
}

#[test]
fn a_network_the_frozen_replicas_are_on_stays() {
    let on = |migrate: &str, net: &str| {
        let mut d = gated(migrate, "busybox:1", 2);
        let s = d.stacks.get_mut("s").unwrap();
        let engine_name = format!("s_{net}");
        s.networks = [(
            net.to_string(),
            crate::model::spec::NetworkSpec {
                engine_name: engine_name.clone(),
                driver: "bridge".into(),
                ..Default::default()
            },
        )]
        .into();
        let web = s.services.get_mut("web").unwrap();
        web.container.networks = [(engine_name, Default::default())].into();
        d
    };
    let old = on("m1", "front");
    let new = on("m2", "back");
    let removes_front = |p: &Plan| {
        p.steps
            .iter()
            .any(|s| matches!(&s.action, Action::RemoveNetwork { name, .. } if name == "s_front"))
    };
    // Ungated, `web` moves to `back` and `front` goes.
    let p = plan_pass(
        &new,
        &running_old(&old, &new, Some(0)),
        &HostMemory::default(),
        "c2",
    )
    .plan;
    assert!(removes_front(&p), "{:?}", p.steps);
    // Frozen, `web` stays on `front`, which stays.
    let p = plan_pass(
        &new,
        &running_old(&old, &new, Some(3)),
        &HostMemory::default(),
        "c2",
    )
    .plan;
    assert!(!removes_front(&p), "{:?}", p.steps);
}

#[test]
fn a_dead_replica_of_a_gated_service_is_made_anew_from_its_own_config() {
    let old = gated("m1", "busybox:1", 1);
    let new = gated("m2", "busybox:2", 1);
    let mut o = running_old(&old, &new, Some(1));
    replica(&mut o, "s-web-1").state = RunState::Dead;
    let p = plan_pass(&new, &o, &HostMemory::default(), "c2").plan;
    let replaced: Vec<&Action> = p
        .steps
        .iter()
        .map(|s| &s.action)
        .filter(|a| matches!(a, Action::Replace { .. }))
        .collect();
    assert_eq!(replaced.len(), 1, "{:?}", p.steps);
    let Action::Replace {
        replica, reason, ..
    } = replaced[0]
    else {
        unreachable!()
    };
    assert_eq!(*reason, Reason::Dead);
    assert_eq!(replica.spec_hash, svc(&old, "web").container.hash());
    assert_eq!(replica.spec.image, "busybox:1");
}

#[test]
fn a_dependent_is_not_restarted_after_a_frozen_service_that_is_not() {
    let with_worker = |migrate: &str, image: &str| {
        let mut d = gated(migrate, image, 1);
        let mut worker = service("worker", 1);
        worker.depends_on.insert(
            "web".into(),
            crate::model::spec::DependsCondition::ServiceStarted,
        );
        worker.restart_with.insert("web".into());
        let s = d.stacks.get_mut("s").unwrap();
        s.services.insert("worker".into(), worker);
        d
    };
    let old = with_worker("m1", "busybox:1");
    let new = with_worker("m2", "busybox:2");
    // Ungated, `web` is replaced and `worker` restarted after it.
    let o = running_old(&old, &new, Some(0));
    let p = plan_pass(&new, &o, &HostMemory::default(), "c2").plan;
    let lines: Vec<String> = p.steps.iter().map(|s| s.action.line()).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("~ s-worker-1")),
        "{lines:?}"
    );
    // Frozen behind the failed job, `web` stays, and so does `worker`.
    let o = running_old(&old, &new, Some(3));
    let p = plan_pass(&new, &o, &HostMemory::default(), "c2").plan;
    assert!(p.steps.is_empty(), "{:?}", p.steps);
}

#[test]
fn once_the_job_succeeded_the_new_spec_rolls_out() {
    let old = gated("m1", "busybox:1", 2);
    let new = gated("m2", "busybox:2", 2);
    let mut o = running_old(&old, &new, Some(0));
    containers(&mut o, "a").retain(|n, _| n != "s-web-1");
    containers(&mut o, "b").retain(|n, _| n != "s-web-1");
    let p = plan_pass(&new, &o, &HostMemory::default(), "c2").plan;
    let new_hash = svc(&new, "web").container.hash();
    let m = made(&p);
    assert_eq!(m.len(), 2, "{:?}", p.steps);
    assert!(m.iter().all(|(_, h, i)| *h == new_hash && i == "busybox:2"));
    assert!(p.pending.is_empty(), "{:?}", p.pending);
    assert!(p.notes.iter().all(|n| !n.contains("stays on its running")));
}

#[test]
fn a_gated_service_that_runs_nothing_waits_whole() {
    let new = gated("m2", "busybox:2", 2);
    let mut o = crate::core::testkit::empty_observed(&new);
    let run = job_run(&new, 3);
    containers(&mut o, "a").insert(run.name.clone(), run);
    let p = plan_pass(&new, &o, &HostMemory::default(), "c2").plan;
    assert!(made(&p).is_empty(), "{:?}", p.steps);
    assert_eq!(p.pending.len(), 1, "{:?}", p.pending);
    assert_eq!(p.pending[0].slot, "*");
    assert!(p.pending[0].reason.contains("failed (exit code 3)"));
    assert!(p.notes.iter().all(|n| !n.contains("stays on its running")));
}

/// A running container of `s/web` in `slot`, as the engine reports it.
fn running(slot: &str, spec: crate::model::spec::ContainerSpec) -> ObservedContainer {
    ObservedContainer {
        id: format!("0123456789ab{slot}cdef"),
        name: format!("s-web-{slot}"),
        stack: "s".into(),
        service: "web".into(),
        slot: slot.into(),
        spec_hash: "oldhash".into(),
        commit: "c1".into(),
        created: String::new(),
        image_id: String::new(),
        state: RunState::Running,
        exit_code: 0,
        health: None,
        restart_count: 0,
        actual: spec,
        image_defaults: Default::default(),
    }
}

fn empty_of() -> ObservedState {
    ObservedState::default()
}

fn wanted(slot: &str) -> Replica {
    let spec = service("web", 2).container;
    Replica {
        stack: "s".into(),
        service: "web".into(),
        slot: slot.into(),
        name: format!("s-web-{slot}"),
        spec_hash: "newhash".into(),
        image: spec.image.clone(),
        spec,
        labels: BTreeMap::new(),
        secret_env: Default::default(),
    }
}

#[test]
fn a_copy_into_another_slot_takes_that_slots_volumes_and_hostname() {
    let mut actual = service("web", 2).container;
    actual.image = "busybox:1".into();
    actual.hostname = Some("0123456789ab".into());
    let anon = "b".repeat(64);
    actual.mounts = vec![
        MountSpec {
            kind: MountKind::Volume,
            source: anonymous_volume_name("s", "web", "2", "/data"),
            target: "/data".into(),
            read_only: false,
        },
        MountSpec {
            kind: MountKind::Volume,
            source: anon.clone(),
            target: "/image-volume".into(),
            read_only: false,
        },
        MountSpec {
            kind: MountKind::Volume,
            source: "s_shared".into(),
            target: "/shared".into(),
            read_only: true,
        },
    ];
    actual.labels.insert(LABEL_SLOT.into(), "2".into());
    actual.labels.insert("user".into(), "kept".into());
    actual.env.insert("DB_PASSWORD".into(), "hunter22".into());
    let mut from = running("2", actual);
    from.image_defaults.volumes.insert("/image-volume".into());
    let r = from_running(&wanted("1"), &from, "t").unwrap();
    assert_eq!(r.spec_hash, "oldhash");
    assert_eq!(r.name, "s-web-1");
    assert_eq!(r.spec.image, "busybox:1");
    assert_eq!(r.spec.hostname, None);
    let sources: Vec<&str> = r.spec.mounts.iter().map(|m| m.source.as_str()).collect();
    assert_eq!(
        sources,
        vec![
            anonymous_volume_name("s", "web", "1", "/data").as_str(),
            "s_shared"
        ]
    );
    assert_eq!(r.labels[LABEL_SLOT], "1");
    assert_eq!(r.labels[LABEL_SPEC_HASH], "oldhash");
    assert_eq!(r.labels[LABEL_COMMIT], "c1");
    assert_eq!(r.labels["user"], "kept");
    assert!(r.secret_env.contains("DB_PASSWORD"));
    // A hostname the spec set is kept.
    from.actual.hostname = Some("web".into());
    assert_eq!(
        from_running(&wanted("1"), &from, "t")
            .unwrap()
            .spec
            .hostname
            .as_deref(),
        Some("web")
    );
}

#[test]
fn a_spec_that_names_other_slots_or_binds_host_paths_is_not_copied_across() {
    let mut actual = service("web", 2).container;
    actual.network_mode = Some("container:s-sidecar-2".into());
    let from = running("2", actual.clone());
    let e = from_running(&wanted("1"), &from, "t").unwrap_err();
    assert!(e.contains("namespace"), "{e}");
    // Into its own slot (a dead replica made anew) it is copied as it is.
    assert!(from_running(&wanted("2"), &from, "t").is_ok());

    // A bind is a path of the source's host: not made on another host.
    let mut actual = service("web", 2).container;
    actual.mounts.push(MountSpec {
        kind: MountKind::Bind,
        source: "/srv/conf".into(),
        target: "/conf".into(),
        read_only: true,
    });
    let mut o = ObservedState::default();
    for h in ["a", "b"] {
        o.hosts.insert(
            h.into(),
            ObservedHost::Reachable(crate::model::observed::HostSnapshot::default()),
        );
    }
    let c = running("2", actual);
    containers(&mut o, "b").insert(c.name.clone(), c);
    let mut plan = plan_pass(
        &desired(&[], vec![]),
        &empty_of(),
        &HostMemory::default(),
        "c",
    )
    .plan;
    let e = rebuild(&wanted("1"), "a", &o, &Nets::new(), &mut plan).unwrap_err();
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("binds paths of host `b`")),
        "{e:?}"
    );
    assert!(rebuild(&wanted("1"), "b", &o, &Nets::new(), &mut plan).is_ok());
    // A network the source joins must be on the host, or made there by the plan.
    let mut actual = service("web", 2).container;
    actual.networks.insert("s_front".into(), Default::default());
    let c = running("2", actual);
    containers(&mut o, "b").clear();
    containers(&mut o, "b").insert(c.name.clone(), c);
    let e = rebuild(&wanted("1"), "a", &o, &Nets::new(), &mut plan).unwrap_err();
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("joins network `s_front`")),
        "{e:?}"
    );
    let nets: Nets = [("a".to_string(), "s_front".to_string())].into();
    assert!(rebuild(&wanted("1"), "a", &o, &nets, &mut plan).is_ok());
    // A fixed host port the target host has taken: not made there.
    let mut actual = service("web", 2).container;
    actual.ports.push(crate::model::spec::PortBinding {
        host_ip: String::new(),
        host_port: Some(8080),
        container_port: 80,
        protocol: "tcp".into(),
    });
    let c = running("2", actual);
    containers(&mut o, "b").clear();
    containers(&mut o, "b").insert(c.name.clone(), c);
    let e = rebuild(&wanted("1"), "b", &o, &Nets::new(), &mut plan).unwrap_err();
    assert!(
        e.as_deref().is_some_and(|e| e.contains("host port 8080")),
        "{e:?}"
    );
    assert!(rebuild(&wanted("1"), "a", &o, &Nets::new(), &mut plan).is_ok());
    // Nothing runs: no source, no reason of its own (the holder says why).
    assert_eq!(
        rebuild(&wanted("1"), "a", &empty_of(), &Nets::new(), &mut plan),
        Err(None)
    );
}
