//! A session with the host proxy's HAProxy master CLI (`127.0.0.1:<MASTER_CLI_PORT>` on the
//! host, `-S` in its command), held open so that a runtime change costs one line written and
//! one prompt read, not a new connection (issue 13: a replica the engine reports healthy is put
//! into service within milliseconds, without waiting for a reload).
//!
//! Reached like the readiness probe (`infra::probe`): through the host's existing OpenSSH master
//! (`ssh -S <control> -W 127.0.0.1:<port>`, strict host keys, nothing installed on the host),
//! or a plain TCP connection for a `unix://` host. The session is in prompt mode: every answer
//! ends with the prompt, so answers are told apart on one connection.
//!
//! It sends what the caller gives and returns the answer's text (bounded); which commands and
//! what to make of an answer are the executor's. Dropping it kills its `ssh`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::infra::files::HostShell;

/// The most of one answer kept.
const MAX_ANSWER: usize = 64 << 10;
/// The end of every answer in prompt mode.
const PROMPT: &[u8] = b"> ";

type Stream = Pin<Box<dyn AsyncReadWrite + Send>>;
trait AsyncReadWrite: AsyncRead + AsyncWrite {}
impl<T: AsyncRead + AsyncWrite> AsyncReadWrite for T {}

/// An open master CLI session.
pub struct MasterCli {
    stream: Stream,
    /// The `ssh -W` carrying it, killed on drop.
    _child: Option<tokio::process::Child>,
}

impl std::fmt::Debug for MasterCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterCli").finish_non_exhaustive()
    }
}

impl MasterCli {
    /// Opens a session to the master CLI on the shell's host loopback `port`, in prompt mode,
    /// within `timeout`.
    pub async fn open(shell: &HostShell, port: u16, timeout: Duration) -> Result<Self, String> {
        let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let work = async {
            let mut cli = match shell {
                HostShell::Local | HostShell::LocalWith(_) => {
                    let s = tokio::net::TcpStream::connect(target)
                        .await
                        .map_err(|e| format!("connect to the master CLI: {e}"))?;
                    let _ = s.set_nodelay(true);
                    MasterCli {
                        stream: Box::pin(s),
                        _child: None,
                    }
                }
                HostShell::Ssh(t) => {
                    let mut child = tokio::process::Command::new("ssh")
                        .arg("-F")
                        .arg(&t.config)
                        .arg("-S")
                        .arg(&t.control)
                        .args([
                            "-o",
                            "ControlMaster=no",
                            "-o",
                            "StrictHostKeyChecking=yes",
                            "-W",
                        ])
                        .arg(target.to_string())
                        .arg(&t.destination)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::null())
                        .kill_on_drop(true)
                        .spawn()
                        .map_err(|e| format!("cannot start ssh: {e}"))?;
                    let input = child.stdin.take().expect("piped");
                    let output = child.stdout.take().expect("piped");
                    MasterCli {
                        stream: Box::pin(tokio::io::join(output, input)),
                        _child: Some(child),
                    }
                }
            };
            cli.command("prompt").await?;
            Ok(cli)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| format!("the master CLI did not answer within {timeout:?}"))?
    }

    /// Sends one command line and returns its answer, the prompt left out.
    pub async fn command(&mut self, line: &str) -> Result<String, String> {
        if line.contains('\n') {
            return Err("a command is one line".into());
        }
        let io = |e: std::io::Error| format!("master CLI: {e}");
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(io)?;
        self.stream.flush().await.map_err(io)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err("master CLI: the connection closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(PROMPT) {
                break;
            }
            if buf.len() > MAX_ANSWER {
                return Err("master CLI: an answer too long".into());
            }
        }
        let text = String::from_utf8_lossy(&buf);
        // The answer is everything before the last line, which is the prompt (`master> `).
        let body = text.rsplit_once('\n').map_or("", |(b, _)| b);
        Ok(body.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// A stand-in for HAProxy's master CLI on the loopback: answers `prompt` with the prompt,
    /// each later line with `answer(line)` and the prompt, and records the lines.
    async fn fake_cli(answer: fn(&str) -> String) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut lines = BufReader::new(r).lines();
            let mut seen = Vec::new();
            while let Ok(Some(l)) = lines.next_line().await {
                let out = if l == "prompt" {
                    "master> ".to_string()
                } else {
                    format!("{}\nmaster> ", answer(&l))
                };
                seen.push(l);
                if w.write_all(out.as_bytes()).await.is_err() {
                    break;
                }
            }
            seen
        });
        (port, task)
    }

    #[tokio::test]
    async fn a_session_sends_lines_and_reads_each_answer_up_to_the_prompt() {
        let (port, server) = fake_cli(|l| {
            if l.ends_with("a/b state ready") {
                String::new()
            } else {
                "No such server.".into()
            }
        })
        .await;
        let mut cli = MasterCli::open(&HostShell::Local, port, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            cli.command("@1 set server a/b state ready").await.unwrap(),
            ""
        );
        assert_eq!(
            cli.command("@1 set server a/c state ready").await.unwrap(),
            "No such server."
        );
        assert!(cli.command("two\nlines").await.is_err());
        drop(cli);
        assert_eq!(
            server.await.unwrap(),
            [
                "prompt",
                "@1 set server a/b state ready",
                "@1 set server a/c state ready"
            ]
        );
    }

    #[tokio::test]
    async fn a_closed_session_is_an_error_not_a_hang() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts, answers the prompt, then closes: what a master that re-executes does.
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            s.write_all(b"master> ").await.unwrap();
        });
        let mut cli = MasterCli::open(&HostShell::Local, port, Duration::from_secs(5))
            .await
            .unwrap();
        server.await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(5), cli.command("@1 show info")).await;
        assert!(r.expect("no hang").is_err());
    }

    #[tokio::test]
    async fn nothing_listening_fails_to_open() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        assert!(
            MasterCli::open(&HostShell::Local, port, Duration::from_secs(5))
                .await
                .is_err()
        );
    }
}
