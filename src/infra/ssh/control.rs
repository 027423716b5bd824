//! The control folder of each Convoy process: where it lives, the `flock` that tells other
//! processes its owner is alive, the names of the per-host files in it, and the cleanup, at
//! start-up and shutdown, of folders and ssh masters that nobody will close otherwise.
//!
//! It must never touch a folder whose lock a live process holds, nor anything outside the
//! control base; it must not accept a shared `/tmp` folder that another user could have planted.
//! It knows nothing of hosts beyond the file name each gets, and opens no connection: a master
//! left by a dead process is only resumed through its control socket to be closed.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use openssh::Session;
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use super::CHECK_TIMEOUT;

/// Longest control folder we accept. ssh binds the master socket at
/// `<folder>/.ssh-connectionXXXXXX/master.<16 random chars>` (46 bytes more), and a unix socket
/// path must fit in 108 bytes with its NUL, so the folder must stay at or under about 61 bytes.
pub(super) const MAX_CONTROL_DIR_LEN: usize = 60;

/// Where the per-process folders live: `<state_dir>/c` if `<state_dir>/c/<pid>` is short enough,
/// else `/tmp/cvy-<uid>`. Creates it (mode 0700).
pub(super) fn control_base(state_dir: &Path, pid: u32) -> Result<PathBuf, String> {
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
pub(super) fn take_lock(path: &Path) -> io::Result<File> {
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
pub(super) fn clean_stale(base: &Path) -> usize {
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
pub(super) fn close_masters_in(dir: &Path) -> usize {
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
pub(super) fn host_slug(name: &str) -> String {
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect();
    let hash = Sha256::digest(name.as_bytes());
    let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{safe}-{hex}")
}

pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
