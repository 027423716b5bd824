//! The SSH transport to each host: one multiplexed OpenSSH master per host and a local unix-socket
//! forward to the host's Docker socket, which the Docker client then uses as if it were local.
//!
//! It drives the system `ssh` through the `openssh` crate (native mux), so the user's
//! `~/.ssh/config`, agent, certificates and `ProxyJump` keep working. Its boundary: it knows
//! nothing about Docker's API beyond the socket path and a `GET /_ping` that proves the far end
//! answers; everything else belongs to the `docker` module. It never weakens host key checking:
//! keys are always checked strictly against known_hosts, and an unknown or changed key is an error
//! that says so. It never accepts a key on first use and never points known_hosts at an empty file.
//!
//! Files: every process gets a short control folder (see [`SshTransport::new`]) holding the
//! generated ssh config per host, the masters' control sockets and logs, and the forwarded
//! sockets. A lock file held with `flock` beside the folder tells other processes it is alive;
//! folders whose lock nobody holds belong to dead processes and are cleaned up at start-up,
//! masters included (a master started by `ssh -f` outlives a killed Convoy).
//!
//! The parts: `config` writes the ssh config of a host, `control` keeps the control folder and
//! its lock, `errors` names what went wrong; this file connects, forwards, pings and closes.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::{debug, info, warn};

use crate::model::spec::{HostAddress, HostSpec};

mod config;
mod control;
mod errors;
#[cfg(test)]
mod tests;

use config::{ssh_config, user_default_config, validate_destination, write_private};
use control::{
    clean_stale, close_masters_in, control_base, host_slug, remove_if_exists, take_lock,
};
pub use errors::SshError;
use errors::{classify_connect_error, error_text, other};

/// How long `check` and the start-up cleanup wait for an answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The most we read of a `/_ping` answer: the engine sends a few hundred bytes.
const PING_MAX_BYTES: u64 = 16 * 1024;

/// Timeouts and keepalive of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTimeouts {
    /// The TCP connect and banner exchange (ssh's `ConnectTimeout`, whole seconds, rounded up);
    /// also bounds each other step of `connect`.
    pub connect: Duration,
    /// ssh's `ServerAliveInterval`. A cut link is noticed after about interval x count
    /// (measured: 1 s x 2 gives 2.1 s, 2 s x 3 gives 6.8 s). 0 would turn keepalive off and a
    /// cut link would never be noticed, so it is raised to 1.
    pub keepalive_interval_secs: u32,
    /// ssh's `ServerAliveCountMax` (raised to 1 if 0).
    pub keepalive_count: u32,
}

impl Default for SshTimeouts {
    fn default() -> Self {
        SshTimeouts {
            connect: Duration::from_secs(10),
            keepalive_interval_secs: 2,
            keepalive_count: 3,
        }
    }
}

/// The SSH side of Convoy: one per process.
#[derive(Debug)]
pub struct SshTransport {
    /// Parent of every process's folder (`<state_dir>/c` or `/tmp/cvy-<uid>`).
    base: PathBuf,
    /// This process's folder: `<base>/<pid>`.
    dir: PathBuf,
    /// `<base>/<pid>.lock`, held with `flock` for the life of the process.
    lock_path: PathBuf,
    _lock: File,
}

/// One live connection to a host: its master and the forward of its Docker socket.
#[derive(Debug)]
pub struct SshTunnel {
    host: String,
    session: Session,
    forward: PathBuf,
    remote_socket: String,
    /// (device, inode) of the forward socket we bound, so that `close` never deletes a newer
    /// tunnel's socket at the same path.
    forward_id: Option<(u64, u64)>,
    /// The generated ssh config and the destination, for commands through the master
    /// (`shell_target`).
    config: PathBuf,
    destination: String,
}

/// What runs a command on a host through its existing master: `ssh -F <config> -S <control>
/// <destination> -- <command>` (no new authentication, the same strict host keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellTarget {
    pub host: String,
    pub config: PathBuf,
    pub control: PathBuf,
    pub destination: String,
}

impl ShellTarget {
    /// `ssh` through the host's existing master (no new authentication, strict host keys),
    /// options set; the caller adds what to do (`-T <destination> -- <command>`, `-W ...`).
    pub fn muxed_ssh(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ssh");
        c.arg("-F")
            .arg(&self.config)
            .arg("-S")
            .arg(&self.control)
            .args(["-o", "ControlMaster=no", "-o", "StrictHostKeyChecking=yes"]);
        c
    }

    /// `ssh -W <target>` through the host's master: its stdin and stdout are a TCP connection
    /// to `target` as seen from the host (piped; ssh is killed when dropped). The caller
    /// chooses what becomes of its stderr.
    pub fn forward(&self, target: std::net::SocketAddr) -> tokio::process::Command {
        let mut c = self.muxed_ssh();
        c.arg("-W")
            .arg(target.to_string())
            .arg(&self.destination)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }
}

impl SshTransport {
    /// Sets up this process's control folder under `state_dir` and cleans up after dead processes.
    ///
    /// The folder is `<state_dir>/c/<pid>` when that is at most 60 bytes long, else
    /// `/tmp/cvy-<uid>/<pid>` (a folder only this user may enter): ssh's control socket paths
    /// are long and unix socket paths are limited to 108 bytes. Its lock file `<pid>.lock`
    /// sits beside it and is created and locked before the folder exists, so a scan never sees a
    /// folder of a live process without a held lock.
    ///
    /// At start-up every folder whose lock is free belongs to a process that died: its masters
    /// are closed (`Session::resume_mux(..).close()`) and the folder is deleted. Folders of live
    /// processes are never touched.
    pub fn new(state_dir: &Path) -> Result<SshTransport, SshError> {
        let pid = std::process::id();
        let base = control_base(state_dir, pid).map_err(|cause| SshError::Setup { cause })?;
        let removed = clean_stale(&base);
        if removed > 0 {
            info!(base = %base.display(), removed, "closed ssh masters left by dead processes");
        }
        let lock_path = base.join(format!("{pid}.lock"));
        let lock = take_lock(&lock_path).map_err(|e| SshError::Setup {
            cause: format!("cannot lock `{}`: {e}", lock_path.display()),
        })?;
        let dir = base.join(pid.to_string());
        // A folder of ours left from a dead process with the same pid was removed by
        // `clean_stale` above; whatever is still there is garbage.
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| SshError::Setup {
                cause: format!("cannot create `{}`: {e}", dir.display()),
            })?;
        debug!(dir = %dir.display(), "ssh control folder ready");
        Ok(SshTransport {
            base,
            dir,
            lock_path,
            _lock: lock,
        })
    }

    /// This process's control folder.
    #[cfg(test)]
    pub fn control_dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (or reopens) one multiplexed master to the host and a local unix-socket forward to
    /// its Docker socket, then pings the engine through it: the forward itself is accepted even
    /// when the far end is wrong, so only a ping tells a wrong `docker_socket` or
    /// `AllowStreamLocalForwarding no` apart from success. Every step has a timeout.
    ///
    /// The forward path is the same for every connect to a host, so a Docker client built on it
    /// survives a reconnect; a socket file left there is deleted first (a forward onto an
    /// existing file fails).
    pub async fn connect(
        &self,
        host: &HostSpec,
        timeouts: &SshTimeouts,
    ) -> Result<SshTunnel, SshError> {
        let name = host.name.as_str();
        let started = Instant::now();
        let (destination, user, port) = match &host.address {
            HostAddress::Ssh { user, host, port } => (host.as_str(), user.as_ref(), *port),
            HostAddress::Unix { path } => {
                return Err(other(
                    name,
                    format!(
                        "address is a local socket (`{}`), not an ssh:// host",
                        path.display()
                    ),
                ))
            }
        };
        validate_destination(destination).map_err(|c| other(name, c))?;
        if host.docker_socket.is_empty() {
            return Err(other(name, "docker_socket is empty".to_string()));
        }

        let slug = host_slug(name);
        let config_path = self.dir.join(format!("{slug}.conf"));
        let config = ssh_config(
            host,
            user.map(String::as_str),
            port,
            timeouts,
            user_default_config(),
        )
        .map_err(|c| other(name, c))?;
        write_private(&config_path, &config).map_err(|e| {
            other(
                name,
                format!("cannot write `{}`: {e}", config_path.display()),
            )
        })?;

        // A forward onto a path whose socket file exists fails, and sockets outlive both
        // `close_port_forward` and their master: delete what an earlier tunnel left.
        let forward = self.dir.join(format!("{slug}.sock"));
        remove_if_exists(&forward).map_err(|e| {
            other(
                name,
                format!("cannot remove old forward `{}`: {e}", forward.display()),
            )
        })?;

        let mut builder = SessionBuilder::default();
        // Strict checking is passed on ssh's command line, which wins over any config file;
        // the generated config says the same so that it reads correctly on its own.
        builder
            .known_hosts_check(KnownHosts::Strict)
            .config_file(&config_path)
            .control_directory(&self.dir);
        // The ssh process is bounded by ConnectTimeout for the TCP connect and banner; the
        // rest (key exchange, authentication) normally takes milliseconds. Our own bound is
        // a little wider so that ssh's own, more precise message wins when it can.
        let master_limit = timeouts.connect + Duration::from_secs(2);
        let session =
            match tokio::time::timeout(master_limit, builder.connect_mux(destination)).await {
                Err(_) => {
                    warn!(host = name, after = ?master_limit, "ssh master timed out");
                    return Err(SshError::Timeout {
                        host: name.to_string(),
                        step: "opening the ssh connection",
                        after: master_limit,
                    });
                }
                Ok(Err(e)) => {
                    let err = classify_connect_error(name, &e);
                    // The caller reports it once, with whether waiting can help: here it
                    // would be said twice.
                    debug!(host = name, error = %err, "ssh master failed");
                    return Err(err);
                }
                Ok(Ok(s)) => s,
            };
        let master_elapsed = started.elapsed();

        let remote = host.docker_socket.clone();
        let forwarded = tokio::time::timeout(
            timeouts.connect,
            session.request_port_forward(
                ForwardType::Local,
                Socket::UnixSocket {
                    path: forward.as_path().into(),
                },
                Socket::UnixSocket {
                    path: Path::new(&remote).into(),
                },
            ),
        )
        .await;
        let failure = match forwarded {
            Err(_) => Some(SshError::Timeout {
                host: name.to_string(),
                step: "forwarding the docker socket",
                after: timeouts.connect,
            }),
            Ok(Err(e)) => Some(SshError::ForwardFailed {
                host: name.to_string(),
                socket: remote.clone(),
                cause: error_text(&e),
            }),
            Ok(Ok(())) => None,
        };
        if let Some(err) = failure {
            warn!(host = name, error = %err, "ssh forward failed");
            close_session(name, session).await;
            let _ = remove_if_exists(&forward);
            return Err(err);
        }
        let forward_id = fs::symlink_metadata(&forward)
            .ok()
            .map(|m| (m.dev(), m.ino()));

        let ping_started = Instant::now();
        let ping_result = tokio::time::timeout(timeouts.connect, ping(&forward)).await;
        let failure = match ping_result {
            Err(_) => Some(SshError::Timeout {
                host: name.to_string(),
                step: "pinging the docker engine",
                after: timeouts.connect,
            }),
            Ok(Err(cause)) => Some(SshError::EngineNotAnswering {
                host: name.to_string(),
                socket: remote.clone(),
                cause: explain_ping_failure(&session, cause),
            }),
            Ok(Ok(())) => None,
        };
        if let Some(err) = failure {
            warn!(host = name, error = %err, "docker engine not answering through the forward");
            close_session(name, session).await;
            let _ = remove_if_exists(&forward);
            return Err(err);
        }
        info!(
            host = name,
            master_ms = master_elapsed.as_millis() as u64,
            ping_us = ping_started.elapsed().as_micros() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "ssh tunnel up"
        );
        Ok(SshTunnel {
            host: name.to_string(),
            session,
            forward,
            remote_socket: remote,
            forward_id,
            config: config_path,
            destination: destination.to_string(),
        })
    }

    /// Removes this process's folder and lock file (call on exit). Closing each tunnel is the
    /// caller's job; a master still running here is closed anyway, because once its control
    /// socket is deleted nothing could ever close it.
    pub fn shutdown(&self) {
        let closed = close_masters_in(&self.dir);
        if closed > 0 {
            debug!(closed, "closed ssh masters still open at shutdown");
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(dir = %self.dir.display(), error = %e, "cannot remove ssh control folder");
            }
        }
        let _ = fs::remove_file(&self.lock_path);
        debug!(base = %self.base.display(), "ssh transport shut down");
    }
}

impl SshTunnel {
    /// The local end of the forward: hand it to the Docker client's unix-socket connector.
    pub fn docker_socket(&self) -> &Path {
        &self.forward
    }

    /// How to run a command through this master (`infra::files::HostShell`).
    pub fn shell_target(&self) -> ShellTarget {
        ShellTarget {
            host: self.host.clone(),
            config: self.config.clone(),
            control: self.session.control_socket().to_path_buf(),
            destination: self.destination.clone(),
        }
    }

    /// The host's name in `convoy.yaml`.
    #[cfg(test)]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Is the host reachable right now? The master must answer and a `/_ping` must come back
    /// through the forward within 3 s: the master alone says Ok while the network is dead.
    pub async fn check(&self) -> Result<(), SshError> {
        let deadline = Instant::now() + CHECK_TIMEOUT;
        let timeout = |step| SshError::Timeout {
            host: self.host.clone(),
            step,
            after: CHECK_TIMEOUT,
        };
        match tokio::time::timeout(CHECK_TIMEOUT, self.session.check()).await {
            Err(_) => return Err(timeout("checking the ssh master")),
            Ok(Err(e)) => {
                return Err(SshError::Unreachable {
                    host: self.host.clone(),
                    cause: format!("the ssh connection is gone ({})", error_text(&e)),
                })
            }
            Ok(Ok(())) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ping(&self.forward)).await {
            Err(_) => Err(timeout("pinging the docker engine")),
            Ok(Err(cause)) => {
                // A ping that fails at once usually means the master has just died with its
                // connection; ask it again so the error names the real cause.
                let master = tokio::time::timeout(Duration::from_millis(500), self.session.check());
                if let Ok(Err(e)) = master.await {
                    return Err(SshError::Unreachable {
                        host: self.host.clone(),
                        cause: format!("the ssh connection is gone ({})", error_text(&e)),
                    });
                }
                Err(SshError::EngineNotAnswering {
                    host: self.host.clone(),
                    socket: self.remote_socket.clone(),
                    cause,
                })
            }
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Closes the forward and the master, and deletes the forward's socket file unless a newer
    /// tunnel to the same host has already replaced it.
    pub async fn close(self) {
        let SshTunnel {
            host,
            session,
            forward,
            remote_socket,
            forward_id,
            ..
        } = self;
        let _ = tokio::time::timeout(
            CHECK_TIMEOUT,
            session.close_port_forward(
                ForwardType::Local,
                Socket::UnixSocket {
                    path: forward.as_path().into(),
                },
                Socket::UnixSocket {
                    path: Path::new(&remote_socket).into(),
                },
            ),
        )
        .await;
        close_session(&host, session).await;
        let same = fs::symlink_metadata(&forward)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if same.is_some() && same == forward_id {
            let _ = fs::remove_file(&forward);
        }
        debug!(host = %host, "ssh tunnel closed");
    }
}

async fn close_session(host: &str, session: Session) {
    match tokio::time::timeout(CHECK_TIMEOUT, session.close()).await {
        Ok(Ok(())) => {}
        // The master is already gone (its connection died): nothing to close.
        Ok(Err(openssh::Error::Disconnected)) => {}
        Ok(Err(e)) => debug!(host, error = %error_text(&e), "closing ssh master"),
        Err(_) => warn!(host, "closing the ssh master timed out"),
    }
}

/// `GET /_ping` over the forward, expecting `200` and `OK`. The answer is parsed as it arrives
/// and the ping ends as soon as the body is complete: waiting for the engine to close the
/// connection instead costs about 40 ms through ssh (measured), against under 1 ms.
async fn ping(socket: &Path) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to the forward: {e}"))?;
    stream
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| format!("cannot send the ping: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 2048];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) if answer.is_empty() => {
                return Err(format!("the connection failed without an answer: {e}"))
            }
            Err(e) => return Err(format!("the answer was cut: {e}")),
        };
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
        if ping_answer_complete(&answer) || answer.len() as u64 >= PING_MAX_BYTES {
            break;
        }
    }
    if answer.is_empty() {
        return Err("the connection was closed without an answer".to_string());
    }
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or("");
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    if status == "200" && body.contains("OK") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer to /_ping: `{}`",
            status_line.escape_debug()
        ))
    }
}

/// Has the whole answer arrived? Headers done and `Content-Length` bytes of body, or (chunked or
/// unsized) the `OK` already seen.
fn ping_answer_complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(n) => body.len() >= n,
        None => body.contains("OK"),
    }
}

/// Why a ping through a freshly made forward got nothing: the master's log says when the far end
/// refused the channel.
fn explain_ping_failure(session: &Session, cause: String) -> String {
    let log = session.control_socket().with_file_name("log");
    let refusal = fs::read_to_string(&log).ok().and_then(|text| {
        text.lines()
            .rev()
            .find(|l| l.contains("open failed"))
            .map(|l| l.trim().to_string())
    });
    match refusal {
        // sshd says only "open failed" for a missing socket, a socket the user may not open and
        // `AllowStreamLocalForwarding no` alike (measured), so all three are named.
        Some(line) => format!(
            "{cause}; the host refused the socket ({line}): is `docker_socket` right, may the \
             user open it, and does sshd allow it (`AllowStreamLocalForwarding`)?"
        ),
        None => cause,
    }
}
