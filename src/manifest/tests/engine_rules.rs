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
