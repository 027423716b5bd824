//! Ships each mesh container's HAProxy configuration (`core::proxy::mesh`): to a mesh a step
//! just made, within that step ([`ship_new`]: its callers' names answer as soon as it runs, not
//! once the pass is over), and to every mesh after a pass's steps. Read back what the container
//! holds, and where it differs (a new endpoint, a changed weight, a fresh container, a hand
//! edit) upload the new text beside it, validate it with `haproxy -c`, put it in place, send
//! SIGUSR2 (master-worker: a graceful reload, never a restart) and poll the control listener
//! until it answers the new hash: the reload is then complete.
//!
//! It must not create, replace or remove containers (the plan does, like any replica's), and
//! it never blocks another host: each mesh is shipped on its own, its probe bounded by a
//! deadline (and a new mesh's whole shipping by [`SHIP_NEW_BOUND`]), and a failure is reported
//! for the pass, not retried here (the next pass reads the container again).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::core::proxy::mesh::{self, Mesh, CONFIG_DIR, CONFIG_FILE};
use crate::infra::docker::Engine;
use crate::infra::files::HostShell;

/// How long a new configuration may take to be in force (HAProxy starts or reloads in
/// milliseconds; the bound covers a slow engine and the SSH channel of the probe).
const APPLY_DEADLINE: Duration = Duration::from_secs(15);
/// Between two probes of the control listener.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// What shipping one mesh's configuration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshChange {
    /// The container holds the text already.
    Unchanged,
    /// The container was waiting for its first configuration: HAProxy started with it.
    Started,
    /// HAProxy reloaded into the new configuration.
    Reloaded,
}

/// One mesh's shipping: where, what, and how long until the configuration was in force.
#[derive(Debug, Clone)]
pub struct MeshOutcome {
    pub host: String,
    pub container: String,
    pub result: Result<MeshChange, String>,
    pub elapsed: Duration,
}

/// Ships every mesh's configuration, all hosts at once. A cancelled pass ships nothing more.
pub async fn sync(
    meshes: &[Mesh],
    engines: &BTreeMap<String, Engine>,
    shells: &BTreeMap<String, HostShell>,
    cancel: &CancellationToken,
    unconfirmed: &BTreeSet<(String, String)>,
) -> Vec<MeshOutcome> {
    // A host that is not connected is reported by the plan already (nothing is planned there).
    let connected = meshes.iter().filter(|m| engines.contains_key(&m.host));
    let work = connected.map(|m| async move {
        let started = Instant::now();
        let result = match (engines.get(&m.host), shells.get(&m.host)) {
            _ if cancel.is_cancelled() => Err("the pass was cancelled".to_string()),
            (Some(engine), Some(shell)) => {
                let confirm = unconfirmed.contains(&(m.host.clone(), m.container.clone()));
                ship(m, engine, shell, confirm).await
            }
            _ => Err(format!("host `{}` is not connected", m.host)),
        };
        let elapsed = started.elapsed();
        match &result {
            Ok(change) => tracing::info!(
                host = %m.host, container = %m.container, change = ?change,
                ms = elapsed.as_millis() as u64, "mesh configuration"
            ),
            Err(e) => tracing::warn!(
                host = %m.host, container = %m.container, error = %e, "mesh configuration failed"
            ),
        }
        MeshOutcome {
            host: m.host.clone(),
            container: m.container.clone(),
            result,
            elapsed,
        }
    });
    futures_util::future::join_all(work).await
}

/// The longest a step waits for the configuration of the mesh it made: the engine calls of
/// [`ship`] have their own timeouts, this bounds them together.
const SHIP_NEW_BOUND: Duration = Duration::from_secs(20);

/// Ships the configuration of a mesh a step has just made and started, so that it answers
/// before the step ends; `false` when it is not known to be in force (a failure, the bound, a
/// cancelled pass). Such a mesh is not the step's failure: the end-of-pass [`sync`] ships it
/// again, probing it even when the text is already there, and reports it.
pub async fn ship_new(
    m: &Mesh,
    engine: &Engine,
    shell: &HostShell,
    cancel: &CancellationToken,
) -> bool {
    let started = Instant::now();
    let result = tokio::select! {
        r = tokio::time::timeout(SHIP_NEW_BOUND, ship(m, engine, shell, false)) => match r {
            Ok(r) => r,
            Err(_) => Err(format!("not in force within {SHIP_NEW_BOUND:?}")),
        },
        _ = cancel.cancelled() => Err("the pass was cancelled".to_string()),
    };
    match result {
        Ok(change) => {
            tracing::info!(
                host = %m.host, container = %m.container, change = ?change,
                ms = started.elapsed().as_millis() as u64, "new mesh configured"
            );
            true
        }
        Err(e) => {
            tracing::warn!(
                host = %m.host, container = %m.container, error = %e,
                "new mesh not configured yet; the end of the pass tries again"
            );
            false
        }
    }
}

/// The failures of `outcomes` as the pass reports them (beside failed pulls).
pub fn failures(outcomes: &[MeshOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| {
            o.result.as_ref().err().map(|e| {
                format!(
                    "mesh `{}` on host `{}`: configuration not applied: {e}",
                    o.container, o.host
                )
            })
        })
        .collect()
}

/// Ships one mesh's configuration (see the module comment). With `confirm`, a container that
/// holds the text already is probed all the same (an earlier attempt uploaded it but did not
/// see it in force).
async fn ship(
    m: &Mesh,
    engine: &Engine,
    shell: &HostShell,
    confirm: bool,
) -> Result<MeshChange, String> {
    let want = mesh::render(m);
    let hash = mesh::announced_hash(&want).expect("a rendered configuration announces its hash");
    let path = format!("{CONFIG_DIR}/{CONFIG_FILE}");
    let held = engine
        .download_file(&m.container, &path)
        .await
        .map_err(|e| e.to_string())?;
    let running = held.as_ref().is_some_and(|b| !b.is_empty());
    if held.as_deref() == Some(want.as_bytes()) {
        if confirm {
            wait_in_force(m, engine, shell, &hash).await?;
        }
        return Ok(MeshChange::Unchanged);
    }
    // Validated beside the file in force, so a text HAProxy refuses never replaces it.
    let candidate = format!("{path}.new");
    engine
        .upload_file(&m.container, &candidate, want.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let run = engine
        .exec_output(&m.container, &["haproxy", "-c", "-q", "-f", &candidate])
        .await
        .map_err(|e| e.to_string())?;
    if run.exit_code != Some(0) {
        let tail: Vec<&str> = run.output.lines().rev().take(5).collect();
        return Err(format!(
            "haproxy -c refused it (exit code {:?}): {}",
            run.exit_code,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    let applied = Instant::now();
    engine
        .upload_file(&m.container, &path, want.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // A container still waiting for its first file starts HAProxy on its own: a signal now
    // would reach the waiting shell instead.
    if running {
        engine
            .signal(&m.container, "SIGUSR2")
            .await
            .map_err(|e| e.to_string())?;
    }
    wait_in_force(m, engine, shell, &hash).await?;
    tracing::debug!(
        host = %m.host, container = %m.container,
        ms = applied.elapsed().as_millis() as u64, "mesh configuration in force"
    );
    Ok(if running {
        MeshChange::Reloaded
    } else {
        MeshChange::Started
    })
}

/// Polls the control listener until it answers the new hash's path with 200, within
/// [`APPLY_DEADLINE`].
async fn wait_in_force(
    m: &Mesh,
    engine: &Engine,
    shell: &HostShell,
    hash: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + APPLY_DEADLINE;
    let path = format!("/{hash}");
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        match crate::infra::probe::http_status(
            shell,
            engine,
            &m.container,
            m.control_port,
            &path,
            Duration::from_secs(2),
        )
        .await
        {
            Ok(200) => return Ok(()),
            Ok(code) => last = format!("the control listener answered {code}"),
            Err(e) => last = e.failure.to_string(),
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    Err(format!(
        "not in force within {APPLY_DEADLINE:?} (last: {last})"
    ))
}
