//! The Compose keys of issue 9 that reach the engine's host config: `deploy.restart_policy`
//! with `restart` (and where they disagree), `depends_on.<svc>.restart`, `network_mode`,
//! `platform`, `gpus` and `deploy.resources.reservations.devices`.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

fn restart_of(compose: &str) -> RestartPolicy {
    service(compose).container.restart
}

#[test]
fn restart_policy_maps_onto_the_engine_policy() {
    let p = |name, max| RestartPolicy {
        name,
        max_attempts: max,
    };
    let rp = |body: &str| {
        restart_of(&format!(
            "services:\n  a:\n    image: x\n    deploy:\n      restart_policy:\n{body}"
        ))
    };
    assert_eq!(rp("        condition: none\n"), p(RestartName::No, None));
    assert_eq!(
        rp("        condition: on-failure\n        max_attempts: 3\n"),
        p(RestartName::OnFailure, Some(3))
    );
    assert_eq!(
        rp("        condition: on-failure\n"),
        p(RestartName::OnFailure, None)
    );
    // `any` is `restart: always`, as it always was; Swarm's default condition is `any`.
    assert_eq!(rp("        condition: any\n"), p(RestartName::Always, None));
    assert_eq!(rp("        x-note: 1\n"), p(RestartName::Always, None));
}

#[test]
fn restart_and_restart_policy_that_agree_load() {
    let both = |restart: &str, body: &str| {
        restart_of(&format!(
            "services:\n  a:\n    image: x\n    restart: {restart}\n    deploy:\n      restart_policy:\n{body}"
        ))
    };
    assert_eq!(
        both("always", "        condition: any\n").name,
        RestartName::Always
    );
    // `any` restarts whatever the exit: `unless-stopped` says that too, and more precisely.
    assert_eq!(
        both("unless-stopped", "        condition: any\n").name,
        RestartName::UnlessStopped
    );
    assert_eq!(
        both("\"no\"", "        condition: none\n").name,
        RestartName::No
    );
    assert_eq!(
        both(
            "on-failure:2",
            "        condition: on-failure\n        max_attempts: 2\n"
        ),
        RestartPolicy {
            name: RestartName::OnFailure,
            max_attempts: Some(2)
        }
    );
}

#[test]
fn restart_and_restart_policy_that_disagree_are_located() {
    let e = web_errs(
        "services:\n  a:\n    image: x\n    restart: always\n    deploy:\n      restart_policy:\n        condition: none\n  b:\n    image: x\n    restart: on-failure:2\n    deploy:\n      restart_policy:\n        condition: on-failure\n        max_attempts: 3\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:7:9: services.a.deploy.restart_policy: `condition: none` disagrees with `restart: always` (line 4): remove one of them, or make them say the same",
            "stacks/web/compose.yaml:13:9: services.b.deploy.restart_policy: `condition: on-failure, max_attempts: 3` disagrees with `restart: on-failure:2` (line 10): remove one of them, or make them say the same",
        ]
    );
}

/// `delay` and `window` are accepted and left to the engine's own back-off: the spec (so the
/// hash) is what it is without them; a bad duration is still a located error.
#[test]
fn restart_policy_delay_and_window_are_accepted_and_left_to_the_engine() {
    let with = service(
        "services:\n  web:\n    image: x\n    deploy:\n      restart_policy:\n        condition: on-failure\n        max_attempts: 3\n        delay: 5s\n        window: 120s\n",
    );
    let without = service(
        "services:\n  web:\n    image: x\n    deploy:\n      restart_policy:\n        condition: on-failure\n        max_attempts: 3\n",
    );
    assert_eq!(with.container, without.container);
    let e = web_errs(
        "services:\n  a:\n    image: x\n    deploy:\n      restart_policy:\n        delay: soon\n        window: [1]\n",
    );
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(
        e[0].starts_with("stacks/web/compose.yaml:6:16: services.a.deploy.restart_policy.delay: "),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("stacks/web/compose.yaml:7:18: services.a.deploy.restart_policy.window: "),
        "{}",
        e[1]
    );
}

#[test]
fn depends_on_restart_is_read_per_dependency() {
    let s = service(
        "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        condition: service_started\n        restart: false\n  b:\n    image: x\n",
    );
    assert!(s.depends_on.contains_key("b"));
    assert!(s.restart_with.is_empty());
    let st = ok(&files(&web(
        "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        restart: true\n      c:\n        condition: service_started\n  b:\n    image: x\n  c:\n    image: x\n",
    )));
    let a = &st.stacks["web"].services["a"];
    assert_eq!(a.restart_with.iter().collect::<Vec<_>>(), ["b"]);
    assert_eq!(a.depends_on.len(), 2);
    let e = web_errs(
        "services:\n  a:\n    image: x\n    depends_on:\n      b:\n        restart: maybe\n  b:\n    image: x\n",
    );
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:6:18: services.a.depends_on.b.restart: expected a boolean, found a string"]
    );
}

#[test]
fn network_mode_host_and_none_join_no_network() {
    let f = web(
        "services:\n  h:\n    image: x\n    network_mode: host\n  n:\n    image: x\n    network_mode: none\n    expose: [80]\n",
    );
    let state = ok(&files(&f));
    let stack = &state.stacks["web"];
    let h = &stack.services["h"].container;
    assert_eq!(h.network_mode.as_deref(), Some("host"));
    assert!(h.networks.is_empty());
    let n = &stack.services["n"].container;
    assert_eq!(n.network_mode.as_deref(), Some("none"));
    assert!(n.networks.is_empty());
    // No service is on the default network, so the stack does not create it.
    assert!(stack.networks.is_empty(), "{:?}", stack.networks);
}

#[test]
fn network_mode_errors_are_located() {
    let e = web_errs(
        "services:\n  a:\n    image: x\n    network_mode: host\n    networks: [default]\n    ports: [\"80:80\"]\n  b:\n    image: x\n    network_mode: service:a\n  c:\n    image: x\n    network_mode: container:db\n  d:\n    image: x\n    network_mode: bridge\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:5: services.a.networks: `networks` cannot be used with `network_mode: host`: the container joins no network",
            "stacks/web/compose.yaml:6:5: services.a.ports: `ports` cannot be used with `network_mode: host`: the container has no ports of its own to publish",
            "stacks/web/compose.yaml:15:19: services.d.network_mode: invalid network mode `bridge` (expected host, none, service:<name> or container:<name>; attach networks with `networks`)",
        ]
    );
}

#[test]
fn platform_is_read_and_checked() {
    let s = service("services:\n  a:\n    image: x\n    platform: linux/arm64/v8\n");
    assert_eq!(s.container.platform.as_deref(), Some("linux/arm64/v8"));
    let e = web_errs(
        "services:\n  a:\n    image: x\n    platform: amd64\n  b:\n    image: x\n    platform: Linux/AMD64\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:15: services.a.platform: invalid platform `amd64` (expected os/arch or os/arch/variant, such as linux/amd64)",
            "stacks/web/compose.yaml:7:15: services.b.platform: invalid platform `Linux/AMD64` (expected os/arch or os/arch/variant, such as linux/amd64)",
        ]
    );
}

fn req(driver: &str, count: i64, ids: &[&str], caps: &[&str]) -> DeviceRequest {
    DeviceRequest {
        driver: driver.into(),
        count,
        device_ids: ids.iter().map(|s| s.to_string()).collect(),
        capabilities: caps.iter().map(|s| s.to_string()).collect(),
        options: BTreeMap::new(),
    }
}

#[test]
fn gpus_and_reserved_devices_become_device_requests() {
    let s = service("services:\n  a:\n    image: x\n    gpus: all\n");
    assert_eq!(s.container.device_requests, [req("", -1, &[], &["gpu"])]);

    // `gpus` written before `deploy`: the reservations still come first, as Compose orders them.
    let s = service(
        "services:\n  a:\n    image: x\n    gpus:\n      - driver: nvidia\n        count: 2\n        capabilities: [utility]\n      - device_ids: [\"0\", \"3\"]\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - capabilities: [gpu, compute]\n              driver: nvidia\n              options: {virtualization: \"false\"}\n            - capabilities: [tpu]\n              count: all\n",
    );
    let mut with_opts = req("nvidia", -1, &[], &["compute", "gpu"]);
    with_opts
        .options
        .insert("virtualization".into(), "false".into());
    assert_eq!(
        s.container.device_requests,
        [
            with_opts,
            req("", -1, &[], &["tpu"]),
            req("nvidia", 2, &[], &["gpu", "utility"]),
            req("", 0, &["0", "3"], &["gpu"]),
        ]
    );
}

#[test]
fn device_request_errors_are_located() {
    let e = web_errs(
        "services:\n  a:\n    image: x\n    gpus: some\n  b:\n    image: x\n    gpus:\n      - count: 1\n        device_ids: [\"0\"]\n      - count: 0\n      - ids: [\"1\"]\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:11: services.a.gpus: invalid gpus `some` (expected `all` or a list)",
            "stacks/web/compose.yaml:8:16: services.b.gpus[0].count: `count` and `device_ids` cannot both be set",
            "stacks/web/compose.yaml:10:16: services.b.gpus[1].count: invalid count 0 (expected a positive number or `all`)",
            "stacks/web/compose.yaml:11:9: services.b.gpus[2].ids: unknown key",
            "stacks/web/compose.yaml:16:15: services.b.deploy.resources.reservations.devices[0]: missing `capabilities` (for example `[gpu]`)",
        ]
    );
}
