//! The engine calls a rolling update needs beyond create and remove: stop without removing,
//! rename (a replaced replica is kept as `<name>.prev` until its successor has proved itself),
//! and the quarantine record, a container that is created and never started and whose labels
//! say which spec failed, where and why.
//!
//! It decides nothing: when to keep, restore or quarantine is the plan's, and the order of the
//! calls is the executor's (`exec::rollout`).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, RenameContainerOptions, StopContainerOptions,
};

use super::{DockerError, Engine, API_TIMEOUT_SECS};
use crate::model::rollout::{
    quarantine_name, QuarantineRecord, LABEL_QUARANTINE, LABEL_QUARANTINE_AT,
    LABEL_QUARANTINE_BATCH, LABEL_QUARANTINE_HOST, LABEL_QUARANTINE_REASON,
};
use crate::model::spec::{LABEL_COMMIT, LABEL_FLEET, LABEL_SERVICE, LABEL_STACK};

impl Engine {
    /// The ID of the container named `name`, when there is one.
    pub async fn container_id(&self, name: &str) -> Result<Option<String>, DockerError> {
        Ok(self.inspect_opt(name).await?.and_then(|i| i.id))
    }

    /// Stops a container, keeping it; one stopped already, or gone, is fine. bollard's timeout
    /// covers the wait for response headers, which for a stop lasts the whole grace period:
    /// allowed for.
    pub async fn stop(&self, id: &str, name: &str, grace: Option<i64>) -> Result<(), DockerError> {
        let grace_secs = grace.unwrap_or(10).max(0) as u64;
        let stop = self
            .docker
            .clone()
            .with_timeout(Duration::from_secs(API_TIMEOUT_SECS + grace_secs))
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: grace.map(|g| g.clamp(0, i32::MAX as i64) as i32),
                    ..Default::default()
                }),
            )
            .await;
        match stop {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("stop container `{name}`"), e)),
        }
    }

    /// The image ID container `name` runs, when it exists.
    pub async fn image_of(&self, name: &str) -> Result<Option<String>, DockerError> {
        Ok(self.inspect_opt(name).await?.and_then(|i| i.image))
    }

    /// Inspect, with a container that does not exist as `None`.
    async fn inspect_opt(
        &self,
        name: &str,
    ) -> Result<Option<bollard::models::ContainerInspectResponse>, DockerError> {
        match self.docker.inspect_container(name, None).await {
            Ok(i) => Ok(Some(i)),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(self.err(format!("inspect container `{name}`"), e)),
        }
    }

    /// Restarts a running container (stop within its grace period, then start).
    pub async fn restart(&self, id: &str, name: &str) -> Result<(), DockerError> {
        self.docker
            .clone()
            .with_timeout(Duration::from_secs(API_TIMEOUT_SECS * 2))
            .restart_container(
                id,
                None::<bollard::query_parameters::RestartContainerOptions>,
            )
            .await
            .map_err(|e| self.err(format!("restart container `{name}`"), e))
    }

    /// Renames container `id` (known as `name`) to `to`.
    pub async fn rename(&self, id: &str, name: &str, to: &str) -> Result<(), DockerError> {
        self.docker
            .rename_container(
                id,
                RenameContainerOptions {
                    name: to.to_string(),
                },
            )
            .await
            .map_err(|e| self.err(format!("rename container `{name}` to `{to}`"), e))
    }

    /// Writes a quarantine record: a container of `image` (an image the host has; it never
    /// runs) named after the service and spec, labelled with the record. One held already is
    /// fine: the first record stands.
    pub async fn record_quarantine(
        &self,
        fleet: &str,
        record: &QuarantineRecord,
        image: &str,
    ) -> Result<(), DockerError> {
        let name = quarantine_name(&record.stack, &record.service, &record.spec_hash);
        let labels = HashMap::from([
            (LABEL_FLEET.to_string(), fleet.to_string()),
            (LABEL_STACK.to_string(), record.stack.clone()),
            (LABEL_SERVICE.to_string(), record.service.clone()),
            (LABEL_COMMIT.to_string(), record.commit.clone()),
            (LABEL_QUARANTINE.to_string(), record.spec_hash.clone()),
            (LABEL_QUARANTINE_REASON.to_string(), record.reason.clone()),
            (LABEL_QUARANTINE_BATCH.to_string(), record.batch.to_string()),
            (LABEL_QUARANTINE_HOST.to_string(), record.host.clone()),
            (LABEL_QUARANTINE_AT.to_string(), record.at.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            labels: Some(labels),
            // Never started; should someone start it, it does nothing and holds nothing.
            network_disabled: Some(true),
            cmd: Some(vec!["quarantine-record".to_string()]),
            entrypoint: Some(vec!["/nonexistent".to_string()]),
            ..Default::default()
        };
        match self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    platform: String::new(),
                }),
                body,
            )
            .await
        {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(self.err(format!("create quarantine record `{name}`"), e)),
        }
    }
}

/// The quarantine record a container's labels hold, when it is one.
pub(super) fn quarantine_record(
    id: &str,
    labels: &HashMap<String, String>,
) -> Option<QuarantineRecord> {
    let hash = labels.get(LABEL_QUARANTINE)?;
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    Some(QuarantineRecord {
        stack: get(LABEL_STACK),
        service: get(LABEL_SERVICE),
        spec_hash: hash.clone(),
        commit: get(LABEL_COMMIT),
        reason: get(LABEL_QUARANTINE_REASON),
        batch: get(LABEL_QUARANTINE_BATCH).parse().unwrap_or(0),
        host: get(LABEL_QUARANTINE_HOST),
        at: get(LABEL_QUARANTINE_AT),
        id: id.to_string(),
    })
}
