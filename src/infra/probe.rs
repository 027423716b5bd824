//! The readiness probe of issue 10 (`x-convoy: {readiness: {port, path, expect}}`): one HTTP/1.0
//! `GET` to a container's address on its own host, giving the status code.
//!
//! The container's address comes from its engine ([`Engine::probe_addr`]: its first network in
//! name order, the host's loopback for `network_mode: host`). It is reached from where the
//! host's shell runs ([`HostShell`]): for an `ssh://` host, a direct-tcpip channel through the
//! host's existing OpenSSH master (`ssh -S <control> -W <ip>:<port>`: no new authentication,
//! strict host keys, nothing installed on the host, nothing but that address reached); for a
//! `unix://` host (the engine on this machine), a plain TCP connection.
//!
//! It only measures: whether the code is the one expected, how often to probe and when to give
//! up belong to the executor. Everything is bounded by the caller's timeout and by
//! [`MAX_ANSWER`] bytes read; a dropped probe kills its `ssh`. It never puts the answer's bytes
//! (its body, its reason phrase) in an error or a log line: a failure says what was wrong
//! with them, not what they were.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::infra::docker::{Engine, ProbeAddr};
use crate::infra::files::HostShell;
use crate::infra::ssh::ShellTarget;

/// The most of an answer read: the status line must come within it.
pub const MAX_ANSWER: usize = 8 << 10;
/// The most of `ssh`'s own error output kept to say why a channel failed.
const MAX_SSH_STDERR: u64 = 4 << 10;

/// A probe that found no status code: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("readiness probe of container `{container}` port {port} on host `{host}`: {failure}")]
pub struct ProbeError {
    pub host: String,
    pub container: String,
    pub port: u16,
    pub failure: ProbeFailure,
}

/// Why a probe found no status code. None of them holds bytes of the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// The engine could not be asked about the container.
    #[error("cannot inspect the container: {0}")]
    Inspect(String),
    /// The container has nothing to connect to (not running, no network, gone).
    #[error("{0}")]
    NoAddress(String),
    /// Nothing listens on the port (yet).
    #[error("connection refused")]
    Refused,
    /// The host's sshd refused the forward. Through a master, ssh does not say why: nothing
    /// listens on the port (the usual case while a server starts), or no route to it, or the
    /// sshd forbids TCP forwarding, in which case every probe of the host ends here.
    #[error("the host refused the forward: nothing listens on the port, or its sshd does not allow TCP forwarding (AllowTcpForwarding)")]
    ForwardRefused,
    /// The connection could not be made for another reason (the ssh channel failed, no route).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection closed before a whole status line came.
    #[error("the connection closed before an HTTP status line")]
    EarlyEof,
    /// The answer does not start with an HTTP status line.
    #[error("the answer is not HTTP: {0}")]
    Malformed(&'static str),
    /// The probe's path cannot be sent as it is.
    #[error("the path must start with `/` and hold no spaces or control characters")]
    BadPath,
    #[error("no status line within {0:?}")]
    Timeout(Duration),
    /// Reading or writing the connection failed.
    #[error("{0}")]
    Io(String),
}

impl ProbeFailure {
    /// Nothing answered on the port: what a server that is still starting gives, so a caller
    /// probes again until its deadline.
    pub fn is_refused(&self) -> bool {
        matches!(self, ProbeFailure::Refused | ProbeFailure::ForwardRefused)
    }
}

/// The status code of `GET <path>` on port `port` of `container` (ID or name) on the engine's
/// host, reached through `shell` (the same host's), all within `timeout`.
pub async fn http_status(
    shell: &HostShell,
    engine: &Engine,
    container: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    let fail = |failure| ProbeError {
        host: engine.host().to_string(),
        container: container.to_string(),
        port,
        failure,
    };
    let started = tokio::time::Instant::now();
    let addr = tokio::time::timeout(timeout, engine.probe_addr(container))
        .await
        .map_err(|_| fail(ProbeFailure::Timeout(timeout)))?
        .map_err(|e| fail(ProbeFailure::Inspect(e.message)))?;
    let ip = match (&addr, addr.ip()) {
        (_, Some(ip)) => ip,
        (ProbeAddr::Unreachable(why), None) => {
            return Err(fail(ProbeFailure::NoAddress(why.clone())))
        }
        (_, None) => return Err(fail(ProbeFailure::NoAddress("no address".into()))),
    };
    let left = timeout.saturating_sub(started.elapsed());
    let result = status_at(shell, SocketAddr::new(ip, port), path, left).await;
    match &result {
        Ok(code) => {
            tracing::debug!(host = %engine.host(), container, port, %ip, code, "readiness probe")
        }
        Err(e) => {
            tracing::debug!(host = %engine.host(), container, port, %ip, error = %e, "readiness probe failed")
        }
    }
    result.map_err(|f| match f {
        // The whole probe's budget, not what was left of it, is what the caller gave.
        ProbeFailure::Timeout(_) => fail(ProbeFailure::Timeout(timeout)),
        other => fail(other),
    })
}

/// The status code of `GET <path>` at `target` as seen from the shell's host, within
/// `timeout`: for the executor's probes of a known address, and for tests.
pub async fn status_at(
    shell: &HostShell,
    target: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<u16, ProbeFailure> {
    let request = request(target, path)?;
    connect_and(shell, target, timeout, |s| exchange(s, &request)).await
}

/// Sends `request` to `target` as seen from the shell's host and reads the answer to its end
/// (at most `limit` bytes: more is an error), within `timeout`: for line protocols such as
/// HAProxy's master CLI, which answers one command and closes.
pub async fn converse_at(
    shell: &HostShell,
    target: SocketAddr,
    request: &[u8],
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ProbeFailure> {
    connect_and(shell, target, timeout, |s| read_to_end(s, request, limit)).await
}

/// Runs `talk` on a connection to `target` from the shell's host, within `timeout`.
async fn connect_and<T, F, Fut>(
    shell: &HostShell,
    target: SocketAddr,
    timeout: Duration,
    talk: F,
) -> Result<T, ProbeFailure>
where
    F: FnOnce(Box<dyn Stream>) -> Fut,
    Fut: std::future::Future<Output = Result<T, ProbeFailure>>,
{
    let work = async {
        match shell {
            HostShell::Local | HostShell::LocalWith(_) => {
                let stream = tokio::net::TcpStream::connect(target)
                    .await
                    .map_err(connect_failure)?;
                talk(Box::new(stream)).await
            }
            HostShell::Ssh(t) => through_ssh(t, target, talk).await,
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ProbeFailure::Timeout(timeout))?
}

/// A connection, direct or through `ssh -W`.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// Sends `request` and reads until the far end closes, at most `limit` bytes.
async fn read_to_end<S>(
    mut stream: S,
    request: &[u8],
    limit: usize,
) -> Result<Vec<u8>, ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request).await.map_err(io_failure)?;
    // The far end answers and closes once it sees the end of the request (through `ssh -W`,
    // the channel stays open while ssh's stdin does).
    stream.shutdown().await.map_err(io_failure)?;
    let mut out = Vec::new();
    let n = (&mut stream)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(io_failure)?;
    if n > limit {
        return Err(ProbeFailure::Malformed(
            "the answer is longer than the limit",
        ));
    }
    if n == 0 {
        return Err(ProbeFailure::EarlyEof);
    }
    Ok(out)
}

/// The request: HTTP/1.0, one connection per probe, nothing kept open.
fn request(target: SocketAddr, path: &str) -> Result<Vec<u8>, ProbeFailure> {
    // A path that could end the request line early would let a manifest write headers.
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ProbeFailure::BadPath);
    }
    Ok(format!(
        "GET {path} HTTP/1.0\r\nHost: {target}\r\nUser-Agent: convoy-readiness\r\nConnection: close\r\n\r\n"
    )
    .into_bytes())
}

fn connect_failure(e: std::io::Error) -> ProbeFailure {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        ProbeFailure::Refused
    } else {
        ProbeFailure::Connect(e.to_string())
    }
}

/// Sends `request` on `stream` and reads up to the end of the status line (at most
/// [`MAX_ANSWER`] bytes): its code.
pub async fn exchange<S>(mut stream: S, request: &[u8]) -> Result<u16, ProbeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    stream.write_all(request).await.map_err(io_failure)?;
    stream.flush().await.map_err(io_failure)?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            return parse_status_line(&buf[..end]);
        }
        if buf.len() >= MAX_ANSWER {
            return Err(ProbeFailure::Malformed("no status line in the first 8 KiB"));
        }
        let want = chunk.len().min(MAX_ANSWER - buf.len());
        let n = stream.read(&mut chunk[..want]).await.map_err(io_failure)?;
        if n == 0 {
            return Err(ProbeFailure::EarlyEof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn io_failure(e: std::io::Error) -> ProbeFailure {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ProbeFailure::Refused,
        // A reset or a closed pipe before the status line: the far end went away.
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::UnexpectedEof => ProbeFailure::EarlyEof,
        _ => ProbeFailure::Io(e.to_string()),
    }
}

/// The code of a status line (`HTTP/1.1 200 OK`, with or without its `\r`): `HTTP/`, a version,
/// one space, three digits from 100 to 599, then the end or a space and a reason phrase.
pub fn parse_status_line(line: &[u8]) -> Result<u16, ProbeFailure> {
    if line.len() > MAX_ANSWER {
        return Err(ProbeFailure::Malformed("no status line in the first 8 KiB"));
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(rest) = line.strip_prefix(b"HTTP/") else {
        return Err(ProbeFailure::Malformed("no `HTTP/` status line"));
    };
    let Some(space) = rest.iter().position(|b| *b == b' ') else {
        return Err(ProbeFailure::Malformed("no status code"));
    };
    let version = &rest[..space];
    let version_ok = match version {
        [major] => major.is_ascii_digit(),
        [major, b'.', minor] => major.is_ascii_digit() && minor.is_ascii_digit(),
        _ => false,
    };
    if !version_ok {
        return Err(ProbeFailure::Malformed("not an HTTP version"));
    }
    let after = &rest[space + 1..];
    let (code, tail) = after.split_at(after.len().min(3));
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) || !matches!(tail, [] | [b' ', ..]) {
        return Err(ProbeFailure::Malformed(
            "the status code is not three digits",
        ));
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(100..=599).contains(&code) {
        return Err(ProbeFailure::Malformed("the status code is out of range"));
    }
    Ok(code)
}

/// The exchange over `ssh -W <ip>:<port>` through the host's master: ssh's stdin and stdout
/// are the connection. When it ends early, ssh's own message says why (a refused connection
/// is `open failed: connect failed: Connection refused`).
async fn through_ssh<T, F, Fut>(
    t: &ShellTarget,
    target: SocketAddr,
    talk: F,
) -> Result<T, ProbeFailure>
where
    F: FnOnce(Box<dyn Stream>) -> Fut,
    Fut: std::future::Future<Output = Result<T, ProbeFailure>>,
{
    let mut child = t
        .forward(target)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProbeFailure::Connect(format!("cannot start ssh: {e}")))?;
    let input = child.stdin.take().expect("piped");
    let output = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let result = talk(Box::new(SshStdio {
        output,
        input: Some(input),
    }))
    .await;
    match result {
        Err(e @ (ProbeFailure::EarlyEof | ProbeFailure::Io(_))) => {
            // ssh exits once its channel failed; its message is short (the caller's timeout
            // bounds the wait all the same).
            let mut text = Vec::new();
            let _ = (&mut stderr)
                .take(MAX_SSH_STDERR)
                .read_to_end(&mut text)
                .await;
            let status = child.wait().await.ok();
            Err(ssh_failure(&String::from_utf8_lossy(&text), status, e))
        }
        // Done: dropping the child kills ssh, which closes the channel.
        other => other,
    }
}

/// ssh's stdout and stdin as one connection; shutting it down closes stdin, which is how the
/// far end learns the request ended.
struct SshStdio {
    output: tokio::process::ChildStdout,
    input: Option<tokio::process::ChildStdin>,
}

impl AsyncRead for SshStdio {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.output).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshStdio {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.input.as_mut() {
            Some(i) => std::pin::Pin::new(i).poll_write(cx, buf),
            None => std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.input.as_mut() {
            Some(i) => std::pin::Pin::new(i).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(i) = self.input.as_mut() {
            std::task::ready!(std::pin::Pin::new(i).poll_flush(cx))?;
        }
        self.input = None;
        std::task::Poll::Ready(Ok(()))
    }
}

/// Why an `ssh -W` ended before a status line, from its error output.
fn ssh_failure(
    stderr: &str,
    status: Option<std::process::ExitStatus>,
    fallback: ProbeFailure,
) -> ProbeFailure {
    if stderr.contains("Connection refused") && stderr.contains("open failed") {
        return ProbeFailure::Refused;
    }
    // What the mux client says when the master's channel open failed (OpenSSH 9: "Stdio
    // forwarding request failed: Session open refused by peer"); the reason stays in the master.
    if stderr.contains("open refused by peer") {
        return ProbeFailure::ForwardRefused;
    }
    let line = stderr
        .lines()
        .find(|l| l.contains("open failed"))
        .or_else(|| {
            // Any other message matters only when ssh itself failed.
            status
                .filter(|s| !s.success())
                .and_then(|_| stderr.lines().find(|l| !l.trim().is_empty()))
        });
    match line {
        Some(l) => {
            // `channel 0: open failed: connect failed: No route to host`: the part after the
            // channel's number, cut short.
            let l = l.trim();
            let l = l
                .strip_prefix("channel ")
                .and_then(|r| r.split_once(": ").map(|(_, m)| m))
                .unwrap_or(l);
            ProbeFailure::Connect(l.chars().take(200).collect())
        }
        None => fallback,
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncBufReadExt;

    use super::*;

    #[test]
    fn status_lines_as_servers_write_them() {
        for (line, code) in [
            (&b"HTTP/1.1 200 OK"[..], 200),
            (b"HTTP/1.0 404 Not Found\r", 404),
            (b"HTTP/1.1 503", 503),
            (b"HTTP/2 204 ", 204),
            (b"HTTP/1.1 302 Found with spaces", 302),
        ] {
            assert_eq!(
                parse_status_line(line),
                Ok(code),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn malformed_status_lines_are_refused_without_their_bytes() {
        for line in [
            &b""[..],
            b"SSH-2.0-OpenSSH_9.2p1 secret",
            b"http/1.1 200 OK",
            b"HTTP/1.1",
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/1.1 2x0 secret",
            b"HTTP/1.1  200 OK",
            b"HTTP/1.1 099 secret",
            b"HTTP/1.1 600 secret",
            b"HTTP/x.y 200 OK",
            b"HTTP/1.10 200 OK",
        ] {
            let e = parse_status_line(line).expect_err(&String::from_utf8_lossy(line));
            assert!(matches!(e, ProbeFailure::Malformed(_)), "{e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn a_status_line_longer_than_the_limit_is_refused() {
        let mut long = b"HTTP/1.1 200 ".to_vec();
        long.resize(MAX_ANSWER + 1, b'a');
        assert!(matches!(
            parse_status_line(&long),
            Err(ProbeFailure::Malformed(_))
        ));
    }

    #[test]
    fn the_request_is_http_1_0_and_refuses_a_path_that_would_inject() {
        let target: SocketAddr = "10.1.2.3:8080".parse().unwrap();
        assert_eq!(
            String::from_utf8(request(target, "/healthz?x=1").unwrap()).unwrap(),
            "GET /healthz?x=1 HTTP/1.0\r\nHost: 10.1.2.3:8080\r\nUser-Agent: convoy-readiness\r\nConnection: close\r\n\r\n"
        );
        let v6: SocketAddr = "[fd00::2]:80".parse().unwrap();
        assert!(String::from_utf8(request(v6, "/").unwrap())
            .unwrap()
            .contains("Host: [fd00::2]:80\r\n"));
        for bad in ["", "healthz", "/a b", "/a\r\nX-Evil: 1", "/\t"] {
            assert_eq!(request(target, bad), Err(ProbeFailure::BadPath), "{bad:?}");
        }
    }

    /// The far end of a duplex stream: reads the request, then writes `answer` and closes.
    async fn answer_on_duplex(answer: Vec<u8>) -> Result<u16, ProbeFailure> {
        let (near, mut far) = tokio::io::duplex(64 << 10);
        let server = tokio::spawn(async move {
            let mut seen = vec![0u8; 4096];
            let n = far.read(&mut seen).await.unwrap();
            far.write_all(&answer).await.unwrap();
            drop(far);
            seen.truncate(n);
            seen
        });
        let target: SocketAddr = "10.1.2.3:80".parse().unwrap();
        let r = exchange(near, &request(target, "/x").unwrap()).await;
        let seen = server.await.unwrap();
        assert!(seen.starts_with(b"GET /x HTTP/1.0\r\n"));
        r
    }

    #[tokio::test]
    async fn the_exchange_reads_only_the_status_line() {
        assert_eq!(
            answer_on_duplex(b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 3\r\n\r\nabc".to_vec())
                .await,
            Ok(418)
        );
        // A status line cut in the middle is an early end, not a code.
        assert_eq!(
            answer_on_duplex(b"HTTP/1.1 20".to_vec()).await,
            Err(ProbeFailure::EarlyEof)
        );
        assert_eq!(
            answer_on_duplex(Vec::new()).await,
            Err(ProbeFailure::EarlyEof)
        );
        let mut endless = b"HTTP/1.1 200 ".to_vec();
        endless.resize(MAX_ANSWER * 4, b's');
        let e = answer_on_duplex(endless).await.unwrap_err();
        assert!(matches!(e, ProbeFailure::Malformed(_)), "{e:?}");
        assert!(!e.to_string().contains("sss"), "{e}");
    }

    /// A tiny HTTP server on loopback: answers each connection with `code`, after recording
    /// its request line.
    async fn responder(code: u16) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut stream = tokio::io::BufReader::new(stream);
                    let mut first = String::new();
                    stream.read_line(&mut first).await.unwrap();
                    loop {
                        let mut l = String::new();
                        if stream.read_line(&mut l).await.unwrap() == 0 || l == "\r\n" {
                            break;
                        }
                    }
                    let _ = tx.send(first.trim_end().to_string());
                    let body = "secret body";
                    let answer = format!(
                        "HTTP/1.0 {code} Whatever\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
                });
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn a_local_probe_gets_the_code_of_a_real_listener() {
        let (addr, mut requests) = responder(200).await;
        let code = status_at(&HostShell::Local, addr, "/healthz", Duration::from_secs(5)).await;
        assert_eq!(code, Ok(200));
        assert_eq!(requests.recv().await.unwrap(), "GET /healthz HTTP/1.0");
        let (addr, _requests) = responder(503).await;
        assert_eq!(
            status_at(&HostShell::Local, addr, "/", Duration::from_secs(5)).await,
            Ok(503)
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_silent_one_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        assert_eq!(
            status_at(&HostShell::Local, closed, "/", Duration::from_secs(5)).await,
            Err(ProbeFailure::Refused)
        );
        // Accepts, reads, never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let keep = tokio::spawn(async move {
            let (mut s, _) = silent.accept().await.unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let limit = Duration::from_millis(300);
        let started = std::time::Instant::now();
        assert_eq!(
            status_at(&HostShell::Local, addr, "/", limit).await,
            Err(ProbeFailure::Timeout(limit))
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        keep.abort();
    }

    #[test]
    fn ssh_messages_say_why_a_channel_failed() {
        let refused =
            "channel 0: open failed: connect failed: Connection refused\nstdio forwarding failed\n";
        assert_eq!(
            ssh_failure(refused, None, ProbeFailure::EarlyEof),
            ProbeFailure::Refused
        );
        let no_route =
            "channel 0: open failed: connect failed: No route to host\nstdio forwarding failed\n";
        assert_eq!(
            ssh_failure(no_route, None, ProbeFailure::EarlyEof),
            ProbeFailure::Connect("open failed: connect failed: No route to host".into())
        );
        // Through a master, the reason stays in the master.
        let muxed = "Stdio forwarding request failed: Session open refused by peer\n";
        assert_eq!(
            ssh_failure(muxed, None, ProbeFailure::EarlyEof),
            ProbeFailure::ForwardRefused
        );
        assert!(ProbeFailure::ForwardRefused.is_refused() && ProbeFailure::Refused.is_refused());
        // Nothing from ssh: the exchange's own finding stands.
        assert_eq!(
            ssh_failure("", None, ProbeFailure::EarlyEof),
            ProbeFailure::EarlyEof
        );
    }

    #[test]
    fn a_probe_error_names_host_container_and_port() {
        let e = ProbeError {
            host: "h1".into(),
            container: "web-1".into(),
            port: 8080,
            failure: ProbeFailure::Refused,
        };
        assert_eq!(
            e.to_string(),
            "readiness probe of container `web-1` port 8080 on host `h1`: connection refused"
        );
    }
}
