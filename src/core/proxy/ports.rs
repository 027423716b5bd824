//! The port of each cross-host listener (issue 13): every (stack, service, container port) a
//! service declares gets one port of `proxy.ports` on every host, the same on all of them, so
//! a host's proxy (or a mesh container) reaches a service on another host at that host's
//! `internal_address` and this port without asking anyone.
//!
//! Pure and deterministic: a hash of the names picks a start in the range, and a linear probe
//! over the sorted set of all triples of the desired state settles collisions, so two triples
//! never share a port and the same state gives the same ports on every machine. It does not
//! bind anything, and it does not know which hosts run what.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::model::proxy::PortRange;
use crate::model::spec::DesiredState;

/// One service port of the fleet: stack, service, container port.
pub type ServicePort = (String, String, u16);

/// More service ports than the range has ports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{needed} service ports need a cross-host listener each, and `proxy.ports` ({range}) holds {}", range.len())]
pub struct RangeExhausted {
    pub needed: usize,
    pub range: PortRange,
}

/// Every TCP port a service of the state declares (`ServiceSpec::declared_tcp_ports`), jobs
/// left out (they run to completion; nothing calls them), sorted.
pub fn service_ports(state: &DesiredState) -> BTreeSet<ServicePort> {
    let mut out = BTreeSet::new();
    for (sname, stack) in &state.stacks {
        for (vname, svc) in &stack.services {
            if svc.job.is_some() {
                continue;
            }
            for port in svc.declared_tcp_ports() {
                out.insert((sname.clone(), vname.clone(), port));
            }
        }
    }
    out
}

/// The listener port of each of `triples` in `range`: the hash's slot, or the next free one.
pub fn assign(
    triples: &BTreeSet<ServicePort>,
    range: PortRange,
) -> Result<BTreeMap<ServicePort, u16>, RangeExhausted> {
    let len = range.len();
    if triples.len() as u64 > u64::from(len) {
        return Err(RangeExhausted {
            needed: triples.len(),
            range,
        });
    }
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    let mut out = BTreeMap::new();
    for t in triples {
        let mut slot = start_slot(t, len);
        while taken.contains(&slot) {
            slot = (slot + 1) % len;
        }
        taken.insert(slot);
        // `slot < len`, so the sum stays within the range's last port.
        out.insert(t.clone(), (u32::from(range.first) + slot) as u16);
    }
    Ok(out)
}

/// The listener ports of the whole desired state, in its `proxy.ports` range (an empty map
/// when the fleet has no proxy).
pub fn listener_ports(state: &DesiredState) -> Result<BTreeMap<ServicePort, u16>, RangeExhausted> {
    match &state.settings.proxy {
        Some(p) => assign(&service_ports(state), p.ports),
        None => Ok(BTreeMap::new()),
    }
}

/// The listener port of one (stack, service, container port), if the state declares it.
pub fn listener_port(state: &DesiredState, stack: &str, service: &str, port: u16) -> Option<u16> {
    listener_ports(state)
        .ok()?
        .get(&(stack.to_string(), service.to_string(), port))
        .copied()
}

fn start_slot((stack, service, port): &ServicePort, len: u32) -> u32 {
    // NUL separates the names: neither may hold one, so two triples never hash one string.
    let digest = Sha256::digest(format!("{stack}\0{service}\0{port}").as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % u64::from(len)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(stack: &str, service: &str, port: u16) -> ServicePort {
        (stack.into(), service.into(), port)
    }

    const SMALL: PortRange = PortRange {
        first: 40000,
        last: 40015,
    };

    #[test]
    fn ports_are_stable_distinct_and_in_range() {
        let set: BTreeSet<ServicePort> = (0..16)
            .map(|i| triple("web", &format!("svc{i}"), 80))
            .collect();
        let a = assign(&set, SMALL).unwrap();
        let b = assign(&set, SMALL).unwrap();
        assert_eq!(a, b, "same input, same ports");
        let ports: BTreeSet<u16> = a.values().copied().collect();
        assert_eq!(ports.len(), 16, "no two triples share a port: {a:?}");
        assert!(ports.iter().all(|p| SMALL.contains(*p)));
    }

    /// A triple's port is its hash's slot when nothing before it in the sorted order took it,
    /// so it does not depend on how the set was built.
    #[test]
    fn a_lone_triple_gets_its_hash_slot() {
        let t = triple("web", "api", 8080);
        let one: BTreeSet<_> = [t.clone()].into();
        let range = crate::model::proxy::DEFAULT_PORT_RANGE;
        let p = assign(&one, range).unwrap()[&t];
        assert_eq!(u32::from(p - range.first), start_slot(&t, range.len()));
        // Pinned: the hash of the names decides, nothing else.
        assert_eq!(p, assign(&one, range).unwrap()[&t]);
        let other: BTreeSet<_> = [triple("web", "api", 8081)].into();
        assert_ne!(
            assign(&other, range).unwrap().values().next(),
            Some(&p),
            "another port of the service hashes elsewhere (for these names)"
        );
    }

    #[test]
    fn declared_ports_join_expose_ports_and_ingress() {
        use crate::model::proxy::{IngressPort, IngressSpec};
        use crate::model::spec::PortBinding;
        let mut svc = crate::core::testkit::service("web", 1);
        svc.container.expose = vec!["9000/tcp".into(), "53/udp".into(), "80/tcp".into()];
        svc.container.ports = vec![PortBinding {
            host_ip: String::new(),
            host_port: Some(8080),
            container_port: 80,
            protocol: "tcp".into(),
        }];
        svc.ingress = Some(IngressSpec {
            ports: vec![IngressPort {
                host_ip: String::new(),
                host_port: 443,
                container_port: 8443,
            }],
            ..Default::default()
        });
        assert_eq!(svc.declared_tcp_ports(), vec![80, 8443, 9000]);
        assert_eq!(
            svc.declared_ports()
                .iter()
                .map(|p| format!("{}/{}", p.port, p.protocol))
                .collect::<Vec<_>>(),
            ["53/udp", "80/tcp", "8443/tcp", "9000/tcp"]
        );
    }

    #[test]
    fn a_full_range_is_an_error() {
        let set: BTreeSet<ServicePort> = (0..17).map(|i| triple("s", "a", 1000 + i)).collect();
        let e = assign(&set, SMALL).unwrap_err();
        assert_eq!(e.needed, 17);
        assert!(e.to_string().contains("holds 16"), "{e}");
    }

    #[test]
    fn the_state_gives_ports_only_with_a_proxy() {
        use crate::core::testkit;
        let mut svc = testkit::service("api", 2);
        svc.container.expose = vec!["8080/tcp".into(), "53/udp".into()];
        let mut state = testkit::desired(&["a"], vec![testkit::stack("s", vec![svc])]);
        assert!(listener_ports(&state).unwrap().is_empty());
        state.settings.proxy = Some(crate::model::proxy::ProxySettings {
            image: "haproxy:2.8".into(),
            ingress: false,
            ports: SMALL,
        });
        let ports = listener_ports(&state).unwrap();
        assert_eq!(ports.len(), 1, "TCP only: {ports:?}");
        let p = listener_port(&state, "s", "api", 8080).unwrap();
        assert!(SMALL.contains(p));
        assert_eq!(listener_port(&state, "s", "api", 53), None);
    }
}
