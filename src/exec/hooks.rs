//! Compose's lifecycle hooks around the executor's container steps (issue 9): `post_start`
//! runs once a replica has started (create or replace), in order, and the first hook that
//! fails (exit code other than 0, or no exec at all) fails the step with the hook's last
//! output lines, as Compose fails `up`; `pre_stop` runs before Convoy stops a container
//! (replace, remove, scale-down), best effort: bounded by the container's stop grace period,
//! a failure is logged with the host and container and the stop goes on.
//!
//! It must not decide which containers are stopped or started (the plan does), and it never
//! logs a hook's environment (values may be secrets; errors are masked by the caller too).
//! A replica whose `post_start` failed is removed again (Compose leaves it running, but
//! `up` has failed and is run again by hand): a reconciler that left it would find it
//! converged on the verify pass and every later one, so the hook's failure would be
//! forgotten and the hook never run again. Removed, the replica is missing: the pass is not
//! converged, and the next pass creates it and runs the hook again.
//!
//! `pre_start`, run before a replica starts, is `exec::prestart`'s.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::infra::docker::{DockerError, Engine};
use crate::model::hooks::Hook;
use crate::model::plan::Replica;

/// A container's stop grace period when it sets none: the engine's default.
const DEFAULT_GRACE_SECS: i64 = 10;

/// Runs `hooks` (`post_start`) in `container` one after another, each within `timeout`; the
/// first failure is the error.
pub async fn post_start(
    engine: &Engine,
    container: &str,
    hooks: &[Hook],
    timeout: Duration,
) -> Result<(), DockerError> {
    for (i, hook) in hooks.iter().enumerate() {
        let failed = |message: String| DockerError {
            host: engine.host().to_string(),
            op: format!("post_start hook {} of `{container}`", i + 1),
            message,
            status: None,
        };
        let run = match tokio::time::timeout(timeout, engine.run_hook(container, hook)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(failed(format!(
                    "`{}` did not end within {}s",
                    hook.command.join(" "),
                    timeout.as_secs()
                )))
            }
        };
        tracing::info!(host = %engine.host(), container, hook = i + 1, exit_code = ?run.exit_code, "post_start hook ran");
        if run.exit_code != Some(0) {
            let code = run
                .exit_code
                .map_or_else(|| "an unknown code".to_string(), |c| format!("code {c}"));
            let mut message = format!("`{}` exited with {code}", hook.command.join(" "));
            if !run.last_lines.is_empty() {
                message.push_str(&format!(
                    "; its last lines:\n  {}",
                    run.last_lines.join("\n  ")
                ));
            }
            return Err(failed(message));
        }
    }
    Ok(())
}

/// Runs `hooks` (`pre_stop`) in `container` before it is stopped: all of them together within
/// the grace period (`grace_secs`, the engine's 10 s when unset), abandoned at shutdown.
/// Never fails: a hook that fails or overruns is logged and the stop goes on.
pub async fn pre_stop(
    engine: &Engine,
    container: &str,
    name: &str,
    hooks: &[Hook],
    grace_secs: Option<i64>,
    cancel: &CancellationToken,
) {
    if hooks.is_empty() {
        return;
    }
    let budget = Duration::from_secs(grace_secs.unwrap_or(DEFAULT_GRACE_SECS).max(1) as u64);
    let all = async {
        for (i, hook) in hooks.iter().enumerate() {
            match engine.run_hook(container, hook).await {
                Ok(run) if run.exit_code == Some(0) => {
                    tracing::info!(host = %engine.host(), container = name, hook = i + 1, "pre_stop hook ran");
                }
                Ok(run) => tracing::warn!(
                    host = %engine.host(),
                    container = name,
                    hook = i + 1,
                    exit_code = ?run.exit_code,
                    last_lines = %run.last_lines.join(" | "),
                    "pre_stop hook failed; stopping anyway"
                ),
                Err(e) => tracing::warn!(
                    host = %engine.host(),
                    container = name,
                    hook = i + 1,
                    error = %e,
                    "pre_stop hook could not run; stopping anyway"
                ),
            }
        }
    };
    tokio::select! {
        r = tokio::time::timeout(budget, all) => if r.is_err() {
            tracing::warn!(
                host = %engine.host(),
                container = name,
                grace_secs = budget.as_secs(),
                "pre_stop hooks did not end within the grace period; stopping anyway"
            );
        },
        _ = cancel.cancelled() => {}
    }
}

/// Runs the replica's `post_start` hooks once it has started; when one fails, removes the
/// replica (see the module's note) and returns the hook's error.
pub async fn after_start(
    engine: &Engine,
    replica: &Replica,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), DockerError> {
    let hooks = &replica.spec.hooks.post_start;
    let Err(e) = post_start(engine, &replica.name, hooks, timeout).await else {
        return Ok(());
    };
    let grace = replica.spec.stop_grace_period_secs;
    if let Err(removal) =
        super::names::remove(engine, &replica.name, &replica.name, grace, cancel).await
    {
        tracing::warn!(host = %engine.host(), container = %replica.name, error = %removal, "could not remove the replica whose post_start hook failed");
    }
    Err(e)
}
