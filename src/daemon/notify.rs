//! systemd's notify protocol for `convoy daemon` under `Type=notify`, spoken only when systemd
//! asks for it (`NOTIFY_SOCKET` set; a path or an abstract `@name`): `READY=1` once the first
//! pass has run or the first read of the repository was refused as invalid, `STATUS=` (the
//! commit in force and the last pass's result) after each pass, `WATCHDOG=1` every half of
//! `WATCHDOG_USEC` while the daemon's loop is alive, and `STOPPING=1` at shutdown. Until it is
//! ready, each ping also extends systemd's start timeout (`EXTEND_TIMEOUT_USEC`): a first pass
//! that waits at its dependency gates is a slow start, not a failed one.
//!
//! Alive means moving, not merely existing: `tend` polls the loop's future beside a ticker *in
//! the loop's own task*, and each tick advances a heartbeat. A gate wait or a pull keeps the
//! task polled, so the heartbeat moves; a loop whose thread is blocked (a hung file system read,
//! a busy loop, a deadlocked lock) stops it, and the speaker task then withholds the pings, so
//! systemd's watchdog restarts the service. An await that never ends is not caught here: each
//! one in a pass carries its own bound (the observation timeout, `dependency_timeout`, SSH
//! keepalives, a stop's grace period). The speaker reads the rest from the daemon's status
//! channel, and ends, saying `STOPPING=1`, when the daemon's cancellation token is cancelled.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::future::Future;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::DaemonStatus;
use crate::model::outcome::HoldReason;

/// Without a watchdog, how often a start still in progress extends systemd's start timeout.
const EXTEND_EVERY: Duration = Duration::from_secs(10);

/// The longest `STATUS=` line; systemd shows it in `systemctl status`.
const STATUS_MAX: usize = 400;

/// The loop's heartbeat: a count that `tend` advances from the loop's own task.
#[derive(Clone, Default)]
pub struct Heartbeat {
    beats: Arc<AtomicU64>,
    /// How often `tend` advances it; `None` when nobody listens (no `NOTIFY_SOCKET`).
    every: Option<Duration>,
}

/// When systemd asked for notifications: spawns the speaker into `tasks` (it ends when `cancel`
/// is cancelled) and returns the heartbeat the loop must `tend`. Otherwise nothing happens.
pub fn start(
    tasks: &mut JoinSet<()>,
    status: watch::Receiver<DaemonStatus>,
    cancel: CancellationToken,
) -> Heartbeat {
    match Setup::from_env() {
        Some(setup) => start_with(setup, tasks, status, cancel),
        None => Heartbeat::default(),
    }
}

/// Runs `fut` (the daemon's loop) and, in the same task, advances `beat` at its pace while
/// `fut` runs.
pub async fn tend<F: Future>(beat: &Heartbeat, fut: F) -> F::Output {
    let Some(every) = beat.every else {
        return fut.await;
    };
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    std::future::poll_fn(|cx| {
        while tick.poll_tick(cx).is_ready() {
            beat.beats.fetch_add(1, Ordering::Relaxed);
        }
        fut.as_mut().poll(cx)
    })
    .await
}

/// What systemd asked for, from the environment.
#[derive(Debug)]
struct Setup {
    socket: SocketAddr,
    /// `WATCHDOG_USEC`, when it is meant for this process (`WATCHDOG_PID` unset or ours).
    watchdog: Option<Duration>,
}

impl Setup {
    fn from_env() -> Option<Setup> {
        let raw = std::env::var_os("NOTIFY_SOCKET")?;
        let socket = match address(raw.as_bytes()) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(socket = %raw.to_string_lossy(), error = %e, "NOTIFY_SOCKET is not a socket address this daemon can use: no notifications to systemd");
                return None;
            }
        };
        let var = |k: &str| std::env::var(k).ok();
        let watchdog = watchdog(
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        );
        Some(Setup { socket, watchdog })
    }
}

/// `NOTIFY_SOCKET`'s value as an address: a path, or `@name` for the abstract namespace.
fn address(raw: &[u8]) -> std::io::Result<SocketAddr> {
    match raw.first() {
        Some(b'/') => SocketAddr::from_pathname(OsStr::from_bytes(raw)),
        Some(b'@') => SocketAddr::from_abstract_name(&raw[1..]),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "neither an absolute path nor an abstract name (`@name`)",
        )),
    }
}

/// The watchdog period systemd expects, when the watchdog is meant for process `me`.
fn watchdog(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn start_with(
    setup: Setup,
    tasks: &mut JoinSet<()>,
    status: watch::Receiver<DaemonStatus>,
    cancel: CancellationToken,
) -> Heartbeat {
    let socket = match UnixDatagram::unbound().and_then(|s| {
        // A full queue at systemd's end drops a message rather than stall the runtime.
        s.set_nonblocking(true)?;
        Ok(s)
    }) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a socket to notify systemd: no notifications");
            return Heartbeat::default();
        }
    };
    let period = setup.watchdog.map_or(EXTEND_EVERY, |w| w / 2);
    let beat = Heartbeat {
        beats: Arc::default(),
        // Twice per period: a period without a beat means the loop did not move.
        every: Some(period / 2),
    };
    let notifier = Notifier {
        socket,
        to: setup.socket,
        failing: false,
    };
    tasks.spawn(speak(
        notifier,
        setup.watchdog.is_some(),
        period,
        beat.beats.clone(),
        status,
        cancel,
    ));
    beat
}

/// The sending end.
struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    /// A failure was said already: the next ones go to debug until one succeeds.
    failing: bool,
}

impl Notifier {
    fn send(&mut self, message: &str) {
        match self.socket.send_to_addr(message.as_bytes(), &self.to) {
            Ok(_) => self.failing = false,
            Err(e) if self.failing => tracing::debug!(error = %e, "cannot notify systemd"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot notify systemd");
                self.failing = true;
            }
        }
    }
}

/// The speaker: READY and STATUS from the status channel, the pings from the heartbeat,
/// STOPPING at the end.
async fn speak(
    mut notifier: Notifier,
    watchdog: bool,
    period: Duration,
    beats: Arc<AtomicU64>,
    mut status: watch::Receiver<DaemonStatus>,
    cancel: CancellationToken,
) {
    let mut said = Said::default();
    let mut alive = Liveness::new(beats);
    // The first look a whole period from now: the loop has had time to beat by then.
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let news = said.news(&status.borrow_and_update());
        if let Some(message) = news {
            notifier.send(&message);
        }
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {
                if alive.moved() {
                    let mut message = String::new();
                    if watchdog {
                        message.push_str("WATCHDOG=1\n");
                    }
                    if !said.ready {
                        let _ = writeln!(message, "EXTEND_TIMEOUT_USEC={}", (period * 3).as_micros());
                    }
                    if !message.is_empty() {
                        notifier.send(&message);
                    }
                } else if !alive.stalled {
                    alive.stalled = true;
                    tracing::warn!(
                        period_ms = period.as_millis() as u64,
                        "the daemon's loop has not moved for a watchdog period: pings to systemd are withheld"
                    );
                }
            }
        }
    }
    notifier.send("STOPPING=1\nSTATUS=stopping: finishing the steps in flight\n");
}

/// Whether the heartbeat moved since the last look.
struct Liveness {
    beats: Arc<AtomicU64>,
    seen: u64,
    /// A stall was said already.
    stalled: bool,
}

impl Liveness {
    fn new(beats: Arc<AtomicU64>) -> Liveness {
        let seen = beats.load(Ordering::Relaxed);
        Liveness {
            beats,
            seen,
            stalled: false,
        }
    }

    fn moved(&mut self) -> bool {
        let now = self.beats.load(Ordering::Relaxed);
        let moved = now != self.seen;
        self.seen = now;
        if moved && self.stalled {
            tracing::info!("the daemon's loop moves again: pings to systemd resume");
            self.stalled = false;
        }
        moved
    }
}

/// What systemd has been told of the status.
#[derive(Default)]
struct Said {
    ready: bool,
    /// The passes counted when last looked: a new count is a pass that ended.
    passes: u64,
    /// The commit in force when the last pass ended (a commit read since is not applied yet).
    applied: Option<String>,
    status: Option<String>,
}

impl Said {
    /// The message that tells systemd what changed (READY once, STATUS when its line differs),
    /// if anything did.
    fn news(&mut self, s: &DaemonStatus) -> Option<String> {
        let mut message = String::new();
        if s.passes != self.passes {
            self.passes = s.passes;
            self.applied = s.commit.clone();
        }
        if !self.ready && (s.last_result.is_some() || s.held.is_some()) {
            self.ready = true;
            message.push_str("READY=1\n");
        }
        if let Some(line) = status_line(self.applied.as_deref(), s) {
            if self.status.as_deref() != Some(line.as_str()) {
                let _ = writeln!(message, "STATUS={line}");
                self.status = Some(line);
            }
        }
        (!message.is_empty()).then_some(message)
    }
}

/// One line for `systemctl status`: the commit applied and the last pass's result, a hold, and
/// the hosts not connected. `None` before there is anything to say.
fn status_line(applied: Option<&str>, s: &DaemonStatus) -> Option<String> {
    let mut line = match (applied, &s.commit) {
        (Some(c), _) => {
            let mut l = format!("applied commit {c}; last pass {}", s.passes);
            if let Some(why) = &s.last_reason {
                let _ = write!(l, " ({why})");
            }
            if let Some(result) = &s.last_result {
                let _ = write!(l, ": {result}");
            }
            l
        }
        (None, Some(c)) => format!("commit {c} loaded; no pass yet"),
        (None, None) if s.held.is_some() => "no valid commit yet".to_string(),
        (None, None) => return None,
    };
    match &s.held {
        Some(HoldReason::InvalidCommit) => {
            line.push_str("; held: the repository's files do not validate")
        }
        Some(other) => {
            let _ = write!(line, "; held: {}", other.code());
        }
        None => {}
    }
    if !s.disconnected.is_empty() {
        let hosts: Vec<&str> = s.disconnected.keys().map(String::as_str).collect();
        let _ = write!(line, "; not connected: {}", hosts.join(", "));
    }
    for r in &s.rollouts {
        let _ = write!(
            line,
            "; rollout {}/{} batch {} of {}",
            r.stack, r.service, r.batch, r.batches
        );
    }
    if !s.quarantined.is_empty() {
        let names: Vec<String> = s
            .quarantined
            .iter()
            .map(|q| format!("{}/{}", q.stack, q.service))
            .collect();
        let _ = write!(line, "; quarantined: {}", names.join(", "));
    }
    Some(one_line(&line))
}

/// A line the protocol cannot misread: control characters (a newline would start another
/// assignment) become spaces, and it is cut at `STATUS_MAX` characters.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(STATUS_MAX)
        .collect();
    if s.chars().count() > STATUS_MAX {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Instant as StdInstant;

    use super::*;
    use crate::model::outcome::{PassReason, PassResult};

    #[test]
    fn the_socket_is_a_path_or_an_abstract_name() {
        let path = address(b"/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abs = address(b"@convoy/notify").unwrap();
        assert_eq!(abs.as_abstract_name(), Some(&b"convoy/notify"[..]));
        assert!(address(b"relative/notify").is_err());
        assert!(address(b"vsock:2:1234").is_err());
        assert!(address(b"").is_err());
    }

    #[test]
    fn the_watchdog_is_ours_only_when_its_pid_is_ours_or_unset() {
        let me = std::process::id();
        let second = Some(Duration::from_secs(1));
        assert_eq!(watchdog(Some("1000000"), None, me), second);
        assert_eq!(watchdog(Some("1000000"), Some(&me.to_string()), me), second);
        assert_eq!(watchdog(Some("1000000"), Some("1"), me), None);
        assert_eq!(watchdog(Some("0"), None, me), None);
        assert_eq!(watchdog(Some("soon"), None, me), None);
        assert_eq!(watchdog(None, None, me), None);
    }

    fn passed(commit: &str, passes: u64, result: PassResult) -> DaemonStatus {
        DaemonStatus {
            phase: "idle",
            commit: Some(commit.into()),
            passes,
            last_reason: Some(PassReason::Start),
            last_result: Some(result),
            ..Default::default()
        }
    }

    #[test]
    fn ready_once_after_the_first_pass_or_the_first_refusal_and_status_on_change() {
        let mut said = Said::default();
        let starting = DaemonStatus {
            phase: "starting",
            ..Default::default()
        };
        assert_eq!(said.news(&starting), None, "nothing to say yet");
        let loaded = DaemonStatus {
            phase: "passing",
            commit: Some("abc123def456".into()),
            ..Default::default()
        };
        assert_eq!(
            said.news(&loaded).as_deref(),
            Some("STATUS=commit abc123def456 loaded; no pass yet\n"),
            "loaded is not ready: no pass has run"
        );
        let first = passed("abc123def456", 1, PassResult::Applied);
        assert_eq!(
            said.news(&first).as_deref(),
            Some("READY=1\nSTATUS=applied commit abc123def456; last pass 1 (start): applied\n")
        );
        assert_eq!(said.news(&first), None, "nothing changed: nothing said");
        // A newer commit read is not applied until a pass has run with it.
        let mut reading = first.clone();
        reading.commit = Some("fed321cba987".into());
        reading.phase = "passing";
        assert_eq!(said.news(&reading), None);
        let mut lost = passed("fed321cba987", 2, PassResult::Failed);
        lost.disconnected.insert("edge-1".into(), "refused".into());
        assert_eq!(
            said.news(&lost).as_deref(),
            Some("STATUS=applied commit fed321cba987; last pass 2 (start): failed; not connected: edge-1\n"),
            "READY only once"
        );
        // Files that stop validating: the last good commit stays applied, and says so.
        let mut broken = lost.clone();
        broken.held = Some(HoldReason::InvalidCommit);
        assert_eq!(
            said.news(&broken).as_deref(),
            Some("STATUS=applied commit fed321cba987; last pass 2 (start): failed; held: the repository's files do not validate; not connected: edge-1\n"),
        );

        let mut refused = Said::default();
        let invalid = DaemonStatus {
            phase: "starting",
            held: Some(HoldReason::InvalidCommit),
            ..Default::default()
        };
        assert_eq!(
            refused.news(&invalid).as_deref(),
            Some("READY=1\nSTATUS=no valid commit yet; held: the repository's files do not validate\n")
        );
    }

    #[test]
    fn a_status_line_stays_one_line() {
        let mut s = passed("abc", 3, PassResult::Applied);
        s.last_reason = Some(PassReason::EngineEvent {
            host: "h".into(),
            action: "die\nREADY=1".into(),
            container: "c".into(),
        });
        s.disconnected = (0..100)
            .map(|i| (format!("host-{i:03}"), "down".to_string()))
            .collect();
        let line = status_line(Some("abc"), &s).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("die READY=1"), "{line}");
        assert_eq!(line.chars().count(), STATUS_MAX + 1, "{line}");
        assert!(line.ends_with('…'));
    }

    #[test]
    fn a_status_line_names_rollouts_in_flight_and_quarantined_specs() {
        let mut s = passed("abc", 3, PassResult::RolledBack);
        s.rollouts = vec![crate::model::rollout::RolloutProgress {
            stack: "shop".into(),
            service: "web".into(),
            to_hash: "h".into(),
            batch: 2,
            batches: 4,
            updated: 1,
            replicas: 4,
            done: false,
        }];
        s.quarantined = vec![crate::model::rollout::QuarantineRecord {
            stack: "shop".into(),
            service: "api".into(),
            spec_hash: "h2".into(),
            commit: "c".into(),
            reason: "exited".into(),
            batch: 1,
            host: "a".into(),
            at: "2024-03-01T12:00:00Z".into(),
            id: String::new(),
        }];
        let line = status_line(Some("abc"), &s).unwrap();
        assert!(
            line.ends_with("; rollout shop/web batch 2 of 4; quarantined: shop/api"),
            "{line}"
        );
    }

    /// A datagram socket in a temporary folder, as systemd's would be, read on a thread of its
    /// own: each line with when it arrived.
    fn listen(dir: &std::path::Path) -> (SocketAddr, mpsc::Receiver<(StdInstant, String)>) {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let at = StdInstant::now();
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if tx.send((at, line.to_string())).is_err() {
                        return;
                    }
                }
            }
        });
        (SocketAddr::from_pathname(&path).unwrap(), rx)
    }

    /// The next line that `want` accepts, within `within`.
    fn next(
        rx: &mpsc::Receiver<(StdInstant, String)>,
        within: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Option<(StdInstant, String)> {
        let deadline = StdInstant::now() + within;
        loop {
            let left = deadline.checked_duration_since(StdInstant::now())?;
            match rx.recv_timeout(left) {
                Ok((at, line)) if want(&line) => return Some((at, line)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blocked_loop_stops_the_pings_and_a_moving_one_resumes_them() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, rx) = listen(dir.path());
        let (status_tx, status) = watch::channel(DaemonStatus::default());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let setup = Setup {
            socket,
            watchdog: Some(Duration::from_millis(200)),
        };
        let beat = start_with(setup, &mut tasks, status, cancel.clone());
        let (blocking_tx, blocking) = mpsc::channel::<StdInstant>();
        let (unblocked_tx, unblocked) = mpsc::channel::<StdInstant>();
        // The loop on a thread and runtime of its own, so that blocking it cannot hold up the
        // speaker's thread: what is tested is the speaker's judgement.
        let looping = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let run = async {
                // Waiting, as at a dependency gate: the heartbeat moves.
                tokio::time::sleep(Duration::from_millis(600)).await;
                blocking_tx.send(StdInstant::now()).unwrap();
                // A hung thread (the simulated fault, not a wait for a condition).
                std::thread::sleep(Duration::from_millis(1200));
                unblocked_tx.send(StdInstant::now()).unwrap();
                tokio::time::sleep(Duration::from_millis(800)).await;
            };
            rt.block_on(tend(&beat, run))
        });
        let ping = |l: &str| l == "WATCHDOG=1";
        let first = next(&rx, Duration::from_secs(5), ping).expect("pings while the loop waits");
        let blocked_at = blocking.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(first.0 < blocked_at + Duration::from_millis(100));
        let released_at = unblocked.recv_timeout(Duration::from_secs(5)).unwrap();
        // One look may still see the beats from just before the block; the next cannot.
        let quiet_from = blocked_at + Duration::from_millis(400);
        let mut during = Vec::new();
        while let Ok((at, line)) = rx.try_recv() {
            if ping(&line) && at > quiet_from && at < released_at {
                during.push(at - blocked_at);
            }
        }
        assert!(
            during.is_empty(),
            "pinged {during:?} after the loop blocked"
        );
        next(&rx, Duration::from_secs(2), ping).expect("pings resume once the loop moves");
        looping.join().unwrap();
        status_tx.send_modify(|s| s.phase = "stopping");
        cancel.cancel();
        tasks.join_all().await;
        next(&rx, Duration::from_secs(2), |l| l == "STOPPING=1").expect("STOPPING=1 at the end");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ready_and_status_go_out_and_the_start_timeout_is_extended_until_ready() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, rx) = listen(dir.path());
        let (status_tx, status) = watch::channel(DaemonStatus::default());
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let setup = Setup {
            socket,
            watchdog: Some(Duration::from_millis(200)),
        };
        let beat = start_with(setup, &mut tasks, status, cancel.clone());
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let looping = tokio::spawn(async move {
            tend(&beat, async {
                let _ = done.await;
            })
            .await
        });
        let (_, extend) = next(&rx, Duration::from_secs(5), |l| {
            l.starts_with("EXTEND_TIMEOUT_USEC=")
        })
        .expect("the start is extended while no pass has run");
        assert_eq!(extend, "EXTEND_TIMEOUT_USEC=300000");
        status_tx.send_replace(passed("abc123def456", 1, PassResult::Converged));
        next(&rx, Duration::from_secs(5), |l| l == "READY=1").expect("READY=1");
        let (_, line) =
            next(&rx, Duration::from_secs(5), |l| l.starts_with("STATUS=")).expect("STATUS=");
        assert!(line.contains("commit abc123def456"), "{line}");
        // Pings go on after READY, without extensions.
        next(&rx, Duration::from_secs(5), |l| l == "WATCHDOG=1").expect("a ping");
        while let Ok((_, line)) = rx.try_recv() {
            assert!(!line.starts_with("EXTEND_TIMEOUT_USEC="), "{line}");
        }
        next(&rx, Duration::from_secs(5), |l| l == "WATCHDOG=1").expect("another ping");
        cancel.cancel();
        tasks.join_all().await;
        next(&rx, Duration::from_secs(2), |l| l == "STOPPING=1").expect("STOPPING=1");
        let _ = done_tx.send(());
        looping.await.unwrap();
    }
}
