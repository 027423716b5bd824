//! Engine calls for the per-host proxy (issue 13), usable on any container: put one file into
//! a container (the archive API with a tar built in memory, so a created container can get its
//! configuration before it starts), read one file back (to see a hand edit), send a signal (a
//! graceful reload), and run a command to its end with its exit code and output (`haproxy -c`).
//!
//! One call each, no retries and no policy: what the files say, when to reload and how long to
//! wait are the executor's. File contents are never logged.

use bollard::query_parameters::{
    DownloadFromContainerOptions, KillContainerOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;

use std::collections::BTreeMap;

use super::build::tar_header;
use super::{DockerError, Engine};
use crate::model::proxy::{ObservedProxy, LABEL_ROLE, ROLE_PROXY};
use crate::model::spec::LABEL_SPEC_HASH;

/// The most output [`Engine::exec_output`] keeps (the end of it): enough for a config check's
/// messages, bounded whatever the command prints.
pub const EXEC_OUTPUT_BYTES: usize = 64 * 1024;

/// The most of a container's file [`Engine::download_file`] reads (as a tar archive).
pub const MAX_DOWNLOAD: usize = 16 << 20;

/// How a command run with [`Engine::exec_output`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// `None` when the engine did not report one.
    pub exit_code: Option<i64>,
    /// Stdout and stderr as they came, at most [`EXEC_OUTPUT_BYTES`] (the end).
    pub output: String,
}

/// A tar archive of one regular file at `path` (relative inside the archive), mode 0644.
pub fn one_file_tar(path: &str, content: &[u8]) -> Vec<u8> {
    let mut out = tar_header(path.trim_start_matches('/'), content.len() as u64);
    out.extend_from_slice(content);
    let pad = (512 - content.len() % 512) % 512;
    out.resize(out.len() + pad, 0);
    // Two empty blocks end the archive.
    out.resize(out.len() + 1024, 0);
    out
}

/// The content of the first regular file in a tar archive; PAX and GNU long-name records
/// before it are skipped.
pub fn first_file_of_tar(tar: &[u8]) -> Option<Vec<u8>> {
    let mut at = 0;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            return None;
        }
        let size_field = std::str::from_utf8(&h[124..136]).ok()?;
        let size = u64::from_str_radix(size_field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
            .ok()? as usize;
        let data = at + 512;
        match h[156] {
            b'0' | 0 => return tar.get(data..data + size).map(<[u8]>::to_vec),
            _ => at = data + size.div_ceil(512) * 512,
        }
    }
    None
}

impl Engine {
    /// Writes `content` to `path` (absolute) in container `container` (ID or name), created or
    /// running, making its parent folders. Replaces what was there.
    pub async fn upload_file(
        &self,
        container: &str,
        path: &str,
        content: &[u8],
    ) -> Result<(), DockerError> {
        let tar = one_file_tar(path, content);
        self.docker
            .upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: "/".into(),
                    ..Default::default()
                }),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|e| self.err(format!("upload `{path}` to `{container}`"), e))
    }

    /// The content of the file at `path` in container `container`; `None` when there is none.
    pub async fn download_file(
        &self,
        container: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, DockerError> {
        let mut stream = self.docker.download_from_container(
            container,
            Some(DownloadFromContainerOptions { path: path.into() }),
        );
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                // A file edited by hand may be anything: what is read stays bounded.
                Ok(_) if tar.len() > MAX_DOWNLOAD => {
                    return Err(self.err(
                        format!("read `{path}` from `{container}`"),
                        bollard::errors::Error::IOError {
                            err: std::io::Error::other(format!(
                                "larger than {} MiB",
                                MAX_DOWNLOAD >> 20
                            )),
                        },
                    ))
                }
                Ok(b) => tar.extend_from_slice(&b),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(None),
                Err(e) => return Err(self.err(format!("read `{path}` from `{container}`"), e)),
            }
        }
        Ok(first_file_of_tar(&tar))
    }

    /// Sends `signal` (`SIGUSR2`, `SIGHUP`, ...) to the main process of `container`.
    pub async fn signal(&self, container: &str, signal: &str) -> Result<(), DockerError> {
        self.docker
            .kill_container(
                container,
                Some(KillContainerOptions {
                    signal: signal.into(),
                }),
            )
            .await
            .map_err(|e| self.err(format!("send {signal} to `{container}`"), e))
    }

    /// Runs `cmd` in `container` as its default user and waits for it to end.
    pub async fn exec_output(
        &self,
        container: &str,
        cmd: &[&str],
    ) -> Result<ExecOutput, DockerError> {
        let options = bollard::exec::CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let mut out: Vec<u8> = Vec::new();
        let exit_code = self
            .exec_to_end(container, options, "exec", |bytes| {
                out.extend_from_slice(bytes);
                if out.len() > EXEC_OUTPUT_BYTES {
                    out.drain(..out.len() - EXEC_OUTPUT_BYTES);
                }
            })
            .await?;
        Ok(ExecOutput {
            exit_code,
            output: String::from_utf8_lossy(&out).into_owned(),
        })
    }
}

impl Engine {
    /// Creates (not starts) the host's proxy container: `image` running `command` in the
    /// host's network namespace (it binds published ports and cross-host listeners by a
    /// reload, never a new container), restarted by the engine unless stopped, labelled with
    /// the fleet, its role and `spec_hash`, named `name` ([`PROXY_CONTAINER`], or
    /// [`PROXY_NEXT_CONTAINER`] beside the one in service). Returns its ID.
    ///
    /// [`PROXY_CONTAINER`]: crate::model::proxy::PROXY_CONTAINER
    /// [`PROXY_NEXT_CONTAINER`]: crate::model::proxy::PROXY_NEXT_CONTAINER
    pub async fn create_proxy(
        &self,
        name: &str,
        fleet: &str,
        image: &str,
        command: Vec<String>,
        spec_hash: &str,
    ) -> Result<String, DockerError> {
        use bollard::models::{
            ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum,
        };
        use bollard::query_parameters::CreateContainerOptions;
        let labels = std::collections::HashMap::from([
            (
                crate::model::spec::LABEL_FLEET.to_string(),
                fleet.to_string(),
            ),
            (LABEL_ROLE.to_string(), ROLE_PROXY.to_string()),
            (LABEL_SPEC_HASH.to_string(), spec_hash.to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(command),
            labels: Some(labels),
            // The official image runs as `haproxy`, which cannot bind a port below 1024 in the
            // host's network namespace (the engine's unprivileged-port sysctl applies to a
            // container's own namespace only): ingress on 80/443 needs root here.
            user: Some("root".into()),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.to_string()),
                    platform: String::new(),
                }),
                body,
            )
            .await
            .map_err(|e| self.err(format!("create container `{name}`"), e))?;
        Ok(created.id)
    }
}

impl Engine {
    /// The IPv4 addresses of `container` (ID or name) on its networks, in network name order.
    pub async fn container_addresses(&self, container: &str) -> Result<Vec<String>, DockerError> {
        let i = self
            .docker
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|e| self.err(format!("inspect `{container}`"), e))?;
        Ok(container_ips(&i).into_values().collect())
    }

    /// Takes proxy container `id` (named `name`) out of service gracefully and removes it: the
    /// engine no longer restarts it, SIGUSR1 makes HAProxy's master stop its listeners and its
    /// workers finish their connections (a soft stop; the master exits after the last one),
    /// then the container is removed once it exited, or after `bound` at the latest. A
    /// container already gone is fine.
    pub async fn drain_proxy(
        &self,
        id: &str,
        name: &str,
        bound: std::time::Duration,
    ) -> Result<(), DockerError> {
        use bollard::models::{ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum};
        // Without this the engine starts it again the moment its master exits.
        let update = self
            .docker
            .update_container(
                id,
                ContainerUpdateBody {
                    restart_policy: Some(RestartPolicy {
                        name: Some(RestartPolicyNameEnum::NO),
                        maximum_retry_count: None,
                    }),
                    ..Default::default()
                },
            )
            .await;
        match update {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(()),
            Err(e) => return Err(self.err(format!("update container `{name}`"), e)),
        }
        if self.proxy_state(id).await?.is_some_and(|s| s.running) {
            match self
                .docker
                .kill_container(
                    id,
                    Some(KillContainerOptions {
                        signal: "SIGUSR1".into(),
                    }),
                )
                .await
            {
                // 409: it stopped meanwhile; 404: it is gone.
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404 | 409,
                    ..
                }) => {}
                Err(e) => return Err(self.err(format!("send SIGUSR1 to `{name}`"), e)),
            }
            let deadline = tokio::time::Instant::now() + bound;
            while self.proxy_state(id).await?.is_some_and(|s| s.running) {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(host = %self.host(), container = name, bound_s = bound.as_secs(), "the old proxy still had connections at the bound: removed");
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
        self.remove(id, name, Some(0)).await
    }

    /// Whether container `id` runs and how often the engine restarted it; `None` when it
    /// does not exist. A proxy that cannot bind exits at once and is restarted by its policy.
    pub async fn proxy_state(&self, id: &str) -> Result<Option<ProxyState>, DockerError> {
        match self.docker.inspect_container(id, None).await {
            Ok(i) => {
                let state = i.state.unwrap_or_default();
                Ok(Some(ProxyState {
                    running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
                    restarts: i.restart_count.unwrap_or(0),
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(format!("inspect container `{id}`"), e)),
        }
    }
}

/// A proxy container's state, as [`Engine::proxy_state`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyState {
    /// Running and not being restarted.
    pub running: bool,
    /// How often the engine restarted it (its policy, after an exit).
    pub restarts: i64,
}

/// Puts proxy container `p` into a host's observation: the first is `slot` itself, any
/// further one goes to its `others` (an interrupted replacement; `model::proxy::settle`
/// decides which stays).
pub(super) fn add_proxy(slot: &mut Option<Box<ObservedProxy>>, p: ObservedProxy) {
    match slot {
        None => *slot = Some(Box::new(p)),
        Some(first) => first.others.push(p),
    }
}

/// The proxy container of a fleet's listing, when these labels say it is one.
pub(super) fn observed_proxy(
    id: &Option<String>,
    image: &Option<String>,
    state: &Option<bollard::models::ContainerSummaryStateEnum>,
    labels: &std::collections::HashMap<String, String>,
    names: &[String],
) -> Option<ObservedProxy> {
    if labels.get(LABEL_ROLE).map(String::as_str) != Some(ROLE_PROXY) {
        return None;
    }
    Some(ObservedProxy {
        id: id.clone().unwrap_or_default(),
        image: image.clone().unwrap_or_default(),
        spec_hash: labels.get(LABEL_SPEC_HASH).cloned().unwrap_or_default(),
        running: matches!(
            state,
            Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
        ),
        name: names.first().cloned().unwrap_or_default(),
        others: Vec::new(),
        // Read by the observation for the running one only.
        held: None,
    })
}

/// A container's IPv4 address on each network it is attached to, by network name.
pub(super) fn container_ips(
    i: &bollard::models::ContainerInspectResponse,
) -> BTreeMap<String, String> {
    i.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            nets.iter()
                .filter_map(|(name, ep)| {
                    let ip = ep.ip_address.clone().filter(|ip| !ip.is_empty())?;
                    Some((name.clone(), ip))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_round_trips_through_tar() {
        let content = b"global\n  maxconn 100\n";
        let tar = one_file_tar("/etc/convoy-proxy/haproxy.cfg", content);
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[..28], b"etc/convoy-proxy/haproxy.cfg");
        assert_eq!(first_file_of_tar(&tar).unwrap(), content);
        // A long path gets a PAX record first, which the reader skips.
        let long = format!("/{}/x.cfg", "d".repeat(120));
        let tar = one_file_tar(&long, b"x");
        assert_eq!(first_file_of_tar(&tar).unwrap(), b"x");
        assert_eq!(first_file_of_tar(&[0u8; 1024]), None);
        assert_eq!(first_file_of_tar(b"short"), None);
    }
}
