//! Tests of the whole reader through `load`, on in-memory repositories: every supported key,
//! the error kinds with their exact positions, and the repository-level rules.

use super::*;
use crate::model::spec::*;

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

#[test]
fn full_service() {
    let compose = r#"
services:
  app:
    image: registry.example/app:1.2
    command: sh -c 'echo "hi there"'
    entrypoint: [/bin/tini, --]
    environment:
      - PLAIN=1
      - DB_PASSWORD=hunter2
      - FROM_ENV
      - NOT_SET
    ports:
      - "127.0.0.1:8080:80/udp"
      - 8081-8082:81-82
      - 90
      - target: 443
        published: 8443
        host_ip: 0.0.0.0
        protocol: tcp
        mode: host
    volumes:
      - data:/var/lib/data
      - /etc/app:/etc/app:ro
      - type: bind
        source: /srv/logs
        target: /logs
        read_only: true
      - type: volume
        source: data
        target: /cache
    labels:
      b: "2"
      a: "1"
    restart: on-failure:3
    healthcheck:
      test: curl -f http://localhost/
      interval: 1m30s
      timeout: 500ms
      start_period: 10s
      start_interval: 2us
      retries: 3
    depends_on:
      db:
        condition: service_healthy
        required: true
      cache:
        condition: service_started
    user: "1000:1000"
    working_dir: /app
    hostname: app
    stop_signal: SIGINT
    stop_grace_period: 1m
    cap_add: [NET_ADMIN, CHOWN, CHOWN]
    cap_drop: [ALL]
    read_only: true
    tmpfs:
      - /run:size=64m
      - /tmp
    init: true
    extra_hosts:
      - "b.example=10.0.0.2"
      - "a.example:10.0.0.1"
    dns: [9.9.9.9, 1.1.1.1]
    sysctls:
      net.core.somaxconn: 1024
    ulimits:
      nofile: {soft: 1024, hard: 2048}
      nproc: 512
    logging:
      driver: json-file
      options:
        max-size: 10m
    networks:
      front:
        aliases: [www, app]
      default:
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "0.5", memory: 512m, pids: 100}
        reservations: {cpus: 0.25, memory: 256m}
      placement:
        constraints: ["node.hostname==edge-1", "node.labels.zone != b"]
        preferences:
          - spread: node.labels.zone
        max_replicas_per_node: 2
      x-note: ignored
    x-convoy:
      hosts: [b, a]
    x-anything: ignored
  db:
    image: postgres:16
    deploy:
      mode: global
      restart_policy:
        condition: on-failure
        max_attempts: 5
  cache:
    image: redis
    restart: "no"
volumes:
  data:
    driver_opts: {type: none}
    labels: [team=core]
networks:
  front:
    driver: overlay
    internal: true
    labels: {tier: front}
x-shared: whatever
"#;
    let fleet = "fleet: prod\nhosts:\n  a:\n    address: ssh://a\n  b:\n    address: ssh://b\n";
    let s = ok_env(
        &[("convoy.yaml", fleet), ("stacks/web/compose.yaml", compose)],
        &[("FROM_ENV", "e")],
    );
    let stack = &s.stacks["web"];
    let app = &stack.services["app"];
    let c = &app.container;
    assert_eq!(c.image, "registry.example/app:1.2");
    assert_eq!(
        c.command,
        Some(vec!["sh".into(), "-c".into(), "echo \"hi there\"".into()])
    );
    assert_eq!(c.entrypoint, Some(vec!["/bin/tini".into(), "--".into()]));
    assert_eq!(
        c.env,
        env(&[
            ("PLAIN", "1"),
            ("DB_PASSWORD", "hunter2"),
            ("FROM_ENV", "e")
        ])
    );
    assert_eq!(app.secret_env, BTreeSet::from(["DB_PASSWORD".to_string()]));
    let port = |ip: &str, h: Option<u16>, c: u16, p: &str| PortBinding {
        host_ip: ip.into(),
        host_port: h,
        container_port: c,
        protocol: p.into(),
    };
    assert_eq!(
        c.ports,
        vec![
            port("", None, 90, "tcp"),
            port("", Some(8081), 81, "tcp"),
            port("", Some(8082), 82, "tcp"),
            port("0.0.0.0", Some(8443), 443, "tcp"),
            port("127.0.0.1", Some(8080), 80, "udp"),
        ]
    );
    let mount = |k: MountKind, s: &str, t: &str, ro: bool| MountSpec {
        kind: k,
        source: s.into(),
        target: t.into(),
        read_only: ro,
    };
    assert_eq!(
        c.mounts,
        vec![
            mount(MountKind::Volume, "web_data", "/cache", false),
            mount(MountKind::Bind, "/etc/app", "/etc/app", true),
            mount(MountKind::Bind, "/srv/logs", "/logs", true),
            mount(MountKind::Volume, "web_data", "/var/lib/data", false),
        ]
    );
    assert_eq!(c.labels, env(&[("a", "1"), ("b", "2")]));
    assert_eq!(
        c.restart,
        RestartPolicy {
            name: RestartName::OnFailure,
            max_attempts: Some(3)
        }
    );
    assert_eq!(
        c.healthcheck,
        Some(Healthcheck {
            test: vec!["CMD-SHELL".into(), "curl -f http://localhost/".into()],
            interval_ns: Some(90_000_000_000),
            timeout_ns: Some(500_000_000),
            retries: Some(3),
            start_period_ns: Some(10_000_000_000),
            start_interval_ns: Some(2_000),
        })
    );
    assert_eq!(
        app.depends_on,
        BTreeMap::from([
            ("cache".to_string(), DependsCondition::ServiceStarted),
            ("db".to_string(), DependsCondition::ServiceHealthy),
        ])
    );
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(c.working_dir.as_deref(), Some("/app"));
    assert_eq!(c.hostname.as_deref(), Some("app"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(c.stop_grace_period_secs, Some(60));
    assert_eq!(c.cap_add, vec!["CHOWN", "NET_ADMIN"]);
    assert_eq!(c.cap_drop, vec!["ALL"]);
    assert!(c.read_only);
    assert_eq!(c.tmpfs, env(&[("/run", "size=64m"), ("/tmp", "")]));
    assert_eq!(c.init, Some(true));
    assert_eq!(
        c.extra_hosts,
        vec!["a.example:10.0.0.1", "b.example:10.0.0.2"]
    );
    assert_eq!(c.dns, vec!["9.9.9.9", "1.1.1.1"]);
    assert_eq!(c.sysctls, env(&[("net.core.somaxconn", "1024")]));
    assert_eq!(
        c.ulimits,
        BTreeMap::from([
            (
                "nofile".to_string(),
                Ulimit {
                    soft: 1024,
                    hard: 2048
                }
            ),
            (
                "nproc".to_string(),
                Ulimit {
                    soft: 512,
                    hard: 512
                }
            ),
        ])
    );
    assert_eq!(
        c.logging,
        Some(Logging {
            driver: "json-file".into(),
            options: env(&[("max-size", "10m")])
        })
    );
    assert_eq!(
        c.networks,
        BTreeMap::from([
            (
                "web_default".to_string(),
                NetworkAttachment {
                    aliases: vec!["app".into()]
                }
            ),
            (
                "web_front".to_string(),
                NetworkAttachment {
                    aliases: vec!["app".into(), "www".into()]
                }
            ),
        ])
    );
    assert_eq!(app.replicas, 3);
    assert_eq!(c.nano_cpus, Some(500_000_000));
    assert_eq!(c.memory_bytes, Some(512 << 20));
    assert_eq!(c.pids_limit, Some(100));
    assert_eq!(c.memory_reservation_bytes, Some(256 << 20));
    assert_eq!(app.reserve_memory_bytes, Some(256 << 20));
    assert_eq!(app.reserve_nano_cpus, Some(250_000_000));
    assert_eq!(
        app.placement,
        Placement {
            hosts: Some(vec!["a".into(), "b".into()]),
            constraints: vec![
                Constraint {
                    attribute: ConstraintAttribute::Hostname,
                    equal: true,
                    value: "edge-1".into()
                },
                Constraint {
                    attribute: ConstraintAttribute::Label("zone".into()),
                    equal: false,
                    value: "b".into()
                },
            ],
            spread: vec!["zone".into()],
            max_replicas_per_node: Some(2),
        }
    );

    let db = &stack.services["db"];
    assert_eq!(db.mode, DeployMode::Global);
    assert_eq!(
        db.container.restart,
        RestartPolicy {
            name: RestartName::OnFailure,
            max_attempts: Some(5)
        }
    );
    assert_eq!(
        stack.services["cache"].container.restart.name,
        RestartName::No
    );
    assert!(stack.services["cache"].is_one_shot());

    assert_eq!(
        stack.volumes["data"],
        VolumeSpec {
            engine_name: "web_data".into(),
            driver: "local".into(),
            driver_opts: env(&[("type", "none")]),
            labels: env(&[("team", "core")]),
            external: false,
        }
    );
    assert_eq!(
        stack.networks["front"],
        NetworkSpec {
            engine_name: "web_front".into(),
            driver: "overlay".into(),
            internal: true,
            labels: env(&[("tier", "front")]),
            external: false,
        }
    );
    assert_eq!(stack.networks.len(), 2);
}

#[test]
fn alternative_syntaxes() {
    let s = service(
        "services:\n  app:\n    image: x\n    command: [a, 'b c']\n    environment:\n      A: 1\n      B:\n      C: 'x=y'\n    labels: [k=v, bare]\n    tmpfs: /run\n    dns: 8.8.8.8\n    extra_hosts:\n      h: 10.0.0.1\n    sysctls: [a.b=1]\n    depends_on: []\n    healthcheck:\n      test: [CMD, curl, -f, x]\n    deploy:\n      restart_policy:\n        condition: any\n",
    );
    let c = &s.container;
    assert_eq!(c.command, Some(vec!["a".into(), "b c".into()]));
    assert_eq!(c.env, env(&[("A", "1"), ("C", "x=y")]));
    assert_eq!(c.labels, env(&[("k", "v"), ("bare", "")]));
    assert_eq!(c.tmpfs, env(&[("/run", "")]));
    assert_eq!(c.dns, vec!["8.8.8.8"]);
    assert_eq!(c.extra_hosts, vec!["h:10.0.0.1"]);
    assert_eq!(c.sysctls, env(&[("a.b", "1")]));
    assert_eq!(
        c.healthcheck.as_ref().unwrap().test,
        vec!["CMD", "curl", "-f", "x"]
    );
    assert_eq!(c.restart.name, RestartName::Always);
    let s = service("services:\n  app:\n    image: x\n    healthcheck:\n      disable: true\n    deploy:\n      restart_policy:\n        condition: none\n");
    assert_eq!(s.container.healthcheck.unwrap().test, vec!["NONE"]);
    assert_eq!(s.container.restart.name, RestartName::No);
}

#[test]
fn equal_meaning_gives_equal_hash() {
    let a = service("services:\n  app:\n    image: x\n    cap_add: [B, A]\n    labels: {x: '1', y: '2'}\n    ports: ['81:81', '80:80']\n");
    let b = service("services:\n  app:\n    image: x\n    cap_add: [A, B]\n    labels: [y=2, x=1]\n    ports:\n      - 80:80\n      - published: 81\n        target: 81\n");
    assert_eq!(a.container, b.container);
    assert_eq!(a.container.hash(), b.container.hash());
}

#[test]
fn interpolation_forms() {
    let compose = "services:\n  app:\n    image: ${IMAGE}:$TAG\n    environment:\n      A: ${UNSET:-dflt}\n      B: ${EMPTY-kept}\n      C: ${EMPTY:-fallback}\n      D: ${SET:+alt}\n      E: ${UNSET+alt}x\n      F: $$HOME\n      G: ${UNSET:-${TAG}}\n      H: ${UNSET}\n      I: ${FROM_DOTENV}\n      J: ${OVERRIDDEN}\n    deploy:\n      replicas: ${N}\n";
    let s = ok_env(
        &[
            ("convoy.yaml", FLEET),
            ("stacks/web/compose.yaml", compose),
            ("stacks/web/.env", "FROM_DOTENV=dot\nOVERRIDDEN=dot\nN=3\n"),
        ],
        &[
            ("IMAGE", "nginx"),
            ("TAG", "1.25"),
            ("EMPTY", ""),
            ("SET", "yes"),
            ("OVERRIDDEN", "env"),
        ],
    );
    let app = &s.stacks["web"].services["app"];
    assert_eq!(app.container.image, "nginx:1.25");
    assert_eq!(
        app.container.env,
        env(&[
            ("A", "dflt"),
            ("B", ""),
            ("C", "fallback"),
            ("D", "alt"),
            ("E", "x"),
            ("F", "$HOME"),
            ("G", "1.25"),
            ("H", ""),
            ("I", "dot"),
            ("J", "env"),
        ])
    );
    assert_eq!(app.replicas, 3);
}

#[test]
fn interpolation_errors_are_located() {
    let compose = "services:\n  app:\n    image: x\n    environment:\n      A: ${NEEDED:?set it in .env}\n      B: ${NEEDED?}\n      C: \"${oops\"\n      D: ${1x}\n";
    let e = web_errs(compose);
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:10: services.app.environment.A: required variable `NEEDED` is missing a value: set it in .env",
            "stacks/web/compose.yaml:6:10: services.app.environment.B: required variable `NEEDED` is missing a value",
            "stacks/web/compose.yaml:7:10: services.app.environment.C: invalid interpolation format: `${` is never closed",
            "stacks/web/compose.yaml:8:10: services.app.environment.D: invalid interpolation format: `${` must be followed by a variable name",
        ]
    );
    // Keys are never interpolated, and convoy.yaml is read as written.
    let s = service("services:\n  app:\n    image: x\n    labels:\n      $KEY: v\n");
    assert_eq!(s.container.labels, env(&[("$KEY", "v")]));
}

#[test]
fn env_file_values_are_secret() {
    let compose = "services:\n  app:\n    image: x\n    env_file:\n      - app.env\n      - path: ../shared/extra.env\n        required: true\n      - path: optional.env\n        required: false\n    environment:\n      OVERRIDE: from-environment\n      API_TOKEN: t\n";
    // `stacks/shared` holds no compose file: list the stacks so it is not read as one.
    let s = ok(&[
        ("convoy.yaml", "fleet: prod\nstacks: [web]\n"),
        ("stacks/web/compose.yaml", compose),
        (
            "stacks/web/app.env",
            "DB_URL=postgres://u:p@db/x\nOVERRIDE=from-file\n",
        ),
        ("stacks/shared/extra.env", "# shared\nREGION=eu\n"),
    ]);
    let app = &s.stacks["web"].services["app"];
    assert_eq!(
        app.container.env,
        env(&[
            ("DB_URL", "postgres://u:p@db/x"),
            ("OVERRIDE", "from-environment"),
            ("REGION", "eu"),
            ("API_TOKEN", "t"),
        ])
    );
    assert_eq!(
        app.secret_env,
        ["API_TOKEN", "DB_URL", "OVERRIDE", "REGION"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    // A string env_file; a missing one; a broken one (the message never shows the contents).
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/web/compose.yaml", "services:\n  app:\n    image: x\n    env_file: missing.env\n  b:\n    image: x\n    env_file: bad.env\n"),
        ("stacks/web/bad.env", "GOOD=1\nSECRET='supersecret\n"),
    ]);
    assert_eq!(
        e,
        vec![
            "stacks/web/bad.env:2:1: unterminated single quote",
            "stacks/web/compose.yaml:4:15: services.app.env_file: env file `stacks/web/missing.env` not found",
        ]
    );
    assert!(!e.iter().any(|m| m.contains("supersecret")));
}

#[test]
fn anchors_and_merge_keys_keep_positions() {
    let compose = "x-base: &base\n  image: busybox\n  restart: always\n  deploy:\n    replicsa: 2\nservices:\n  a:\n    <<: *base\n    restart: \"no\"\n  b:\n    <<: [*base]\n    image: other\n";
    let e = web_errs(compose);
    // The error inside the anchored map is reported where it is written, once per use.
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:5: services.a.deploy.replicsa: unknown key, did you mean `replicas`?",
            "stacks/web/compose.yaml:5:5: services.b.deploy.replicsa: unknown key, did you mean `replicas`?",
        ]
    );
    let compose = "x-base: &base\n  image: busybox\n  restart: always\nservices:\n  a:\n    <<: *base\n    restart: \"no\"\n  b:\n    <<: [*base]\n    image: other\n  c: *base\n";
    let s = ok(&files(&web(compose)));
    let svc = &s.stacks["web"].services;
    assert_eq!(svc["a"].container.image, "busybox");
    assert_eq!(svc["a"].container.restart.name, RestartName::No);
    assert_eq!(svc["b"].container.image, "other");
    assert_eq!(svc["b"].container.restart.name, RestartName::Always);
    assert_eq!(svc["c"].container.image, "busybox");
    // Duplicate keys are errors; a bad merge value too.
    let e =
        web_errs("services:\n  a:\n    image: x\n    image: y\n  b:\n    <<: 3\n    image: z\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:5: services.a.image: duplicate key (first written at line 3)",
            "stacks/web/compose.yaml:6:9: services.b.<<: a merge key `<<` takes a map or a list of maps",
        ]
    );
}

#[test]
fn unknown_keys_suggest_the_nearest() {
    let e = web_errs("servics:\n  a:\n    image: x\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml: no `services:` in the compose file",
            "stacks/web/compose.yaml:1:1: servics: unknown key, did you mean `services`?",
        ]
    );
    let e = web_errs("services:\n  a:\n    image: x\n    enviroment: {}\n    deploy:\n      replicsa: 2\n      resources:\n        limits:\n          memroy: 1g\n    frobnicate: 1\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:5: services.a.enviroment: unknown key, did you mean `environment`?",
            "stacks/web/compose.yaml:6:7: services.a.deploy.replicsa: unknown key, did you mean `replicas`?",
            "stacks/web/compose.yaml:9:11: services.a.deploy.resources.limits.memroy: unknown key, did you mean `memory`?",
            "stacks/web/compose.yaml:10:5: services.a.frobnicate: unknown key",
        ]
    );
}

#[test]
fn unsupported_keys_at_every_level() {
    let e = web_errs("secrets: {}\nconfigs: {}\ninclude: []\nx-convoy: {}\nservices:\n  a:\n    image: x\n    container_name: a\n    scale: 2\n    privileged: true\n    deploy:\n      update_config: {}\n      restart_policy:\n        delay: 5s\n    healthcheck:\n      test: x\n    volumes:\n      - type: bind\n        source: /x\n        target: /y\n        bind:\n          propagation: rshared\n    ports:\n      - target: 80\n        app_protocol: http\n    depends_on:\n      b:\n        condition: service_started\n        restart: true\n  b:\n    image: x\n    x-convoy:\n      hosts: [local]\n      zone: a\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:1:1: secrets: `secrets` is not supported yet: use environment variables or a bind mount",
            "stacks/web/compose.yaml:2:1: configs: `configs` is not supported yet: use environment variables or a bind mount",
            "stacks/web/compose.yaml:3:1: include: `include` is not supported yet: put the services in this file",
            "stacks/web/compose.yaml:4:1: x-convoy: `x-convoy` is only supported at the service level",
            "stacks/web/compose.yaml:8:5: services.a.container_name: `container_name` is not supported yet: Convoy names containers `<stack>-<service>-<slot>`",
            "stacks/web/compose.yaml:9:5: services.a.scale: `scale` is not supported yet: use `deploy.replicas`",
            "stacks/web/compose.yaml:10:5: services.a.privileged: `privileged` is not supported yet: use `cap_add` for the capabilities the service needs",
            "stacks/web/compose.yaml:12:7: services.a.deploy.update_config: `update_config` is not supported yet",
            "stacks/web/compose.yaml:14:9: services.a.deploy.restart_policy.delay: `delay` is not supported yet",
            "stacks/web/compose.yaml:22:11: services.a.volumes[0].bind.propagation: `propagation` is not supported yet",
            "stacks/web/compose.yaml:25:9: services.a.ports[0].app_protocol: `app_protocol` is not supported yet",
            "stacks/web/compose.yaml:29:9: services.a.depends_on.b.restart: `restart` is not supported yet",
            "stacks/web/compose.yaml:34:7: services.b.x-convoy.zone: unknown key",
        ]
    );
}

#[test]
fn mount_rules() {
    let e = web_errs("services:\n  a:\n    image: x\n    volumes:\n      - ./data:/data\n      - ~/x:/x\n      - type: bind\n        source: ../up\n        target: /up\n      - undeclared:/u\n      - /anon\n      - /a:/same\n      - /b:/same\n      - /c:/c:z\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:9: services.a.volumes[0]: relative bind-mount source `./data` is not supported: the hosts do not have the repository; use an absolute path or a named volume",
            "stacks/web/compose.yaml:6:9: services.a.volumes[1]: relative bind-mount source `~/x` is not supported: the hosts do not have the repository; use an absolute path or a named volume",
            "stacks/web/compose.yaml:7:9: services.a.volumes[2]: relative bind-mount source `../up` is not supported: the hosts do not have the repository; use an absolute path or a named volume",
            "stacks/web/compose.yaml:10:9: services.a.volumes[3]: volume `undeclared` is not declared in the top-level `volumes`",
            "stacks/web/compose.yaml:11:9: services.a.volumes[4]: anonymous volumes are not supported yet: declare a named volume in the top-level `volumes`",
            "stacks/web/compose.yaml:13:9: services.a.volumes[6]: `/same` is mounted twice",
            "stacks/web/compose.yaml:14:9: services.a.volumes[7]: volume option `z` is not supported yet",
        ]
    );
    // Named and external volumes keep their names.
    let s = ok(&files(&web("services:\n  a:\n    image: x\n    volumes: [n:/n, e:/e]\nvolumes:\n  n:\n    name: custom\n  e:\n    external: true\n")));
    let st = &s.stacks["web"];
    assert_eq!(st.volumes["n"].engine_name, "custom");
    assert_eq!(st.volumes["e"].engine_name, "e");
    assert!(st.volumes["e"].external);
    let m: Vec<&str> = st.services["a"]
        .container
        .mounts
        .iter()
        .map(|m| m.source.as_str())
        .collect();
    assert_eq!(m, vec!["e", "custom"]);
}

#[test]
fn duplicate_host_ports() {
    let e = web_errs("services:\n  a:\n    image: x\n    ports:\n      - 8080:80\n      - 127.0.0.1:8080:81\n      - 8080:80/udp\n  b:\n    image: x\n    ports:\n      - published: 8080\n        target: 80\n      - 9000:90\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:6:9: services.a.ports[1]: host port 127.0.0.1:8080/tcp is published twice by this service",
            "stacks/web/compose.yaml:11:9: services.b.ports[0]: host port 8080/tcp is also published by service `a`",
        ]
    );
}

#[test]
fn invalid_values_and_types() {
    let e = web_errs("services:\n  a:\n    image: x\n    ports: 80\n    deploy:\n      replicas: many\n      mode: spread\n    read_only: maybe\n    stop_grace_period: 10\n    environment: 3\n    depends_on: [ghost]\n    networks: [back]\n    healthcheck:\n      test: [echo]\n    cap_add: NET_ADMIN\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:12: services.a.ports: expected a list, found a number",
            "stacks/web/compose.yaml:6:17: services.a.deploy.replicas: expected an integer, found a string",
            "stacks/web/compose.yaml:7:13: services.a.deploy.mode: invalid mode `spread` (expected replicated or global)",
            "stacks/web/compose.yaml:8:16: services.a.read_only: expected a boolean, found a string",
            "stacks/web/compose.yaml:9:24: services.a.stop_grace_period: invalid duration `10` (expected e.g. `30s`, `1m30s`, `500ms`)",
            "stacks/web/compose.yaml:10:18: services.a.environment: expected a list or a map, found a number",
            "stacks/web/compose.yaml:11:18: services.a.depends_on[0]: depends on unknown service `ghost`",
            "stacks/web/compose.yaml:12:16: services.a.networks[0]: network `back` is not declared in the top-level `networks`",
            "stacks/web/compose.yaml:14:14: services.a.healthcheck.test: a test list starts with `CMD`, `CMD-SHELL` or `NONE`",
            "stacks/web/compose.yaml:15:14: services.a.cap_add: expected a list of strings, found a string",
        ]
    );
}

#[test]
fn x_convoy_hosts_must_exist() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  a:\n    image: x\n    x-convoy:\n      hosts: [local, edge-9]\n",
        ),
    ]);
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:5:22: services.a.x-convoy.hosts[1]: unknown host `edge-9` (not in convoy.yaml)"]
    );
}

#[test]
fn dependency_cycles_are_errors() {
    let e = web_errs("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n  c:\n    image: x\n    depends_on: [c]\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:18: services.a.depends_on[0]: dependency cycle: a -> b -> a",
            "stacks/web/compose.yaml:7:18: services.b.depends_on[0]: dependency cycle: b -> a -> b",
            "stacks/web/compose.yaml:10:18: services.c.depends_on[0]: a service cannot depend on itself",
        ]
    );
}

#[test]
fn hostile_input_does_not_panic() {
    let deep = "[".repeat(10_000);
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    for text in [
        deep.as_str(),
        bomb,
        "\u{0}",
        "services: [",
        "- a\n- b\n",
        "--- a\n--- b\n",
        "? [a]\n: b\n",
    ] {
        let _ = load(
            &tree(&[("convoy.yaml", FLEET), ("stacks/web/compose.yaml", text)]),
            &BTreeMap::new(),
        );
        let _ = load(&tree(&[("convoy.yaml", text)]), &BTreeMap::new());
    }
}

#[test]
fn required_message_is_not_expanded() {
    let e = errs_env(
        &files(&web("services:\n  a:\n    image: ${IMG:?${DB_PASSWORD}}\n")),
        &[("DB_PASSWORD", "hunter2")],
    );
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:3:12: services.a.image: required variable `IMG` is missing a value: ${DB_PASSWORD}"]
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

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let deep = format!("{}x{}", "${A:-".repeat(20_000), "}".repeat(20_000));
    let compose = format!("services:\n  app:\n    image: busybox\n    command: \"{deep}\"\n");
    let errs = load(
        &tree(&[
            ("convoy.yaml", "fleet: t\n"),
            ("stacks/web/compose.yaml", &compose),
        ]),
        &env(&[]),
    )
    .expect_err("too deep");
    assert!(
        errs.0[0].message.contains("nested more than"),
        "{:?}",
        errs.0
    );
}

#[test]
fn interpolation_errors_do_not_quote_what_may_be_a_secret() {
    let errs = load(
        &tree(&[
            ("convoy.yaml", "fleet: t\n"),
            (
                "stacks/web/compose.yaml",
                "services:\n  app:\n    image: busybox\n    env_file: app.env\n",
            ),
            ("stacks/web/app.env", "DB_PASSWORD=pa${ss!w0rd}\n"),
        ]),
        &env(&[]),
    )
    .expect_err("malformed");
    let text = format!("{:?}", errs.0);
    assert!(!text.contains("ss!w0rd"), "{text}");
    assert!(text.contains("app.env"), "{text}");
}

#[test]
fn values_of_secret_variables_are_collected_for_masking() {
    let d = ok_env(
        &[
            ("convoy.yaml", "fleet: t\n"),
            ("stacks/web/.env", "REDIS_PASSWORD=hunter2secret\nPORT=6379\n"),
            (
                "stacks/web/compose.yaml",
                "services:\n  app:\n    image: busybox\n    command: redis-server --requirepass ${REDIS_PASSWORD} --port ${PORT}\n    environment:\n      API_TOKEN: tok-123456\n",
            ),
        ],
        &[],
    );
    assert!(d.secret_values.contains("hunter2secret"));
    assert!(d.secret_values.contains("tok-123456"));
    assert!(!d.secret_values.contains("6379"));
    assert_eq!(
        crate::model::spec::mask_secrets(
            "--requirepass hunter2secret --port 6379",
            &d.secret_values
        ),
        "--requirepass (secret) --port 6379"
    );
}
