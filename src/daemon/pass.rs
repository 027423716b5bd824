//! One daemon pass: decide the candidate commit (in force, or held by the deletion guard), run
//! `reconcile::run_pass` on the state in force, and record what it did (counters, per-service
//! counts, host states) for status and metrics.
//!
//! While the pass runs, the loop's triggers are still read: one that brings a newer desired
//! state (a push, a fetch that moved the branch, a changed file) cancels the pass's own token,
//! so a gate wait or a long plan stops at once ("the step in flight finishes, nothing new
//! starts") and the next pass plans from the newer commit. Every other trigger waits for the
//! pass to end and is handled then, in order. Part of the `Daemon` state machine; it decides
//! no delays (the error policy does) and prints nothing.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::history::Dedup;
use super::intake::{spawn_fetch, supersedes};
use super::{progress, requeue, ApiRequest, Daemon, ServiceCount, Trigger};
use crate::core::schedule::{Assignment, Placement};
use crate::model::observed::{ObservedHost, ObservedState, RunState};
use crate::model::outcome::{PassReason, PassReport, PassResult};
use crate::model::spec::{container_name, DesiredState};
use crate::reconcile::{self, PassOptions};

impl Daemon {
    /// One pass for every request queued.
    pub(super) async fn pass(&mut self) {
        // A re-read that is due (a push seen a moment ago) comes before the pass: a pass of
        // the old commit would wait at the very gate the new one fixes.
        // (A working directory keeps its quiet period: its files may be half written.)
        if self.source.local_dir().is_none() && self.reload_at.take().is_some() {
            if let Some(why) = self.reload() {
                self.request(why);
            }
        }
        self.decide_candidate().await;
        if self.loaded.is_none() {
            // Nothing valid and allowed yet: nothing to pass on.
            self.requests.clear();
            return;
        }
        let requests = std::mem::take(&mut self.requests);
        // A pass that runs a new commit says so, whatever was queued before it (a confirm
        // the last pass asked for): the status, history and notifications name the push.
        let reason = requests
            .iter()
            .find(|r| matches!(r, PassReason::NewCommit { .. }))
            .or(requests.first())
            .cloned()
            .unwrap_or(PassReason::Resync);
        let started = super::history::now();
        self.requeued = None;
        self.next_resync = Instant::now() + self.opts.resync;
        self.passes += 1;
        let memory = {
            let loaded = self.loaded.as_ref().expect("checked above");
            self.memory(loaded)
        };
        for name in &memory.down {
            tracing::warn!(host = %name, "host is down (unreachable past host_down_after): its replicas are placed elsewhere");
        }
        if let Some(loaded) = &self.loaded {
            self.notifications.pass_started(loaded, &memory.down);
        }
        self.publish(|s| s.phase = "passing");
        let pass_cancel = self.cancel.child_token();
        let mut superseded = false;
        let mut later: Vec<Trigger> = Vec::new();
        let mut later_api: Vec<ApiRequest> = Vec::new();
        let pass_opts = PassOptions::default();
        let observer = progress::PassWatch::new(self.status.clone());
        let run = {
            let loaded = self.loaded.as_ref().expect("checked above");
            let run = reconcile::run_pass(
                &self.fleet,
                loaded,
                &memory,
                reason.clone(),
                &pass_opts,
                &pass_cancel,
                observer,
            );
            tokio::pin!(run);
            loop {
                tokio::select! {
                    run = &mut run => break run,
                    Some(t) = self.rx.recv() => {
                        if let Trigger::Fetched { .. } = &t {
                            // The fetch's bookkeeping now, so a webhook during the pass can
                            // fetch again; the rest when the trigger is handled after it.
                            self.intake.fetching = false;
                            if std::mem::take(&mut self.intake.fetch_again) {
                                spawn_fetch(&mut self.intake, &mut self.tasks, &self.source, &self.tx);
                            }
                        }
                        if !superseded
                            && supersedes(self.source.as_ref(), &self.intake, &t, loaded, self.inputs.as_ref())
                        {
                            tracing::info!("a newer desired state arrived: the pass stops starting steps and waiting");
                            superseded = true;
                            pass_cancel.cancel();
                        }
                        later.push(t);
                    }
                    Some(r) = self.api_rx.recv() => {
                        // A webhook or a sync during a long pass fetches now: its commit may
                        // supersede the pass.
                        match r {
                            ApiRequest::Fetch { .. } => spawn_fetch(&mut self.intake, &mut self.tasks, &self.source, &self.tx),
                            ApiRequest::Sync { .. } => {
                                spawn_fetch(&mut self.intake, &mut self.tasks, &self.source, &self.tx);
                                later_api.push(r);
                            }
                            other => later_api.push(other),
                        }
                    }
                    _ = sleep_until_poll(self.jobs.next_at) => {
                        // Jobs run on their own containers: a due one starts now (`jobs`).
                        super::jobs::tick_during_pass(super::jobs::Tick {
                            fleet: &self.fleet,
                            loaded,
                            timer: &mut self.jobs,
                            tasks: &mut self.tasks,
                            cancel: &self.cancel,
                        })
                        .await;
                    }
                    _ = sleep_until_poll(self.intake.next_poll) => {
                        // Polling goes on during a pass, so a polled remote's fix lands too.
                        let next = self.intake.jittered(self.opts.poll);
                        self.intake.next_poll = Some(Instant::now() + next);
                        spawn_fetch(&mut self.intake, &mut self.tasks, &self.source, &self.tx);
                    }
                }
            }
        };
        self.jobs.after_pass(!run.jobs.is_empty());
        if requests.len() > 1 {
            tracing::debug!(
                coalesced = requests.len(),
                "one pass answered several requests"
            );
        }
        if let Some(l) = &self.loaded {
            self.tell_pass_jobs(&run.jobs, &l.commit);
        }
        let mut report = run.report;
        if superseded && !self.cancel.is_cancelled() {
            report.result = PassResult::Superseded;
        }
        self.remember_run(&run.observed, &run.decided);
        self.probe_silent(&run.observed).await;
        match &report.result {
            PassResult::Failed => self.failing = self.failing.saturating_add(1),
            _ => self.failing = 0,
        }
        if let Some((delay, next)) = requeue(&report.result, self.failing) {
            if report.result == PassResult::Failed {
                tracing::warn!(
                    retry_in_ms = delay.as_millis() as u64,
                    "steps failed; retrying later"
                );
            }
            self.requeued = Some((Instant::now() + delay, next));
        }
        self.count(&report);
        progress::count_rollouts(&mut self.counters, &report);
        let services = service_counts(
            self.loaded.as_ref().map(|l| &l.desired),
            &run.decided.placement,
            &run.observed,
        );
        self.finish(&report, services);
        self.publish_facts(&run.observed, &run.decided.placement, &report);
        let (entry, acted) = crate::model::history::pass_entry(
            &report,
            &report.result,
            started,
            super::history::now(),
        );
        let dedup = match &report.result {
            _ if acted => Some(Dedup::Never),
            PassResult::Held { .. } => Some(Dedup::SameHold),
            PassResult::Converged | PassResult::Applied => Some(Dedup::SameCommit),
            // A failed observation or a superseded pass says nothing about its commit.
            _ => None,
        };
        self.notifications.pass_ended(self.loaded.as_ref(), &entry);
        if let Some(dedup) = dedup {
            self.record_history(entry, dedup);
        }
        // The pass's run-once jobs, each a job entry as a scheduled run is, after the pass's
        // own (whose dedup by commit they must not answer).
        for out in &run.jobs {
            let job = out.history_entry(&report.plan.fleet, super::history::now());
            self.record_history(job, Dedup::Never);
        }
        for t in later {
            self.handle(t).await;
        }
        if superseded && self.source.local_dir().is_none() {
            // The newer state is read now, before anything else can start a pass of the old.
            self.reload_at = None;
            if let Some(why) = self.reload() {
                self.request(why);
            }
        }
        for r in later_api {
            if let ApiRequest::Diff { reply } = &r {
                if reply.is_closed() {
                    continue;
                }
            }
            if let ApiRequest::DiffText { reply } = &r {
                if reply.is_closed() {
                    continue;
                }
            }
            self.api(r).await;
        }
    }

    /// The counters that `/metrics` serves.
    fn count(&mut self, report: &PassReport) {
        let c = &mut self.counters;
        *c.passes.entry(report.result.code()).or_default() += 1;
        c.pass_duration
            .observe(report.timings.total_ms as f64 / 1000.0);
        // The same rule as the history's: a pass a change of the repository caused heals nothing.
        let heals = crate::model::history::trigger_heals(&report.reason);
        let steps: BTreeMap<usize, &crate::model::plan::Action> = report
            .plan
            .steps
            .iter()
            .map(|s| (s.id, &s.action))
            .collect();
        for o in report.outcomes.iter().filter(|o| o.error.is_none()) {
            let Some(action) = steps.get(&o.id) else {
                continue;
            };
            *c.steps.entry(action.kind()).or_default() += 1;
            if let (true, Some(reason)) = (heals, action.heal()) {
                *c.heals.entry(reason.code()).or_default() += 1;
            }
        }
    }

    /// Publishes how the pass ended.
    fn finish(&mut self, report: &PassReport, services: Vec<ServiceCount>) {
        let disconnected: BTreeMap<String, String> = self
            .fleet
            .failed
            .iter()
            .map(|(h, e)| (h.clone(), e.reason.clone()))
            .collect();
        let hosts = self.host_states();
        let passes = self.passes;
        let counters = self.counters.clone();
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let quarantined = progress::quarantines(report);
        progress::log_quarantines(&quarantined);
        let last_rollouts = report.rollouts.clone();
        // A held commit leaves the last good one running: the pass says so when it had nothing
        // else to do.
        let held = self.intake.pending.as_ref().map(|p| p.reason);
        let result = match (&report.result, held) {
            (PassResult::Converged, Some(reason)) => PassResult::Held { reason },
            (r, _) => r.clone(),
        };
        self.publish(move |s| {
            s.phase = "idle";
            s.ready = true;
            s.passes = passes;
            s.last_reason = Some(report.reason.clone());
            s.last_result = Some(result);
            s.last_pass_at = Some(at);
            s.last_pass_ms = Some(report.timings.total_ms);
            s.converged = report.converged;
            s.disconnected = disconnected;
            s.hosts = hosts;
            s.services = services;
            s.counters = counters;
            // Nothing is in flight once the pass has ended; how each rollout ended is kept.
            s.rollouts.clear();
            s.last_rollouts = last_rollouts;
            s.quarantined = quarantined;
        });
    }
}

/// Sleeps until the next poll of a remote, or for ever when there is none.
async fn sleep_until_poll(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Desired, running and pending replicas per stack and service.
/// Replicas are looked up by `replica_name` in `desired` (the state the pass ran), so a
/// `container_name` is counted too.
pub(super) fn service_counts(
    desired: Option<&DesiredState>,
    placement: &Placement,
    observed: &ObservedState,
) -> Vec<ServiceCount> {
    let mut out: BTreeMap<(String, String), ServiceCount> = BTreeMap::new();
    for (key, a) in &placement.replicas {
        let entry = out
            .entry((key.stack.clone(), key.service.clone()))
            .or_insert_with(|| ServiceCount {
                stack: key.stack.clone(),
                service: key.service.clone(),
                desired: 0,
                running: 0,
                pending: 0,
            });
        entry.desired += 1;
        match a {
            Assignment::Pending { .. } => entry.pending += 1,
            Assignment::Host { host } => {
                let name = match desired {
                    Some(d) => d.replica_name(&key.stack, &key.service, &key.slot),
                    None => container_name(&key.stack, &key.service, &key.slot),
                };
                let running = observed
                    .hosts
                    .get(host)
                    .and_then(ObservedHost::snapshot)
                    .and_then(|s| s.containers.get(&name))
                    .is_some_and(|c| c.state == RunState::Running);
                if running {
                    entry.running += 1;
                }
            }
        }
    }
    out.into_values().collect()
}
