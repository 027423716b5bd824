//! The per-host proxy's pure side (issue 13): the ports of the cross-host listeners (`ports`),
//! the configuration of each host's proxy (`render`), what the proxy containers need, for
//! `diff` (`changes`), and the discovery mesh of each (host, stack) (`mesh`).
//!
//! Nothing here does I/O; the executor ships what this decides.

pub mod mesh;
pub mod ports;
pub mod render;
#[cfg(test)]
mod render_tests;

use crate::model::observed::ObservedState;
use crate::model::proxy::{proxy_spec_hash, settle, ProxyChange, ProxyChangeKind, ProxySettle};
use crate::model::spec::DesiredState;

/// Per reachable host: the proxy to make (none yet), replace (another image) or start (not
/// running). Nothing without `proxy:` in `convoy.yaml`.
pub fn changes(desired: &DesiredState, observed: &ObservedState) -> Vec<ProxyChange> {
    let Some(settings) = &desired.settings.proxy else {
        return Vec::new();
    };
    let want = proxy_spec_hash(&settings.image);
    let mut out = Vec::new();
    for (host, h) in &observed.hosts {
        let Some(snap) = h.snapshot() else { continue };
        if !desired.hosts.contains_key(host) {
            continue;
        }
        let wanted = ingress_listeners(desired, host);
        // As the executor decides it (`model::proxy::settle`, `exec::proxy_replace`).
        let kind = match settle(snap.proxy.as_deref(), &want) {
            None | Some(ProxySettle::Create { .. }) => ProxyChangeKind::Create,
            Some(ProxySettle::StartFirst { .. }) => ProxyChangeKind::Replace,
            Some(ProxySettle::Keep { remove, rename, .. }) if !remove.is_empty() || rename => {
                ProxyChangeKind::Finish
            }
            Some(ProxySettle::Keep { keep, .. }) if !keep.running => ProxyChangeKind::Start,
            Some(ProxySettle::Keep { keep, .. }) => {
                // Running as wanted: what its configuration holds against what it should.
                let Some(held) = &keep.held else { continue };
                if *held == wanted {
                    continue;
                }
                out.push(ProxyChange {
                    host: host.clone(),
                    kind: ProxyChangeKind::Listeners,
                    image: settings.image.clone(),
                    listeners: wanted
                        .iter()
                        .filter(|l| !held.contains(l))
                        .cloned()
                        .collect(),
                    released: held
                        .iter()
                        .filter(|l| !wanted.contains(l))
                        .cloned()
                        .collect(),
                });
                continue;
            }
        };
        out.push(ProxyChange {
            host: host.clone(),
            kind,
            image: settings.image.clone(),
            listeners: if kind == ProxyChangeKind::Create {
                wanted
            } else {
                Vec::new()
            },
            released: Vec::new(),
        });
    }
    out
}

/// The published ports `host`'s proxy holds for the desired state, as
/// [`crate::model::proxy::held_listeners`] reads them back from its configuration: those of
/// every ingress service that may run there (jobs take no traffic).
pub fn ingress_listeners(desired: &DesiredState, host: &str) -> Vec<String> {
    let mut listeners = Vec::new();
    for stack in desired.stacks.values() {
        for svc in stack.services.values().filter(|s| s.job.is_none()) {
            let may_run = svc
                .placement
                .hosts
                .as_ref()
                .is_none_or(|hs| hs.iter().any(|n| n == host));
            for p in svc
                .ingress
                .iter()
                .flat_map(|i| &i.ports)
                .filter(|_| may_run)
            {
                listeners.push(format!("{}:{}", p.host_ip, p.host_port));
            }
        }
    }
    listeners.sort();
    listeners.dedup();
    listeners
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::testkit;
    use crate::model::observed::ObservedHost;
    use crate::model::proxy::{ObservedProxy, ProxySettings, DEFAULT_PORT_RANGE};

    #[test]
    fn proxies_are_made_replaced_and_started_only_with_a_proxy_section() {
        let mut d = testkit::desired(&["a", "b", "c"], vec![]);
        let mut o = testkit::empty_observed(&d);
        assert!(changes(&d, &o).is_empty(), "no proxy: section, no change");
        d.settings.proxy = Some(ProxySettings {
            image: "haproxy:2.8".into(),
            ingress: false,
            ports: DEFAULT_PORT_RANGE,
        });
        let set = |o: &mut ObservedState, host: &str, p: ObservedProxy| {
            if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut(host) {
                s.proxy = Some(Box::new(p));
            }
        };
        let p = |hash: String, running: bool| ObservedProxy {
            id: "x".into(),
            image: String::new(),
            spec_hash: hash,
            running,
            name: crate::model::proxy::PROXY_CONTAINER.into(),
            ..Default::default()
        };
        set(&mut o, "b", p("old".into(), true));
        set(&mut o, "c", p(proxy_spec_hash("haproxy:2.8"), false));
        let lines: Vec<String> = changes(&d, &o).iter().map(ProxyChange::line).collect();
        assert_eq!(
            lines,
            [
                "+ proxy on host a  (haproxy:2.8)",
                "~ proxy on host b  (new image haproxy:2.8: replaced start-first, connections drained; \
                 stop-first if the host refuses a second proxy, connections through it may drop then)",
                "> proxy on host c  (start: not running)",
            ]
        );
        set(&mut o, "a", p(proxy_spec_hash("haproxy:2.8"), true));
        set(&mut o, "b", p(proxy_spec_hash("haproxy:2.8"), true));
        set(&mut o, "c", p(proxy_spec_hash("haproxy:2.8"), true));
        assert!(changes(&d, &o).is_empty());
        // An interrupted replacement: the old proxy still beside the new one.
        let mut both = p(proxy_spec_hash("haproxy:2.8"), true);
        both.others.push(p("old".into(), true));
        set(&mut o, "a", both);
        // A stopped proxy of another image is removed and made again.
        set(&mut o, "c", p("old".into(), false));
        let lines: Vec<String> = changes(&d, &o).iter().map(ProxyChange::line).collect();
        assert_eq!(
            lines,
            [
                "~ proxy on host a  (an interrupted replacement is finished: the proxy of \
                 haproxy:2.8 kept as convoy-proxy, any other drained and removed)",
                "+ proxy on host c  (haproxy:2.8)",
            ]
        );
    }

    #[test]
    fn a_running_proxy_whose_configuration_holds_other_ports_is_a_reload_line() {
        use crate::model::proxy::{IngressPort, IngressSpec};
        let port = |ip: &str, p: u16| IngressPort {
            host_ip: ip.into(),
            host_port: p,
            container_port: 80,
        };
        let mut web = testkit::service("web", 2);
        web.ingress = Some(IngressSpec {
            ports: vec![port("", 80), port("::1", 443)],
            ..Default::default()
        });
        let mut admin = testkit::service("admin", 1);
        admin.placement.hosts = Some(vec!["b".into()]);
        admin.ingress = Some(IngressSpec {
            ports: vec![port("10.0.0.2", 8080)],
            ..Default::default()
        });
        let mut d = testkit::desired(&["a", "b"], vec![testkit::stack("s", vec![web, admin])]);
        d.settings.proxy = Some(ProxySettings {
            image: "haproxy:2.8".into(),
            ingress: false,
            ports: DEFAULT_PORT_RANGE,
        });
        // What the renderer writes is what the observation reads back: no line once applied.
        let mut o = testkit::empty_observed(&d);
        for host in ["a", "b"] {
            let snap = o.hosts[host].snapshot().unwrap().clone();
            let m = render::model(&d, host, &snap, &Default::default(), &Default::default());
            let held = crate::model::proxy::held_listeners(&render::render(&m));
            assert_eq!(held, ingress_listeners(&d, host), "{host}");
            if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut(host) {
                s.proxy = Some(Box::new(ObservedProxy {
                    spec_hash: proxy_spec_hash("haproxy:2.8"),
                    running: true,
                    name: crate::model::proxy::PROXY_CONTAINER.into(),
                    held: Some(held),
                    ..Default::default()
                }));
            }
        }
        assert_eq!(ingress_listeners(&d, "a"), [":80", "::1:443"]);
        assert_eq!(
            ingress_listeners(&d, "b"),
            ["10.0.0.2:8080", ":80", "::1:443"]
        );
        assert!(changes(&d, &o).is_empty());
        // Host b's proxy still holds 8080 for a service that left, and not 80 yet.
        if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("b") {
            s.proxy.as_mut().unwrap().held = Some(vec![
                "10.0.0.2:8080".into(),
                "::1:443".into(),
                ":9090".into(),
            ]);
        }
        let lines: Vec<String> = changes(&d, &o).iter().map(ProxyChange::line).collect();
        assert_eq!(lines, ["~ proxy on host b  (reload: + :80, - :9090)"]);
        // Not read (no file yet): nothing is said.
        if let Some(ObservedHost::Reachable(s)) = o.hosts.get_mut("b") {
            s.proxy.as_mut().unwrap().held = None;
        }
        assert!(changes(&d, &o).is_empty());
    }
}
