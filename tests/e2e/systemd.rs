//! `convoy daemon` as a `Type=notify` service with a watchdog, on the local engine, with the test
//! in systemd's place: it binds the datagram socket named by `NOTIFY_SOCKET` (a path, or an
//! abstract `@name`), sets `WATCHDOG_USEC` to one second, and reads what the daemon says.
//!
//! READY=1 comes once the first pass has run (its container is running by then; not while the
//! first pass waits at a dependency gate) or once the repository has been refused as invalid;
//! STATUS= names the commit; WATCHDOG=1 comes every half second, also while a pass waits at a
//! long `depends_on` gate; STOPPING=1 comes at SIGTERM.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// `WATCHDOG_USEC` for the daemon: pings are due every half of it.
const WATCHDOG_USEC: &str = "1000000";

/// Systemd's end of the notify socket: every line the daemon sends, with when it arrived.
struct Manager {
    rx: mpsc::Receiver<(Instant, String)>,
    /// Every line taken from `rx` so far, for the assertions' messages.
    seen: Vec<(Instant, String)>,
    /// The value for `NOTIFY_SOCKET`.
    address: String,
    _dir: tempfile::TempDir,
}

impl Manager {
    /// On a socket file, as systemd's `/run/systemd/notify`.
    fn at_path() -> Manager {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        Manager::reading(socket, path.display().to_string(), dir)
    }

    /// On an abstract name, as systemd gives to services in containers and user managers.
    fn abstract_name(id: &str) -> Manager {
        let name = format!("convoy-test/{id}/{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract notify socket");
        Manager::reading(socket, format!("@{name}"), tempfile::tempdir().unwrap())
    }

    fn reading(socket: UnixDatagram, address: String, dir: tempfile::TempDir) -> Manager {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while let Ok(n) = socket.recv(&mut buf) {
                let at = Instant::now();
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if tx.send((at, line.to_string())).is_err() {
                        return;
                    }
                }
            }
        });
        Manager {
            rx,
            seen: Vec::new(),
            address,
            _dir: dir,
        }
    }

    /// The next line that `want` accepts, within `within`; panics, showing every line seen and
    /// the daemon's log, when none comes.
    fn expect(
        &mut self,
        what: &str,
        within: Duration,
        d: &Daemon,
        want: impl Fn(&str) -> bool,
    ) -> (Instant, String) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((at, line)) => {
                    self.seen.push((at, line.clone()));
                    if want(&line) {
                        return (at, line);
                    }
                }
                Err(_) => panic!(
                    "no {what} within {within:?}; lines so far:\n{}\n--- daemon log\n{}",
                    self.lines(),
                    d.log()
                ),
            }
        }
    }

    /// Takes what has arrived so far without waiting.
    fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.seen.push(l);
        }
    }

    fn said(&self, line: &str) -> bool {
        self.seen.iter().any(|(_, l)| l == line)
    }

    fn lines(&self) -> String {
        let start = self.seen.first().map(|(at, _)| *at);
        self.seen
            .iter()
            .map(|(at, l)| format!("  +{:?} {l}", at.duration_since(start.unwrap_or(*at))))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Three pings within about two seconds (one is due every half second), from now.
fn three_pings(m: &mut Manager, d: &Daemon) {
    let from = Instant::now();
    for n in 1..=3 {
        let left = Duration::from_millis(2200).saturating_sub(from.elapsed());
        m.expect(&format!("WATCHDOG=1 #{n}"), left, d, |l| l == "WATCHDOG=1");
    }
}

#[test]
fn ready_after_the_first_pass_then_status_pings_through_a_gate_wait_and_stopping() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n"),
    );
    git(t.path(), &["init", "-q", "-b", "main"]);
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-q", "-m", "one app"]);
    let commit = git(t.path(), &["rev-parse", "HEAD"]);
    let mut m = Manager::at_path();
    let mut d = Daemon::start_env(
        &t,
        &[],
        &[
            ("NOTIFY_SOCKET", &m.address),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );

    m.expect("READY=1", Duration::from_secs(30), &d, |l| l == "READY=1");
    // The first pass has run: what it started is running when READY arrives.
    assert_eq!(
        t.running(),
        vec![t.cname("web", "app", 1)],
        "READY=1 before the first pass ended"
    );
    let (_, status) = m.expect("STATUS=", Duration::from_secs(5), &d, |l| {
        l.starts_with("STATUS=")
    });
    assert!(
        status.contains(&format!("applied commit {}", &commit[..12])),
        "{status}"
    );
    assert!(status.contains("last pass 1 (start): applied"), "{status}");

    // A long gate wait in a later pass is not a hang: the pings go on.
    t.write(
        "convoy.yaml",
        &format!("fleet: {}\ndependency_timeout: 60s\n", t.id),
    );
    gated_stack(&t, "gate");
    wait_for_the_gate(&t, &d, "gate");
    three_pings(&mut m, &d);
    assert!(
        docker_try(&["inspect", &t.cname("gate", "app", 1)]).is_none(),
        "the pings must come while app waits at its gate"
    );

    let asked = Instant::now();
    d.term();
    m.expect("STOPPING=1", Duration::from_secs(5), &d, |l| {
        l == "STOPPING=1"
    });
    assert_eq!(
        d.wait(Duration::from_secs(15)),
        Outcome::Stopped.code(),
        "{}",
        d.log()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    m.drain();
    assert_eq!(
        m.seen.iter().filter(|(_, l)| l == "READY=1").count(),
        1,
        "READY=1 once:\n{}",
        m.lines()
    );
}

#[test]
fn no_ready_while_the_first_pass_waits_at_a_gate_but_pings_and_an_extended_start() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.write(
        "convoy.yaml",
        &format!("fleet: {}\ndependency_timeout: 6s\n", t.id),
    );
    gated_stack(&t, "gate");
    let mut m = Manager::at_path();
    let d = Daemon::start_env(
        &t,
        &[],
        &[
            ("NOTIFY_SOCKET", &m.address),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );
    wait_for_the_gate(&t, &d, "gate");
    three_pings(&mut m, &d);
    m.drain();
    assert!(
        !m.said("READY=1"),
        "READY=1 while the first pass waits:\n{}",
        m.lines()
    );
    assert!(
        m.seen
            .iter()
            .any(|(_, l)| l.starts_with("EXTEND_TIMEOUT_USEC=")),
        "the start timeout is extended while the first pass runs:\n{}",
        m.lines()
    );
    // The gate gives up after `dependency_timeout`: the first pass has run, and failed.
    m.expect("READY=1", Duration::from_secs(20), &d, |l| l == "READY=1");
    let (_, status) = m.expect("STATUS=", Duration::from_secs(5), &d, |l| {
        l.starts_with("STATUS=")
    });
    assert!(status.contains("last pass 1 (start): failed"), "{status}");
}

#[test]
fn an_invalid_repository_still_makes_the_daemon_ready() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose("web", "services:\n  app:\n    image: [broken\n");
    // An abstract socket name this time, as systemd gives in containers.
    let mut m = Manager::abstract_name(&t.id);
    let mut d = Daemon::start_env(
        &t,
        &[],
        &[
            ("NOTIFY_SOCKET", &m.address),
            ("WATCHDOG_USEC", WATCHDOG_USEC),
        ],
    );
    m.expect("READY=1", Duration::from_secs(20), &d, |l| l == "READY=1");
    let (_, status) = m.expect("STATUS=", Duration::from_secs(5), &d, |l| {
        l.starts_with("STATUS=")
    });
    assert!(
        status.contains("no valid commit yet") && status.contains("do not validate"),
        "{status}"
    );
    assert!(
        t.containers().is_empty(),
        "an invalid repository runs nothing"
    );
    d.term();
    m.expect("STOPPING=1", Duration::from_secs(5), &d, |l| {
        l == "STOPPING=1"
    });
    assert_eq!(d.wait(Duration::from_secs(15)), Outcome::Stopped.code());
}
