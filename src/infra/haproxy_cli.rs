//! HAProxy's master CLI on the host proxy (`127.0.0.1:<MASTER_CLI_PORT>` on the host, `-S` in
//! its command), issue 13, in two ways:
//!
//! - a session held open ([`MasterCli`], prompt mode: every answer ends with the prompt, so
//!   answers are told apart on one connection), so that a runtime change costs one line written
//!   and one prompt read, not a new connection: a replica the engine reports healthy is put into
//!   service within milliseconds, without waiting for a reload;
//! - one command per connection ([`old_connections`]), for a drain: which old workers a reload
//!   left behind (`show proc`) and how many connections each still has to a leaving replica's
//!   addresses (`@!<pid> show stat`, the `scur` of every server at those addresses). A reload
//!   gives new connections to a new worker at once, but the old workers keep theirs until they
//!   end (or `hard-stop-after`).
//!
//! Reached like the readiness probe (`infra::probe`): through the host's existing OpenSSH master
//! (`ssh -S <control> -W 127.0.0.1:<port>`, strict host keys, nothing installed on the host),
//! or a plain TCP connection for a `unix://` host. It sends what the caller gives and returns
//! what it read, bounded, parsed by column name where it parses (a newer HAProxy with more
//! columns reads the same); which commands, how long to wait and what to make of an answer are
//! the executor's. Dropping a session kills its `ssh`.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::infra::files::HostShell;
use crate::infra::probe::{converse_at, ProbeFailure};
use crate::model::proxy::MASTER_CLI_PORT;

/// The most of one session answer kept.
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
                    let mut child = t
                        .forward(target)
                        .stderr(Stdio::null())
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

/// The most of one answer read: `show stat` of a proxy with a few thousand servers.
pub const MAX_STAT_ANSWER: usize = 4 << 20;
/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one command to the master CLI of the shell's host on a connection of its own and
/// returns the answer (the master answers and closes).
async fn one_command(shell: &HostShell, cmd: &str) -> Result<String, ProbeFailure> {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), MASTER_CLI_PORT);
    let answer = converse_at(
        shell,
        target,
        format!("{cmd}\n").as_bytes(),
        MAX_STAT_ANSWER,
        COMMAND_TIMEOUT,
    )
    .await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The connections the proxy's old workers still have to servers at `addresses` (IPs);
/// 0 when no old worker is left.
pub async fn old_connections(shell: &HostShell, addresses: &[String]) -> Result<u64, ProbeFailure> {
    let procs = one_command(shell, "show proc").await?;
    let mut total = 0;
    for pid in old_workers(&procs) {
        // A worker that ended between the two commands is simply not found: nothing left.
        let stat = one_command(shell, &format!("@!{pid} show stat")).await?;
        total += sessions_to(&stat, addresses);
    }
    Ok(total)
}

/// The PIDs under `# old workers` in an answer to `show proc`.
pub fn old_workers(show_proc: &str) -> Vec<u32> {
    let mut section = "";
    let mut out = Vec::new();
    for line in show_proc.lines() {
        let line = line.trim();
        if let Some(head) = line.strip_prefix('#') {
            section = head.trim();
            continue;
        }
        if section == "old workers" {
            if let Some(pid) = line.split_whitespace().next().and_then(|p| p.parse().ok()) {
                out.push(pid);
            }
        }
    }
    out
}

/// The sum of `scur` over the server rows of a `show stat` CSV whose `addr` is one of
/// `addresses` (any port). Rows it cannot read count nothing.
pub fn sessions_to(show_stat: &str, addresses: &[String]) -> u64 {
    let mut lines = show_stat.lines();
    let Some(header) = lines.find_map(|l| l.strip_prefix("# ")) else {
        return 0;
    };
    let cols: Vec<&str> = header.split(',').collect();
    let at = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(sv), Some(scur), Some(addr)) = (at("svname"), at("scur"), at("addr")) else {
        return 0;
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.get(sv)
                .is_some_and(|s| *s != "FRONTEND" && *s != "BACKEND")
        })
        .filter(|f| {
            f.get(addr)
                .and_then(|a| host_of(a))
                .is_some_and(|ip| addresses.iter().any(|x| x == ip))
        })
        .filter_map(|f| f.get(scur)?.parse::<u64>().ok())
        .sum()
}

/// The address part of `ip:port` or `[ip6]:port`.
fn host_of(addr: &str) -> Option<&str> {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split_once(']').map(|(ip, _)| ip);
    }
    addr.rsplit_once(':').map(|(ip, _)| ip)
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

    // What HAProxy 2.6 answers (the test image's), trimmed to the columns that matter plus
    // one it does not read.
    const PROC: &str =
        "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
        1               master          3 [failed: 0]   0d00h00m24s     2.6.12\n\
        # workers\n\
        21              worker          0               0d00h00m01s     2.6.12\n\
        # old workers\n\
        17              worker          1               0d00h00m13s     2.6.12\n\
        12              worker          2               0d00h00m20s     2.6.12\n\
        # programs\n\n";

    #[test]
    fn old_workers_are_read_from_their_section_only() {
        assert_eq!(old_workers(PROC), vec![17, 12]);
        let none = "#<PID> <type>\n1 master 0\n# workers\n8 worker 0\n# programs\n";
        assert!(old_workers(none).is_empty());
        assert!(old_workers("").is_empty());
        assert!(old_workers("Unknown command.\n").is_empty());
    }

    #[test]
    fn sessions_are_summed_over_servers_at_the_addresses() {
        let stat = "# pxname,svname,qcur,qmax,scur,smax,addr,extra\n\
            in_80,FRONTEND,,,7,9,,\n\
            in_80,web-1,0,0,2,3,172.18.0.5:8080,\n\
            in_80,web-2,0,0,4,4,172.18.0.6:8080,\n\
            in_80,BACKEND,0,0,6,7,,\n\
            x_app_web_8080,web-1,0,0,1,1,172.18.0.5:8080,\n\
            v6,web-9,0,0,5,5,[fd00::5]:80,\n\
            broken,line\n";
        assert_eq!(sessions_to(stat, &["172.18.0.5".into()]), 3);
        assert_eq!(sessions_to(stat, &["172.18.0.6".into()]), 4);
        assert_eq!(sessions_to(stat, &["fd00::5".into()]), 5);
        assert_eq!(sessions_to(stat, &["10.0.0.1".into()]), 0);
        // Not a CSV with the columns it needs: nothing, not a guess.
        assert_eq!(
            sessions_to("Can't find the target PID\n", &["172.18.0.5".into()]),
            0
        );
        assert_eq!(sessions_to("# pxname,svname\nx,y\n", &["x".into()]), 0);
    }
}
