//! Rolling updates, decided here as Nomad's reconciler decides them: from the containers'
//! labels alone, so a restarted daemon, or a one-shot `convoy apply`, takes a rollout up where
//! it was.
//!
//! For each service the planner first *surveys* what its containers say: a quarantine record
//! of the desired spec (`Quarantined`: the spec is not tried again, the version that runs is
//! kept and started again when it stops), a replica of the desired spec that failed while its
//! predecessor is kept as `<name>.prev` (a rollout a process did not finish: `RollBack`, or
//! `Paused` under `failure_action: pause`), or neither (`Normal`). In `Normal`, a replica whose
//! spec changed is not replaced on its own: its step becomes a member of the service's
//! `Rollout`, in batches of `parallelism`, and the executor opens the batches one by one
//! (`exec::rollout`). Heals (missing, dead, unhealthy) stay immediate. Pure, like the planner.

use std::collections::BTreeMap;

use crate::model::observed::{Health, ObservedContainer, ObservedState, RunState};
use crate::model::plan::{Action, PendingReplica, Reason};
use crate::model::rollout::{
    Changed, FailureAction, KeptPrev, Member, QuarantineRecord, Rollout, UpdateOrder, PREV_SUFFIX,
};
use crate::model::spec::ServiceSpec;

/// What a service's containers say about its rollout.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Mode {
    Normal,
    /// The desired spec failed before: not tried again.
    Quarantined(QuarantineRecord),
    /// A rollout of the desired spec failed and no process finished it: put the kept previous
    /// replicas back, and quarantine the spec.
    RollBack(QuarantineRecord),
    /// As `RollBack`, under `failure_action: pause`: nothing is done until the spec changes.
    Paused(String),
}

/// One service's survey, and what its replicas' steps became.
#[derive(Debug, Clone)]
pub(super) struct Draft {
    pub mode: Mode,
    /// (host, slot) → the kept previous replica.
    pub prevs: BTreeMap<(String, String), ObservedContainer>,
    pub members: Vec<Member>,
    pub changed: Vec<Changed>,
    /// Host → an image ID there of a version other than the desired one.
    pub record_images: BTreeMap<String, String>,
    pub stale_records: Vec<(String, String)>,
    /// `start-first` written, `stop-first` run: why, said once in the plan's notes.
    pub fallback: Option<String>,
}

/// Is a container of the desired spec failing (or failed)?
fn failing(c: &ObservedContainer) -> Option<String> {
    match (c.state, c.health) {
        (_, Some(Health::Unhealthy)) => Some("unhealthy".into()),
        (RunState::Dead, _) => Some("dead".into()),
        (RunState::Exited, _) => Some(format!("exited with code {}", c.exit_code)),
        (RunState::Restarting, _) => Some("crash loop (restarting)".into()),
        _ if c.restart_count > 0 => Some(format!("restarted {} times", c.restart_count)),
        _ => None,
    }
}

/// Is `c` a kept previous replica (`<name>.prev`)?
pub(super) fn is_prev(c: &ObservedContainer) -> bool {
    c.name.ends_with(PREV_SUFFIX)
}

/// Surveys the service `stack/service`, whose desired spec hashes to `hash`.
pub(super) fn survey(
    observed: &ObservedState,
    stack: &str,
    service: &ServiceSpec,
    hash: &str,
    commit: &str,
) -> Draft {
    let mut draft = Draft {
        mode: Mode::Normal,
        prevs: BTreeMap::new(),
        members: Vec::new(),
        changed: Vec::new(),
        record_images: BTreeMap::new(),
        stale_records: Vec::new(),
        fallback: None,
    };
    let mut failed: Option<(String, String, String)> = None;
    for (host, obs) in &observed.hosts {
        let Some(snap) = obs.snapshot() else { continue };
        for r in &snap.quarantines {
            if r.stack != stack || r.service != service.name {
                continue;
            }
            if r.spec_hash == hash {
                if !matches!(draft.mode, Mode::Quarantined(_)) {
                    draft.mode = Mode::Quarantined(r.clone());
                }
            } else {
                draft.stale_records.push((host.clone(), r.id.clone()));
            }
        }
        let mine = snap
            .containers
            .values()
            .filter(|c| c.stack == stack && c.service == service.name);
        for c in mine.clone() {
            if is_prev(c) {
                draft
                    .prevs
                    .insert((host.clone(), c.slot.clone()), c.clone());
            }
            // The record's container needs an image the host has: an old version's first,
            // else any of the service's (by ID, else as written).
            let image = if c.image_id.is_empty() {
                c.actual.image.clone()
            } else {
                c.image_id.clone()
            };
            if !image.is_empty() {
                let e = draft
                    .record_images
                    .entry(host.clone())
                    .or_insert_with(|| image.clone());
                if c.spec_hash != hash && is_prev(c) {
                    *e = image;
                }
            }
        }
        for c in mine {
            if is_prev(c) || c.spec_hash != hash || failed.is_some() {
                continue;
            }
            if !draft.prevs.contains_key(&(host.clone(), c.slot.clone()))
                && !snap
                    .containers
                    .contains_key(&crate::model::rollout::prev_name(&c.name))
            {
                continue;
            }
            if let Some(why) = failing(c) {
                failed = Some((host.clone(), c.name.clone(), why));
            }
        }
    }
    if matches!(draft.mode, Mode::Quarantined(_)) {
        return draft;
    }
    if let Some((host, name, why)) = failed {
        let reason = format!("{name} on host `{host}`: {why}");
        draft.mode = match service.rollout.update.failure_action {
            FailureAction::Rollback => Mode::RollBack(QuarantineRecord {
                stack: stack.to_string(),
                service: service.name.clone(),
                spec_hash: hash.to_string(),
                commit: commit.to_string(),
                reason,
                batch: 0,
                host,
                at: String::new(),
                id: String::new(),
            }),
            FailureAction::Pause => Mode::Paused(reason),
            FailureAction::Continue => Mode::Normal,
        };
    }
    draft
}

/// The order a service's replicas are replaced in: `start-first` needs two copies of a replica
/// on one host at once, which a fixed host port or a `container_name` forbids.
pub(super) fn effective_order(service: &ServiceSpec) -> (UpdateOrder, Option<String>) {
    let written = service.rollout.update.order;
    if written == UpdateOrder::StopFirst {
        return (written, None);
    }
    if let Some(p) = service
        .container
        .ports
        .iter()
        .find(|p| p.host_port.is_some_and(|h| h != 0))
    {
        return (
            UpdateOrder::StopFirst,
            Some(format!(
                "publishes host port {}, which old and new replica cannot both hold",
                p.host_port.unwrap_or_default()
            )),
        );
    }
    if service.container.container_name.is_some() {
        return (
            UpdateOrder::StopFirst,
            Some("has a `container_name`, which old and new replica cannot both hold".into()),
        );
    }
    (written, None)
}

/// Is this step a spec change (what rolls out), rather than a heal?
pub(super) fn is_spec_change(action: &Action, old: Option<&ObservedContainer>) -> bool {
    match action {
        Action::Replace {
            reason: Reason::Drift | Reason::SpecChanged,
            replica,
            ..
        } => old.is_some_and(|c| c.spec_hash != replica.spec_hash),
        _ => false,
    }
}

/// Under quarantine, what becomes of a step on a replica whose spec would change: a stopped
/// old replica is started again and an unhealthy one restarted (it is the version that runs);
/// nothing is made from the quarantined spec.
pub(super) fn quarantined_step(
    action: Action,
    old: Option<&ObservedContainer>,
    hash: &str,
) -> Option<Action> {
    let replica_changes = match &action {
        Action::Replace { replica, .. } => old.is_some_and(|c| c.spec_hash != replica.spec_hash),
        Action::Create { .. } => true,
        _ => false,
    };
    if !replica_changes {
        return Some(action);
    }
    let c = old?;
    if c.spec_hash == hash {
        return Some(action);
    }
    match (&action, c.state) {
        (
            Action::Replace { replica, .. },
            RunState::Exited | RunState::Created | RunState::Paused,
        ) => Some(Action::Start {
            stack: replica.stack.clone(),
            service: replica.service.clone(),
            name: c.name.clone(),
            id: c.id.clone(),
            reason: match c.state {
                RunState::Paused => Reason::Paused,
                RunState::Created => Reason::NeverStarted,
                _ => Reason::Stopped {
                    exit_code: c.exit_code,
                },
            },
        }),
        // An unhealthy old replica is restarted: it is the version that runs, and none other
        // may be made from the quarantined spec.
        (Action::Replace { replica, .. }, RunState::Running)
            if c.health == Some(Health::Unhealthy) =>
        {
            Some(Action::Start {
                stack: replica.stack.clone(),
                service: replica.service.clone(),
                name: c.name.clone(),
                id: c.id.clone(),
                reason: Reason::Unhealthy,
            })
        }
        _ => None,
    }
}

/// The pending entry of a replica the quarantine keeps from being created.
pub(super) fn quarantined_pending(stack: &str, service: &str, slot: &str) -> PendingReplica {
    PendingReplica {
        stack: stack.to_string(),
        service: service.to_string(),
        slot: slot.to_string(),
        reason: "its spec is quarantined after a failed rollout: not created from it".into(),
    }
}

/// The plan's `Rollout` of a service in `Normal` mode, when there is anything to roll or to
/// finish. Members go into batches in slot order, which spreads each batch over the hosts.
pub(super) fn finish(
    stack: &str,
    service: &ServiceSpec,
    hash: &str,
    commit: &str,
    replicas: usize,
    draft: Draft,
) -> Option<Rollout> {
    if draft.members.is_empty() && draft.changed.is_empty() && draft.prevs.is_empty() {
        return None;
    }
    let mut members = draft.members;
    members.sort_by(|a, b| {
        slot_order(&a.name)
            .cmp(&slot_order(&b.name))
            .then_with(|| a.host.cmp(&b.host))
    });
    let size = service.rollout.update.batch_size(members.len());
    for (i, m) in members.iter_mut().enumerate() {
        m.batch = i / size;
    }
    let batches = members.last().map(|m| m.batch + 1).unwrap_or(0);
    // Previous replicas that no member keeps: the rollout removes them when it succeeds.
    let member_slots: Vec<(String, String)> = members
        .iter()
        .map(|m| (m.host.clone(), m.name.clone()))
        .collect();
    let kept = draft
        .prevs
        .iter()
        .filter(|((host, _), c)| {
            !member_slots
                .iter()
                .any(|(h, n)| h == host && crate::model::rollout::prev_name(n) == c.name)
        })
        .map(|((host, _), c)| KeptPrev {
            host: host.clone(),
            name: c.name.clone(),
            id: c.id.clone(),
            grace_secs: c.actual.stop_grace_period_secs,
        })
        .collect();
    Some(Rollout {
        stack: stack.to_string(),
        service: service.name.clone(),
        to_hash: hash.to_string(),
        commit: commit.to_string(),
        replicas,
        update: service.rollout.update,
        rollback: service.rollout.rollback,
        deadline_ms: service.rollout.deadline_ms(
            service
                .container
                .healthcheck
                .as_ref()
                .map_or(0, |h| h.latest_healthy_ms()),
        ),
        readiness: service.rollout.readiness.clone(),
        members,
        batches,
        changed: draft.changed,
        kept,
        record_images: draft.record_images,
        stale_records: draft.stale_records,
    })
}

/// Sorts names by their trailing slot number where they have one (`web-app-10` after
/// `web-app-9`), so batches follow the slots.
fn slot_order(name: &str) -> (u64, String) {
    let digits: String = name
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (digits.parse().unwrap_or(u64::MAX), name.to_string())
}

#[cfg(test)]
mod tests;
