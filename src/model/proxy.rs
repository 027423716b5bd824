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
/// The engine name of a new proxy started beside the one in service during a start-first
/// replacement (or of the old one, when it kept that name from an interrupted replacement):
/// whichever of the two names the old one does not hold, see [`spare_name`].
pub const PROXY_NEXT_CONTAINER: &str = "convoy-proxy-next";
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObservedProxy {
    pub id: String,
    /// The image reference it was created from.
    pub image: String,
    /// Its `convoy.spec-hash` label: [`proxy_spec_hash`] of what it was created with.
    pub spec_hash: String,
    /// Running now (a proxy that is not is started or replaced).
    pub running: bool,
    /// Its engine name ([`PROXY_CONTAINER`], or [`PROXY_NEXT_CONTAINER`] while a start-first
    /// replacement is under way).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The host's other proxy containers of the fleet: a replacement was interrupted between
    /// the new one's start and the old one's removal. The next sync keeps one ([`settle`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<ObservedProxy>,
    /// The published ports its configuration in force holds (`ip:port`, `:port` for every
    /// address, sorted), read from the file in the running container; `None` when it was not
    /// read (not running, or no file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Vec<String>>,
}

/// The published ports a configuration `core::proxy::render` wrote holds: the `bind` lines of
/// its ingress sections (`listen in_...`, `frontend in_...`), as `ip:port` (an IPv6 address
/// without its brackets) or `:port`, sorted and without repeats.
pub fn held_listeners(config: &str) -> Vec<String> {
    let mut ingress = false;
    let mut out = Vec::new();
    for line in config.lines() {
        if !line.starts_with(char::is_whitespace) {
            ingress = line.starts_with("listen in_") || line.starts_with("frontend in_");
            continue;
        }
        if !ingress {
            continue;
        }
        if let Some(bind) = line.trim().strip_prefix("bind ") {
            let addr = bind.split_whitespace().next().unwrap_or("");
            out.push(
                match addr.strip_prefix('[').and_then(|r| r.split_once("]:")) {
                    Some((ip, port)) => format!("{ip}:{port}"),
                    None => addr.to_string(),
                },
            );
        }
    }
    out.sort();
    out.dedup();
    out
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
    /// The published ports a running proxy will let go of (a [`ProxyChangeKind::Listeners`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyChangeKind {
    Create,
    /// A new image: start-first (the new proxy beside the old one, both bound with
    /// SO_REUSEPORT; the old one then stops accepting and finishes its connections), stop-first
    /// when the host refuses the second one (connections through it may drop then).
    Replace,
    Start,
    /// A replacement that was interrupted (two proxy containers on the host): the one of the
    /// wanted image is kept, the other drained and removed.
    Finish,
    /// A running proxy of the wanted image whose configuration holds other published ports
    /// than the desired state gives its host: a reload binds the new ones and lets the old go.
    Listeners,
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
                "~ proxy on host {}  (new image {}: replaced start-first, connections drained; \
                 stop-first if the host refuses a second proxy, connections through it may drop then)",
                self.host, self.image
            ),
            ProxyChangeKind::Finish => format!(
                "~ proxy on host {}  (an interrupted replacement is finished: the proxy of {} \
                 kept as convoy-proxy, any other drained and removed)",
                self.host, self.image
            ),
            ProxyChangeKind::Start => {
                format!("> proxy on host {}  (start: not running)", self.host)
            }
            ProxyChangeKind::Listeners => {
                let mut parts: Vec<String> =
                    self.listeners.iter().map(|l| format!("+ {l}")).collect();
                parts.extend(self.released.iter().map(|l| format!("- {l}")));
                format!(
                    "~ proxy on host {}  (reload: {})",
                    self.host,
                    parts.join(", ")
                )
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

/// What a host's proxy containers need before its configuration is synced, from all of them
/// (the observed one and its `others`) and the wanted spec hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySettle {
    /// No proxy of the wanted spec and none running to keep serving: remove `remove` (stopped
    /// or of another spec), then make one as [`PROXY_CONTAINER`].
    Create { remove: Vec<ObservedProxy> },
    /// `old` serves with another spec: remove `remove`, start a new one beside it under
    /// [`spare_name`]`(old)`, and once the new one answers, drain and remove `old`.
    StartFirst {
        old: ObservedProxy,
        remove: Vec<ObservedProxy>,
    },
    /// `keep` has the wanted spec: drain and remove `remove`, then name it [`PROXY_CONTAINER`]
    /// when it is not (`rename`). A stopped `keep` is started by the sync.
    Keep {
        keep: ObservedProxy,
        remove: Vec<ObservedProxy>,
        rename: bool,
    },
}

/// Decides [`ProxySettle`]. A running proxy of the wanted spec is kept; else a running one of
/// another spec is replaced start-first (a stopped proxy of the wanted spec beside it is
/// removed: starting it would be a stop-first replacement); else a stopped one of the wanted
/// spec is kept; else one is made. Among equals, the one named [`PROXY_CONTAINER`], then the
/// lowest ID, so two syncs decide alike.
pub fn settle(observed: Option<&ObservedProxy>, want: &str) -> Option<ProxySettle> {
    let first = observed?;
    let mut all: Vec<ObservedProxy> = std::iter::once(first)
        .chain(first.others.iter())
        .map(|p| ObservedProxy {
            others: Vec::new(),
            ..p.clone()
        })
        .collect();
    all.sort_by(|a, b| {
        (b.running, b.name == PROXY_CONTAINER, &a.id).cmp(&(
            a.running,
            a.name == PROXY_CONTAINER,
            &b.id,
        ))
    });
    let take = |all: &mut Vec<ObservedProxy>, i: usize| {
        let chosen = all.remove(i);
        (chosen, std::mem::take(all))
    };
    // `all` is sorted running first, then by name and ID: the first match is the best.
    if let Some(i) = all.iter().position(|p| p.running && p.spec_hash == want) {
        let (keep, remove) = take(&mut all, i);
        let rename = keep.name != PROXY_CONTAINER;
        return Some(ProxySettle::Keep {
            keep,
            remove,
            rename,
        });
    }
    if let Some(i) = all.iter().position(|p| p.running) {
        let (old, remove) = take(&mut all, i);
        return Some(ProxySettle::StartFirst { old, remove });
    }
    if let Some(i) = all.iter().position(|p| p.spec_hash == want) {
        let (keep, remove) = take(&mut all, i);
        let rename = keep.name != PROXY_CONTAINER;
        return Some(ProxySettle::Keep {
            keep,
            remove,
            rename,
        });
    }
    Some(ProxySettle::Create { remove: all })
}

/// The name a new proxy takes beside `old`: the one of [`PROXY_CONTAINER`] and
/// [`PROXY_NEXT_CONTAINER`] that `old` does not hold.
pub fn spare_name(old: &ObservedProxy) -> &'static str {
    if old.name == PROXY_NEXT_CONTAINER {
        PROXY_CONTAINER
    } else {
        PROXY_NEXT_CONTAINER
    }
}

/// The prefix of a mesh container's service label: `convoy-mesh.<host>` for the first mesh of
/// a (host, stack), `convoy-mesh-2.<host>`, ... for the next ones (two remote-only services
/// that declare the same port cannot share one address). One label per host, because the
/// aliases, and so the container's spec, differ from host to host.
pub const MESH_SERVICE: &str = "convoy-mesh";

/// Whether a service label names a mesh container (`convoy-mesh.<host>`,
/// `convoy-mesh-2.<host>`, ...).
pub fn is_mesh_service(service: &str) -> bool {
    let Some(rest) = service.strip_prefix(MESH_SERVICE) else {
        return false;
    };
    let rest = rest
        .strip_prefix('-')
        .map(|r| r.trim_start_matches(|c: char| c.is_ascii_digit()))
        .unwrap_or(rest);
    rest.starts_with('.') && rest.len() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(id: &str, name: &str, spec: &str, running: bool) -> ObservedProxy {
        ObservedProxy {
            id: id.into(),
            image: String::new(),
            spec_hash: spec.into(),
            running,
            name: name.into(),
            others: Vec::new(),
            held: None,
        }
    }

    fn with_others(mut first: ObservedProxy, other: &ObservedProxy) -> ObservedProxy {
        first.others = vec![other.clone()];
        first
    }

    #[test]
    fn one_proxy_of_the_wanted_spec_is_kept_as_it_is() {
        let p = proxy("a", PROXY_CONTAINER, "new", true);
        assert_eq!(settle(None, "new"), None);
        assert_eq!(
            settle(Some(&p), "new"),
            Some(ProxySettle::Keep {
                keep: p.clone(),
                remove: vec![],
                rename: false
            })
        );
        let stopped = proxy("a", PROXY_CONTAINER, "new", false);
        assert_eq!(
            settle(Some(&stopped), "new"),
            Some(ProxySettle::Keep {
                keep: stopped.clone(),
                remove: vec![],
                rename: false
            })
        );
    }

    #[test]
    fn a_running_proxy_of_another_image_is_replaced_start_first_a_stopped_one_is_not() {
        let old = proxy("a", PROXY_CONTAINER, "old", true);
        assert_eq!(
            settle(Some(&old), "new"),
            Some(ProxySettle::StartFirst {
                old: old.clone(),
                remove: vec![]
            })
        );
        assert_eq!(spare_name(&old), PROXY_NEXT_CONTAINER);
        let stopped = proxy("a", PROXY_CONTAINER, "old", false);
        assert_eq!(
            settle(Some(&stopped), "new"),
            Some(ProxySettle::Create {
                remove: vec![stopped.clone()]
            })
        );
    }

    #[test]
    fn an_interrupted_replacement_keeps_the_wanted_proxy_and_drains_the_other() {
        let old = proxy("b", PROXY_CONTAINER, "old", true);
        let new = proxy("a", PROXY_NEXT_CONTAINER, "new", true);
        // Whichever of the two the observation listed first.
        for seen in [
            with_others(old.clone(), &new),
            with_others(new.clone(), &old),
        ] {
            assert_eq!(
                settle(Some(&seen), "new"),
                Some(ProxySettle::Keep {
                    keep: new.clone(),
                    remove: vec![old.clone()],
                    rename: true
                })
            );
        }
        // The old one removed, the new one not renamed yet.
        assert_eq!(
            settle(Some(&new), "new"),
            Some(ProxySettle::Keep {
                keep: new.clone(),
                remove: vec![],
                rename: true
            })
        );
        // The new one made but not started: the old one still serves, so start-first again.
        let made = proxy("a", PROXY_NEXT_CONTAINER, "new", false);
        assert_eq!(
            settle(Some(&with_others(old.clone(), &made)), "new"),
            Some(ProxySettle::StartFirst {
                old: old.clone(),
                remove: vec![made]
            })
        );
        // The image changed again meanwhile: the one in service is replaced, under the name
        // the other does not hold.
        let seen = with_others(old.clone(), &new);
        assert_eq!(
            settle(Some(&seen), "newer"),
            Some(ProxySettle::StartFirst {
                old: old.clone(),
                remove: vec![new.clone()]
            })
        );
        assert_eq!(spare_name(&new), PROXY_CONTAINER);
    }

    #[test]
    fn ranges_count_their_ports() {
        assert_eq!(DEFAULT_PORT_RANGE.len(), 1000);
        assert!(DEFAULT_PORT_RANGE.contains(39000) && DEFAULT_PORT_RANGE.contains(39999));
        assert!(!DEFAULT_PORT_RANGE.contains(40000));
        assert_eq!(DEFAULT_PORT_RANGE.to_string(), "39000-39999");
    }
}
