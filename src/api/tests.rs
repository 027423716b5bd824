//! The API against a hand-made `DaemonHandle`: routes through `Router::oneshot`, the server
//! bound on loopback (plain and TLS), and `/metrics` read back by the Prometheus project's own
//! Python parser. Nothing here talks to anything but loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use super::hooks::sign;
use super::*;
use crate::daemon::{CommitError, DaemonStatus, FetchCause, HostState, Pending, ServiceCount};
use crate::model::outcome::{HoldReason, PassReason, PassResult};
use crate::model::rollout::{QuarantineRecord, RolloutProgress, RolloutReport, RolloutResult};

const TOKEN: &str = "t0ken-for-tests";
const SECRET: &str = "hook-secret";

fn config() -> ApiConfig {
    ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        insecure_listen: false,
        api_token: Some(TOKEN.into()),
        webhook_secret: Some(SECRET.into()),
        metrics_token: false,
        branch: "main".into(),
    }
}

struct Fixture {
    app: Router,
    status: watch::Sender<DaemonStatus>,
    requests: mpsc::UnboundedReceiver<ApiRequest>,
}

fn handle(
    status: DaemonStatus,
) -> (
    DaemonHandle,
    watch::Sender<DaemonStatus>,
    mpsc::UnboundedReceiver<ApiRequest>,
) {
    let (tx, rx) = watch::channel(status);
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    (
        DaemonHandle {
            status: rx,
            requests: req_tx,
            history: None,
        },
        tx,
        req_rx,
    )
}

fn fixture_with(cfg: ApiConfig, status: DaemonStatus) -> Fixture {
    let (h, status, requests) = handle(status);
    Fixture {
        app: router(Arc::new(Api::new(&cfg, h))),
        status,
        requests,
    }
}

fn fixture() -> Fixture {
    fixture_with(config(), DaemonStatus::default())
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn call(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn get_auth(path: &str, token: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn health_always_answers_and_readiness_follows_the_daemon() {
    let f = fixture_with(
        ApiConfig {
            api_token: None,
            webhook_secret: None,
            ..config()
        },
        DaemonStatus::default(),
    );
    let health = call(&f.app, get("/healthz")).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok\n")
    );
    assert_eq!(
        call(&f.app, get("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    f.status.send_modify(|s| s.ready = true);
    assert_eq!(call(&f.app, get("/readyz")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_api_wants_the_bearer_token() {
    let f = fixture();
    for req in [
        get("/api/v1/status"),
        get_auth("/api/v1/status", "wrong"),
        get_auth("/api/v1/status", &format!("{TOKEN}x")),
        Request::get("/api/v1/status")
            .header("authorization", TOKEN)
            .body(Body::empty())
            .unwrap(),
        Request::post("/api/v1/sync").body(Body::empty()).unwrap(),
        get("/api/v1/diff"),
    ] {
        let a = call(&f.app, req).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let challenge = a.headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert!(!a.body.contains(TOKEN));
    }
    assert_eq!(
        call(&f.app, get_auth("/api/v1/status", TOKEN)).await.status,
        StatusCode::OK
    );
    let mut f = f;
    assert!(
        f.requests.try_recv().is_err(),
        "a refused request reached the daemon"
    );
}

#[tokio::test]
async fn without_a_token_the_api_is_health_only() {
    let f = fixture_with(
        ApiConfig {
            api_token: None,
            ..config()
        },
        DaemonStatus::default(),
    );
    for path in ["/api/v1/status", "/api/v1/diff"] {
        assert_eq!(
            call(&f.app, get_auth(path, TOKEN)).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let sync = Request::post("/api/v1/sync").body(Body::empty()).unwrap();
    assert_eq!(call(&f.app, sync).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f.app, get("/healthz")).await.status, StatusCode::OK);
    assert_eq!(call(&f.app, get("/metrics")).await.status, StatusCode::OK);
}

pub(crate) fn busy_status() -> DaemonStatus {
    let mut s = DaemonStatus {
        phase: "idle",
        ready: true,
        source: "ssh://git@example.com/fleet.git (main)".into(),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        commit_time: Some(1_709_294_405),
        pending: Some(Pending {
            commit: "fedcba9876543210fedcba9876543210fedcba98".into(),
            reason: HoldReason::InvalidCommit,
            message: "1 error; fix and push".into(),
            errors: vec![CommitError {
                file: "stacks/web/compose.yaml".into(),
                line: 4,
                column: 7,
                key: "services.app.image".into(),
                message: "must be a string".into(),
            }],
        }),
        held: Some(HoldReason::InvalidCommit),
        passes: 7,
        last_reason: Some(PassReason::EngineEvent {
            host: "a".into(),
            action: "die".into(),
            container: "web-app-1".into(),
        }),
        last_result: Some(PassResult::Applied),
        last_pass_at: Some(1_709_294_410.25),
        last_pass_ms: Some(1234),
        converged: true,
        disconnected: BTreeMap::from([("b".to_string(), "timed out".to_string())]),
        hosts: vec![
            HostState {
                name: "a".into(),
                state: "connected",
                reason: None,
            },
            HostState {
                name: "b".into(),
                state: "unreachable",
                reason: Some("timed out".into()),
            },
        ],
        services: vec![ServiceCount {
            stack: "web".into(),
            service: "a\"p\\p\nx".into(),
            desired: 3,
            running: 2,
            pending: 1,
        }],
        rollouts: vec![RolloutProgress {
            stack: "shop".into(),
            service: "web".into(),
            to_hash: "9999aaaabbbbccccdddd".into(),
            batch: 2,
            batches: 4,
            updated: 1,
            replicas: 4,
            done: false,
        }],
        last_rollouts: vec![RolloutReport {
            stack: "shop".into(),
            service: "api".into(),
            to_hash: "abc123abc123abc123".into(),
            result: RolloutResult::RolledBack {
                reason: "api-1: exited with code 3".into(),
                batch: 1,
                host: "a".into(),
            },
            batches_done: 1,
            batches: 3,
            updated: 0,
        }],
        quarantined: vec![QuarantineRecord {
            stack: "shop".into(),
            service: "api".into(),
            spec_hash: "abc123abc123abc123".into(),
            commit: "def456def456def456".into(),
            reason: "api-1: exited with code 3".into(),
            batch: 1,
            host: "a".into(),
            at: "2024-03-01T12:00:09Z".into(),
            id: String::new(),
        }],
        ..DaemonStatus::default()
    };
    s.counters.count_rollout("shop", "api", "rolled_back");
    s.counters.count_rollout("shop", "api", "completed");
    s.counters.count_rollout("shop", "api", "completed");
    s.counters.passes.insert("applied", 5);
    s.counters.passes.insert("failed", 2);
    s.counters.pass_duration.observe(0.2);
    s.counters.pass_duration.observe(3.0);
    s.counters.pass_duration.observe(1000.0);
    s.counters.steps.insert("create", 4);
    s.counters.heals.insert("missing", 1);
    s.counters.commit_errors = 1;
    s.counters.git_fetch_errors = 3;
    s
}

#[tokio::test]
async fn the_status_document_carries_what_the_daemon_knows() {
    let f = fixture_with(config(), busy_status());
    let a = call(&f.app, get_auth("/api/v1/status", TOKEN)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers["content-type"], "application/json");
    let v = a.json();
    assert_eq!(v["version"], 1);
    assert_eq!(
        v["applied_commit"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(v["applied_commit_time"], "2024-03-01T12:00:05Z");
    assert_eq!(v["pending_commit"]["reason"], "invalid_commit");
    assert_eq!(
        v["pending_commit"]["errors"][0],
        serde_json::json!({"file": "stacks/web/compose.yaml", "line": 4, "column": 7,
            "key": "services.app.image", "message": "must be a string"})
    );
    assert_eq!(v["ready"], true);
    assert_eq!(v["phase"], "idle");
    assert_eq!(
        v["last_pass"],
        serde_json::json!({"finished_at": "2024-03-01T12:00:10.250Z", "duration_ms": 1234,
            "reason": {"kind": "engine_event", "host": "a", "action": "die",
                       "container": "web-app-1"},
            "result": "applied", "converged": true,
            "rollouts": [{"stack": "shop", "service": "api", "to_hash": "abc123abc123abc123",
                          "result": "rolled_back", "reason": "api-1: exited with code 3",
                          "batch": 1, "host": "a", "batches_done": 1, "batches": 3,
                          "updated": 0}]})
    );
    // The rollout in flight, and the quarantined spec with why, where and when.
    assert_eq!(
        v["rollouts"],
        serde_json::json!([{"stack": "shop", "service": "web", "to_hash": "9999aaaabbbbccccdddd",
            "batch": 2, "batches": 4, "updated": 1, "replicas": 4, "done": false}])
    );
    assert_eq!(
        v["quarantined"],
        serde_json::json!([{"stack": "shop", "service": "api", "spec_hash": "abc123abc123abc123",
            "commit": "def456def456def456", "reason": "api-1: exited with code 3",
            "batch": 1, "host": "a", "at": "2024-03-01T12:00:09Z"}])
    );
    assert_eq!(v["passes"], 7);
    assert_eq!(v["services"][0]["pending"], 1);
    assert_eq!(
        v["hosts"][1],
        serde_json::json!({"name": "b", "state": "unreachable", "reason": "timed out"})
    );
    // The client reads the same document back.
    let doc: StatusDoc = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc, StatusDoc::from_status(&busy_status()));

    let empty = call(&fixture().app, get_auth("/api/v1/status", TOKEN))
        .await
        .json();
    assert!(empty["pending_commit"].is_null() && empty["last_pass"].is_null());
    assert!(empty["applied_commit"].is_null());
    assert_eq!(empty["rollouts"], serde_json::json!([]));
    assert_eq!(empty["quarantined"], serde_json::json!([]));
    // A document from a daemon that predates rollouts still reads (the fields are added).
    let mut old = serde_json::to_value(StatusDoc::from_status(&busy_status())).unwrap();
    let obj = old.as_object_mut().unwrap();
    obj.remove("rollouts");
    obj.remove("quarantined");
    obj["last_pass"].as_object_mut().unwrap().remove("rollouts");
    let doc: StatusDoc = serde_json::from_value(old).unwrap();
    assert!(doc.rollouts.is_empty() && doc.quarantined.is_empty());
    assert!(doc.last_pass.unwrap().rollouts.is_empty());
}

#[tokio::test]
async fn sync_sends_one_request_to_the_loop() {
    let mut f = fixture();
    let post = |uri: &str| {
        Request::post(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap()
    };
    let a = call(&f.app, post("/api/v1/sync")).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(a.json(), serde_json::json!({"accepted": true}));
    assert!(matches!(
        f.requests.try_recv(),
        Ok(ApiRequest::Sync { allow_prune: false })
    ));
    call(&f.app, post("/api/v1/sync?allow_prune=true")).await;
    assert!(matches!(
        f.requests.try_recv(),
        Ok(ApiRequest::Sync { allow_prune: true })
    ));
    let bad = call(&f.app, post("/api/v1/sync?allow_prune=maybe")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(f.requests.try_recv().is_err());
    // The loop is gone: the API says so instead of pretending.
    drop(f.requests);
    assert_eq!(
        call(&f.app, post("/api/v1/sync")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn diff_relays_the_loops_answer() {
    let mut f = fixture();
    let answering = tokio::spawn(async move {
        for answer in [
            Ok("{\"version\":1}".to_string()),
            Err("no fleet yet".to_string()),
        ] {
            match f.requests.recv().await {
                Some(ApiRequest::Diff { reply }) => reply.send(answer).unwrap(),
                other => panic!("expected a diff request, got {other:?}"),
            }
        }
    });
    let ok = call(&f.app, get_auth("/api/v1/diff", TOKEN)).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (StatusCode::OK, "{\"version\":1}")
    );
    assert_eq!(ok.headers["content-type"], "application/json");
    let failed = call(&f.app, get_auth("/api/v1/diff", TOKEN)).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.json()["error"], "no fleet yet");
    answering.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Webhooks.
// ---------------------------------------------------------------------------------------------

fn push_body(branch: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"ref": format!("refs/heads/{branch}"), "after": "abc"}))
        .unwrap()
}

/// A push as each provider signs it; `good` false signs with the wrong secret.
fn hook_request(provider: Provider, body: Vec<u8>, good: bool) -> Request<Body> {
    let secret = if good { SECRET } else { "not-the-secret" };
    let sig = sign(secret.as_bytes(), &body);
    let b = Request::post(format!("/hooks/{}", provider.code()))
        .header("content-type", "application/json");
    let b = match provider {
        Provider::GitHub => b
            .header("x-github-event", "push")
            .header("x-hub-signature-256", format!("sha256={sig}")),
        Provider::Gitea => b
            .header("x-gitea-event", "push")
            .header("x-gitea-signature", sig),
        Provider::GitLab => b
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-token", secret),
        Provider::Generic => b.header("x-convoy-signature", format!("sha256={sig}")),
    };
    b.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn each_provider_fetches_on_a_signed_push_to_the_branch_only() {
    for provider in Provider::ALL {
        let mut f = fixture();
        let bad = call(&f.app, hook_request(provider, push_body("main"), false)).await;
        assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{provider:?}");
        assert!(
            f.requests.try_recv().is_err(),
            "{provider:?}: a bad signature reached the daemon"
        );

        let good = call(&f.app, hook_request(provider, push_body("main"), true)).await;
        assert_eq!(
            good.status,
            StatusCode::ACCEPTED,
            "{provider:?}: {}",
            good.body
        );
        match f.requests.try_recv() {
            Ok(ApiRequest::Fetch { cause }) => assert_eq!(
                cause,
                FetchCause::Webhook {
                    provider: provider.code()
                }
            ),
            other => panic!("{provider:?}: expected one fetch, got {other:?}"),
        }
        assert!(
            f.requests.try_recv().is_err(),
            "{provider:?}: more than one request"
        );

        let other = call(&f.app, hook_request(provider, push_body("feature"), true)).await;
        assert_eq!(other.status, StatusCode::ACCEPTED, "{provider:?}");
        assert!(other.json()["ignored"].is_string(), "{}", other.body);
        assert!(
            f.requests.try_recv().is_err(),
            "{provider:?}: another branch fetched"
        );

        let garbled = call(&f.app, hook_request(provider, b"{not json".to_vec(), true)).await;
        assert_eq!(garbled.status, StatusCode::BAD_REQUEST, "{provider:?}");
        assert!(f.requests.try_recv().is_err());
    }
}

#[tokio::test]
async fn forgejo_headers_and_a_full_ref_branch_work() {
    let mut f = fixture_with(
        ApiConfig {
            branch: "refs/heads/main".into(),
            ..config()
        },
        DaemonStatus::default(),
    );
    let body = push_body("main");
    let req = Request::post("/hooks/gitea")
        .header("x-forgejo-event", "push")
        .header("x-forgejo-signature", sign(SECRET.as_bytes(), &body))
        .body(Body::from(body))
        .unwrap();
    assert_eq!(call(&f.app, req).await.status, StatusCode::ACCEPTED);
    assert!(matches!(
        f.requests.try_recv(),
        Ok(ApiRequest::Fetch { .. })
    ));
}

#[tokio::test]
async fn pings_and_other_events_are_acknowledged_and_ignored() {
    let mut f = fixture();
    let body = b"{\"zen\": \"hi\"}".to_vec();
    for event in ["ping", "issues"] {
        let req = Request::post("/hooks/github")
            .header("x-github-event", event)
            .header(
                "x-hub-signature-256",
                format!("sha256={}", sign(SECRET.as_bytes(), &body)),
            )
            .body(Body::from(body.clone()))
            .unwrap();
        let a = call(&f.app, req).await;
        assert_eq!(a.status, StatusCode::ACCEPTED, "{event}");
        assert!(a.json()["ignored"].is_string());
    }
    let tag = Request::post("/hooks/gitlab")
        .header("x-gitlab-event", "Tag Push Hook")
        .header("x-gitlab-token", SECRET)
        .body(Body::from(push_body("main")))
        .unwrap();
    assert_eq!(call(&f.app, tag).await.status, StatusCode::ACCEPTED);
    assert!(f.requests.try_recv().is_err());
}

#[tokio::test]
async fn a_generic_hook_fetches_unless_it_names_another_branch() {
    let mut f = fixture();
    let cases: [(&[u8], StatusCode, bool); 5] = [
        (b"", StatusCode::ACCEPTED, true),
        (b"{}", StatusCode::ACCEPTED, true),
        (
            b"{\"ref\": \"refs/heads/main\"}",
            StatusCode::ACCEPTED,
            true,
        ),
        (
            b"{\"ref\": \"refs/heads/other\"}",
            StatusCode::ACCEPTED,
            false,
        ),
        (b"fetch please", StatusCode::BAD_REQUEST, false),
    ];
    for (body, status, fetches) in cases {
        let a = call(&f.app, hook_request(Provider::Generic, body.to_vec(), true)).await;
        assert_eq!(a.status, status, "{}", String::from_utf8_lossy(body));
        assert_eq!(
            f.requests.try_recv().is_ok(),
            fetches,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let unsigned = Request::post("/hooks/generic").body(Body::empty()).unwrap();
    assert_eq!(
        call(&f.app, unsigned).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(f.requests.try_recv().is_err());
}

#[tokio::test]
async fn bodies_over_a_mebibyte_are_refused_before_any_work() {
    let mut f = fixture();
    let big = vec![b' '; 2 * 1024 * 1024];
    // Declared too large, and streamed without a length: both 413, even though correctly
    // signed, and nothing reaches the daemon.
    let declared = hook_request(Provider::Generic, big.clone(), true);
    assert!(declared.headers().get("content-length").is_none());
    let mut declared = declared;
    declared
        .headers_mut()
        .insert("content-length", HeaderValue::from(big.len()));
    assert_eq!(
        call(&f.app, declared).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let chunks = futures_util::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let streamed = Request::post("/hooks/generic")
        .header(
            "x-convoy-signature",
            format!("sha256={}", sign(SECRET.as_bytes(), &big)),
        )
        .body(Body::from_stream(chunks))
        .unwrap();
    assert_eq!(
        call(&f.app, streamed).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert!(f.requests.try_recv().is_err());
}

#[tokio::test]
async fn without_a_secret_the_hooks_are_not_there() {
    let mut f = fixture_with(
        ApiConfig {
            webhook_secret: None,
            ..config()
        },
        DaemonStatus::default(),
    );
    for provider in Provider::ALL {
        let a = call(&f.app, hook_request(provider, push_body("main"), true)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{provider:?}");
    }
    assert!(f.requests.try_recv().is_err());
}

// ---------------------------------------------------------------------------------------------
// Metrics.
// ---------------------------------------------------------------------------------------------

/// Parses `text` with `prometheus_client`'s parser; every sample as (name, labels, value).
fn parse_with_prometheus_client(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    use std::io::Write;
    const SCRIPT: &str = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for fam in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "this test needs python3 with prometheus_client (Debian: python3-prometheus-client)",
        );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the output (or is missing: install \
         python3-prometheus-client / `pip install prometheus-client`):\n{}\n---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: Vec<(String, BTreeMap<String, String>, f64)> =
        serde_json::from_slice(&out.stdout).unwrap();
    raw
}

fn find(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[tokio::test]
async fn metrics_parse_with_the_prometheus_parser() {
    let f = fixture_with(config(), busy_status());
    call(
        &f.app,
        hook_request(Provider::GitHub, push_body("main"), true),
    )
    .await;
    call(
        &f.app,
        hook_request(Provider::GitLab, push_body("main"), false),
    )
    .await;
    let a = call(&f.app, get("/metrics")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let s = parse_with_prometheus_client(&a.body);
    let expect = |name: &str, labels: &[(&str, &str)], value: f64| {
        assert_eq!(
            find(&s, name, labels),
            Some(value),
            "{name} {labels:?} in\n{}",
            a.body
        );
    };
    expect("convoy_up", &[], 1.0);
    expect("convoy_ready", &[], 1.0);
    expect("convoy_passes_total", &[("result", "applied")], 5.0);
    expect("convoy_passes_total", &[("result", "rolled_back")], 0.0);
    expect("convoy_passes_total", &[("result", "held")], 0.0);
    expect(
        "convoy_pass_duration_seconds_bucket",
        &[("le", "0.25")],
        1.0,
    );
    expect("convoy_pass_duration_seconds_bucket", &[("le", "5")], 2.0);
    expect("convoy_pass_duration_seconds_bucket", &[("le", "300")], 2.0);
    expect(
        "convoy_pass_duration_seconds_bucket",
        &[("le", "+Inf")],
        3.0,
    );
    expect("convoy_pass_duration_seconds_count", &[], 3.0);
    expect("convoy_pass_duration_seconds_sum", &[], 1003.2);
    expect("convoy_pass_steps_total", &[("action", "create")], 4.0);
    // The escaped service name comes back as it was.
    expect(
        "convoy_replicas",
        &[
            ("stack", "web"),
            ("service", "a\"p\\p\nx"),
            ("state", "pending"),
        ],
        1.0,
    );
    expect("convoy_hosts", &[("state", "connected")], 1.0);
    expect("convoy_hosts", &[("state", "unreachable")], 1.0);
    expect("convoy_hosts", &[("state", "parked")], 0.0);
    expect(
        "convoy_applied_commit_timestamp_seconds",
        &[("commit", "0123456789abcdef0123456789abcdef01234567")],
        1_709_294_405.0,
    );
    expect("convoy_commit_errors_total", &[], 1.0);
    expect("convoy_git_fetch_errors_total", &[], 3.0);
    expect("convoy_heals_total", &[("reason", "missing")], 1.0);
    // Rollouts: the quarantined spec, how rollouts ended (zeros written for every service
    // known), and the batch of the one in flight (0 where none runs).
    expect(
        "convoy_quarantined_specs",
        &[("stack", "shop"), ("service", "api")],
        1.0,
    );
    assert_eq!(
        find(
            &s,
            "convoy_quarantined_specs",
            &[("stack", "shop"), ("service", "web")]
        ),
        None
    );
    expect(
        "convoy_rollouts_total",
        &[
            ("stack", "shop"),
            ("service", "api"),
            ("result", "rolled_back"),
        ],
        1.0,
    );
    expect(
        "convoy_rollouts_total",
        &[
            ("stack", "shop"),
            ("service", "api"),
            ("result", "completed"),
        ],
        2.0,
    );
    expect(
        "convoy_rollouts_total",
        &[
            ("stack", "web"),
            ("service", "a\"p\\p\nx"),
            ("result", "paused"),
        ],
        0.0,
    );
    expect(
        "convoy_rollouts_total",
        &[
            ("stack", "shop"),
            ("service", "web"),
            ("result", "interrupted"),
        ],
        0.0,
    );
    expect(
        "convoy_rollout_batch",
        &[("stack", "shop"), ("service", "web")],
        2.0,
    );
    expect(
        "convoy_rollout_batch",
        &[("stack", "shop"), ("service", "api")],
        0.0,
    );
    expect(
        "convoy_webhooks_total",
        &[("provider", "github"), ("result", "accepted")],
        1.0,
    );
    expect(
        "convoy_webhooks_total",
        &[("provider", "gitlab"), ("result", "unauthorized")],
        1.0,
    );
    expect(
        "convoy_webhooks_total",
        &[("provider", "gitea"), ("result", "too_large")],
        0.0,
    );
    for result in ["delivered", "retried", "failed", "dropped"] {
        expect("convoy_notifications_total", &[("result", result)], 0.0);
    }
    for name in [
        "convoy_passes_total",
        "convoy_quarantined_specs",
        "convoy_rollouts_total",
        "convoy_rollout_batch",
        "convoy_replicas",
        "convoy_hosts",
        "convoy_webhooks_total",
        "convoy_notifications_total",
    ] {
        assert!(a.body.contains(&format!("# HELP {name} ")), "{name}");
        assert!(a.body.contains(&format!("# TYPE {name} ")), "{name}");
    }

    // Nothing known yet: still parses, and no commit series.
    let empty = call(&fixture().app, get("/metrics")).await.body;
    let s = parse_with_prometheus_client(&empty);
    assert!(!s
        .iter()
        .any(|(n, _, _)| n.starts_with("convoy_applied_commit")));
    assert_eq!(find(&s, "convoy_ready", &[]), Some(0.0));
    assert!(!s
        .iter()
        .any(|(n, _, _)| n.starts_with("convoy_rollout") || n.starts_with("convoy_quarantined")));
}

#[tokio::test]
async fn metrics_can_require_the_token() {
    let f = fixture_with(
        ApiConfig {
            metrics_token: true,
            ..config()
        },
        DaemonStatus::default(),
    );
    assert_eq!(
        call(&f.app, get("/metrics")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&f.app, get_auth("/metrics", TOKEN)).await.status,
        StatusCode::OK
    );
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(metrics::escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
}

// ---------------------------------------------------------------------------------------------
// Configuration, files, formatting.
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc3339_is_utc_with_millis_when_there_are_any() {
    assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(-1.0), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_709_294_405.0), "2024-03-01T12:00:05Z");
    assert_eq!(rfc3339(1_709_294_405.5), "2024-03-01T12:00:05.500Z");
    assert_eq!(rfc3339(4_102_444_799.999), "2099-12-31T23:59:59.999Z");
    assert_eq!(rfc3339(253_402_300_799.0), "9999-12-31T23:59:59Z");
}

#[test]
fn a_public_address_needs_tls_or_an_explicit_risk() {
    let public: SocketAddr = "0.0.0.0:7878".parse().unwrap();
    let cfg = ApiConfig {
        listen: public,
        ..config()
    };
    let refused = cfg.check().unwrap_err();
    assert!(matches!(refused, ApiError::Insecure { .. }), "{refused}");
    assert!(refused.to_string().contains("--insecure-listen"));
    ApiConfig {
        insecure_listen: true,
        ..cfg.clone()
    }
    .check()
    .unwrap();
    ApiConfig {
        tls: Some(("c.pem".into(), "k.pem".into())),
        ..cfg.clone()
    }
    .check()
    .unwrap();
    config().check().unwrap();
    ApiConfig {
        listen: "[::1]:7878".parse().unwrap(),
        ..config()
    }
    .check()
    .unwrap();
    let no_token = ApiConfig {
        metrics_token: true,
        api_token: None,
        ..config()
    };
    assert!(matches!(
        no_token.check(),
        Err(ApiError::MetricsTokenWithoutToken)
    ));
    // Debug never shows the secrets.
    let shown = format!("{:?}", config());
    assert!(!shown.contains(TOKEN) && !shown.contains(SECRET), "{shown}");
}

#[test]
fn secret_files_are_trimmed_bounded_and_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "  s3cret value \n\n").unwrap();
    assert_eq!(read_secret_file(&path).unwrap(), "  s3cret value");
    std::fs::write(&path, " \n\t\n").unwrap();
    let empty = read_secret_file(&path).unwrap_err().to_string();
    assert!(
        empty.contains(&path.display().to_string()) && empty.contains("empty"),
        "{empty}"
    );
    std::fs::write(&path, "x".repeat(64 * 1024 + 1)).unwrap();
    let big = read_secret_file(&path).unwrap_err().to_string();
    assert!(big.contains("64 KiB") && !big.contains("xxx"), "{big}");
    let missing = read_secret_file(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
}

// ---------------------------------------------------------------------------------------------
// The real server on loopback.
// ---------------------------------------------------------------------------------------------

/// A server on 127.0.0.1:0, stopped (and awaited) on drop of the returned guard's token.
pub(crate) struct Running {
    pub addr: SocketAddr,
    pub cancel: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<Result<(), ApiError>>>,
    pub _status: watch::Sender<DaemonStatus>,
    pub requests: mpsc::UnboundedReceiver<ApiRequest>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub(crate) async fn start(cfg: ApiConfig, status: DaemonStatus) -> Running {
    let (h, status, requests) = handle(status);
    let listener = bind(&cfg).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(serve(listener, cfg, h, cancel.clone()));
    Running {
        addr,
        cancel,
        task: Some(task),
        _status: status,
        requests,
    }
}

fn curl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "%{http_code}", "-o", "-"])
        .args(args)
        .output()
        .expect("this test needs curl");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_loopback_and_stops_on_cancel() {
    let mut running = start(config(), DaemonStatus::default()).await;
    let url = format!("http://{}/healthz", running.addr);
    let (out, err) = tokio::task::spawn_blocking(move || curl(&[&url]))
        .await
        .unwrap();
    assert_eq!(out, "ok\n200", "{err}");
    let sync = format!("http://{}/api/v1/sync", running.addr);
    let auth = format!("authorization: Bearer {TOKEN}");
    let (out, err) = tokio::task::spawn_blocking(move || curl(&["-X", "POST", "-H", &auth, &sync]))
        .await
        .unwrap();
    assert_eq!(out, "{\"accepted\":true}\n202", "{err}");
    assert!(matches!(
        running.requests.try_recv(),
        Ok(ApiRequest::Sync { allow_prune: false })
    ));
    // The port is taken now: a second bind says so in a way the daemon can act on.
    let taken = bind(&ApiConfig {
        listen: running.addr,
        ..config()
    })
    .await
    .err()
    .unwrap();
    assert!(taken.is_addr_in_use(), "{taken}");
    running.cancel.cancel();
    let task = running.task.take().unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("serve ends on cancel")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(running.addr).await.is_err());
}

/// A self-signed certificate for 127.0.0.1 and localhost, made by openssl, in `dir`.
pub(crate) fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = std::process::Command::new("openssl")
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
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("this test needs openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let running = start(
        ApiConfig {
            tls: Some((cert.clone(), key)),
            ..config()
        },
        busy_status(),
    )
    .await;
    let url = format!("https://127.0.0.1:{}/api/v1/status", running.addr.port());
    let ca = cert.display().to_string();
    let auth = format!("authorization: Bearer {TOKEN}");
    let (out, err) =
        tokio::task::spawn_blocking(move || curl(&["--cacert", &ca, "-H", &auth, &url]))
            .await
            .unwrap();
    assert!(out.ends_with("200"), "{out} {err}");
    assert!(out.contains("\"applied_commit\""), "{out}");
    // Plain HTTP to the TLS port gets no answer.
    let url = format!("http://127.0.0.1:{}/healthz", running.addr.port());
    let (out, _) = tokio::task::spawn_blocking(move || curl(&[&url]))
        .await
        .unwrap();
    assert!(!out.contains("ok"), "{out}");

    let bad_key = dir.path().join("bad.pem");
    std::fs::write(&bad_key, "not a key").unwrap();
    let refused = bind(&ApiConfig {
        tls: Some((cert, bad_key)),
        ..config()
    })
    .await
    .err()
    .unwrap();
    assert!(refused.to_string().contains("bad.pem"), "{refused}");
}
