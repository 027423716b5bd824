//! The daemon's job timer: it sleeps until the next scheduled time of any job (or a pass),
//! then observes the fleet and asks `core::jobs::decide` what is due from the job containers'
//! labels, so a restarted daemon runs at most one catch-up per job and never a time twice.
//! Each run goes to a background task (`exec::jobs::run_job`) that waits for its end with the
//! job's deadline and sends back its outcome; the loop then prunes the runs beyond `history`
//! and refreshes the jobs in the status. `POST /api/v1/jobs/{name}/run` starts one run now.
//!
//! The timer also ticks while a pass runs (`tick_during_pass`, from the pass's own loop):
//! jobs run on their own containers, so a due job starts on time rather than when a long
//! pass ends; only a job that joins another service's containers (a shared namespace,
//! `volumes_from`, `links`: the pass may be replacing them) or binds a secret (the pass's
//! clean-up removes a secret generation no container binds yet) waits for the pass to end.
//!
//! It never busy-loops (one wake per scheduled time), starts nothing once the token is
//! cancelled, and keeps in memory only the runs in flight (the labels hold the rest).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Daemon;
use crate::core::jobs::{self as plan_jobs, Decision, Trigger};
use crate::exec::jobs::JobOutcome;
use crate::model::observed::ObservedState;

/// How often the timer looks again when no job has a schedule (a new commit may add one).
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// What the timer keeps between wakes.
pub(super) struct JobTimer {
    /// When to look again; `None` when no job has a schedule.
    pub next_at: Option<Instant>,
    /// (stack, service, scheduled time) of the runs started and not yet ended.
    in_flight: BTreeSet<(String, String, i64)>,
    /// A job came due during a pass and waits for its end (`after_pass`).
    deferred: bool,
    tx: mpsc::UnboundedSender<JobOutcome>,
    pub rx: mpsc::UnboundedReceiver<JobOutcome>,
}

impl JobTimer {
    pub fn new() -> JobTimer {
        let (tx, rx) = mpsc::unbounded_channel();
        JobTimer {
            // Once at start: a catch-up of a time missed while the daemon was down.
            next_at: Some(Instant::now()),
            in_flight: BTreeSet::new(),
            deferred: false,
            tx,
            rx,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What a tick reads (the fleet, the state in force, the token) and changes (the timer, the
/// task set), borrowed field by field: a pass holds the fleet and the state in force while it
/// runs, and the timer ticks then too (`tick_during_pass`).
pub(super) struct Tick<'a> {
    pub fleet: &'a crate::infra::fleet::Fleet,
    pub loaded: &'a crate::reconcile::Loaded,
    pub timer: &'a mut JobTimer,
    pub tasks: &'a mut tokio::task::JoinSet<()>,
    pub cancel: &'a tokio_util::sync::CancellationToken,
}

impl Tick<'_> {
    /// Starts what is due (a job that `waits_for_pass` only when `during_pass` is false: it is
    /// then left for `after_pass`), sets when to look again, and returns what it observed.
    async fn run(&mut self, during_pass: bool) -> ObservedState {
        let desired = &self.loaded.desired;
        let scheduled: Vec<(String, String, crate::model::job::JobSpec)> = plan_jobs::jobs(desired)
            .into_iter()
            .filter(|(_, _, j)| j.schedule.is_some())
            .map(|(st, sv, j)| (st.to_string(), sv.to_string(), j.clone()))
            .collect();
        let observed = self.fleet.observe(desired).await;
        let now_f = unix_now();
        let now = now_f as i64;
        let runs = plan_jobs::runs(&observed);
        let none = Vec::new();
        let mut next: Option<i64> = None;
        for (stack, service, job) in &scheduled {
            let mine = runs.get(&(stack.clone(), service.clone())).unwrap_or(&none);
            // Runs a daemon that stopped left going past their deadline.
            let overdue: Vec<_> = plan_jobs::overdue(job, mine, |_| None, now)
                .into_iter()
                .filter(|r| {
                    !r.scheduled.is_some_and(|t| {
                        self.timer
                            .in_flight
                            .contains(&(stack.clone(), service.clone(), t))
                    })
                })
                .cloned()
                .collect();
            if !overdue.is_empty() {
                tracing::warn!(job = %format!("{stack}/{service}"), runs = overdue.len(), "job runs past their deadline: stopped");
                crate::exec::jobs::stop_runs(&self.fleet.engines, &overdue).await;
            }
            match plan_jobs::decide(job, mine, now) {
                Decision::Run { .. }
                    if during_pass && plan_jobs::waits_for_pass(desired, stack, service) =>
                {
                    tracing::info!(job = %format!("{stack}/{service}"), "due during a pass: it joins another service's containers or binds a secret, so it runs when the pass ends");
                    self.timer.deferred = true;
                }
                Decision::Run { scheduled, stop } => {
                    let key = (stack.clone(), service.clone(), scheduled);
                    if !self.timer.in_flight.contains(&key) {
                        crate::exec::jobs::stop_runs(&self.fleet.engines, &stop).await;
                        self.start(&observed, stack, service, Trigger::Scheduled(scheduled));
                    }
                }
                Decision::Skip { scheduled, running } => {
                    tracing::info!(job = %format!("{stack}/{service}"), scheduled, %running, "a run is still going (concurrency: forbid): this time is skipped");
                }
                Decision::Wait => {}
            }
            if let Some(t) = plan_jobs::next_due(job, now) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        if scheduled.is_empty() {
            // Run-once jobs only: their state in the status is refreshed now and then.
            self.timer.next_at = Some(Instant::now() + IDLE_CHECK);
        }
        if let Some(t) = next {
            // A little after the time, so that `last_at_or_before` is that time.
            let wait = (t as f64 - now_f).max(0.0) + 0.05;
            self.timer.next_at = Some(Instant::now() + Duration::from_secs_f64(wait));
        }
        observed
    }

    /// Starts one run in the background; its outcome comes back on the timer's channel.
    fn start(&mut self, observed: &ObservedState, stack: &str, service: &str, trigger: Trigger) {
        let loaded = self.loaded;
        if let Trigger::Scheduled(t) | Trigger::Manual(t) = trigger {
            self.timer
                .in_flight
                .insert((stack.to_string(), service.to_string(), t));
        }
        let network_ids = crate::core::pass::plan_pass(
            &loaded.desired,
            observed,
            &Default::default(),
            &loaded.commit,
        )
        .plan
        .network_ids;
        let engines = self.fleet.engines.clone();
        let shells = self.fleet.shells(&loaded.desired);
        let desired = loaded.desired.clone();
        let commit = loaded.commit.clone();
        let observed = observed.clone();
        let (stack, service) = (stack.to_string(), service.to_string());
        let tx = self.timer.tx.clone();
        let cancel = self.cancel.child_token();
        tracing::info!(job = %format!("{stack}/{service}"), ?trigger, "job run starts");
        self.tasks.spawn(async move {
            let images = crate::reconcile::image_source(&desired).await;
            let out = crate::exec::jobs::run_job(
                &engines,
                &images,
                &shells,
                &desired,
                &observed,
                &network_ids,
                &stack,
                &service,
                trigger,
                &commit,
                &cancel,
            )
            .await;
            let _ = tx.send(out);
        });
    }
}

/// The timer is due while a pass runs: the jobs due start now, on their own containers, but
/// for those `core::jobs::waits_for_pass` keeps for its end (`JobTimer::after_pass`). The
/// status's jobs are refreshed when the runs end (`job_done`).
pub(super) async fn tick_during_pass(mut tick: Tick<'_>) {
    tick.timer.next_at = None;
    if tick.cancel.is_cancelled() {
        return;
    }
    if plan_jobs::jobs(&tick.loaded.desired).is_empty() {
        tick.timer.next_at = Some(Instant::now() + IDLE_CHECK);
        return;
    }
    tick.run(true).await;
}

impl JobTimer {
    /// A pass ended: a job it kept waiting is looked at now, and so are the jobs in the status
    /// when the pass ran some (`ran_jobs`: its run-once jobs).
    pub(super) fn after_pass(&mut self, ran_jobs: bool) {
        if std::mem::take(&mut self.deferred) || ran_jobs {
            self.next_at = Some(Instant::now());
        }
    }
}

impl Daemon {
    /// The timer is due: start what is due, then sleep until the next scheduled time.
    pub(super) async fn jobs_tick(&mut self) {
        self.jobs.next_at = None;
        let Some(loaded) = self.loaded.clone() else {
            // Nothing in force yet: look again after the first pass.
            self.jobs.next_at = Some(Instant::now() + Duration::from_secs(1));
            return;
        };
        if self.cancel.is_cancelled() {
            return;
        }
        if plan_jobs::jobs(&loaded.desired).is_empty() {
            // A later commit may bring jobs: look again now and then (no observation).
            self.publish(|s| s.jobs.clear());
            self.jobs.next_at = Some(Instant::now() + IDLE_CHECK);
            return;
        }
        let observed = self.tick(&loaded).run(false).await;
        self.refresh_jobs(&loaded, &observed).await;
    }

    /// The timer's view of this daemon, for `loaded`.
    fn tick<'a>(&'a mut self, loaded: &'a crate::reconcile::Loaded) -> Tick<'a> {
        Tick {
            fleet: &self.fleet,
            loaded,
            timer: &mut self.jobs,
            tasks: &mut self.tasks,
            cancel: &self.cancel,
        }
    }

    /// A run ended: prune beyond `history`, refresh the status.
    pub(super) async fn job_done(&mut self, out: JobOutcome) {
        if let Trigger::Scheduled(t) | Trigger::Manual(t) = out.trigger {
            self.jobs
                .in_flight
                .remove(&(out.stack.clone(), out.service.clone(), t));
        }
        let Some(loaded) = self.loaded.clone() else {
            return;
        };
        self.job_notifier().job_outcome(&out, &loaded.commit);
        self.record_history(
            out.history_entry(&loaded.desired.fleet, unix_now()),
            super::history::Dedup::Never,
        );
        if self.cancel.is_cancelled() {
            return;
        }
        let observed = self.fleet.observe(&loaded.desired).await;
        crate::exec::jobs::prune(
            &self.fleet.engines,
            &loaded.desired,
            &observed,
            &out.stack,
            &out.service,
        )
        .await;
        let observed = self.fleet.observe(&loaded.desired).await;
        self.refresh_jobs(&loaded, &observed).await;
    }

    /// `POST /api/v1/jobs/{name}/run`.
    pub(super) async fn run_job_now(&mut self, name: &str) -> Result<String, String> {
        let loaded = self
            .loaded
            .clone()
            .ok_or("no desired state is in force yet")?;
        let (stack, service, _) = plan_jobs::find_job(&loaded.desired, name)?;
        let (stack, service) = (stack.to_string(), service.to_string());
        let observed = self.fleet.observe(&loaded.desired).await;
        self.tick(&loaded).start(
            &observed,
            &stack,
            &service,
            Trigger::Manual(unix_now() as i64),
        );
        Ok(format!("{stack}/{service}"))
    }

    /// The jobs in the status, from `observed`.
    async fn refresh_jobs(&mut self, loaded: &crate::reconcile::Loaded, observed: &ObservedState) {
        let runs = crate::exec::jobs::read_runs(
            &self.fleet.engines,
            observed,
            &loaded.desired.secret_values,
        )
        .await;
        let jobs = plan_jobs::statuses(&loaded.desired, runs, unix_now() as i64);
        self.publish(|s| s.jobs = jobs);
    }
}
