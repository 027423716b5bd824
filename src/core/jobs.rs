//! When jobs run, decided from the job containers' labels and a time handed in: the scheduled
//! time that is due (at most one, the last one within `deadline`, never one that already has a
//! container: "never twice for one scheduled time", also across a restart, since the record
//! is on the engines), what concurrency asks of a run still going, which finished runs go
//! beyond `history`, whether a run-once job's current spec has run, and which services its
//! `before:` holds.
//!
//! It also gives the planner its view of a fleet with jobs (`planning_view`): job services are
//! left out of placement and planning (never healed, never counted, never "not converged"
//! while a job waits for its time), their containers are not strays, and their networks are
//! kept. The services a run-once job holds are planned, then frozen on the spec they run
//! (`core::frozen`): healed with it, never given the new spec until the job succeeds. Pure: no
//! I/O, no clock ("the planning core is pure"); it starts nothing (the daemon and `exec::jobs`
//! do).

use std::collections::{BTreeMap, BTreeSet};

use crate::model::job::{Concurrency, JobDue, JobSpec, LABEL_JOB, LABEL_JOB_TRIGGER, ONCE};
use crate::model::observed::{ObservedContainer, ObservedHost, ObservedState, RunState};
use crate::model::plan::{Action, PendingReplica, Plan, Reason, Step};
use crate::model::spec::DesiredState;

/// One run of a job as its container shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRun {
    pub host: String,
    pub name: String,
    pub id: String,
    /// The scheduled time it ran for; `None` for a run-once job's run.
    pub scheduled: Option<i64>,
    pub spec_hash: String,
    pub commit: String,
    pub running: bool,
    /// The exit code once it ended.
    pub exit_code: Option<i64>,
    /// The engine's creation time (RFC 3339), which orders runs of equal scheduled time.
    pub created: String,
    pub manual: bool,
    pub grace_secs: Option<i64>,
}

/// The run a job container records, or `None` for a container that is no job's.
pub fn seen_run(host: &str, c: &ObservedContainer) -> Option<SeenRun> {
    let label = c.actual.labels.get(LABEL_JOB)?;
    let scheduled = if label == ONCE {
        None
    } else {
        Some(label.parse::<i64>().ok()?)
    };
    let running = matches!(
        c.state,
        RunState::Running | RunState::Restarting | RunState::Paused | RunState::Created
    );
    Some(SeenRun {
        host: host.to_string(),
        name: c.name.clone(),
        id: c.id.clone(),
        scheduled,
        spec_hash: c.spec_hash.clone(),
        commit: c.commit.clone(),
        running,
        exit_code: (!running).then_some(c.exit_code),
        created: c.created.clone(),
        manual: c.actual.labels.get(LABEL_JOB_TRIGGER).map(String::as_str) == Some("manual"),
        grace_secs: c.actual.stop_grace_period_secs,
    })
}

/// Every run of every job seen, by (stack, service), newest first.
pub fn runs(observed: &ObservedState) -> BTreeMap<(String, String), Vec<SeenRun>> {
    let mut out: BTreeMap<(String, String), Vec<SeenRun>> = BTreeMap::new();
    for (host, obs) in &observed.hosts {
        let Some(snap) = obs.snapshot() else { continue };
        for c in snap.containers.values() {
            if let Some(r) = seen_run(host, c) {
                out.entry((c.stack.clone(), c.service.clone()))
                    .or_default()
                    .push(r);
            }
        }
    }
    for list in out.values_mut() {
        sort_newest_first(list);
    }
    out
}

/// Newest first: by scheduled time (a run-once run counts as its creation), then creation.
pub fn sort_newest_first(runs: &mut [SeenRun]) {
    runs.sort_by(|a, b| {
        (b.scheduled, &b.created, &b.name).cmp(&(a.scheduled, &a.created, &a.name))
    });
}

/// A run-once job's state for its current spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceState {
    /// No container of this spec: it runs in the next pass.
    Due,
    Running,
    Succeeded,
    Failed {
        exit_code: i64,
    },
}

/// Whether a run-once job's spec `hash` has run: a container of that hash, in any state, is
/// its run (removing it by hand makes the job run again).
pub fn once_state(hash: &str, runs: &[SeenRun]) -> OnceState {
    let mine: Vec<&SeenRun> = runs
        .iter()
        .filter(|r| r.scheduled.is_none() && r.spec_hash == hash)
        .collect();
    if mine.is_empty() {
        return OnceState::Due;
    }
    if mine.iter().any(|r| r.running) {
        return OnceState::Running;
    }
    if mine.iter().any(|r| r.exit_code == Some(0)) {
        return OnceState::Succeeded;
    }
    OnceState::Failed {
        exit_code: mine.iter().find_map(|r| r.exit_code).unwrap_or(-1),
    }
}

/// What the timer should do about a scheduled job at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due.
    Wait,
    /// Start a run for `scheduled`, after stopping `stop` (concurrency `replace`).
    Run { scheduled: i64, stop: Vec<SeenRun> },
    /// `scheduled` is due but a run still goes and concurrency is `forbid`: it is tried again
    /// on the next tick while within the deadline.
    Skip { scheduled: i64, running: String },
}

/// The decision for a scheduled job at `now`, from its runs (any order). Only the last
/// scheduled time at or before `now` is ever considered, so a daemon that was down across
/// several times runs at most one catch-up, and only within `deadline` of that time; a time
/// that has a container (in any state) never runs again.
pub fn decide(job: &JobSpec, runs: &[SeenRun], now: i64) -> Decision {
    let Some(schedule) = job.parsed() else {
        return Decision::Wait;
    };
    let Some(last) = schedule.last_at_or_before(now) else {
        return Decision::Wait;
    };
    if runs.iter().any(|r| r.scheduled == Some(last) && !r.manual) {
        return Decision::Wait;
    }
    let deadline = job.deadline_at(last).unwrap_or(i64::MAX);
    if now - last > deadline {
        return Decision::Wait;
    }
    let running: Vec<SeenRun> = runs.iter().filter(|r| r.running).cloned().collect();
    match (job.concurrency, running.first()) {
        (_, None) | (Concurrency::Allow, _) => Decision::Run {
            scheduled: last,
            stop: Vec::new(),
        },
        (Concurrency::Forbid, Some(r)) => Decision::Skip {
            scheduled: last,
            running: r.name.clone(),
        },
        (Concurrency::Replace, Some(_)) => Decision::Run {
            scheduled: last,
            stop: running,
        },
    }
}

/// When the timer should look again after `now`: the next scheduled time.
pub fn next_due(job: &JobSpec, now: i64) -> Option<i64> {
    job.parsed()?.next_after(now)
}

/// Runs that took longer than the deadline: killed. `started` gives a run's start (Unix
/// seconds) where known, else its scheduled time is used.
pub fn overdue<'r>(
    job: &JobSpec,
    runs: &'r [SeenRun],
    started: impl Fn(&SeenRun) -> Option<i64>,
    now: i64,
) -> Vec<&'r SeenRun> {
    runs.iter()
        .filter(|r| r.running)
        .filter(|r| {
            let Some(from) = started(r).or(r.scheduled) else {
                return false;
            };
            match job
                .deadline_secs
                .map(|d| d as i64)
                .or_else(|| job.deadline_at(from))
            {
                Some(d) => now - from > d,
                None => false,
            }
        })
        .collect()
}

/// Finished runs beyond the `history` newest (`runs` newest first); running ones stay.
pub fn beyond_history(runs: &[SeenRun], history: u32) -> Vec<&SeenRun> {
    runs.iter()
        .filter(|r| !r.running)
        .skip(history as usize)
        .collect()
}

/// The services a run-once job holds, with why: those in its `before:` while its current
/// spec has not succeeded, when they have something to change (a replica not at its spec).
pub fn held(
    desired: &DesiredState,
    observed: &ObservedState,
    runs: &BTreeMap<(String, String), Vec<SeenRun>>,
) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let none = Vec::new();
    for (stack_name, stack) in &desired.stacks {
        for (name, svc) in &stack.services {
            let Some(job) = &svc.job else { continue };
            if job.schedule.is_some() || job.before.is_empty() {
                continue;
            }
            let hash = svc.container.hash();
            let r = runs
                .get(&(stack_name.clone(), name.clone()))
                .unwrap_or(&none);
            let why = match once_state(&hash, r) {
                OnceState::Succeeded => continue,
                OnceState::Due | OnceState::Running => {
                    format!("waits for job `{stack_name}/{name}` to succeed")
                }
                OnceState::Failed { exit_code } => format!(
                    "job `{stack_name}/{name}` failed (exit code {exit_code}): the rollout \
                     stopped; fix the job, or remove its container to run it again"
                ),
            };
            for target in &job.before {
                let Some(t) = stack.services.get(target) else {
                    continue;
                };
                if needs_change(observed, stack_name, target, &t.container.hash()) {
                    out.insert((stack_name.clone(), target.clone()), why.clone());
                }
            }
        }
    }
    out
}

/// Whether a service has no replica or one not at `hash`.
fn needs_change(observed: &ObservedState, stack: &str, service: &str, hash: &str) -> bool {
    let mut any = false;
    for obs in observed.hosts.values() {
        let Some(snap) = obs.snapshot() else { continue };
        for c in snap.containers.values() {
            if c.stack == stack && c.service == service && !c.actual.labels.contains_key(LABEL_JOB)
            {
                any = true;
                if c.spec_hash != hash {
                    return true;
                }
            }
        }
    }
    !any
}

/// The planner's view of a fleet with jobs: `None` when there is no job and no job container.
pub struct View {
    pub desired: DesiredState,
    pub observed: ObservedState,
    pub held: BTreeMap<(String, String), String>,
    pub runs: BTreeMap<(String, String), Vec<SeenRun>>,
}

/// Leaves job services out of `desired`, and job containers out of `observed`; their networks
/// are kept (`DesiredState::kept_networks`). The services a job holds stay in both: they are
/// planned, then frozen on the spec they run (`complete_plan`), so they are still healed.
pub fn planning_view(desired: &DesiredState, observed: &ObservedState) -> Option<View> {
    let has_jobs = desired
        .stacks
        .values()
        .any(|s| s.services.values().any(|svc| svc.job.is_some()));
    let runs = runs(observed);
    if !has_jobs && runs.is_empty() {
        return None;
    }
    let held = held(desired, observed, &runs);
    let mut d = desired.clone();
    for stack in d.stacks.values_mut() {
        let out: Vec<String> = stack
            .services
            .iter()
            .filter(|(_, s)| s.job.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for n in out {
            if let Some(s) = stack.services.remove(&n) {
                d.kept_networks.extend(s.container.networks.keys().cloned());
            }
        }
    }
    let mut o = observed.clone();
    for obs in o.hosts.values_mut() {
        if let ObservedHost::Reachable(snap) = obs {
            snap.containers
                .retain(|_, c| !c.actual.labels.contains_key(LABEL_JOB));
        }
    }
    Some(View {
        desired: d,
        observed: o,
        held,
        runs,
    })
}

/// Adds to `plan` what jobs ask of a pass: the run-once jobs due, the held services frozen on
/// the spec they run and reported pending, and the removal of finished runs beyond `history`
/// (of a job the commit still has; a removed job's containers go as its service does, all of
/// them).
pub fn complete_plan(plan: &mut Plan, desired: &DesiredState, view: &View) {
    let none = Vec::new();
    for (stack_name, stack) in &desired.stacks {
        for (name, svc) in &stack.services {
            let Some(job) = &svc.job else { continue };
            let key = (stack_name.clone(), name.clone());
            let runs = view.runs.get(&key).unwrap_or(&none);
            if job.schedule.is_none() {
                let hash = svc.container.hash();
                if once_state(&hash, runs) == OnceState::Due {
                    plan.jobs.push(JobDue {
                        stack: stack_name.clone(),
                        service: name.clone(),
                        spec_hash: hash,
                        before: job.before.clone(),
                    });
                }
            }
            for r in beyond_history(runs, job.history) {
                if !plan.unreachable.contains_key(&r.host) {
                    push_removal(
                        plan,
                        r,
                        stack_name,
                        name,
                        Reason::JobHistory { keep: job.history },
                    );
                }
            }
        }
    }
    // Job containers of services the commit no longer has as jobs.
    for ((stack_name, name), runs) in &view.runs {
        let still = desired
            .stacks
            .get(stack_name)
            .and_then(|s| s.services.get(name))
            .is_some_and(|s| s.job.is_some());
        if still {
            continue;
        }
        let reason = match desired.stacks.get(stack_name) {
            None => Reason::StackRemoved {
                stack: stack_name.clone(),
            },
            Some(_) => Reason::ServiceRemoved {
                service: name.clone(),
            },
        };
        for r in runs {
            if !plan.unreachable.contains_key(&r.host) {
                push_removal(plan, r, stack_name, name, reason.clone());
            }
        }
    }
    // Last, so that the steps above were numbered in the uncut plan.
    freeze_held(plan, desired, view);
    for ((stack, service), why) in &view.held {
        plan.pending.push(PendingReplica {
            stack: stack.clone(),
            service: service.clone(),
            slot: "*".into(),
            reason: why.clone(),
        });
    }
}

/// The services a `before:` job holds, kept as they run (`core::frozen`): nothing takes the
/// new spec, what broke is healed with the running spec, and a plan note says so. A held
/// service that runs nothing waits whole, under the job's `*` pending line.
fn freeze_held(plan: &mut Plan, desired: &DesiredState, view: &View) {
    use crate::core::frozen::{self, Frozen, Holder};
    let mut services = BTreeMap::new();
    for (stack, service) in view.held.keys() {
        let job = gating_job(desired, stack, service).unwrap_or_default();
        services.insert(
            (stack.clone(), service.clone()),
            Holder {
                by: format!("frozen behind job `{stack}/{job}`"),
                report_unmade: false,
            },
        );
        if let Some(hash) = frozen::running_hashes(&view.observed, stack, service).first() {
            plan.notes.push(format!(
                "service `{stack}/{service}` stays on its running spec {} until job \
                 `{stack}/{job}` succeeds for the new one",
                &hash[..hash.len().min(12)]
            ));
        }
    }
    let frozen = Frozen {
        stacks: BTreeMap::new(),
        services,
    };
    frozen::freeze(plan, &view.observed, &frozen);
}

/// The run-once job whose `before:` names `stack/service` (the first by name).
fn gating_job<'d>(desired: &'d DesiredState, stack: &str, service: &str) -> Option<&'d str> {
    desired
        .stacks
        .get(stack)?
        .services
        .iter()
        .find_map(|(n, s)| {
            let job = s.job.as_ref()?;
            (job.schedule.is_none() && job.before.iter().any(|b| b == service))
                .then_some(n.as_str())
        })
}

fn push_removal(plan: &mut Plan, r: &SeenRun, stack: &str, service: &str, reason: Reason) {
    let id = plan.steps.len();
    plan.steps.push(Step {
        id,
        host: r.host.clone(),
        action: Action::Remove {
            stack: stack.to_string(),
            service: service.to_string(),
            name: r.name.clone(),
            id: r.id.clone(),
            grace_secs: r.grace_secs,
            reason,
            pre_stop: Vec::new(),
        },
        after: Vec::new(),
        gates: Vec::new(),
    });
}

/// Every job of `desired` by (stack, service).
pub fn jobs(desired: &DesiredState) -> Vec<(&str, &str, &JobSpec)> {
    let mut out = Vec::new();
    for (stack_name, stack) in &desired.stacks {
        for (name, svc) in &stack.services {
            if let Some(j) = &svc.job {
                out.push((stack_name.as_str(), name.as_str(), j));
            }
        }
    }
    out
}

/// Names that `jobs run NAME` accepts: `service` when one stack has it, or `stack/service`.
pub fn find_job<'d>(
    desired: &'d DesiredState,
    name: &str,
) -> Result<(&'d str, &'d str, &'d JobSpec), String> {
    let all = jobs(desired);
    let matches: Vec<_> = all
        .iter()
        .filter(|(st, sv, _)| name == *sv || name == format!("{st}/{sv}"))
        .copied()
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => {
            let names: BTreeSet<String> =
                all.iter().map(|(st, sv, _)| format!("{st}/{sv}")).collect();
            Err(if names.is_empty() {
                format!("no job `{name}`: the repository has no job")
            } else {
                format!(
                    "no job `{name}` (jobs: {})",
                    names.into_iter().collect::<Vec<_>>().join(", ")
                )
            })
        }
        _ => Err(format!(
            "`{name}` is a job in several stacks: write it as `stack/{name}`"
        )),
    }
}

/// What a run is for: a scheduled time, a run-once job's spec, or a run started by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Scheduled(i64),
    Once,
    /// `convoy jobs run` at this time.
    Manual(i64),
}

impl Trigger {
    /// The value of `convoy.job`.
    pub fn label(self) -> String {
        match self {
            Trigger::Scheduled(t) | Trigger::Manual(t) => t.to_string(),
            Trigger::Once => ONCE.to_string(),
        }
    }

    /// The tag in the container's name (`job_container_name`).
    pub fn tag(self, spec_hash: &str) -> String {
        match self {
            Trigger::Scheduled(t) => t.to_string(),
            Trigger::Manual(t) => format!("{t}-manual"),
            Trigger::Once => format!("once-{}", &spec_hash[..spec_hash.len().min(12)]),
        }
    }
}

/// The container a job's run creates: the service's spec, never restarted by the engine,
/// with Convoy's labels and `convoy.job` (and the trigger of a manual run).
pub fn job_replica(
    desired: &DesiredState,
    stack: &str,
    service: &str,
    trigger: Trigger,
    commit: &str,
) -> Option<crate::model::plan::Replica> {
    use crate::model::spec::{
        RestartPolicy, LABEL_COMMIT, LABEL_FLEET, LABEL_SERVICE, LABEL_SLOT, LABEL_SPEC_HASH,
        LABEL_STACK,
    };
    let svc = desired.stacks.get(stack)?.services.get(service)?;
    let spec_hash = svc.container.hash();
    let name = crate::model::job::job_container_name(stack, service, &trigger.tag(&spec_hash));
    let mut spec = svc.container.for_slot(stack, service, "job");
    spec.restart = RestartPolicy::default();
    spec.restart.name = crate::model::spec::RestartName::No;
    spec.container_name = None;
    let mut labels = spec.labels.clone();
    labels.insert(LABEL_FLEET.into(), desired.fleet.clone());
    labels.insert(LABEL_STACK.into(), stack.into());
    labels.insert(LABEL_SERVICE.into(), service.into());
    labels.insert(LABEL_SLOT.into(), "job".into());
    labels.insert(LABEL_SPEC_HASH.into(), spec_hash.clone());
    labels.insert(LABEL_COMMIT.into(), commit.into());
    labels.insert(LABEL_JOB.into(), trigger.label());
    if let Trigger::Manual(_) = trigger {
        labels.insert(LABEL_JOB_TRIGGER.into(), "manual".into());
    }
    Some(crate::model::plan::Replica {
        stack: stack.into(),
        service: service.into(),
        slot: "job".into(),
        name,
        spec_hash,
        image: spec.image.clone(),
        spec,
        labels,
        secret_env: svc.secret_env.clone(),
    })
}

/// The slot of its sources a job runs beside (`network_mode: service:<x>`, `volumes_from`):
/// a job is a service of one replica, and the manifest gives its sources one replica too
/// (`compose::share`: the same replicas on both sides), so it is their slot `1`.
pub const SOURCE_SLOT: &str = "1";

/// The host a job's run goes to: the host of its sources' slot `1` when it shares one's
/// namespace or volumes (as a replica goes beside its sources, `schedule::colocate`), else the
/// scheduler's choice for the service as if it were a service of one replica (constraints,
/// `x-convoy.hosts`, cordon, drain, reservations); or why there is none.
pub fn choose_host(
    desired: &DesiredState,
    observed: &ObservedState,
    stack: &str,
    service: &str,
) -> Result<String, String> {
    use crate::core::schedule::{self, Assignment};
    let svc = desired
        .stacks
        .get(stack)
        .and_then(|s| s.services.get(service))
        .ok_or_else(|| format!("no service `{stack}/{service}`"))?;
    if let Some(beside) = beside_sources(desired, observed, stack, &svc.container)? {
        return Ok(beside);
    }
    let mut alone = svc.clone();
    alone.job = None;
    alone.replicas = 1;
    alone.depends_on.clear();
    let mut d = desired.clone();
    d.stacks.retain(|n, _| n == stack);
    if let Some(st) = d.stacks.get_mut(stack) {
        st.services.clear();
        st.services.insert(service.to_string(), alone);
    }
    let mut o = observed.clone();
    for obs in o.hosts.values_mut() {
        if let ObservedHost::Reachable(snap) = obs {
            snap.containers.clear();
        }
    }
    let snap = schedule::snapshot(&d, &o, &BTreeSet::new(), &BTreeMap::new());
    let placement = schedule::place(&d, &snap);
    match placement.replicas.values().next() {
        Some(Assignment::Host { host }) => Ok(host.clone()),
        Some(Assignment::Pending { reason }) => Err(reason.clone()),
        _ => Err("no host can run it".into()),
    }
}

/// The host where the replicas a job's spec shares a namespace or volumes with run (their
/// slot `SOURCE_SLOT`, as observed), `None` when it shares nothing of a service.
fn beside_sources(
    desired: &DesiredState,
    observed: &ObservedState,
    stack: &str,
    spec: &crate::model::spec::ContainerSpec,
) -> Result<Option<String>, String> {
    let mut host: Option<&str> = None;
    for src in crate::core::schedule::colocate::sources(spec) {
        let name = desired.replica_name(stack, src, SOURCE_SLOT);
        let found = observed.hosts.iter().find_map(|(h, o)| {
            o.snapshot()?
                .containers
                .get(&name)
                .filter(|c| !c.actual.labels.contains_key(LABEL_JOB))
                .map(|_| h.as_str())
        });
        match (found, host) {
            (None, _) => {
                return Err(format!(
                    "it runs beside `{src}` (its namespace or volumes), and `{name}` runs on no \
                     host that answers"
                ))
            }
            (Some(h), Some(other)) if h != other => {
                return Err(format!(
                    "its sources run on different hosts (`{other}` and `{h}`)"
                ))
            }
            (Some(h), _) => host = Some(h),
        }
    }
    Ok(host.map(str::to_string))
}

/// Gives a job's container on `host` what the planner gives a replica there before it starts,
/// through the planner's own functions: `service:` sources named to the engine (their slot
/// `SOURCE_SLOT`, `colocate::resolve`), `links` resolved to the linked services' replicas
/// running on that host (`colocate::resolve_links`, from observation: the job runs after the
/// pass placed them), and file mounts made binds of the host's copies (`core::files::for_host`;
/// a secret keeps the generation the newest earlier run there binds while the host holds the
/// desired value, so runs do not leave one secret file each). What these binds need on the
/// host is shipped by `exec::files` before the run.
pub fn job_on_host(
    desired: &DesiredState,
    observed: &ObservedState,
    host: &str,
    replica: &mut crate::model::plan::Replica,
) {
    use crate::core::schedule::colocate;
    let stack = replica.stack.clone();
    colocate::resolve(desired, &stack, SOURCE_SLOT, &mut replica.spec);
    colocate::resolve_links(
        desired,
        &running_placement(observed, &stack),
        &stack,
        Some(host),
        &mut replica.spec,
    );
    if replica.spec.files.is_empty() {
        return;
    }
    let snap = observed.hosts.get(host).and_then(|o| o.snapshot());
    let previous = snap.and_then(|s| {
        s.containers
            .values()
            .filter(|c| {
                c.stack == stack
                    && c.service == replica.service
                    && c.actual.labels.contains_key(LABEL_JOB)
            })
            .max_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)))
    });
    let host_files = desired
        .hosts
        .get(host)
        .map(|h| h.files.clone())
        .unwrap_or_default();
    replica.spec = crate::core::files::for_host(
        &replica.spec,
        &host_files,
        &desired.fleet,
        &stack,
        previous,
        snap.and_then(|s| s.files.as_deref()),
    );
}

/// Where the replicas of `stack` run now, as a placement: the running, non-job containers
/// observed (a link names a running container; the engine refuses a stopped one).
fn running_placement(observed: &ObservedState, stack: &str) -> crate::core::schedule::Placement {
    use crate::core::schedule::{Assignment, Placement, ReplicaKey};
    let mut placement = Placement {
        replicas: BTreeMap::new(),
    };
    for (host, obs) in &observed.hosts {
        let Some(snap) = obs.snapshot() else { continue };
        for c in snap.containers.values() {
            if c.stack != stack
                || c.actual.labels.contains_key(LABEL_JOB)
                || c.state != RunState::Running
            {
                continue;
            }
            placement.replicas.insert(
                ReplicaKey {
                    stack: c.stack.clone(),
                    service: c.service.clone(),
                    slot: c.slot.clone(),
                },
                Assignment::Host { host: host.clone() },
            );
        }
    }
    placement
}

/// Whether a job that comes due while a pass runs waits for the pass to end: when it joins
/// another service's containers (a `service:` namespace, `volumes_from`, `links`), which the
/// pass may be replacing, or binds a secret, whose fresh generation the pass's clean-up of
/// unbound secrets could remove before the job's container binds it. Any other job runs on its
/// own container and starts on time.
pub fn waits_for_pass(desired: &DesiredState, stack: &str, service: &str) -> bool {
    let Some(svc) = desired
        .stacks
        .get(stack)
        .and_then(|s| s.services.get(service))
    else {
        return false;
    };
    let spec = &svc.container;
    !crate::core::schedule::colocate::sources(spec).is_empty()
        || !spec.share.links.is_empty()
        || spec
            .files
            .iter()
            .any(|f| f.kind == crate::model::files::FileKind::Secret)
}

/// How long a run of `stack/service` may take (`deadline`, else the schedule's period at its
/// time); `None` for a run-once job without a deadline.
pub fn deadline_of(
    desired: &DesiredState,
    stack: &str,
    service: &str,
    trigger: Trigger,
) -> Option<std::time::Duration> {
    let job = desired
        .stacks
        .get(stack)?
        .services
        .get(service)?
        .job
        .as_ref()?;
    let at = match trigger {
        Trigger::Scheduled(t) | Trigger::Manual(t) => t,
        Trigger::Once => 0,
    };
    let secs = job.deadline_at(at)?;
    Some(std::time::Duration::from_secs(secs.max(1) as u64))
}

/// A seen run as status shows it, with its start and end (Unix seconds) and last lines.
pub fn job_run(
    r: &SeenRun,
    started: Option<i64>,
    finished: Option<i64>,
    last_lines: Vec<String>,
) -> crate::model::job::JobRun {
    use crate::model::job::{JobRun, RunPhase};
    let phase = match (r.running, r.exit_code) {
        (true, _) => RunPhase::Running,
        (false, Some(0)) => RunPhase::Succeeded,
        _ => RunPhase::Failed,
    };
    JobRun {
        host: r.host.clone(),
        container: r.name.clone(),
        scheduled: r.scheduled,
        scheduled_at: r.scheduled.map(|t| crate::model::time::rfc3339(t as f64)),
        phase,
        exit_code: r.exit_code,
        started,
        finished: finished.filter(|_| !r.running),
        duration_secs: if r.running {
            None
        } else {
            started.zip(finished).map(|(s, f)| (f - s).max(0))
        },
        spec_hash: r.spec_hash.clone(),
        commit: r.commit.clone(),
        manual: r.manual,
        last_lines,
    }
}

/// Every job of `desired` with its next run after `now` and its runs (newest first).
pub fn statuses(
    desired: &DesiredState,
    mut runs: BTreeMap<(String, String), Vec<crate::model::job::JobRun>>,
    now: i64,
) -> Vec<crate::model::job::JobStatus> {
    jobs(desired)
        .into_iter()
        .map(|(stack, service, job)| crate::model::job::JobStatus {
            stack: stack.to_string(),
            name: service.to_string(),
            schedule: job.schedule.clone(),
            timezone: job.timezone.clone(),
            concurrency: job.concurrency,
            next_run: next_due(job, now).map(|t| crate::model::time::rfc3339(t as f64)),
            last_runs: runs
                .remove(&(stack.to_string(), service.to_string()))
                .unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
