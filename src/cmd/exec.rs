//! `convoy exec STACK/SERVICE[/SLOT] -- CMD...`: runs a command in one running replica of the
//! fleet, with stdin (`-i`) and a TTY (`-t`, resized with the terminal) when asked, and ends
//! with the command's own exit code.
//!
//! Convoy's own failures use the codes `docker exec` uses, so scripts can tell them from the
//! command's: 125 for no such replica, an unreachable host, an invalid repository or an engine
//! error; 126 when the command cannot be executed; 127 when it is not found. The command runs
//! only in a container carrying the fleet's label (targets come from `logs::list_matching`), and
//! nothing this command prints of its own carries a secret (notes are masked).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::logging::mask_known;
use super::logs::{connect_selected, list_matching, note_unreachable, Selector};
use super::{load_repo, Outcome};
use crate::cli::ExecArgs;
use crate::infra::docker::{Engine, ExecChunk, ListedContainer};

/// `docker exec`'s code for its own failures.
pub const CODE_FAILED: i32 = 125;
/// The command exists but cannot be executed.
pub const CODE_CANNOT_EXECUTE: i32 = 126;
/// The command is not found.
pub const CODE_NOT_FOUND: i32 = 127;

/// How much of the output's start is kept to recognise the engine's own start failure.
const KEEP_HEAD: usize = 1024;

fn fail(message: &str) -> Outcome {
    eprintln!("error: {}", mask_known(message));
    Outcome::Exited(CODE_FAILED)
}

pub async fn run(args: &ExecArgs, state_dir: &Path) -> Result<Outcome> {
    let sel = match Selector::parse(Some(&args.target)) {
        Ok(s) if s.service.is_some() => s,
        Ok(_) => {
            return Ok(fail(&format!(
                "`{}` is not STACK/SERVICE[/SLOT]",
                args.target
            )))
        }
        Err(e) => return Ok(fail(&e.to_string())),
    };
    let loaded = match load_repo(&args.repo) {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(Outcome::Exited(CODE_FAILED)),
        Err(e) => return Ok(fail(&format!("{e:#}"))),
    };
    let hosts: Vec<String> = args.host.iter().cloned().collect();
    let fleet = match connect_selected(&loaded, &hosts, state_dir).await {
        Ok(f) => f,
        Err(e) => return Ok(fail(&format!("{e:#}"))),
    };
    let outcome = in_fleet(
        &fleet.engines,
        &fleet.failed,
        &loaded.desired.fleet,
        &sel,
        args,
    )
    .await;
    fleet.close().await;
    Ok(outcome)
}

async fn in_fleet(
    engines: &std::collections::BTreeMap<String, Engine>,
    failed: &std::collections::BTreeMap<String, crate::infra::fleet::ConnectError>,
    fleet_id: &str,
    sel: &Selector,
    args: &ExecArgs,
) -> Outcome {
    let (found, list_failed) = list_matching(engines, fleet_id, sel).await;
    let mut unreachable: Vec<&str> = failed.keys().map(String::as_str).collect();
    unreachable.extend(list_failed.keys().map(String::as_str));
    let Some((host, target)) = pick(&found) else {
        for (h, e) in failed {
            note_unreachable(h, &e.reason);
        }
        for (h, reason) in &list_failed {
            note_unreachable(h, reason);
        }
        let what = &args.target;
        let msg = if found.is_empty() {
            format!("no replica `{what}` in the fleet")
        } else {
            format!("no replica `{what}` is running")
        };
        return fail(&if unreachable.is_empty() {
            msg
        } else {
            format!("{msg} (unreachable: {})", unreachable.join(", "))
        });
    };
    tracing::debug!(host = %host, container = %target.name, "exec");
    let engine = &engines[host];
    let interactive = args.interactive;
    let tty = args.tty;
    let mut session = match engine
        .exec(&target.id, &args.command, tty, interactive)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let code = start_failure_code(&e.message).unwrap_or(CODE_FAILED);
            eprintln!("error: {}", mask_known(&e.to_string()));
            return Outcome::Exited(code);
        }
    };
    let _raw = (tty && std::io::stdin().is_terminal())
        .then(RawMode::enter)
        .flatten();
    let mut resizer = None;
    if tty {
        if let Some((rows, cols)) = terminal_size() {
            // The engine refuses a resize until the process has started, which can be a moment
            // after the attach: retry briefly, as the docker CLI does.
            for attempt in 1..=10u64 {
                match engine.exec_resize(&session.id, rows, cols).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, attempt, "initial resize refused");
                        tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                    }
                }
            }
        }
        resizer = Some(spawn_resizer(engine.clone(), session.id.clone()));
    }
    if interactive {
        let mut input = session.input;
        let rx = stdin_reader();
        tokio::spawn(async move {
            let mut rx = rx;
            while let Some(chunk) = rx.recv().await {
                if input.write_all(&chunk).await.is_err() || input.flush().await.is_err() {
                    return;
                }
            }
            // End of stdin: close our half so that the command sees it (`cat` ends).
            let _ = input.shutdown().await;
        });
    } else {
        drop(session.input);
    }
    let mut head: Vec<u8> = Vec::new();
    while let Some(item) = session.output.next().await {
        match item {
            Ok(ExecChunk::Stdout(b)) => {
                keep_head(&mut head, &b);
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&b).and_then(|()| out.flush());
            }
            Ok(ExecChunk::Stderr(b)) => {
                keep_head(&mut head, &b);
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&b).and_then(|()| err.flush());
            }
            Err(e) => {
                tracing::debug!(error = %e, "exec output ended");
                break;
            }
        }
    }
    if let Some(r) = resizer {
        r.abort();
    }
    drop(_raw);
    // The output ends as the process does; the engine records the code a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match engine.exec_exit_code(&session.id).await {
            Ok(Some(code)) => {
                let code = code as i32;
                if code == CODE_CANNOT_EXECUTE {
                    if let Some(c) = start_failure_code(&String::from_utf8_lossy(&head)) {
                        return Outcome::Exited(c);
                    }
                }
                return Outcome::Exited(code);
            }
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(None) => return fail("the command's output ended but it did not exit"),
            Err(e) => return fail(&e.to_string()),
        }
    }
}

/// Slot 1 when it runs, else the first running replica (by slot number, then host).
fn pick(found: &[(String, ListedContainer)]) -> Option<(&String, &ListedContainer)> {
    found
        .iter()
        .filter(|(_, c)| c.running)
        .min_by_key(|(h, c)| (c.slot.parse::<u64>().unwrap_or(u64::MAX), h.clone()))
        .map(|(h, c)| (h, c))
}

fn keep_head(head: &mut Vec<u8>, b: &[u8]) {
    let room = KEEP_HEAD.saturating_sub(head.len());
    head.extend_from_slice(&b[..room.min(b.len())]);
}

/// The engine's "cannot start the process" message mapped as `docker run` does: not found
/// is 127, anything else that stops the start (permission denied, a directory) 126.
fn start_failure_code(message: &str) -> Option<i32> {
    if !message.contains("OCI runtime exec failed") && !message.contains("exec failed") {
        return None;
    }
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        Some(CODE_NOT_FOUND)
    } else {
        Some(CODE_CANNOT_EXECUTE)
    }
}

/// Reads stdin on a thread of its own: a blocking read must not hold the runtime's shutdown,
/// and the process exits with the command whether or not stdin has ended.
fn stdin_reader() -> tokio::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 8192];
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Resizes the exec's TTY whenever the terminal's size changes (SIGWINCH).
fn spawn_resizer(engine: Engine, exec_id: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = terminal_size() {
                let _ = engine.exec_resize(&exec_id, rows, cols).await;
            }
        }
    })
}

/// (rows, columns) of the terminal on stdout or stdin, if either is one.
fn terminal_size() -> Option<(u16, u16)> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        // SAFETY: TIOCGWINSZ writes one `winsize` into the struct we own.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0 {
            return Some((ws.ws_row, ws.ws_col));
        }
    }
    None
}

/// The local terminal in raw mode while a TTY exec runs (keys go to the command as typed);
/// restored on drop, on every path.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawMode { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_start_failures_map_to_dockers_codes() {
        let nf = "OCI runtime exec failed: exec failed: unable to start container process: exec: \"x\": executable file not found in $PATH: unknown";
        assert_eq!(start_failure_code(nf), Some(CODE_NOT_FOUND));
        let pd = "OCI runtime exec failed: exec failed: unable to start container process: exec: \"/etc\": permission denied: unknown";
        assert_eq!(start_failure_code(pd), Some(CODE_CANNOT_EXECUTE));
        assert_eq!(start_failure_code("hello"), None);
    }

    #[test]
    fn slot_one_is_preferred_then_the_lowest_slot() {
        let c = |slot: &str, running| ListedContainer {
            id: slot.into(),
            name: format!("s-a-{slot}"),
            stack: "s".into(),
            service: "a".into(),
            slot: slot.into(),
            running,
        };
        let found = vec![
            ("h1".to_string(), c("2", true)),
            ("h2".to_string(), c("1", true)),
            ("h3".to_string(), c("10", true)),
        ];
        assert_eq!(pick(&found).unwrap().0, "h2");
        let found = vec![
            ("h1".to_string(), c("1", false)),
            ("h2".to_string(), c("3", true)),
        ];
        assert_eq!(pick(&found).unwrap().1.slot, "3");
    }
}
