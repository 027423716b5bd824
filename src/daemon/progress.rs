//! What the daemon makes of rollouts and quarantines: the pass observer that writes a rollout's
//! progress into the status channel as the executor reports it (`status` shows "batch k of n,
//! m of N replicas updated" while the pass runs), and, after a pass, the quarantine records
//! to publish and log and the rollout counters for `/metrics`.
//!
//! Bookkeeping only: it decides nothing about a rollout (the plan and the executor do), and it
//! must not block the executor's task (a `send_modify` of the status is all it does there).

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::{Counters, DaemonStatus, StepLog};
use crate::model::outcome::{PassReport, StepOutcome};
use crate::model::plan::short_id;
use crate::model::rollout::{QuarantineRecord, RolloutProgress, RolloutResult};
use crate::reconcile::PassObserver;

/// The daemon's observer of a pass: steps are logged (as `StepLog` does), rollouts' progress
/// goes to the status.
pub(super) struct PassWatch {
    status: watch::Sender<DaemonStatus>,
}

impl PassWatch {
    pub(super) fn new(status: watch::Sender<DaemonStatus>) -> PassWatch {
        PassWatch { status }
    }
}

impl PassObserver for PassWatch {
    fn planned(&self, plan: &crate::model::plan::Plan) {
        // The dashboard shows a heal while it happens.
        let steps = super::facts::steps_in_flight(plan);
        self.status.send_modify(move |s| s.in_flight = steps);
    }

    fn step_done(&self, o: &StepOutcome) {
        StepLog.step_done(o);
        self.status.send_modify(|s| super::facts::step_done(s, o));
    }

    fn rollout_progress(&self, p: &RolloutProgress) {
        if !p.done {
            tracing::info!(
                stack = %p.stack,
                service = %p.service,
                batch = p.batch,
                batches = p.batches,
                updated = p.updated,
                replicas = p.replicas,
                "rollout progress"
            );
        }
        let p = p.clone();
        self.status
            .send_modify(move |s| record_progress(&mut s.rollouts, p));
    }
}

/// Puts `p` in the list of rollouts in flight (one entry per service), or takes its service
/// out when it has ended.
pub(super) fn record_progress(rollouts: &mut Vec<RolloutProgress>, p: RolloutProgress) {
    let at = rollouts
        .iter()
        .position(|r| r.stack == p.stack && r.service == p.service);
    match (at, p.done) {
        (Some(i), true) => {
            rollouts.remove(i);
        }
        (Some(i), false) => rollouts[i] = p,
        (None, true) => {}
        (None, false) => rollouts.push(p),
    }
}

/// The quarantine records that hold after `report`'s pass: those its plan found (the plan made
/// after acting, when there is one), and those its own rollouts wrote as they rolled back (the
/// plan, made before, cannot know of them; the next pass reads them from the engines).
pub(super) fn quarantines(report: &PassReport) -> Vec<QuarantineRecord> {
    let plan = report.remaining.as_ref().unwrap_or(&report.plan);
    let mut out = plan.quarantined.clone();
    for r in &report.rollouts {
        let RolloutResult::RolledBack {
            reason,
            batch,
            host,
        } = &r.result
        else {
            continue;
        };
        let known = out
            .iter()
            .any(|q| q.stack == r.stack && q.service == r.service && q.spec_hash == r.to_hash);
        if known {
            continue;
        }
        let commit = report
            .plan
            .rollouts
            .iter()
            .find(|p| p.stack == r.stack && p.service == r.service)
            .map(|p| p.commit.clone())
            .unwrap_or_else(|| report.commit.clone());
        out.push(QuarantineRecord {
            stack: r.stack.clone(),
            service: r.service.clone(),
            spec_hash: r.to_hash.clone(),
            commit,
            reason: reason.clone(),
            batch: *batch,
            host: host.clone(),
            at: now_rfc3339(),
            id: String::new(),
        });
    }
    out.sort_by(|a, b| (&a.stack, &a.service).cmp(&(&b.stack, &b.service)));
    out
}

/// One warning per quarantined spec, each pass that finds it: the operator sees in the logs
/// why a service keeps its old version.
pub(super) fn log_quarantines(records: &[QuarantineRecord]) {
    for q in records {
        tracing::warn!(
            stack = %q.stack,
            service = %q.service,
            spec = %short_id(&q.spec_hash),
            commit = %short_id(&q.commit),
            reason = %q.reason,
            batch = q.batch,
            host = %q.host,
            since = %q.at,
            "spec quarantined after a failed rollout: the previous version is kept until the service's spec changes"
        );
    }
}

/// Counts how each rollout of the pass ended.
pub(super) fn count_rollouts(counters: &mut Counters, report: &PassReport) {
    for r in &report.rollouts {
        counters.count_rollout(&r.stack, &r.service, r.result.code());
    }
}

fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    crate::model::time::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::schedule::Placement;
    use crate::core::testkit;
    use crate::model::outcome::{PassReason, PassResult, Timings};
    use crate::model::plan::Plan;
    use crate::model::rollout::RolloutReport;

    /// An empty plan that finds `quarantined`.
    fn plan_with(quarantined: Vec<QuarantineRecord>) -> Plan {
        let d = testkit::desired(&[], vec![]);
        let o = testkit::empty_observed(&d);
        let mut plan = crate::core::plan::plan(&d, &Placement::default(), &o, "c0ffee");
        plan.quarantined = quarantined;
        plan
    }

    fn progress(service: &str, batch: u32, done: bool) -> RolloutProgress {
        RolloutProgress {
            stack: "shop".into(),
            service: service.into(),
            to_hash: "abc".into(),
            batch,
            batches: 4,
            updated: batch.saturating_sub(1),
            replicas: 4,
            done,
        }
    }

    #[test]
    fn progress_keeps_one_entry_per_service_until_it_ends() {
        let mut list = Vec::new();
        record_progress(&mut list, progress("web", 1, false));
        record_progress(&mut list, progress("api", 1, false));
        record_progress(&mut list, progress("web", 2, false));
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].batch, 2);
        record_progress(&mut list, progress("web", 2, true));
        assert_eq!(list, vec![progress("api", 1, false)]);
        // An end heard of twice (or of a rollout never seen) changes nothing.
        record_progress(&mut list, progress("web", 2, true));
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn the_daemons_observer_writes_progress_into_the_status() {
        let (tx, rx) = watch::channel(DaemonStatus::default());
        let observer = PassWatch::new(tx);
        observer.rollout_progress(&progress("web", 2, false));
        assert_eq!(rx.borrow().rollouts, vec![progress("web", 2, false)]);
        observer.rollout_progress(&progress("web", 4, true));
        assert!(rx.borrow().rollouts.is_empty());
    }

    fn record(service: &str, hash: &str) -> QuarantineRecord {
        QuarantineRecord {
            stack: "shop".into(),
            service: service.into(),
            spec_hash: hash.into(),
            commit: "c0ffee".into(),
            reason: "web-1: exited with code 1".into(),
            batch: 1,
            host: "h1".into(),
            at: "2024-03-01T12:00:00Z".into(),
            id: String::new(),
        }
    }

    fn report(plan: Plan, rollouts: Vec<RolloutReport>) -> PassReport {
        PassReport {
            reason: PassReason::Resync,
            commit: "d00d".into(),
            result: PassResult::RolledBack,
            converged: false,
            plan,
            outcomes: Vec::new(),
            pull_failures: Vec::new(),
            rollouts,
            remaining: None,
            timings: Timings::default(),
        }
    }

    #[test]
    fn quarantines_are_the_plans_and_those_the_pass_rolled_back() {
        let plan = plan_with(vec![record("web", "h-web")]);
        let rolled = RolloutReport {
            stack: "shop".into(),
            service: "api".into(),
            to_hash: "h-api".into(),
            result: RolloutResult::RolledBack {
                reason: "api-2: unhealthy".into(),
                batch: 2,
                host: "h3".into(),
            },
            batches_done: 2,
            batches: 3,
            updated: 1,
        };
        let completed = RolloutReport {
            service: "db".into(),
            result: RolloutResult::Completed,
            ..rolled.clone()
        };
        let mut counters = Counters::default();
        let r = report(plan, vec![rolled.clone(), completed]);
        let q = quarantines(&r);
        assert_eq!(q.len(), 2, "{q:?}");
        assert_eq!(q[0].service, "api");
        assert_eq!(
            (
                q[0].spec_hash.as_str(),
                q[0].batch,
                q[0].host.as_str(),
                q[0].commit.as_str()
            ),
            ("h-api", 2, "h3", "d00d")
        );
        assert_eq!(q[0].reason, "api-2: unhealthy");
        assert!(q[0].at.ends_with('Z'), "{}", q[0].at);
        assert_eq!(q[1], record("web", "h-web"));

        // A record the plan found already is not listed twice.
        let plan = plan_with(vec![record("api", "h-api")]);
        assert_eq!(quarantines(&report(plan, vec![rolled])).len(), 1);

        count_rollouts(&mut counters, &r);
        count_rollouts(&mut counters, &r);
        let api = counters
            .rollouts
            .iter()
            .find(|c| c.service == "api")
            .unwrap();
        assert_eq!((api.result, api.count), ("rolled_back", 2));
        assert_eq!(counters.rollouts.len(), 2);
    }
}
