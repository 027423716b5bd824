//! Placement and healing across the SSH test fleet: spread, constraints, ports, caps, pending
//! reservations; under the daemon, lost hosts (stopped or partitioned) rescheduled after
//! `host_down_after` and fenced when they return; cordon and drain through the watched files;
//! unowned containers untouched throughout. Every test holds the fleet lock (`Hosts::get`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// Writes the fleet file with a short `host_down_after` and per-host extra lines.
fn fleet_file(hosts: &Hosts, t: &TestFleet, extra: &BTreeMap<usize, &str>) {
    let mut y = format!(
        "fleet: {}\nhost_down_after: 3s\nssh:\n  user: root\n  identity_file: {}\n  known_hosts: {}\nhosts:\n",
        t.id,
        hosts.env["FLEET_SSH_KEY"],
        hosts.known_hosts()
    );
    for (i, h) in hosts.names.iter().enumerate() {
        y.push_str(&format!(
            "  {h}:\n    address: ssh://root@{}\n    docker_socket: {}\n    labels: {{zone: z{}}}\n    capacity: {{cpus: 2, memory: 1g}}\n{}",
            hosts.env[&format!("{}_ADDR", h.to_uppercase())],
            hosts.sock(h),
            i % 2,
            extra.get(&(i + 1)).copied().unwrap_or("")
        ));
    }
    t.write("convoy.yaml", &y);
}

/// Replica names of this fleet per host, from each engine: `{host1: [..], ...}`.
fn layout(hosts: &Hosts, t: &TestFleet, running_only: bool) -> BTreeMap<String, Vec<String>> {
    hosts
        .names
        .iter()
        .map(|h| {
            let mut args = vec![
                "ps".to_string(),
                "--filter".into(),
                format!("label=convoy.fleet={}", t.id),
            ];
            if running_only {
                args.push("--filter".into());
                args.push("status=running".into());
            } else {
                args.push("-a".into());
            }
            args.extend(["--format".to_string(), "{{.Names}}".to_string()]);
            let sock = format!("unix://{}", hosts.sock(h));
            let mut a: Vec<&str> = vec!["-H", &sock];
            a.extend(args.iter().map(String::as_str));
            // A stopped host's engine does not answer: it runs nothing we can count.
            let out = docker_try(&a).unwrap_or_default();
            let mut v: Vec<String> = out
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            v.sort();
            (h.clone(), v)
        })
        .collect()
}

fn all_names(l: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut v: Vec<String> = l.values().flatten().cloned().collect();
    v.sort();
    v
}

/// One unowned container per host, checked unchanged at the end.
struct Bystanders<'a> {
    hosts: &'a Hosts,
    ids: Vec<(String, String, String)>,
}

impl<'a> Bystanders<'a> {
    fn start(hosts: &'a Hosts, t: &TestFleet) -> Bystanders<'a> {
        let mut ids = Vec::new();
        for h in &hosts.names {
            let name = format!("{}-bystander", t.id);
            let id = hosts.docker(
                h,
                &[
                    "run",
                    "-d",
                    "--restart",
                    "unless-stopped",
                    "--name",
                    &name,
                    IMAGE,
                    "sleep",
                    "3600",
                ],
            );
            ids.push((h.clone(), name, id));
        }
        Bystanders { hosts, ids }
    }

    fn assert_untouched(&self) {
        for (h, name, id) in &self.ids {
            let now = self
                .hosts
                .docker(h, &["inspect", "-f", "{{.Id}} {{.State.Running}}", name]);
            assert_eq!(now, format!("{id} true"), "unowned container on {h}");
        }
    }
}

impl Drop for Bystanders<'_> {
    fn drop(&mut self) {
        for (h, name, _) in &self.ids {
            let _ = docker_try(&[
                "-H",
                &format!("unix://{}", self.hosts.sock(h)),
                "rm",
                "-f",
                name,
            ]);
        }
    }
}

fn sd(t: &TestFleet) -> String {
    t.path().join("state").to_string_lossy().into_owned()
}

#[test]
fn placement_spreads_by_zone_and_honours_constraints_ports_caps_and_capacity() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _c = HostCleanup(&hosts, t.id.clone());
    fleet_file(&hosts, &t, &BTreeMap::new());
    let (h1, h2, h3) = (
        hosts.names[0].clone(),
        hosts.names[1].clone(),
        hosts.names[2].clone(),
    );
    t.compose(
        "web",
        &format!(
            r#"
services:
  spread:
    image: {IMAGE}
    command: sleep 3600
    deploy:
      replicas: 4
      placement:
        preferences:
          - spread: node.labels.zone
  pinned:
    image: {IMAGE}
    command: sleep 3600
    deploy:
      replicas: 2
      placement:
        constraints: [node.labels.zone != z1, "node.hostname != {h1}"]
  port:
    image: {IMAGE}
    command: sleep 3600
    ports: ["18181:80"]
    deploy:
      replicas: 3
  capped:
    image: {IMAGE}
    command: sleep 3600
    deploy:
      replicas: 3
      placement:
        max_replicas_per_node: 1
  huge:
    image: {IMAGE}
    command: sleep 3600
    deploy:
      resources:
        reservations:
          memory: 4g
"#
        ),
    );
    let out = t
        .convoy(&["apply", "--state-dir", &sd(&t)])
        .outcome(Outcome::NotConverged);
    assert!(out.stdout.contains("pending"), "{}", out.stdout);
    assert!(
        out.stdout.contains("memory"),
        "pending names the resource: {}",
        out.stdout
    );
    let l = layout(&hosts, &t, true);
    let on = |host: &str, svc: &str| {
        l[host]
            .iter()
            .filter(|n| n.contains(&format!("-{svc}-")))
            .count()
    };
    // Zones: host1 z0, host2 z1, host3 z0: four replicas spread evenly over the two zones.
    assert_eq!(on(&h2, "spread"), 2, "{l:?}");
    assert_eq!(on(&h1, "spread") + on(&h3, "spread"), 2, "{l:?}");
    // zone != z1 and hostname != host1 leave host3 only.
    assert_eq!(on(&h3, "pinned"), 2, "{l:?}");
    for h in &hosts.names {
        assert_eq!(on(h, "port"), 1, "one published port per host: {l:?}");
        assert_eq!(on(h, "capped"), 1, "max_replicas_per_node: {l:?}");
        assert_eq!(on(h, "huge"), 0, "{l:?}");
    }
    let status = t
        .convoy(&["status", "--output", "json", "--state-dir", &sd(&t)])
        .outcome(Outcome::AllReachable);
    assert!(status.stdout.contains("huge"), "{}", status.stdout);
    let diff = t
        .convoy(&["diff", "--output", "json", "--state-dir", &sd(&t)])
        .outcome(Outcome::Differs);
    let doc: serde_json::Value = serde_json::from_str(&diff.stdout).unwrap();
    let pending = doc["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["service"], "huge");
    assert!(
        pending[0]["reason"].as_str().unwrap().contains("memory"),
        "{pending:?}"
    );
}

/// The host-loss scenario, with `lose` cutting host 1 off (stop or partition) and `restore`
/// bringing it back.
fn host_loss(lose: impl Fn(&Hosts), restore: impl Fn(&Hosts), partitioned: bool) {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _c = HostCleanup(&hosts, t.id.clone());
    let bystanders = Bystanders::start(&hosts, &t);
    fleet_file(&hosts, &t, &BTreeMap::new());
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    deploy:\n      replicas: 3\n"),
    );
    let d = Daemon::start(&t, &[]);
    let want: Vec<String> = (1..=3).map(|i| t.cname("web", "app", i)).collect();
    wait_for(
        "three replicas, one per host",
        Duration::from_secs(40),
        || {
            let l = layout(&hosts, &t, true);
            all_names(&l) == want && l.values().all(|v| v.len() == 1)
        },
    );
    let h1 = hosts.names[0].clone();
    let lost = layout(&hosts, &t, true)[&h1].clone();
    let _restore = crate::fleet::Restore(&hosts);
    let handshakes_before: usize = hosts.names.iter().map(|h| hosts.handshakes(h)).sum();
    lose(&hosts);
    // After host_down_after (3 s) the lost host's replica runs on the other two.
    wait_for(
        "the lost replica to run elsewhere",
        Duration::from_secs(20),
        || {
            let l = layout(&hosts, &t, true);
            let others: Vec<String> = l
                .iter()
                .filter(|(h, _)| **h != h1)
                .flat_map(|(_, v)| v.clone())
                .collect();
            lost.iter().all(|n| others.contains(n))
        },
    );
    if partitioned {
        // The partitioned host kept running its copy all along: two copies of one slot.
        assert_eq!(layout(&hosts, &t, true)[&h1], lost);
    }
    restore(&hosts);
    // Fencing: the returned host's stale copy is removed; every slot runs exactly once.
    wait_for("every slot exactly once", Duration::from_secs(30), || {
        let l = layout(&hosts, &t, false);
        all_names(&l) == want
    });
    let l = layout(&hosts, &t, true);
    assert_eq!(all_names(&l), want, "{l:?}");
    assert!(
        l[&h1].is_empty(),
        "nothing moves back just to even out: {l:?}"
    );
    bystanders.assert_untouched();
    // Reconnecting the lost host is the only new handshake of the whole episode.
    let handshakes_after: usize = hosts.names.iter().map(|h| hosts.handshakes(h)).sum();
    let restore_logins = hosts.names.len(); // host-heal / host-start log in once per host
    assert!(
        handshakes_after - handshakes_before <= 1 + restore_logins,
        "handshakes {handshakes_before} → {handshakes_after}"
    );
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_stopped_host_is_rescheduled_after_the_grace_period_and_fenced_on_return() {
    host_loss(|h| h.stop(1), |h| h.start(1), false);
}

#[test]
fn a_partitioned_host_is_rescheduled_and_its_running_copies_fenced_on_return() {
    host_loss(|h| h.cut(1), |h| h.heal(1), true);
}

#[test]
fn cordon_and_drain_through_the_watched_directory_and_one_connection_per_host() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _c = HostCleanup(&hosts, t.id.clone());
    let bystanders = Bystanders::start(&hosts, &t);
    fleet_file(&hosts, &t, &BTreeMap::new());
    let stack = |n: u32| {
        t.compose(
            "web",
            &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    deploy:\n      replicas: {n}\n"),
        )
    };
    stack(3);
    let before: Vec<usize> = hosts.names.iter().map(|h| hosts.handshakes(h)).collect();
    let d = Daemon::start(&t, &[]);
    wait_for("three replicas", Duration::from_secs(40), || {
        layout(&hosts, &t, true).values().all(|v| v.len() == 1)
    });
    let h3 = hosts.names[2].clone();
    // Cordon host3 and scale up: host3 keeps its replica, the new ones go elsewhere.
    fleet_file(&hosts, &t, &BTreeMap::from([(3, "    cordon: true\n")]));
    stack(5);
    wait_for("five replicas", Duration::from_secs(20), || {
        all_names(&layout(&hosts, &t, true)).len() == 5
    });
    let l = layout(&hosts, &t, true);
    assert_eq!(
        l[&h3].len(),
        1,
        "cordon keeps what runs and takes nothing new: {l:?}"
    );
    // Drain host3: its replica moves, and it ends empty of the fleet's containers.
    fleet_file(&hosts, &t, &BTreeMap::from([(3, "    drain: true\n")]));
    wait_for("host3 drained", Duration::from_secs(20), || {
        let l = layout(&hosts, &t, false);
        l[&h3].is_empty() && all_names(&layout(&hosts, &t, true)).len() == 5
    });
    // Many passes (two heals, two file changes): still one SSH connection per host.
    for i in [1, 2] {
        let name = t.cname("web", "app", i);
        for h in &hosts.names {
            let _ = docker_try(&[
                "-H",
                &format!("unix://{}", hosts.sock(h)),
                "rm",
                "-f",
                &name,
            ]);
        }
        wait_for("healed", Duration::from_secs(10), || {
            all_names(&layout(&hosts, &t, true)).len() == 5
        });
    }
    let after: Vec<usize> = hosts.names.iter().map(|h| hosts.handshakes(h)).collect();
    for (i, h) in hosts.names.iter().enumerate() {
        assert_eq!(
            after[i] - before[i],
            1,
            "handshakes on {h} over the daemon's life"
        );
    }
    bystanders.assert_untouched();
    assert_eq!(d.stop(), 0);
}
