//! The fleet file `convoy.yaml`: the default local host, hosts and their addresses, settings,
//! and the errors in the fleet file, with their exact positions.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

#[test]
fn minimal_repository() {
    let s = ok(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: nginx:1\n",
        ),
    ]);
    assert_eq!(s.fleet, "prod");
    assert_eq!(s.settings, FleetSettings::default());
    let host = &s.hosts["local"];
    assert_eq!(
        host.address,
        HostAddress::Unix {
            path: "/var/run/docker.sock".into()
        }
    );
    let app = &s.stacks["web"].services["app"];
    assert_eq!(app.replicas, 1);
    assert_eq!(app.mode, DeployMode::Replicated);
    assert_eq!(app.container.image, "nginx:1");
    assert_eq!(app.container.restart.name, RestartName::UnlessStopped);
    assert_eq!(
        app.container.networks,
        BTreeMap::from([(
            "web_default".to_string(),
            NetworkAttachment {
                aliases: vec!["app".into()],
                ..Default::default()
            }
        )])
    );
    assert_eq!(
        s.stacks["web"].networks["default"].engine_name,
        "web_default"
    );
    assert_eq!(s.stacks["web"].networks["default"].driver, "bridge");
    assert_eq!(s.stacks["web"].file, "stacks/web/compose.yaml");
}

#[test]
fn default_local_host_follows_docker_host() {
    let f = web("services:\n  app:\n    image: a\n");
    let s = ok_env(
        &files(&f),
        &[("DOCKER_HOST", "unix:///run/user/1000/docker.sock")],
    );
    assert_eq!(
        s.hosts["local"].address,
        HostAddress::Unix {
            path: "/run/user/1000/docker.sock".into()
        }
    );
    let s = ok_env(&files(&f), &[("DOCKER_HOST", "tcp://10.0.0.1:2375")]);
    assert_eq!(
        s.hosts["local"].address,
        HostAddress::Unix {
            path: "/var/run/docker.sock".into()
        }
    );
}

#[test]
fn missing_fleet_file() {
    let e = errs(&[("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n")]);
    assert_eq!(
        e,
        vec!["convoy.yaml: missing: the fleet file `convoy.yaml` must be at the root of the in-memory repository"]
    );
}

#[test]
fn hosts_are_parsed() {
    let fleet = "fleet: prod\nimages: push\nssh:\n  user: deploy\n  identity_file: ~/.ssh/id\nhost_down_after: 1m\ndependency_timeout: 90s\nhosts:\n  a:\n    address: unix:///var/run/docker.sock\n  b:\n    address: ssh://ops@10.0.0.2:2222\n    docker_socket: /run/docker.sock\n    labels: {zone: b}\n    capacity: {cpus: 2.5, memory: 8g}\n    images: pull\n    ssh: {known_hosts: /etc/kh}\n    cordon: true\n  c:\n    address: ssh://edge-3\n    drain: true\n";
    let s = ok_env(
        &[
            ("convoy.yaml", fleet),
            ("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n"),
        ],
        &[("HOME", "/home/me")],
    );
    assert_eq!(s.settings.host_down_after_secs, 60);
    assert_eq!(s.settings.dependency_timeout_secs, 90);
    let a = &s.hosts["a"];
    assert_eq!(a.docker_socket, "/var/run/docker.sock");
    assert_eq!(a.images, ImagePolicy::Push);
    assert_eq!(a.ssh.user.as_deref(), Some("deploy"));
    assert_eq!(
        a.ssh.identity_file.as_deref(),
        Some(std::path::Path::new("/home/me/.ssh/id"))
    );
    let b = &s.hosts["b"];
    assert_eq!(
        b.address,
        HostAddress::Ssh {
            user: Some("ops".into()),
            host: "10.0.0.2".into(),
            port: Some(2222)
        }
    );
    assert_eq!(b.docker_socket, "/run/docker.sock");
    assert_eq!(b.labels, env(&[("zone", "b")]));
    assert_eq!(
        b.capacity,
        Some(Capacity {
            nano_cpus: Some(2_500_000_000),
            memory_bytes: Some(8 << 30)
        })
    );
    assert_eq!(b.images, ImagePolicy::Pull);
    assert!(b.cordon && !b.drain);
    // Host ssh settings override the fleet's key by key.
    assert_eq!(b.ssh.user.as_deref(), Some("deploy"));
    assert_eq!(
        b.ssh.known_hosts.as_deref(),
        Some(std::path::Path::new("/etc/kh"))
    );
    let c = &s.hosts["c"];
    assert_eq!(
        c.address,
        HostAddress::Ssh {
            user: None,
            host: "edge-3".into(),
            port: None
        }
    );
    assert_eq!(c.docker_socket, "/var/run/docker.sock");
    assert!(c.drain);
}

#[test]
fn fleet_file_errors() {
    let fleet = "fleet: prod\nhosts:\n  a:\n    address: tcp://1.2.3.4:2375\n  b:\n    adress: ssh://x\n  bad/name:\n    address: ssh://y\n  c:\n    address: ssh://u@h:99999\nimagse: push\n";
    let e = errs(&[
        ("convoy.yaml", fleet),
        ("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n"),
    ]);
    assert_eq!(
        e,
        vec![
            "convoy.yaml:4:14: hosts.a.address: expected `unix:///path/docker.sock` or `ssh://[user@]host[:port]`",
            "convoy.yaml:5:3: hosts.b: missing `address` (`unix:///...` or `ssh://host`)",
            "convoy.yaml:6:5: hosts.b.adress: unknown key, did you mean `address`?",
            "convoy.yaml:7:3: hosts.bad/name: a host name is letters, digits, `_`, `.` and `-`",
            "convoy.yaml:10:14: hosts.c.address: invalid ssh port",
            "convoy.yaml:11:1: imagse: unknown key, did you mean `images`?",
        ]
    );
    let e = errs(&[("convoy.yaml", "stacks: []\n")]);
    assert_eq!(e, vec!["convoy.yaml:1:1: fleet: missing `fleet: <id>`"]);
    let e = errs(&[("convoy.yaml", "fleet: 'a b'\n")]);
    assert_eq!(
        e,
        vec!["convoy.yaml:1:8: fleet: a fleet id is a non-empty string of letters, digits, `_`, `.` and `-`"]
    );
}

#[test]
fn empty_hosts_is_an_error() {
    let e = errs(&[("convoy.yaml", "fleet: prod\nhosts: {}\nstacks: []\n")]);
    assert_eq!(
        e,
        vec!["convoy.yaml:2:8: hosts: no hosts listed; leave `hosts:` out to use the local engine"]
    );
}

#[test]
fn address_forms() {
    assert_eq!(
        fleet::parse_address("ssh://[::1]:2222"),
        Ok(HostAddress::Ssh {
            user: None,
            host: "::1".into(),
            port: Some(2222)
        })
    );
    assert!(fleet::parse_address("ssh://").is_err());
    assert!(fleet::parse_address("ssh://@h").is_err());
    assert!(fleet::parse_address("unix://relative.sock").is_err());
    assert!(fleet::parse_address("tcp://h:2375").is_err());
    let s = ok(&[(
        "convoy.yaml",
        "fleet: prod\nstacks: []\nhosts:\n  a:\n    address: unix:///srv/d.sock\n",
    )]);
    assert_eq!(s.hosts["a"].docker_socket, "/srv/d.sock");
}

/// Two hosts that are one engine had `apply` move replicas between the two names of it, ending
/// with none running: the same socket, or the same SSH machine, port and socket, however
/// spelled, is refused at the second, naming the first.
#[test]
fn two_hosts_with_one_engine() {
    let fleet = "fleet: prod\nhosts:\n  a:\n    address: ssh://deploy@Edge-1.example.:22\n  b:\n    address: ssh://deploy@edge-1.example\n  c:\n    address: ssh://root@edge-1.example\n  d:\n    address: unix:///var/run/docker.sock\n  e:\n    address: unix:///run//docker.sock\n  f:\n    address: ssh://[::1]\n  g:\n    address: ssh://[0:0::1]:22\n    docker_socket: /var/run/./docker.sock\n";
    let e = errs(&[
        ("convoy.yaml", fleet),
        ("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n"),
    ]);
    assert_eq!(
        e,
        vec![
            "convoy.yaml:6:14: hosts.b.address: host `b` reaches the same engine as host `a` (ssh://edge-1.example:22, socket /run/docker.sock): one engine is one host",
            "convoy.yaml:8:14: hosts.c.address: host `c` reaches the same engine as host `a` (ssh://edge-1.example:22, socket /run/docker.sock): one engine is one host",
            "convoy.yaml:12:14: hosts.e.address: host `e` reaches the same engine as host `d` (unix:///run/docker.sock): one engine is one host",
            "convoy.yaml:16:14: hosts.g.address: host `g` reaches the same engine as host `f` (ssh://[::1]:22, socket /run/docker.sock): one engine is one host",
        ]
    );
    // Another port, another socket on the same machine, another machine: other engines.
    ok(&[
        (
            "convoy.yaml",
            "fleet: prod\nstacks: []\nhosts:\n  a:\n    address: ssh://edge-1\n  b:\n    address: ssh://edge-1:2222\n  c:\n    address: ssh://edge-1\n    docker_socket: /run/user/1000/docker.sock\n  d:\n    address: ssh://edge-2\n  e:\n    address: unix:///var/run/docker.sock\n  f:\n    address: unix:///srv/other.sock\n",
        ),
    ]);
}

#[test]
fn prune_guard_is_a_percentage_or_off() {
    const APP: &str = "services:\n  app:\n    image: a\n";
    let fleet = |v: &str| format!("fleet: prod\nprune_guard: {v}\n");
    let guard = |v: &str| {
        ok(&[("convoy.yaml", &fleet(v)), ("stacks/web/compose.yaml", APP)])
            .settings
            .prune_guard_percent
    };
    let default = ok(&[("convoy.yaml", FLEET), ("stacks/web/compose.yaml", APP)]);
    assert_eq!(default.settings.prune_guard_percent, Some(50));
    assert_eq!(guard("25%"), Some(25));
    assert_eq!(guard("off"), None);
    let e = errs(&[
        ("convoy.yaml", &fleet("150%")),
        ("stacks/web/compose.yaml", APP),
    ]);
    assert!(
        e.iter()
            .any(|m| m.contains("convoy.yaml:2") && m.contains("prune_guard")),
        "{e:?}"
    );
}

#[test]
fn history_limit_is_a_positive_number_of_entries() {
    const APP: &str = "services:\n  app:\n    image: a\n";
    let fleet = |v: &str| format!("fleet: prod\nhistory_limit: {v}\n");
    let default = ok(&[("convoy.yaml", FLEET), ("stacks/web/compose.yaml", APP)]);
    assert_eq!(default.settings.history_limit, 1000);
    let set = ok(&[
        ("convoy.yaml", &fleet("50")),
        ("stacks/web/compose.yaml", APP),
    ]);
    assert_eq!(set.settings.history_limit, 50);
    for bad in ["0", "-3", "lots", "2000000"] {
        let e = errs(&[
            ("convoy.yaml", &fleet(bad)),
            ("stacks/web/compose.yaml", APP),
        ]);
        assert!(
            e.iter()
                .any(|m| m.contains("convoy.yaml:2") && m.contains("history_limit")),
            "{bad}: {e:?}"
        );
    }
}
