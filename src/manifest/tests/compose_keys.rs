//! The Compose keys that need no file shipping, added for Compose files as people write them:
//! `expose`, the older resource keys (`mem_limit`, `memswap_limit`, `mem_reservation`, `cpus`,
//! `cpu_shares`), `security_opt`, `devices`, `ipc`, `pid`, `runtime`, `pull_policy`,
//! `container_name`, the older
//! `external: {name: x}`, the lifecycle hooks (`post_start`, `pre_stop`; `pre_start` in
//! `compose_prestart.rs`), and a `build`-only service.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

#[test]
fn engine_options_are_read_in_normal_form() {
    let s = service(
        "services:\n  web:\n    image: x\n    expose: [\"9000\", 80, \"53/udp\", \"7000-7001\", \"80/tcp\"]\n    security_opt:\n      - seccomp=unconfined\n      - no-new-privileges:true\n      - apparmor=unconfined\n    devices:\n      - /dev/fuse\n      - /dev/null:/dev/xnull:mr\n      - /dev/zero:r\n    ipc: shareable\n    pid: host\n    runtime: runc\n    cpu_shares: 512\n    pull_policy: missing\n",
    );
    let c = &s.container;
    assert_eq!(
        c.expose,
        ["53/udp", "7000/tcp", "7001/tcp", "80/tcp", "9000/tcp"]
    );
    assert_eq!(
        c.security_opt,
        [
            "apparmor=unconfined",
            "no-new-privileges:true",
            "seccomp=unconfined"
        ]
    );
    let dev = |h: &str, c: &str, p: &str| DeviceMapping {
        host: h.into(),
        container: c.into(),
        permissions: p.into(),
    };
    assert_eq!(
        c.devices,
        [
            dev("/dev/fuse", "/dev/fuse", "rwm"),
            // Permissions in one spelling, whatever order they are written in.
            dev("/dev/null", "/dev/xnull", "rm"),
            dev("/dev/zero", "/dev/zero", "r"),
        ]
    );
    assert_eq!(c.ipc.as_deref(), Some("shareable"));
    assert_eq!(c.pid.as_deref(), Some("host"));
    assert_eq!(c.runtime.as_deref(), Some("runc"));
    assert_eq!(c.cpu_shares, Some(512));
}

#[test]
fn engine_option_errors_are_located() {
    let e = web_errs("services:\n  a:\n    image: x\n    expose: [\"0\", \"80/http\", \"1-65535\"]\n    security_opt: [\"seccomp=/etc/profile.json\", bogus, \"no-new-privileges:maybe\"]\n    devices: [\"vendor.com/gpu=all\", \"/dev/a:rel\", \"/dev/a:/dev/b:rwx\", \"/dev/c:/dev/b\"]\n    ipc: service:db\n    pid: private\n    runtime: \"a b\"\n    cpu_shares: 1\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:14: services.a.expose[0]: invalid port `0` in `expose` (expected a container port)",
            "stacks/web/compose.yaml:4:19: services.a.expose[1]: invalid protocol `http` in `80/http` (expected tcp, udp or sctp)",
            "stacks/web/compose.yaml:4:30: services.a.expose[2]: the range `1-65535` exposes more than 1024 ports",
            "stacks/web/compose.yaml:5:20: services.a.security_opt[0]: invalid security option `seccomp=/etc/profile.json`: a seccomp profile file is not supported yet (it needs files from the repository shipped to the hosts); only `seccomp=unconfined` is",
            "stacks/web/compose.yaml:5:49: services.a.security_opt[1]: invalid security option `bogus`: expected `no-new-privileges`, `seccomp=unconfined`, `apparmor=<profile>`, `label=<option>`, `systempaths=unconfined` or `writable-cgroups=<bool>`",
            "stacks/web/compose.yaml:5:56: services.a.security_opt[2]: invalid security option `no-new-privileges:maybe`: expected `no-new-privileges:true` or `:false`",
            "stacks/web/compose.yaml:6:15: services.a.devices[0]: invalid device `vendor.com/gpu=all`: CDI device names are not supported yet; expected `/dev/<host>[:/dev/<container>[:rwm]]`",
            "stacks/web/compose.yaml:6:37: services.a.devices[1]: invalid device `/dev/a:rel`: the container path `rel` is not absolute",
            "stacks/web/compose.yaml:6:51: services.a.devices[2]: invalid device `/dev/a:/dev/b:rwx`: permissions `rwx` are not some of r, w and m",
            "stacks/web/compose.yaml:7:10: services.a.ipc: `ipc: service:db` is not supported yet: the two services would have to be placed together",
            "stacks/web/compose.yaml:8:10: services.a.pid: invalid pid mode `private` (expected host)",
            "stacks/web/compose.yaml:9:14: services.a.runtime: invalid runtime name `a b`",
            "stacks/web/compose.yaml:10:17: services.a.cpu_shares: cpu_shares 1 is out of range (2 to 262144; 1024 is the default)",
        ]
    );
}

#[test]
fn a_device_mapped_twice_in_the_container_is_an_error() {
    let e = web_errs(
        "services:\n  a:\n    image: x\n    devices: [\"/dev/a:/dev/x\", \"/dev/b:/dev/x\"]\n",
    );
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:4:32: services.a.devices[1]: `/dev/x` is mapped twice in the container"]
    );
}

#[test]
fn pull_policy_is_kept_in_the_spec_and_the_others_are_refused_by_name() {
    for (p, want) in [
        ("missing", PullPolicy::Missing),
        ("if_not_present", PullPolicy::Missing),
        ("always", PullPolicy::Always),
        ("never", PullPolicy::Never),
    ] {
        let s = service(&format!(
            "services:\n  a:\n    image: x\n    pull_policy: {p}\n"
        ));
        assert_eq!(s.container.pull_policy, want, "{p}");
    }
    assert_eq!(
        service("services:\n  a:\n    image: x\n")
            .container
            .pull_policy,
        PullPolicy::Missing
    );
    let e = web_errs("services:\n  a:\n    image: x\n    pull_policy: build\n  b:\n    image: x\n    pull_policy: daily\n  c:\n    image: x\n    pull_policy: sometimes\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:18: services.a.pull_policy: `pull_policy: build` needs `build`: add the build, or use always, missing or never",
            "stacks/web/compose.yaml:7:18: services.b.pull_policy: `pull_policy: daily` is not supported yet: use `always` or `missing` (`apply --pull` pulls every image again)",
            "stacks/web/compose.yaml:10:18: services.c.pull_policy: invalid pull policy `sometimes` (expected always, missing, never or build)",
        ]
    );
}

/// Changing when an image is pulled replaces nothing: the policy is out of the spec hash.
#[test]
fn pull_policy_leaves_the_spec_hash_alone() {
    let a = service("services:\n  a:\n    image: x\n");
    let b = service("services:\n  a:\n    image: x\n    pull_policy: always\n");
    assert_eq!(a.container.hash(), b.container.hash());
}

#[test]
fn container_name_is_the_replicas_name() {
    let s = service("services:\n  a:\n    image: x\n    container_name: my-app.v2_x\n");
    assert_eq!(s.container.container_name.as_deref(), Some("my-app.v2_x"));
    assert_eq!(replica_name("web", &s, "1"), "my-app.v2_x");
    // The engine strips a leading slash; so does the reader.
    let s = service("services:\n  a:\n    image: x\n    container_name: /db\n");
    assert_eq!(s.container.container_name.as_deref(), Some("db"));
    // Explicitly one replica is fine.
    service(
        "services:\n  a:\n    image: x\n    container_name: db\n    deploy:\n      replicas: 1\n",
    );
}

#[test]
fn container_name_only_with_one_replica_and_a_valid_name() {
    let e = web_errs("services:\n  a:\n    image: x\n    container_name: a1\n    deploy:\n      replicas: 2\n  b:\n    image: x\n    deploy: {mode: global}\n    container_name: b1\n  c:\n    image: x\n    container_name: -c\n  d:\n    image: x\n    container_name: d\n  e:\n    image: x\n    container_name: e/f\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:21: services.a.container_name: `container_name: a1` with 2 replicas: a container name holds one replica; remove `container_name` or set `deploy.replicas: 1`",
            "stacks/web/compose.yaml:10:21: services.b.container_name: `container_name: b1` on a global service: each host would run a container of that name; remove `container_name` or run one replica",
            "stacks/web/compose.yaml:13:21: services.c.container_name: invalid container name `-c`: Docker names start with a letter or digit and go on with letters, digits, `_`, `.` or `-` (two characters at least)",
            "stacks/web/compose.yaml:16:21: services.d.container_name: invalid container name `d`: Docker names start with a letter or digit and go on with letters, digits, `_`, `.` or `-` (two characters at least)",
            "stacks/web/compose.yaml:19:21: services.e.container_name: invalid container name `e/f`: Docker names start with a letter or digit and go on with letters, digits, `_`, `.` or `-` (two characters at least)",
        ]
    );
}

/// Two services of the fleet with one `container_name`, in one stack or two, and a name that
/// is another service's scheme name: each apply would replace the other's container.
#[test]
fn a_container_name_two_services_would_share_is_refused() {
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/a/compose.yaml",
            "services:\n  x:\n    image: x\n    container_name: shared\n  y:\n    image: x\n    container_name: shared\n",
        ),
        (
            "stacks/b/compose.yaml",
            "services:\n  z:\n    image: x\n    container_name: shared\n",
        ),
    ]);
    assert_eq!(
        e,
        vec![
            "stacks/a/compose.yaml:5:3: services.y.container_name: `container_name: shared` is taken: service `y` of stack `a` and service `x` of stack `a` (stacks/a/compose.yaml) would both name a container `shared`; change one `container_name`",
            "stacks/b/compose.yaml:2:3: services.z.container_name: `container_name: shared` is taken: service `z` of stack `b` and service `x` of stack `a` (stacks/a/compose.yaml) would both name a container `shared`; change one `container_name`",
        ]
    );
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/a/compose.yaml",
            "services:\n  x:\n    image: x\n    container_name: b-web-1\n",
        ),
        ("stacks/b/compose.yaml", "services:\n  web:\n    image: x\n"),
    ]);
    assert_eq!(
        e,
        vec!["stacks/b/compose.yaml:2:3: services.web: service `web` of stack `b` and service `x` of stack `a` (stacks/a/compose.yaml) would both name a container `b-web-1`: rename a stack or a service"]
    );
    // A container_name equal to the scheme name its own service would have is no clash.
    ok(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/a/compose.yaml",
            "services:\n  x:\n    image: x\n    container_name: a-x-1\n  y:\n    image: x\n    container_name: other\n",
        ),
    ]);
}

#[test]
fn older_resource_keys_mean_deploy_resources() {
    let old = service("services:\n  a:\n    image: x\n    mem_limit: 64m\n    mem_reservation: 16m\n    cpus: 0.5\n");
    let new = service("services:\n  a:\n    image: x\n    deploy:\n      resources:\n        limits: {memory: 64m, cpus: \"0.5\"}\n        reservations: {memory: 16m}\n");
    // The same container, the same hash, the same placement.
    assert_eq!(old, new);
    assert_eq!(old.container.hash(), new.container.hash());
    assert_eq!(old.reserve_memory_bytes, Some(16 << 20));

    // Both forms, agreeing: fine.
    let both = service("services:\n  a:\n    image: x\n    mem_limit: 64m\n    deploy:\n      resources:\n        limits: {memory: 67108864}\n");
    assert_eq!(both.container.memory_bytes, Some(64 << 20));

    let s = service("services:\n  a:\n    image: x\n    mem_limit: 64m\n    memswap_limit: 128m\n    cpu_shares: 2048\n    cpus: 0\n");
    assert_eq!(s.container.memory_swap_bytes, Some(128 << 20));
    assert_eq!(s.container.cpu_shares, Some(2048));
    assert_eq!(s.container.nano_cpus, None);
    let s = service("services:\n  a:\n    image: x\n    mem_limit: 64m\n    memswap_limit: -1\n");
    assert_eq!(s.container.memory_swap_bytes, Some(-1));
}

#[test]
fn older_resource_keys_that_disagree_with_deploy_are_located_errors() {
    let e = web_errs("services:\n  a:\n    image: x\n    mem_limit: 64m\n    cpus: 1\n    mem_reservation: 1g\n    deploy:\n      resources:\n        limits: {memory: 128m, cpus: \"1\"}\n  b:\n    image: x\n    memswap_limit: 1g\n  c:\n    image: x\n    mem_limit: 1g\n    memswap_limit: 512m\n  d:\n    image: x\n    mem_limit: 1m\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:16: services.a.mem_limit: `mem_limit` disagrees with `deploy.resources.limits.memory`: write one of them",
            "stacks/web/compose.yaml:6:22: services.a.mem_reservation: the memory reservation is above the memory limit",
            "stacks/web/compose.yaml:12:20: services.b.memswap_limit: `memswap_limit` needs a memory limit (`mem_limit` or `deploy.resources.limits.memory`)",
            "stacks/web/compose.yaml:16:20: services.c.memswap_limit: `memswap_limit` is memory plus swap: it cannot be below the memory limit (-1 means unlimited swap)",
            "stacks/web/compose.yaml:19:16: services.d.mem_limit: a memory limit below 6 MiB is refused by the engine (0 means none)",
        ]
    );
}

#[test]
fn lifecycle_hooks_are_read_in_order_with_their_options() {
    let s = service(
        "services:\n  web:\n    image: x\n    post_start:\n      - command: touch /tmp/started\n      - command: [\"sh\", \"-c\", \"echo $$HOME > /x\"]\n        user: root\n        privileged: true\n        working_dir: /srv\n        environment:\n          A: \"1\"\n          API_TOKEN: s3cr3t-value-long\n    pre_stop:\n      - command: \"sh -c 'echo bye >> /data/log'\"\n        environment: [B=2]\n",
    );
    let h = &s.container.hooks;
    assert_eq!(h.post_start.len(), 2);
    assert_eq!(h.post_start[0].command, ["touch", "/tmp/started"]);
    assert_eq!(h.post_start[0].user, None);
    assert!(!h.post_start[0].privileged);
    let second = &h.post_start[1];
    assert_eq!(second.command, ["sh", "-c", "echo $HOME > /x"]);
    assert_eq!(second.user.as_deref(), Some("root"));
    assert!(second.privileged);
    assert_eq!(second.working_dir.as_deref(), Some("/srv"));
    assert_eq!(second.env_list(), ["A=1", "API_TOKEN=s3cr3t-value-long"]);
    // The secret-looking value is never shown, not even by `Debug`.
    assert!(!format!("{h:?}").contains("s3cr3t"));
    assert_eq!(h.pre_stop.len(), 1);
    assert_eq!(h.pre_stop[0].command, ["sh", "-c", "echo bye >> /data/log"]);
    assert_eq!(h.pre_stop[0].env_list(), ["B=2"]);
}

#[test]
fn a_hooks_secret_looking_value_is_a_secret_of_the_state() {
    let st = ok(&files(&web(
        "services:\n  web:\n    image: x\n    post_start:\n      - command: \"true\"\n        environment: [DB_PASSWORD=hunter2-and-more]\n",
    )));
    assert!(st.secret_values.contains("hunter2-and-more"));
}

#[test]
fn a_hook_changes_the_spec_hash_and_none_leaves_it() {
    let plain = service("services:\n  web:\n    image: x\n");
    let empty = service("services:\n  web:\n    image: x\n    post_start: []\n    pre_stop: []\n");
    let hooked = service("services:\n  web:\n    image: x\n    pre_stop: [{command: \"true\"}]\n");
    let other = service("services:\n  web:\n    image: x\n    pre_stop: [{command: \"false\"}]\n");
    assert_eq!(plain.container.hash(), empty.container.hash());
    assert_ne!(plain.container.hash(), hooked.container.hash());
    assert_ne!(hooked.container.hash(), other.container.hash());
}

#[test]
fn hook_errors_are_located() {
    let e = web_errs(
        "services:\n  a:\n    image: x\n    post_start:\n      - user: root\n      - command: []\n      - command: \"echo 'unclosed\"\n      - command: x\n        working_dir: rel\n        bogus: 1\n    pre_stop: {command: x}\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:9: services.a.post_start[0]: a hook needs a `command`",
            "stacks/web/compose.yaml:6:9: services.a.post_start[1]: the hook's `command` is empty",
            "stacks/web/compose.yaml:7:18: services.a.post_start[2].command: unterminated single quote",
            "stacks/web/compose.yaml:9:22: services.a.post_start[3].working_dir: working_dir `rel` is not an absolute path",
            "stacks/web/compose.yaml:10:9: services.a.post_start[3].bogus: unknown key",
            "stacks/web/compose.yaml:11:16: services.a.pre_stop: expected a list of hooks, found a map",
        ]
    );
}

#[test]
fn a_service_with_only_build_gets_one_error_naming_build() {
    let e = web_errs("services:\n  a:\n    build: .\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:3:12: services.a.build: no Dockerfile at `stacks/web/Dockerfile`"]
    );
    // Without either, `image` is missing.
    let e = web_errs("services:\n  a:\n    command: x\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:2:3: services.a: missing `image`"]
    );
}

#[test]
fn the_older_external_name_form_is_external_with_that_name() {
    let s = ok(&files(&web("services:\n  a:\n    image: x\n    volumes: [e:/e]\n    networks: [n]\nvolumes:\n  e:\n    external:\n      name: real-volume\nnetworks:\n  n:\n    external: {name: real-net}\n")));
    let st = &s.stacks["web"];
    assert!(st.volumes["e"].external);
    assert_eq!(st.volumes["e"].engine_name, "real-volume");
    assert!(st.networks["n"].external);
    assert_eq!(st.networks["n"].engine_name, "real-net");
    assert!(st.services["a"].container.networks.contains_key("real-net"));

    let e = web_errs("services:\n  a:\n    image: x\n    volumes: [e:/e]\nvolumes:\n  e:\n    name: one\n    external:\n      name: other\n      labels: {}\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:9:13: volumes.e.external.name: `external.name` `other` disagrees with `name` `one`: write one of them",
            "stacks/web/compose.yaml:10:7: volumes.e.external.labels: unknown key",
        ]
    );
}

#[test]
fn stdin_open_and_tty_are_read_and_default_off() {
    let s = service("services:\n  web:\n    image: x\n    stdin_open: true\n    tty: true\n");
    assert!(s.container.stdin_open && s.container.tty);
    let plain = service("services:\n  web:\n    image: x\n");
    assert!(!plain.container.stdin_open && !plain.container.tty);
    // Off, they stay out of the serialised spec, so out of the hash: a spec without them
    // hashes as before (`model::spec`'s pinned-hash test).
    let json = serde_json::to_string(&plain.container).unwrap();
    assert!(
        !json.contains("tty") && !json.contains("stdin_open"),
        "{json}"
    );
    assert_ne!(s.container.hash(), plain.container.hash());
    let e = errs(&[
        ("convoy.yaml", FLEET),
        (
            "stacks/web/compose.yaml",
            "services:\n  web:\n    image: x\n    tty: [yes]\n",
        ),
    ]);
    assert!(
        e.iter()
            .any(|m| m.contains("compose.yaml:4") && m.contains("tty")),
        "{e:?}"
    );
}

#[test]
fn the_less_common_engine_settings_are_read_in_normal_form() {
    let s = service(
        "services:\n  web:\n    image: x\n    privileged: true\n    shm_size: 128m\n    dns_opt: [ndots:2, timeout:1]\n    dns_search: b.example\n    domainname: example.org\n    group_add: [video, audio]\n    oom_score_adj: -500\n    oom_kill_disable: true\n    cgroup: private\n    cgroup_parent: convoy.slice\n    uts: host\n    userns_mode: host\n    cpuset: 0-1,3\n    cpu_period: 100000\n    cpu_quota: 50000\n    cpu_rt_period: 1s\n    cpu_rt_runtime: 950000\n    mem_swappiness: 10\n    device_cgroup_rules: [\"c  1:3 mr\", \"a *:* r\"]\n    storage_opt: {size: 1G}\n    blkio_config:\n      weight: 300\n      weight_device: [{path: /dev/sda, weight: 400}]\n      device_read_bps: [{path: /dev/sdb, rate: 1mb}, {path: /dev/sda, rate: 2048}]\n      device_write_iops: [{path: /dev/sda, rate: 10}]\n    annotations: [a=b]\n    pids_limit: 50\n    scale: 1\n    attach: false\n",
    );
    let m = &s.container.more;
    assert!(m.privileged && m.oom_kill_disable);
    assert_eq!(m.shm_size_bytes, Some(128 << 20));
    assert_eq!(m.dns_opt, ["ndots:2", "timeout:1"]);
    assert_eq!(m.dns_search, ["b.example"]);
    assert_eq!(m.domainname.as_deref(), Some("example.org"));
    assert_eq!(m.group_add, ["audio", "video"]);
    assert_eq!(m.oom_score_adj, Some(-500));
    assert_eq!(m.cgroup.as_deref(), Some("private"));
    assert_eq!(m.cgroup_parent.as_deref(), Some("convoy.slice"));
    assert_eq!(
        (m.uts.as_deref(), m.userns_mode.as_deref()),
        (Some("host"), Some("host"))
    );
    assert_eq!(m.cpuset.as_deref(), Some("0-1,3"));
    assert_eq!((m.cpu_period, m.cpu_quota), (Some(100_000), Some(50_000)));
    assert_eq!(
        (m.cpu_rt_period, m.cpu_rt_runtime),
        (Some(1_000_000), Some(950_000))
    );
    assert_eq!(m.mem_swappiness, Some(10));
    assert_eq!(m.device_cgroup_rules, ["a *:* r", "c 1:3 mr"]);
    assert_eq!(m.storage_opt["size"], "1G");
    assert_eq!(m.blkio.weight, Some(300));
    assert_eq!(m.blkio.weight_device, [("/dev/sda".to_string(), 400)]);
    assert_eq!(
        m.blkio.device_read_bps,
        [
            ("/dev/sda".to_string(), 2048),
            ("/dev/sdb".to_string(), 1 << 20)
        ]
    );
    assert_eq!(m.blkio.device_write_iops, [("/dev/sda".to_string(), 10)]);
    assert_eq!(m.annotations["a"], "b");
    assert_eq!(s.container.pids_limit, Some(50));
    assert_eq!(s.replicas, 1);
    // None of them written: the value is empty and out of the serialised spec.
    let plain = service("services:\n  web:\n    image: x\n");
    assert!(plain.container.more.is_empty());
    assert!(!serde_json::to_string(&plain.container)
        .unwrap()
        .contains("more"));
    assert_ne!(s.container.hash(), plain.container.hash());
}

#[test]
fn the_less_common_engine_settings_have_located_errors() {
    let e = web_errs("services:\n  a:\n    image: x\n    privileged: maybe\n    shm_size: lots\n    oom_score_adj: 2000\n    cgroup: shared\n    uts: private\n    userns_mode: remap\n    cpuset: 3-1\n    cpu_period: 10\n    cpu_quota: 5\n    mem_swappiness: 101\n    device_cgroup_rules: [\"x 1:3 r\", \"c 1:3\"]\n    blkio_config:\n      weight: 5\n      device_read_bps: [{path: sda, rate: 1}, {rate: 1}]\n      bogus: 1\n    cpu_rt_period: 1000\n    cpu_rt_runtime: 2000\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:17: services.a.privileged: expected a boolean, found a string",
            "stacks/web/compose.yaml:5:15: services.a.shm_size: invalid size `lots` (expected e.g. `512m`, `1g` or a number of bytes)",
            "stacks/web/compose.yaml:6:20: services.a.oom_score_adj: oom_score_adj 2000 is out of range (-1000 to 1000)",
            "stacks/web/compose.yaml:7:13: services.a.cgroup: invalid cgroup `shared` (expected `host` or `private`)",
            "stacks/web/compose.yaml:8:10: services.a.uts: invalid uts `private` (expected `host`)",
            "stacks/web/compose.yaml:9:18: services.a.userns_mode: invalid userns_mode `remap` (expected `host`)",
            "stacks/web/compose.yaml:10:13: services.a.cpuset: invalid cpuset `3-1` (expected CPU numbers and ranges, such as `0-2,4`)",
            "stacks/web/compose.yaml:11:17: services.a.cpu_period: cpu_period 10 is out of range (1000 to 1000000)",
            "stacks/web/compose.yaml:12:16: services.a.cpu_quota: cpu_quota 5 is below 1000 microseconds (-1: no quota)",
            "stacks/web/compose.yaml:13:21: services.a.mem_swappiness: mem_swappiness 101 is out of range (0 to 100)",
            "stacks/web/compose.yaml:14:27: services.a.device_cgroup_rules[0]: invalid device cgroup rule `x 1:3 r` (expected `<a|b|c> <major>:<minor> <rwm>`, such as `c 1:3 mr`)",
            "stacks/web/compose.yaml:14:38: services.a.device_cgroup_rules[1]: invalid device cgroup rule `c 1:3` (expected `<a|b|c> <major>:<minor> <rwm>`, such as `c 1:3 mr`)",
            "stacks/web/compose.yaml:16:15: services.a.blkio_config.weight: weight 5 is out of range (10 to 1000)",
            "stacks/web/compose.yaml:17:26: services.a.blkio_config.device_read_bps[0]: expected `path` and `rate`",
            "stacks/web/compose.yaml:17:32: services.a.blkio_config.device_read_bps[0].path: device path `sda` is not absolute",
            "stacks/web/compose.yaml:17:48: services.a.blkio_config.device_read_bps[1]: expected `path` and `rate`",
            "stacks/web/compose.yaml:18:7: services.a.blkio_config.bogus: unknown key",
            "stacks/web/compose.yaml:20:21: services.a.cpu_rt_runtime: cpu_rt_runtime is above cpu_rt_period: a period cannot hold it",
        ]
    );
}

#[test]
fn pids_limit_and_scale_must_agree_with_deploy() {
    let e = web_errs("services:\n  a:\n    image: x\n    pids_limit: 10\n    scale: 2\n    deploy:\n      replicas: 3\n      resources:\n        limits:\n          pids: 20\n  b:\n    image: x\n    scale: 2\n    deploy:\n      mode: global\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:17: services.a.pids_limit: `pids_limit` disagrees with `deploy.resources.limits.pids`: write one of them",
            "stacks/web/compose.yaml:5:12: services.a.scale: `scale: 2` disagrees with `deploy.replicas: 3`: write one of them",
            "stacks/web/compose.yaml:13:12: services.b.scale: `scale` cannot be used with `mode: global`",
        ]
    );
    // Alike, or one of the two: fine.
    let s = service("services:\n  web:\n    image: x\n    pids_limit: 20\n    scale: 3\n    deploy:\n      replicas: 3\n      resources:\n        limits:\n          pids: 20\n");
    assert_eq!((s.container.pids_limit, s.replicas), (Some(20), 3));
    let s = service("services:\n  web:\n    image: x\n    pids_limit: -1\n    scale: 2\n");
    assert_eq!((s.container.pids_limit, s.replicas), (None, 2));
}

/// Every key Convoy refuses says why, at every level of the file.
#[test]
fn every_refused_key_gives_its_reason() {
    let e = web_errs("services:\n  a:\n    image: x\n    models: []\n    provider: {}\n    use_api_socket: true\n    credential_spec: {}\n    isolation: default\n    cpu_count: 1\n    cpu_percent: 50\n    external_links: [x]\n    mac_address: 02:42:ac:11:00:02\n    deploy:\n      endpoint_mode: vip\n      labels: {}\n");
    assert_eq!(e.len(), 11, "{e:#?}");
    for m in &e {
        assert!(m.contains("is not supported yet: "), "{m}");
    }
    assert!(e
        .iter()
        .any(|m| m.contains("deploy.labels") && m.contains("use the service's `labels`")));
}

/// `develop` and the SELinux volume options are warnings: the file stays usable as written.
#[test]
fn develop_and_selinux_options_are_warnings() {
    let s = ok(&files(&web(
        "services:\n  a:\n    image: x\n    develop: {watch: []}\n    volumes: [/srv:/srv:Z]\n",
    )));
    let w = &s.files.warnings;
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w[0].starts_with("stacks/web/compose.yaml:4:15: services.a.develop: warning: `develop`"),
        "{w:#?}"
    );
    assert!(
        w[1].contains("services.a.volumes[0]: warning: volume option `Z`"),
        "{w:#?}"
    );
}

/// `external: true` beside `name:`, and the older `external: {name: x}`, for volumes and
/// networks alike: external, under that name.
#[test]
fn external_with_a_name_in_both_forms() {
    let s = ok(&files(&web("services:\n  a:\n    image: x\n    volumes: [e:/e, f:/f]\n    networks: [n, m]\nvolumes:\n  e:\n    external: true\n    name: real-volume\n  f:\n    external: {name: other-volume}\nnetworks:\n  n:\n    external: true\n    name: real-net\n  m:\n    external:\n      name: other-net\n")));
    let st = &s.stacks["web"];
    for (v, name) in [("e", "real-volume"), ("f", "other-volume")] {
        assert!(st.volumes[v].external);
        assert_eq!(st.volumes[v].engine_name, name);
    }
    for (n, name) in [("n", "real-net"), ("m", "other-net")] {
        assert!(st.networks[n].external);
        assert_eq!(st.networks[n].engine_name, name);
    }
}

#[test]
fn sharing_a_services_namespace_and_volumes_depends_on_it() {
    let st = ok(&files(&web(
        "services:\n  db:\n    image: x\n    deploy: {replicas: 2}\n  side:\n    image: x\n    network_mode: service:db\n    volumes_from: [\"db:ro\", \"container:outside:rw\", other]\n    deploy: {replicas: 2}\n  other:\n    image: x\n    scale: 2\n  ext:\n    image: x\n    network_mode: container:vpn\n",
    )));
    let side = &st.stacks["web"].services["side"];
    assert_eq!(side.container.network_mode.as_deref(), Some("service:db"));
    assert!(side.container.networks.is_empty());
    use crate::model::share::{ShareSource, VolumesFrom};
    assert_eq!(
        side.container.share.volumes_from,
        [
            VolumesFrom {
                source: ShareSource::Service("db".into()),
                read_only: true
            },
            VolumesFrom {
                source: ShareSource::Container("outside".into()),
                read_only: false
            },
            VolumesFrom {
                source: ShareSource::Service("other".into()),
                read_only: false
            },
        ]
    );
    // Compose starts the sources first; the dependent goes with their containers.
    assert_eq!(side.depends_on.keys().collect::<Vec<_>>(), ["db", "other"]);
    assert_eq!(
        side.restart_with.iter().collect::<Vec<_>>(),
        ["db", "other"]
    );
    let ext = &st.stacks["web"].services["ext"];
    assert_eq!(ext.container.network_mode.as_deref(), Some("container:vpn"));
    assert!(ext.depends_on.is_empty());
    // Without the keys, the hash is what it was.
    let plain = service("services:\n  web:\n    image: x\n");
    let empty = service("services:\n  web:\n    image: x\n    volumes_from: []\n");
    assert_eq!(plain.container.hash(), empty.container.hash());
}

#[test]
fn sharing_errors_are_located() {
    let e = web_errs(
        "services:\n  db:\n    image: x\n    deploy: {replicas: 2}\n  a:\n    image: x\n    network_mode: service:db\n    hostname: h\n    dns: [1.1.1.1]\n    expose: [80]\n    extra_hosts: [\"a:1.2.3.4\"]\n  b:\n    image: x\n    volumes_from: [\"db:rx\", \"container:\", nosuch]\n  c:\n    image: x\n    network_mode: \"service:\"\n    deploy: {mode: global}\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:8:5: services.a.hostname: `hostname` cannot be used with `network_mode: service:db`: the container uses the network settings of the one whose namespace it joins",
            "stacks/web/compose.yaml:9:5: services.a.dns: `dns` cannot be used with `network_mode: service:db`: the container uses the network settings of the one whose namespace it joins",
            "stacks/web/compose.yaml:10:5: services.a.expose: `expose` cannot be used with `network_mode: service:db`: the container uses the network settings of the one whose namespace it joins",
            "stacks/web/compose.yaml:11:5: services.a.extra_hosts: `extra_hosts` cannot be used with `network_mode: service:db`: the container uses the network settings of the one whose namespace it joins",
            "stacks/web/compose.yaml:14:20: services.b.volumes_from[0]: invalid mode `rx` in `db:rx` (expected ro or rw)",
            "stacks/web/compose.yaml:14:29: services.b.volumes_from[1]: `container:` names no source",
            "stacks/web/compose.yaml:14:43: services.b.volumes_from[2]: depends on unknown service `nosuch`",
            "stacks/web/compose.yaml:17:19: services.c.network_mode: `network_mode: service:` names no source",
        ]
    );
    // Slot k runs beside the source's slot k: the replicas must correspond.
    let e = web_errs(
        "services:\n  db:\n    image: x\n    deploy: {replicas: 2}\n  a:\n    image: x\n    network_mode: service:db\n  b:\n    image: x\n    volumes_from: [db]\n    deploy: {mode: global}\n  g:\n    image: x\n    deploy: {mode: global}\n  h:\n    image: x\n    volumes_from: [g]\n    deploy: {mode: global}\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:7:19: services.a.network_mode: `a` must run beside each replica of `db`, which shares its namespace or volumes: give both the same replicas or make both global (`db` is 2 replica(s), `a` is 1 replica(s))",
            "stacks/web/compose.yaml:10:20: services.b.volumes_from[0]: `b` must run beside each replica of `db`, which shares its namespace or volumes: give both the same replicas or make both global (`db` is 2 replica(s), `b` is global)",
        ]
    );
}

#[test]
fn links_are_read_with_their_alias_and_depend_on_the_linked_service() {
    let st = ok(&files(&web(
        "services:\n  db:\n    image: x\n  app:\n    image: x\n    links: [db, \"db:database\"]\n",
    )));
    let app = &st.stacks["web"].services["app"];
    use crate::model::share::Link;
    let link = |s: &str, a: &str| Link {
        service: s.into(),
        alias: a.into(),
    };
    assert_eq!(
        app.container.share.links,
        [link("db", "db"), link("db", "database")]
    );
    assert_eq!(app.depends_on.keys().collect::<Vec<_>>(), ["db"]);
    // Not replaced with it, nor placed beside it: a link reaches what runs on its host.
    assert!(app.restart_with.is_empty());
    let e = web_errs(
        "services:\n  db:\n    image: x\n  app:\n    image: x\n    links: [\"db:\", \"db:a:b\", \"db:x\", \"db:x\", nosuch]\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:6:13: services.app.links[0]: invalid link `db:` (expected service or service:alias)",
            "stacks/web/compose.yaml:6:20: services.app.links[1]: invalid link `db:a:b` (expected service or service:alias)",
            "stacks/web/compose.yaml:6:38: services.app.links[3]: the alias `x` is linked twice",
            "stacks/web/compose.yaml:6:46: services.app.links[4]: depends on unknown service `nosuch`",
        ]
    );
}
