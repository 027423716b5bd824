//! The errors in a Compose file, with their exact positions and messages: unknown keys with
//! the nearest valid key, keys not supported yet at every level, mount rules, clashing host
//! ports, invalid values and types, unknown `x-convoy` hosts, and dependency cycles.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

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
    let e = web_errs("secrets: {}\nconfigs: {}\ninclude: []\nx-convoy: {}\nservices:\n  a:\n    image: x\n    container_name: a\n    scale: 2\n    privileged: true\n    deploy:\n      endpoint_mode: vip\n      restart_policy:\n        delay: 5s\n    healthcheck:\n      test: x\n    volumes:\n      - type: bind\n        source: /x\n        target: /y\n        bind:\n          propagation: rshared\n    ports:\n      - target: 80\n        name: web\n    depends_on:\n      b:\n        condition: service_started\n        restart: true\n  b:\n    image: x\n    x-convoy:\n      hosts: [local]\n      zone: a\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:1: x-convoy: `x-convoy` is only supported at the service level",
            "stacks/web/compose.yaml:8:21: services.a.container_name: invalid container name `a`: Docker names start with a letter or digit and go on with letters, digits, `_`, `.` or `-` (two characters at least)",
            "stacks/web/compose.yaml:12:7: services.a.deploy.endpoint_mode: `endpoint_mode` is not supported yet: a Swarm load-balancing mode: on a network the service name resolves to every replica, which is what `dnsrr` means; remove it",
            "stacks/web/compose.yaml:22:11: services.a.volumes[0].bind.propagation: `propagation` is not supported yet: bind mounts use the engine's default propagation (rprivate)",
            "stacks/web/compose.yaml:25:9: services.a.ports[0].name: `name` is not supported yet: a port's name is metadata for tools Convoy does not run; remove it",
            "stacks/web/compose.yaml:34:7: services.b.x-convoy.zone: unknown key",
        ]
    );
}

#[test]
fn mount_rules() {
    let e = web_errs("services:\n  a:\n    image: x\n    volumes:\n      - ./data:/data:ro\n      - ~/x:/x\n      - type: bind\n        source: ../../../up\n        target: /up\n      - undeclared:/u\n      - /anon\n      - /a:/same\n      - /b:/same\n      - /c:/c:z,cached\n      - /d:/d:nocopy\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:9: services.a.volumes[0]: `./data` (`stacks/web/data`) does not exist in the repository (the in-memory repository) or is an empty folder",
            "stacks/web/compose.yaml:6:9: services.a.volumes[1]: `~/x` is in a home folder, outside the repository: only files of the repository are shipped",
            "stacks/web/compose.yaml:7:9: services.a.volumes[2]: `../../../up` leads outside the repository: only files of the repository are shipped",
            "stacks/web/compose.yaml:10:9: services.a.volumes[3]: volume `undeclared` is not declared in the top-level `volumes`",
            "stacks/web/compose.yaml:13:9: services.a.volumes[6]: `/same` is mounted twice",
            "stacks/web/compose.yaml:15:9: services.a.volumes[8]: volume option `nocopy` is not supported yet",
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
    // Each cycle once, at the first edge of its lowest-named service.
    let e = web_errs("services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n  c:\n    image: x\n    depends_on: [c]\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:18: services.a.depends_on[0]: dependency cycle: a -> b -> a",
            "stacks/web/compose.yaml:10:18: services.c.depends_on[0]: a service cannot depend on itself",
        ]
    );
    // A longer cycle behind a chain, and one sharing nothing with it; edges out of a cycle and
    // into it are not part of it.
    let e = web_errs("services:\n  a:\n    image: x\n    depends_on: [x, d]\n  d:\n    image: x\n    depends_on: [e]\n  e:\n    image: x\n    depends_on: [f, z]\n  f:\n    image: x\n    depends_on: [d]\n  x:\n    image: x\n  y:\n    image: x\n    depends_on: [z]\n  z:\n    image: x\n    depends_on:\n      y:\n        condition: service_started\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:7:18: services.d.depends_on[0]: dependency cycle: d -> e -> f -> d",
            "stacks/web/compose.yaml:18:18: services.y.depends_on[0]: dependency cycle: y -> z -> y",
        ]
    );
}

#[test]
fn service_healthy_needs_a_healthcheck_on_the_dependency() {
    let e = web_errs("services:\n  app:\n    image: x\n    depends_on:\n      none: {condition: service_healthy}\n      off: {condition: service_healthy}\n      never: {condition: service_healthy}\n      own: {condition: service_healthy}\n      image: {condition: service_healthy}\n      started: {condition: service_started}\n  none:\n    image: x\n  off:\n    image: x\n    healthcheck: {disable: true}\n  never:\n    image: x\n    healthcheck: {test: [NONE]}\n  own:\n    image: x\n    healthcheck: {test: [CMD, 'true']}\n  image:\n    image: x\n    healthcheck: {}\n  started:\n    image: x\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:7: services.app.depends_on.none: `service_healthy` needs a healthcheck, and service `none` declares no healthcheck: declare one under its `healthcheck` (`healthcheck: {}` keeps the image's)",
            "stacks/web/compose.yaml:6:7: services.app.depends_on.off: `service_healthy` needs a healthcheck, and service `off` has its healthcheck disabled: declare one under its `healthcheck` (`healthcheck: {}` keeps the image's)",
            "stacks/web/compose.yaml:7:7: services.app.depends_on.never: `service_healthy` needs a healthcheck, and service `never` has its healthcheck disabled: declare one under its `healthcheck` (`healthcheck: {}` keeps the image's)",
        ]
    );
}

#[test]
fn aliases_that_multiply_text_are_refused() {
    // 16 KiB of text, aliased 10 x 10 x 10 times: 160 MB if expanded; a 17 KB file.
    let big = "x".repeat(16 << 10);
    let y = format!(
        "x-a: &a \"{big}\"\nx-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nx-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nx-d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\nservices:\n  a:\n    image: x\n"
    );
    let e = web_errs(&y);
    assert!(
        e.iter()
            .any(|m| m.contains("alias expansion makes the document too large")),
        "{e:?}"
    );
}

#[test]
fn a_service_may_not_take_a_mesh_name() {
    let e = web_errs("services:\n  convoy-mesh.h1:\n    image: x\n  convoy-mesh-2.local:\n    image: x\n  convoy-mesh:\n    image: x\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:2:3: services.convoy-mesh.h1: `convoy-mesh.<host>` names Convoy's discovery mesh of the stack on that host; rename the service",
            "stacks/web/compose.yaml:4:3: services.convoy-mesh-2.local: `convoy-mesh.<host>` names Convoy's discovery mesh of the stack on that host; rename the service",
        ]
    );
}
