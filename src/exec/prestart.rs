//! Compose's `pre_start` hooks around the executor's create of a replica (issue 9): run
//! between the replica's create and its start, each hook in a one-off container
//! (`Engine::run_pre_start`), in order, each within the step's hook timeout; the first that
//! fails (exit code other than 0, no end in time, or no run at all) fails the step with an
//! error naming the hook and its last output lines, and the created replica is removed
//! unstarted (left created with the right spec, a later pass would start it without its
//! hooks). Convoy runs them before every replica it starts (a create, a replace, a created
//! holder adopted), not once per service: replicas live on different hosts with different
//! volumes.
//!
//! It must not decide which replicas are created (the plan does), and it never logs a hook's
//! environment (values may be secrets).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::infra::docker::{DockerError, Engine};
use crate::model::plan::Replica;

/// Runs the replica's `pre_start` hooks, its container `id` created and not started; when one
/// fails (exit code other than 0, no end within `timeout`, or no run at all), removes the
/// replica unstarted and returns an error naming the hook.
pub async fn before_start(
    engine: &Engine,
    replica: &Replica,
    id: &str,
    network_ids: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), DockerError> {
    let Err(e) = pre_start(engine, replica, id, network_ids, timeout).await else {
        return Ok(());
    };
    if let Err(removal) = engine.remove(id, &replica.name, Some(0)).await {
        tracing::warn!(host = %engine.host(), container = %replica.name, error = %removal, "could not remove the replica whose pre_start hook failed");
    }
    Err(e)
}

async fn pre_start(
    engine: &Engine,
    replica: &Replica,
    id: &str,
    network_ids: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), DockerError> {
    let container = &replica.name;
    for (i, hook) in replica.spec.hooks.pre_start.iter().enumerate() {
        let op = format!("pre_start hook {} of `{container}`", i + 1);
        let what = if hook.command.is_empty() {
            "the image's command".to_string()
        } else {
            format!("`{}`", hook.command.join(" "))
        };
        let run = engine
            .run_pre_start(replica, id, i, hook, network_ids, timeout)
            .await
            .map_err(|e| DockerError {
                op: op.clone(),
                message: format!("{}: {}", e.op, e.message),
                ..e
            })?;
        tracing::info!(host = %engine.host(), container = %container, hook = i + 1, exit_code = ?run.exit_code, "pre_start hook ran");
        if run.exit_code == Some(0) {
            continue;
        }
        let mut message = match run.exit_code {
            Some(c) => format!("{what} exited with code {c}"),
            None => format!("{what} did not end within {}s", timeout.as_secs()),
        };
        if !run.last_lines.is_empty() {
            message.push_str(&format!(
                "; its last lines:\n  {}",
                run.last_lines.join("\n  ")
            ));
        }
        message.push_str("; the replica was not started");
        return Err(DockerError {
            host: engine.host().to_string(),
            op,
            message,
            status: None,
        });
    }
    Ok(())
}
