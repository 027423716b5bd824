//! Waiting for one container's healthcheck to pass, from the engine's own events (issue 13: a
//! replica enters the proxy as soon as the engine says it is healthy, not at the next poll).
//!
//! One inspect, then the event stream filtered to that container (`health_status`, `die`,
//! `destroy`), replayed from the container's start so an event between the inspect and the
//! subscription is not missed. It reports what happened; what to do then is the caller's. It
//! never changes a container.

use std::time::Duration;

use bollard::query_parameters::EventsOptions;
use futures_util::StreamExt;

use super::{DockerError, Engine};

/// How a wait for a container's health ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthWait {
    /// The healthcheck passed; the engine's time of it (Unix nanoseconds) when it said so.
    Healthy { at_nanos: Option<i64> },
    /// The container has no healthcheck: it takes traffic once it runs.
    NoHealthcheck,
    /// Not running any more, removed, or unhealthy: it will not become healthy now.
    Gone(String),
    /// Still starting when the limit came.
    TimedOut,
}

impl Engine {
    /// Waits until container `name` is healthy, at most `limit`.
    pub async fn wait_healthy(
        &self,
        name: &str,
        limit: Duration,
    ) -> Result<HealthWait, DockerError> {
        let inspect = match self.docker.inspect_container(name, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(HealthWait::Gone("removed".into())),
            Err(e) => return Err(self.err(format!("inspect container `{name}`"), e)),
        };
        let id = inspect.id.clone().unwrap_or_else(|| name.to_string());
        let state = inspect.state.unwrap_or_default();
        if state.running != Some(true) {
            return Ok(HealthWait::Gone("not running".into()));
        }
        let health = state
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .unwrap_or_default();
        match health.as_str() {
            "" | "none" => return Ok(HealthWait::NoHealthcheck),
            "healthy" => return Ok(HealthWait::Healthy { at_nanos: None }),
            "unhealthy" => return Ok(HealthWait::Gone("unhealthy".into())),
            _ => {}
        }
        // Replayed from the start (the engine's clock, whole seconds): a change between the
        // inspect above and the subscription is in the replay.
        let since = state
            .started_at
            .as_deref()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp().to_string());
        let filters = std::collections::HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("container".to_string(), vec![id.clone()]),
            (
                "event".to_string(),
                vec![
                    "health_status".to_string(),
                    "die".to_string(),
                    "destroy".to_string(),
                ],
            ),
        ]);
        let mut events = self.docker.events(Some(EventsOptions {
            since,
            until: None,
            filters: Some(filters),
        }));
        let wait = async {
            while let Some(event) = events.next().await {
                let event = event.map_err(|e| self.err(format!("events of `{name}`"), e))?;
                let action = event.action.unwrap_or_default();
                match action.as_str() {
                    "health_status: healthy" | "health_status:healthy" => {
                        return Ok(HealthWait::Healthy {
                            at_nanos: event.time_nano,
                        })
                    }
                    "health_status: unhealthy" | "health_status:unhealthy" => {
                        return Ok(HealthWait::Gone("unhealthy".into()))
                    }
                    "die" | "destroy" => return Ok(HealthWait::Gone(action)),
                    _ => {}
                }
            }
            Ok(HealthWait::TimedOut)
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(r) => r,
            Err(_) => Ok(HealthWait::TimedOut),
        }
    }
}
