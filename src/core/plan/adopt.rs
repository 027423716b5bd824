//! The planner's view of adopted Compose containers (`model::adopt`): containers the fleet owns
//! by the adoption record in `convoy.yaml`, not by a label.
//!
//! Such a container has no spec hash, so "in sync" is decided by drift alone (the fields the
//! compose file sets, read back from the engine): one that matches is kept as it is, and said so
//! in the plan's notes ("in sync, adopted"); the first change replaces it with a labelled
//! replica. It must not treat as adopted anything observation did not mark so (the observed
//! snapshot's `adopted` map is the only source).

use super::{Action, Conflict, Planner, Replica};
use crate::model::observed::{HostSnapshot, ObservedContainer};
use crate::model::spec::ServiceSpec;

/// Is `c` an adopted Compose container (owned by the adoption record, not a label)?
pub(super) fn is_adopted(snap: &HostSnapshot, c: &ObservedContainer) -> bool {
    snap.adopted.contains_key(&c.name) && c.spec_hash.is_empty()
}

/// The note for an adopted container the plan keeps as it runs.
pub(super) fn in_sync_note(
    host: &str,
    snap: &HostSnapshot,
    c: Option<&ObservedContainer>,
) -> Option<String> {
    let c = c.filter(|c| is_adopted(snap, c))?;
    let project = &snap.adopted[&c.name];
    Some(format!(
        "{host}: {} in sync, adopted (Compose project `{project}`, stack `{}`, service `{}`)",
        c.name, c.stack, c.service
    ))
}

impl Planner<'_> {
    /// The step for an adopted container `old` that holds `replica`'s slot under another name
    /// (Compose's): what `compare` says, a move off a duplicate network as for any owned
    /// container, and a conflict rather than a step while someone else holds the replica's name.
    pub(super) fn adopted_step(
        &mut self,
        host: &str,
        snap: &HostSnapshot,
        old: &ObservedContainer,
        replica: Replica,
        service: &ServiceSpec,
    ) -> Option<Action> {
        let name = replica.name.clone();
        let step = self.compare_on_networks(old, replica, service, snap);
        // A start or a restart acts on the adopted container itself, under its own name.
        if !matches!(step, Some(Action::Replace { .. })) || !snap.foreign_names.contains(&name) {
            return step;
        }
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
}
