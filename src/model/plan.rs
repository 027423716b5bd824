//! The plan's vocabulary: steps, actions and the reasons for them, shared by the planner that
//! makes them (`core::plan`), the executor that runs them (`exec`), the engines that create
//! containers from a `Replica` (`infra::docker`) and the renderers.
//!
//! Types only, and their fixed text forms: nothing here decides what to do. A `Reason` is data
//! (the executor and, later, history and metrics branch on it), and serialises to the strings
//! the JSON documents have always carried, so `version: 1` readers see no change.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Serialize, Serializer};

use crate::model::spec::{ContainerSpec, DependsCondition, NetworkSpec, VolumeSpec};

/// One field whose desired value differs from the observed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// Dotted name as the user writes it: `environment.DB_URL`, `deploy.resources.limits.memory`.
    pub field: String,
    /// Observed value, rendered; `(secret)` for masked values, `(none)` when absent.
    pub old: String,
    /// Desired value, rendered the same way.
    pub new: String,
}

/// Why a step exists. Displayed (and serialised) as the words `convoy diff` has always shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No container holds the replica's name on its host.
    Missing,
    /// The engine reports the container unhealthy: it is replaced.
    Unhealthy,
    /// The engine reports the container dead.
    Dead,
    /// Inspect differs from the desired spec, field by field (`changes`).
    Drift,
    /// The spec hash differs though inspect shows no difference.
    SpecChanged,
    /// Paused by someone: unpaused.
    Paused,
    /// Created but never started.
    NeverStarted,
    /// Exited (not a finished one-shot): started again.
    Stopped { exit_code: i64 },
    /// Its stack is no longer in the repository.
    StackRemoved { stack: String },
    /// Its service is no longer in the stack.
    ServiceRemoved { service: String },
    /// The replica is placed on another host now (drain, a host that came back).
    Moved { to: String },
    /// Another copy of the same slot runs on `kept_on`, which keeps it (a host that came back
    /// after its replicas were started elsewhere).
    Fenced { kept_on: String },
    /// A name of the fleet's scheme that no desired replica has.
    NotDesired,
    /// The service has fewer replicas now.
    ScaledDown { replicas: u32 },
    /// A global service's host no longer meets its constraints.
    HostIneligible,
    /// A dependency written with `depends_on.<service>.restart: true` is replaced or started
    /// again in this pass: the dependent is replaced after it.
    DependencyRestarted { service: String },
    /// The host lost files the container binds (repository paths, `config <name>`): shipped
    /// again and the container made anew.
    FilesMissing { files: Vec<String> },
    /// The previous replica of a rollout that succeeded: no longer needed to go back to.
    RolloutDone,
    /// A rollout failed (`reason`): its spec goes back to the previous one.
    RolloutFailed { reason: String },
    /// A finished job run older than the `history` newest ones (`model::job`).
    JobHistory { keep: u32 },
}

impl Reason {
    /// A stable snake_case name, for metrics and programs that branch on the kind of reason.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Unhealthy => "unhealthy",
            Reason::Dead => "dead",
            Reason::Drift => "drift",
            Reason::SpecChanged => "spec_changed",
            Reason::Paused => "paused",
            Reason::NeverStarted => "never_started",
            Reason::Stopped { .. } => "stopped",
            Reason::StackRemoved { .. } => "stack_removed",
            Reason::ServiceRemoved { .. } => "service_removed",
            Reason::Moved { .. } => "moved",
            Reason::Fenced { .. } => "fenced",
            Reason::NotDesired => "not_desired",
            Reason::ScaledDown { .. } => "scaled_down",
            Reason::HostIneligible => "host_ineligible",
            Reason::DependencyRestarted { .. } => "dependency_restarted",
            Reason::FilesMissing { .. } => "files_missing",
            Reason::RolloutDone => "rollout_done",
            Reason::RolloutFailed { .. } => "rollout_failed",
            Reason::JobHistory { .. } => "job_history",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => f.write_str("missing"),
            Reason::Unhealthy => f.write_str("unhealthy"),
            Reason::Dead => f.write_str("dead"),
            Reason::Drift => f.write_str("drift"),
            Reason::SpecChanged => f.write_str("spec changed"),
            Reason::Paused => f.write_str("paused"),
            Reason::NeverStarted => f.write_str("created, never started"),
            Reason::Stopped { exit_code } => write!(f, "stopped (exit code {exit_code})"),
            Reason::StackRemoved { stack } => write!(f, "stack `{stack}` removed"),
            Reason::ServiceRemoved { service } => write!(f, "service `{service}` removed"),
            Reason::Moved { to } => write!(f, "moved to host `{to}`"),
            Reason::Fenced { kept_on } => {
                write!(f, "moved to host `{kept_on}` (a copy runs there: fenced)")
            }
            Reason::NotDesired => f.write_str("not a desired replica"),
            Reason::ScaledDown { replicas } => write!(f, "scaled down to {replicas}"),
            Reason::HostIneligible => f.write_str("host no longer eligible"),
            Reason::DependencyRestarted { service } => {
                write!(f, "`{service}` restarted (depends_on restart: true)")
            }
            Reason::FilesMissing { files } => {
                write!(f, "files missing on the host: {}", files.join(", "))
            }
            Reason::RolloutDone => f.write_str("previous version, rollout done"),
            Reason::RolloutFailed { reason } => write!(f, "rollout failed: {reason}"),
            Reason::JobHistory { keep } => {
                write!(f, "job run beyond its history (the {keep} newest are kept)")
            }
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Version of the JSON form of plans and reports; bump on incompatible change.
pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub fleet: String,
    /// The commit the desired state was read from (recorded on containers).
    pub commit: String,
    pub steps: Vec<Step>,
    /// Desired names held by containers the fleet does not own: never touched.
    pub conflicts: Vec<Conflict>,
    /// Hosts that could not be observed, with the reason: nothing is planned there.
    pub unreachable: BTreeMap<String, String>,
    pub pending: Vec<PendingReplica>,
    /// Volumes the fleet owns that nothing desired uses any more: reported, never removed.
    pub orphan_volumes: Vec<OrphanVolume>,
    pub notes: Vec<String>,
    /// Values to mask wherever they would be shown (engine errors included).
    #[serde(skip)]
    pub secret_values: BTreeSet<String>,
    /// Host → network name → the ID of the network of that name the fleet keeps there: what
    /// containers are attached to (a name held by several networks is ambiguous to the engine).
    /// Networks the plan creates are not in it; the executor learns their IDs as it goes.
    #[serde(skip)]
    pub network_ids: BTreeMap<String, BTreeMap<String, String>>,
    /// Services whose changed spec rolls out in batches (`deploy.update_config`), with the
    /// way back should a batch fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<crate::model::rollout::Rollout>,
    /// Services whose desired spec failed a rollout before: it is not tried again, and the
    /// version that runs is kept and healed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quarantined: Vec<crate::model::rollout::QuarantineRecord>,
    /// Run-once jobs whose current spec has not run: the pass runs them after its steps, and
    /// the services in their `before:` after them (`core::jobs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<crate::model::job::JobDue>,
    /// What the per-host proxies need (issue 13): made, replaced for a new image, started.
    /// The executor's proxy sync does it; `diff` shows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy: Vec<crate::model::proxy::ProxyChange>,
}

impl Plan {
    /// True when nothing is to be done and nothing stands in the way of convergence.
    pub fn is_converged(&self) -> bool {
        self.steps.is_empty()
            && self.rollouts.is_empty()
            && self.quarantined.is_empty()
            && self.conflicts.is_empty()
            && self.unreachable.is_empty()
            && self.pending.is_empty()
            && self.jobs.is_empty()
            && self.proxy.is_empty()
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for step in &self.steps {
            match &step.action {
                Action::Create { .. } => s.create += 1,
                Action::Replace { .. } => s.replace += 1,
                Action::Start { .. } => s.start += 1,
                Action::Remove { .. } => s.remove += 1,
                Action::Restore { .. } => s.replace += 1,
                Action::RecordQuarantine { .. } => s.resources += 1,
                Action::CreateNetwork { .. }
                | Action::CreateVolume { .. }
                | Action::RemoveNetwork { .. } => s.resources += 1,
            }
        }
        s
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub replace: usize,
    pub start: usize,
    pub remove: usize,
    pub resources: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: usize,
    pub host: String,
    pub action: Action,
    /// Steps that must finish first (networks before containers, dependencies first).
    pub after: Vec<usize>,
    /// Conditions on other services to wait for before this step creates or starts anything.
    pub gates: Vec<Gate>,
}

/// A `depends_on` condition, resolved to the containers that must satisfy it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gate {
    pub stack: String,
    pub service: String,
    pub condition: DependsCondition,
    /// (host, container name) of every placed replica of the dependency.
    pub containers: Vec<(String, String)>,
}

/// A replica as the executor creates it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replica {
    pub stack: String,
    pub service: String,
    pub slot: String,
    pub name: String,
    pub spec_hash: String,
    pub image: String,
    /// Never serialised: it holds environment values, some of them secret.
    #[serde(skip)]
    pub spec: ContainerSpec,
    /// Every label to put on the container: the user's plus Convoy's own. Not serialised: a
    /// label value may carry a secret (basic-auth labels of a proxy, say).
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
    /// Names whose values are never shown (see `ServiceSpec::secret_env`).
    #[serde(skip)]
    pub secret_env: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    CreateNetwork {
        stack: String,
        network: NetworkSpec,
    },
    CreateVolume {
        stack: String,
        volume: VolumeSpec,
    },
    Create {
        replica: Box<Replica>,
        reason: Reason,
    },
    Replace {
        replica: Box<Replica>,
        old_id: String,
        /// The old container's own stop grace period (it is the one being stopped).
        old_grace_secs: Option<i64>,
        changes: Vec<FieldChange>,
        reason: Reason,
    },
    Start {
        stack: String,
        service: String,
        name: String,
        id: String,
        reason: Reason,
    },
    Remove {
        stack: String,
        service: String,
        name: String,
        id: String,
        /// The container's own stop grace period, as the engine reports it.
        grace_secs: Option<i64>,
        reason: Reason,
        /// `pre_stop` hooks to run first: the desired service's, when it is still desired
        /// (scale-down, a move); none for a service the commit removed. Never serialised
        /// (environment values).
        #[serde(skip)]
        pre_stop: Vec<crate::model::hooks::Hook>,
    },
    RemoveNetwork {
        name: String,
        /// The engine's ID of the network: several can share a name, and the engine refuses a
        /// name that is ambiguous.
        id: String,
    },
    /// A rollout found failed from the containers' labels (a process that ended mid-rollout):
    /// the new replica goes and the kept previous one (`<name>.prev`) takes its name back and
    /// runs.
    Restore {
        stack: String,
        service: String,
        name: String,
        /// The failed new replica, when there is one.
        new_id: Option<String>,
        prev_id: String,
        reason: Reason,
    },
    /// Writes a quarantine record on the host (`model::rollout::QuarantineRecord`).
    RecordQuarantine {
        record: crate::model::rollout::QuarantineRecord,
        /// An image present on the host, for the record's container (never started).
        image: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub host: String,
    pub name: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingReplica {
    pub stack: String,
    pub service: String,
    pub slot: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrphanVolume {
    pub host: String,
    pub name: String,
    pub stack: String,
}

/// The first 12 characters of an engine ID (image, container, network), `sha256:` aside, as
/// people read them.
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

impl Action {
    /// A stable snake_case name of the kind of step, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::CreateNetwork { .. } => "create_network",
            Action::CreateVolume { .. } => "create_volume",
            Action::Create { .. } => "create",
            Action::Replace { .. } => "replace",
            Action::Start { .. } => "start",
            Action::Remove { .. } => "remove",
            Action::RemoveNetwork { .. } => "remove_network",
            Action::Restore { .. } => "restore",
            Action::RecordQuarantine { .. } => "record_quarantine",
        }
    }

    /// The reason of a step that would heal something that went wrong on its own (a container
    /// missing, exited, dead, unhealthy, paused, changed by hand, or a copy on a host that came
    /// back): what `convoy_heals_total` counts in passes that no change of the repository
    /// caused (a new service is `Missing` too, and a new image is `Drift`).
    pub fn heal(&self) -> Option<&Reason> {
        let reason = match self {
            Action::Create { reason, .. }
            | Action::Replace { reason, .. }
            | Action::Start { reason, .. }
            | Action::Remove { reason, .. } => reason,
            _ => return None,
        };
        matches!(
            reason,
            Reason::Missing
                | Reason::Unhealthy
                | Reason::Dead
                | Reason::Drift
                | Reason::Paused
                | Reason::NeverStarted
                | Reason::Stopped { .. }
                | Reason::Fenced { .. }
        )
        .then_some(reason)
    }

    /// The step as one plain line (`+ web-app-1 (missing)`), as progress and reports show it.
    pub fn line(&self) -> String {
        match self {
            Action::CreateNetwork { network, .. } => format!("+ network {}", network.engine_name),
            Action::CreateVolume { volume, .. } => format!("+ volume {}", volume.engine_name),
            Action::Create { replica, reason } => {
                format!(
                    "+ {}  ({reason}, image {})",
                    replica.name, replica.spec.image
                )
            }
            Action::Replace {
                replica, reason, ..
            } => format!("~ {}  ({reason})", replica.name),
            Action::Start { name, reason, .. } => format!("> {name}  (start: {reason})"),
            Action::Remove { name, reason, .. } => format!("- {name}  ({reason})"),
            Action::RemoveNetwork { name, .. } => format!("- network {name}"),
            Action::Restore { name, reason, .. } => {
                format!(
                    "< {name}  (rolled back to {}: {reason})",
                    crate::model::rollout::prev_name(name)
                )
            }
            Action::RecordQuarantine { record, .. } => format!(
                "! quarantine {}/{} spec {}",
                record.stack,
                record.service,
                short_id(&record.spec_hash)
            ),
        }
    }
}
