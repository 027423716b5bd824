//! The per-host proxy's vocabulary (issue 13): `proxy:` in `convoy.yaml` (`ProxySettings`), a
//! service's ingress (`IngressSpec`: the published ports the host's proxy holds instead of the
//! replicas, and their routing), the ports a service declares for discovery, and the names and
//! labels of the proxy container.
//!
//! Types and small pure helpers only; what the proxy's configuration says is rendered in
//! `core::proxy`, and nothing here knows HAProxy.

use serde::{Deserialize, Serialize};

/// The engine name of the proxy container on every host.
pub const PROXY_CONTAINER: &str = "convoy-proxy";
/// The label that says what a fleet container is for when it is not a replica; the proxy's
/// value is [`ROLE_PROXY`]. Replicas do not carry it.
pub const LABEL_ROLE: &str = "convoy.role";
pub const ROLE_PROXY: &str = "proxy";
/// Where the proxy's configuration lives inside its container.
pub const PROXY_CONFIG_PATH: &str = "/etc/convoy-proxy/haproxy.cfg";
/// The default range of the ports Convoy assigns to cross-host listeners.
pub const DEFAULT_PORT_RANGE: PortRange = PortRange {
    first: 39000,
    last: 39999,
};

/// `proxy:` in `convoy.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxySettings {
    /// `image`: the proxy image (HAProxy 2.x with master-worker support).
    pub image: String,
    /// `ingress`: the fleet-wide default for services that publish ports (`x-convoy.ingress`
    /// says otherwise per service).
    pub ingress: bool,
    /// `ports`: the range the cross-host listeners' ports are taken from.
    pub ports: PortRange,
}

/// An inclusive range of TCP ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never true: a range holds at least its first port.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// `x-convoy.ingress` (or `proxy.ingress: true` for a service that publishes ports): the host's
/// proxy holds these published ports and sends what comes in to the service's healthy replicas.
/// The replicas publish nothing of them themselves, so several may run on one host and a
/// start-first replacement has no port to clash on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressSpec {
    /// The published ports, as written, sorted.
    pub ports: Vec<IngressPort>,
    /// `hosts`: HTTP host names this service answers for (lowercase, sorted); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// `path`: the path prefix this service answers for (`/api`); `None`: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl IngressSpec {
    /// Whether requests are told apart by host name or path: HTTP mode, so several services may
    /// share one port. A service without either is passed through as TCP.
    pub fn is_routed(&self) -> bool {
        !self.hosts.is_empty() || self.path.is_some()
    }
}

/// One published TCP port the proxy holds for a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IngressPort {
    /// The host address it is bound on; empty for all of the host's addresses.
    pub host_ip: String,
    pub host_port: u16,
    /// The replicas' port the traffic goes to.
    pub container_port: u16,
}

/// One port a service answers on inside its containers, for discovery and the cross-host
/// listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DeclaredPort {
    pub port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
}

/// `tcp`, `udp` or `sctp` as a static name (anything else is read as `tcp`, the default).
pub fn protocol_name(p: &str) -> &'static str {
    match p {
        "udp" => "udp",
        "sctp" => "sctp",
        _ => "tcp",
    }
}

/// The proxy container as a host's observation reads it from its labels and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedProxy {
    pub id: String,
    /// The image reference it was created from.
    pub image: String,
    /// Its `convoy.spec-hash` label: [`proxy_spec_hash`] of what it was created with.
    pub spec_hash: String,
    /// Running now (a proxy that is not is started or replaced).
    pub running: bool,
}

/// What a host's proxy container needs, as `diff` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyChange {
    pub host: String,
    pub kind: ProxyChangeKind,
    pub image: String,
    /// The published ports it will hold (`ip:port` or `:port`), for a new proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyChangeKind {
    Create,
    /// A new image: stop-first (host ports cannot be bound twice), so connections through it
    /// may drop.
    Replace,
    Start,
}

impl ProxyChange {
    /// The `diff` line.
    pub fn line(&self) -> String {
        let held = if self.listeners.is_empty() {
            String::new()
        } else {
            format!(", holding {}", self.listeners.join(" "))
        };
        match self.kind {
            ProxyChangeKind::Create => {
                format!("+ proxy on host {}  ({}{held})", self.host, self.image)
            }
            ProxyChangeKind::Replace => format!(
                "~ proxy on host {}  (new image {}: stop-first, connections through it may drop)",
                self.host, self.image
            ),
            ProxyChangeKind::Start => {
                format!("> proxy on host {}  (start: not running)", self.host)
            }
        }
    }
}

/// The command the proxy runs: HAProxy in master-worker mode (SIGUSR2 reloads gracefully), in
/// the foreground, with the master CLI on the host's loopback (`show proc`: the workers still
/// draining), reading the configuration Convoy uploads.
pub fn proxy_command() -> Vec<String> {
    [
        "haproxy",
        "-W",
        "-db",
        "-S",
        &format!("ipv4@127.0.0.1:{MASTER_CLI_PORT}"),
        "-f",
        PROXY_CONFIG_PATH,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The port of the control listener on the host's loopback: it answers 200 to
/// `/convoy/<config hash>` for the configuration the proxy runs, so a reload is seen complete.
pub const CONTROL_PORT: u16 = 38999;
/// The port of HAProxy's master CLI on the host's loopback.
pub const MASTER_CLI_PORT: u16 = 38998;

/// The spec hash of the proxy container: its image and command. A new image replaces it; a
/// new configuration never does (it is reloaded).
pub fn proxy_spec_hash(image: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(image.as_bytes());
    for part in proxy_command() {
        h.update([0]);
        h.update(part.as_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_count_their_ports() {
        assert_eq!(DEFAULT_PORT_RANGE.len(), 1000);
        assert!(DEFAULT_PORT_RANGE.contains(39000) && DEFAULT_PORT_RANGE.contains(39999));
        assert!(!DEFAULT_PORT_RANGE.contains(40000));
        assert_eq!(DEFAULT_PORT_RANGE.to_string(), "39000-39999");
    }
}
