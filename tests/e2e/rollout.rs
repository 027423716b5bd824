//! Rolling updates on the SSH test fleet (issue 10): a changed service rolls out in batches
//! over 4 replicas on 3 hosts, in both orders, with the availability floor sampled on the
//! engines throughout; a bad version (one that exits, one whose healthcheck never passes, one
//! whose readiness probe answers 500) is rolled back on every host with the old containers
//! restarted, not recreated, and its spec quarantined without a retry loop; a daemon killed
//! mid-rollout continues it, and a quarantine survives a restart with the state deleted.
//! Every test holds the fleet lock (`Hosts::get`) and cleans up its containers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// The stack: `web`, 4 replicas of a busybox `httpd` whose page and CGI say which version
/// runs; healthy once `/tmp/up` exists. `version` is part of the command (a change rolls
/// out); `extra` is added to the service (update_config, x-convoy).
fn web(t: &TestFleet, version: &str, start: &str, extra: &str) {
    t.compose(
        "ro",
        &format!(
            r#"services:
  web:
    image: {IMAGE}
    command:
      - sh
      - -c
      - |
        mkdir -p /www/cgi-bin && echo {version} > /www/index.html
        printf '#!/bin/sh\nprintf "Status: 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nok\\n"\n' > /www/cgi-bin/ready
        chmod +x /www/cgi-bin/ready
        {start}
        touch /tmp/up
        exec httpd -f -p 8080 -h /www
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/up"]
      interval: 500ms
      timeout: 2s
      retries: 2
      start_period: 5s
    deploy:
      replicas: 4
{extra}"#
        ),
    );
}

/// Samples, every 100 ms on each host, how many of the service's replicas run and are
/// healthy, until stopped; the minimum of the sums of each host's latest sample.
struct Floor {
    stop: Arc<AtomicBool>,
    min: Arc<Mutex<Option<usize>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Floor {
    fn start(hosts: &Hosts, fleet: &str) -> Floor {
        let stop = Arc::new(AtomicBool::new(false));
        let min = Arc::new(Mutex::new(None));
        let latest: Arc<Mutex<Vec<Option<usize>>>> =
            Arc::new(Mutex::new(vec![None; hosts.names.len()]));
        let mut threads = Vec::new();
        for (i, h) in hosts.names.iter().enumerate() {
            let sock = format!("unix://{}", hosts.sock(h));
            let (stop, min, latest) = (stop.clone(), min.clone(), latest.clone());
            let label = format!("label=convoy.fleet={fleet}");
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let t0 = Instant::now();
                    let out = docker_try(&[
                        "-H",
                        &sock,
                        "ps",
                        "--filter",
                        &label,
                        "--filter",
                        "label=convoy.service=web",
                        "--filter",
                        "health=healthy",
                        "--format",
                        "{{.Names}}",
                    ]);
                    if let Some(out) = out {
                        // Only the replicas' own names: a kept `.prev` still running counts
                        // too (it serves), as it does under start-first.
                        let n = out.lines().filter(|l| !l.is_empty()).count();
                        let mut l = latest.lock().unwrap();
                        l[i] = Some(n);
                        if l.iter().all(Option::is_some) {
                            let sum: usize = l.iter().map(|x| x.unwrap()).sum();
                            let mut m = min.lock().unwrap();
                            *m = Some(m.map_or(sum, |v: usize| v.min(sum)));
                        }
                    }
                    let spent = t0.elapsed();
                    if spent < Duration::from_millis(100) {
                        std::thread::sleep(Duration::from_millis(100) - spent);
                    }
                }
            }));
        }
        Floor { stop, min, threads }
    }

    fn end(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        let m = *self.min.lock().unwrap();
        m.expect("the floor was sampled")
    }
}

/// The service's containers on every host: (host, name, id, running, spec hash).
fn replicas(hosts: &Hosts, t: &TestFleet) -> Vec<(String, String, String, bool, String)> {
    let mut out = Vec::new();
    for h in &hosts.names {
        let lines = hosts.docker(
            h,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=convoy.fleet={}", t.id),
                "--filter",
                "label=convoy.service=web",
                "--format",
                "{{.Names}} {{.ID}} {{.State}} {{.Label \"convoy.spec-hash\"}}",
            ],
        );
        for l in lines.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 4 {
                out.push((
                    h.clone(),
                    f[0].to_string(),
                    f[1].to_string(),
                    f[2] == "running",
                    f[3].to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Quarantine records of the fleet on every host: (host, record name).
fn records(hosts: &Hosts, t: &TestFleet) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for h in &hosts.names {
        for n in hosts
            .docker(
                h,
                &[
                    "ps",
                    "-a",
                    "--filter",
                    &format!("label=convoy.fleet={}", t.id),
                    "--filter",
                    "label=convoy.quarantine",
                    "--format",
                    "{{.Names}}",
                ],
            )
            .lines()
            .filter(|l| !l.is_empty())
        {
            out.push((h.clone(), n.to_string()));
        }
    }
    out
}

/// Waits until all 4 replicas of the service run and are healthy.
fn all_healthy(hosts: &Hosts, t: &TestFleet) {
    wait_for("4 healthy replicas", Duration::from_secs(30), || {
        let n: usize = hosts
            .names
            .iter()
            .map(|h| {
                hosts
                    .docker(
                        h,
                        &[
                            "ps",
                            "--filter",
                            &format!("label=convoy.fleet={}", t.id),
                            "--filter",
                            "health=healthy",
                            "--format",
                            "{{.Names}}",
                        ],
                    )
                    .lines()
                    .filter(|l| !l.is_empty())
                    .count()
            })
            .sum();
        n == 4
    });
}

/// `wait_for`, showing the daemon's log when the wait fails.
fn wait_logged(d: &Daemon, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; daemon log:\n{}", d.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup(hosts: &Hosts) -> TestFleet {
    let t = TestFleet::new();
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    t
}

const FAST: &str =
    "      update_config:\n        parallelism: 1\n        delay: 500ms\n        monitor: 1s\n";

#[test]
fn a_rolling_update_keeps_the_floor_in_both_orders() {
    let Some(hosts) = Hosts::get() else { return };
    let t = setup(&hosts);
    let _clean = HostCleanup(&hosts, t.id.clone());
    web(&t, "v1", "", FAST);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let v1 = replicas(&hosts, &t);
    assert_eq!(v1.len(), 4, "{v1:?}");
    let spread: std::collections::BTreeSet<&String> = v1.iter().map(|r| &r.0).collect();
    assert_eq!(spread.len(), 3, "4 replicas on 3 hosts: {v1:?}");

    // stop-first, one at a time: at least 3 of 4 up throughout.
    web(&t, "v2", "sleep 1", FAST);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout.contains("in 4 batch(es) of 1, stop-first"),
        "{}",
        diff.stdout
    );
    all_healthy(&hosts, &t);
    let floor = Floor::start(&hosts, &t.id);
    let run = t.convoy(&["apply"]).outcome(Outcome::Converged);
    let min = floor.end();
    assert!(
        min >= 3,
        "stop-first parallelism 1: {min} of 4 up at one point"
    );
    assert!(run.stdout.contains("rolled out"), "{}", run.stdout);
    let v2 = replicas(&hosts, &t);
    assert_eq!(v2.len(), 4, "no kept replica left: {v2:?}");
    assert!(v2.iter().all(|r| r.3 && r.4 != v1[0].4), "{v2:?}");
    eprintln!("stop-first: at least {min} of 4 healthy throughout");

    // start-first, two at a time: the old ones serve until the new ones are up.
    let start_first = "      update_config:\n        parallelism: 2\n        order: start-first\n        monitor: 1s\n";
    web(&t, "v3", "sleep 1", start_first);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout.contains("in 2 batch(es) of 2, start-first"),
        "{}",
        diff.stdout
    );
    all_healthy(&hosts, &t);
    let floor = Floor::start(&hosts, &t.id);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let min = floor.end();
    assert!(min >= 4, "start-first: {min} of 4 up at one point");
    let v3 = replicas(&hosts, &t);
    assert_eq!(v3.len(), 4, "{v3:?}");
    assert!(v3.iter().all(|r| r.3 && r.4 != v2[0].4), "{v3:?}");
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    eprintln!("start-first: at least {min} of 4 healthy throughout");
}

#[test]
fn a_bad_version_is_rolled_back_on_every_host_and_quarantined() {
    let Some(hosts) = Hosts::get() else { return };
    let t = setup(&hosts);
    let _clean = HostCleanup(&hosts, t.id.clone());
    let two = "      update_config:\n        parallelism: 2\n        monitor: 1s\n    x-convoy:\n      progress_deadline: 4s\n      readiness: {port: 8080, path: /cgi-bin/ready}\n";
    web(&t, "v1", "", two);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let good = replicas(&hosts, &t);
    let good_ids: Vec<&String> = good.iter().map(|r| &r.2).collect();

    let bad = [
        ("exits", "exit 3"),
        ("unhealthy", "rm -f /tmp/up; exec httpd -f -p 8080 -h /www"),
        (
            "probe 500",
            r#"printf '#!/bin/sh\nprintf "Status: 500 Bad\\r\\n\\r\\n"\n' > /www/cgi-bin/ready"#,
        ),
    ];
    for (what, start) in bad {
        web(&t, &format!("bad-{what}").replace(' ', "-"), start, two);
        all_healthy(&hosts, &t);
        let floor = Floor::start(&hosts, &t.id);
        let run = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
        let min = floor.end();
        assert!(
            run.stdout.contains("rolled back ") && run.stdout.contains("/web"),
            "{what}: {}",
            run.stdout
        );
        assert!(min >= 2, "{what}: {min} of 4 up at one point");
        // The old containers run again, the same ones, on every host; nothing kept is left.
        let now = replicas(&hosts, &t);
        let ids: Vec<&String> = now.iter().map(|r| &r.2).collect();
        assert_eq!(
            ids, good_ids,
            "{what}: the old replicas are restarted, not made anew"
        );
        assert!(now.iter().all(|r| r.3), "{what}: {now:?}");
        // Quarantined on every host of the service, and not tried again.
        let recs = records(&hosts, &t);
        let on: std::collections::BTreeSet<&String> = recs.iter().map(|r| &r.0).collect();
        assert_eq!(on.len(), 3, "{what}: a record on every host: {recs:?}");
        let again = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
        assert!(
            again.stdout.contains("quarantined"),
            "{what}: {}",
            again.stdout
        );
        assert_eq!(
            replicas(&hosts, &t)
                .iter()
                .map(|r| r.2.clone())
                .collect::<Vec<_>>(),
            good_ids.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "{what}: nothing made for a quarantined spec"
        );
        eprintln!("{what}: rolled back, at least {min} of 4 healthy throughout");
    }
    // A good change rolls out, and the records of the failed specs go.
    web(&t, "v2", "", two);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(records(&hosts, &t).is_empty(), "{:?}", records(&hosts, &t));
}

#[test]
fn a_killed_daemon_continues_its_rollout_and_a_quarantine_survives_a_lost_state() {
    let Some(hosts) = Hosts::get() else { return };
    let t = setup(&hosts);
    let _clean = HostCleanup(&hosts, t.id.clone());
    let slow = "      update_config:\n        parallelism: 1\n        monitor: 1s\n";
    web(&t, "v1", "", slow);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let v1 = replicas(&hosts, &t)[0].4.clone();

    // A version that takes 3 s to be up: kill the daemon once the first batch is done.
    web(&t, "v2", "sleep 3", slow);
    let mut d = Daemon::start(&t, &[]);
    wait_logged(&d, "the first batch", Duration::from_secs(60), || {
        let r = replicas(&hosts, &t);
        r.iter()
            .filter(|r| r.4 != v1 && !r.1.ends_with(".prev"))
            .count()
            >= 1
            && r.iter()
                .filter(|r| r.4 == v1 && !r.1.ends_with(".prev"))
                .count()
                >= 2
    });
    d.kill9();
    let mid = replicas(&hosts, &t);
    assert!(
        mid.iter().any(|r| r.4 == v1 && !r.1.ends_with(".prev")),
        "killed mid-rollout: {mid:?}"
    );
    let mut d = Daemon::start(&t, &[]);
    wait_logged(&d, "the rollout to end", Duration::from_secs(90), || {
        let r = replicas(&hosts, &t);
        r.len() == 4 && r.iter().all(|r| r.3 && r.4 != v1)
    });
    d.kill9();

    // A bad version under the daemon: rolled back, quarantined, then left alone.
    web(&t, "bad", "exit 3", slow);
    let d = Daemon::start(&t, &[]);
    wait_logged(&d, "the quarantine record", Duration::from_secs(60), || {
        records(&hosts, &t).len() == 3
    });
    wait_logged(&d, "the rollback", Duration::from_secs(30), || {
        let r = replicas(&hosts, &t);
        r.len() == 4 && r.iter().all(|r| r.3)
    });
    let settled = replicas(&hosts, &t);
    // No retry loop: over a minute, nothing is made or replaced, and the daemon runs no more
    // passes than its resync and the engine's events of the rollback ask for.
    let passes = |log: &str| log.matches("pass ended").count();
    let before = passes(&d.log());
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        assert_eq!(
            replicas(&hosts, &t),
            settled,
            "a quarantined spec is not retried"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let during = passes(&d.log()) - before;
    assert!(
        during <= 4,
        "{during} passes in a minute after the rollback"
    );
    eprintln!("a minute after the rollback: {during} passes, no container made");
    drop(d);
    // The state directory goes; the record on the engines does not.
    std::fs::remove_dir_all(t.path().join("state")).expect("state dir");
    let d = Daemon::start(&t, &[]);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        assert_eq!(
            replicas(&hosts, &t),
            settled,
            "still quarantined after a restart"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = d.log();
    assert!(
        log.contains("result=\"held\"") || log.contains("result=held"),
        "{log}"
    );
}

#[test]
fn an_interrupted_apply_stops_after_the_batch_in_flight_and_the_next_continues() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let stack = |version: &str, wait: u32| {
        t.compose(
            "si",
            &format!(
                r#"services:
  w:
    image: {IMAGE}
    command: ["sh", "-c", "sleep {wait}; touch /tmp/up; echo {version}; exec sleep 3600"]
    stop_grace_period: 1s
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/up"]
      interval: 300ms
      retries: 2
      start_period: 20s
    deploy:
      replicas: 3
      update_config: {{parallelism: 1, monitor: 0s}}
"#
            ),
        )
    };
    stack("v1", 0);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    stack("v2", 3);
    let child = t.spawn_convoy(&["apply"]);
    wait_for("the first batch", Duration::from_secs(30), || {
        t.containers().iter().any(|n| n.ends_with(".prev"))
    });
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("apply ends");
    let run = Run::from(out).outcome(Outcome::NotConverged);
    assert!(run.stdout.contains("interrupted"), "{}", run.stdout);
    // Stopped after the batch in flight: the other replicas still run the old version.
    let names = t.containers();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".prev")).count(),
        1,
        "{names:?}"
    );
    assert!(
        t.inspect(&t.cname("si", "w", 3), "{{json .Config.Cmd}}")
            .contains("v1"),
        "slot 3 untouched"
    );
    // The next apply continues from the labels.
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let names = t.containers();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in &names {
        assert!(t.inspect(n, "{{json .Config.Cmd}}").contains("v2"), "{n}");
    }
}
