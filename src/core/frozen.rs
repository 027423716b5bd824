//! Keeping stacks or single services as they run while their change waits: a plan of the new
//! commit cut down so that nothing of the frozen scopes takes the new spec, while what broke is
//! still healed from the spec that runs. Two holders use it: sync windows freeze whole stacks
//! (`core::windows::freeze`, when no earlier desired state is known), and a run-once job's
//! `before:` freezes the services it gates while its run for the new spec is pending or failed
//! (`core::jobs`).
//!
//! What a frozen scope may still do of a step: a heal with the spec that runs (a missing replica
//! whose spec its siblings still run, a removed copy of a slot that runs elsewhere), an exited,
//! paused or unhealthy container started again from its own config, and a missing (or dead)
//! replica made again from the spec read back from a running replica of its service (its
//! inspected config, labels and spec hash: `from_running`). No removal (not even of a network
//! its replicas are on), no spec change, no rollout, no restart of a dependent after it. A
//! replica that cannot be made from what runs is reported pending with why. A copy goes to
//! another host than its source's only when it binds no host path, joins networks that host
//! has (or the plan makes), and its fixed host ports are free there; it runs no hooks (an
//! engine does not report them) and keeps its source's commit label.
//!
//! It must not decide who is frozen (the holders do), and it does no I/O ("the planning core is
//! pure").

use std::collections::{BTreeMap, BTreeSet};

use crate::model::observed::{Health, ObservedContainer, ObservedState, RunState};
use crate::model::plan::{Action, PendingReplica, Plan, Reason, Replica, Step};
use crate::model::rollout::PREV_SUFFIX;
use crate::model::spec::{
    anonymous_volume_name, MountKind, LABEL_COMMIT, LABEL_FLEET, LABEL_SERVICE, LABEL_SLOT,
    LABEL_SPEC_HASH, LABEL_STACK,
};

/// Who holds a frozen scope, as its pending lines say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The start of a pending line: "held by a sync window", "frozen behind job `s/migrate`".
    pub by: String,
    /// Whether a replica whose service runs nothing to make it from is reported pending one
    /// by one (a sync window), or the holder reports the whole service itself (a job's `*`).
    pub report_unmade: bool,
}

/// What is frozen: whole stacks, or single services (stack, service), each with its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frozen {
    pub stacks: BTreeMap<String, Holder>,
    pub services: BTreeMap<(String, String), Holder>,
}

impl Frozen {
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty() && self.services.is_empty()
    }

    /// The holder of `stack`, or of its `service` when the step belongs to one.
    fn holder(&self, stack: &str, service: Option<&str>) -> Option<&Holder> {
        self.stacks.get(stack).or_else(|| {
            let service = service?;
            self.services.get(&(stack.to_string(), service.to_string()))
        })
    }
}

/// The stack and service a step acts on, where it acts on one (a network or a named volume
/// belongs to a stack only; a slot's anonymous volume to its service too).
pub fn step_scope(a: &Action) -> Option<(&str, Option<&str>)> {
    match a {
        Action::Create { replica, .. } | Action::Replace { replica, .. } => {
            Some((&replica.stack, Some(&replica.service)))
        }
        Action::Start { stack, service, .. }
        | Action::Remove { stack, service, .. }
        | Action::Restore { stack, service, .. } => Some((stack, Some(service))),
        Action::CreateNetwork { stack, .. } => Some((stack, None)),
        Action::CreateVolume { stack, volume } => {
            Some((stack, volume.labels.get(LABEL_SERVICE).map(String::as_str)))
        }
        Action::RemoveNetwork { .. } | Action::RecordQuarantine { .. } => None,
    }
}

/// Cuts `plan` down for the frozen scopes (see the module's paragraph) and returns the stacks
/// of which something was held back. Rollouts of frozen scopes are dropped (a start in place is
/// no rollout), and a replica that cannot be made from what runs is reported pending.
pub fn freeze(plan: &mut Plan, observed: &ObservedState, frozen: &Frozen) -> BTreeSet<String> {
    let mut touched = BTreeSet::new();
    if frozen.is_empty() {
        return touched;
    }
    let steps = std::mem::take(&mut plan.steps);
    // The networks this plan creates, by host: a replica made from a running one may join them.
    let nets: Nets = steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::CreateNetwork { network, .. } => {
                Some((s.host.clone(), network.engine_name.clone()))
            }
            _ => None,
        })
        .collect();
    let mut kept = Vec::with_capacity(steps.len());
    let mut resources = Vec::new();
    for mut step in steps {
        let Some(holder) = step_scope(&step.action).and_then(|(st, sv)| frozen.holder(st, sv))
        else {
            kept.push(step);
            continue;
        };
        let holder = holder.clone();
        let stack = step_scope(&step.action)
            .map(|(s, _)| s.to_string())
            .unwrap_or_default();
        let before = step.action.clone();
        match frozen_step(step.action, &step.host, observed, &nets, &holder, plan) {
            Some(a) => {
                if a != before {
                    touched.insert(stack);
                }
                let resource = matches!(
                    a,
                    Action::CreateNetwork { .. } | Action::CreateVolume { .. }
                );
                step.action = a;
                if resource {
                    resources.push(step);
                } else {
                    kept.push(step);
                }
            }
            None => {
                touched.insert(stack);
            }
        }
    }
    // A frozen scope's network or volume is made only when a kept step needs it.
    let needed: BTreeSet<usize> = kept.iter().flat_map(|s| s.after.iter().copied()).collect();
    for r in resources {
        if needed.contains(&r.id) {
            kept.push(r);
        } else if let Some((s, _)) = step_scope(&r.action) {
            touched.insert(s.to_string());
        }
    }
    drop_restarts_after_frozen(&mut kept, frozen);
    // A network the frozen replicas are still attached to stays, though the new spec leaves it.
    kept.retain(|s| match &s.action {
        Action::RemoveNetwork { id, .. } => !frozen_attached(observed, &s.host, id, frozen),
        _ => true,
    });
    kept.sort_by_key(|s| s.id);
    let ids: BTreeSet<usize> = kept.iter().map(|s| s.id).collect();
    for s in &mut kept {
        s.after.retain(|id| ids.contains(id));
    }
    plan.steps = kept;
    plan.rollouts.retain(|r| {
        let keep = frozen.holder(&r.stack, Some(&r.service)).is_none();
        if !keep {
            touched.insert(r.stack.clone());
        }
        keep
    });
    touched
}

/// Whether a container of a frozen scope is attached to the network `id` on `host`.
fn frozen_attached(observed: &ObservedState, host: &str, id: &str, frozen: &Frozen) -> bool {
    let Some(snap) = observed.hosts.get(host).and_then(|h| h.snapshot()) else {
        return false;
    };
    snap.networks
        .values()
        .flatten()
        .filter(|n| n.id == id)
        .flat_map(|n| &n.containers)
        .filter_map(|name| snap.containers.get(name))
        .any(|c| frozen.holder(&c.stack, Some(&c.service)).is_some())
}

/// `depends_on.<x>.restart` replaces a dependent after `x` is replaced or started again: when
/// `x` is frozen and nothing of it is, the dependent is left alone too.
fn drop_restarts_after_frozen(kept: &mut Vec<Step>, frozen: &Frozen) {
    let restarted: BTreeSet<(String, String)> = kept
        .iter()
        .filter(|s| matches!(s.action, Action::Replace { .. } | Action::Start { .. }))
        .filter_map(|s| step_scope(&s.action))
        .filter_map(|(st, sv)| Some((st.to_string(), sv?.to_string())))
        .collect();
    kept.retain(|s| match &s.action {
        Action::Replace {
            replica,
            reason: Reason::DependencyRestarted { service },
            ..
        } => {
            let dep = (replica.stack.clone(), service.clone());
            frozen.holder(&dep.0, Some(&dep.1)).is_none() || restarted.contains(&dep)
        }
        _ => true,
    });
}

/// What a frozen scope may still do of a step, or `None` (with a pending entry for a replica
/// that is not made).
fn frozen_step(
    a: Action,
    host: &str,
    observed: &ObservedState,
    nets: &Nets,
    holder: &Holder,
    plan: &mut Plan,
) -> Option<Action> {
    let find = |id: &str| -> Option<&ObservedContainer> {
        observed
            .hosts
            .get(host)?
            .snapshot()?
            .containers
            .values()
            .find(|c| c.id == id)
    };
    match a {
        Action::Create {
            ref replica,
            ref reason,
        } => {
            // Its service still runs this very spec: a plain heal.
            if !running_of(
                observed,
                &replica.stack,
                &replica.service,
                &replica.spec_hash,
            )
            .is_empty()
            {
                return Some(a);
            }
            match rebuild(replica, host, observed, nets, plan) {
                Ok(r) => Some(Action::Create {
                    replica: Box::new(r),
                    reason: reason.clone(),
                }),
                Err(why) => {
                    let why = why.or_else(|| {
                        holder
                            .report_unmade
                            .then(|| "its spec runs nowhere to be made from".to_string())
                    });
                    if let Some(why) = why {
                        plan.pending.push(PendingReplica {
                            stack: replica.stack.clone(),
                            service: replica.service.clone(),
                            slot: replica.slot.clone(),
                            reason: format!("{}: {why}", holder.by),
                        });
                    }
                    None
                }
            }
        }
        Action::Replace {
            ref replica,
            ref old_id,
            old_grace_secs,
            ..
        } => {
            let old = find(old_id)?;
            if old.spec_hash == replica.spec_hash {
                return Some(a);
            }
            // Made anew from its own config, in its own slot: a copy that changes nothing.
            let remake = |plan: &mut Plan, reason: Reason| {
                let again = from_running(replica, old, &plan.fleet).ok()?;
                absorb_secrets(&again, plan);
                Some(Action::Replace {
                    replica: Box::new(again),
                    old_id: old.id.clone(),
                    old_grace_secs,
                    changes: Vec::new(),
                    reason,
                })
            };
            let start = match (old.state, old.health) {
                (RunState::Exited, _) => Reason::Stopped {
                    exit_code: old.exit_code,
                },
                (RunState::Created, _) => Reason::NeverStarted,
                (RunState::Paused, _) => Reason::Paused,
                (RunState::Running, Some(Health::Unhealthy)) => Reason::Unhealthy,
                // A dead container cannot start again.
                (RunState::Dead, _) => return remake(plan, Reason::Dead),
                _ => return None,
            };
            Some(Action::Start {
                stack: replica.stack.clone(),
                service: replica.service.clone(),
                name: old.name.clone(),
                id: old.id.clone(),
                reason: start,
            })
        }
        Action::Start { .. } | Action::Restore { .. } => Some(a),
        // A copy of a slot that also runs elsewhere is a heal; every other removal is a change.
        Action::Remove {
            reason: Reason::Fenced { .. },
            ..
        } => Some(a),
        Action::Remove { .. } => None,
        // Networks and volumes: only those the kept steps need (`freeze`).
        other => Some(other),
    }
}

/// The containers of `stack/service` (no job run, no kept `.prev`) at `hash`, running first.
fn running_of<'o>(
    observed: &'o ObservedState,
    stack: &str,
    service: &str,
    hash: &str,
) -> Vec<(&'o str, &'o ObservedContainer)> {
    replicas_of(observed, stack, service)
        .into_iter()
        .filter(|(_, c)| c.spec_hash == hash)
        .collect()
}

/// Every replica container of `stack/service` on a reachable host, with its host.
fn replicas_of<'o>(
    observed: &'o ObservedState,
    stack: &str,
    service: &str,
) -> Vec<(&'o str, &'o ObservedContainer)> {
    observed
        .hosts
        .iter()
        .filter_map(|(h, o)| Some((h.as_str(), o.snapshot()?)))
        .flat_map(|(h, s)| s.containers.values().map(move |c| (h, c)))
        .filter(|(_, c)| {
            c.stack == stack
                && c.service == service
                && !c.spec_hash.is_empty()
                && !c.name.ends_with(PREV_SUFFIX)
                && !c.actual.labels.contains_key(crate::model::job::LABEL_JOB)
        })
        .collect()
}

/// The replica `wanted` (the new spec's, for its slot and host) made instead from the spec a
/// running replica of its service carries. The source is chosen among running replicas: of
/// the spec most of them run, on `host` first, then by name. `Err(None)` when the service
/// runs no replica at all; `Err(Some(why))` when the ones it runs cannot be copied faithfully.
fn rebuild(
    wanted: &Replica,
    host: &str,
    observed: &ObservedState,
    nets: &Nets,
    plan: &mut Plan,
) -> Result<Replica, Option<String>> {
    let all = replicas_of(observed, &wanted.stack, &wanted.service);
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, c) in &all {
        if c.state == RunState::Running {
            *count.entry(c.spec_hash.as_str()).or_default() += 1;
        }
    }
    let mut sources: Vec<(&str, &ObservedContainer)> = all
        .into_iter()
        .filter(|(_, c)| c.state == RunState::Running)
        .collect();
    if sources.is_empty() {
        return Err(None);
    }
    sources.sort_by_key(|(h, c)| {
        (
            std::cmp::Reverse(count.get(c.spec_hash.as_str()).copied().unwrap_or(0)),
            *h != host,
            c.name.clone(),
        )
    });
    let mut why = None;
    for (h, c) in sources {
        // Bind sources are paths of the host the source runs on (shipped files, secrets):
        // copied to another host only when it binds nothing.
        if h != host && c.actual.mounts.iter().any(|m| m.kind == MountKind::Bind) {
            why.get_or_insert_with(|| {
                format!("its running spec binds paths of host `{h}`, not made on `{host}`")
            });
            continue;
        }
        if let Some(port) = c
            .actual
            .ports
            .iter()
            .filter_map(|p| p.host_port.filter(|n| *n != 0).map(|n| (n, &p.protocol)))
            .find(|(n, proto)| port_taken(observed, host, *n, proto))
        {
            why.get_or_insert_with(|| {
                format!(
                    "its running spec publishes host port {}, which host `{host}` has taken",
                    port.0
                )
            });
            continue;
        }
        if let Some(n) = c
            .actual
            .networks
            .keys()
            .find(|n| !network_on(observed, nets, host, n))
        {
            why.get_or_insert_with(|| {
                format!("its running spec joins network `{n}`, which host `{host}` has not")
            });
            continue;
        }
        match from_running(wanted, c, &plan.fleet) {
            Ok(r) => {
                absorb_secrets(&r, plan);
                return Ok(r);
            }
            Err(e) => {
                why.get_or_insert(e);
            }
        }
    }
    Err(why)
}

/// Whether a container of the fleet on `host` publishes `port`/`protocol`.
fn port_taken(observed: &ObservedState, host: &str, port: u16, protocol: &str) -> bool {
    observed
        .hosts
        .get(host)
        .and_then(|h| h.snapshot())
        .is_some_and(|s| {
            s.containers
                .values()
                .flat_map(|c| &c.actual.ports)
                .any(|p| p.host_port == Some(port) && p.protocol == protocol)
        })
}

/// (host, network) pairs: the networks a plan creates.
type Nets = BTreeSet<(String, String)>;

/// Whether `host` has the network `name` (the engine's own, one it holds, or one the plan
/// creates there: `nets`) for a replica to join.
fn network_on(observed: &ObservedState, nets: &Nets, host: &str, name: &str) -> bool {
    if matches!(name, "bridge" | "host" | "none") {
        return true;
    }
    observed
        .hosts
        .get(host)
        .and_then(|h| h.snapshot())
        .is_some_and(|s| s.networks.contains_key(name) || s.foreign_networks.contains(name))
        || nets.contains(&(host.to_string(), name.to_string()))
}

/// The values of secret-looking variables of a read-back replica: masked like the commit's.
fn absorb_secrets(r: &Replica, plan: &mut Plan) {
    for (k, v) in &r.spec.env {
        if (crate::model::spec::is_secret_name(k) || r.secret_env.contains(k)) && v.len() >= 4 {
            plan.secret_values.insert(v.clone());
        }
    }
}

/// Whether `name` is an engine-made anonymous volume (64 hex digits).
fn engine_anonymous(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `wanted`'s slot made from what `from` runs: its inspected config, labels, spec hash and
/// commit, with what belongs to `from`'s own slot made the slot's (its anonymous volumes, its
/// engine-chosen hostname). A spec that names other containers by slot (`network_mode`,
/// `ipc`, `pid` of a container, `volumes_from`) or holds fixed addresses is copied only into
/// its own slot. Hooks are not read back from an engine: the copy runs none.
pub fn from_running(
    wanted: &Replica,
    from: &ObservedContainer,
    fleet: &str,
) -> Result<Replica, String> {
    let mut spec = from.actual.clone();
    let same_slot = from.slot == wanted.slot;
    if !same_slot {
        let names_others = |m: &Option<String>| {
            m.as_deref()
                .is_some_and(|m| m.starts_with("container:") || m.starts_with("service:"))
        };
        if names_others(&spec.network_mode)
            || names_others(&spec.ipc)
            || names_others(&spec.pid)
            || !spec.share.engine_volumes_from.is_empty()
        {
            return Err(format!(
                "its running spec shares another container's namespace or volumes by slot \
                 ({} is slot {})",
                from.name, from.slot
            ));
        }
        if spec
            .networks
            .values()
            .any(|n| n.ipv4_address.is_some() || n.ipv6_address.is_some())
        {
            return Err(format!(
                "its running spec has a fixed address ({} holds it)",
                from.name
            ));
        }
    }
    // The engine names a container without a hostname after its ID.
    let short: String = from.id.chars().take(12).collect();
    if spec.hostname.as_deref() == Some(short.as_str()) {
        spec.hostname = None;
    }
    let mut mounts = Vec::with_capacity(spec.mounts.len());
    for mut m in std::mem::take(&mut spec.mounts) {
        if m.kind == MountKind::Volume {
            if m.source == anonymous_volume_name(&from.stack, &from.service, &from.slot, &m.target)
            {
                m.source =
                    anonymous_volume_name(&wanted.stack, &wanted.service, &wanted.slot, &m.target);
            } else if engine_anonymous(&m.source) && from.image_defaults.volumes.contains(&m.target)
            {
                // The image's own VOLUME: the engine makes a new one for the new container.
                continue;
            }
        }
        mounts.push(m);
    }
    spec.mounts = mounts;
    spec.container_name = None;
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_FLEET.into(), fleet.to_string());
    labels.insert(LABEL_STACK.into(), wanted.stack.clone());
    labels.insert(LABEL_SERVICE.into(), wanted.service.clone());
    labels.insert(LABEL_SLOT.into(), wanted.slot.clone());
    labels.insert(LABEL_SPEC_HASH.into(), from.spec_hash.clone());
    labels.insert(LABEL_COMMIT.into(), from.commit.clone());
    spec.labels = labels.clone();
    let mut secret_env = wanted.secret_env.clone();
    secret_env.extend(
        spec.env
            .keys()
            .filter(|k| crate::model::spec::is_secret_name(k))
            .cloned(),
    );
    Ok(Replica {
        stack: wanted.stack.clone(),
        service: wanted.service.clone(),
        slot: wanted.slot.clone(),
        name: wanted.name.clone(),
        spec_hash: from.spec_hash.clone(),
        image: spec.image.clone(),
        spec,
        labels,
        secret_env,
    })
}

/// The spec hash the running replicas of `stack/service` carry, by how many run it (most
/// first): what a frozen service keeps.
pub fn running_hashes(observed: &ObservedState, stack: &str, service: &str) -> Vec<String> {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (_, c) in replicas_of(observed, stack, service) {
        *count.entry(c.spec_hash.clone()).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = count.into_iter().collect();
    v.sort_by_key(|(h, n)| (std::cmp::Reverse(*n), h.clone()));
    v.into_iter().map(|(h, _)| h).collect()
}

#[cfg(test)]
#[path = "frozen_tests.rs"]
mod tests;
