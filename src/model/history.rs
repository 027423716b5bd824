//! The deploy history's record: one `HistoryEntry` per pass that changed something or was
//! refused, and per commit held back (invalid, unsigned, stopped by the deletion guard), built
//! from a `PassReport` or a hold by pure functions, and the versioned document `convoy history
//! --output json` and `GET /api/v1/history` serve.
//!
//! It reuses the vocabulary of `outcome` (`PassResult`, `HoldReason`, `PassReason`) and defines
//! none of its own for how a pass ended. Pure: no I/O and no clock (times come in as Unix
//! seconds); the store is `infra::history`. Nothing here may carry a secret: step lines and
//! errors come already masked from the planner and executor, and `mask` is applied once more
//! before an entry is stored.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::outcome::{HoldReason, PassReason, PassReport, PassResult};
use crate::model::plan::Action;

/// Version of the history document; bumped only on an incompatible change.
pub const HISTORY_VERSION: u32 = 1;
pub use crate::model::spec::DEFAULT_HISTORY_LIMIT;
/// Longest commit message kept (bytes, cut at a character boundary).
pub const MESSAGE_CAP: usize = 4096;
/// Longest author, error or step line kept.
pub(crate) const LINE_CAP: usize = 1024;
/// At most this many failures and located errors per entry: a pass that fails everywhere
/// says so without an unbounded row.
const LIST_CAP: usize = 50;

/// Who wrote a commit and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMeta {
    /// `Name <email>`.
    pub author: String,
    pub message: String,
}

/// What one service (or, with an empty `service`, one stack's networks and volumes) went
/// through in a pass: counts of the steps that succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceChanges {
    pub stack: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub created: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replaced: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub started: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub removed: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restored: u32,
    /// Networks and volumes created.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resources: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A step that failed, or an image that could not be pulled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stack: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// The step as one line (`+ web-app-1 (missing, image ...)`), or `pull`.
    pub step: String,
    pub error: String,
}

/// How one rollout of the pass ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub stack: String,
    pub service: String,
    /// `completed`, `rolled_back`, `paused`, `interrupted`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub batches_done: u32,
    pub batches: u32,
}

/// One line of the deploy history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The store's id: increasing, so newer entries have larger ones (0 before it is stored).
    #[serde(default)]
    pub id: i64,
    pub fleet: String,
    pub commit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Why the pass ran (or how the held commit came in).
    pub trigger: PassReason,
    pub started_at: String,
    pub ended_at: String,
    /// `result`, and `reason` when held.
    #[serde(flatten)]
    pub result: PassResult,
    pub converged: bool,
    /// Why it was held or failed, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A refused commit's located errors (`file:line:column: key: message`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    #[serde(default)]
    pub changes: Vec<ServiceChanges>,
    /// Heal reason (`missing`, `drift`, ...) → replicas healed.
    #[serde(default)]
    pub heals: BTreeMap<String, u32>,
    #[serde(default)]
    pub failures: Vec<Failure>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<RolloutSummary>,
    /// Hosts that could not be observed, with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unreachable: BTreeMap<String, String>,
    /// Job runs the entry records (`model::job::entry_from_run`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<crate::model::job::JobRunEntry>,
}

/// The document `convoy history --output json` prints and the API serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryDoc {
    pub version: u32,
    pub entries: Vec<HistoryEntry>,
}

impl HistoryDoc {
    pub fn new(entries: Vec<HistoryEntry>) -> HistoryDoc {
        HistoryDoc {
            version: HISTORY_VERSION,
            entries,
        }
    }
}

impl HistoryEntry {
    /// The stacks the entry concerns (changes, failures, rollouts): what `--stack` filters by.
    pub fn stacks(&self) -> BTreeSet<String> {
        self.changes
            .iter()
            .map(|c| &c.stack)
            .chain(self.failures.iter().map(|f| &f.stack))
            .chain(self.rollouts.iter().map(|r| &r.stack))
            .filter(|s| !s.is_empty())
            .cloned()
            .collect()
    }

    /// Sets the commit's author and message (capped; the message's trailing blank lines off).
    pub fn set_meta(&mut self, meta: CommitMeta) {
        self.author = Some(cap(&meta.author, LINE_CAP));
        self.message = Some(cap(meta.message.trim_end(), MESSAGE_CAP));
    }

    /// Whether the entry records a commit that applied cleanly: a commit to roll back to.
    /// Every step succeeded and every rollout completed (the daemon does not verify in the
    /// pass that applies, so `converged` is only known from its next pass, which changes
    /// nothing and has no entry); or a verified pass found the fleet converged.
    pub fn is_good(&self) -> bool {
        match self.result {
            PassResult::Applied => {
                self.failures.is_empty() && self.rollouts.iter().all(|r| r.result == "completed")
            }
            PassResult::Converged => self.converged,
            _ => false,
        }
    }

    /// Every secret value in `secrets` replaced by `(secret)`, in every text the entry holds.
    pub fn mask(&mut self, secrets: &BTreeSet<String>) {
        if secrets.is_empty() {
            return;
        }
        let m = |s: &mut String| *s = crate::model::spec::mask_secrets(s, secrets);
        for s in [&mut self.author, &mut self.message, &mut self.detail]
            .into_iter()
            .flatten()
        {
            m(s);
        }
        self.errors.iter_mut().for_each(m);
        for f in &mut self.failures {
            m(&mut f.step);
            m(&mut f.error);
        }
        for r in &mut self.rollouts {
            if let Some(reason) = &mut r.reason {
                m(reason);
            }
        }
        self.unreachable.values_mut().for_each(m);
    }
}

/// Whether a pass that ran for `reason` heals what it creates, replaces or starts: one that a
/// change of the repository caused does what the change asks for, which heals nothing.
pub fn trigger_heals(reason: &PassReason) -> bool {
    matches!(
        reason,
        PassReason::EngineEvent { .. }
            | PassReason::HostLost { .. }
            | PassReason::HostBack { .. }
            | PassReason::HostDown { .. }
            | PassReason::Resync
            | PassReason::Retry { .. }
            | PassReason::Confirm
    )
}

/// The entry of a pass that ran from `started` to `ended` (Unix seconds), or `None` when it
/// changed nothing, failed no step and refused nothing (a converged pass, a retry that could
/// reach no host). `result` is the result as published (a converged pass while a newer commit
/// is held reads `held`; the hold has its own entry, so that alone records nothing).
pub fn entry_from_report(
    report: &PassReport,
    result: &PassResult,
    started: f64,
    ended: f64,
) -> Option<HistoryEntry> {
    let (entry, significant) = pass_entry(report, result, started, ended);
    (significant || matches!(report.result, PassResult::Held { .. })).then_some(entry)
}

/// The entry of a pass, and whether it acted, failed or rolled back (otherwise it is worth
/// recording only as the first pass of a commit, or a hold not recorded yet: `Dedup`).
pub fn pass_entry(
    report: &PassReport,
    result: &PassResult,
    started: f64,
    ended: f64,
) -> (HistoryEntry, bool) {
    let steps: BTreeMap<usize, &Action> = report
        .plan
        .steps
        .iter()
        .map(|s| (s.id, &s.action))
        .collect();
    let heals_now = trigger_heals(&report.reason);
    let mut changes: BTreeMap<(String, String), ServiceChanges> = BTreeMap::new();
    let mut heals: BTreeMap<String, u32> = BTreeMap::new();
    let mut failures = Vec::new();
    for o in &report.outcomes {
        let action = steps.get(&o.id).copied();
        let (stack, service) = action.map(owner).unwrap_or_default();
        if let Some(error) = &o.error {
            if failures.len() < LIST_CAP {
                failures.push(Failure {
                    host: o.host.clone(),
                    stack,
                    service,
                    step: cap(&o.step, LINE_CAP),
                    error: cap(error, LINE_CAP),
                });
            }
            continue;
        }
        let Some(action) = action else { continue };
        if heals_now {
            if let Some(reason) = action.heal() {
                *heals.entry(reason.code().to_string()).or_default() += 1;
            }
        }
        if stack.is_empty() {
            continue;
        }
        let c = changes
            .entry((stack.clone(), service.clone()))
            .or_insert_with(|| ServiceChanges {
                stack,
                service,
                ..Default::default()
            });
        match action {
            Action::Create { .. } => c.created += 1,
            Action::Replace { .. } => c.replaced += 1,
            Action::Start { .. } => c.started += 1,
            Action::Remove { .. } => c.removed += 1,
            Action::Restore { .. } => c.restored += 1,
            Action::CreateNetwork { .. } | Action::CreateVolume { .. } => c.resources += 1,
            Action::RemoveNetwork { .. } | Action::RecordQuarantine { .. } => {}
        }
    }
    for p in &report.pull_failures {
        if failures.len() < LIST_CAP {
            failures.push(Failure {
                host: String::new(),
                stack: String::new(),
                service: String::new(),
                step: "pull".into(),
                error: cap(p, LINE_CAP),
            });
        }
    }
    let rollouts: Vec<RolloutSummary> = report
        .rollouts
        .iter()
        .map(|r| {
            use crate::model::rollout::RolloutResult as R;
            let reason = match &r.result {
                R::RolledBack { reason, .. } | R::Paused { reason, .. } => {
                    Some(cap(reason, LINE_CAP))
                }
                R::Completed | R::Interrupted => None,
            };
            RolloutSummary {
                stack: r.stack.clone(),
                service: r.service.clone(),
                result: r.result.code().to_string(),
                reason,
                batches_done: r.batches_done,
                batches: r.batches,
            }
        })
        .collect();
    let significant = !changes.is_empty()
        || !failures.is_empty()
        || !rollouts.is_empty()
        || report.result == PassResult::RolledBack;
    let detail = match result {
        PassResult::Failed if !failures.is_empty() => Some(format!(
            "{} step(s) failed: {}",
            failures.len(),
            failures[0].error
        )),
        PassResult::Failed if !report.plan.unreachable.is_empty() => Some(format!(
            "host(s) not observed: {}",
            report
                .plan
                .unreachable
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
        PassResult::RolledBack => rollouts
            .iter()
            .find_map(|r| r.reason.clone())
            .map(|r| format!("rolled back: {r}")),
        _ => None,
    };
    let entry = HistoryEntry {
        id: 0,
        fleet: report.plan.fleet.clone(),
        commit: report.commit.clone(),
        author: None,
        message: None,
        trigger: report.reason.clone(),
        started_at: crate::model::time::rfc3339(started),
        ended_at: crate::model::time::rfc3339(ended),
        result: result.clone(),
        converged: report.converged,
        detail,
        errors: Vec::new(),
        changes: changes.into_values().collect(),
        heals,
        failures,
        rollouts,
        unreachable: report
            .plan
            .unreachable
            .iter()
            .map(|(h, r)| (h.clone(), cap(r, LINE_CAP)))
            .collect(),
        jobs: Vec::new(),
    };
    (entry, significant)
}

/// What a held commit's entry is made of.
pub struct Hold<'a> {
    pub fleet: &'a str,
    pub commit: &'a str,
    pub reason: HoldReason,
    pub trigger: PassReason,
    /// Why, in one line.
    pub message: &'a str,
    /// Located errors of a commit that does not validate.
    pub errors: Vec<String>,
    /// When it was held (Unix seconds).
    pub at: f64,
}

/// The entry of a commit held back: nothing of it ran.
pub fn entry_from_hold(hold: Hold<'_>) -> HistoryEntry {
    let at = crate::model::time::rfc3339(hold.at);
    let mut errors = hold.errors;
    errors.truncate(LIST_CAP);
    HistoryEntry {
        id: 0,
        fleet: hold.fleet.to_string(),
        commit: hold.commit.to_string(),
        author: None,
        message: None,
        trigger: hold.trigger,
        started_at: at.clone(),
        ended_at: at,
        result: PassResult::Held {
            reason: hold.reason,
        },
        converged: false,
        detail: Some(cap(hold.message, LINE_CAP)),
        errors: errors.iter().map(|e| cap(e, LINE_CAP)).collect(),
        changes: Vec::new(),
        heals: BTreeMap::new(),
        failures: Vec::new(),
        rollouts: Vec::new(),
        unreachable: BTreeMap::new(),
        jobs: Vec::new(),
    }
}

/// The stack and service a step acts on (empty when it belongs to none: a network removed).
fn owner(action: &Action) -> (String, String) {
    match action {
        Action::Create { replica, .. } | Action::Replace { replica, .. } => {
            (replica.stack.clone(), replica.service.clone())
        }
        Action::Start { stack, service, .. }
        | Action::Remove { stack, service, .. }
        | Action::Restore { stack, service, .. } => (stack.clone(), service.clone()),
        Action::CreateNetwork { stack, .. } | Action::CreateVolume { stack, .. } => {
            (stack.clone(), String::new())
        }
        Action::RecordQuarantine { record, .. } => (record.stack.clone(), record.service.clone()),
        Action::RemoveNetwork { .. } => (String::new(), String::new()),
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::model::outcome::{StepOutcome, Timings};
    use crate::model::plan::{Plan, Reason, Replica, Step};

    fn plan(steps: Vec<Action>) -> Plan {
        Plan {
            fleet: "prod".into(),
            commit: "abc123".into(),
            steps: steps
                .into_iter()
                .enumerate()
                .map(|(id, action)| Step {
                    id,
                    host: "a".into(),
                    action,
                    after: Vec::new(),
                    gates: Vec::new(),
                })
                .collect(),
            conflicts: Vec::new(),
            unreachable: BTreeMap::new(),
            pending: Vec::new(),
            orphan_volumes: Vec::new(),
            notes: Vec::new(),
            secret_values: BTreeSet::new(),
            network_ids: BTreeMap::new(),
            rollouts: Vec::new(),
            quarantined: Vec::new(),
            jobs: Vec::new(),
            proxy: Vec::new(),
        }
    }

    fn create(stack: &str, service: &str, reason: Reason) -> Action {
        Action::Create {
            replica: Box::new(Replica {
                stack: stack.into(),
                service: service.into(),
                slot: "1".into(),
                name: format!("{stack}-{service}-1"),
                spec_hash: "h".into(),
                image: "img".into(),
                spec: Default::default(),
                labels: BTreeMap::new(),
                secret_env: BTreeSet::new(),
            }),
            reason,
        }
    }

    fn remove(stack: &str, service: &str) -> Action {
        Action::Remove {
            stack: stack.into(),
            service: service.into(),
            name: format!("{stack}-{service}-1"),
            id: "c1".into(),
            grace_secs: None,
            reason: Reason::ServiceRemoved {
                service: service.into(),
            },
            pre_stop: Vec::new(),
        }
    }

    fn report(
        reason: PassReason,
        result: PassResult,
        plan: Plan,
        errors: &[Option<&str>],
    ) -> PassReport {
        let outcomes = plan
            .steps
            .iter()
            .zip(errors)
            .map(|(s, e)| StepOutcome {
                id: s.id,
                host: s.host.clone(),
                step: s.action.line(),
                error: e.map(String::from),
            })
            .collect();
        PassReport {
            reason,
            commit: "abc123".into(),
            result,
            converged: errors.iter().all(Option::is_none),
            plan,
            outcomes,
            pull_failures: Vec::new(),
            rollouts: Vec::new(),
            remaining: None,
            timings: Timings::default(),
        }
    }

    #[test]
    fn a_pass_that_changed_nothing_has_no_entry() {
        let r = report(
            PassReason::Resync,
            PassResult::Converged,
            plan(Vec::new()),
            &[],
        );
        assert!(entry_from_report(&r, &PassResult::Converged, 1.0, 2.0).is_none());
        // Converged while a newer commit is held: the hold has its own entry.
        let held = PassResult::Held {
            reason: HoldReason::DeletionGuard,
        };
        assert!(entry_from_report(&r, &held, 1.0, 2.0).is_none());
    }

    #[test]
    fn changes_are_counted_by_stack_and_service_and_failures_kept() {
        let p = plan(vec![
            create("web", "app", Reason::Missing),
            create("web", "app", Reason::Missing),
            remove("web", "old"),
            create("db", "pg", Reason::Missing),
        ]);
        let r = report(
            PassReason::NewCommit {
                commit: "abc123".into(),
            },
            PassResult::Failed,
            p,
            &[None, None, None, Some("no such image")],
        );
        let e = entry_from_report(&r, &r.result, 1_700_000_000.0, 1_700_000_002.5).unwrap();
        assert_eq!(e.fleet, "prod");
        assert_eq!(e.commit, "abc123");
        assert_eq!(e.started_at, "2023-11-14T22:13:20Z");
        assert_eq!(e.ended_at, "2023-11-14T22:13:22.500Z");
        assert_eq!(e.result, PassResult::Failed);
        assert!(!e.converged);
        let app = e.changes.iter().find(|c| c.service == "app").unwrap();
        assert_eq!((app.stack.as_str(), app.created), ("web", 2));
        let old = e.changes.iter().find(|c| c.service == "old").unwrap();
        assert_eq!(old.removed, 1);
        assert!(
            !e.changes.iter().any(|c| c.stack == "db"),
            "a failed step changed nothing"
        );
        assert_eq!(e.failures.len(), 1);
        assert_eq!(e.failures[0].stack, "db");
        assert_eq!(e.failures[0].error, "no such image");
        assert_eq!(e.detail.as_deref(), Some("1 step(s) failed: no such image"));
        // A change of the repository heals nothing.
        assert!(e.heals.is_empty());
        assert_eq!(
            e.stacks(),
            BTreeSet::from(["db".to_string(), "web".to_string()])
        );
    }

    #[test]
    fn heals_are_counted_for_passes_that_heal() {
        let p = plan(vec![create("web", "app", Reason::Missing)]);
        let r = report(
            PassReason::EngineEvent {
                host: "a".into(),
                action: "die".into(),
                container: "web-app-1".into(),
            },
            PassResult::Applied,
            p,
            &[None],
        );
        let e = entry_from_report(&r, &r.result, 0.0, 0.0).unwrap();
        assert_eq!(e.heals.get("missing"), Some(&1));
        assert!(e.is_good());
    }

    #[test]
    fn entries_round_trip_through_json_with_the_flattened_result() {
        let mut e = entry_from_hold(Hold {
            fleet: "prod",
            commit: "def456",
            reason: HoldReason::InvalidCommit,
            trigger: PassReason::NewCommit {
                commit: "def456".into(),
            },
            message: "1 error(s) in commit def456",
            errors: vec![
                "stacks/web/compose.yaml:3:5: services.app.image: expected a string".into(),
            ],
            at: 10.0,
        });
        e.set_meta(CommitMeta {
            author: "Ann <ann@example.com>".into(),
            message: "break it\n\n".into(),
        });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["result"], "held");
        assert_eq!(json["reason"], "invalid_commit");
        assert_eq!(json["trigger"]["kind"], "new_commit");
        assert_eq!(json["message"], "break it");
        let back: HistoryEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert!(!back.is_good());
        let doc = serde_json::to_value(HistoryDoc::new(vec![back])).unwrap();
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["entries"][0]["commit"], "def456");
    }

    #[test]
    fn messages_are_capped_at_a_character_boundary_and_secrets_masked() {
        let long = "é".repeat(MESSAGE_CAP);
        let mut e = entry_from_hold(Hold {
            fleet: "f",
            commit: "c",
            reason: HoldReason::UnsignedCommit,
            trigger: PassReason::Start,
            message: "signed by hunter2",
            errors: Vec::new(),
            at: 0.0,
        });
        e.set_meta(CommitMeta {
            author: "a".into(),
            message: long,
        });
        let m = e.message.clone().unwrap();
        assert!(m.len() <= MESSAGE_CAP && m.ends_with('…'));
        e.mask(&BTreeSet::from(["hunter2".to_string()]));
        assert_eq!(e.detail.as_deref(), Some("signed by (secret)"));
    }
}
