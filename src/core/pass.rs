//! The planning half of a pass as one pure function: desired state, observation, what the
//! daemon remembers of its hosts and the commit in; snapshot, placement and `Plan` out.
//!
//! `convoy diff`, `apply`, `status`, `hosts` and every daemon pass call `plan_pass`; `diff
//! --base` calls it on an observation assumed from the base revision (`assume_observed`). There
//! is no second way to make a plan. Pure: see "the planning core is pure".

use std::collections::{BTreeMap, BTreeSet};

use crate::core::plan::{self, assume_converged};
use crate::core::schedule::{self, ExistingReplica, Placement, Snapshot};
use crate::model::observed::ObservedState;
use crate::model::plan::Plan;
use crate::model::spec::DesiredState;

/// What a daemon remembers between passes, all of it rebuilt from observation: the hosts lost
/// for longer than `host_down_after`, and what each host ran when last observed. One-shot
/// commands have none: they move nothing off a host they cannot see ("rescheduling needs a
/// clock that watched the host").
#[derive(Debug, Clone, Default)]
pub struct HostMemory {
    pub down: BTreeSet<String>,
    pub last_known: BTreeMap<String, Vec<ExistingReplica>>,
}

/// A pass's decisions: where every replica goes and the steps that take the fleet there.
#[derive(Debug, Clone)]
pub struct PassPlan {
    pub snapshot: Snapshot,
    pub placement: Placement,
    pub plan: Plan,
    /// The mesh containers of cross-host discovery (`core::proxy::mesh`), planned in `plan`
    /// like replicas; the executor ships their configuration after the steps.
    pub meshes: Vec<crate::core::proxy::mesh::Mesh>,
}

/// Places and plans `desired` against `observed`.
pub fn plan_pass(
    desired: &DesiredState,
    observed: &ObservedState,
    memory: &HostMemory,
    commit: &str,
) -> PassPlan {
    // Jobs and the services a run-once job holds are planned apart (`core::jobs`).
    let view = crate::core::jobs::planning_view(desired, observed);
    let (d, o) = match &view {
        Some(v) => (&v.desired, &v.observed),
        None => (desired, observed),
    };
    let snapshot = schedule::snapshot(d, o, &memory.down, &memory.last_known);
    let placement = schedule::place(d, &snapshot);
    // Cross-host discovery (issue 13): each mesh a service of its stack, placed on its host.
    let meshes = crate::core::proxy::mesh::for_pass(desired, d, &placement);
    let with_meshes = desired
        .settings
        .proxy
        .as_ref()
        .and_then(|p| crate::core::proxy::mesh::with_meshes(d, &placement, &meshes, &p.image));
    let (d, planned) = match &with_meshes {
        Some((wd, wp)) => (wd, wp),
        None => (d, &placement),
    };
    let mut plan = plan::plan(d, planned, o, commit);
    plan.notes
        .extend(crate::core::proxy::mesh::replacement_notes(&plan));
    if let Some(v) = &view {
        crate::core::jobs::complete_plan(&mut plan, desired, v);
    }
    plan.proxy = crate::core::proxy::changes(desired, observed);
    PassPlan {
        snapshot,
        placement,
        plan,
        meshes,
    }
}

/// What the fleet would run if `base` (a desired state at `commit`) were applied and
/// converged: the observation `diff --base` plans against, with no engine contacted.
pub fn assume_observed(base: &DesiredState, commit: &str) -> ObservedState {
    let empty = assume_converged(base, &Placement::default(), "");
    let pass = plan_pass(base, &empty, &HostMemory::default(), "");
    // The meshes run too, as the services they are planned as.
    let with_meshes = base.settings.proxy.as_ref().and_then(|p| {
        crate::core::proxy::mesh::with_meshes(base, &pass.placement, &pass.meshes, &p.image)
    });
    match &with_meshes {
        Some((d, placement)) => assume_converged(d, placement, commit),
        None => assume_converged(base, &pass.placement, commit),
    }
}
