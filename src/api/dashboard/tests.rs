//! The dashboard against a hand-made `DaemonHandle`, through `Router::oneshot`: no token, no
//! page; login sets a session cookie that is not the token; forms need the session's CSRF
//! token; bearer clients are served; every answer carries the strict policy; outside values are
//! escaped; the event stream sends the live fragment; "sync now" and the diff send the API's
//! requests only.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use super::super::{router, Api, ApiConfig};
use super::*;
use crate::daemon::{
    CommitError, DaemonHandle, DaemonStatus, HostFact, HostState, Pending, ReplicaFact,
    ServiceCount,
};
use crate::model::observed::RunState;
use crate::model::outcome::HoldReason;
use crate::model::rollout::RolloutProgress;

const TOKEN: &str = "dash-t0ken/+=&";

fn config(token: Option<&str>) -> ApiConfig {
    ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        insecure_listen: false,
        api_token: token.map(str::to_string),
        webhook_secret: None,
        metrics_token: false,
        branch: "main".into(),
    }
}

struct Fixture {
    app: axum::Router,
    status: watch::Sender<DaemonStatus>,
    requests: mpsc::UnboundedReceiver<ApiRequest>,
}

fn fixture(token: Option<&str>, status: DaemonStatus) -> Fixture {
    let (tx, rx) = watch::channel(status);
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let handle = DaemonHandle {
        status: rx,
        requests: req_tx,
        history: None,
    };
    Fixture {
        app: router(Arc::new(Api::new(&config(token), handle))),
        status: tx,
        requests: req_rx,
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &axum::Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path).header("host", "127.0.0.1:1");
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, body: &str) -> Request<Body> {
    let mut r = Request::post(path)
        .header("host", "127.0.0.1:1")
        .header("origin", "http://127.0.0.1:1")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header("cookie", c);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Logs in; the session cookie (`name=value`).
async fn log_in(app: &axum::Router) -> String {
    let a = send(app, post("/login", None, &format!("token={}", enc(TOKEN)))).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.headers["location"], "/");
    let set = a.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(TOKEN) && !set.contains(&enc(TOKEN)),
        "the token is never the cookie"
    );
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..at + 64].to_string()
}

fn hostile_status() -> DaemonStatus {
    DaemonStatus {
        phase: "idle",
        ready: true,
        source: "/srv/<fleet>".into(),
        commit: Some("c0ffee00c0ffee00".into()),
        hosts: vec![HostState {
            name: "a<script>".into(),
            state: "connected",
            reason: None,
        }],
        host_facts: vec![HostFact {
            name: "a<script>".into(),
            engine_version: "27.1.1".into(),
            cpus: 2.0,
            memory_bytes: 4 << 30,
            rtt_ms: Some(1.5),
            ..HostFact::default()
        }],
        services: vec![ServiceCount {
            stack: "web".into(),
            service: "app".into(),
            desired: 1,
            running: 1,
            pending: 0,
        }],
        replicas: vec![ReplicaFact {
            stack: "web".into(),
            service: "app".into(),
            slot: "1".into(),
            name: "web-app-1".into(),
            host: "a<script>".into(),
            pending: None,
            state: Some(RunState::Running),
            health: None,
            restarts: 4,
            exit_code: None,
            crash_loop: true,
            image: "img:\"1\"".into(),
            commit: "c0ffee00c0ffee00".into(),
            spec_hash: "h2".into(),
            container: "abcdef123456".into(),
            last_logs: vec!["<b>boom</b> ****".into()],
        }],
        pending: Some(Pending {
            commit: "badc0de".into(),
            reason: HoldReason::InvalidCommit,
            message: "the commit does not validate".into(),
            errors: vec![CommitError {
                file: "web/compose.yaml".into(),
                line: 4,
                column: 7,
                key: "services.app.image".into(),
                message: "must be a string".into(),
            }],
        }),
        rollouts: vec![RolloutProgress {
            stack: "web".into(),
            service: "app".into(),
            to_hash: "h2".into(),
            batch: 2,
            batches: 3,
            updated: 1,
            replicas: 3,
            done: false,
        }],
        ..DaemonStatus::default()
    }
}

#[tokio::test]
async fn without_a_token_nothing_is_served_and_the_page_says_why() {
    let f = fixture(None, hostile_status());
    for path in ["/", "/login", "/diff", "/history", "/events", "/commit/abc"] {
        let a = send(&f.app, get(path, None)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        assert!(a.body.contains("no API token"), "{path}: {}", a.body);
        assert!(!a.body.contains("web-app-1"), "{path}");
    }
    let a = send(&f.app, post("/login", None, "token=x")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_browser_logs_in_with_the_token_and_gets_a_session() {
    let f = fixture(Some(TOKEN), hostile_status());
    let a = send(&f.app, get("/", None)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers["location"], "/login");
    let a = send(&f.app, get("/login", None)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains("type=\"password\""));

    let a = send(&f.app, post("/login", None, "token=wrong")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(!a.headers.contains_key("set-cookie"));
    assert!(a.body.contains("Wrong token"));

    let cookie = log_in(&f.app).await;
    let a = send(&f.app, get("/", Some(&cookie))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a.body.contains("data-replica=\"web-app-1\""));
    // A made-up session is no session.
    let a = send(&f.app, get("/", Some("convoy_session=0123"))).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn every_answer_carries_the_strict_policy() {
    let f = fixture(Some(TOKEN), hostile_status());
    let cookie = log_in(&f.app).await;
    for path in ["/", "/login", "/dash/style.css", "/dash/app.js", "/history"] {
        let a = send(&f.app, get(path, Some(&cookie))).await;
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(a.headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(a.headers["x-content-type-options"], "nosniff");
    }
}

#[tokio::test]
async fn outside_values_are_escaped_and_the_page_shows_the_fleet() {
    let f = fixture(Some(TOKEN), hostile_status());
    let a = send(
        &f.app,
        Request::get("/")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let b = &a.body;
    assert!(
        !b.contains("a<script>") && b.contains("a&lt;script&gt;"),
        "{b}"
    );
    assert!(b.contains("&lt;b&gt;boom&lt;/b&gt; ****"), "logs escaped");
    assert!(b.contains("img:&quot;1&quot;"));
    assert!(b.contains("/srv/&lt;fleet&gt;"));
    // What the issue asks the page to show.
    assert!(b.contains("27.1.1") && b.contains("1.5 ms") && b.contains("4.0 GiB"));
    assert!(b.contains("crash loop"));
    assert!(b.contains("web/compose.yaml:4:7") && b.contains("services.app.image"));
    assert!(b.contains("batch 2 of 3") && b.contains("<progress max=\"3\" value=\"1\">"));
    assert!(b.contains("id=\"jobs\""));
    assert!(b.contains("href=\"/commit/c0ffee00c0ffee00\""));
    // The only script is the served file.
    assert_eq!(b.matches("<script").count(), 1);
    assert!(b.contains("<script src=\"/dash/app.js\" defer></script>"));
    // A bearer client has no CSRF token in its forms (it needs none).
    assert!(!b.contains("name=\"csrf\""));
}

#[tokio::test]
async fn a_wrong_bearer_token_is_refused() {
    let f = fixture(Some(TOKEN), hostile_status());
    let a = send(
        &f.app,
        Request::get("/")
            .header("authorization", "Bearer nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(!a.body.contains("web-app-1"));
}

#[tokio::test]
async fn sync_needs_the_sessions_csrf_token_and_sends_the_apis_request() {
    let mut f = fixture(Some(TOKEN), hostile_status());
    let cookie = log_in(&f.app).await;
    let page = send(&f.app, get("/", Some(&cookie))).await.body;
    let csrf = csrf_of(&page);
    assert_ne!(
        csrf,
        cookie.split('=').nth(1).unwrap(),
        "the CSRF token is not the id"
    );

    for body in [
        "".to_string(),
        "csrf=wrong".into(),
        format!("csrf={}x", csrf),
    ] {
        let a = send(&f.app, post("/sync", Some(&cookie), &body)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{body}");
    }
    assert!(
        f.requests.try_recv().is_err(),
        "nothing sent without the CSRF token"
    );
    // Another session's token is not this one's.
    let other = log_in(&f.app).await;
    let other_csrf = csrf_of(&send(&f.app, get("/", Some(&other))).await.body);
    let a = send(
        &f.app,
        post("/sync", Some(&cookie), &format!("csrf={other_csrf}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Another origin is refused even with the right token.
    let req = Request::post("/sync")
        .header("host", "127.0.0.1:1")
        .header("origin", "http://evil.example")
        .header("cookie", &cookie)
        .body(Body::from(format!("csrf={csrf}")))
        .unwrap();
    assert_eq!(send(&f.app, req).await.status, StatusCode::FORBIDDEN);
    assert!(f.requests.try_recv().is_err());

    let a = send(
        &f.app,
        post("/sync", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(matches!(
        f.requests.try_recv(),
        Ok(ApiRequest::Sync { allow_prune: false })
    ));
    let a = send(
        &f.app,
        post(
            "/sync",
            Some(&cookie),
            &format!("csrf={csrf}&allow_prune=true"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(matches!(
        f.requests.try_recv(),
        Ok(ApiRequest::Sync { allow_prune: true })
    ));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let f = fixture(Some(TOKEN), hostile_status());
    let cookie = log_in(&f.app).await;
    let csrf = csrf_of(&send(&f.app, get("/", Some(&cookie))).await.body);
    let a = send(
        &f.app,
        post("/logout", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let a = send(&f.app, get("/", Some(&cookie))).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "the session is gone");
}

#[tokio::test]
async fn the_allow_prune_button_shows_only_for_the_deletion_guard() {
    let mut s = hostile_status();
    let f = fixture(Some(TOKEN), s.clone());
    let cookie = log_in(&f.app).await;
    let page = send(&f.app, get("/", Some(&cookie))).await.body;
    assert!(page.contains("id=\"sync-now\"") && !page.contains("id=\"allow-prune\""));
    s.pending.as_mut().unwrap().reason = HoldReason::DeletionGuard;
    f.status.send_replace(s);
    let page = send(&f.app, get("/", Some(&cookie))).await.body;
    assert!(page.contains("id=\"allow-prune\""));
}

#[tokio::test]
async fn the_event_stream_sends_the_live_fragment_on_every_change() {
    let f = fixture(Some(TOKEN), hostile_status());
    let cookie = log_in(&f.app).await;
    let a = send(&f.app, get("/events", None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let res = f
        .app
        .clone()
        .oneshot(get("/events", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.starts_with("event: live\ndata: "), "{first}");
    assert!(first.contains("web-app-1") && first.ends_with("\n\n"));
    assert!(first
        .lines()
        .all(|l| l.is_empty() || l.starts_with("data: ") || l.starts_with("event: ")));

    let mut next = hostile_status();
    next.replicas[0].container = "fedcba654321".into();
    f.status.send_replace(next);
    let second = tokio::time::timeout(Duration::from_secs(2), body.next())
        .await
        .expect("an update within 2 s")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&second).contains("data-container=\"fedcba654321\""));
}

#[tokio::test]
async fn the_diff_view_asks_the_daemon_for_the_plan_text() {
    let mut f = fixture(Some(TOKEN), hostile_status());
    let cookie = log_in(&f.app).await;
    let app = f.app.clone();
    let page = tokio::spawn(async move { send(&app, get("/diff", Some(&cookie))).await });
    match f.requests.recv().await {
        Some(ApiRequest::DiffText { reply }) => {
            reply
                .send(Ok(
                    "fleet `f` at c\n\nhost a\n  + web-app-1 (missing)\n".into()
                ))
                .unwrap();
        }
        other => panic!("{other:?}"),
    }
    let a = page.await.unwrap();
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body
            .contains("<span class=\"add\">  + web-app-1 (missing)</span>"),
        "{}",
        a.body
    );
}

#[test]
fn forms_are_decoded() {
    assert_eq!(
        parse_form("token=a%2Bb+c%26&csrf=x&flag"),
        vec![
            ("token".to_string(), "a+b c&".to_string()),
            ("csrf".into(), "x".into()),
            ("flag".into(), String::new())
        ]
    );
    assert_eq!(
        parse_form("a=%zz%4"),
        vec![("a".to_string(), "%zz%4".to_string())]
    );
    assert_eq!(
        parse_form("a=%C3%A9"),
        vec![("a".to_string(), "é".to_string())]
    );
}

#[test]
fn events_split_lines_into_data_fields() {
    let e = sse_event("live", "a\nb\r\nc");
    assert_eq!(&e[..], b"event: live\ndata: a\ndata: b\ndata: c\n\n");
}

#[test]
fn the_first_load_is_small() {
    let page = html::page(
        "Fleet",
        Some("x"),
        &view::live(&view::Live {
            status: &hostile_status(),
            history: Ok(&[]),
            csrf: "x",
            now: 0.0,
        }),
    );
    let total = page.len() + STYLE.len() + SCRIPT.len() + ICON.len();
    assert!(total < 40 * 1024, "{total} bytes");
}

#[test]
fn jobs_show_their_schedule_next_run_and_a_failed_runs_last_lines_escaped() {
    use crate::model::job::{Concurrency, JobRun, JobStatus, RunPhase};
    let run = |phase, exit_code, lines: &[&str]| JobRun {
        host: "h<1>".into(),
        container: "s-backup-job-1700000000".into(),
        scheduled: Some(1_700_000_000),
        scheduled_at: Some("2023-11-14T22:13:20Z".into()),
        phase,
        exit_code,
        started: Some(1_700_000_000),
        finished: Some(1_700_000_004),
        duration_secs: Some(4),
        spec_hash: "h".into(),
        commit: "c".into(),
        manual: false,
        last_lines: lines.iter().map(|l| l.to_string()).collect(),
    };
    let status = DaemonStatus {
        jobs: vec![
            JobStatus {
                stack: "s".into(),
                name: "backup<script>".into(),
                schedule: Some("0 3 * * *".into()),
                timezone: "Europe/Berlin".into(),
                concurrency: Concurrency::Forbid,
                next_run: Some("2023-11-15T02:00:00Z".into()),
                last_runs: vec![
                    run(RunPhase::Failed, Some(3), &["disk <full>"]),
                    run(RunPhase::Succeeded, Some(0), &[]),
                ],
            },
            JobStatus {
                stack: "s".into(),
                name: "migrate".into(),
                schedule: None,
                timezone: "UTC".into(),
                concurrency: Concurrency::Forbid,
                next_run: None,
                last_runs: Vec::new(),
            },
        ],
        ..DaemonStatus::default()
    };
    let page = view::live(&view::Live {
        status: &status,
        history: Ok(&[]),
        csrf: "x",
        now: 0.0,
    });
    assert!(page.contains("s/backup&lt;script&gt;"), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("<code>0 3 * * *</code> Europe/Berlin (forbid)"),
        "{page}"
    );
    assert!(page.contains("2023-11-15T02:00:00Z"), "{page}");
    assert!(
        page.contains("failed exit 3</span> 2023-11-14T22:13:20Z on h&lt;1&gt;, 4 s"),
        "{page}"
    );
    assert!(page.contains("succeeded exit 0"), "{page}");
    assert!(page.contains("disk &lt;full&gt;"), "{page}");
    assert!(page.contains("once per spec"), "{page}");
    assert!(page.contains("none yet"), "{page}");
    let empty = view::live(&view::Live {
        status: &DaemonStatus::default(),
        history: Ok(&[]),
        csrf: "x",
        now: 0.0,
    });
    assert!(empty.contains("No job in the commit in force."), "{empty}");
}

#[test]
fn a_commit_held_by_a_sync_window_says_which_window_holds_which_stack_until_when() {
    use crate::model::sync_window::{WindowHold, WindowKind};
    let status = DaemonStatus {
        pending: Some(Pending {
            commit: "c0ffee".into(),
            reason: HoldReason::SyncWindow,
            message: "held by a sync window".into(),
            errors: Vec::new(),
        }),
        sync_windows: vec![WindowHold {
            stack: "web<b>".into(),
            window: 0,
            kind: WindowKind::Deny,
            schedule: "0 22 * * 5".into(),
            timezone: "UTC".into(),
            manual_sync: true,
            opens_at: Some(1_700_000_000),
        }],
        ..DaemonStatus::default()
    };
    let page = view::live(&view::Live {
        status: &status,
        history: Ok(&[]),
        csrf: "x",
        now: 0.0,
    });
    assert!(page.contains("sync_window"), "{page}");
    assert!(page.contains("web&lt;b&gt;"), "{page}");
    assert!(!page.contains("web<b>"), "{page}");
    assert!(page.contains("2023-11-14T22:13:20Z"), "{page}");
    assert!(page.contains("href=\"/diff\""), "{page}");
}
