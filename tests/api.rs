//! `convoy status --daemon` and `convoy sync --daemon` (the real binary) against the API served
//! in-process on loopback, over HTTP and HTTPS: what they print, their exit codes, what reaches
//! the daemon's loop, and that the token never shows in any output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;

use convoy::api::{bind, serve, ApiConfig};
use convoy::daemon::{ApiRequest, DaemonHandle, DaemonStatus, HostState, ServiceCount};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "integration-t0ken";

/// The API on 127.0.0.1:0, stopped when dropped.
struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    requests: mpsc::UnboundedReceiver<ApiRequest>,
    _status: watch::Sender<DaemonStatus>,
    _dir: tempfile::TempDir,
    token_file: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn status() -> DaemonStatus {
    DaemonStatus {
        phase: "idle",
        ready: true,
        source: "fleet repo (main)".into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        commit_time: Some(1_709_294_405),
        passes: 2,
        hosts: vec![HostState {
            name: "alpha".into(),
            state: "connected",
            reason: None,
        }],
        services: vec![ServiceCount {
            stack: "web".into(),
            service: "app".into(),
            desired: 2,
            running: 2,
            pending: 0,
        }],
        ..DaemonStatus::default()
    }
}

async fn start(tls: Option<(PathBuf, PathBuf)>, dir: tempfile::TempDir) -> Server {
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cfg = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls,
        insecure_listen: false,
        api_token: Some(TOKEN.into()),
        webhook_secret: None,
        metrics_token: false,
        branch: "main".into(),
    };
    let (status_tx, status_rx) = watch::channel(status());
    let (req_tx, requests) = mpsc::unbounded_channel();
    let handle = DaemonHandle {
        status: status_rx,
        requests: req_tx,
        history: None,
    };
    let listener = bind(&cfg).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(serve(listener, cfg, handle, cancel.clone()));
    Server {
        addr,
        cancel,
        requests,
        _status: status_tx,
        _dir: dir,
        token_file,
    }
}

/// Runs the binary (off the runtime's threads, so the in-process server keeps answering).
async fn convoy(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_convoy"))
            .args(&args)
            .env_remove("CONVOY_API_TOKEN_FILE")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_token_in(out: &Output, token: &str) {
    let (o, e) = text(out);
    assert!(
        !o.contains(token) && !e.contains(token),
        "the token shows:\n{o}\n{e}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_from_a_daemon_as_text_and_json() {
    let s = start(None, tempfile::tempdir().unwrap()).await;
    let url = format!("http://{}", s.addr);
    let out = convoy(&[
        "status",
        "--daemon",
        &url,
        "--api-token-file",
        path(&s.token_file),
    ])
    .await;
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}\n{e}");
    assert!(
        o.contains("applied    0123456789ab (2024-03-01T12:00:05Z)"),
        "{o}"
    );
    assert!(o.contains("web/app"), "{o}");
    no_token_in(&out, TOKEN);

    let out = convoy(&[
        "status",
        "--daemon",
        &url,
        "--api-token-file",
        path(&s.token_file),
        "--output",
        "json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["hosts"][0]["state"], "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_is_accepted_and_reaches_the_loop() {
    let mut s = start(None, tempfile::tempdir().unwrap()).await;
    let url = format!("http://{}", s.addr);
    let out = convoy(&[
        "sync",
        "--daemon",
        &url,
        "--api-token-file",
        path(&s.token_file),
        "--allow-prune",
    ])
    .await;
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}\n{e}");
    assert!(
        o.starts_with("sync requested from http://127.0.0.1:"),
        "{o}"
    );
    assert_eq!(o.lines().count(), 1, "{o}");
    assert!(matches!(
        s.requests.try_recv(),
        Ok(ApiRequest::Sync { allow_prune: true })
    ));
    assert!(s.requests.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_missing_token_exits_2_and_is_never_shown() {
    let mut s = start(None, tempfile::tempdir().unwrap()).await;
    let url = format!("http://{}", s.addr);
    let wrong = s._dir.path().join("wrong");
    let wrong_token = "wrong-t0ken-value";
    std::fs::write(&wrong, wrong_token).unwrap();
    for cmd in ["status", "sync"] {
        let out = convoy(&[cmd, "--daemon", &url, "--api-token-file", path(&wrong)]).await;
        let (o, e) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {o}\n{e}");
        assert!(e.contains("refused the API token"), "{cmd}: {e}");
        no_token_in(&out, wrong_token);
        no_token_in(&out, TOKEN);

        let out = convoy(&[cmd, "--daemon", &url]).await;
        let (_, e) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {e}");
        assert!(e.contains("--api-token-file"), "{cmd}: {e}");
    }
    assert!(
        s.requests.try_recv().is_err(),
        "a refused sync reached the loop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_daemon_there_or_none_named_exits_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for cmd in ["status", "sync"] {
        let out = convoy(&[cmd, "--daemon", &url]).await;
        let (_, e) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {e}");
        assert!(e.contains("cannot reach the daemon at"), "{cmd}: {e}");
    }
    let out = convoy(&["sync"]).await;
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("convoy apply") && e.contains("--daemon"), "{e}");
    let out = convoy(&["sync", "--daemon", "127.0.0.1:7878"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("not a daemon URL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_over_https_checks_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=convoy-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A leaf, not a CA: webpki refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-keyout", path(&key), "-out", path(&cert)])
        .output()
        .expect("this test needs openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let other = dir.path().join("other.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=someone-else"])
        .args([
            "-keyout",
            path(&dir.path().join("other.key")),
            "-out",
            path(&other),
        ])
        .output()
        .unwrap();
    assert!(made.status.success());
    let mut s = start(Some((cert.clone(), key)), dir).await;
    let url = format!("https://127.0.0.1:{}", s.addr.port());
    let token = path(&s.token_file).to_string();
    let ok = convoy(&[
        "sync",
        "--daemon",
        &url,
        "--api-token-file",
        &token,
        "--ca-file",
        path(&cert),
    ])
    .await;
    let (o, e) = text(&ok);
    assert_eq!(ok.status.code(), Some(0), "{o}\n{e}");
    assert!(matches!(
        s.requests.try_recv(),
        Ok(ApiRequest::Sync { allow_prune: false })
    ));
    // Another CA: the daemon is not trusted and nothing is sent.
    let refused = convoy(&[
        "sync",
        "--daemon",
        &url,
        "--api-token-file",
        &token,
        "--ca-file",
        path(&other),
    ])
    .await;
    let (_, e) = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{e}");
    assert!(e.contains("TLS"), "{e}");
    assert!(s.requests.try_recv().is_err());
    no_token_in(&refused, TOKEN);
}
