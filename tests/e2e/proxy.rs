//! The per-host proxy (issue 13) on the 3-host SSH fleet, with real HAProxy and nginx: a web
//! service whose published port the proxies hold (`x-convoy: {ingress: true}`) keeps answering
//! a steady load from the test machine through a start-first rolling update, a failed update
//! rolled back, a `docker rm -f` of a replica, and a new proxy image (the proxies themselves
//! replaced start-first; then a second proxy container left on a host, as by an interrupted
//! replacement, removed by the next pass); the same scenario without the proxy (today's
//! stop-first on a fixed port) is run for the figure to compare with. The cross-host listeners
//! listen on each host's internal address only (`ss` in each host's namespace).
//!
//! The load client is this file's own: one request at a time over a fresh TCP connection, at a
//! fixed pace, counting answers that are not `200` with the expected body, for a bounded time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

const NGINX: &str = "convoy-test/nginx:1";
const PROXY: &str = "convoy-test/proxy:1";
/// The same image under a second name, tagged on the hosts by the test: a new `proxy.image`.
const PROXY2: &str = "convoy-test/proxy:2";

/// Requests at a fixed pace against one address until stopped (or `MAX` passes).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Load {
    const MAX: Duration = Duration::from_secs(240);

    fn start(addr: SocketAddr, per_second: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let pace = Duration::from_secs(1) / per_second;
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut errors = Vec::new();
            let mut next = Instant::now();
            while !s.load(Ordering::SeqCst) && started.elapsed() < Self::MAX {
                match request(addr) {
                    Ok(()) => o.fetch_add(1, Ordering::SeqCst),
                    Err(e) => {
                        if errors.len() < 20 {
                            errors.push(e);
                        }
                        f.fetch_add(1, Ordering::SeqCst)
                    }
                };
                next += pace;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait); // the load's pace, not a wait for a condition
                }
            }
            errors
        });
        Load {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops the load: (successes, failures, the first errors).
    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self.thread.take().unwrap().join().unwrap();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            errors,
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The fleet's proxy containers on `host`: `<name> <image> <state>` per line.
fn proxies_on(hosts: &Hosts, host: &str, t: &TestFleet) -> String {
    hosts
        .docker(
            host,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=convoy.fleet={}", t.id),
                "--filter",
                "label=convoy.role=proxy",
                "--format",
                "{{.Names}} {{.Image}} {{.State}}",
            ],
        )
        .trim()
        .to_string()
}

/// One `GET /` over a fresh connection: `Ok` for a 200 whose body says a version.
fn request(addr: SocketAddr) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    if text.starts_with("HTTP/1.1 200") && text.contains("version v") {
        Ok(())
    } else {
        Err(format!(
            "answer: {:?}",
            text.lines().next().unwrap_or("(empty)")
        ))
    }
}

/// The body a host's port answers with now, if any.
pub(crate) fn body_at(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer
        .split("\r\n\r\n")
        .nth(1)
        .map(|b| b.trim().to_string())
}

/// The web stack: 4 replicas (3 without the proxy) of nginx saying `version <v>`, start-first updates one at a
/// time, gated by a readiness probe; `ingress` on or off; `health` a healthcheck line. The port
/// is `app_protocol: http`, so the proxy carries it as HTTP (nothing changes without the proxy).
fn web(t: &TestFleet, version: &str, port: u16, bind: &str, ingress: bool, healthy: bool) {
    web_as(t, version, port, bind, ingress, healthy, "http");
}

/// [`web`] with the port's `app_protocol` (`tcp`: passed as bytes by the proxies).
fn web_as(
    t: &TestFleet,
    version: &str,
    port: u16,
    bind: &str,
    ingress: bool,
    healthy: bool,
    app_protocol: &str,
) {
    let check = if healthy { "true" } else { "false" };
    // Without the proxy a fixed port holds one replica per host.
    let replicas = if ingress { 4 } else { 3 };
    let (order, x) = if ingress {
        (
            "start-first",
            "    x-convoy:\n      ingress: true\n      readiness: {port: 80, path: /}\n",
        )
    } else {
        // Without the proxy a fixed host port cannot be bound twice: stop-first (today).
        (
            "stop-first",
            "    x-convoy:\n      readiness: {port: 80, path: /}\n",
        )
    };
    t.compose(
        "web",
        &format!(
            "services:\n  web:\n    image: {NGINX}\n    command: [\"sh\", \"-c\", \"echo 'version {version}' > /var/www/html/index.html && exec nginx -g 'daemon off;'\"]\n    stop_signal: SIGQUIT\n    stop_grace_period: 5s\n    ports:\n      - {{target: 80, published: {port}, host_ip: \"{bind}\", app_protocol: {app_protocol}}}\n    healthcheck:\n      test: [\"CMD\", \"{check}\"]\n      interval: 1s\n      timeout: 1s\n      retries: 2\n    deploy:\n      replicas: {replicas}\n      update_config:\n        parallelism: 1\n        order: {order}\n        monitor: 2s\n        failure_action: rollback\n{x}"
        ),
    );
}

fn ss_listeners(hosts: &Hosts, host: &str) -> Vec<String> {
    let ns = hosts.env[&format!("{}_NETNS", host.to_uppercase())].clone();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "ss", "-ltnH"])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
        .collect()
}

/// One scenario over a host's port: the rolling update to v2, a v3 rolled back, and a
/// replica of the host removed by hand. Returns (ok, failed) of the load.
/// What a scenario's load saw: answered, failed, and of those failed the ones during phase (3),
/// the replica killed and healed.
struct Tally {
    ok: u64,
    failed: u64,
    failed_at_kill: u64,
    errors: Vec<String>,
}

fn scenario(hosts: &Hosts, t: &TestFleet, port: u16, ingress: bool) -> Tally {
    let h1 = hosts.names[0].clone();
    let addr_ip = hosts.env[&format!("{}_ADDR", h1.to_uppercase())].clone();
    // Without the proxy each replica publishes the port on its own host: bound on all
    // addresses, as the host's address differs per host. With it, the proxies bind it.
    let bind = "0.0.0.0";
    web(t, "v1", port, bind, ingress, true);
    // `diff` shows the proxies as their own lines (none without a `proxy:` section).
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    let proxy_lines = diff
        .stdout
        .lines()
        .filter(|l| l.starts_with("+ proxy on host"))
        .count();
    assert_eq!(
        proxy_lines,
        if ingress { hosts.names.len() } else { 0 },
        "{}",
        diff.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    let addr: SocketAddr = format!("{addr_ip}:{port}").parse().unwrap();
    wait_for("the web page on host 1", Duration::from_secs(60), || {
        body_at(addr).as_deref() == Some("version v1")
    });
    let load = Load::start(addr, 50);
    // (1) a rolling update.
    web(t, "v2", port, bind, ingress, true);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    wait_for("v2 on host 1", Duration::from_secs(60), || {
        body_at(addr).as_deref() == Some("version v2")
    });
    // (2) an update that fails its healthcheck, rolled back.
    web(t, "v3", port, bind, ingress, false);
    let _ = t.convoy(&["apply"]);
    wait_for("v2 back on host 1", Duration::from_secs(60), || {
        body_at(addr).as_deref() == Some("version v2")
    });
    web(t, "v2", port, bind, ingress, true);
    // (3) a replica on host 1 removed by hand, then healed.
    let on_h1: Vec<String> = hosts
        .fleet_containers(&h1, &t.id)
        .into_iter()
        .filter(|n| n.contains("-web-") && !n.ends_with(".prev"))
        .collect();
    let before_kill = load.failed.load(Ordering::SeqCst);
    if let Some(victim) = on_h1.first() {
        hosts.docker(&h1, &["rm", "-f", victim]);
    }
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    wait_for(
        "v2 on host 1 after the heal",
        Duration::from_secs(60),
        || body_at(addr).as_deref() == Some("version v2"),
    );
    let failed_at_kill = load.failed.load(Ordering::SeqCst) - before_kill;
    if ingress {
        let before = load.failed.load(Ordering::SeqCst);
        let started = Instant::now();
        new_proxy_image(hosts, t, addr);
        eprintln!(
            "new proxy image: {} failed in {:?}",
            load.failed.load(Ordering::SeqCst) - before,
            started.elapsed()
        );
    }
    let (ok, failed, errors) = load.finish();
    Tally {
        ok,
        failed,
        failed_at_kill,
        errors,
    }
}

/// [`PROXY2`] on every host while it lives: tagged, then taken off again whatever happens.
struct Untag<'a>(&'a Hosts);

impl<'a> Untag<'a> {
    fn tag(hosts: &'a Hosts) -> Untag<'a> {
        for h in &hosts.names {
            hosts.docker(h, &["tag", PROXY, PROXY2]);
        }
        Untag(hosts)
    }
}

impl Drop for Untag<'_> {
    fn drop(&mut self) {
        for h in &self.0.names {
            let sock = format!("unix://{}", self.0.sock(h));
            let _ = docker_try(&["-H", &sock, "rmi", PROXY2]);
        }
    }
}

/// (4) A new proxy image under the load: replaced start-first on every host (`diff` says so),
/// one `convoy-proxy` of the new image left on each.
fn new_proxy_image(hosts: &Hosts, t: &TestFleet, addr: SocketAddr) {
    let _untag = Untag::tag(hosts);
    let fleet = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
    assert!(fleet.contains(PROXY), "{fleet}");
    t.write("convoy.yaml", &fleet.replace(PROXY, PROXY2));
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    let replaced = diff
        .stdout
        .lines()
        .filter(|l| l.starts_with("~ proxy on host") && l.contains("replaced start-first"))
        .count();
    assert_eq!(replaced, hosts.names.len(), "{}", diff.stdout);
    // `-v`: the log says how each proxy was replaced (start-first, not the fallback).
    let apply = t.convoy(&["apply", "-v"]).outcome(Outcome::Converged);
    assert_eq!(
        apply.stderr.matches("proxy replaced start-first").count(),
        hosts.names.len(),
        "{}",
        apply.stderr
    );
    assert!(!apply.stderr.contains("refused"), "{}", apply.stderr);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    for h in &hosts.names {
        assert_eq!(
            proxies_on(hosts, h, t),
            format!("convoy-proxy {PROXY2} running"),
            "{h}"
        );
    }
    assert_eq!(body_at(addr).as_deref(), Some("version v2"));
    // An interrupted replacement (a second proxy container left on a host) is finished by the
    // next pass: the one of the wanted image kept, the other removed.
    let h2 = &hosts.names[1];
    hosts.docker(
        h2,
        &[
            "create",
            "--name",
            "convoy-proxy-next",
            "--label",
            &format!("convoy.fleet={}", t.id),
            "--label",
            "convoy.role=proxy",
            "--label",
            "convoy.spec-hash=0000000000000000",
            PROXY,
        ],
    );
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout.lines().any(|l| l.starts_with(&format!(
            "~ proxy on host {h2}  (an interrupted replacement"
        ))),
        "{}",
        diff.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    let names = hosts.fleet_containers(h2, &t.id);
    assert!(
        names.iter().any(|n| n == "convoy-proxy")
            && !names.iter().any(|n| n == "convoy-proxy-next"),
        "{names:?}"
    );
}

#[test]
fn published_ports_survive_rollouts_rollbacks_and_kills_through_the_proxy() {
    let Some(hosts) = Hosts::get() else { return };
    // Without the proxy first (the figure to compare with), in a fleet of its own.
    let base = TestFleet::new();
    let _base_cleanup = HostCleanup(&hosts, base.id.clone());
    hosts.write_fleet_file(&base, &hosts.known_hosts(), "");
    let Tally {
        ok, failed, errors, ..
    } = scenario(&hosts, &base, 18080, false);
    eprintln!("WITHOUT the proxy (stop-first on a fixed port): {ok} ok, {failed} failed; first errors: {errors:?}");
    drop(_base_cleanup);

    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_proxy_fleet_file(&t, &format!("  image: {PROXY}\n  ports: 39000-39999\n"));
    let Tally {
        ok,
        failed,
        failed_at_kill,
        errors,
    } = scenario(&hosts, &t, 18081, true);
    eprintln!("WITH the proxy (start-first): {ok} ok, {failed} failed ({failed_at_kill} while a replica was killed and healed); first errors: {errors:?}");

    // Every host runs one proxy; the cross-host listeners are on its address only.
    for h in &hosts.names {
        let names = hosts.fleet_containers(h, &t.id);
        assert!(names.iter().any(|n| n == "convoy-proxy"), "{h}: {names:?}");
        let ip = hosts.env[&format!("{}_ADDR", h.to_uppercase())].clone();
        let listeners = ss_listeners(&hosts, h);
        let cross: Vec<&String> = listeners
            .iter()
            .filter(|l| {
                l.rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .is_some_and(|p| (39000..=39999).contains(&p))
            })
            .collect();
        assert!(
            !cross.is_empty(),
            "{h}: no cross-host listener in {listeners:?}"
        );
        for l in cross {
            assert_eq!(
                l,
                &format!("{ip}:{}", l.rsplit_once(':').unwrap().1),
                "{h}: {l} is not on the internal address only"
            );
        }
    }
    // `status` shows the service's endpoints per host.
    let status = t.convoy(&["status", "--output", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).expect(&status.stdout);
    let endpoints = doc["services"][0]["endpoints"]
        .as_array()
        .expect(&status.stdout);
    for h in &hosts.names {
        assert!(
            endpoints.iter().any(|e| e["host"] == h.as_str()
                && e["kind"] == "ingress"
                && e["address"] == "0.0.0.0:18081"),
            "{h}: {endpoints:?}"
        );
    }
    assert!(ok > 100, "the load ran ({ok} ok)");
    // Rollouts, the rollback, the new proxy image and `docker rm -f` lose nothing: a GET the
    // killed replica took and never answered is sent again to another one (HTTP mode).
    assert_eq!(
        (failed, failed_at_kill),
        (0, 0),
        "requests failed through the proxy: {errors:?}"
    );

    // (5) The port as a plain byte stream (the proxies back in TCP mode: a reload), rolled
    // out under the load: the drain and the admission lose nothing there either.
    let h1 = &hosts.names[0];
    let addr: SocketAddr = format!(
        "{}:18081",
        hosts.env[&format!("{}_ADDR", h1.to_uppercase())]
    )
    .parse()
    .unwrap();
    let load = Load::start(addr, 50);
    web_as(&t, "v4", 18081, "0.0.0.0", true, true, "tcp");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    wait_for("v4 on host 1", Duration::from_secs(60), || {
        body_at(addr).as_deref() == Some("version v4")
    });
    let (ok, failed, errors) = load.finish();
    eprintln!("TCP port, rolling update: {ok} ok, {failed} failed; first errors: {errors:?}");
    let cfg = hosts.docker(
        h1,
        &[
            "exec",
            "convoy-proxy",
            "cat",
            "/etc/convoy-proxy/haproxy.cfg",
        ],
    );
    assert!(
        cfg.contains("_18081\n    bind 0.0.0.0:18081\n    mode tcp\n"),
        "the proxy does not carry the port as TCP:\n{cfg}"
    );
    assert!(ok > 50, "the load ran ({ok} ok)");
    assert_eq!(failed, 0, "requests failed on the TCP port: {errors:?}");
}

/// Where the host refuses a second proxy beside the old one (here the old one was restarted by
/// hand with `noreuseport`, so the new one cannot bind its ports), the replacement falls back
/// to stop-first, says so in the log, and still ends with one `convoy-proxy` of the new image;
/// the other hosts are replaced start-first.
#[test]
fn a_proxy_the_host_refuses_beside_the_old_one_is_replaced_stop_first() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_proxy_fleet_file(&t, &format!("  image: {PROXY}\n  ports: 39000-39999\n"));
    t.compose(
        "web",
        &format!(
            "services:\n  web:\n    image: {NGINX}\n    command: [\"sh\", \"-c\", \"echo 'version v1' > /var/www/html/index.html && exec nginx -g 'daemon off;'\"]\n    ports: [\"18083:80\"]\n    deploy:\n      replicas: 1\n    x-convoy:\n      ingress: true\n"
        ),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let h1 = hosts.names[0].clone();
    let addr: SocketAddr = format!(
        "{}:18083",
        hosts.env[&format!("{}_ADDR", h1.to_uppercase())]
    )
    .parse()
    .unwrap();
    wait_for("the web page on host 1", Duration::from_secs(60), || {
        body_at(addr).as_deref() == Some("version v1")
    });
    // The old proxy on host 1 holds its ports without SO_REUSEPORT from now on.
    hosts.docker(
        &h1,
        &[
            "exec",
            "convoy-proxy",
            "sed",
            "-i",
            "s/^    master-worker$/    master-worker\\n    noreuseport/",
            "/etc/convoy-proxy/haproxy.cfg",
        ],
    );
    let cfg = hosts.docker(
        &h1,
        &[
            "exec",
            "convoy-proxy",
            "cat",
            "/etc/convoy-proxy/haproxy.cfg",
        ],
    );
    assert!(cfg.contains("    noreuseport\n"), "{cfg}");
    hosts.docker(&h1, &["restart", "convoy-proxy"]);
    wait_for(
        "the web page on host 1 again",
        Duration::from_secs(60),
        || body_at(addr).as_deref() == Some("version v1"),
    );
    let _untag = Untag::tag(&hosts);
    t.write(
        "convoy.yaml",
        &std::fs::read_to_string(t.path().join("convoy.yaml"))
            .unwrap()
            .replace(PROXY, PROXY2),
    );
    let apply = t.convoy(&["apply", "-v"]).outcome(Outcome::Converged);
    let refused: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| l.contains("refused a second proxy"))
        .collect();
    assert_eq!(refused.len(), 1, "{}", apply.stderr);
    assert!(refused[0].contains(&h1), "{}", apply.stderr);
    assert_eq!(
        apply.stderr.matches("proxy replaced start-first").count(),
        hosts.names.len() - 1,
        "{}",
        apply.stderr
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    for h in &hosts.names {
        assert_eq!(
            proxies_on(&hosts, h, &t),
            format!("convoy-proxy {PROXY2} running"),
            "{h}"
        );
    }
    wait_for(
        "the web page on host 1 through the new proxy",
        Duration::from_secs(30),
        || body_at(addr).as_deref() == Some("version v1"),
    );
}
