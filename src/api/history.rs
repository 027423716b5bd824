//! `GET /api/v1/history?limit=N&stack=S`: the daemon's deploy history, newest first, as the
//! versioned document `convoy history --output json` prints (`{"version": 1, "entries": [...]}`).
//!
//! It reads through the `HistoryReader` the daemon hands over (a blocking read on its own
//! thread) and never touches the store itself; the bearer token is required as on every
//! `/api/v1/*` route. Query values are checked, and what one answer holds is bounded.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{error, json, Api};
use crate::model::history::HistoryDoc;

/// Entries when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The most entries one answer holds.
const MAX_LIMIT: usize = 10_000;

pub(super) async fn route(State(api): State<Arc<Api>>, req: Request) -> Response {
    if let Err(refused) = api.authorize(req.headers()) {
        return refused.into_response();
    }
    let (limit, stack) = match parse_query(req.uri().query()) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let Some(reader) = &api.handle.history else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this daemon keeps no history (its state directory could not hold one: see its log)",
        );
    };
    match reader.entries(limit, stack).await {
        Ok(entries) => json(StatusCode::OK, &HistoryDoc::new(entries)),
        Err(msg) => {
            tracing::warn!(error = %msg, "API: cannot read the history");
            error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the history")
        }
    }
}

/// `limit` (1 to `MAX_LIMIT`) and `stack` (a plain name) from the query string.
fn parse_query(query: Option<&str>) -> Result<(usize, Option<String>), String> {
    let (mut limit, mut stack) = (DEFAULT_LIMIT, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| format!("`limit` takes a number from 1 to {MAX_LIMIT}"))?;
            }
            "stack" => {
                let plain = !v.is_empty()
                    && v.len() <= 255
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
                if !plain {
                    return Err("`stack` takes a stack name".into());
                }
                stack = Some(v.to_string());
            }
            _ => {}
        }
    }
    Ok((limit, stack))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tokio::sync::{mpsc, watch};
    use tower::ServiceExt;

    use super::super::{router, ApiConfig};
    use super::*;
    use crate::daemon::{DaemonHandle, DaemonStatus, HistoryReader};
    use crate::model::history::{entry_from_hold, Hold};
    use crate::model::outcome::{HoldReason, PassReason, PassResult};

    const TOKEN: &str = "history-t0ken";

    fn entry(fleet: &str, commit: &str) -> crate::model::history::HistoryEntry {
        let mut e = entry_from_hold(Hold {
            fleet,
            commit,
            reason: HoldReason::DeletionGuard,
            trigger: PassReason::NewCommit {
                commit: commit.into(),
            },
            message: "it removes stack `web`",
            errors: Vec::new(),
            at: 1_700_000_000.0,
        });
        e.changes.push(crate::model::history::ServiceChanges {
            stack: "web".into(),
            service: "app".into(),
            created: 1,
            ..Default::default()
        });
        e
    }

    fn app(history: Option<HistoryReader>) -> axum::Router {
        let (_status_tx, status) = watch::channel(DaemonStatus::default());
        let (requests, _rx) = mpsc::unbounded_channel();
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
            status,
            requests,
            history,
        };
        router(Arc::new(Api::new(&cfg, handle)))
    }

    async fn get(app: &axum::Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(path);
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
    async fn history_wants_the_token_and_serves_the_versioned_document() {
        let dir = tempfile::tempdir().unwrap();
        let reader = HistoryReader::for_tests(
            dir.path(),
            Some("prod"),
            &[
                entry("prod", "c1"),
                entry("other", "x"),
                entry("prod", "c2"),
            ],
        );
        let app = app(Some(reader));
        for token in [None, Some("wrong")] {
            let (status, body) = get(&app, "/api/v1/history", token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert!(!body.contains("c1"));
        }
        let (status, body) = get(&app, "/api/v1/history", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["version"], 1);
        let entries = doc["entries"].as_array().unwrap();
        // Newest first, and only the daemon's fleet.
        let commits: Vec<&str> = entries
            .iter()
            .map(|e| e["commit"].as_str().unwrap())
            .collect();
        assert_eq!(commits, ["c2", "c1"]);
        assert_eq!(entries[0]["result"], "held");
        assert_eq!(entries[0]["reason"], "deletion_guard");
        assert_eq!(entries[0]["trigger"]["kind"], "new_commit");
        assert_eq!(entries[0]["started_at"], "2023-11-14T22:13:20Z");
        assert_eq!(entries[0]["changes"][0]["stack"], "web");
        let back: crate::model::history::HistoryDoc = serde_json::from_str(&body).unwrap();
        assert_eq!(
            back.entries[1].result,
            PassResult::Held {
                reason: HoldReason::DeletionGuard
            }
        );

        let (_, body) = get(&app, "/api/v1/history?limit=1", Some(TOKEN)).await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["entries"].as_array().unwrap().len(), 1);
        let (_, body) = get(&app, "/api/v1/history?stack=db", Some(TOKEN)).await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(doc["entries"].as_array().unwrap().is_empty());
        let (status, _) = get(&app, "/api/v1/history?limit=0", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_daemon_without_history_says_so() {
        let app = app(None);
        let (status, body) = get(&app, "/api/v1/history", Some(TOKEN)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("no history"), "{body}");
    }

    #[test]
    fn query_values_are_checked() {
        assert_eq!(parse_query(None).unwrap(), (DEFAULT_LIMIT, None));
        assert_eq!(
            parse_query(Some("limit=5&stack=web")).unwrap(),
            (5, Some("web".to_string()))
        );
        assert!(parse_query(Some("limit=0")).is_err());
        assert!(parse_query(Some("limit=lots")).is_err());
        assert!(parse_query(Some("limit=10001")).is_err());
        assert!(parse_query(Some("stack=")).is_err());
        assert!(parse_query(Some("stack=a%2Fb")).is_err());
    }
}
