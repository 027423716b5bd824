//! Values `validate` used to accept that the engine, ssh or the YAML reader then refused or
//! read otherwise: each is now a located error where it is written.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine. Every test here
//! failed on the reader before the rule it shows.

use super::*;

const ONE_SERVICE: &str = "services:\n  a:\n    image: x\n";

/// A newline in an SSH user started an option of its own in the generated ssh config, and
/// ssh refused it at connect time; a quote ended the value early.
#[test]
fn ssh_values_that_would_add_options_to_the_ssh_config() {
    let fleet = "fleet: prod\nssh:\n  user: \"deploy\\nProxyCommand x\"\nhosts:\n  a:\n    address: \"ssh://me\\u0007@edge-1\"\n  b:\n    address: ssh://edge-2\n    ssh:\n      identity_file: \"/keys/id\\tx\"\n      known_hosts: '/etc/\"kh'\n  c:\n    address: ssh://edge-3\n    docker_socket: \"/run/docker.sock\\r\"\n";
    let e = errs(&[
        ("convoy.yaml", fleet),
        ("stacks/web/compose.yaml", ONE_SERVICE),
    ]);
    assert_eq!(
        e,
        vec![
            "convoy.yaml:3:9: ssh.user: an ssh user cannot hold a control character (a newline, a tab, ...)",
            "convoy.yaml:6:14: hosts.a.address: the user of an ssh address cannot hold a control character (a newline, a tab, ...)",
            "convoy.yaml:10:22: hosts.b.ssh.identity_file: an identity file path cannot hold a control character (a newline, a tab, ...)",
            "convoy.yaml:11:20: hosts.b.ssh.known_hosts: a known hosts file path cannot hold a double quote",
            "convoy.yaml:14:20: hosts.c.docker_socket: a docker socket path cannot hold a control character (a newline, a tab, ...)",
        ]
    );
}

/// Each of these passed `validate`, and the engine then refused to create the container.
#[test]
fn values_the_engine_would_refuse() {
    let compose = r#"services:
  a:
    image: Registry.Example/App:1
    working_dir: app
    ports:
      - "localhost:8080:80"
      - target: 81
        host_ip: my-host
    extra_hosts:
      - "db:db.internal"
      - "gw=host-gateway"
      - "v6:[::1]"
    deploy:
      resources:
        limits:
          cpus: "0"
          memory: 4m
        reservations:
          cpus: 0.001
          memory: 1m
    ulimits:
      nofile: {soft: 2048, hard: 1024}
      nproc: -5
      memlock: -1
      core: {soft: -1, hard: 100}
  b:
    image: "busybox:1@sha256:abc"
    extra_hosts:
      cache: not-an-ip
    deploy:
      resources:
        limits:
          cpus: -1
          memory: 64m
        reservations:
          memory: 128m
  c:
    image: registry.example:5000/team/app_x:v1.0
    working_dir: /srv/app
    ports: ["127.0.0.1:8081:80", "[::1]:8082:80"]
    extra_hosts: ["h:10.0.0.1", "h6=::1"]
    deploy:
      resources:
        limits: {cpus: 0.01, memory: 6m}
        reservations: {cpus: 0.5, memory: 0}
    ulimits:
      memlock: {soft: -1, hard: -1}
      nofile: {soft: 1024, hard: -1}
"#;
    assert_eq!(
        web_errs(compose),
        vec![
            "stacks/web/compose.yaml:3:12: services.a.image: invalid image reference `Registry.Example/App:1`: the repository name must be lowercase",
            "stacks/web/compose.yaml:4:18: services.a.working_dir: working_dir `app` is not an absolute path",
            "stacks/web/compose.yaml:6:9: services.a.ports[0]: invalid host ip `localhost` (expected an IPv4 or IPv6 address)",
            "stacks/web/compose.yaml:8:18: services.a.ports[1].host_ip: invalid host ip `my-host` (expected an IPv4 or IPv6 address)",
            "stacks/web/compose.yaml:10:9: services.a.extra_hosts[0]: invalid address `db.internal` for extra host `db` (expected an IP address or `host-gateway`)",
            "stacks/web/compose.yaml:16:17: services.a.deploy.resources.limits.cpus: expected at least 0.01 cpus (the engine's minimum; leave it out for no limit)",
            "stacks/web/compose.yaml:17:19: services.a.deploy.resources.limits.memory: a memory limit below 6 MiB is refused by the engine (0 means none)",
            "stacks/web/compose.yaml:19:17: services.a.deploy.resources.reservations.cpus: expected at least 0.01 cpus (the engine's minimum; leave it out for no limit)",
            "stacks/web/compose.yaml:20:19: services.a.deploy.resources.reservations.memory: a memory reservation below 6 MiB is refused by the engine (0 means none)",
            "stacks/web/compose.yaml:22:16: services.a.ulimits.nofile: the soft limit is above the hard limit",
            "stacks/web/compose.yaml:23:14: services.a.ulimits.nproc: a ulimit cannot be negative (-1 means unlimited)",
            "stacks/web/compose.yaml:25:14: services.a.ulimits.core: the soft limit is above the hard limit",
            "stacks/web/compose.yaml:27:12: services.b.image: invalid image reference `busybox:1@sha256:abc`: a digest is `sha256:` and 64 lowercase hex digits",
            "stacks/web/compose.yaml:29:14: services.b.extra_hosts.cache: invalid address `not-an-ip` for extra host `cache` (expected an IP address or `host-gateway`)",
            "stacks/web/compose.yaml:33:17: services.b.deploy.resources.limits.cpus: expected at least 0.01 cpus (the engine's minimum; leave it out for no limit)",
            "stacks/web/compose.yaml:36:19: services.b.deploy.resources.reservations.memory: the memory reservation is above the memory limit",
        ]
    );
}

/// Convoy's own labels record ownership; one written by the user was silently overwritten on
/// containers, or ignored by drift.
#[test]
fn labels_in_convoys_namespace() {
    let compose = "services:\n  a:\n    image: x\n    labels:\n      convoy.fleet: other\n      convoyish: fine\n  b:\n    image: x\n    labels: [\"a=1\", \"convoy.slot=9\"]\n    networks: [n]\n    volumes: [v:/v]\nnetworks:\n  n:\n    labels: {convoy.resource: x}\nvolumes:\n  v:\n    labels: [convoy.stack=y]\n";
    assert_eq!(
        web_errs(compose),
        vec![
            "stacks/web/compose.yaml:5:7: services.a.labels.convoy.fleet: label `convoy.fleet` is in Convoy's own `convoy.` namespace: choose another name",
            "stacks/web/compose.yaml:9:21: services.b.labels[1]: label `convoy.slot` is in Convoy's own `convoy.` namespace: choose another name",
            "stacks/web/compose.yaml:14:14: networks.n.labels.convoy.resource: label `convoy.resource` is in Convoy's own `convoy.` namespace: choose another name",
            "stacks/web/compose.yaml:17:14: volumes.v.labels[0]: label `convoy.stack` is in Convoy's own `convoy.` namespace: choose another name",
        ]
    );
}

/// A NUL byte cut the fleet name short (`fleet: pro` from `fleet: pro\0d`); any character YAML
/// does not allow is refused, in the fleet file and in a compose file.
#[test]
fn characters_yaml_does_not_allow() {
    let e = errs(&[
        ("convoy.yaml", "fleet: pro\u{0}d\n"),
        (
            "stacks/web/compose.yaml",
            "services:\n  a:\n    image: x\n    command: \"a\u{7}b\"\n",
        ),
    ]);
    assert_eq!(
        e,
        vec![
            "convoy.yaml:1:11: invalid yaml: character U+0000 (a NUL byte) is not allowed in a yaml file",
            "stacks/web/compose.yaml:4:16: invalid yaml: character U+0007 is not allowed in a yaml file",
        ]
    );
}

/// `!include` and `!!binary` were dropped silently (the value read as a plain string); only
/// `!!str`, which makes a string of what it tags, is read.
#[test]
fn yaml_tags() {
    let e = web_errs("services:\n  a:\n    image: !include image.yaml\n    command: !!binary aGk=\n    labels: !custom\n      k: v\n    environment: !!map {A: !!str 1}\n    dns: !!seq [1.1.1.1]\n    user: ! 1000\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:3:21: services.a.image: yaml tag `!include` is not supported: write the value itself (only `!!str` is read)",
            "stacks/web/compose.yaml:4:23: services.a.command: yaml tag `!!binary` is not supported: write the value itself (only `!!str` is read)",
            "stacks/web/compose.yaml:6:8: services.a.labels: yaml tag `!custom` is not supported: write the value itself (only `!!str` is read)",
        ]
    );
    let e = errs(&[("convoy.yaml", "fleet: !!int 5\n")]);
    assert_eq!(
        e,
        vec!["convoy.yaml:1:14: fleet: yaml tag `!!int` is not supported: write the value itself (only `!!str` is read)"]
    );
}
