//! The engine calls behind Compose's `pre_start` hooks (issue 9): one hook as a one-off
//! container of the replica's image, created after the replica and before it starts, with
//! the replica's volumes (`volumes_from` the created replica: named volumes, binds, files
//! and secrets alike) and networks (without its aliases and fixed addresses, which are the
//! replica's), run to its end, giving its exit code and last output lines, and removed
//! whatever happened (its output is in the result; a hook container left behind by a killed
//! process is removed before the next run of the same hook).
//!
//! It decides nothing: whether a failure fails a step is the executor's (`exec::hooks`). The
//! hook container carries no `convoy.fleet` label, so observation never takes it for a
//! replica; it carries `convoy.pre_start.of` (the replica's name), the only label by which
//! this module removes a container. It never logs the hook's environment (values may be
//! secrets).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptions, LogsOptions, RemoveContainerOptions};
use futures_util::StreamExt;

use super::create::create_body;
use super::hooks::{HookRun, HOOK_OUTPUT_LINES};
use super::{DockerError, Engine};
use crate::model::hooks::Hook;
use crate::model::plan::Replica;
use crate::model::spec::LABEL_FLEET;

/// The label naming the replica a hook container prepares.
pub const LABEL_PRE_START_OF: &str = "convoy.pre_start.of";

/// How often a running hook is asked whether it has ended.
const POLL: Duration = Duration::from_millis(200);

/// The engine name of the `index`th (from 0) `pre_start` hook container of `replica`.
pub fn pre_start_name(replica: &str, index: usize) -> String {
    format!("{replica}-pre_start-{}", index + 1)
}

/// The replica with what only it may hold on a network taken off: aliases (the service's
/// name would resolve to the hook), fixed addresses and links.
fn as_hook(replica: &Replica) -> Replica {
    let mut r = replica.clone();
    for a in r.spec.networks.values_mut() {
        a.aliases.clear();
        a.ipv4_address = None;
        a.ipv6_address = None;
    }
    r.spec.share.engine_links.clear();
    r
}

/// The create request of a hook container: the replica's image, user, working folder and
/// environment unless the hook sets its own (its environment over the service's), the image's
/// entrypoint (as Compose: the service's `entrypoint` is the replica's), the hook's command
/// (the image's own when empty), privileged only when the hook says so.
pub(super) fn pre_start_body(
    replica: &Replica,
    container_id: &str,
    hook: &Hook,
    network_ids: &BTreeMap<String, String>,
) -> ContainerCreateBody {
    let r = as_hook(replica);
    let full = create_body(&r, network_ids);
    let s = &replica.spec;
    let mut env = s.env.clone();
    env.extend(hook.environment.clone());
    let mut labels = HashMap::from([(LABEL_PRE_START_OF.to_string(), replica.name.clone())]);
    if let Some(fleet) = replica.labels.get(LABEL_FLEET) {
        labels.insert("convoy.pre_start.fleet".to_string(), fleet.clone());
    }
    ContainerCreateBody {
        image: Some(s.image.clone()),
        cmd: Some(hook.command.clone()).filter(|c| !c.is_empty()),
        user: hook.user.clone().or_else(|| s.user.clone()),
        working_dir: hook.working_dir.clone().or_else(|| s.working_dir.clone()),
        env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        host_config: Some(HostConfig {
            privileged: Some(hook.privileged),
            volumes_from: Some(vec![container_id.to_string()]),
            network_mode: full.host_config.and_then(|h| h.network_mode),
            ..Default::default()
        }),
        networking_config: full.networking_config,
        ..Default::default()
    }
}

impl Engine {
    /// Runs the `index`th `pre_start` hook of `replica`, whose container `container_id` is
    /// created and not started, to its end or for at most `timeout`; the hook container is
    /// removed in every case. `exit_code` is `None` when it did not end in time.
    pub async fn run_pre_start(
        &self,
        replica: &Replica,
        container_id: &str,
        index: usize,
        hook: &Hook,
        network_ids: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<HookRun, DockerError> {
        let name = pre_start_name(&replica.name, index);
        // One a killed process left behind, if it is ours.
        self.remove_pre_start(&name, &replica.name).await?;
        let body = pre_start_body(replica, container_id, hook, network_ids);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    platform: replica.spec.platform.clone().unwrap_or_default(),
                }),
                body,
            )
            .await
            .map_err(|e| self.err(format!("create pre_start container `{name}`"), e))?;
        let run = self
            .run_created(&created.id, &name, replica, network_ids, timeout)
            .await;
        let removed = self.remove_pre_start(&name, &replica.name).await;
        let run = run?;
        removed?;
        Ok(run)
    }

    async fn run_created(
        &self,
        id: &str,
        name: &str,
        replica: &Replica,
        network_ids: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> Result<HookRun, DockerError> {
        // Engines before API 1.44 take one network at create, as for the replica.
        let r = as_hook(replica);
        let first: BTreeSet<String> = r.spec.networks.keys().take(1).cloned().collect();
        self.connect_networks(id, &r, network_ids, &first).await?;
        self.start(id, name).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let exit_code = loop {
            let i = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(|e| self.err(format!("inspect pre_start container `{name}`"), e))?;
            let state = i.state.unwrap_or_default();
            if !state.running.unwrap_or(false) && !state.restarting.unwrap_or(false) {
                break state.exit_code;
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(POLL).await;
        };
        Ok(HookRun {
            exit_code,
            last_lines: self.last_lines(id).await,
        })
    }

    /// The container's last output lines; none when the engine cannot give them (the exit
    /// code decides, the lines only explain).
    async fn last_lines(&self, id: &str) -> Vec<String> {
        let opts = LogsOptions {
            stdout: true,
            stderr: true,
            tail: HOOK_OUTPUT_LINES.to_string(),
            ..Default::default()
        };
        let mut text = String::new();
        let mut logs = self.docker.logs(id, Some(opts));
        while let Some(Ok(chunk)) = logs.next().await {
            if let LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message } = chunk
            {
                text.push_str(&String::from_utf8_lossy(&message));
            }
        }
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let skip = lines.len().saturating_sub(HOOK_OUTPUT_LINES);
        lines.into_iter().skip(skip).collect()
    }

    /// Removes hook container `name` when it exists and prepares `replica`; one that does not
    /// carry that label is someone else's and an error.
    pub async fn remove_pre_start(&self, name: &str, replica: &str) -> Result<(), DockerError> {
        let found = match self.docker.inspect_container(name, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(self.err(format!("inspect pre_start container `{name}`"), e)),
        };
        let of = found
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(LABEL_PRE_START_OF).cloned());
        if of.as_deref() != Some(replica) {
            return Err(DockerError {
                host: self.host.clone(),
                op: format!("run pre_start container `{name}`"),
                message: format!(
                    "a container named `{name}` exists and is not a pre_start container of `{replica}`"
                ),
                status: Some(409),
            });
        }
        match self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("remove pre_start container `{name}`"), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{ContainerSpec, NetworkAttachment};

    #[test]
    fn a_hook_container_shares_volumes_and_networks_but_not_aliases_or_addresses() {
        let mut spec = ContainerSpec {
            image: "img:1".into(),
            user: Some("app".into()),
            working_dir: Some("/srv".into()),
            command: Some(vec!["serve".into()]),
            entrypoint: Some(vec!["/entry".into()]),
            ..Default::default()
        };
        spec.env.insert("A".into(), "service".into());
        spec.env.insert("B".into(), "service".into());
        spec.networks.insert(
            "net".into(),
            NetworkAttachment {
                aliases: vec!["db".into()],
                ipv4_address: Some("10.1.2.3".into()),
                ipv6_address: None,
            },
        );
        let replica = Replica {
            stack: "s".into(),
            service: "db".into(),
            slot: "1".into(),
            name: "s-db-1".into(),
            spec_hash: spec.hash(),
            image: spec.image.clone(),
            spec,
            labels: BTreeMap::from([(LABEL_FLEET.to_string(), "f1".to_string())]),
            secret_env: Default::default(),
        };
        let hook = Hook {
            command: vec!["migrate".into()],
            user: Some("root".into()),
            environment: BTreeMap::from([("B".into(), "hook".into())]),
            ..Default::default()
        };
        let body = pre_start_body(&replica, "cid", &hook, &BTreeMap::new());
        assert_eq!(body.cmd, Some(vec!["migrate".to_string()]));
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.user.as_deref(), Some("root"));
        assert_eq!(body.working_dir.as_deref(), Some("/srv"));
        assert_eq!(
            body.env,
            Some(vec!["A=service".to_string(), "B=hook".to_string()])
        );
        let labels = body.labels.unwrap();
        assert_eq!(labels.get(LABEL_PRE_START_OF).unwrap(), "s-db-1");
        assert!(!labels.contains_key(LABEL_FLEET));
        let hc = body.host_config.unwrap();
        assert_eq!(hc.volumes_from, Some(vec!["cid".to_string()]));
        assert_eq!(hc.privileged, Some(false));
        assert_eq!(hc.port_bindings, None);
        let ep = &body.networking_config.unwrap().endpoints_config.unwrap()["net"];
        assert_eq!(ep.aliases, Some(vec![]));
        assert_eq!(ep.ipam_config, None);

        // No command: the image's own.
        let bare = pre_start_body(&replica, "cid", &Hook::default(), &BTreeMap::new());
        assert_eq!(bare.cmd, None);
        assert_eq!(bare.user.as_deref(), Some("app"));
    }
}
