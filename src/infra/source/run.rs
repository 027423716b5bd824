//! Running the helper programs a source needs (`git fetch`, `ssh-keygen`, `gpgv`) with a
//! deadline, and a private temporary folder for the files they read.
//!
//! A program runs in its own process group, so that on expiry the whole group is killed: `git`
//! itself, and the `ssh` or `git-remote-https` it started, which would otherwise outlive it and
//! keep its pipes open. What it writes is kept up to a cap (the rest is read and dropped, so it
//! never blocks on a full pipe). This module blocks the calling thread; it must not be called
//! from an async task without `spawn_blocking`, and it interprets no output.

use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, PoisonError};
use std::time::{Duration, Instant};

/// What a program did: its exit status (`None` when it was killed on the deadline), and the
/// first bytes of what it wrote.
pub struct Ran {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Ran {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

type Kept = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads everything from `r` on a thread, keeping at most `cap` bytes in what it returns; the
/// receiver hears when the stream ended.
fn drain(mut r: impl Read + Send + 'static, cap: usize) -> (Kept, mpsc::Receiver<()>) {
    let kept: Kept = Default::default();
    let (done, ended) = mpsc::channel();
    let k = kept.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut kept = k.lock().unwrap_or_else(PoisonError::into_inner);
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        let _ = done.send(());
    });
    (kept, ended)
}

/// What was kept of a stream, waiting for its end until `until` at the latest (a process that
/// outlived the one we ran, an ssh control master, may hold the pipe open).
fn collect(stream: Option<(Kept, mpsc::Receiver<()>)>, until: Instant) -> Vec<u8> {
    let Some((kept, ended)) = stream else {
        return Vec::new();
    };
    let _ = ended.recv_timeout(until.saturating_duration_since(Instant::now()));
    let kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
    kept.clone()
}

/// Runs `cmd` with `stdin` as its input, killing its process group when it is still running
/// after `timeout`. Output beyond `cap` bytes per stream is dropped. Blocks.
pub fn run(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    cap: usize,
) -> std::io::Result<Ran> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn()?;
    let pgid = child.id() as libc::pid_t;
    let out = child.stdout.take().map(|o| drain(o, cap));
    let err = child.stderr.take().map(|e| drain(e, cap));
    if let (Some(mut pipe), Some(input)) = (child.stdin.take(), stdin) {
        let input = input.to_vec();
        // On a thread: a program that does not read its input must not block us past the
        // deadline. A write error (it exited early) is its exit status's to report.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on the process group this child leads; no memory is touched.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipes end when every process holding them is gone; a little longer for the rest.
    let until = Instant::now() + Duration::from_secs(1);
    let stdout = collect(out, until);
    let stderr = collect(err, until);
    Ok(Ran {
        status,
        stdout,
        stderr,
    })
}

/// A folder only this user can read, removed with everything in it when dropped.
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    pub fn new(what: &str) -> std::io::Result<PrivateDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("convoy-{what}-{}-{n}-{nanos}", std::process::id()));
            // `create` fails when it exists: a folder someone else made is never used.
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to a new file `name` in the folder and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.path.join(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The last line of `bytes` that says something, for one-line errors; at most 300 characters.
pub fn last_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_past_its_deadline_is_killed_with_its_children() {
        let mut cmd = Command::new("sh");
        // A child of the program that would outlive it, holding the pipes.
        cmd.args(["-c", "sleep 30 & echo $!; echo started >&2; wait"]);
        let started = Instant::now();
        let ran = run(cmd, None, Duration::from_millis(300), 1024).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(ran.status.is_none());
        assert_eq!(String::from_utf8_lossy(&ran.stderr), "started\n");
        let pid: i32 = String::from_utf8_lossy(&ran.stdout).trim().parse().unwrap();
        // Gone, or a zombie waiting for its new parent: not sleeping on.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            let alive = state
                .as_deref()
                .and_then(|s| s.rsplit(") ").next())
                .is_some_and(|rest| !rest.starts_with('Z'));
            if !alive {
                break;
            }
            assert!(Instant::now() < deadline, "the child {pid} still runs");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn input_output_and_caps() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "cat; head -c 100000 /dev/zero >&2; exit 3"]);
        let ran = run(cmd, Some(b"payload"), Duration::from_secs(20), 10).unwrap();
        assert_eq!(ran.stdout, b"payload");
        assert_eq!(ran.stderr.len(), 10);
        assert_eq!(ran.status.and_then(|s| s.code()), Some(3));
        assert!(!ran.success());
    }

    #[test]
    fn a_private_dir_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = PrivateDir::new("test").unwrap();
        let path = dir.path().to_path_buf();
        dir.file("x", b"1").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(dir);
        assert!(!path.exists());
    }
}
