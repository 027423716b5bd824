//! Delivery against a receiver on loopback: signed bodies, commit status requests, retries,
//! refusals, a full queue and an endpoint that never answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::model::notify::{EventKind, HostCount, NotificationSpec, NotifyKind, SecretText};

#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver answering each request with the next of `statuses` (then 200); `hang`: accept
/// and never answer.
async fn receiver(statuses: Vec<u16>, hang: bool) -> (String, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(VecDeque::from(statuses)));
    let g = got.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            if hang {
                held.push(conn);
                continue;
            }
            let (g, answers) = (g.clone(), answers.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let path = lines
                    .next()
                    .unwrap_or_default()
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(": "))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
                let status = answers.lock().unwrap().pop_front().unwrap_or(200);
                g.lock().unwrap().push(Got {
                    path,
                    headers,
                    body,
                });
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, got)
}

fn spec(kind: NotifyKind, url: &str) -> NotificationSpec {
    NotificationSpec {
        kind,
        url: Some(SecretText(url.to_string())),
        url_file: None,
        events: Vec::new(),
        secret_file: None,
        token_file: None,
        api_url: None,
    }
}

fn applied(commit: &str) -> Event {
    Event::Applied {
        commit: commit.into(),
        hosts: HostCount { ok: 3, total: 4 },
    }
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

#[tokio::test]
async fn a_generic_notification_is_signed_with_the_webhooks_scheme() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hmac.key"), "k3y-material\n").unwrap();
    let (url, got) = receiver(vec![], false).await;
    let mut s = spec(NotifyKind::Generic, &format!("{url}/hook"));
    s.secret_file = Some("hmac.key".into());
    let e = resolve(&s, "n[0] (generic)".into(), Some(dir.path())).unwrap();
    let n = Notifier::new(NotifyCounts::default());
    n.set_context("prod", BTreeSet::new());
    n.configure(vec![e]);
    n.notify(applied(SHA));
    assert_eq!(n.flush(Duration::from_secs(10)).await, 0);
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/hook");
    let sig = got[0].header("x-convoy-signature").unwrap();
    let hex = sig.strip_prefix("sha256=").unwrap();
    // The key as read (trimmed), the body as sent.
    assert!(crate::model::signature::verify(
        b"k3y-material",
        got[0].body.as_bytes(),
        hex
    ));
    let v: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(v["event"], "applied");
    assert_eq!(v["fleet"], "prod");
    assert_eq!(n.counts().get(SendResult::Delivered), 1);
}

#[tokio::test]
async fn commit_statuses_go_to_each_forges_api_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let (api, got) = receiver(vec![], false).await;
    let mut endpoints = Vec::new();
    for (i, kind) in [NotifyKind::GitHub, NotifyKind::Gitea, NotifyKind::GitLab]
        .into_iter()
        .enumerate()
    {
        let mut s = spec(kind, "https://git.example.com/acme/fleet");
        s.token_file = Some(dir.path().join("token").display().to_string());
        s.api_url = Some(format!("{api}/api{i}"));
        endpoints.push(resolve(&s, format!("n[{i}]"), None).unwrap());
    }
    let n = Notifier::new(NotifyCounts::default());
    n.set_context("prod", BTreeSet::new());
    n.configure(endpoints);
    n.notify(applied(SHA));
    // Nothing for an event that sets no status.
    n.notify(Event::HostDown { host: "h1".into() });
    assert_eq!(n.flush(Duration::from_secs(10)).await, 0);
    let got_all = got;
    let mut got = got_all.lock().unwrap().clone();
    got.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = got.iter().map(|g| g.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            format!("/api0/repos/acme/fleet/statuses/{SHA}"),
            format!("/api1/repos/acme/fleet/statuses/{SHA}"),
            format!("/api2/projects/acme%2Ffleet/statuses/{SHA}"),
        ]
    );
    assert_eq!(got[0].header("authorization"), Some("Bearer t0ken"));
    assert_eq!(got[1].header("authorization"), Some("token t0ken"));
    assert_eq!(got[2].header("authorization"), Some("Bearer t0ken"));
    // A token rotated in its file is used from the next status on, with no new configuration;
    // while the file is missing (a rotation half done) the last one read is sent.
    std::fs::write(dir.path().join("token"), "r0tated\n").unwrap();
    n.notify(applied(SHA));
    std::fs::remove_file(dir.path().join("token")).unwrap();
    n.notify(applied(SHA));
    assert_eq!(n.flush(Duration::from_secs(10)).await, 0);
    let later = got_all.lock().unwrap().clone();
    let auth: Vec<Option<&str>> = later[3..]
        .iter()
        .map(|g| g.header("authorization"))
        .collect();
    assert_eq!(auth.len(), 6, "two statuses to three forges");
    assert_eq!(
        auth.iter()
            .filter(|a| a.is_some_and(|a| a.ends_with(" r0tated")))
            .count(),
        3
    );
    assert_eq!(
        auth.iter()
            .filter(|a| a.is_some_and(|a| a.ends_with(" t0ken")))
            .count(),
        3
    );
    let gh: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(gh["state"], "success");
    assert_eq!(gh["description"], "applied: 3/4 hosts");
    let gl: serde_json::Value = serde_json::from_str(&got[2].body).unwrap();
    assert_eq!(gl["name"], "convoy/prod");
}

#[tokio::test]
async fn a_server_error_is_retried_and_a_refusal_is_not() {
    let (url, got) = receiver(vec![503], false).await;
    let n = Notifier::new(NotifyCounts::default());
    n.configure(vec![resolve(
        &spec(NotifyKind::Slack, &url),
        "s".into(),
        None,
    )
    .unwrap()]);
    n.notify(applied(SHA));
    assert_eq!(n.flush(Duration::from_secs(10)).await, 0);
    assert_eq!(got.lock().unwrap().len(), 2);
    assert_eq!(n.counts().get(SendResult::Retried), 1);
    assert_eq!(n.counts().get(SendResult::Delivered), 1);

    let (url, got) = receiver(vec![404], false).await;
    let n = Notifier::new(NotifyCounts::default());
    n.configure(vec![resolve(
        &spec(NotifyKind::Discord, &url),
        "d".into(),
        None,
    )
    .unwrap()]);
    n.notify(applied(SHA));
    assert_eq!(n.flush(Duration::from_secs(10)).await, 0);
    assert_eq!(got.lock().unwrap().len(), 1);
    assert_eq!(n.counts().get(SendResult::Failed), 1);
    assert_eq!(n.counts().get(SendResult::Retried), 0);
}

/// An endpoint that accepts and never answers: `notify` still returns at once, the queue
/// stays bounded (the oldest dropped and counted), and `flush` ends at its deadline.
#[tokio::test]
async fn a_silent_endpoint_never_holds_the_caller_and_the_queue_stays_bounded() {
    let (url, _got) = receiver(vec![], true).await;
    let n = Notifier::new(NotifyCounts::default());
    n.configure(vec![resolve(
        &spec(NotifyKind::Slack, &url),
        "s".into(),
        None,
    )
    .unwrap()]);
    let extra = 10;
    for _ in 0..(QUEUE_CAP + 1 + extra) {
        n.notify(applied(SHA));
    }
    // One is in flight (waiting for the answer), QUEUE_CAP wait behind it; the rest were the
    // oldest of a full queue.
    let dropped = n.counts().get(SendResult::Dropped);
    assert!(
        (extra as u64..=extra as u64 + 1).contains(&dropped),
        "dropped {dropped}"
    );
    let left = n.flush(Duration::from_millis(200)).await;
    assert!(left >= QUEUE_CAP, "left {left}");
}

#[test]
fn files_are_read_from_the_base_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let hook = "https://hooks.slack.com/services/T0/B0/s3cr3t";
    std::fs::write(dir.path().join("slack-url"), format!("{hook}\n")).unwrap();
    let mut s = spec(NotifyKind::Slack, hook);
    s.url = None;
    s.url_file = Some("slack-url".into());
    s.events = vec![EventKind::Failed];
    let e = resolve(
        &s,
        "convoy.yaml notifications[0] (slack)".into(),
        Some(dir.path()),
    )
    .unwrap();
    assert_eq!(e.secrets(), [hook.to_string()]);
    assert_eq!(format!("{e:?}"), "convoy.yaml notifications[0] (slack)");
    let err = resolve(&s, "n".into(), None).unwrap_err();
    assert!(err.contains("relative"), "{err}");
    std::fs::write(dir.path().join("slack-url"), "not a url s3cr3t").unwrap();
    let err = resolve(&s, "n".into(), Some(dir.path())).unwrap_err();
    assert!(!err.contains("s3cr3t"), "{err}");
    // The endpoint wants only `failed`.
    let n = Notification {
        fleet: "f".into(),
        at: 0,
        event: applied(SHA),
    };
    assert!(request(&e, &n).is_none());
}

#[test]
fn backoff_doubles_up_to_a_minute_with_jitter() {
    let mut rng = 12345u64;
    for attempt in 1..=12u32 {
        let base = Duration::from_secs(1u64 << (attempt - 1).min(16)).min(MAX_BACKOFF);
        for _ in 0..20 {
            let d = backoff(attempt, &mut rng);
            assert!(
                d >= base.mul_f64(0.5) && d <= base.mul_f64(1.5),
                "{attempt}: {d:?}"
            );
        }
    }
}

#[test]
fn forges_default_api_addresses() {
    assert_eq!(
        default_api(NotifyKind::GitHub, "https://github.com/a/b"),
        "https://api.github.com"
    );
    assert_eq!(
        default_api(NotifyKind::GitHub, "https://ghe.example.com/a/b"),
        "https://ghe.example.com/api/v3"
    );
    assert_eq!(
        default_api(NotifyKind::Gitea, "http://git.lan:3000/a/b"),
        "http://git.lan:3000/api/v1"
    );
    assert_eq!(
        default_api(NotifyKind::GitLab, "https://gitlab.com/g/s/p"),
        "https://gitlab.com/api/v4"
    );
}

/// A configuration that drops an endpoint drops its queue, the message in flight included:
/// nothing is left for `flush` to wait for.
#[tokio::test]
async fn an_endpoint_removed_takes_its_queue_with_it() {
    let (url, _got) = receiver(vec![], true).await;
    let n = Notifier::new(NotifyCounts::default());
    n.configure(vec![resolve(
        &spec(NotifyKind::Slack, &url),
        "s".into(),
        None,
    )
    .unwrap()]);
    for _ in 0..5 {
        n.notify(applied(SHA));
    }
    // The task takes the first and waits for its answer.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    n.configure(Vec::new());
    assert!(n.is_empty());
    assert_eq!(n.flush(Duration::from_secs(5)).await, 0);
    assert_eq!(n.counts().get(SendResult::Dropped), 5);
}
