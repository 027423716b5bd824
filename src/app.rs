//! The commands: each reads the repository, runs the one pipeline (observe, place, plan) and
//! either shows the plan (`diff`), executes it (`apply`) or summarises what runs (`status`).
//!
//! Every command goes through `prepare` and `pipeline::observe_and_plan`; there is no second
//! code path that previews a change. This module returns an exit code and prints the command's
//! own output on stdout; diagnostics go through `tracing` on stderr.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{Command, ImageCommand, Output, RepoArgs};
use crate::executor::{self, ExecOptions, ImageSource};
use crate::fleet::{ConnectOptions, Fleet};
use crate::manifest::{self, ManifestErrors};
use crate::observed::{ObservedHost, ObservedState, RunState};
use crate::plan::{self, Plan, JSON_VERSION};
use crate::render::{self, Style};
use crate::schedule::{self, Placement};
use crate::source;
use crate::spec::DesiredState;

/// Exit codes, as DESIGN.md sets them per command.
pub const EXIT_OK: i32 = 0;
pub const EXIT_DIFF: i32 = 1;
pub const EXIT_ERROR: i32 = 2;

pub async fn run(command: Command, state_dir: Option<std::path::PathBuf>) -> Result<i32> {
    let state_dir = state_dir.unwrap_or_else(crate::fleet::default_state_dir);
    let connect = ConnectOptions::new(&state_dir);
    match command {
        Command::Validate { repo } => validate(&repo),
        Command::Diff { repo, base, output } => {
            diff(&repo, base.as_deref(), output, &connect).await
        }
        Command::Apply { repo, pull, output } => apply(&repo, pull, output, &connect).await,
        Command::Status { repo, output } => status(&repo, output, &connect).await,
        Command::Hosts { repo, output } => hosts(&repo, output, &connect).await,
        Command::Image(ImageCommand::Push { image, repo, hosts }) => {
            image_push(&repo, &image, &hosts, &connect).await
        }
        Command::Daemon {
            repo,
            resync_secs,
            heartbeat_ms,
        } => {
            let mut connect = connect;
            // A daemon must notice a dead link within seconds: short keepalives (1 s x 2 is
            // 2.1 s measured), and an observation that waits for nobody for long.
            connect.ssh.keepalive_interval_secs = 1;
            connect.ssh.keepalive_count = 2;
            connect.observe_timeout = std::time::Duration::from_secs(3);
            let opts = crate::daemon::DaemonOptions {
                repo,
                connect,
                resync: std::time::Duration::from_secs(resync_secs.max(1)),
                heartbeat: std::time::Duration::from_millis(heartbeat_ms.max(100)),
            };
            // Registered before anything slow (the first connect): a SIGTERM that arrives early
            // is then a clean shutdown, not the default action that kills the process.
            let shutdown = shutdown_signal()?;
            crate::daemon::run(opts, shutdown).await?;
            Ok(EXIT_OK)
        }
    }
}

/// A future that resolves on SIGTERM or SIGINT; both handlers are installed when this returns.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The desired state of a repository at a revision, or the errors that make it invalid.
pub struct Loaded {
    pub desired: DesiredState,
    pub commit: String,
}

fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Reads and validates; prints every manifest error to stderr. `Ok(None)` means invalid.
pub fn load(repo: &RepoArgs, rev: Option<&str>) -> Result<Option<Loaded>> {
    let src = source::open(&repo.repo, rev)
        .with_context(|| format!("cannot read the fleet repository `{}`", repo.repo.display()))?;
    match manifest::load(src.tree.as_ref(), &process_env()) {
        Ok(desired) => Ok(Some(Loaded {
            desired,
            commit: src.commit,
        })),
        Err(ManifestErrors(errors)) => {
            let mut err = std::io::stderr().lock();
            for e in &errors {
                let _ = writeln!(err, "error: {e}");
            }
            let _ = writeln!(
                err,
                "{} error(s) in {}; nothing was changed",
                errors.len(),
                src.tree.describe()
            );
            Ok(None)
        }
    }
}

fn validate(repo: &RepoArgs) -> Result<i32> {
    match load(repo, repo.rev.as_deref())? {
        Some(l) => {
            let services: usize = l.desired.stacks.values().map(|s| s.services.len()).sum();
            println!(
                "valid: fleet `{}` at {}, {} host(s), {} stack(s), {} service(s)",
                l.desired.fleet,
                l.commit,
                l.desired.hosts.len(),
                l.desired.stacks.len(),
                services
            );
            Ok(EXIT_OK)
        }
        None => Ok(EXIT_ERROR),
    }
}

fn style() -> Style {
    Style {
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// One pass of the pipeline against the real fleet.
pub struct Pass {
    pub fleet: Fleet,
    pub placement: Placement,
    pub snapshot: schedule::Snapshot,
    pub observed: ObservedState,
    pub plan: Plan,
}

/// What a daemon remembers between passes, all of it rebuilt from observation: the hosts lost
/// for longer than `host_down_after`, and what each host ran when last observed. One-shot
/// commands have none: they move nothing off a host they cannot see.
#[derive(Debug, Clone, Default)]
pub struct HostMemory {
    pub down: std::collections::BTreeSet<String>,
    pub last_known: BTreeMap<String, Vec<schedule::ExistingReplica>>,
}

/// One pass: observe, place, plan.
pub async fn observe_and_plan(loaded: &Loaded, fleet: Fleet, memory: &HostMemory) -> Pass {
    let observed = fleet.observe(&loaded.desired).await;
    let snapshot = schedule::snapshot(&loaded.desired, &observed, &memory.down, &memory.last_known);
    let placement = schedule::place(&loaded.desired, &snapshot);
    let plan = plan::plan(&loaded.desired, &placement, &observed, &loaded.commit);
    Pass {
        fleet,
        placement,
        snapshot,
        observed,
        plan,
    }
}

async fn diff(
    repo: &RepoArgs,
    base: Option<&str>,
    output: Output,
    connect: &ConnectOptions,
) -> Result<i32> {
    let Some(loaded) = load(repo, repo.rev.as_deref())? else {
        return Ok(EXIT_ERROR);
    };
    let plan = match base {
        Some(base_rev) => {
            // A review of what a change will do: the base's desired state stands in for what
            // runs, so no engine is contacted.
            let Some(base) = load(repo, Some(base_rev))? else {
                return Ok(EXIT_ERROR);
            };
            let none = Default::default();
            let empty = plan::assume_converged(&base.desired, &Placement::default(), "");
            let base_placement = schedule::place(
                &base.desired,
                &schedule::snapshot(&base.desired, &empty, &none, &BTreeMap::new()),
            );
            let assumed = plan::assume_converged(&base.desired, &base_placement, &base.commit);
            let snap = schedule::snapshot(&loaded.desired, &assumed, &none, &BTreeMap::new());
            let placement = schedule::place(&loaded.desired, &snap);
            plan::plan(&loaded.desired, &placement, &assumed, &loaded.commit)
        }
        None => {
            let fleet = Fleet::connect(&loaded.desired, connect).await;
            let pass = observe_and_plan(&loaded, fleet, &HostMemory::default()).await;
            pass.fleet.close().await;
            pass.plan
        }
    };
    match output {
        Output::Text => print!("{}", render::plan_text(&plan, style())),
        Output::Json => println!("{}", render::plan_json(&plan)),
    }
    // "In sync" is never claimed about an engine Convoy could not see.
    Ok(if !plan.unreachable.is_empty() {
        EXIT_ERROR
    } else if plan.is_converged() {
        EXIT_OK
    } else {
        EXIT_DIFF
    })
}

async fn apply(
    repo: &RepoArgs,
    pull: bool,
    output: Output,
    connect: &ConnectOptions,
) -> Result<i32> {
    let Some(loaded) = load(repo, repo.rev.as_deref())? else {
        return Ok(EXIT_ERROR);
    };
    let fleet = Fleet::connect(&loaded.desired, connect).await;
    let images = image_source(&loaded.desired).await;
    let mut pass = observe_and_plan(&loaded, fleet, &HostMemory::default()).await;
    let mut pull_failures = Vec::new();
    if pull {
        // Pull where placement puts each service, then look again: a moved tag is drift.
        pull_failures = pull_images(&loaded, &pass.fleet, &pass.placement).await;
        pass = observe_and_plan(&loaded, pass.fleet, &HostMemory::default()).await;
    }
    let text = output == Output::Text;
    if text {
        print!("{}", render::plan_text(&pass.plan, style()));
    }
    let show_progress = text && std::io::stderr().is_terminal();
    let opts = ExecOptions {
        dependency_timeout: std::time::Duration::from_secs(
            loaded.desired.settings.dependency_timeout_secs,
        ),
        ..Default::default()
    };
    let report = executor::execute(&pass.plan, &pass.fleet.engines, &opts, &images, move |o| {
        if show_progress {
            let mark = if o.error.is_some() { "failed" } else { "done" };
            eprintln!("  [{}] {} {}", o.host, mark, o.step);
        }
    })
    .await;
    // Observe again: the report says what was attempted, the engines say what is.
    let after = observe_and_plan(&loaded, pass.fleet, &HostMemory::default()).await;
    let converged = after.plan.is_converged() && pull_failures.is_empty();
    after.fleet.close().await;
    match output {
        Output::Text => {
            let mut out = std::io::stdout().lock();
            for f in report.failures() {
                let _ = writeln!(
                    out,
                    "failed on host {}: {}: {}",
                    f.host,
                    f.step,
                    f.error.as_deref().unwrap_or_default()
                );
            }
            for f in &pull_failures {
                let _ = writeln!(out, "failed: {f}");
            }
            let done = report.outcomes.len() - report.failures().count();
            if converged {
                let _ = writeln!(
                    out,
                    "\nApplied {done} step(s). Converged: the fleet matches {}.",
                    loaded.commit
                );
            } else {
                let _ = writeln!(
                    out,
                    "\nApplied {done} step(s), {} failed. Not converged; what remains:",
                    report.failures().count()
                );
                let _ = write!(out, "{}", render::plan_text(&after.plan, style()));
            }
        }
        Output::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                version: u32,
                converged: bool,
                plan: &'a Plan,
                outcomes: &'a [executor::StepOutcome],
                pull_failures: &'a [String],
                remaining: &'a Plan,
            }
            let doc = Doc {
                version: JSON_VERSION,
                converged,
                plan: &pass.plan,
                outcomes: &report.outcomes,
                pull_failures: &pull_failures,
                remaining: &after.plan,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(if converged { EXIT_OK } else { EXIT_DIFF })
}

/// `apply --pull`: pull every image a host runs, so a tag that moved shows as drift.
async fn pull_images(loaded: &Loaded, fleet: &Fleet, placement: &Placement) -> Vec<String> {
    let mut wanted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (key, a) in &placement.replicas {
        if let schedule::Assignment::Host { host } = a {
            if let Some(svc) = loaded
                .desired
                .stacks
                .get(&key.stack)
                .and_then(|s| s.services.get(&key.service))
            {
                wanted
                    .entry((host.clone(), svc.container.image.clone()))
                    .or_default()
                    .push(format!("{}/{}", key.stack, key.service));
            }
        }
    }
    let results = futures_util::future::join_all(wanted.into_iter().filter_map(
        |((host, image), services)| {
            let engine = fleet.engines.get(&host)?.clone();
            Some(async move {
                let r = engine.ensure_image(&image, true).await;
                (services, r)
            })
        },
    ))
    .await;
    let mut failures = Vec::new();
    for (mut services, r) in results {
        if let Err(e) = r {
            services.dedup();
            failures.push(format!("{e} (needed by {})", services.join(", ")));
        }
    }
    failures
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    stack: String,
    service: String,
    desired: usize,
    running: usize,
    replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Serialize)]
struct ReplicaStatus {
    name: String,
    host: String,
    /// Why the replica has no host, when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    state: Option<RunState>,
    health: Option<crate::observed::Health>,
    restarts: i64,
    /// The last exit code, for containers that exited or are restarting.
    exit_code: Option<i64>,
    /// Restarting, or restarted three times or more: the engine keeps restarting it and it
    /// keeps failing.
    crash_loop: bool,
    /// The last lines a restarting or failed container printed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    last_logs: Vec<String>,
}

async fn status(repo: &RepoArgs, output: Output, connect: &ConnectOptions) -> Result<i32> {
    let Some(loaded) = load(repo, repo.rev.as_deref())? else {
        return Ok(EXIT_ERROR);
    };
    let fleet = Fleet::connect(&loaded.desired, connect).await;
    let pass = observe_and_plan(&loaded, fleet, &HostMemory::default()).await;
    let mut services: BTreeMap<(String, String), ServiceStatus> = BTreeMap::new();
    for (key, a) in &pass.placement.replicas {
        let entry = services
            .entry((key.stack.clone(), key.service.clone()))
            .or_insert_with(|| ServiceStatus {
                stack: key.stack.clone(),
                service: key.service.clone(),
                desired: 0,
                running: 0,
                replicas: Vec::new(),
            });
        entry.desired += 1;
        let name = crate::spec::container_name(&key.stack, &key.service, &key.slot);
        let (host, pending) = match a {
            schedule::Assignment::Host { host } => (host.clone(), None),
            schedule::Assignment::Pending { reason } => (String::new(), Some(reason.clone())),
        };
        let observed = pass
            .observed
            .hosts
            .get(&host)
            .and_then(ObservedHost::snapshot)
            .and_then(|s| s.containers.get(&name));
        if observed.is_some_and(|c| c.state == RunState::Running) {
            entry.running += 1;
        }
        entry.replicas.push(ReplicaStatus {
            name,
            host,
            pending,
            state: observed.map(|c| c.state),
            health: observed.and_then(|c| c.health),
            restarts: observed.map(|c| c.restart_count).unwrap_or(0),
            exit_code: observed
                .filter(|c| {
                    matches!(
                        c.state,
                        RunState::Exited | RunState::Restarting | RunState::Dead
                    ) || c.restart_count > 0
                })
                .map(|c| c.exit_code),
            crash_loop: observed
                .is_some_and(|c| c.state == RunState::Restarting || c.restart_count >= 3),
            last_logs: Vec::new(),
        });
    }
    // A crash loop is reported with what the container said last.
    for s in services.values_mut() {
        for r in &mut s.replicas {
            let troubled = r.restarts > 0
                || r.state == Some(RunState::Restarting)
                || r.exit_code.is_some_and(|c| c != 0);
            if let (true, Some(engine)) = (troubled, pass.fleet.engines.get(&r.host)) {
                r.last_logs = engine.recent_logs(&r.name, 5).await;
            }
        }
    }
    let unreachable = &pass.plan.unreachable;
    let code = if unreachable.is_empty() {
        EXIT_OK
    } else {
        EXIT_DIFF
    };
    match output {
        Output::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                version: u32,
                fleet: &'a str,
                commit: &'a str,
                services: Vec<&'a ServiceStatus>,
                unreachable: &'a BTreeMap<String, String>,
                orphan_volumes: &'a [plan::OrphanVolume],
            }
            let doc = Doc {
                version: JSON_VERSION,
                fleet: &loaded.desired.fleet,
                commit: &loaded.commit,
                services: services.values().collect(),
                unreachable,
                orphan_volumes: &pass.plan.orphan_volumes,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Text => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "fleet `{}` at {}", loaded.desired.fleet, loaded.commit);
            for s in services.values() {
                let _ = writeln!(
                    out,
                    "\n{}/{}  {}/{} running",
                    s.stack, s.service, s.running, s.desired
                );
                for r in &s.replicas {
                    let state = match (r.state, r.exit_code) {
                        (None, _) => "missing".to_string(),
                        (Some(RunState::Exited), Some(code)) => format!("exited ({code})"),
                        (Some(st), _) => format!("{st:?}").to_lowercase(),
                    };
                    let health = r
                        .health
                        .map(|h| format!(", {}", format!("{h:?}").to_lowercase()))
                        .unwrap_or_default();
                    let looping = if r.crash_loop {
                        format!(", crash loop (last exit code {})", r.exit_code.unwrap_or(0))
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        out,
                        "  {:<32} {:<12} {state}{health}, {} restart(s){looping}",
                        r.name,
                        if r.host.is_empty() {
                            "(pending)"
                        } else {
                            &r.host
                        },
                        r.restarts
                    );
                    if let Some(reason) = &r.pending {
                        let _ = writeln!(out, "      pending: {reason}");
                    }
                    for line in &r.last_logs {
                        let _ = writeln!(out, "      | {line}");
                    }
                }
            }
            for (host, reason) in unreachable {
                let _ = writeln!(out, "\n! host {host} is unreachable: {reason}");
            }
            for v in &pass.plan.orphan_volumes {
                let _ = writeln!(
                    out,
                    "  orphaned volume `{}` on host {} (stack `{}`): kept",
                    v.name, v.host, v.stack
                );
            }
        }
    }
    pass.fleet.close().await;
    Ok(code)
}

/// The local engine (for `images: push`) and the hosts that take pushed images.
pub async fn image_source(desired: &DesiredState) -> ImageSource {
    let push_hosts: std::collections::BTreeSet<String> = desired
        .hosts
        .values()
        .filter(|h| h.images == crate::spec::ImagePolicy::Push)
        .map(|h| h.name.clone())
        .collect();
    let local = if push_hosts.is_empty() {
        None
    } else {
        local_engine().await.ok()
    };
    ImageSource { push_hosts, local }
}

/// The engine of the machine Convoy runs on: `DOCKER_HOST` (unix) or the default socket.
async fn local_engine() -> Result<crate::docker::Engine> {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let engine = crate::docker::Engine::unix("(local)", std::path::Path::new(&path))?;
    engine
        .ping()
        .await
        .with_context(|| format!("the local engine at unix://{path} does not answer"))?;
    Ok(engine)
}

#[derive(Debug, Serialize)]
struct HostReport {
    name: String,
    address: String,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    rtt_ms: Option<f64>,
    docker_version: Option<String>,
    cpus: Option<f64>,
    memory_bytes: Option<i64>,
    containers: Option<usize>,
    labels: BTreeMap<String, String>,
}

async fn hosts(repo: &RepoArgs, output: Output, connect: &ConnectOptions) -> Result<i32> {
    let Some(loaded) = load(repo, repo.rev.as_deref())? else {
        return Ok(EXIT_ERROR);
    };
    let fleet = Fleet::connect(&loaded.desired, connect).await;
    let pass = observe_and_plan(&loaded, fleet, &HostMemory::default()).await;
    let mut rtt = BTreeMap::new();
    for name in pass.fleet.engines.keys() {
        if let Ok(d) = pass.fleet.probe(name).await {
            rtt.insert(name.clone(), d);
        }
    }
    let mut reports = Vec::new();
    for (name, spec) in &loaded.desired.hosts {
        let observed = pass.observed.hosts.get(name);
        let snap = observed.and_then(ObservedHost::snapshot);
        reports.push(HostReport {
            name: name.clone(),
            address: spec.address.to_string(),
            reachable: snap.is_some(),
            reason: match observed {
                Some(ObservedHost::Unreachable { reason }) => Some(reason.clone()),
                None => Some("not observed".into()),
                _ => None,
            },
            rtt_ms: rtt
                .get(name)
                .map(|d: &std::time::Duration| d.as_secs_f64() * 1000.0),
            docker_version: snap.map(|s| s.engine_version.clone()),
            cpus: snap.map(|s| s.nano_cpus as f64 / 1e9),
            memory_bytes: snap.map(|s| s.memory_bytes),
            containers: snap.map(|s| s.containers.len()),
            labels: spec.labels.clone(),
        });
    }
    pass.fleet.close().await;
    let all = reports.iter().all(|r| r.reachable);
    match output {
        Output::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                version: u32,
                fleet: &'a str,
                hosts: &'a [HostReport],
            }
            let doc = Doc {
                version: JSON_VERSION,
                fleet: &loaded.desired.fleet,
                hosts: &reports,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Text => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{:<16} {:<11} {:>8} {:<10} {:>5} {:>9} {:>10}  LABELS",
                "HOST", "STATE", "RTT", "DOCKER", "CPUS", "MEMORY", "CONTAINERS"
            );
            for r in &reports {
                let labels: Vec<String> =
                    r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if r.reachable {
                    let _ = writeln!(
                        out,
                        "{:<16} {:<11} {:>6.1}ms {:<10} {:>5} {:>9} {:>10}  {}",
                        r.name,
                        "up",
                        r.rtt_ms.unwrap_or(0.0),
                        r.docker_version.as_deref().unwrap_or("?"),
                        r.cpus.unwrap_or(0.0),
                        crate::drift::opt_bytes(r.memory_bytes),
                        r.containers.unwrap_or(0),
                        labels.join(",")
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "{:<16} {:<11} {}",
                        r.name,
                        "unreachable",
                        r.reason.as_deref().unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(if all { EXIT_OK } else { EXIT_DIFF })
}

async fn image_push(
    repo: &RepoArgs,
    image: &str,
    only: &[String],
    connect: &ConnectOptions,
) -> Result<i32> {
    let Some(loaded) = load(repo, repo.rev.as_deref())? else {
        return Ok(EXIT_ERROR);
    };
    for h in only {
        if !loaded.desired.hosts.contains_key(h) {
            anyhow::bail!("no host `{h}` in convoy.yaml");
        }
    }
    let local = local_engine().await?;
    if local.image_id(image).await?.is_none() {
        anyhow::bail!("image `{image}` is not on the local engine");
    }
    let fleet = Fleet::connect(&loaded.desired, connect).await;
    let targets: Vec<(&String, &crate::docker::Engine)> = fleet
        .engines
        .iter()
        .filter(|(h, _)| only.is_empty() || only.contains(h))
        .collect();
    let progress = std::io::stderr().is_terminal();
    if progress {
        eprintln!("pushing `{image}` to {} host(s)...", targets.len());
    }
    let results = futures_util::future::join_all(targets.iter().map(|(host, engine)| {
        let local = &local;
        async move {
            let r = crate::images::push_image(local, engine, host, image).await;
            if progress {
                eprintln!("  [{host}] {}", if r.is_ok() { "done" } else { "failed" });
            }
            (host.to_string(), r)
        }
    }))
    .await;
    let mut failed = 0;
    let mut out = std::io::stdout().lock();
    for (host, r) in &results {
        match r {
            Ok(crate::images::PushOutcome::Present) => {
                let _ = writeln!(out, "{host}: already has `{image}` (same image ID)");
            }
            Ok(crate::images::PushOutcome::Sent { bytes }) => {
                let _ = writeln!(out, "{host}: sent `{image}` ({bytes} bytes)");
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(out, "{host}: failed: {e}");
            }
        }
    }
    for (host, reason) in &fleet.failed {
        if only.is_empty() || only.contains(host) {
            failed += 1;
            let _ = writeln!(out, "{host}: unreachable: {reason}");
        }
    }
    fleet.close().await;
    Ok(if failed == 0 { EXIT_OK } else { EXIT_DIFF })
}
