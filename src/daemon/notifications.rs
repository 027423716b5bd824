//! The daemon's side of notifications: which endpoints are in force (the daemon config's plus
//! those of the commit in force), what its passes, holds and hosts say (through the pure
//! `model::notify::Coalescer`), and the handle the job runner tells job runs through.
//!
//! It only queues (`infra::notify::Notifier::notify` never waits): a pass is never blocked,
//! slowed or failed by an endpoint. Endpoints whose files cannot be read are warned about when
//! they come into force and skipped; the URLs, tokens and secrets they read are registered with
//! the log writer's mask. It decides nothing about passes.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::infra::notify::{resolve, Notifier, NotifyCounts};
use crate::model::history::HistoryEntry;
use crate::model::notify::{job_event, Coalescer, Event, JobRun, NotificationSpec};
use crate::reconcile::Loaded;

/// The daemon's notifications.
pub(super) struct Notifications {
    notifier: Notifier,
    coalescer: Coalescer,
    /// From the daemon's config (paths already absolute when the config had a folder).
    config: Vec<NotificationSpec>,
    /// Where the repository's relative paths start, when it is on this machine.
    repo_dir: Option<PathBuf>,
    /// The endpoints in force (config + commit), to see when they change.
    active: Option<Vec<NotificationSpec>>,
    /// The commit whose values are masked now.
    context: Option<String>,
}

impl Notifications {
    pub(super) fn new(counts: NotifyCounts) -> Notifications {
        Notifications {
            notifier: Notifier::new(counts),
            coalescer: Coalescer::default(),
            config: Vec::new(),
            repo_dir: None,
            active: None,
            context: None,
        }
    }

    pub(super) fn set_config(&mut self, specs: Vec<NotificationSpec>, repo_dir: Option<PathBuf>) {
        self.config = specs;
        self.repo_dir = repo_dir;
        self.active = None;
    }

    pub(super) fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// Brings the endpoints and the masked values in line with `loaded` (the state in force).
    fn align(&mut self, loaded: Option<&Loaded>) {
        let mut specs = self.config.clone();
        if let Some(l) = loaded {
            for s in &l.desired.settings.notifications {
                if !specs.contains(s) {
                    specs.push(s.clone());
                }
            }
        }
        let commit = loaded.map(|l| l.commit.clone());
        if self.active.as_ref() == Some(&specs) && self.context == commit {
            return;
        }
        if self.active.as_ref() != Some(&specs) {
            let from_config = self.config.len();
            let mut endpoints = Vec::new();
            let mut secrets = BTreeSet::new();
            for (i, spec) in specs.iter().enumerate() {
                let (name, base) = if i < from_config {
                    (
                        format!("daemon config notifications[{i}] ({})", spec.kind.code()),
                        None,
                    )
                } else {
                    (
                        format!(
                            "convoy.yaml notifications[{}] ({})",
                            i - from_config,
                            spec.kind.code()
                        ),
                        self.repo_dir.as_deref(),
                    )
                };
                match resolve(spec, name, base) {
                    Ok(e) => {
                        secrets.extend(e.secrets());
                        endpoints.push(e);
                    }
                    Err(why) => {
                        tracing::warn!(error = %why, "a notification endpoint is skipped")
                    }
                }
            }
            // Masked in every line the process writes from here on.
            crate::reconcile::register_secrets(&secrets);
            if !endpoints.is_empty() {
                tracing::info!(endpoints = endpoints.len(), "notifications configured");
            }
            self.notifier.configure(endpoints);
            self.active = Some(specs);
        }
        let mut hidden: BTreeSet<String> =
            crate::reconcile::known_secrets().iter().cloned().collect();
        let fleet = match loaded {
            Some(l) => {
                hidden.extend(crate::model::notify::hidden_values(&l.desired));
                l.desired.fleet.clone()
            }
            None => String::new(),
        };
        self.notifier.set_context(&fleet, hidden);
        self.context = commit;
    }

    fn send(&self, events: Vec<Event>) {
        for e in events {
            self.notifier.notify(e);
        }
    }

    /// A pass of `loaded` begins; `down`: the hosts past `host_down_after` now.
    pub(super) fn pass_started(&mut self, loaded: &Loaded, down: &BTreeSet<String>) {
        self.align(Some(loaded));
        let mut events = self.coalescer.hosts_down(down);
        events.extend(
            self.coalescer
                .pass_started(&loaded.commit, loaded.desired.hosts.len()),
        );
        self.send(events);
    }

    /// The pass of `loaded` ended with the history entry `entry`.
    pub(super) fn pass_ended(&mut self, loaded: Option<&Loaded>, entry: &HistoryEntry) {
        let hosts = loaded.map(|l| l.desired.hosts.len()).unwrap_or(0);
        let events = self.coalescer.pass_ended(entry, hosts, unix_now());
        self.send(events);
    }

    /// `host` is connected again.
    pub(super) fn host_back(&mut self, host: &str) {
        let events = self.coalescer.host_back(host);
        self.send(events);
    }

    /// A commit is held (`loaded`: the state still in force).
    pub(super) fn held(
        &mut self,
        loaded: Option<&Loaded>,
        commit: &str,
        reason: crate::model::outcome::HoldReason,
        message: &str,
    ) {
        self.align(loaded);
        let events = self.coalescer.held(commit, reason, Some(message));
        self.send(events);
    }

    /// At shutdown: what is queued gets at most `within` to be delivered.
    pub(super) async fn flush(&self, within: Duration) {
        let left = self.notifier.flush(within).await;
        if left > 0 {
            tracing::warn!(
                left,
                "notifications still undelivered at shutdown are dropped"
            );
        }
    }
}

/// How long a one-shot `convoy apply` waits at exit for its notifications.
pub const ONE_SHOT_GRACE: Duration = Duration::from_secs(5);

/// A one-shot command's notifications (`convoy apply`): `started` and how the pass ended
/// (applied, failed, rolled back, held) to the endpoints of `loaded`'s `convoy.yaml`, waiting
/// at most `ONE_SHOT_GRACE` for delivery (what is left then is dropped, with a warning).
/// `repo_dir`: where relative paths start. Nothing happens without endpoints.
pub async fn notify_once(
    loaded: &Loaded,
    repo_dir: Option<PathBuf>,
    report: &crate::model::outcome::PassReport,
    jobs: &[crate::exec::jobs::JobOutcome],
    started: f64,
) {
    if loaded.desired.settings.notifications.is_empty() {
        return;
    }
    let mut n = Notifications::new(NotifyCounts::default());
    n.set_config(Vec::new(), repo_dir);
    n.pass_started(loaded, &BTreeSet::new());
    let (entry, _) = crate::model::history::pass_entry(report, &report.result, started, started);
    n.pass_ended(Some(loaded), &entry);
    tell_jobs(&n, jobs, &loaded.commit);
    let left = n.notifier.flush(ONE_SHOT_GRACE).await;
    if left > 0 {
        tracing::warn!(
            left,
            wait_s = ONE_SHOT_GRACE.as_secs(),
            "notifications not delivered in time are dropped"
        );
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// What the job runner tells job runs through: cheap to clone, never waits.
#[derive(Clone)]
pub struct JobNotifier {
    notifier: Notifier,
}

impl JobNotifier {
    /// A run of `job` (of `stack`, on `host`, for `commit`) ended with `exit_code` after
    /// `duration`: `job_succeeded` for 0, `job_failed` otherwise, to every endpoint that wants
    /// it.
    pub fn job_finished(
        &self,
        job: &str,
        stack: &str,
        host: &str,
        exit_code: i64,
        duration: Duration,
        commit: &str,
    ) {
        self.notifier.notify(job_event(JobRun {
            job: job.to_string(),
            stack: stack.to_string(),
            host: host.to_string(),
            exit_code,
            duration_ms: duration.as_millis().min(u128::from(u64::MAX)) as u64,
            commit: commit.to_string(),
        }));
    }

    /// A run as the job runner reports it: told once it ended (a run abandoned at shutdown,
    /// still going, says nothing); one that could not start or was killed at its deadline is a
    /// failure even when the engine says 0.
    pub fn job_outcome(&self, out: &crate::exec::jobs::JobOutcome, commit: &str) {
        if out.run.phase == crate::model::job::RunPhase::Running {
            return;
        }
        let exit_code = match out.run.exit_code {
            _ if out.succeeded() && !out.timed_out => 0,
            Some(c) if c != 0 => c,
            _ => -1,
        };
        let duration = Duration::from_secs(out.run.duration_secs.unwrap_or(0).max(0) as u64);
        self.job_finished(
            &out.service,
            &out.stack,
            &out.run.host,
            exit_code,
            duration,
            commit,
        );
    }
}

/// `notify_once`'s jobs: the run-once jobs a one-shot pass ran.
fn tell_jobs(n: &Notifications, jobs: &[crate::exec::jobs::JobOutcome], commit: &str) {
    let jn = JobNotifier {
        notifier: n.notifier(),
    };
    for out in jobs {
        jn.job_outcome(out, commit);
    }
}

impl super::Daemon {
    /// Tells the endpoints how the run-once jobs of a pass ended.
    pub(super) fn tell_pass_jobs(&self, jobs: &[crate::exec::jobs::JobOutcome], commit: &str) {
        let jn = self.job_notifier();
        for out in jobs {
            jn.job_outcome(out, commit);
        }
    }

    /// After a restart: the commit the history's newest entry of this fleet applied cleanly
    /// was already said started and applied, so the first passes of that same commit say
    /// nothing again (a heal still says healed). Nothing without a history or a loaded commit.
    pub(super) fn resume_notifications(&mut self) {
        let (Some(history), Some(l)) = (&self.history, &self.candidate) else {
            return;
        };
        match history.latest(&l.desired.fleet) {
            Ok(Some(e)) if e.is_good() => self.notifications.coalescer.resume(&e.commit),
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "the history cannot say what was applied"),
        }
    }

    /// Notification endpoints from the daemon's config (told besides those of the commit in
    /// force), and where the repository's relative paths start when it is on this machine.
    pub fn set_notifications(&mut self, specs: Vec<NotificationSpec>, repo_dir: Option<PathBuf>) {
        self.notifications.set_config(specs, repo_dir);
    }

    /// The handle the job runner tells job runs through.
    pub fn job_notifier(&self) -> JobNotifier {
        JobNotifier {
            notifier: self.notifications.notifier(),
        }
    }
}
