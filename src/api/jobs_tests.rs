//! `POST /api/v1/jobs/{name}/run` against a hand-made `DaemonHandle`: it wants the token, sends
//! one `RunJob` request with the name as given (a `stack/service` percent-encoded), and relays
//! the loop's answer (202 with the job, 404 for an unknown one). Loopback only.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use super::*;
use crate::daemon::DaemonStatus;

const TOKEN: &str = "jobs-t0ken";

fn app() -> (Router, mpsc::UnboundedReceiver<ApiRequest>) {
    let (_tx, rx) = watch::channel(DaemonStatus::default());
    let (req_tx, req_rx) = mpsc::unbounded_channel();
    let cfg = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        insecure_listen: false,
        api_token: Some(TOKEN.into()),
        webhook_secret: None,
        metrics_token: false,
        branch: "main".into(),
    };
    let handle = DaemonHandle {
        status: rx,
        requests: req_tx,
        history: None,
    };
    (router(Arc::new(Api::new(&cfg, handle))), req_rx)
}

async fn post(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::post(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let res = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn a_job_run_is_asked_of_the_loop_with_the_token() {
    let (app, mut requests) = app();
    let (status, _) = post(&app, "/api/v1/jobs/nightly/run", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(requests.try_recv().is_err());
    let loop_ = tokio::spawn(async move {
        let mut names = Vec::new();
        for answer in [Ok("s/nightly".to_string()), Err("no job `x`".to_string())] {
            match requests.recv().await {
                Some(ApiRequest::RunJob { name, reply }) => {
                    names.push(name);
                    reply.send(answer).unwrap();
                }
                other => panic!("expected a job run, got {other:?}"),
            }
        }
        names
    });
    let (status, body) = post(&app, "/api/v1/jobs/s%2Fnightly/run", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["job"], "s/nightly");
    let (status, body) = post(&app, "/api/v1/jobs/x/run", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no job `x`"), "{body}");
    assert_eq!(loop_.await.unwrap(), vec!["s/nightly", "x"]);
}
