//! Tests of the whole reader through `load`, on in-memory repositories: every supported key,
//! the error kinds with their exact positions, and the repository-level rules.

use super::*;
use crate::spec::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tree(files: &[(&str, &str)]) -> MemoryTree {
    files
        .iter()
        .fold(MemoryTree::new(), |t, (p, c)| t.with(p, c))
}

fn ok_env(files: &[(&str, &str)], e: &[(&str, &str)]) -> DesiredState {
    match load(&tree(files), &env(e)) {
        Ok(s) => s,
        Err(errs) => panic!(
            "unexpected errors:\n{}",
            errs.0
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

fn ok(files: &[(&str, &str)]) -> DesiredState {
    ok_env(files, &[])
}

fn errs_env(files: &[(&str, &str)], e: &[(&str, &str)]) -> Vec<String> {
    match load(&tree(files), &env(e)) {
        Ok(_) => panic!("expected errors"),
        Err(errs) => errs.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn errs(files: &[(&str, &str)]) -> Vec<String> {
    errs_env(files, &[])
}

const FLEET: &str = "fleet: prod\n";

/// One stack `web` with the given compose text.
fn web(compose: &str) -> Vec<(&'static str, String)> {
    vec![
        ("convoy.yaml", FLEET.to_string()),
        ("stacks/web/compose.yaml", compose.to_string()),
    ]
}

fn files<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(p, c)| (*p, c.as_str())).collect()
}

fn service(compose: &str) -> ServiceSpec {
    let f = web(compose);
    let state = ok(&files(&f));
    state.stacks["web"]
        .services
        .values()
        .next()
        .unwrap()
        .clone()
}

fn web_errs(compose: &str) -> Vec<String> {
    errs(&files(&web(compose)))
}

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
                aliases: vec!["app".into()]
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
    let e = errs(&[("convoy.yaml", "hosts: {}\n")]);
    assert_eq!(e, vec!["convoy.yaml:1:1: fleet: missing `fleet: <id>`"]);
    let e = errs(&[("convoy.yaml", "fleet: 'a b'\n")]);
    assert_eq!(
        e,
        vec!["convoy.yaml:1:8: fleet: a fleet id is a non-empty string of letters, digits, `_`, `.` and `-`"]
    );
}

#[test]
fn yaml_syntax_error_is_located() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  app:\n    image: [a\n",
        ),
    ]);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("stacks/web/compose.yaml:4:1: invalid yaml:"),
        "{e:?}"
    );
    let e = errs(&[("convoy.yaml", "fleet: a\n  b: c\n")]);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("convoy.yaml:2:4: invalid yaml:"), "{e:?}");
}

#[test]
fn stacks_rules() {
    // No stacks at all is an error...
    let e = errs(&[("convoy.yaml", FLEET)]);
    assert_eq!(
        e,
        vec!["stacks: no stacks found under `stacks/`; write `stacks: []` in convoy.yaml to run none on purpose"]
    );
    // ...unless asked for explicitly.
    let s = ok(&[("convoy.yaml", "fleet: prod\nstacks: []\n")]);
    assert!(s.stacks.is_empty());
    // A listed folder must exist; only listed folders are read.
    let e = errs(&[
        ("convoy.yaml", "fleet: prod\nstacks: [web, missing]\n"),
        ("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n"),
        ("stacks/other/compose.yaml", "broken: ["),
    ]);
    assert_eq!(
        e,
        vec!["convoy.yaml:2:15: stacks: stack folder `stacks/missing` does not exist"]
    );
    // Two compose files in one folder; a folder with none.
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/web/compose.yaml", "services:\n  a:\n    image: x\n"),
        (
            "stacks/web/docker-compose.yml",
            "services:\n  a:\n    image: x\n",
        ),
        ("stacks/empty/README", "nothing"),
    ]);
    assert_eq!(
        e,
        vec![
            "stacks/empty: no compose file (expected `compose.yaml`, `compose.yml`, `docker-compose.yaml` or `docker-compose.yml`)",
            "stacks/web: more than one compose file (`compose.yaml`, `docker-compose.yml`); keep one",
        ]
    );
    // Other accepted file names, and `name:` overriding the folder.
    let s = ok(&[
        ("convoy.yaml", FLEET),
        ("stacks/a/compose.yml", "services:\n  a:\n    image: x\n"),
        (
            "stacks/B_Folder/docker-compose.yaml",
            "name: shop\nservices:\n  a:\n    image: x\n",
        ),
    ]);
    assert_eq!(s.stacks.keys().collect::<Vec<_>>(), vec!["a", "shop"]);
    assert_eq!(s.stacks["shop"].file, "stacks/B_Folder/docker-compose.yaml");
}

#[test]
fn duplicate_and_invalid_stack_names() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/one/compose.yaml",
            "name: shop\nservices:\n  a:\n    image: x\n",
        ),
        (
            "stacks/two/compose.yaml",
            "name: shop\nservices:\n  a:\n    image: x\n",
        ),
    ]);
    assert_eq!(
        e,
        vec![
            "stacks/two/compose.yaml: stack name `shop` is also used by `stacks/one/compose.yaml`"
        ]
    );
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/Web/compose.yaml", "services:\n  a:\n    image: x\n"),
    ]);
    assert_eq!(
        e,
        vec!["stacks/Web/compose.yaml: stack name `Web` is not valid: use lowercase letters, digits, `_` and `-`, starting with a letter or digit"]
    );
}

#[test]
fn one_broken_stack_among_good_ones() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/a/compose.yaml", "services:\n  a:\n    image: x\n"),
        (
            "stacks/b/compose.yaml",
            "services:\n  b:\n    image: x\n    restart: sometimes\n",
        ),
        ("stacks/c/compose.yaml", "services:\n  c:\n    image: x\n"),
    ]);
    assert_eq!(
        e,
        vec!["stacks/b/compose.yaml:4:14: services.b.restart: invalid restart policy `sometimes` (expected no, always, on-failure[:N] or unless-stopped)"]
    );
}

#[test]
fn errors_are_collected_across_files_and_sorted() {
    let e = errs(&[
        (
            "convoy.yaml",
            "fleet: prod\nhosts:\n  a:\n    address: nope\n",
        ),
        ("stacks/a/compose.yaml", "services:\n  a:\n    imgae: x\n"),
        (
            "stacks/b/compose.yaml",
            "services:\n  b:\n    image: x\n    build: .\n",
        ),
    ]);
    assert_eq!(
        e,
        vec![
            "convoy.yaml:4:14: hosts.a.address: expected `unix:///path/docker.sock` or `ssh://[user@]host[:port]`",
            "stacks/a/compose.yaml:2:3: services.a: missing `image`",
            "stacks/a/compose.yaml:3:5: services.a.imgae: unknown key, did you mean `image`?",
            "stacks/b/compose.yaml:4:5: services.b.build: `build` is not supported yet: build and push the image, then reference it by `image`",
        ]
    );
}
