//! The multi-host fleet over real SSH: hosts in network namespaces (tests/fleet/up), each with
//! its own dockerd and sshd. Every test here holds `FLEET_LOCK` for its whole run: some stop
//! or cut hosts, and the handshake count must not see another test's connections.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::harness::*;

static FLEET_LOCK: Mutex<()> = Mutex::new(());

/// The test fleet as `tests/fleet/up` describes it in `fleet.env`.
pub struct Hosts {
    pub env: BTreeMap<String, String>,
    pub names: Vec<String>,
    _guard: MutexGuard<'static, ()>,
}

impl Hosts {
    /// The fleet, or `None` (skip) when none is up and the run does not require one.
    pub fn get() -> Option<Hosts> {
        if !docker_available() {
            return None;
        }
        let guard = FLEET_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let path = std::env::var("CONVOY_FLEET_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(
                    std::env::var("FLEET_DIR").unwrap_or_else(|_| "/var/tmp/convoy-fleet".into()),
                )
                .join("fleet.env")
            });
        let Ok(text) = std::fs::read_to_string(&path) else {
            if docker_required() {
                panic!("the test fleet is required but {} is missing: run tests/fleet/up (scripts/test does)", path.display());
            }
            eprintln!(
                "SKIPPED: no test fleet at {} (tests/fleet/up makes one)",
                path.display()
            );
            return None;
        };
        let env: BTreeMap<String, String> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let names = env["HOSTS"].split(',').map(str::to_string).collect();
        let hosts = Hosts {
            env,
            names,
            _guard: guard,
        };
        // A previous test may have left a host stopped or cut if it failed: heal first.
        for i in 1..=hosts.names.len() {
            hosts.heal(i);
        }
        Some(hosts)
    }

    fn key(&self, host: &str, what: &str) -> String {
        self.env[&format!("{}_{what}", host.to_uppercase())].clone()
    }

    pub fn sock(&self, host: &str) -> String {
        self.key(host, "DOCKER_SOCK")
    }

    /// `docker -H <host's engine> ...`, straight on the socket: the independent judge.
    pub fn docker(&self, host: &str, args: &[&str]) -> String {
        let h = format!("unix://{}", self.sock(host));
        let mut all = vec!["-H", h.as_str()];
        all.extend_from_slice(args);
        docker(&all)
    }

    pub fn fleet_containers(&self, host: &str, fleet: &str) -> Vec<String> {
        let out = self.docker(
            host,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=convoy.fleet={fleet}"),
                "--format",
                "{{.Names}}",
            ],
        );
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// `convoy.yaml` for `t` over all hosts, with `extra` appended to each host's block.
    pub fn write_fleet_file(&self, t: &TestFleet, known_hosts: &str, extra: &str) {
        let mut y = format!(
            "fleet: {}\nssh:\n  user: root\n  identity_file: {}\n  known_hosts: {known_hosts}\nhosts:\n",
            t.id, self.env["FLEET_SSH_KEY"]
        );
        for (i, h) in self.names.iter().enumerate() {
            y.push_str(&format!(
                "  {h}:\n    address: ssh://root@{}\n    docker_socket: {}\n    labels: {{zone: z{}}}\n{extra}",
                self.key(h, "ADDR"),
                self.sock(h),
                i % 2
            ));
        }
        t.write("convoy.yaml", &y);
    }

    /// [`Hosts::write_fleet_file`] with no host extra and a `proxy:` section of `proxy` (its
    /// indented lines).
    pub fn write_proxy_fleet_file(&self, t: &TestFleet, proxy: &str) {
        self.write_fleet_file(t, &self.known_hosts(), "");
        let fleet = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
        t.write("convoy.yaml", &format!("{fleet}proxy:\n{proxy}"));
    }

    pub fn known_hosts(&self) -> String {
        self.env["FLEET_KNOWN_HOSTS"].clone()
    }

    fn script(&self, name: &str, n: usize) {
        let status = Command::new(project_root().join("tests/fleet").join(name))
            .arg(n.to_string())
            .env("FLEET_DIR", &self.env["FLEET_DIR"])
            .status()
            .expect("fleet script");
        assert!(status.success(), "tests/fleet/{name} {n} failed");
    }

    pub fn stop(&self, n: usize) {
        self.script("host-stop", n);
    }
    pub fn start(&self, n: usize) {
        self.script("host-start", n);
    }
    pub fn cut(&self, n: usize) {
        self.script("host-cut", n);
    }
    /// Brings host `n` fully back whatever was done to it.
    pub fn heal(&self, n: usize) {
        self.script("host-heal", n);
        let host = &self.names[n - 1];
        if docker_try(&["-H", &format!("unix://{}", self.sock(host)), "info"]).is_none() {
            self.start(n);
        }
    }

    /// Lines in a host's sshd log that record an accepted login.
    pub fn handshakes(&self, host: &str) -> usize {
        std::fs::read_to_string(self.key(host, "SSHD_LOG"))
            .map(|s| {
                s.lines()
                    .filter(|l| l.contains("Accepted publickey"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Brings every host back (started, link up) when dropped. Declared after the cleanup guards,
/// so that it drops before them: a stopped host's engine cannot be cleaned.
pub struct Restore<'a>(pub &'a Hosts);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        for i in 1..=self.0.names.len() {
            self.0.heal(i);
        }
    }
}

fn spread_stack(t: &TestFleet, replicas: u32) {
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    deploy:\n      replicas: {replicas}\n"),
    );
}

/// Removes this fleet's containers from every host (the harness's drop only sees the root engine).
pub struct HostCleanup<'a>(pub &'a Hosts, pub String);

impl Drop for HostCleanup<'_> {
    fn drop(&mut self) {
        for h in &self.0.names {
            let sock = format!("unix://{}", self.0.sock(h));
            let label = format!("label=convoy.fleet={}", self.1);
            if let Some(ids) = docker_try(&["-H", &sock, "ps", "-aq", "--filter", &label]) {
                let ids: Vec<&str> = ids.split_whitespace().collect();
                if !ids.is_empty() {
                    let mut args = vec!["-H", sock.as_str(), "rm", "-f"];
                    args.extend(ids);
                    let _ = docker_try(&args);
                }
            }
            if let Some(nets) =
                docker_try(&["-H", &sock, "network", "ls", "-q", "--filter", &label])
            {
                for n in nets.split_whitespace() {
                    let _ = docker_try(&["-H", &sock, "network", "rm", n]);
                }
            }
        }
    }
}

/// Removes an image tag locally and on every host; declared before `HostCleanup` so that it
/// drops after it (containers first, or the engine keeps the image).
struct Untag<'a>(&'a Hosts, String);

impl Drop for Untag<'_> {
    fn drop(&mut self) {
        let _ = docker_try(&["rmi", &self.1]);
        for h in &self.0.names {
            let _ = docker_try(&["-H", &format!("unix://{}", self.0.sock(h)), "rmi", &self.1]);
        }
    }
}

/// Unix time with nanoseconds, as `docker events --since` takes it.
fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn state_dir(t: &TestFleet) -> String {
    t.path().join("state").to_string_lossy().into_owned()
}

#[test]
fn a_stack_spread_over_three_hosts_and_one_connection_per_host() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    spread_stack(&t, 3);
    let before: Vec<usize> = hosts.names.iter().map(|h| hosts.handshakes(h)).collect();
    let out = t
        .convoy(&["apply", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::Converged);
    assert!(out.stdout.contains("Converged"), "{}", out.stdout);
    // One apply observes, acts and observes again: one SSH handshake per host in all.
    let after: Vec<usize> = hosts.names.iter().map(|h| hosts.handshakes(h)).collect();
    for (i, h) in hosts.names.iter().enumerate() {
        assert_eq!(after[i] - before[i], 1, "handshakes on {h}");
    }
    // Round-robin in host-name order, checked on each engine directly.
    for (i, h) in hosts.names.iter().enumerate() {
        assert_eq!(
            hosts.fleet_containers(h, &t.id),
            vec![t.cname("web", "app", i as u32 + 1)],
            "{h}"
        );
    }
    // The per-process control folder is gone, and no master is left running.
    let ctl = t.path().join("state/c");
    let leftovers: Vec<_> = std::fs::read_dir(&ctl)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| n.to_string_lossy().ends_with(".lock")),
        "{leftovers:?}"
    );
    t.convoy(&["diff", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::InSync);

    let hosts_out = t
        .convoy(&["hosts", "--output", "json", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::AllReachable);
    let doc: serde_json::Value = serde_json::from_str(&hosts_out.stdout).unwrap();
    for h in doc["hosts"].as_array().unwrap() {
        assert_eq!(h["reachable"], true, "{h}");
        assert_eq!(h["containers"], 1, "{h}");
        assert!(
            h["docker_version"].as_str().unwrap().starts_with("20."),
            "{h}"
        );
        assert!(h["rtt_ms"].as_f64().unwrap() < 1000.0, "{h}");
    }
}

#[test]
fn a_stopped_host_and_a_partitioned_host_do_not_hold_up_the_third() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    // One bounded attempt per host: the partitioned host costs `connect_timeout`, no more.
    let fleet_file = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
    t.write("convoy.yaml", &format!("connect_timeout: 2s\n{fleet_file}"));
    spread_stack(&t, 3);
    let _restore = Restore(&hosts);
    hosts.stop(1);
    hosts.cut(2);
    let started = Instant::now();
    let out = t
        .convoy(&["apply", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::NotConverged);
    let took = started.elapsed();
    let (h1, h2, h3) = (&hosts.names[0], &hosts.names[1], &hosts.names[2]);
    assert!(
        out.stdout.contains(&format!("host {h1} is unreachable")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("host {h2} is unreachable")),
        "{}",
        out.stdout
    );
    // connect_timeout (2 s, the two hosts at once) plus the work on the third host: the work
    // is under a second here, the margin is for a loaded machine.
    assert!(
        took < Duration::from_secs(7),
        "apply took {took:?} with two hosts gone"
    );
    assert_eq!(
        hosts.fleet_containers(h3, &t.id),
        vec![t.cname("web", "app", 3)]
    );
    t.convoy(&["diff", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::Unobserved);

    hosts.start(1);
    hosts.heal(2);
    t.convoy(&["apply", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::Converged);
    assert_eq!(
        hosts.fleet_containers(h1, &t.id),
        vec![t.cname("web", "app", 1)]
    );
    assert_eq!(
        hosts.fleet_containers(h2, &t.id),
        vec![t.cname("web", "app", 2)]
    );
}

/// A known_hosts file where host1's line carries a key that is not host1's.
fn known_hosts_with_a_wrong_key_for_host1(hosts: &Hosts, t: &TestFleet) -> PathBuf {
    let fake = t.path().join("fake_key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&fake)
        .status()
        .unwrap();
    assert!(status.success());
    let fake_pub = std::fs::read_to_string(fake.with_extension("pub")).unwrap();
    let fake_pub: Vec<&str> = fake_pub.split_whitespace().collect();
    let h1_addr = hosts.key(&hosts.names[0], "ADDR");
    let real = std::fs::read_to_string(hosts.known_hosts()).unwrap();
    let mut kh = String::new();
    for line in real.lines() {
        if line.starts_with(&format!("{h1_addr} ")) {
            kh.push_str(&format!("{h1_addr} {} {}\n", fake_pub[0], fake_pub[1]));
        } else {
            kh.push_str(line);
            kh.push('\n');
        }
    }
    let kh_path = t.path().join("known_hosts");
    std::fs::write(&kh_path, kh).unwrap();
    kh_path
}

#[test]
fn the_daemon_parks_a_host_with_a_changed_key_and_says_so_once() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    let kh_path = known_hosts_with_a_wrong_key_for_host1(&hosts, &t);
    hosts.write_fleet_file(&t, &kh_path.to_string_lossy(), "");
    spread_stack(&t, 3);
    let before = hosts.handshakes(&hosts.names[0]);
    let d = Daemon::start(&t, &["--resync", "1"]);
    let (h1, h2, h3) = (&hosts.names[0], &hosts.names[1], &hosts.names[2]);
    // A failing host never blocks the others.
    wait_for(
        "the other two hosts converged",
        Duration::from_secs(30),
        || {
            hosts.fleet_containers(h2, &t.id).len() == 1
                && hosts.fleet_containers(h3, &t.id).len() == 1
        },
    );
    // Several passes later (resync every second) ...
    let passes = |log: &str| log.matches("pass ended").count();
    let seen = passes(&d.log());
    wait_for("three more passes", Duration::from_secs(15), || {
        passes(&d.log()) >= seen + 3
    });
    let log = d.log();
    let about_h1 = |l: &&str| {
        l.match_indices(&format!("host={h1}"))
            .any(|(i, m)| !l[i + m.len()..].starts_with(|c: char| c.is_alphanumeric()))
    };
    let warns: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") && about_h1(l))
        .collect();
    assert_eq!(
        warns.len(),
        1,
        "one warning about {h1}, got:\n{}",
        warns.join("\n")
    );
    assert!(warns[0].contains("host key changed"), "{}", warns[0]);
    let retries = log
        .lines()
        .filter(|l| l.contains("reconnecting") && about_h1(l))
        .count();
    assert_eq!(
        retries, 0,
        "a parked host is not retried every pass:\n{log}"
    );
    assert_eq!(
        hosts.handshakes(h1),
        before,
        "no login on a host with a changed key"
    );
    assert!(hosts.fleet_containers(h1, &t.id).is_empty());
    assert_eq!(d.stop(), Outcome::Stopped.code());
}

#[test]
fn a_changed_host_key_is_refused_and_nothing_is_sent_to_that_host() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    let kh_path = known_hosts_with_a_wrong_key_for_host1(&hosts, &t);
    hosts.write_fleet_file(&t, &kh_path.to_string_lossy(), "");
    spread_stack(&t, 3);
    let before = hosts.handshakes(&hosts.names[0]);
    let out = t
        .convoy(&["apply", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::NotConverged);
    assert!(out.stdout.contains("host key changed"), "{}", out.stdout);
    assert_eq!(
        hosts.handshakes(&hosts.names[0]),
        before,
        "no login on a host with a changed key"
    );
    assert!(hosts.fleet_containers(&hosts.names[0], &t.id).is_empty());
    assert_eq!(hosts.fleet_containers(&hosts.names[1], &t.id).len(), 1);
}

#[test]
fn image_push_sends_only_what_hosts_lack_by_image_id() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let tag = format!("convoy-test/push-{}:1", t.id);
    let _untag = Untag(&hosts, tag.clone());
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    spread_stack(&t, 1);
    docker(&["tag", IMAGE, &tag]);
    let loads = |since: &str| -> usize {
        let until = now();
        hosts
            .names
            .iter()
            .map(|h| {
                hosts
                    .docker(
                        h,
                        &[
                            "events",
                            "--since",
                            since,
                            "--until",
                            &until,
                            "--filter",
                            "type=image",
                            "--filter",
                            "event=load",
                            "--format",
                            "{{.Action}}",
                        ],
                    )
                    .lines()
                    .count()
            })
            .sum()
    };

    let t0 = now();
    let out = t
        .convoy(&["image", "push", &tag, "--state-dir", &state_dir(&t)])
        .outcome(Outcome::Pushed);
    assert_eq!(out.stdout.matches("sent").count(), 3, "{}", out.stdout);
    assert_eq!(loads(&t0), 3);
    let want = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    for h in &hosts.names {
        assert_eq!(
            hosts.docker(h, &["image", "inspect", "-f", "{{.Id}}", &tag]),
            want
        );
    }

    // Again: every host has that image ID, so no engine loads anything.
    let t1 = now();
    let out = t
        .convoy(&["image", "push", &tag, "--state-dir", &state_dir(&t)])
        .outcome(Outcome::Pushed);
    assert_eq!(
        out.stdout.matches("already has").count(),
        3,
        "{}",
        out.stdout
    );
    assert_eq!(loads(&t1), 0);

    // A different image under the same tag is sent, to the named host only.
    docker(&["tag", "convoy-test/busybox:2", &tag]);
    let want2 = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    assert_ne!(want, want2);
    let h1 = hosts.names[0].clone();
    let out = t
        .convoy(&[
            "image",
            "push",
            &tag,
            "--host",
            &h1,
            "--state-dir",
            &state_dir(&t),
        ])
        .outcome(Outcome::Pushed);
    assert_eq!(out.stdout.matches("sent").count(), 1, "{}", out.stdout);
    assert_eq!(
        hosts.docker(&h1, &["image", "inspect", "-f", "{{.Id}}", &tag]),
        want2
    );
    assert_eq!(
        hosts.docker(
            &hosts.names[1],
            &["image", "inspect", "-f", "{{.Id}}", &tag]
        ),
        want
    );
}

#[test]
fn apply_pushes_images_to_hosts_that_take_pushed_images() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let tag = format!("convoy-test/apply-push-{}:1", t.id);
    let _untag = Untag(&hosts, tag.clone());
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "    images: push\n");
    docker(&["tag", IMAGE, &tag]);
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {tag}\n    command: sleep 3600\n    deploy:\n      replicas: 3\n"),
    );
    t.convoy(&["apply", "--state-dir", &state_dir(&t)])
        .outcome(Outcome::Converged);
    let want = docker(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    for h in &hosts.names {
        assert_eq!(hosts.fleet_containers(h, &t.id).len(), 1, "{h}");
        assert_eq!(
            hosts.docker(h, &["image", "inspect", "-f", "{{.Id}}", &tag]),
            want,
            "{h}"
        );
    }
}
