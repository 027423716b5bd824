//! The diff: desired state, placement and observed state in, an ordered `Plan` out.
//!
//! Every step names its host and why it exists; a `Replace` carries the field-level drift that
//! caused it. `convoy diff`, `convoy apply` and every daemon pass use this one function; dry-run
//! stops before the executor. "The planning core is pure": no I/O, no clock, ordered maps only.
//! It never emits a step on a container, network or volume that the fleet does not own ("only
//! what carries the fleet's label is touched"), and plans nothing on a host that could not be
//! observed ("a failing host never blocks the others"). A network name held more than once on
//! a host (two processes created it at once) is healed in `networks`: one is kept, what of the
//! fleet is on the others is replaced onto it, and the others go by ID.

mod adopt;
mod networks;
mod restart;
mod rollout;

use std::collections::{BTreeMap, BTreeSet};

use crate::core::drift::container_drift;
use crate::core::schedule::{Assignment, Placement, ReplicaKey};
use crate::model::observed::{
    HostSnapshot, ObservedContainer, ObservedHost, ObservedState, RunState,
};
use crate::model::plan::short_id;
pub use crate::model::plan::{
    Action, Conflict, FieldChange, Gate, OrphanVolume, PendingReplica, Plan, Reason, Replica, Step,
    Summary, JSON_VERSION,
};
use crate::model::spec::{
    container_name, replica_name, DesiredState, MountKind, ServiceSpec, VolumeSpec, LABEL_COMMIT,
    LABEL_FLEET, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC_HASH, LABEL_STACK,
};

/// Computes the plan that takes `observed` to `desired` under `placement`.
pub fn plan(
    desired: &DesiredState,
    placement: &Placement,
    observed: &ObservedState,
    commit: &str,
) -> Plan {
    let mut p = Planner {
        desired,
        placement,
        observed,
        commit,
        plan: Plan {
            fleet: desired.fleet.clone(),
            commit: commit.to_string(),
            steps: Vec::new(),
            conflicts: Vec::new(),
            unreachable: BTreeMap::new(),
            pending: Vec::new(),
            orphan_volumes: Vec::new(),
            notes: Vec::new(),
            secret_values: desired.secret_values.clone(),
            network_ids: networks::kept_ids(observed),
            rollouts: Vec::new(),
            quarantined: Vec::new(),
            jobs: Vec::new(),
            proxy: Vec::new(),
        },
        replica_steps: BTreeMap::new(),
        created_at: BTreeMap::new(),
        placed_containers: BTreeMap::new(),
        renamed: BTreeSet::new(),
        named: named_containers(observed),
    };
    p.run();
    p.plan
}

struct Planner<'a> {
    desired: &'a DesiredState,
    placement: &'a Placement,
    observed: &'a ObservedState,
    commit: &'a str,
    plan: Plan,
    /// Step ids of every container step, by (stack, service): what dependents wait for.
    replica_steps: BTreeMap<(String, String), Vec<usize>>,
    /// The step that creates each replica on its assigned host, for moves: the copy on the
    /// old host is removed only after the new one started.
    created_at: BTreeMap<ReplicaKey, usize>,
    /// (host, container name) of every placed replica, by (stack, service), in placement
    /// order: what a dependent's gates wait for, gathered once so that planning stays linear
    /// in replicas plus dependencies.
    placed_containers: BTreeMap<(String, String), Vec<(String, String)>>,
    /// (host, name) of owned containers that hold a placed replica's slot under another name
    /// (its `container_name` was set, changed or dropped): replaced by the step of that
    /// replica, or kept while the new name is held by someone else, never removed on their own.
    renamed: BTreeSet<(String, String)>,
    /// (host, slot) → name of the owned containers whose name is not the scheme's: where a
    /// slot's container is found when its `container_name` changed or was dropped, without
    /// a scan of the host per replica.
    named: BTreeMap<(String, ReplicaKey), String>,
}

/// The owned containers named otherwise than `<stack>-<service>-<slot>`, by host and slot.
fn named_containers(observed: &ObservedState) -> BTreeMap<(String, ReplicaKey), String> {
    let mut out = BTreeMap::new();
    for (host, obs) in &observed.hosts {
        let Some(snap) = obs.snapshot() else { continue };
        for (name, c) in &snap.containers {
            if *name != container_name(&c.stack, &c.service, &c.slot) && !rollout::is_prev(c) {
                let key = ReplicaKey {
                    stack: c.stack.clone(),
                    service: c.service.clone(),
                    slot: c.slot.clone(),
                };
                out.insert((host.clone(), key), name.clone());
            }
        }
    }
    out
}

impl<'a> Planner<'a> {
    fn run(&mut self) {
        for (host, obs) in &self.observed.hosts {
            if let ObservedHost::Unreachable { reason } = obs {
                self.plan.unreachable.insert(host.clone(), reason.clone());
            }
        }
        // A host in the fleet file that observation did not cover is not claimed in sync.
        for host in self.desired.hosts.keys() {
            if !self.observed.hosts.contains_key(host) {
                self.plan
                    .unreachable
                    .insert(host.clone(), "not observed".into());
            }
        }
        for (key, assignment) in &self.placement.replicas {
            if let Assignment::Pending { reason } = assignment {
                self.plan.pending.push(PendingReplica {
                    stack: key.stack.clone(),
                    service: key.service.clone(),
                    slot: key.slot.clone(),
                    reason: reason.clone(),
                });
            }
        }
        self.note_stacks_spanning_hosts();

        // Replicas placed per host, in placement order.
        let mut by_host: BTreeMap<&str, Vec<&ReplicaKey>> = BTreeMap::new();
        for (key, assignment) in &self.placement.replicas {
            if let Assignment::Host { host } = assignment {
                by_host.entry(host.as_str()).or_default().push(key);
                self.placed_containers
                    .entry((key.stack.clone(), key.service.clone()))
                    .or_default()
                    .push((
                        host.clone(),
                        self.desired
                            .replica_name(&key.stack, &key.service, &key.slot),
                    ));
            }
        }
        // The same, by service: hosts in name order, each with its replicas in placement order.
        type OnHosts<'k> = Vec<(&'k str, Vec<&'k ReplicaKey>)>;
        let mut by_service: BTreeMap<(&str, &str), OnHosts<'_>> = BTreeMap::new();
        for (host, keys) in &by_host {
            for key in keys {
                let hosts = by_service
                    .entry((key.stack.as_str(), key.service.as_str()))
                    .or_default();
                match hosts.last_mut() {
                    Some((h, ks)) if h == host => ks.push(key),
                    _ => hosts.push((host, vec![key])),
                }
            }
        }

        // Services in dependency order so that a dependency's steps exist before its
        // dependents name them in `after`.
        let order = self.service_order();
        let mut resource_steps: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (stack, service) in &order {
            let spec = &self.desired.stacks[stack].services[service];
            let placed = by_service.get(&(stack.as_str(), service.as_str()));
            let hash = spec.container.hash();
            let mut draft = rollout::survey(self.observed, stack, spec, &hash, self.commit);
            match draft.mode.clone() {
                rollout::Mode::Paused(why) => {
                    // Nothing is done to a paused rollout until its spec changes.
                    for (_, keys) in placed.into_iter().flatten() {
                        for key in keys {
                            self.plan.pending.push(PendingReplica {
                                stack: key.stack.clone(),
                                service: key.service.clone(),
                                slot: key.slot.clone(),
                                reason: format!("rollout paused (failure_action: pause): {why}"),
                            });
                        }
                    }
                    continue;
                }
                rollout::Mode::RollBack(record) => {
                    self.plan_restore(stack, service, &draft, &record);
                    self.plan.quarantined.push(record);
                }
                rollout::Mode::Quarantined(record) => self.plan.quarantined.push(record),
                rollout::Mode::Normal => {}
            }
            let (order, fallback) = rollout::effective_order(spec);
            draft.fallback = fallback;
            let mut replicas = 0;
            for (host, keys) in placed.into_iter().flatten() {
                replicas += keys.len();
                let Some(snap) = self.snapshot(host) else {
                    continue;
                };
                for key in keys {
                    let needs = self.ensure_resources(host, snap, key, spec, &mut resource_steps);
                    self.plan_replica(host, snap, key, spec, needs, &mut draft, order);
                }
            }
            if draft.mode == rollout::Mode::Normal {
                let fallback = draft.fallback.clone();
                if let Some(r) = rollout::finish(stack, spec, &hash, self.commit, replicas, draft) {
                    if let (Some(why), false) = (fallback, r.members.is_empty()) {
                        self.plan.notes.push(format!(
                            "service `{stack}/{service}` rolls out stop-first, not start-first: it {why}"
                        ));
                    }
                    self.plan.rollouts.push(r);
                }
            }
        }
        self.plan_removals(&by_host);
    }

    fn snapshot(&self, host: &str) -> Option<&'a HostSnapshot> {
        self.observed.hosts.get(host).and_then(|h| h.snapshot())
    }

    /// Stack services ordered so that every service comes after what it depends on: in
    /// rounds, each round every service whose dependencies are all done, in name order; a
    /// round with none ready (a cycle, rejected by the manifest) takes the first service left
    /// in name order. Kahn's algorithm, so linear in services plus dependencies: a chain of
    /// thousands plans in milliseconds.
    fn service_order(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (stack_name, stack) in &self.desired.stacks {
            let names: Vec<&String> = stack.services.keys().collect();
            let index: BTreeMap<&str, usize> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect();
            // Dependencies inside the stack left to do, and who waits for each service.
            let mut waiting_on = vec![0usize; names.len()];
            let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
            for (i, name) in names.iter().enumerate() {
                for dep in stack.services[*name].depends_on.keys() {
                    if let Some(&d) = index.get(dep.as_str()) {
                        waiting_on[i] += 1;
                        dependents[d].push(i);
                    }
                }
            }
            let mut done = vec![false; names.len()];
            let mut left = names.len();
            let mut first_left = 0;
            let mut round: Vec<usize> = (0..names.len()).filter(|i| waiting_on[*i] == 0).collect();
            while left > 0 {
                if round.is_empty() {
                    while done[first_left] {
                        first_left += 1;
                    }
                    round.push(first_left);
                }
                let mut next = Vec::new();
                for &s in &round {
                    done[s] = true;
                    left -= 1;
                    out.push((stack_name.clone(), names[s].clone()));
                }
                for &s in &round {
                    for &w in &dependents[s] {
                        waiting_on[w] -= 1;
                        if waiting_on[w] == 0 && !done[w] {
                            next.push(w);
                        }
                    }
                }
                next.sort_unstable();
                next.dedup();
                round = next;
            }
        }
        out
    }

    /// Creates (once per host) the networks and volumes a replica needs; returns their steps.
    fn ensure_resources(
        &mut self,
        host: &str,
        snap: &HostSnapshot,
        key: &ReplicaKey,
        service: &ServiceSpec,
        made: &mut BTreeMap<(String, String), usize>,
    ) -> Vec<usize> {
        let stack = key.stack.as_str();
        let stack_spec = &self.desired.stacks[stack];
        let mut needs = Vec::new();
        for engine_name in service.container.networks.keys() {
            let Some(net) = stack_spec
                .networks
                .values()
                .find(|n| &n.engine_name == engine_name)
            else {
                continue;
            };
            if net.external
                || snap
                    .networks
                    .get(engine_name)
                    .is_some_and(|n| !n.is_empty())
            {
                continue;
            }
            let key = (host.to_string(), format!("network/{engine_name}"));
            if let Some(id) = made.get(&key) {
                needs.push(*id);
                continue;
            }
            if snap.foreign_networks.contains(engine_name) {
                // A network of that name exists but is not ours: using it would attach our
                // containers to someone else's network, so report it instead.
                if !self
                    .plan
                    .conflicts
                    .iter()
                    .any(|c| c.host == host && &c.name == engine_name)
                {
                    self.plan.conflicts.push(Conflict {
                        host: host.to_string(),
                        name: engine_name.clone(),
                        reason: format!(
                            "network `{engine_name}` exists and is not owned by fleet `{}`",
                            self.desired.fleet
                        ),
                    });
                }
                continue;
            }
            let id = self.push(
                host,
                Action::CreateNetwork {
                    stack: stack.to_string(),
                    network: net.clone(),
                },
                vec![],
                vec![],
            );
            made.insert(key, id);
            needs.push(id);
        }
        let anonymous = service
            .container
            .anonymous_volumes(stack, &key.service, &key.slot)
            .into_iter()
            .map(|name| anonymous_volume(key, name));
        let named: Vec<VolumeSpec> = service
            .container
            .mounts
            .iter()
            .filter(|m| m.kind == MountKind::Volume)
            .filter_map(|m| {
                stack_spec
                    .volumes
                    .values()
                    .find(|v| v.engine_name == m.source)
                    .cloned()
            })
            .chain(anonymous)
            .collect();
        for vol in named {
            if vol.external || snap.volumes.contains_key(&vol.engine_name) {
                continue;
            }
            let key = (host.to_string(), format!("volume/{}", vol.engine_name));
            if let Some(id) = made.get(&key) {
                needs.push(*id);
                continue;
            }
            let id = self.push(
                host,
                Action::CreateVolume {
                    stack: stack.to_string(),
                    volume: vol,
                },
                vec![],
                vec![],
            );
            made.insert(key, id);
            needs.push(id);
        }
        needs
    }

    #[allow(clippy::too_many_arguments)]
    fn plan_replica(
        &mut self,
        host: &str,
        snap: &HostSnapshot,
        key: &ReplicaKey,
        service: &ServiceSpec,
        mut after: Vec<usize>,
        draft: &mut rollout::Draft,
        order: crate::model::rollout::UpdateOrder,
    ) {
        let name = replica_name(&key.stack, service, &key.slot);
        let mut replica = self.replica(key, service, &name);
        // Files, configs and secrets: bind mounts of this host's copies (`core::files`).
        if !replica.spec.files.is_empty() {
            let host_files = self
                .desired
                .hosts
                .get(host)
                .map(|h| h.files.clone())
                .unwrap_or_default();
            replica.spec = crate::core::files::for_host(
                &replica.spec,
                &host_files,
                &self.desired.fleet,
                &key.stack,
                snap.containers.get(&name),
                snap.files.as_deref(),
            );
        }
        let (dep_steps, gates) = self.dependencies(&key.stack, service);
        after.extend(dep_steps);
        // The slot's container under the name it had before (a `container_name` set, changed
        // or dropped): found by its labels, as every owned container is.
        let before = if snap.containers.contains_key(&name) {
            None
        } else {
            let scheme = container_name(&key.stack, &key.service, &key.slot);
            let holds_slot = |c: &&ObservedContainer| {
                c.stack == key.stack && c.service == key.service && c.slot == key.slot
            };
            snap.containers.get(&scheme).filter(holds_slot).or_else(|| {
                self.named
                    .get(&(host.to_string(), key.clone()))
                    .and_then(|n| snap.containers.get(n))
            })
        };
        if let Some(old) = before {
            self.renamed.insert((host.to_string(), old.name.clone()));
        }

        let step = match snap.containers.get(&name) {
            Some(c) => self.compare_on_networks(c, replica, service, snap),
            // An adopted Compose container (`adopt`): kept while what runs matches the file,
            // replaced by a labelled replica under the replica's name on the first change.
            None if before.is_some_and(|o| adopt::is_adopted(snap, o)) => {
                self.adopted_step(host, snap, before.expect("checked"), replica, service)
            }
            // Replaced under its new name (stop-first, as any replacement: the old one frees
            // its ports first). While someone else holds the new name, the conflict below is
            // reported and the old container keeps running.
            None if before.is_some() && !snap.foreign_names.contains(&name) => {
                let old = before.expect("checked");
                Some(Action::Replace {
                    old_id: old.id.clone(),
                    old_grace_secs: old.actual.stop_grace_period_secs,
                    changes: vec![FieldChange {
                        field: "container_name".into(),
                        old: old.name.clone(),
                        new: name.clone(),
                    }],
                    reason: Reason::Drift,
                    replica: Box::new(replica),
                })
            }
            None if snap.foreign_names.contains(&name) => {
                self.plan.conflicts.push(Conflict {
                    host: host.to_string(),
                    name: name.clone(),
                    reason: format!(
                        "a container named `{name}` exists and is not owned by fleet `{}`",
                        self.desired.fleet
                    ),
                });
                None
            }
            None => Some(Action::Create {
                replica: Box::new(replica),
                reason: Reason::Missing,
            }),
        };
        let step = step.or_else(|| self.restart_after_dependency(snap, key, service));
        if step.is_none() {
            if let Some(note) =
                adopt::in_sync_note(host, snap, snap.containers.get(&name).or(before))
            {
                self.plan.notes.push(note);
            }
        }
        // The rollout: a spec change joins the service's batches; under quarantine the
        // version that runs stays (`rollout`).
        let old = snap.containers.get(&name).or(before);
        let prev = draft.prevs.get(&(host.to_string(), key.slot.clone()));
        let hash = service.container.hash();
        let mut member = None;
        let step = match &draft.mode {
            rollout::Mode::RollBack(_) if prev.is_some() => None,
            rollout::Mode::Quarantined(_) | rollout::Mode::RollBack(_) => match step {
                Some(action) => {
                    let creates = matches!(action, Action::Create { .. });
                    let kept = rollout::quarantined_step(action, old, &hash);
                    if kept.is_none() && creates {
                        self.plan.pending.push(rollout::quarantined_pending(
                            &key.stack,
                            &key.service,
                            &key.slot,
                        ));
                    }
                    kept
                }
                None => None,
            },
            _ => {
                match &step {
                    // A one-shot service runs to its end: nothing to keep up, nothing to roll.
                    Some(action)
                        if !service.is_one_shot() && rollout::is_spec_change(action, old) =>
                    {
                        member = Some(prev.is_none());
                    }
                    Some(Action::Create { .. }) if prev.is_some() => member = Some(false),
                    None if prev.is_some() && old.is_some_and(|c| c.spec_hash == hash) => {
                        draft.changed.push(crate::model::rollout::Changed {
                            host: host.to_string(),
                            name: name.clone(),
                            has_prev: true,
                        });
                    }
                    _ => {}
                }
                step
            }
        };
        if let Some(action) = step {
            let creates = matches!(action, Action::Create { .. });
            let id = self.push(host, action, after, gates);
            if let Some(keep_prev) = member {
                draft.members.push(crate::model::rollout::Member {
                    step: id,
                    host: host.to_string(),
                    name: name.clone(),
                    batch: 0,
                    order,
                    keep_prev,
                    grace_secs: old.and_then(|c| c.actual.stop_grace_period_secs),
                });
            }
            self.replica_steps
                .entry((key.stack.clone(), key.service.clone()))
                .or_default()
                .push(id);
            if creates {
                self.created_at.insert(key.clone(), id);
            }
        }
    }

    /// `compare`, and a replacement of a container attached to a network of the fleet that is
    /// not the one kept of its name, so it comes up on the kept one and the other can go.
    fn compare_on_networks(
        &mut self,
        c: &ObservedContainer,
        replica: Replica,
        service: &ServiceSpec,
        snap: &HostSnapshot,
    ) -> Option<Action> {
        match networks::on_duplicate(snap, c) {
            None => self.compare(c, replica, service, snap),
            Some(change) => match self.compare(c, replica.clone(), service, snap) {
                Some(replace @ Action::Replace { .. }) => Some(replace),
                _ => Some(Action::Replace {
                    old_id: c.id.clone(),
                    old_grace_secs: c.actual.stop_grace_period_secs,
                    changes: vec![change],
                    reason: Reason::Drift,
                    replica: Box::new(replica),
                }),
            },
        }
    }

    /// What to do with an owned container that holds a desired replica's name.
    fn compare(
        &self,
        c: &ObservedContainer,
        replica: Replica,
        service: &ServiceSpec,
        snap: &HostSnapshot,
    ) -> Option<Action> {
        let actual =
            crate::core::schedule::colocate::normalise_actual(&replica.spec, &c.actual, snap);
        // File mounts are compared by name (`core::files`), the rest field by field.
        let (want, have, file_changes) = crate::core::files::split_drift(&replica.spec, &actual);
        let mut changes = container_drift(&want, &have, &c.image_defaults, &service.secret_env);
        changes.extend(file_changes);
        // A secret interpolated into any field (`command: --password ${DB_PASSWORD}`) is
        // masked too, not only those in `environment`. The old value may hold the previous
        // secret, which the repository no longer names: a field that carries a secret on either
        // side is shown as changed, never in clear. The old container's own secret-named
        // variables count as secrets as well.
        let mut secrets = std::borrow::Cow::Borrowed(&self.desired.secret_values);
        for (k, v) in &c.actual.env {
            if (crate::model::spec::is_secret_name(k) || service.secret_env.contains(k))
                && v.len() >= 4
            {
                secrets.to_mut().insert(v.clone());
            }
        }
        for ch in &mut changes {
            let old = crate::model::spec::mask_secrets(&ch.old, &secrets);
            let new = crate::model::spec::mask_secrets(&ch.new, &secrets);
            if old != ch.old || new != ch.new {
                ch.old = crate::core::drift::MASK.to_string();
                ch.new = crate::core::drift::MASK.to_string();
            }
        }
        // The image behind the tag moved (a pull happened): Compose recreates, so do we.
        if let Some(current) = snap.image_ids.get(&replica.spec.image) {
            if !c.image_id.is_empty()
                && current != &c.image_id
                && !changes.iter().any(|ch| ch.field == "image")
            {
                changes.push(FieldChange {
                    field: "image id".into(),
                    old: short_id(&c.image_id),
                    new: short_id(current),
                });
            }
        }
        // The engine restarts what crashes; what it reports unhealthy keeps running, so Convoy
        // replaces it, as Swarm does. A new container cannot be unhealthy before its
        // healthcheck failed `retries` times `interval` apart, which bounds how often this
        // happens to once per interval x retries.
        if c.health == Some(crate::model::observed::Health::Unhealthy)
            && c.state == RunState::Running
        {
            return Some(Action::Replace {
                old_id: c.id.clone(),
                old_grace_secs: c.actual.stop_grace_period_secs,
                changes,
                reason: Reason::Unhealthy,
                replica: Box::new(replica),
            });
        }
        if c.state == RunState::Dead {
            return Some(Action::Replace {
                old_id: c.id.clone(),
                old_grace_secs: c.actual.stop_grace_period_secs,
                changes,
                reason: Reason::Dead,
                replica: Box::new(replica),
            });
        }
        if !changes.is_empty() {
            return Some(Action::Replace {
                old_id: c.id.clone(),
                old_grace_secs: c.actual.stop_grace_period_secs,
                changes,
                reason: Reason::Drift,
                replica: Box::new(replica),
            });
        }
        // The host lost files the container binds (a wiped folder, a reboot): shipped again,
        // and the container made anew on them (a restart would find its bind sources gone).
        let missing = crate::core::files::missing(&replica.spec, snap.files.as_deref());
        if !missing.is_empty() {
            return Some(Action::Replace {
                old_id: c.id.clone(),
                old_grace_secs: c.actual.stop_grace_period_secs,
                changes,
                reason: Reason::FilesMissing { files: missing },
                replica: Box::new(replica),
            });
        }
        if c.spec_hash != replica.spec_hash && !adopt::is_adopted(snap, c) {
            // The engine shows no difference, but the spec says something changed (a field
            // the engine does not report the way it was written): replace to be sure.
            return Some(Action::Replace {
                old_id: c.id.clone(),
                old_grace_secs: c.actual.stop_grace_period_secs,
                changes,
                reason: Reason::SpecChanged,
                replica: Box::new(replica),
            });
        }
        let stopped = matches!(
            c.state,
            RunState::Exited | RunState::Created | RunState::Paused
        );
        let one_shot_done = service.is_one_shot() && c.state == RunState::Exited;
        // Created, never started, with `pre_start` hooks: a process ended between the create
        // and the hooks, which only a new replica runs (the executor runs them before a start).
        if c.state == RunState::Created && !replica.spec.hooks.pre_start.is_empty() {
            return Some(Action::Replace {
                old_id: c.id.clone(),
                old_grace_secs: c.actual.stop_grace_period_secs,
                changes,
                reason: Reason::NeverStarted,
                replica: Box::new(replica),
            });
        }
        if stopped && !one_shot_done {
            return Some(Action::Start {
                stack: replica.stack,
                service: replica.service,
                name: c.name.clone(),
                id: c.id.clone(),
                reason: match c.state {
                    RunState::Paused => Reason::Paused,
                    RunState::Created => Reason::NeverStarted,
                    _ => Reason::Stopped {
                        exit_code: c.exit_code,
                    },
                },
            });
        }
        None
    }

    fn replica(&self, key: &ReplicaKey, service: &ServiceSpec, name: &str) -> Replica {
        // The hash is the service's (anonymous volumes unresolved), the same for every slot.
        let spec_hash = service.container.hash();
        let mut spec = service
            .container
            .for_slot(&key.stack, &key.service, &key.slot);
        crate::core::schedule::colocate::resolve(self.desired, &key.stack, &key.slot, &mut spec);
        crate::core::schedule::colocate::resolve_links(
            self.desired,
            self.placement,
            &key.stack,
            self.placement.host_of(key),
            &mut spec,
        );
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_FLEET.into(), self.desired.fleet.clone());
        labels.insert(LABEL_STACK.into(), key.stack.clone());
        labels.insert(LABEL_SERVICE.into(), key.service.clone());
        labels.insert(LABEL_SLOT.into(), key.slot.clone());
        labels.insert(LABEL_SPEC_HASH.into(), spec_hash.clone());
        labels.insert(LABEL_COMMIT.into(), self.commit.to_string());
        Replica {
            stack: key.stack.clone(),
            service: key.service.clone(),
            slot: key.slot.clone(),
            name: name.to_string(),
            spec_hash,
            image: spec.image.clone(),
            spec,
            labels,
            secret_env: service.secret_env.clone(),
        }
    }

    /// The steps and gates of a service's `depends_on`.
    fn dependencies(&self, stack: &str, service: &ServiceSpec) -> (Vec<usize>, Vec<Gate>) {
        let mut after = Vec::new();
        let mut gates = Vec::new();
        for (dep, condition) in &service.depends_on {
            let key = (stack.to_string(), dep.clone());
            if let Some(ids) = self.replica_steps.get(&key) {
                after.extend(ids.iter().copied());
            }
            let containers = self
                .placed_containers
                .get(&key)
                .cloned()
                .unwrap_or_default();
            gates.push(Gate {
                stack: stack.to_string(),
                service: dep.clone(),
                condition: *condition,
                containers,
            });
        }
        (after, gates)
    }

    /// Owned containers that no desired replica on their host claims, and owned networks no
    /// desired container on their host uses.
    fn plan_removals(&mut self, by_host: &BTreeMap<&str, Vec<&ReplicaKey>>) {
        for (host, obs) in &self.observed.hosts {
            let Some(snap) = obs.snapshot() else { continue };
            let wanted: BTreeSet<String> = by_host
                .get(host.as_str())
                .map(|keys| {
                    keys.iter()
                        .map(|k| self.desired.replica_name(&k.stack, &k.service, &k.slot))
                        .collect()
                })
                .unwrap_or_default();
            let mut removals = Vec::new();
            for (name, c) in &snap.containers {
                if wanted.contains(name) || self.renamed.contains(&(host.clone(), name.clone())) {
                    continue;
                }
                // A kept previous replica of a slot still placed here belongs to its rollout,
                // which removes it once the rollout succeeds (`rollout`).
                if rollout::is_prev(c)
                    && wanted.contains(
                        name.strip_suffix(crate::model::rollout::PREV_SUFFIX)
                            .unwrap_or(name),
                    )
                {
                    continue;
                }
                let reason = self.removal_reason(host, c);
                // A replica moving to another host (drain) is started there first.
                let key = ReplicaKey {
                    stack: c.stack.clone(),
                    service: c.service.clone(),
                    slot: c.slot.clone(),
                };
                let after: Vec<usize> = self.created_at.get(&key).copied().into_iter().collect();
                let id = self.push(
                    host,
                    Action::Remove {
                        stack: c.stack.clone(),
                        service: c.service.clone(),
                        name: name.clone(),
                        id: c.id.clone(),
                        grace_secs: c.actual.stop_grace_period_secs,
                        reason,
                        pre_stop: self
                            .desired
                            .stacks
                            .get(&c.stack)
                            .and_then(|s| s.services.get(&c.service))
                            .map(|s| s.container.hooks.pre_stop.clone())
                            .unwrap_or_default(),
                    },
                    after,
                    vec![],
                );
                removals.push(id);
            }
            // Networks and volumes the desired containers on this host use.
            let mut used_networks = BTreeSet::new();
            let mut used_volumes = BTreeSet::new();
            for key in by_host.get(host.as_str()).into_iter().flatten() {
                if let Some(svc) = self
                    .desired
                    .stacks
                    .get(&key.stack)
                    .and_then(|s| s.services.get(&key.service))
                {
                    used_networks.extend(svc.container.networks.keys().cloned());
                    used_volumes.extend(
                        svc.container
                            .for_slot(&key.stack, &key.service, &key.slot)
                            .mounts
                            .into_iter()
                            .filter(|m| m.kind == MountKind::Volume)
                            .map(|m| m.source),
                    );
                }
            }
            used_networks.extend(self.desired.kept_networks.iter().cloned());
            let replaced: Vec<usize> = self
                .plan
                .steps
                .iter()
                .filter(|s| &s.host == host && matches!(s.action, Action::Replace { .. }))
                .map(|s| s.id)
                .collect();
            self.plan_network_removals(host, snap, &used_networks, &removals, &replaced);
            for (name, vol) in &snap.volumes {
                if !used_volumes.contains(name) {
                    self.plan.orphan_volumes.push(OrphanVolume {
                        host: host.clone(),
                        name: name.clone(),
                        stack: vol.stack.clone(),
                    });
                }
            }
        }
    }

    /// A rollout a process left failed: every kept previous replica of the service takes its
    /// name back and runs, and the spec is quarantined on every host of the service.
    fn plan_restore(
        &mut self,
        stack: &str,
        service: &str,
        draft: &rollout::Draft,
        record: &crate::model::rollout::QuarantineRecord,
    ) {
        for ((host, _), prev) in &draft.prevs {
            let Some(snap) = self.snapshot(host) else {
                continue;
            };
            let name = prev
                .name
                .strip_suffix(crate::model::rollout::PREV_SUFFIX)
                .unwrap_or(&prev.name)
                .to_string();
            let new_id = snap.containers.get(&name).map(|c| c.id.clone());
            self.push(
                host,
                Action::Restore {
                    stack: stack.to_string(),
                    service: service.to_string(),
                    name,
                    new_id,
                    prev_id: prev.id.clone(),
                    reason: Reason::RolloutFailed {
                        reason: record.reason.clone(),
                    },
                },
                vec![],
                vec![],
            );
        }
        for (host, image) in &draft.record_images {
            self.push(
                host,
                Action::RecordQuarantine {
                    record: record.clone(),
                    image: image.clone(),
                },
                vec![],
                vec![],
            );
        }
    }

    fn removal_reason(&self, host: &str, c: &ObservedContainer) -> Reason {
        let Some(stack) = self.desired.stacks.get(&c.stack) else {
            return Reason::StackRemoved {
                stack: c.stack.clone(),
            };
        };
        let Some(service) = stack.services.get(&c.service) else {
            return Reason::ServiceRemoved {
                service: c.service.clone(),
            };
        };
        let key = ReplicaKey {
            stack: c.stack.clone(),
            service: c.service.clone(),
            slot: c.slot.clone(),
        };
        match self.placement.host_of(&key) {
            Some(other) if other != host => {
                // A copy already runs where the slot is placed: this one is the duplicate
                // (its host came back after the slot was started elsewhere).
                let copy_runs_there = self
                    .observed
                    .hosts
                    .get(other)
                    .and_then(ObservedHost::snapshot)
                    .is_some_and(|s| s.containers.contains_key(&c.name));
                if copy_runs_there {
                    Reason::Fenced {
                        kept_on: other.to_string(),
                    }
                } else {
                    Reason::Moved {
                        to: other.to_string(),
                    }
                }
            }
            Some(_) => Reason::NotDesired,
            None if service.mode == crate::model::spec::DeployMode::Replicated => {
                Reason::ScaledDown {
                    replicas: service.replicas,
                }
            }
            None => Reason::HostIneligible,
        }
    }

    fn note_stacks_spanning_hosts(&mut self) {
        let mut hosts_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (key, a) in &self.placement.replicas {
            if let Assignment::Host { host } = a {
                hosts_of.entry(&key.stack).or_default().insert(host);
            }
        }
        for (stack, hosts) in hosts_of {
            // With `proxy:`, the meshes carry names across hosts (`core::proxy::mesh`).
            if hosts.len() > 1 && self.desired.settings.proxy.is_none() {
                self.plan.notes.push(format!(
                    "stack `{stack}` spans {} hosts: its services reach each other by name only on the same host",
                    hosts.len()
                ));
            }
        }
    }

    fn push(
        &mut self,
        host: &str,
        action: Action,
        mut after: Vec<usize>,
        gates: Vec<Gate>,
    ) -> usize {
        let id = self.plan.steps.len();
        after.sort_unstable();
        after.dedup();
        self.plan.steps.push(Step {
            id,
            host: host.to_string(),
            action,
            after,
            gates,
        });
        id
    }
}

/// The volume a slot's anonymous volume is created as: local, owned by the fleet like the
/// stack's named volumes (the executor adds the fleet, stack and resource labels), and
/// labelled with the service and slot it belongs to. Never removed, like every volume.
fn anonymous_volume(key: &ReplicaKey, engine_name: String) -> VolumeSpec {
    VolumeSpec {
        engine_name,
        driver: "local".into(),
        driver_opts: BTreeMap::new(),
        labels: BTreeMap::from([
            (LABEL_SERVICE.to_string(), key.service.clone()),
            (LABEL_SLOT.to_string(), key.slot.clone()),
        ]),
        external: false,
    }
}

/// The observed state of a fleet where `desired` runs exactly as placed: what `diff --base`
/// compares against, so a review needs no engine. Pure.
pub fn assume_converged(
    desired: &DesiredState,
    placement: &Placement,
    commit: &str,
) -> ObservedState {
    let mut hosts: BTreeMap<String, HostSnapshot> = desired
        .hosts
        .keys()
        .map(|h| (h.clone(), HostSnapshot::default()))
        .collect();
    for (key, a) in &placement.replicas {
        let Assignment::Host { host } = a else {
            continue;
        };
        let Some(stack) = desired.stacks.get(&key.stack) else {
            continue;
        };
        let Some(service) = stack.services.get(&key.service) else {
            continue;
        };
        let snap = hosts.entry(host.clone()).or_default();
        let name = replica_name(&key.stack, service, &key.slot);
        let mut spec = service
            .container
            .for_slot(&key.stack, &key.service, &key.slot);
        if !spec.files.is_empty() {
            spec = crate::core::files::assume_held(
                &spec,
                desired.hosts.get(host).map(|h| &h.files),
                &desired.fleet,
                &key.stack,
                snap,
            );
        }
        crate::core::schedule::colocate::resolve(desired, &key.stack, &key.slot, &mut spec);
        crate::core::schedule::colocate::resolve_links(
            desired,
            placement,
            &key.stack,
            Some(host),
            &mut spec,
        );
        for net in stack
            .networks
            .values()
            .filter(|n| spec.networks.contains_key(&n.engine_name))
        {
            if !net.external {
                let nets = snap.networks.entry(net.engine_name.clone()).or_default();
                if nets.is_empty() {
                    nets.push(crate::model::observed::ObservedNetwork {
                        id: format!("assumed-{}", net.engine_name),
                        stack: key.stack.clone(),
                        resource: net.engine_name.clone(),
                        ..Default::default()
                    });
                }
                nets[0].containers.insert(name.clone());
            }
        }
        for vol in stack.volumes.values() {
            if !vol.external
                && spec
                    .mounts
                    .iter()
                    .any(|m| m.kind == MountKind::Volume && m.source == vol.engine_name)
            {
                snap.volumes.insert(
                    vol.engine_name.clone(),
                    crate::model::observed::ObservedResource {
                        stack: key.stack.clone(),
                        resource: vol.engine_name.clone(),
                    },
                );
            }
        }
        for name in service
            .container
            .anonymous_volumes(&key.stack, &key.service, &key.slot)
        {
            snap.volumes.insert(
                name.clone(),
                crate::model::observed::ObservedResource {
                    stack: key.stack.clone(),
                    resource: name,
                },
            );
        }
        snap.containers.insert(
            name.clone(),
            ObservedContainer {
                id: format!("assumed-{name}"),
                name,
                stack: key.stack.clone(),
                service: key.service.clone(),
                slot: key.slot.clone(),
                spec_hash: service.container.hash(),
                commit: commit.to_string(),
                created: String::new(),
                image_id: String::new(),
                state: if service.is_one_shot() {
                    RunState::Exited
                } else {
                    RunState::Running
                },
                exit_code: 0,
                health: None,
                restart_count: 0,
                actual: spec,
                image_defaults: Default::default(),
            },
        );
    }
    ObservedState {
        hosts: hosts
            .into_iter()
            .map(|(h, s)| (h, ObservedHost::Reachable(s)))
            .collect(),
    }
}

#[cfg(test)]
mod adopt_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod volume_tests;
