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
