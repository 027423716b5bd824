//! Where a container can be reached from its own host, for the readiness probe
//! (`infra::probe`, issue 10): its address on its first network in name order, the host's
//! loopback for `network_mode: host`, or the address of the container whose network namespace
//! it shares (`network_mode: container:<id>`).
//!
//! It only reads the engine's inspect answer; it connects to nothing and decides nothing about
//! whether the container is ready.

use std::net::{IpAddr, Ipv4Addr};

use bollard::models::ContainerInspectResponse;

use super::{DockerError, Engine};

/// How many `container:<id>` links are followed before giving up (a chain longer than this is
/// not something the engine creates: it refuses to join a container that joins another).
const MAX_SHARED_HOPS: usize = 3;

/// Where a container listens, as seen from its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAddr {
    /// The container's own address on `network` (the first in name order with one).
    Network { network: String, ip: IpAddr },
    /// `network_mode: host`: the container's ports are the host's, reached on its loopback.
    HostLoopback,
    /// Nothing can be reached, and why (not running, `network_mode: none`, no address).
    Unreachable(String),
}

impl ProbeAddr {
    /// The IP address to connect to on the container's host, if there is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ProbeAddr::Network { ip, .. } => Some(*ip),
            ProbeAddr::HostLoopback => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ProbeAddr::Unreachable(_) => None,
        }
    }
}

/// What one inspect answer says: an address, or the container whose namespace it joins.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Addr(ProbeAddr),
    Joins(String),
}

fn read_inspect(i: &ContainerInspectResponse) -> Found {
    let running = i.state.as_ref().and_then(|s| s.running).unwrap_or(false);
    if !running {
        return Found::Addr(ProbeAddr::Unreachable(
            "the container is not running".into(),
        ));
    }
    let mode = i
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    if mode == "host" {
        return Found::Addr(ProbeAddr::HostLoopback);
    }
    if let Some(other) = mode.strip_prefix("container:") {
        return Found::Joins(other.to_string());
    }
    if mode == "none" {
        return Found::Addr(ProbeAddr::Unreachable(
            "the container has no network (network_mode: none)".into(),
        ));
    }
    let mut networks: Vec<(&String, &bollard::models::EndpointSettings)> = i
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.iter().collect())
        .unwrap_or_default();
    // Name order: the same container gives the same address on every probe.
    networks.sort_by(|a, b| a.0.cmp(b.0));
    for (name, ep) in networks {
        let Some(text) = ep.ip_address.as_deref().filter(|s| !s.is_empty()) else {
            continue;
        };
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Found::Addr(ProbeAddr::Network {
                network: name.clone(),
                ip,
            });
        }
    }
    Found::Addr(ProbeAddr::Unreachable(
        "the container has no IP address on any network".into(),
    ))
}

impl Engine {
    /// Where `container` (ID or name) listens, as seen from this engine's host.
    pub async fn probe_addr(&self, container: &str) -> Result<ProbeAddr, DockerError> {
        let mut name = container.to_string();
        for _ in 0..=MAX_SHARED_HOPS {
            let inspect = match self.docker.inspect_container(&name, None).await {
                Ok(i) => i,
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {
                    return Ok(ProbeAddr::Unreachable(format!(
                        "no container `{name}` on the host"
                    )))
                }
                Err(e) => return Err(self.err(format!("inspect container `{name}`"), e)),
            };
            match read_inspect(&inspect) {
                Found::Addr(a) => return Ok(a),
                Found::Joins(other) => name = other,
            }
        }
        Ok(ProbeAddr::Unreachable(format!(
            "more than {MAX_SHARED_HOPS} shared network namespaces to follow"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ContainerState, EndpointSettings, HostConfig, NetworkSettings};

    use super::*;

    fn inspect(running: bool, mode: &str, nets: &[(&str, &str)]) -> ContainerInspectResponse {
        ContainerInspectResponse {
            state: Some(ContainerState {
                running: Some(running),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some(mode.to_string()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(
                    nets.iter()
                        .map(|(n, ip)| {
                            (
                                n.to_string(),
                                EndpointSettings {
                                    ip_address: Some(ip.to_string()),
                                    ..Default::default()
                                },
                            )
                        })
                        .collect::<HashMap<_, _>>(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_first_network_in_name_order_with_an_address_is_used() {
        let i = inspect(
            true,
            "zz",
            &[("zz", "10.0.0.9"), ("bb", "10.0.1.2"), ("aa", "")],
        );
        assert_eq!(
            read_inspect(&i),
            Found::Addr(ProbeAddr::Network {
                network: "bb".into(),
                ip: "10.0.1.2".parse().unwrap()
            })
        );
    }

    #[test]
    fn host_networking_is_the_hosts_loopback() {
        let i = inspect(true, "host", &[("host", "")]);
        assert_eq!(read_inspect(&i), Found::Addr(ProbeAddr::HostLoopback));
        assert_eq!(
            ProbeAddr::HostLoopback.ip(),
            Some("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn a_shared_namespace_is_followed_and_no_address_is_said() {
        let i = inspect(true, "container:abc", &[]);
        assert_eq!(read_inspect(&i), Found::Joins("abc".into()));
        for i in [
            inspect(true, "none", &[("none", "")]),
            inspect(true, "bridge", &[("bridge", "")]),
            inspect(false, "bridge", &[("bridge", "172.17.0.2")]),
        ] {
            let Found::Addr(a) = read_inspect(&i) else {
                panic!("an address or a reason")
            };
            assert!(matches!(a, ProbeAddr::Unreachable(_)), "{a:?}");
            assert_eq!(a.ip(), None);
        }
    }
}
