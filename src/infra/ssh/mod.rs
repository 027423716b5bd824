//! The SSH transport to each host: one multiplexed OpenSSH master per host and a local unix-socket
//! forward to the host's Docker socket, which the Docker client then uses as if it were local.
//!
//! It drives the system `ssh` through the `openssh` crate (native mux), so the user's
//! `~/.ssh/config`, agent, certificates and `ProxyJump` keep working. Its boundary: it knows
//! nothing about Docker's API beyond the socket path and a `GET /_ping` that proves the far end
//! answers; everything else belongs to `docker.rs`. It never weakens host key checking: keys are
//! always checked strictly against known_hosts, and an unknown or changed key is an error that says
//! so. It never accepts a key on first use and never points known_hosts at an empty file.
//!
//! Files: every process gets a short control folder (see [`SshTransport::new`]) holding the
//! generated ssh config per host, the masters' control sockets and logs, and the forwarded
//! sockets. A lock file held with `flock` beside the folder tells other processes it is alive;
//! folders whose lock nobody holds belong to dead processes and are cleaned up at start-up,
//! masters included (a master started by `ssh -f` outlives a killed Convoy).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use openssh::{ForwardType, KnownHosts, Session, SessionBuilder, Socket};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::{debug, info, warn};

use crate::model::spec::{HostAddress, HostSpec};

/// Longest control folder we accept. ssh binds the master socket at
/// `<folder>/.ssh-connectionXXXXXX/master.<16 random chars>` (46 bytes more), and a unix socket
/// path must fit in 108 bytes with its NUL, so the folder must stay at or under about 61 bytes.
const MAX_CONTROL_DIR_LEN: usize = 60;

/// How long `check` and the start-up cleanup wait for an answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The most we read of a `/_ping` answer: the engine sends a few hundred bytes.
const PING_MAX_BYTES: u64 = 16 * 1024;

/// What went wrong reaching a host. Messages name the host and the cause; the text that ssh
/// writes (only in the master's log, and in the `Debug` form of `openssh`'s error) is classified
/// here so that callers never have to parse it.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("host key changed for host `{host}`: the key it offers does not match known_hosts, refusing to connect ({detail})")]
    HostKeyChanged { host: String, detail: String },
    #[error("no known host key for host `{host}`: add its key to known_hosts ({detail})")]
    UnknownHostKey { host: String, detail: String },
    #[error("authentication to host `{host}` failed: {detail}")]
    AuthFailed { host: String, detail: String },
    #[error("host `{host}` is unreachable: {cause}")]
    Unreachable { host: String, cause: String },
    #[error("cannot forward the docker socket `{socket}` of host `{host}`: {cause}")]
    ForwardFailed {
        host: String,
        socket: String,
        cause: String,
    },
    #[error("the docker engine of host `{host}` is not answering at `{socket}`: {cause}")]
    EngineNotAnswering {
        host: String,
        socket: String,
        cause: String,
    },
    #[error("timed out after {after:?} {step} on host `{host}`")]
    Timeout {
        host: String,
        step: &'static str,
        after: Duration,
    },
    #[error("ssh to host `{host}` failed: {cause}")]
    Other { host: String, cause: String },
}

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
        let base = control_base(state_dir, pid).map_err(|e| other("-", e))?;
        let removed = clean_stale(&base);
        if removed > 0 {
            info!(base = %base.display(), removed, "closed ssh masters left by dead processes");
        }
        let lock_path = base.join(format!("{pid}.lock"));
        let lock = take_lock(&lock_path)
            .map_err(|e| other("-", format!("cannot lock `{}`: {e}", lock_path.display())))?;
        let dir = base.join(pid.to_string());
        // A folder of ours left from a dead process with the same pid was removed by
        // `clean_stale` above; whatever is still there is garbage.
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| other("-", format!("cannot create `{}`: {e}", dir.display())))?;
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
                    warn!(host = name, error = %err, "ssh master failed");
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

fn other(host: &str, cause: impl Into<String>) -> SshError {
    SshError::Other {
        host: host.to_string(),
        cause: cause.into(),
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

/// Where the per-process folders live: `<state_dir>/c` if `<state_dir>/c/<pid>` is short enough,
/// else `/tmp/cvy-<uid>`. Creates it (mode 0700).
fn control_base(state_dir: &Path, pid: u32) -> Result<PathBuf, String> {
    let state_dir = std::path::absolute(state_dir)
        .map_err(|e| format!("bad state directory `{}`: {e}", state_dir.display()))?;
    let preferred = state_dir.join("c");
    let fits = |base: &Path| base.join(pid.to_string()).as_os_str().len() <= MAX_CONTROL_DIR_LEN;
    if fits(&preferred) {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&preferred)
            .map_err(|e| format!("cannot create `{}`: {e}", preferred.display()))?;
        return Ok(preferred);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let fallback = PathBuf::from(format!("/tmp/cvy-{uid}"));
    match fs::DirBuilder::new().mode(0o700).create(&fallback) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create `{}`: {e}", fallback.display())),
    }
    // /tmp is shared: refuse a folder (or symlink) someone else planted there.
    let meta = fs::symlink_metadata(&fallback)
        .map_err(|e| format!("cannot inspect `{}`: {e}", fallback.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "`{}` is not a private folder of this user; remove it or use a shorter state directory",
            fallback.display()
        ));
    }
    Ok(fallback)
}

/// Creates `path` if needed and takes an exclusive `flock` on it, making sure the file we locked
/// is still the one at `path` (a cleaner may have deleted it between our open and our lock).
fn take_lock(path: &Path) -> io::Result<File> {
    for _ in 0..10 {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)?;
        if !try_flock(&file)? {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "held by another live process",
            ));
        }
        let ours = file.metadata()?;
        match fs::metadata(path) {
            Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => return Ok(file),
            _ => continue,
        }
    }
    Err(io::Error::other("the lock file keeps being replaced"))
}

/// `flock(LOCK_EX | LOCK_NB)`: true when we got the lock, false when another process holds it.
fn try_flock(file: &File) -> io::Result<bool> {
    // SAFETY: the descriptor is valid for the duration of the call (we borrow the File).
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Closes the masters and removes the folders of dead processes under `base`; returns how many
/// folders it removed. A folder's owner is alive exactly when `<name>.lock` is locked.
fn clean_stale(base: &Path) -> usize {
    let Ok(entries) = fs::read_dir(base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let lock_path = if is_dir {
            base.join(format!("{name}.lock"))
        } else if name.ends_with(".lock") {
            // A lock file whose folder is gone: removed below if nobody holds it.
            path.clone()
        } else {
            continue;
        };
        let lock = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => {
                debug!(lock = %lock_path.display(), error = %e, "cannot open lock, leaving folder alone");
                continue;
            }
        };
        match try_flock(&lock) {
            Ok(true) => {}
            // Alive (or unknowable): never touch it.
            _ => continue,
        }
        if is_dir {
            let closed = close_masters_in(&path);
            debug!(folder = %path.display(), closed, "removing control folder of a dead process");
            if fs::remove_dir_all(&path).is_ok() {
                removed += 1;
            }
        }
        // Deleted while we hold it: a process opening it right now re-checks the inode.
        let _ = fs::remove_file(&lock_path);
    }
    removed
}

/// Closes every master whose control socket is in `dir` (`<dir>/.ssh-connection*/master`), each
/// with a short timeout; returns how many answered. Runs on its own thread with its own runtime
/// so that it works both inside and outside an async context.
fn close_masters_in(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let sockets: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path().join("master"))
        .filter(|p| p.exists())
        .collect();
    if sockets.is_empty() {
        return 0;
    }
    let work = move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return 0;
        };
        rt.block_on(async {
            let mut closed = 0;
            for ctl in sockets {
                let log = ctl.with_file_name("log").into_boxed_path();
                let session = Session::resume_mux(ctl.into_boxed_path(), Some(log));
                if let Ok(Ok(())) = tokio::time::timeout(CHECK_TIMEOUT, session.close()).await {
                    closed += 1;
                }
            }
            closed
        })
    };
    // `Builder::spawn` reports a thread that cannot be created instead of panicking.
    match std::thread::Builder::new()
        .name("convoy-ssh-cleanup".into())
        .spawn(work)
    {
        Ok(handle) => handle.join().unwrap_or(0),
        Err(e) => {
            warn!(error = %e, "cannot start the ssh cleanup thread");
            0
        }
    }
}

/// A short file-name-safe name for a host: up to 16 safe characters of its name and 8 hex
/// digits of its hash (names that sanitise alike still get different files).
fn host_slug(name: &str) -> String {
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect();
    let hash = Sha256::digest(name.as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{safe}-{hex}")
}

/// A destination ssh would take as an option, or that cannot be a host name, is refused.
fn validate_destination(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the ssh address has no host".to_string());
    }
    if host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{host}` is not a valid host name"));
    }
    Ok(())
}

/// The user's own ssh config, included when `convoy.yaml` names none.
fn user_default_config() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".ssh/config");
    path.is_file().then_some(path)
}

/// A value for the generated config: quoted, with `%` doubled where ssh expands `%` tokens.
fn config_value(value: &str, expands_tokens: bool) -> Result<String, String> {
    if value.is_empty() || value.contains('"') || value.chars().any(|c| c.is_control()) {
        return Err(format!(
            "`{}` cannot be written into an ssh config",
            value.escape_debug()
        ));
    }
    let value = if expands_tokens {
        value.replace('%', "%%")
    } else {
        value.to_string()
    };
    Ok(format!("\"{value}\""))
}

fn path_value(path: &Path, expands_tokens: bool) -> Result<String, String> {
    let s = path
        .to_str()
        .ok_or_else(|| format!("path `{}` is not valid UTF-8", path.display()))?;
    config_value(s, expands_tokens)
}

/// The ssh config a master runs with (`ssh -F`), which replaces the system and user configs.
///
/// ssh takes the first value it reads for each option, so what Convoy must have (strict host
/// keys, batch mode, keepalive, connect timeout) and what `convoy.yaml` states explicitly
/// (user, port, identity, known_hosts) come first; then the user's config is included, so its
/// `Host` blocks still add `ProxyJump`, agent, certificates and anything else. The system-wide
/// `/etc/ssh/ssh_config` is deliberately not read: a fleet should not change behaviour with a
/// distribution's defaults (its known hosts file, `/etc/ssh/ssh_known_hosts`, still counts).
fn ssh_config(
    host: &HostSpec,
    address_user: Option<&str>,
    port: Option<u16>,
    timeouts: &SshTimeouts,
    default_include: Option<PathBuf>,
) -> Result<String, String> {
    let connect_secs = timeouts.connect.as_secs()
        + u64::from(timeouts.connect.subsec_nanos() > 0 || timeouts.connect.is_zero());
    let mut c = String::new();
    c.push_str(&format!(
        "# Generated by Convoy for host `{}`; rewritten on every connect.\n",
        host.name.escape_debug()
    ));
    c.push_str("StrictHostKeyChecking yes\n");
    c.push_str("BatchMode yes\n");
    c.push_str(&format!(
        "ServerAliveInterval {}\n",
        timeouts.keepalive_interval_secs.max(1)
    ));
    c.push_str(&format!(
        "ServerAliveCountMax {}\n",
        timeouts.keepalive_count.max(1)
    ));
    c.push_str(&format!("ConnectTimeout {connect_secs}\n"));
    // The user of the ssh:// address is the most specific; then the merged ssh settings.
    if let Some(user) = address_user.or(host.ssh.user.as_deref()) {
        c.push_str(&format!("User {}\n", config_value(user, false)?));
    }
    if let Some(port) = port {
        c.push_str(&format!("Port {port}\n"));
    }
    if let Some(identity) = &host.ssh.identity_file {
        c.push_str(&format!("IdentityFile {}\n", path_value(identity, true)?));
        c.push_str("IdentitiesOnly yes\n");
    }
    if let Some(known) = &host.ssh.known_hosts {
        c.push_str(&format!(
            "UserKnownHostsFile {}\n",
            path_value(known, true)?
        ));
    }
    let include = match &host.ssh.config_file {
        Some(file) => {
            if !file.is_file() {
                return Err(format!(
                    "ssh config file `{}` does not exist",
                    file.display()
                ));
            }
            Some(file.clone())
        }
        None => default_include,
    };
    if let Some(file) = include {
        // Include takes the path relative to ~/.ssh unless absolute.
        let file = std::path::absolute(&file).unwrap_or(file);
        c.push_str(&format!("Include {}\n", path_value(&file, false)?));
    }
    Ok(c)
}

/// Writes a file readable only by us (the config names key files).
fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Everything an `openssh` error says: `Display` of it and of each source. ssh's own words (from
/// the master's log) are in the source `io::Error`; the top-level `Display` only says "failed to
/// connect".
fn error_text(err: &openssh::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

/// Turns a failed master start into what happened, from ssh's log text.
fn classify_connect_error(host: &str, err: &openssh::Error) -> SshError {
    let text = error_text(err);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let find = |needle: &str| lines.iter().find(|l| l.contains(needle)).copied();
    let last = lines.last().copied().unwrap_or("no message from ssh");
    let host = host.to_string();

    if text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || text.contains("has changed and you have requested strict checking")
    {
        let detail = find("Offending")
            .or_else(|| find("has changed"))
            .unwrap_or("host key verification failed")
            .to_string();
        return SshError::HostKeyChanged { host, detail };
    }
    if let Some(line) =
        find("host key is known for").or_else(|| find("Host key verification failed"))
    {
        return SshError::UnknownHostKey {
            host,
            detail: line.to_string(),
        };
    }
    if let Some(line) =
        find("Permission denied (").or_else(|| find("Too many authentication failures"))
    {
        return SshError::AuthFailed {
            host,
            detail: line.trim_start_matches("ssh: ").to_string(),
        };
    }
    const UNREACHABLE: [&str; 8] = [
        "Could not resolve hostname",
        "Connection refused",
        "No route to host",
        "Network is unreachable",
        "Connection timed out",
        "Operation timed out",
        "Connection closed by",
        "Connection reset",
    ];
    if let Some(line) = lines
        .iter()
        .find(|l| UNREACHABLE.iter().any(|n| l.contains(n)))
    {
        return SshError::Unreachable {
            host,
            cause: line.trim_start_matches("ssh: ").to_string(),
        };
    }
    if let openssh::Error::Connect(e) = err {
        if e.kind() == io::ErrorKind::NotFound {
            return other(&host, format!("cannot run `ssh`: {e}"));
        }
    }
    SshError::Other {
        host,
        cause: last.trim_start_matches("ssh: ").to_string(),
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

#[cfg(test)]
mod tests {
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
                }
            })
            .collect();
        let state = state_dir();
        let transport = SshTransport::new(state.path()).expect("transport");
        let timeouts = SshTimeouts::default();
        let t = Instant::now();
        let results =
            futures_util::future::join_all(hosts.iter().map(|h| transport.connect(h, &timeouts)))
                .await;
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
}
