//! TEMPORARY stand-in until the readiness probe lands (replaced by the probe branch).
use std::time::Duration;
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProbeError(pub String);
pub async fn http_status(
    _shell: &crate::infra::files::HostShell,
    _engine: &crate::infra::docker::Engine,
    _container: &str,
    _port: u16,
    _path: &str,
    _timeout: Duration,
) -> Result<u16, ProbeError> {
    Err(ProbeError("not yet".into()))
}
