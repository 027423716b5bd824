//! Creating a replica whose name is taken, and removing a container someone else is removing:
//! what a killed process leaves behind. The engine may finish a create after the process that
//! asked for it was killed, so the next pass, which observed the name free, finds it held; or a
//! removal is still under way when the next pass removes the same container.
//!
//! A name conflict on create is resolved within the same step: the name is inspected again and
//! the holder adopted when it is the fleet's and carries the replica's spec hash (attached to
//! the networks it lacks, started if it never ran), replaced when it is the fleet's and differs,
//! waited for when it is being removed, and reported as a conflict when it is not the fleet's
//! ("only what carries the fleet's label is touched"). A removal already in progress is waited
//! for with a deadline. Nothing is removed because an engine call failed ("removal is never
//! the side effect of an error"): only a holder of the fleet's that the replica replaces.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::infra::docker::{DockerError, Engine, Holder};
use crate::model::observed::RunState;
use crate::model::plan::Replica;
use crate::model::spec::RestartName;

/// How long a removal someone else started may take before the step fails.
pub const REMOVAL_WAIT: Duration = Duration::from_secs(60);

/// How often a create may find its name taken before the step fails: each time the holder is
/// dealt with first, so more means something keeps taking it.
const ATTEMPTS: usize = 3;

/// What to do about the container that holds a replica's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMove {
    /// Nothing holds it (any more): create.
    Create,
    /// The fleet's, being removed: wait until it is gone, then create.
    WaitRemoved,
    /// The fleet's, with the replica's spec hash: it is the replica.
    Adopt,
    /// The fleet's, another spec (or dead): remove it, then create.
    Replace,
    /// Not the fleet's: a conflict, never touched.
    Foreign,
}

/// The move for `holder` of `replica`'s name in `fleet`.
pub fn name_move(holder: Option<&Holder>, fleet: &str, replica: &Replica) -> NameMove {
    let Some(h) = holder else {
        return NameMove::Create;
    };
    if h.fleet.as_deref() != Some(fleet) {
        return NameMove::Foreign;
    }
    match h.state {
        RunState::Removing => NameMove::WaitRemoved,
        RunState::Dead => NameMove::Replace,
        _ if h.spec_hash == replica.spec_hash => NameMove::Adopt,
        _ => NameMove::Replace,
    }
}

/// Creates and starts `replica`, dealing with a holder of its name as [`name_move`] says.
pub async fn create_and_start(
    engine: &Engine,
    fleet: &str,
    replica: &Replica,
    network_ids: &BTreeMap<String, String>,
    cancel: &CancellationToken,
    hook_timeout: Duration,
) -> Result<(), DockerError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let err = match engine.create_container(replica, network_ids).await {
            Ok(id) => {
                super::prestart::before_start(engine, replica, &id, network_ids, hook_timeout)
                    .await?;
                return engine.start(&id, &replica.name).await;
            }
            Err(e) if e.is_conflict() && attempt < ATTEMPTS => e,
            Err(e) => return Err(e),
        };
        let holder = engine.holder(&replica.name).await?;
        let mv = name_move(holder.as_ref(), fleet, replica);
        tracing::info!(name = %replica.name, action = ?mv, "the name is taken: inspected again");
        match (mv, holder) {
            (NameMove::Create, _) => {}
            (NameMove::Foreign, _) => {
                return Err(DockerError {
                    message: format!(
                        "a container named `{}` exists and is not owned by fleet `{fleet}`",
                        replica.name
                    ),
                    ..err
                })
            }
            (NameMove::WaitRemoved, Some(h)) => {
                wait_removed(engine, &h.id, &replica.name, cancel).await?
            }
            (NameMove::Replace, Some(h)) => {
                remove(engine, &h.id, &replica.name, None, cancel).await?
            }
            (NameMove::Adopt, Some(h)) => {
                return adopt(engine, replica, network_ids, &h, hook_timeout).await
            }
            (_, None) => {}
        }
    }
}

/// Makes a holder with the replica's spec the replica: attached to the networks it lacks (a
/// process killed between create and connect), and started unless it runs or is a one-shot
/// that ran.
async fn adopt(
    engine: &Engine,
    replica: &Replica,
    network_ids: &BTreeMap<String, String>,
    h: &Holder,
    hook_timeout: Duration,
) -> Result<(), DockerError> {
    engine
        .connect_networks(&h.id, replica, network_ids, &h.networks)
        .await?;
    match h.state {
        // Never started: its `pre_start` hooks have not run to the end either.
        RunState::Created => {
            super::prestart::before_start(engine, replica, &h.id, network_ids, hook_timeout)
                .await?;
            engine.start(&h.id, &replica.name).await
        }
        RunState::Exited if replica.spec.restart.name != RestartName::No => {
            engine.start(&h.id, &replica.name).await
        }
        RunState::Paused => engine.unpause(&h.id, &replica.name).await,
        _ => Ok(()),
    }
}

/// Stops and removes a container; a removal already under way is waited for.
pub async fn remove(
    engine: &Engine,
    id: &str,
    name: &str,
    grace: Option<i64>,
    cancel: &CancellationToken,
) -> Result<(), DockerError> {
    match engine.remove(id, name, grace).await {
        Err(e) if e.is_removal_in_progress() => wait_removed(engine, id, name, cancel).await,
        other => other,
    }
}

/// Waits until container `id` is gone, for at most [`REMOVAL_WAIT`]; shutdown abandons the wait
/// (nothing is made yet).
async fn wait_removed(
    engine: &Engine,
    id: &str,
    name: &str,
    cancel: &CancellationToken,
) -> Result<(), DockerError> {
    let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
    let failed = |message: String| DockerError {
        host: engine.host().to_string(),
        op: format!("wait for the removal of `{name}`"),
        message,
        status: None,
    };
    loop {
        if engine.status(id).await?.is_none() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "still being removed after {}s",
                REMOVAL_WAIT.as_secs()
            )));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(failed(super::NOT_STARTED.into())),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(hash: &str) -> Replica {
        Replica {
            stack: "s".into(),
            service: "app".into(),
            slot: "1".into(),
            name: "s-app-1".into(),
            spec_hash: hash.into(),
            image: "busybox:1".into(),
            spec: Default::default(),
            labels: Default::default(),
            secret_env: Default::default(),
        }
    }

    fn holder(fleet: Option<&str>, hash: &str, state: RunState) -> Holder {
        Holder {
            id: "c0ffee".into(),
            fleet: fleet.map(str::to_string),
            spec_hash: hash.into(),
            state,
            networks: Default::default(),
        }
    }

    #[test]
    fn a_holder_of_the_fleet_with_the_spec_is_adopted_whatever_its_state() {
        for state in [RunState::Created, RunState::Running, RunState::Exited] {
            let h = holder(Some("f"), "h1", state);
            assert_eq!(name_move(Some(&h), "f", &replica("h1")), NameMove::Adopt);
        }
    }

    #[test]
    fn a_holder_of_the_fleet_with_another_spec_or_dead_is_replaced() {
        let h = holder(Some("f"), "old", RunState::Created);
        assert_eq!(name_move(Some(&h), "f", &replica("h1")), NameMove::Replace);
        let h = holder(Some("f"), "h1", RunState::Dead);
        assert_eq!(name_move(Some(&h), "f", &replica("h1")), NameMove::Replace);
    }

    #[test]
    fn a_holder_being_removed_is_waited_for() {
        let h = holder(Some("f"), "h1", RunState::Removing);
        assert_eq!(
            name_move(Some(&h), "f", &replica("h1")),
            NameMove::WaitRemoved
        );
    }

    #[test]
    fn a_holder_of_another_fleet_or_of_none_is_never_touched() {
        for fleet in [None, Some("other")] {
            let h = holder(fleet, "h1", RunState::Created);
            assert_eq!(name_move(Some(&h), "f", &replica("h1")), NameMove::Foreign);
        }
    }

    #[test]
    fn a_name_freed_meanwhile_is_created() {
        assert_eq!(name_move(None, "f", &replica("h1")), NameMove::Create);
    }
}
