//! Jobs: services that run to completion at scheduled times (`x-convoy: {job: {schedule}}`) or
//! once per spec (a job without `schedule`, a migration). The desired side (`JobSpec`), the
//! label scheme that keeps the record of every run on the engines (`convoy.job`), a run as read
//! back from its container (`JobRun`), and the job state the daemon's status, the API and
//! `convoy jobs` show (`JobStatus`).
//!
//! Types and their fixed forms only: no I/O, no clock. When a job runs is decided in
//! `core::jobs` from these values and a time handed in.

use serde::{Deserialize, Serialize};

/// On a job's container: the scheduled time it ran for, in Unix seconds, or `once` for a
/// run-once job. With the spec hash and the commit labels it is the record of the run: a
/// restarted daemon reads it back and never runs a job twice for one scheduled time.
pub const LABEL_JOB: &str = "convoy.job";
/// On a job's container started by hand (`convoy jobs run`): `manual`. Absent otherwise.
pub const LABEL_JOB_TRIGGER: &str = "convoy.job-trigger";
/// The value of `LABEL_JOB` of a run-once job's container.
pub const ONCE: &str = "once";
/// `history`'s default: finished job containers kept per job.
pub const DEFAULT_HISTORY: u32 = 5;

/// What to do when a job's time comes while its previous run still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concurrency {
    /// Skip the new run (Kubernetes' `Forbid`).
    #[default]
    Forbid,
    /// Run both.
    Allow,
    /// Stop the running one, then run the new one.
    Replace,
}

impl Concurrency {
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Allow => "allow",
            Concurrency::Replace => "replace",
        }
    }
}

/// A service's `x-convoy.job`, validated. Not part of the container spec, so not in the spec
/// hash: changing only the schedule starts no run-once job again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The schedule as written (read by `model::schedule::Schedule`); `None` for a run-once job.
    pub schedule: Option<String>,
    /// The IANA time zone of `schedule` (`UTC` by default).
    pub timezone: String,
    pub concurrency: Concurrency,
    /// How long a run may take, and how late a missed run may still start, in seconds; `None`
    /// is the schedule's period (a run-once job: no limit).
    pub deadline_secs: Option<u64>,
    /// Finished job containers kept per job (the newest); older ones are removed.
    pub history: u32,
    /// Services of the stack whose rollout waits for this (run-once) job's success.
    pub before: Vec<String>,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            schedule: None,
            timezone: "UTC".into(),
            concurrency: Concurrency::Forbid,
            deadline_secs: None,
            history: DEFAULT_HISTORY,
            before: Vec::new(),
        }
    }
}

impl JobSpec {
    /// The parsed schedule; `None` for a run-once job (the manifest refused a bad one).
    pub fn parsed(&self) -> Option<crate::model::schedule::Schedule> {
        let text = self.schedule.as_deref()?;
        crate::model::schedule::Schedule::parse(text, Some(&self.timezone)).ok()
    }

    /// The deadline in seconds at `t`: as written, else the schedule's period; `None` for a
    /// run-once job without one.
    pub fn deadline_at(&self, t: i64) -> Option<i64> {
        if let Some(d) = self.deadline_secs {
            return Some(d as i64);
        }
        self.parsed()?.period(t)
    }
}

/// The state of one run, read from its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunPhase {
    Running,
    Succeeded,
    Failed,
}

/// One run of a job, from its container's labels and state (and, once known, its logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRun {
    pub host: String,
    pub container: String,
    /// The scheduled time (Unix seconds) it ran for; `None` for a run-once job.
    pub scheduled: Option<i64>,
    /// `scheduled` as RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    pub phase: RunPhase,
    /// The exit code once it ended.
    pub exit_code: Option<i64>,
    /// Start and end as Unix seconds, when the engine reports them.
    pub started: Option<i64>,
    pub finished: Option<i64>,
    /// `finished - started`, in seconds.
    pub duration_secs: Option<i64>,
    pub spec_hash: String,
    pub commit: String,
    /// Started by hand (`convoy jobs run`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// The last lines of its logs, masked; filled by whoever read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_lines: Vec<String>,
}

/// One job as status, the API and `convoy jobs` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub stack: String,
    pub name: String,
    /// The schedule as written; `None` for a run-once job.
    pub schedule: Option<String>,
    pub timezone: String,
    pub concurrency: Concurrency,
    /// The next scheduled time, RFC 3339; `None` for a run-once job.
    pub next_run: Option<String>,
    /// Newest first.
    pub last_runs: Vec<JobRun>,
}

/// The engine name of a job's container: `<stack>-<service>-job-<tag>`, where `tag` is the
/// scheduled time, or `once-<spec hash>` for a run-once job. A name never held by a replica
/// (`<stack>-<service>-<slot>` has a number for a slot).
pub fn job_container_name(stack: &str, service: &str, tag: &str) -> String {
    format!("{stack}-{service}-job-{tag}")
}

/// A run-once job whose current spec has not run (no container of its spec hash): the pass
/// runs it, after its other steps and before the services of `before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDue {
    pub stack: String,
    pub service: String,
    pub spec_hash: String,
    pub before: Vec<String>,
}

/// A job's run as the deploy history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRunEntry {
    pub stack: String,
    pub service: String,
    #[serde(flatten)]
    pub run: JobRun,
}
