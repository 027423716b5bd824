//! Services as read: every supported key in one full service, the alternative syntaxes of the
//! same meaning (which must give an equal spec and an equal hash), and YAML anchors and merge
//! keys, whose errors keep the position where they are written.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

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
    healthcheck:
      test: [CMD, pg_isready]
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
                    aliases: vec!["app".into()],
                    ..Default::default()
                }
            ),
            (
                "web_front".to_string(),
                NetworkAttachment {
                    aliases: vec!["app".into(), "www".into()],
                    ..Default::default()
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
            ..Default::default()
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
