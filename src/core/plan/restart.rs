//! `depends_on.<service>.restart: true`: when a pass replaces or starts again a replica of the
//! dependency, every replica of the dependent that is otherwise left alone is replaced after it
//! (its `after` holds the dependency's steps), as Compose restarts it. A replacement rather
//! than an engine restart, so the executor needs no new kind of step; the slot keeps its
//! anonymous volumes and its name.
//!
//! The same holds, with no `restart: true` written, for a service that shares the
//! dependency's network namespace or volumes: the manifest puts the source in `restart_with`.
//!
//! Pure, as the planner. It never adds a step for a dependency that is only created (a new
//! service, a first apply: nothing ran before it), nor for a dependent that already has a
//! step of its own.

use super::{Action, FieldChange, Planner, Reason, ReplicaKey};
use crate::model::observed::HostSnapshot;
use crate::model::spec::{replica_name, ServiceSpec};

impl Planner<'_> {
    /// The replacement of a converged replica whose `restart: true` dependency this plan
    /// replaces or starts again; `None` when there is none.
    pub(super) fn restart_after_dependency(
        &self,
        snap: &HostSnapshot,
        key: &ReplicaKey,
        service: &ServiceSpec,
    ) -> Option<Action> {
        let dep = service.restart_with.iter().find(|dep| {
            self.replica_steps
                .get(&(key.stack.clone(), (*dep).clone()))
                .into_iter()
                .flatten()
                .any(|id| {
                    matches!(
                        self.plan.steps[*id].action,
                        Action::Replace { .. } | Action::Start { .. }
                    )
                })
        })?;
        let name = replica_name(&key.stack, service, &key.slot);
        let c = snap.containers.get(&name)?;
        // A service sharing the dependency's namespace or volumes (`network_mode: service:`,
        // `volumes_from`) lost them with its container: it is made again beside the new one.
        let shared =
            crate::core::schedule::colocate::sources(&service.container).contains(dep.as_str());
        Some(Action::Replace {
            old_id: c.id.clone(),
            old_grace_secs: c.actual.stop_grace_period_secs,
            changes: vec![FieldChange {
                field: if shared {
                    format!("namespace of `{dep}`")
                } else {
                    format!("depends_on.{dep}.restart")
                },
                old: "running".into(),
                new: format!("restarted after `{dep}`"),
            }],
            reason: Reason::DependencyRestarted {
                service: dep.clone(),
            },
            replica: Box::new(self.replica(key, service, &name)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{execute_in_memory, lines, plan_for, service, stack};
    use super::*;
    use crate::core::testkit::{desired, empty_observed};
    use crate::model::observed::{ObservedHost, RunState};
    use crate::model::spec::{DependsCondition, DesiredState};

    /// `db` with a variable, `app` depending on it with `restart: true`, `other` without.
    fn state(db_env: &str) -> DesiredState {
        let mut db = service("web", "db", 1);
        db.container.env.insert("V".into(), db_env.into());
        let mut app = service("web", "app", 2);
        app.depends_on
            .insert("db".into(), DependsCondition::ServiceStarted);
        app.restart_with.insert("db".into());
        let mut other = service("web", "other", 1);
        other
            .depends_on
            .insert("db".into(), DependsCondition::ServiceStarted);
        desired(&["h1"], vec![stack("web", vec![app, db, other])])
    }

    #[test]
    fn a_replaced_dependency_replaces_its_restart_true_dependents_after_it() {
        let d = state("1");
        // A first apply creates: nothing ran before, nothing to restart.
        let first = plan_for(&d, &empty_observed(&d));
        assert!(first
            .steps
            .iter()
            .all(|s| !matches!(s.action, Action::Replace { .. })));
        let o = execute_in_memory(&first, &empty_observed(&d));
        assert!(plan_for(&d, &o).steps.is_empty());

        let changed = state("2");
        let p = plan_for(&changed, &o);
        assert_eq!(
            lines(&p),
            vec![
                "h1 ~ web-db-1  (drift)",
                "h1 ~ web-app-1  (`db` restarted (depends_on restart: true))",
                "h1 ~ web-app-2  (`db` restarted (depends_on restart: true))",
            ]
        );
        let Action::Replace { changes, .. } = &p.steps[1].action else {
            panic!("{:?}", p.steps[1]);
        };
        assert_eq!(changes[0].field, "depends_on.db.restart");
        let db_step = p.steps[0].id;
        assert!(p.steps[1..].iter().all(|s| s.after.contains(&db_step)));
        // Once done, the next pass is quiet: the dependents are not replaced again.
        let o2 = execute_in_memory(&p, &o);
        assert!(plan_for(&changed, &o2).steps.is_empty());
    }

    #[test]
    fn a_dependency_started_again_replaces_its_restart_true_dependents() {
        let d = state("1");
        let mut o = execute_in_memory(&plan_for(&d, &empty_observed(&d)), &empty_observed(&d));
        let Some(ObservedHost::Reachable(snap)) = o.hosts.get_mut("h1") else {
            panic!("h1 observed");
        };
        let db = snap.containers.get_mut("web-db-1").expect("db runs");
        db.state = RunState::Exited;
        db.exit_code = 137;
        let p = plan_for(&d, &o);
        let kinds: Vec<(String, &str)> = p
            .steps
            .iter()
            .map(|s| match &s.action {
                Action::Start { name, .. } => (name.clone(), "start"),
                Action::Replace {
                    replica, reason, ..
                } => {
                    assert_eq!(reason.code(), "dependency_restarted");
                    (replica.name.clone(), "replace")
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("web-db-1".to_string(), "start"),
                ("web-app-1".to_string(), "replace"),
                ("web-app-2".to_string(), "replace"),
            ]
        );
    }

    /// `web` (2 replicas) and `side` sharing its network namespace and volumes, as the
    /// manifest reads them: the source in `depends_on` and `restart_with`.
    fn sharing(web_env: &str) -> DesiredState {
        let mut web = service("web", "web", 2);
        web.container.env.insert("V".into(), web_env.into());
        let mut side = service("web", "side", 2);
        side.container.networks.clear();
        side.container.network_mode = Some("service:web".into());
        side.container.share.volumes_from = vec![crate::model::share::VolumesFrom {
            source: crate::model::share::ShareSource::Service("web".into()),
            read_only: true,
        }];
        side.depends_on
            .insert("web".into(), DependsCondition::ServiceStarted);
        side.restart_with.insert("web".into());
        desired(&["h1", "h2"], vec![stack("web", vec![side, web])])
    }

    #[test]
    fn a_sharing_service_is_made_after_its_source_beside_it_and_again_when_it_is_replaced() {
        let d = sharing("1");
        let o = empty_observed(&d);
        let first = plan_for(&d, &o);
        let step_of = |p: &crate::model::plan::Plan, name: &str| {
            p.steps
                .iter()
                .find(|s| match &s.action {
                    Action::Create { replica, .. } | Action::Replace { replica, .. } => {
                        replica.name == name
                    }
                    _ => false,
                })
                .cloned()
                .unwrap_or_else(|| panic!("no step for {name}"))
        };
        for slot in 1..=2 {
            let web = step_of(&first, &format!("web-web-{slot}"));
            let side = step_of(&first, &format!("web-side-{slot}"));
            assert_eq!(side.host, web.host, "slot {slot} beside its source");
            assert!(side.after.contains(&web.id), "{side:?}");
            let Action::Create { replica, .. } = &side.action else {
                panic!("{side:?}");
            };
            assert_eq!(
                replica.spec.network_mode.as_deref(),
                Some(format!("container:web-web-{slot}").as_str())
            );
            assert_eq!(
                replica.spec.share.engine_volumes_from,
                [format!("web-web-{slot}:ro")]
            );
        }
        let o = execute_in_memory(&first, &o);
        assert!(
            plan_for(&d, &o).steps.is_empty(),
            "{:?}",
            lines(&plan_for(&d, &o))
        );

        // The source replaced: each dependent after it, saying why.
        let changed = sharing("2");
        let p = plan_for(&changed, &o);
        for slot in 1..=2 {
            let web = step_of(&p, &format!("web-web-{slot}"));
            let side = step_of(&p, &format!("web-side-{slot}"));
            assert!(side.after.contains(&web.id));
            let Action::Replace { changes, .. } = &side.action else {
                panic!("{side:?}");
            };
            assert_eq!(changes[0].field, "namespace of `web`");
        }
        let o2 = execute_in_memory(&p, &o);
        assert!(plan_for(&changed, &o2).steps.is_empty());
    }

    /// A scale-down's removal carries the service's `pre_stop` hooks for the executor; a
    /// service the commit removed has none to give.
    #[test]
    fn a_removal_carries_the_desired_services_pre_stop_hooks() {
        let hook = crate::model::hooks::Hook {
            command: vec!["sh".into(), "-c".into(), "echo bye".into()],
            ..Default::default()
        };
        let with = |replicas: u32| {
            let mut web = service("web", "web", replicas);
            web.container.hooks.pre_stop = vec![hook.clone()];
            desired(&["h1"], vec![stack("web", vec![web])])
        };
        let two = with(2);
        let o = execute_in_memory(
            &plan_for(&two, &empty_observed(&two)),
            &empty_observed(&two),
        );
        let p = plan_for(&with(1), &o);
        let removal = p
            .steps
            .iter()
            .find_map(|s| match &s.action {
                Action::Remove { name, pre_stop, .. } => Some((name.clone(), pre_stop.clone())),
                _ => None,
            })
            .expect("a removal");
        assert_eq!(removal, ("web-web-2".to_string(), vec![hook.clone()]));
        let gone = desired(
            &["h1"],
            vec![stack("other", vec![service("other", "x", 1)])],
        );
        let p = plan_for(&gone, &o);
        assert!(p.steps.iter().all(|s| match &s.action {
            Action::Remove { pre_stop, .. } => pre_stop.is_empty(),
            _ => true,
        }));
    }
}
