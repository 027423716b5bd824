//! Tests of the SSH transport. Most run against a real `sshd` on 127.0.0.1, started per test
//! with its own host key and one generated client key (they need root for `/run/sshd`; without
//! `sshd` or a docker engine they are skipped with a note, or fail under
//! `CONVOY_REQUIRE_DOCKER=1`); the rest check the generated config, the classification of ssh's
//! messages and the control folder without starting any process.
//!
//! They must not read or write the user's `~/.ssh`, must not weaken host key checking to get a
//! connection, and must not leave processes behind: each sshd is killed with its sessions when
//! dropped, also when a test fails.

use super::control::MAX_CONTROL_DIR_LEN;
use super::*;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use crate::model::spec::{ImagePolicy, SshSettings};

const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// With `CONVOY_REQUIRE_DOCKER=1` a missing sshd or engine fails the test; otherwise the test
/// is skipped with a note.
fn missing(what: &str) {
    if std::env::var("CONVOY_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{what} is missing and CONVOY_REQUIRE_DOCKER=1");
    }
    eprintln!("skipped: {what} is missing (set CONVOY_REQUIRE_DOCKER=1 to fail instead)");
}

async fn docker_available() -> bool {
    let ok = matches!(
        tokio::time::timeout(Duration::from_secs(3), ping(Path::new(DOCKER_SOCKET))).await,
        Ok(Ok(()))
    );
    if !ok {
        missing("a docker engine at /var/run/docker.sock");
    }
    ok
}

fn run(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn keygen(path: &Path) -> bool {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "convoy-test", "-f"])
        .arg(path))
}

/// The public key of `<key>.pub` as `type base64`.
fn public_key(key: &Path) -> String {
    let text = fs::read_to_string(key.with_extension("pub")).unwrap_or_default();
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every process descending from `pid`, read from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may contain spaces: the fields after its closing ')' are fixed.
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// An sshd on 127.0.0.1 with its own host key, accepting one generated client key; killed
/// with its session processes when dropped, also when a test fails.
struct TestSshd {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    log: PathBuf,
    client_key: PathBuf,
    known_hosts: PathBuf,
    empty_config: PathBuf,
}

impl TestSshd {
    async fn start(extra_config: &str) -> Option<TestSshd> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() || !run(Command::new("ssh").arg("-V")) {
            missing("sshd or ssh");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("cvy-sshd").tempdir().ok()?;
        let d = dir.path();
        let (host_key, client_key) = (d.join("host_key"), d.join("client_key"));
        assert!(
            keygen(&host_key) && keygen(&client_key),
            "ssh-keygen failed"
        );
        let authorized = d.join("authorized_keys");
        fs::write(&authorized, public_key(&client_key)).ok()?;
        let _ = fs::create_dir_all("/run/sshd");
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .ok()?
                .local_addr()
                .ok()?
                .port();
            let config = d.join("sshd_config");
            fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
                     PidFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n\
                     LogLevel VERBOSE\n{extra_config}\n",
                    host_key.display(),
                    authorized.display()
                ),
            )
            .ok()?;
            let log = d.join("sshd.log");
            let _ = fs::remove_file(&log);
            let mut child = Command::new(sshd)
                .arg("-D")
                .arg("-f")
                .arg(&config)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .spawn()
                .ok()?;
            // Wait on the condition (the port answers), not on a fixed sleep.
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut up = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !up {
                let _ = child.kill();
                let _ = child.wait();
                continue;
            }
            let known_hosts = d.join("known_hosts");
            fs::write(
                &known_hosts,
                format!("[127.0.0.1]:{port} {}\n", public_key(&host_key)),
            )
            .ok()?;
            let empty_config = d.join("empty_ssh_config");
            fs::write(&empty_config, "").ok()?;
            return Some(TestSshd {
                dir,
                child,
                port,
                log,
                client_key,
                known_hosts,
                empty_config,
            });
        }
        panic!("sshd did not start (see its log under {})", d.display());
    }

    fn host(&self, name: &str, docker_socket: &str) -> HostSpec {
        HostSpec {
            name: name.to_string(),
            address: HostAddress::Ssh {
                user: Some("root".to_string()),
                host: "127.0.0.1".to_string(),
                port: Some(self.port),
            },
            docker_socket: docker_socket.to_string(),
            labels: BTreeMap::new(),
            capacity: None,
            images: ImagePolicy::Pull,
            ssh: SshSettings {
                user: None,
                identity_file: Some(self.client_key.clone()),
                known_hosts: Some(self.known_hosts.clone()),
                // An empty user config keeps the test independent of ~/.ssh/config.
                config_file: Some(self.empty_config.clone()),
            },
            cordon: false,
            drain: false,
            files: Default::default(),
            internal_address: None,
        }
    }

    /// How many times sshd accepted our key: one per handshake.
    fn handshakes(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    fn sessions(&self) -> Vec<u32> {
        descendants(self.child.id())
    }

    /// Kills the sshd processes serving connections; the listener stays.
    fn kill_sessions(&self) {
        for pid in self.sessions() {
            // SAFETY: plain kill(2) on a pid we just read; failure is harmless.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }

    fn known_hosts_with(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::write(&path, content).expect("write known_hosts");
        path
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.kill_sessions();
    }
}

fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cvy")
        .tempdir()
        .expect("temp dir")
}

async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test]
async fn connects_and_pings_the_engine_through_the_forward() {
    if !docker_available().await {
        return;
    }
    let Some(sshd) = TestSshd::start("AllowStreamLocalForwarding yes").await else {
        return;
    };
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let host = sshd.host("edge-1", DOCKER_SOCKET);

    let started = Instant::now();
    let tunnel = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect("connect");
    let connect_time = started.elapsed();
    let socket = tunnel.docker_socket().to_path_buf();
    assert!(socket.starts_with(transport.control_dir()));
    assert!(socket.as_os_str().len() < 108);

    let mut rtts = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        ping(&socket).await.expect("ping through the forward");
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let t = Instant::now();
    tunnel.check().await.expect("check");
    eprintln!(
        "connect {connect_time:?}; ping round-trip median {:?} (min {:?}, max {:?}); check {:?}",
        rtts[rtts.len() / 2],
        rtts[0],
        rtts[rtts.len() - 1],
        t.elapsed()
    );

    tunnel.close().await;
    assert!(!socket.exists(), "close removes the forward's socket");
    assert!(
        wait_until(Duration::from_secs(3), || sshd.sessions().is_empty()).await,
        "close ends the ssh connection"
    );
    transport.shutdown();
    assert!(!transport.control_dir().exists());
}

#[tokio::test]
async fn one_handshake_per_master_and_reconnect_reuses_the_path() {
    if !docker_available().await {
        return;
    }
    let Some(sshd) = TestSshd::start("AllowStreamLocalForwarding yes").await else {
        return;
    };
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let host = sshd.host("edge-2", DOCKER_SOCKET);
    let timeouts = SshTimeouts::default();

    let first = transport.connect(&host, &timeouts).await.expect("connect");
    for _ in 0..25 {
        first.check().await.expect("check");
    }
    assert_eq!(
        sshd.handshakes(),
        1,
        "many requests, one master, one handshake"
    );

    // A reconnect while the old tunnel still exists: a new master, the same socket path.
    let second = transport
        .connect(&host, &timeouts)
        .await
        .expect("reconnect");
    assert_eq!(sshd.handshakes(), 2, "one more handshake per reconnect");
    assert_eq!(first.docker_socket(), second.docker_socket());
    second.check().await.expect("check after reconnect");

    // Closing the old tunnel must not delete the new tunnel's socket.
    first.close().await;
    assert!(second.docker_socket().exists());
    second
        .check()
        .await
        .expect("new tunnel survives closing the old one");
    second.close().await;
    transport.shutdown();
}

#[tokio::test]
async fn changed_host_key_is_refused_and_named() {
    let Some(sshd) = TestSshd::start("").await else {
        return;
    };
    let other = sshd.dir.path().join("other_key");
    assert!(keygen(&other));
    let known = sshd.known_hosts_with(
        "known_hosts_wrong",
        &format!("[127.0.0.1]:{} {}\n", sshd.port, public_key(&other)),
    );
    let mut host = sshd.host("edge-3", DOCKER_SOCKET);
    host.ssh.known_hosts = Some(known);
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let err = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect_err("a changed key must be refused");
    assert!(
        matches!(err, SshError::HostKeyChanged { .. }),
        "got {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("host key changed") && msg.contains("edge-3"),
        "{msg}"
    );
    assert_eq!(sshd.handshakes(), 0);
    transport.shutdown();
}

#[tokio::test]
async fn missing_host_key_is_refused_and_named() {
    let Some(sshd) = TestSshd::start("").await else {
        return;
    };
    let known = sshd.known_hosts_with("known_hosts_empty", "");
    let mut host = sshd.host("edge-4", DOCKER_SOCKET);
    host.ssh.known_hosts = Some(known.clone());
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let err = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect_err("an unknown key must be refused");
    assert!(
        matches!(err, SshError::UnknownHostKey { .. }),
        "got {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("no known host key") && msg.contains("edge-4"),
        "{msg}"
    );
    // Nothing was added to known_hosts behind the user's back.
    assert_eq!(fs::read_to_string(&known).unwrap_or_default(), "");
    transport.shutdown();
}

#[tokio::test]
async fn wrong_client_key_is_an_auth_failure() {
    let Some(sshd) = TestSshd::start("").await else {
        return;
    };
    let other = sshd.dir.path().join("stranger_key");
    assert!(keygen(&other));
    let mut host = sshd.host("edge-5", DOCKER_SOCKET);
    host.ssh.identity_file = Some(other);
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let err = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect_err("a stranger's key must be refused");
    assert!(matches!(err, SshError::AuthFailed { .. }), "got {err:?}");
    transport.shutdown();
}

#[tokio::test]
async fn nobody_listening_is_unreachable() {
    let Some(sshd) = TestSshd::start("").await else {
        return;
    };
    let mut host = sshd.host("edge-6", DOCKER_SOCKET);
    // A port nobody listens on: bind one and let it go.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    host.address = HostAddress::Ssh {
        user: Some("root".into()),
        host: "127.0.0.1".into(),
        port: Some(free),
    };
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let err = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect_err("nothing listens there");
    assert!(matches!(err, SshError::Unreachable { .. }), "got {err:?}");
    assert!(err.to_string().contains("Connection refused"), "{err}");
    transport.shutdown();
}

#[tokio::test]
async fn wrong_docker_socket_or_forbidden_forwarding_says_why() {
    if !docker_available().await {
        return;
    }
    let Some(sshd) = TestSshd::start("AllowStreamLocalForwarding yes").await else {
        return;
    };
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let host = sshd.host("edge-7", "/run/no-such-docker.sock");
    let err = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect_err("no engine there");
    assert!(
        matches!(err, SshError::EngineNotAnswering { .. }),
        "got {err:?}"
    );
    assert!(
        err.to_string().contains("/run/no-such-docker.sock"),
        "{err}"
    );
    eprintln!("wrong socket: {err}");
    assert!(
        wait_until(Duration::from_secs(3), || sshd.sessions().is_empty()).await,
        "a failed connect leaves no master behind"
    );

    let Some(closed) = TestSshd::start("AllowStreamLocalForwarding no").await else {
        return;
    };
    let host = closed.host("edge-8", DOCKER_SOCKET);
    let err = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect_err("forwarding is forbidden");
    assert!(
        matches!(err, SshError::EngineNotAnswering { .. }),
        "got {err:?}"
    );
    eprintln!("forwarding forbidden: {err}");
    assert!(
        err.to_string().contains("AllowStreamLocalForwarding"),
        "{err}"
    );
    transport.shutdown();
}

#[tokio::test]
async fn check_fails_soon_after_the_connection_dies() {
    if !docker_available().await {
        return;
    }
    let Some(sshd) = TestSshd::start("AllowStreamLocalForwarding yes").await else {
        return;
    };
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let host = sshd.host("edge-9", DOCKER_SOCKET);
    let timeouts = SshTimeouts {
        connect: Duration::from_secs(5),
        keepalive_interval_secs: 1,
        keepalive_count: 2,
    };
    let tunnel = transport.connect(&host, &timeouts).await.expect("connect");
    tunnel.check().await.expect("check while up");

    sshd.kill_sessions();
    let killed = Instant::now();
    let mut failed = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if let Err(e) = tunnel.check().await {
            failed = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = failed.expect("check must fail once the connection is gone");
    eprintln!("check failed after {:?}: {err}", killed.elapsed());
    assert!(killed.elapsed() < Duration::from_secs(5));
    tunnel.close().await;
    transport.shutdown();
}

/// A peer that stops answering (a partition, as far as the master can tell): the master's own
/// check still says Ok, so only the ping notices, within its 3 s.
#[tokio::test]
async fn check_fails_when_the_peer_goes_silent() {
    if !docker_available().await {
        return;
    }
    let Some(sshd) = TestSshd::start("AllowStreamLocalForwarding yes").await else {
        return;
    };
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let host = sshd.host("edge-11", DOCKER_SOCKET);
    let tunnel = transport
        .connect(&host, &SshTimeouts::default())
        .await
        .expect("connect");
    tunnel.check().await.expect("check while up");
    let stopped = sshd.sessions();
    for pid in &stopped {
        // SAFETY: kill(2) on a pid we just read; the Drop guard SIGKILLs them later.
        unsafe { libc::kill(*pid as i32, libc::SIGSTOP) };
    }
    let t = Instant::now();
    assert!(
        tunnel.session.check().await.is_ok(),
        "the master alone still says Ok"
    );
    let err = tunnel
        .check()
        .await
        .expect_err("a silent peer must fail the check");
    eprintln!("silent peer noticed after {:?}: {err}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(4));
    for pid in &stopped {
        // SAFETY: as above.
        unsafe { libc::kill(*pid as i32, libc::SIGCONT) };
    }
    tunnel.close().await;
    transport.shutdown();
}

#[tokio::test]
async fn start_up_closes_masters_of_dead_processes_only() {
    let Some(sshd) = TestSshd::start("").await else {
        return;
    };
    let state = state_dir();
    let base = control_base(state.path(), std::process::id()).expect("base");

    // A dead process's folder: its lock file exists but nobody holds it, and its master
    // (started by `ssh -f`) is still running.
    let dead = base.join("4000001");
    fs::create_dir_all(&dead).expect("dead folder");
    fs::write(base.join("4000001.lock"), "").expect("dead lock");
    let host = sshd.host("edge-10", DOCKER_SOCKET);
    let config = dead.join("edge.conf");
    let text = ssh_config(
        &host,
        Some("root"),
        Some(sshd.port),
        &SshTimeouts::default(),
        None,
    )
    .expect("config");
    fs::write(&config, text).expect("write config");
    let mut builder = SessionBuilder::default();
    builder
        .known_hosts_check(KnownHosts::Strict)
        .config_file(&config)
        .control_directory(&dead);
    let session = builder.connect_mux("127.0.0.1").await.expect("master");
    let (ctl, _log) = session.detach();
    assert!(ctl.exists());
    assert_eq!(sshd.handshakes(), 1);
    assert!(!sshd.sessions().is_empty());

    // A live process's folder: its lock is held (by us, standing in for that process).
    let live = base.join("4000002");
    fs::create_dir_all(&live).expect("live folder");
    let _held = take_lock(&base.join("4000002.lock")).expect("hold live lock");

    let transport = SshTransport::new(state.path()).expect("transport");
    assert!(!dead.exists(), "the dead process's folder is removed");
    assert!(!base.join("4000001.lock").exists());
    assert!(
        wait_until(Duration::from_secs(3), || sshd.sessions().is_empty()).await,
        "the dead process's master is closed, not just its folder removed"
    );
    assert!(live.exists(), "a live process's folder is left alone");
    transport.shutdown();
    assert!(live.exists());
}

/// Against the namespace fleet of `tests/fleet/up` when it is running (`CONVOY_FLEET_ENV`, or
/// its default `/var/tmp/convoy-fleet/fleet.env`): three hosts connected at once.
#[tokio::test]
async fn connects_to_the_namespace_fleet_at_once() {
    let env_path = std::env::var("CONVOY_FLEET_ENV")
        .unwrap_or_else(|_| "/var/tmp/convoy-fleet/fleet.env".to_string());
    let Ok(text) = fs::read_to_string(&env_path) else {
        eprintln!("skipped: no test fleet at {env_path}");
        return;
    };
    let env: BTreeMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| env.get(k).copied().unwrap_or_default().to_string();
    let hosts: Vec<HostSpec> = get("HOSTS")
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let key = h.to_uppercase();
            HostSpec {
                name: h.to_string(),
                address: HostAddress::Ssh {
                    user: Some(get("FLEET_SSH_USER")),
                    host: get(&format!("{key}_ADDR")),
                    port: get("FLEET_SSH_PORT").parse().ok(),
                },
                docker_socket: get(&format!("{key}_DOCKER_SOCK")),
                labels: BTreeMap::new(),
                capacity: None,
                images: ImagePolicy::Pull,
                ssh: SshSettings {
                    user: None,
                    identity_file: Some(get("FLEET_SSH_KEY").into()),
                    known_hosts: Some(get("FLEET_KNOWN_HOSTS").into()),
                    config_file: None,
                },
                cordon: false,
                drain: false,
                files: Default::default(),
                internal_address: None,
            }
        })
        .collect();
    let state = state_dir();
    let transport = SshTransport::new(state.path()).expect("transport");
    let timeouts = SshTimeouts::default();
    let t = Instant::now();
    let results =
        futures_util::future::join_all(hosts.iter().map(|h| transport.connect(h, &timeouts))).await;
    let elapsed = t.elapsed();
    let mut tunnels = Vec::new();
    for (host, result) in hosts.iter().zip(results) {
        match result {
            Ok(t) => tunnels.push(t),
            Err(e) => {
                if std::env::var("CONVOY_REQUIRE_DOCKER").as_deref() == Ok("1") {
                    panic!("fleet host {}: {e}", host.name);
                }
                eprintln!("fleet host {} not reachable, skipped: {e}", host.name);
            }
        }
    }
    eprintln!(
        "{} fleet hosts connected at once in {elapsed:?}",
        tunnels.len()
    );
    for tunnel in &tunnels {
        let t = Instant::now();
        tunnel.check().await.expect("check");
        eprintln!("{}: check {:?}", tunnel.host(), t.elapsed());
    }
    for tunnel in tunnels {
        tunnel.close().await;
    }
    transport.shutdown();
}

#[test]
fn generated_config_puts_convoy_settings_before_the_include() {
    let host = HostSpec {
        name: "edge".into(),
        address: HostAddress::Ssh {
            user: None,
            host: "edge.example".into(),
            port: Some(2222),
        },
        docker_socket: DOCKER_SOCKET.into(),
        labels: BTreeMap::new(),
        capacity: None,
        images: ImagePolicy::Pull,
        ssh: SshSettings {
            user: Some("deploy".into()),
            identity_file: Some("/keys/id 50%".into()),
            known_hosts: Some("/etc/convoy/known_hosts".into()),
            config_file: None,
        },
        cordon: false,
        drain: false,
        files: Default::default(),
        internal_address: None,
    };
    let timeouts = SshTimeouts {
        connect: Duration::from_millis(1500),
        keepalive_interval_secs: 0,
        keepalive_count: 3,
    };
    let text = ssh_config(
        &host,
        None,
        Some(2222),
        &timeouts,
        Some("/home/u/.ssh/config".into()),
    )
    .expect("config");
    let pos = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {text}"))
    };
    assert!(pos("StrictHostKeyChecking yes") < pos("Include"));
    assert!(pos("ServerAliveInterval 1\n") < pos("Include"));
    assert!(pos("User \"deploy\"") < pos("Include"));
    assert!(pos("Port 2222") < pos("Include"));
    assert!(pos("IdentityFile \"/keys/id 50%%\"\nIdentitiesOnly yes") < pos("Include"));
    assert!(pos("UserKnownHostsFile \"/etc/convoy/known_hosts\"") < pos("Include"));
    assert!(pos("ConnectTimeout 2\n") > 0);
    assert!(pos("BatchMode yes") > 0);
    assert!(text.ends_with("Include \"/home/u/.ssh/config\"\n"));

    // No identity given: IdentitiesOnly would lock out the agent, so it is not set.
    let mut bare = host.clone();
    bare.ssh = SshSettings::default();
    let text =
        ssh_config(&bare, Some("root"), None, &SshTimeouts::default(), None).expect("config");
    assert!(!text.contains("IdentitiesOnly") && !text.contains("Include"));
    assert!(!text.contains("Port") && text.contains("User \"root\""));

    // Hostile values never reach the file.
    bare.ssh.user = Some("x\"\nProxyCommand evil".into());
    assert!(ssh_config(&bare, None, None, &SshTimeouts::default(), None).is_err());
    bare.ssh.user = None;
    bare.ssh.config_file = Some("/no/such/ssh_config".into());
    assert!(ssh_config(&bare, None, None, &SshTimeouts::default(), None).is_err());
}

#[test]
fn ssh_messages_are_classified() {
    let err = |text: &str| {
        openssh::Error::Connect(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            text.to_string(),
        ))
    };
    let changed = "@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
                   Offending ED25519 key in /k/known_hosts:1\n\
                   Host key for [h]:22 has changed and you have requested strict checking.\n\
                   Host key verification failed.";
    let e = classify_connect_error("a", &err(changed));
    assert!(
        matches!(&e, SshError::HostKeyChanged { detail, .. } if detail.contains("/k/known_hosts:1"))
    );
    let unknown =
        "No ED25519 host key is known for [h]:22 and you have requested strict checking.\n\
                   Host key verification failed.";
    assert!(matches!(
        classify_connect_error("a", &err(unknown)),
        SshError::UnknownHostKey { .. }
    ));
    let denied = "root@h: Permission denied (publickey).";
    assert!(matches!(
        classify_connect_error("a", &err(denied)),
        SshError::AuthFailed { .. }
    ));
    let dns = "ssh: Could not resolve hostname nope: Name or service not known";
    assert!(matches!(
        classify_connect_error("a", &err(dns)),
        SshError::Unreachable { .. }
    ));
    let odd = "";
    assert!(matches!(
        classify_connect_error("a", &err(odd)),
        SshError::Other { .. }
    ));
}

#[test]
fn slugs_are_short_safe_and_distinct() {
    let a = host_slug("edge/1");
    let b = host_slug("edge1");
    assert_ne!(a, b);
    assert!(a.starts_with("edge1-"));
    let long = host_slug(&"é-x".repeat(200));
    assert!(long.len() <= 16 + 1 + 8);
    assert!(host_slug("").len() == 9);
}

#[test]
fn long_state_dirs_fall_back_to_a_short_private_folder() {
    let long = Path::new("/var/tmp").join("x".repeat(80));
    let base = control_base(&long, 4_194_304).expect("fallback");
    assert!(base.to_string_lossy().starts_with("/tmp/cvy-"));
    assert!(base.join("4194304").as_os_str().len() <= MAX_CONTROL_DIR_LEN);
    assert!(!long.exists(), "the long state dir is not created for this");
    // Only if empty: another process may be using it.
    let _ = fs::remove_dir(&base);
}

#[test]
fn destinations_that_look_like_options_are_refused() {
    assert!(validate_destination("-oProxyCommand=x").is_err());
    assert!(validate_destination("").is_err());
    assert!(validate_destination("a b").is_err());
    assert!(validate_destination("edge-1.example").is_ok());
}
