//! The per-fleet lock: one Convoy process acts on a fleet at a time from one machine.
//!
//! `apply` holds it for its pass and the daemon for its life; `diff`, `status` and `hosts` only
//! read and never take it. It is an advisory `flock` on `<state_dir>/locks/<fleet>.lock`, so the
//! kernel releases it when its holder exits however it exits (kill -9 included): there is never
//! a stale lock to clear by hand. The holder writes its pid and command line into the file, and
//! a process that finds the lock taken names that holder, once, as it waits (up to its timeout;
//! zero refuses at once). The file itself is never deleted: a process could otherwise lock a
//! file that is no longer the one the next process opens.
//!
//! Processes on other machines do not see this lock; they stay safe because every step is
//! idempotent (see `exec::names` and the duplicate-network healing in `core::plan`). Deleting
//! the state directory loses nothing ("git and the engines are the truth").

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often a waiting process tries the lock again.
const POLL: Duration = Duration::from_millis(100);

/// A held fleet lock; dropping it releases it.
#[derive(Debug)]
pub struct FleetLock {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "fleet `{fleet}` is locked by another Convoy process on this machine ({holder}){}; \
         try again when it is done, or raise --lock-timeout (lock file {})",
        waited_text(*waited),
        path.display()
    )]
    Held {
        fleet: String,
        holder: String,
        waited: Duration,
        path: PathBuf,
    },
    #[error("cannot use the fleet lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn waited_text(waited: Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!(" and still was after {}s", waited.as_secs())
    }
}

/// The lock file of `fleet` under `state_dir`.
pub fn lock_path(state_dir: &Path, fleet: &str) -> PathBuf {
    // Fleet names are plain names once validated; anything else is made one.
    let safe: String = fleet
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = if safe.is_empty() || safe.starts_with('.') {
        format!("_{safe}")
    } else {
        safe
    };
    state_dir.join("locks").join(format!("{safe}.lock"))
}

/// Takes the lock of `fleet`, waiting up to `timeout` for its holder (zero: refuse at once).
/// While it waits it says so once, naming the holder.
pub async fn acquire(
    state_dir: &Path,
    fleet: &str,
    timeout: Duration,
) -> Result<FleetLock, LockError> {
    let path = lock_path(state_dir, fleet);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io)?;
    let start = tokio::time::Instant::now();
    let mut said = false;
    loop {
        if try_lock(&file).map_err(io)? {
            write_holder(&mut file).map_err(io)?;
            return Ok(FleetLock { _file: file, path });
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(LockError::Held {
                fleet: fleet.to_string(),
                holder: holder(&mut file),
                waited: timeout,
                path,
            });
        }
        if !said {
            said = true;
            // The holder writes its name just after it takes the lock: give it that moment.
            tokio::time::sleep(POLL.min(timeout)).await;
            tracing::warn!(
                fleet,
                holder = %holder(&mut file),
                timeout_secs = timeout.as_secs(),
                lock = %path.display(),
                "another Convoy process acts on this fleet from this machine: waiting for it to finish"
            );
            continue;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `true` when the lock was taken, `false` when someone holds it.
fn try_lock(file: &File) -> std::io::Result<bool> {
    // SAFETY: flock on a descriptor this process owns; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

/// Records this process as the holder: its pid and command line.
fn write_holder(file: &mut File) -> std::io::Result<()> {
    let command: Vec<String> = std::env::args().collect();
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "pid: {}", std::process::id())?;
    writeln!(file, "command: {}", command.join(" "))?;
    file.flush()
}

/// The holder as its lock file names it: `pid 123: convoy apply --repo ...`.
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    if file.seek(SeekFrom::Start(0)).is_err() || file.read_to_string(&mut text).is_err() {
        return "holder unknown".into();
    }
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    match (field("pid:"), field("command:")) {
        (Some(pid), Some(cmd)) => format!("pid {pid}: {cmd}"),
        (Some(pid), None) => format!("pid {pid}"),
        _ => "holder unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_taker_waits_then_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = acquire(dir.path(), "f", Duration::ZERO).await.unwrap();
        let text = fs::read_to_string(&held.path).unwrap();
        assert!(
            text.contains(&format!("pid: {}", std::process::id())),
            "{text}"
        );
        // flock is per open file: a second open in this process contends like another process.
        let err = acquire(dir.path(), "f", Duration::from_millis(300))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("fleet `f` is locked"), "{msg}");
        // Another fleet is another lock.
        acquire(dir.path(), "g", Duration::ZERO).await.unwrap();
        drop(held);
        acquire(dir.path(), "f", Duration::ZERO).await.unwrap();
    }

    #[tokio::test]
    async fn zero_refuses_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let _held = acquire(dir.path(), "f", Duration::ZERO).await.unwrap();
        let t = std::time::Instant::now();
        assert!(acquire(dir.path(), "f", Duration::ZERO).await.is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_fleet_name_is_always_one_file_in_the_locks_folder() {
        let p = lock_path(Path::new("/s"), "../x y");
        assert_eq!(p, Path::new("/s/locks/_.._x_y.lock"));
        assert_eq!(
            lock_path(Path::new("/s"), "prod"),
            Path::new("/s/locks/prod.lock")
        );
    }
}
