//! Compose keys that change how Convoy names and fetches a container, on the local engine:
//! `container_name` (the replica's engine name, while ownership, healing and removal still go
//! by the fleet's labels) and `pull_policy` (`never` fetches nothing, `always` pulls even an
//! image the host has); on the SSH fleet, the less common engine settings and the lifecycle
//! hooks (`post_start`, `pre_stop`), and services sharing another's network namespace or
//! volumes (`network_mode: service:`, `volumes_from`), placed beside it, and `links`.
//!
//! Registries are only ever addressed on loopback (`127.0.0.1:1`, where nothing listens), so a
//! pull that happens fails at once and says so, and nothing leaves the machine.

use crate::harness::*;

/// A local tag of the test image, untagged on drop (the image itself stays).
struct Tag(String);

impl Tag {
    fn new(name: String) -> Tag {
        docker(&["tag", IMAGE, &name]);
        Tag(name)
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = docker_try(&["rmi", &self.0]);
    }
}

fn named_stack(t: &TestFleet, name: &str, with_other: bool) {
    let other = if with_other {
        format!("  other:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n")
    } else {
        String::new()
    };
    t.compose(
        "cn",
        &format!(
            "services:\n  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{monitor: 0s}}\n    container_name: {name}\n{other}"
        ),
    );
}

#[test]
fn a_container_name_converges_heals_and_is_removed_by_its_labels() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let name = format!("{}-named-db", t.id);
    named_stack(&t, &name, true);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(
        t.containers(),
        vec![name.clone(), t.cname("cn", "other", 1)]
    );
    assert_eq!(t.inspect(&name, "{{.State.Status}}"), "running");
    for (label, want) in [
        ("convoy.fleet", t.id.clone()),
        ("convoy.stack", t.stack("cn")),
        ("convoy.service", "db".into()),
        ("convoy.slot", "1".into()),
    ] {
        assert_eq!(
            t.inspect(&name, &format!("{{{{index .Config.Labels \"{label}\"}}}}")),
            want
        );
    }
    // A second apply changes nothing.
    let before = t.engine_view();
    let again = t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(t.engine_view(), before);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    let status = t.convoy(&["status"]);
    assert!(status.stdout.contains(&name), "{}", status.stdout);

    // Deleted behind Convoy's back: made again under its name.
    docker(&["rm", "-f", &name]);
    t.convoy(&["diff"]).outcome(Outcome::Differs);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.inspect(&name, "{{.State.Status}}"), "running");
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    // The service removed: its container goes, found by its labels.
    t.compose(
        "cn",
        &format!("services:\n  other:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.containers(), vec![t.cname("cn", "other", 1)]);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

/// Setting the name on a running service replaces its container: one container, new name.
#[test]
fn setting_a_container_name_renames_the_replica() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "cn",
        &format!("services:\n  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{monitor: 0s}}\n"),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.containers(), vec![t.cname("cn", "db", 1)]);
    let name = format!("{}-renamed", t.id);
    named_stack(&t, &name, false);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(diff.stdout.contains("container_name"), "{}", diff.stdout);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.containers(), vec![name]);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

#[test]
fn a_container_name_held_by_a_foreign_container_is_a_conflict() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let name = format!("{}-foreign", t.id);
    let foreign = Unowned::run(&name, &[]);
    named_stack(&t, &name, false);
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("not owned by fleet"), "{all}");
    assert!(t.containers().is_empty());
    // The foreign container is untouched.
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &foreign.0]),
        "running"
    );
}

#[test]
fn pull_policy_never_fails_the_step_with_a_missing_image_and_the_rest_converges() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let absent = format!("127.0.0.1:1/convoy-absent-{}:1", t.id);
    t.compose(
        "pp",
        &format!(
            "services:\n  gone:\n    image: {absent}\n    pull_policy: never\n  ok:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    pull_policy: never\n"
        ),
    );
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("pull_policy: never"), "{all}");
    assert!(all.contains(&absent), "{all}");
    // No pull was tried: the engine's pull error would name the registry's refusal.
    assert!(!all.contains("cannot pull"), "{all}");
    assert_eq!(t.running(), vec![t.cname("pp", "ok", 1)]);
}

/// `always` pulls even an image the host has: with the image's registry on a closed loopback
/// port, `missing` converges from the local copy and `always` fails, naming the pull. Changing
/// the policy replaces nothing.
#[test]
fn pull_policy_always_pulls_an_image_the_host_has() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let tag = Tag::new(format!("127.0.0.1:1/convoy-always-{}:1", t.id));
    let stack = |policy: &str| {
        t.compose(
            "pp",
            &format!(
                "services:\n  app:\n    image: {}\n    command: [\"sleep\", \"3600\"]\n    pull_policy: {policy}\n",
                tag.0
            ),
        )
    };
    stack("missing");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let before = t.engine_view();
    // Only the policy changed: in sync, nothing replaced.
    stack("always");
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.engine_view(), before);
    // A replacement now pulls first, and the pull fails.
    docker(&["rm", "-f", &t.cname("pp", "app", 1)]);
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("cannot pull image"), "{all}");
    assert!(t.containers().is_empty());
}

/// The less common engine settings (`engine_more`), on the 3-host fleet over SSH: a stack that
/// writes every one the fleet's engines (Docker 20.10, cgroup v1, in network namespaces) can
/// run converges on every host, a second apply plans nothing, and the engines hold what was
/// asked. Not here, because these engines refuse them at start: `privileged` (no capabilities
/// to hand out in the test namespaces), `cpu_rt_runtime` (no real-time scheduling groups),
/// `storage_opt` (overlay on xfs with pquota only) and `blkio_config` device throttles (a real
/// block device): those are unit-tested (`create_more`, `observe_more`, `drift_more`).
/// `annotations` (API 1.43) and `blkio_config.weight` (a weight-aware I/O scheduler) are
/// dropped by these engines, which checks that what a host drops is not drift.
#[test]
fn the_less_common_engine_settings_converge_on_the_fleet_and_stay_converged() {
    let Some(hosts) = crate::fleet::Hosts::get() else {
        return;
    };
    let t = TestFleet::new();
    let _volumes = HostVolumes(&hosts, t.id.clone());
    let _cleanup = crate::fleet::HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let state = t.path().join("state").to_string_lossy().into_owned();
    t.compose(
        "more",
        &format!(
            r#"
services:
  tuned:
    image: {IMAGE}
    command: sleep 3600
    scale: 3
    attach: false
    # Replaced below when healed: sleep (PID 1) ignores SIGTERM, and the rollout need not be
    # watched after it.
    stop_grace_period: 1s
    deploy:
      update_config: {{monitor: 0s}}
      placement:
        max_replicas_per_node: 1
    mem_limit: 64m
    shm_size: 32m
    dns_opt: ["ndots:2", "timeout:1"]
    dns_search: [a.example, b.example]
    domainname: example.org
    group_add: ["1234", "1235"]
    oom_score_adj: 100
    oom_kill_disable: true
    cgroup: private
    cgroup_parent: convoy-e2e
    cpuset: "0"
    cpu_period: 100000
    cpu_quota: 50000
    cpu_rt_period: 1000000
    mem_swappiness: 10
    device_cgroup_rules: ["c 1:3 mr"]
    pids_limit: 64
    annotations:
      org.example.team: core
    blkio_config:
      weight: 300
  hostns:
    image: {IMAGE}
    command: sleep 3600
    uts: host
    userns_mode: host
"#
        ),
    );
    t.convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    let diff = t
        .convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);
    assert!(diff.stdout.contains("No changes"), "{}", diff.stdout);

    // One replica per host, each with what was asked, read from the engine directly.
    let mut seen = 0;
    for h in &hosts.names {
        for name in hosts.fleet_containers(h, &t.id) {
            if !name.contains("-tuned-") {
                continue;
            }
            seen += 1;
            let fmt = "{{.HostConfig.ShmSize}} {{json .HostConfig.DnsOptions}} {{json .HostConfig.DnsSearch}} {{.Config.Domainname}} {{json .HostConfig.GroupAdd}} {{.HostConfig.OomScoreAdj}} {{.HostConfig.OomKillDisable}} {{.HostConfig.CgroupnsMode}} {{.HostConfig.CgroupParent}} {{.HostConfig.CpusetCpus}} {{.HostConfig.CpuPeriod}} {{.HostConfig.CpuQuota}} {{.HostConfig.CpuRealtimePeriod}} {{.HostConfig.MemorySwappiness}} {{json .HostConfig.DeviceCgroupRules}} {{.HostConfig.PidsLimit}} {{.State.Status}}";
            assert_eq!(
                hosts.docker(h, &["inspect", "-f", fmt, &name]),
                r#"33554432 ["ndots:2","timeout:1"] ["a.example","b.example"] example.org ["1234","1235"] 100 true private convoy-e2e 0 100000 50000 1000000 10 ["c 1:3 mr"] 64 running"#,
                "{h} {name}"
            );
        }
    }
    assert_eq!(seen, 3);
    let hostns = t.cname("more", "hostns", 1);
    let on = hosts
        .names
        .iter()
        .find(|h| hosts.fleet_containers(h, &t.id).contains(&hostns))
        .expect("hostns runs somewhere");
    assert_eq!(
        hosts.docker(
            on,
            &[
                "inspect",
                "-f",
                "{{.HostConfig.UTSMode}} {{.HostConfig.UsernsMode}}",
                &hostns
            ]
        ),
        "host host"
    );

    // A second apply replaces nothing.
    let view = |t: &TestFleet| -> Vec<String> {
        let mut v: Vec<String> = hosts
            .names
            .iter()
            .flat_map(|h| {
                hosts
                    .fleet_containers(h, &t.id)
                    .into_iter()
                    .map(|n| hosts.docker(h, &["inspect", "-f", "{{.Name}} {{.Id}}", &n]))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    let before = view(&t);
    let again = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(view(&t), before, "a second apply replaced something");

    // Changed by hand behind Convoy's back: seen as drift and healed.
    let first = &hosts.names[0];
    let tuned = hosts
        .fleet_containers(first, &t.id)
        .into_iter()
        .find(|n| n.contains("-tuned-"))
        .expect("a tuned replica on the first host");
    hosts.docker(first, &["update", "--cpu-quota", "60000", &tuned]);
    let diff = t
        .convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::Differs);
    assert!(diff.stdout.contains("cpu_quota"), "{}", diff.stdout);
    t.convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);
}

/// Removes this fleet's volumes (named and anonymous, labelled by Convoy) from every host;
/// declared before `HostCleanup` so that it drops after it (a volume in use cannot be removed).
struct HostVolumes<'a>(&'a crate::fleet::Hosts, String);

impl Drop for HostVolumes<'_> {
    fn drop(&mut self) {
        for h in &self.0.names {
            let sock = format!("unix://{}", self.0.sock(h));
            let owned = format!("label=convoy.fleet={}", self.1);
            if let Some(vols) = docker_try(&["-H", &sock, "volume", "ls", "-q", "--filter", &owned])
            {
                for v in vols.split_whitespace() {
                    let _ = docker_try(&["-H", &sock, "volume", "rm", v]);
                }
            }
        }
    }
}

/// The host of the fleet that runs `name`.
fn host_of(hosts: &crate::fleet::Hosts, fleet: &str, name: &str) -> String {
    hosts
        .names
        .iter()
        .find(|h| hosts.fleet_containers(h, fleet).iter().any(|n| n == name))
        .unwrap_or_else(|| panic!("{name} runs on no host"))
        .clone()
}

fn hooked_stack(t: &TestFleet, version: u32) {
    t.compose(
        "hk",
        &format!(
            r#"
services:
  hooked:
    image: {IMAGE}
    command: sleep 3600
    # Replaced below: sleep (PID 1) ignores SIGTERM, and the rollout need not be watched after.
    stop_grace_period: 1s
    deploy:
      update_config: {{monitor: 0s}}
    environment: [VERSION={version}]
    volumes: [data:/data]
    post_start:
      - command: sh -c 'echo started-$$VERSION > /tmp/post_start'
      - command: ["sh", "-c", "id -u > hook_user"]
        user: nobody
        working_dir: /tmp
        environment: [API_TOKEN=not-shown-anywhere]
    pre_stop:
      - command: ["sh", "-c", "echo stopping-$$VERSION >> /data/log"]
volumes:
  data: {{}}
"#
        ),
    );
}

/// `post_start` runs in the started container (its file is there, written in order, as the
/// hook's user); `pre_stop` runs in the old container before a replace (its line is in the
/// named volume the new one mounts); a second apply runs nothing; a failing `post_start`
/// fails its step with the hook's last lines.
#[test]
fn lifecycle_hooks_run_around_start_and_stop_on_the_fleet() {
    let Some(hosts) = crate::fleet::Hosts::get() else {
        return;
    };
    let t = TestFleet::new();
    let _volumes = HostVolumes(&hosts, t.id.clone());
    let _cleanup = crate::fleet::HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let state = t.path().join("state").to_string_lossy().into_owned();
    hooked_stack(&t, 1);
    t.convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    let name = t.cname("hk", "hooked", 1);
    let host = host_of(&hosts, &t.id, &name);
    assert_eq!(
        hosts.docker(&host, &["exec", &name, "cat", "/tmp/post_start"]),
        "started-1"
    );
    // The second hook ran after it, as its user, in its working folder.
    assert_eq!(
        hosts.docker(&host, &["exec", &name, "cat", "/tmp/hook_user"]),
        "65534"
    );
    let id = hosts.docker(&host, &["inspect", "-f", "{{.Id}}", &name]);

    // Converged: a second apply neither replaces nor runs a hook again.
    let again = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(
        hosts.docker(&host, &["inspect", "-f", "{{.Id}}", &name]),
        id
    );

    // A replace: the old container's pre_stop writes to the volume before it stops.
    hooked_stack(&t, 2);
    let run = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    assert!(!run.stdout.contains("not-shown-anywhere"), "{}", run.stdout);
    assert!(!run.stderr.contains("not-shown-anywhere"), "{}", run.stderr);
    let host = host_of(&hosts, &t.id, &name);
    assert_ne!(
        hosts.docker(&host, &["inspect", "-f", "{{.Id}}", &name]),
        id
    );
    assert_eq!(
        hosts.docker(&host, &["exec", &name, "cat", "/data/log"]),
        "stopping-1"
    );
    assert_eq!(
        hosts.docker(&host, &["exec", &name, "cat", "/tmp/post_start"]),
        "started-2"
    );
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);

    // A failing post_start fails its step with the hook's own last lines.
    t.compose(
        "bad",
        &format!(
            "services:\n  failing:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    post_start:\n      - command: sh -c 'echo hook-said-no; exit 3'\n"
        ),
    );
    let run = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::NotConverged);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(all.contains("exited with code 3"), "{all}");
    assert!(all.contains("hook-said-no"), "{all}");
    // Removed again, so the failure is not forgotten: the next pass tries again.
    let failing = t.cname("bad", "failing", 1);
    for h in &hosts.names {
        assert!(!hosts.fleet_containers(h, &t.id).contains(&failing), "{h}");
    }
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::Differs);
}

fn sharing_stack(t: &TestFleet, version: u32) {
    t.compose(
        "sh",
        &format!(
            r#"
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo hello-{version} > /www/index.html && echo seen > /shared/mark && httpd -f -p 8080 -h /www"]
    # Replaced below: neither sh waiting for httpd nor sleep (PID 1) stops on SIGTERM, and the
    # rollouts need not be watched after.
    stop_grace_period: 1s
    volumes: [/shared]
    deploy:
      replicas: 2
      update_config: {{monitor: 0s}}
      placement:
        max_replicas_per_node: 1
  side:
    image: {IMAGE}
    command: sleep 3600
    network_mode: service:web
    volumes_from: ["web:ro"]
    stop_grace_period: 1s
    deploy:
      replicas: 2
      update_config: {{monitor: 0s}}
"#
        ),
    );
}

/// Stack `ln`, every service on the first host: `app` links `web` as `site`, `other` does not.
fn link_stack(t: &TestFleet, first: &str) {
    t.compose(
        "ln",
        &format!(
            r#"
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo linked > /www/index.html && httpd -f -p 8080 -h /www"]
    x-convoy: {{hosts: [{first}]}}
  app:
    image: {IMAGE}
    command: sleep 3600
    links: ["web:site"]
    x-convoy: {{hosts: [{first}]}}
  other:
    image: {IMAGE}
    command: sleep 3600
    x-convoy: {{hosts: [{first}]}}
"#
        ),
    );
}

/// `links: [web:site]`: the linking container reaches web's replica on its host by the alias,
/// which is visible to it only.
fn check_link(hosts: &crate::fleet::Hosts, t: &TestFleet, first: &str) {
    let app = t.cname("ln", "app", 1);
    let mut got = String::new();
    wait_for(
        "web answers by its alias",
        std::time::Duration::from_secs(20),
        || {
            got = hosts.docker(
                first,
                &[
                    "exec",
                    &app,
                    "sh",
                    "-c",
                    "wget -qO- http://site:8080/ || true",
                ],
            );
            got == "linked"
        },
    );
    // Only the linking container knows the alias. A name the network does not know waits for
    // the engine's DNS forwarder (10 s on the test hosts, which have no upstream resolver),
    // where the alias answers at once, as the linking container's fetch shows above: a 2 s
    // bound tells the two apart.
    let other = t.cname("ln", "other", 1);
    assert_eq!(
        hosts.docker(
            first,
            &[
                "exec",
                &other,
                "sh",
                "-c",
                "timeout 2 wget -qO- http://site:8080/ 2>/dev/null || echo unknown"
            ]
        ),
        "unknown"
    );
}

/// `network_mode: service:web` reaches web's port on 127.0.0.1, `volumes_from` sees web's
/// volume (read-only), each replica beside web's of the same slot; `links` gives an alias
/// (stack `ln`, converged in the same apply: one convergence for both); a second apply changes
/// nothing; web replaced, side is replaced after it and reaches the new one.
#[test]
fn services_sharing_a_namespace_volumes_or_a_link_run_beside_each_other() {
    let Some(hosts) = crate::fleet::Hosts::get() else {
        return;
    };
    let t = TestFleet::new();
    let _volumes = HostVolumes(&hosts, t.id.clone());
    let _cleanup = crate::fleet::HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let state = t.path().join("state").to_string_lossy().into_owned();
    sharing_stack(&t, 1);
    let first = hosts.names[0].clone();
    link_stack(&t, &first);
    t.convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    let check = |version: u32| {
        for slot in 1..=2 {
            let web = t.cname("sh", "web", slot);
            let side = t.cname("sh", "side", slot);
            let host = host_of(&hosts, &t.id, &web);
            assert_eq!(host_of(&hosts, &t.id, &side), host, "slot {slot}");
            let mut got = String::new();
            wait_for(
                "web answers inside side",
                std::time::Duration::from_secs(20),
                || {
                    got = hosts.docker(
                        &host,
                        &[
                            "exec",
                            &side,
                            "sh",
                            "-c",
                            "wget -qO- http://127.0.0.1:8080/ || true",
                        ],
                    );
                    got == format!("hello-{version}")
                },
            );
            assert_eq!(
                hosts.docker(&host, &["exec", &side, "cat", "/shared/mark"]),
                "seen"
            );
            // Read-only, as written.
            assert_eq!(
                hosts.docker(
                    &host,
                    &[
                        "exec",
                        &side,
                        "sh",
                        "-c",
                        "touch /shared/x 2>/dev/null && echo rw || echo ro"
                    ]
                ),
                "ro"
            );
        }
    };
    check(1);
    check_link(&hosts, &t, &first);
    let view = |t: &TestFleet| -> Vec<String> {
        let mut v: Vec<String> = hosts
            .names
            .iter()
            .flat_map(|h| {
                hosts
                    .fleet_containers(h, &t.id)
                    .into_iter()
                    .map(|n| hosts.docker(h, &["inspect", "-f", "{{.Name}} {{.Id}}", &n]))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort();
        v
    };
    let before = view(&t);
    let again = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(view(&t), before, "a second apply replaced something");

    // web replaced: side loses its namespace with it and is made again after it.
    sharing_stack(&t, 2);
    let run = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    assert!(run.stdout.contains("namespace of `web`"), "{}", run.stdout);
    check(2);
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);
}
