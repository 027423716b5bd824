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
mod tests;
