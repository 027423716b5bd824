//! The daemon's HTTP API: health and readiness, the status document, sync and diff requests,
//! Prometheus metrics and verified webhooks, over HTTP or HTTPS (rustls).
//!
//! It only reads `DaemonStatus` from the daemon's `watch` channel and sends `ApiRequest`s into
//! its loop: it never runs a pass, touches the fleet or reads the repository itself, so it must
//! not import `reconcile`, `core`, `exec` or `infra`. Secrets (the API token, the webhook
//! secret) are held as digests or bytes, compared in constant time, and never logged, echoed or
//! put in an error. Every body it reads is bounded, and so is the number of connections.

mod dashboard;
mod history;
mod hooks;
mod metrics;
mod status;
mod tls;
mod windows;

#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::daemon::{ApiRequest, DaemonHandle};

pub use hooks::Provider;
pub use status::{
    rfc3339, CommitErrorDoc, HostDoc, LastPassDoc, PendingDoc, ServiceDoc, StatusDoc, SyncWindowDoc,
};

/// Largest secret or token file read.
const SECRET_FILE_MAX: u64 = 64 * 1024;
/// Largest request body read (webhooks); bigger ones get 413 before any work.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// How long `GET /api/v1/diff` waits for the loop's answer.
const DIFF_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; the next waits in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client gets this long to send its headers (and to finish a TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How the API is served. `Debug` never shows the token or the secret.
#[derive(Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// Certificate chain and private key (PEM files): serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve a non-loopback `listen` without TLS.
    pub insecure_listen: bool,
    /// The bearer token of `/api/v1/*`; without it those routes answer 404.
    pub api_token: Option<String>,
    /// The webhooks' shared secret; without it `/hooks/*` answer 404.
    pub webhook_secret: Option<String>,
    /// Require the API token on `/metrics` too.
    pub metrics_token: bool,
    /// The branch the daemon follows (`main`, or `refs/heads/main`): pushes to others are
    /// ignored.
    pub branch: String,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<set>" } else { "<none>" };
        f.debug_struct("ApiConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("insecure_listen", &self.insecure_listen)
            .field("api_token", &set(&self.api_token))
            .field("webhook_secret", &set(&self.webhook_secret))
            .field("metrics_token", &self.metrics_token)
            .field("branch", &self.branch)
            .finish()
    }
}

impl ApiConfig {
    /// Refuses what would expose the API carelessly: a non-loopback address without TLS
    /// (unless `insecure_listen`, which is logged as a warning once, here), and
    /// `metrics_token` without a token to require.
    pub fn check(&self) -> Result<(), ApiError> {
        if self.metrics_token && self.api_token.is_none() {
            return Err(ApiError::MetricsTokenWithoutToken);
        }
        if !self.listen.ip().is_loopback() && self.tls.is_none() {
            if !self.insecure_listen {
                return Err(ApiError::Insecure { addr: self.listen });
            }
            tracing::warn!(
                listen = %self.listen,
                "serving the API on a non-loopback address without TLS (--insecure-listen): \
                 tokens and webhook payloads cross the network in the clear"
            );
        }
        Ok(())
    }

    /// `refs/heads/<branch>`, whichever form `branch` was given in; empty when the branch is
    /// not known yet (a remote's default branch, before its first fetch).
    fn branch_ref(&self) -> String {
        branch_ref(&self.branch)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "refusing to serve the API on {addr} without TLS: give --tls-cert and --tls-key, listen \
         on a loopback address, or accept the risk with --insecure-listen"
    )]
    Insecure { addr: SocketAddr },
    #[error("--metrics-token needs an API token (--api-token-file) to require")]
    MetricsTokenWithoutToken,
    #[error("cannot read `{}`: {source}", path.display())]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is empty", path.display())]
    SecretEmpty { path: PathBuf },
    #[error("`{}` is larger than 64 KiB; it should hold one token", path.display())]
    SecretTooLarge { path: PathBuf },
    #[error("`{}` is not UTF-8 text", path.display())]
    SecretNotText { path: PathBuf },
    #[error("TLS: {0}")]
    Tls(String),
}

impl ApiError {
    /// The address is taken by another process: the daemon exits 2 at once.
    pub fn is_addr_in_use(&self) -> bool {
        matches!(self, ApiError::Bind { source, .. }
            if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// A secret or token file's content, trailing whitespace (a final newline) trimmed. The
/// content never appears in an error.
pub fn read_secret_file(path: &Path) -> Result<String, ApiError> {
    use std::io::Read;
    let io = |source| ApiError::SecretFile {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(SECRET_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > SECRET_FILE_MAX {
        return Err(ApiError::SecretTooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| ApiError::SecretNotText {
        path: path.to_path_buf(),
    })?;
    let trimmed = text.trim_end();
    if trimmed.is_empty() {
        return Err(ApiError::SecretEmpty {
            path: path.to_path_buf(),
        });
    }
    Ok(trimmed.to_string())
}

/// A bound socket, with its TLS acceptor when the API is HTTPS.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Listener {
    /// The address actually bound (a port chosen by the system for `:0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Checks `cfg`, loads the TLS certificate and key, and binds: everything that can refuse to
/// start does so here, before the daemon does anything else.
pub async fn bind(cfg: &ApiConfig) -> Result<Listener, ApiError> {
    cfg.check()?;
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let tcp = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ApiError::Bind {
            addr: cfg.listen,
            source,
        })?;
    Ok(Listener { tcp, tls })
}

/// Serves the API on `listener` until `cancel`, then lets requests in flight finish (at most
/// a few seconds). Errors of single connections are logged at debug level and end only them.
pub async fn serve(
    listener: Listener,
    cfg: ApiConfig,
    handle: DaemonHandle,
    cancel: CancellationToken,
) -> Result<(), ApiError> {
    let addr = listener.local_addr().ok();
    if cfg.api_token.is_none() {
        tracing::info!(
            "no API token: /api/v1/* answer 404; health, readiness and metrics are served"
        );
    }
    if cfg.webhook_secret.is_none() {
        tracing::info!("no webhook secret: /hooks/* answer 404");
    }
    tracing::debug!(listen = ?addr, tls = listener.is_tls(), "API serving");
    let app = router(Arc::new(Api::new(&cfg, handle)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: do not spin on it.
                    tracing::warn!(error = %e, "API: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        let tls = listener.tls.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(64 * 1024);
            let result = match tls {
                None => {
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream));
                    let stream = tokio::select! {
                        _ = cancel.cancelled() => return,
                        s = handshake => match s {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "API: TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        },
                    };
                    let conn = http.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "API: connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("API: requests still in flight at shutdown were dropped");
    }
    Ok(())
}

fn branch_ref(branch: &str) -> String {
    if branch.is_empty() {
        String::new()
    } else if branch.starts_with("refs/") {
        branch.to_string()
    } else {
        format!("refs/heads/{branch}")
    }
}

/// What every handler shares.
struct Api {
    handle: DaemonHandle,
    /// SHA-256 of the token: compared digest to digest, so neither content nor length leaks
    /// through timing.
    token: Option<[u8; 32]>,
    webhook_secret: Option<Vec<u8>>,
    metrics_token: bool,
    branch_ref: String,
    hooks: metrics::HookCounts,
    /// The web dashboard's sessions.
    dashboard: dashboard::Dashboard,
}

impl Api {
    /// The followed branch's ref: as configured, else as the daemon learnt it (empty while
    /// unknown: then any push fetches, which is better than ignoring the one that matters).
    fn followed_ref(&self) -> String {
        if !self.branch_ref.is_empty() {
            return self.branch_ref.clone();
        }
        let learnt = self.handle.status.borrow().branch.clone();
        learnt.map(|b| branch_ref(&b)).unwrap_or_default()
    }
}

impl Api {
    fn new(cfg: &ApiConfig, handle: DaemonHandle) -> Api {
        Api {
            handle,
            token: cfg.api_token.as_deref().map(digest),
            webhook_secret: cfg.webhook_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            metrics_token: cfg.metrics_token,
            branch_ref: cfg.branch_ref(),
            hooks: metrics::HookCounts::default(),
            dashboard: dashboard::Dashboard::new(cfg),
        }
    }

    /// Checks the bearer token: without a configured token the route is not there (404), a
    /// missing or wrong one is refused (401).
    fn authorize(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(expected) = &self.token else {
            return Err(Refusal::NoApi);
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(digest);
        match given {
            Some(g) if bool::from(g.ct_eq(expected)) => Ok(()),
            _ => Err(Refusal::Unauthorized),
        }
    }
}

/// Why `authorize` said no.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    NoApi,
    Unauthorized,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NoApi => StatusCode::NOT_FOUND.into_response(),
            Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"convoy\"")],
                "unauthorized\n",
            )
                .into_response(),
        }
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_route))
        .route("/api/v1/status", get(status_route))
        .route("/api/v1/sync", post(sync_route))
        .route("/api/v1/diff", get(diff_route))
        .route("/api/v1/history", get(history::route))
        .route("/api/v1/jobs/{name}/run", post(jobs_run_route))
        .route("/hooks/github", post(github))
        .route("/hooks/gitea", post(gitea))
        .route("/hooks/gitlab", post(gitlab))
        .route("/hooks/generic", post(generic))
        .merge(dashboard::routes())
        .with_state(api)
}

async fn github(State(api): State<Arc<Api>>, req: Request) -> Response {
    hooks::handle(&api, Provider::GitHub, req).await
}

async fn gitea(State(api): State<Arc<Api>>, req: Request) -> Response {
    hooks::handle(&api, Provider::Gitea, req).await
}

async fn gitlab(State(api): State<Arc<Api>>, req: Request) -> Response {
    hooks::handle(&api, Provider::GitLab, req).await
}

async fn generic(State(api): State<Arc<Api>>, req: Request) -> Response {
    hooks::handle(&api, Provider::Generic, req).await
}

async fn readyz(State(api): State<Arc<Api>>) -> Response {
    if api.handle.status.borrow().ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics_route(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if api.metrics_token {
        if let Err(refused) = api.authorize(&headers) {
            return refused.into_response();
        }
    }
    // Copied out at once: a reader never holds the loop's channel while formatting.
    let status = api.handle.status.borrow().clone();
    let text = metrics::render(&status, &api.hooks);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn status_route(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Err(refused) = api.authorize(&headers) {
        return refused.into_response();
    }
    let doc = StatusDoc::from_status(&api.handle.status.borrow());
    json(StatusCode::OK, &doc)
}

async fn sync_route(State(api): State<Arc<Api>>, req: Request) -> Response {
    if let Err(refused) = api.authorize(req.headers()) {
        return refused.into_response();
    }
    let allow_prune = match query_flag(req.uri().query(), "allow_prune") {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    let force = match query_flag(req.uri().query(), "force") {
        Ok(v) => v,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    if force {
        let refused = windows::force_refusal(&api.handle.status.borrow());
        if let Some(msg) = refused {
            tracing::warn!("API: {msg}");
            return error(StatusCode::CONFLICT, &msg);
        }
        if api.handle.requests.send(ApiRequest::ForceWindows).is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
        }
    }
    if api
        .handle
        .requests
        .send(ApiRequest::Sync { allow_prune })
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    tracing::info!(allow_prune, force, "API: sync requested");
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "accepted": true }),
    )
}

async fn diff_route(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if let Err(refused) = api.authorize(&headers) {
        return refused.into_response();
    }
    let (reply, answer) = oneshot::channel::<Result<String, String>>();
    if api
        .handle
        .requests
        .send(ApiRequest::Diff { reply })
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match tokio::time::timeout(DIFF_TIMEOUT, answer).await {
        Ok(Ok(Ok(doc))) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            doc,
        )
            .into_response(),
        Ok(Ok(Err(msg))) => error(StatusCode::INTERNAL_SERVER_ERROR, &msg),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon dropped the request (stopping?)",
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the daemon did not plan within 60 s",
        ),
    }
}

/// `POST /api/v1/jobs/{name}/run`: one run of a job now (`name` is `service` or
/// `stack/service`, the slash percent-encoded). 202 with the job's full name, 404 for an
/// unknown job.
async fn jobs_run_route(
    State(api): State<Arc<Api>>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = api.authorize(&headers) {
        return refused.into_response();
    }
    let (reply, answer) = oneshot::channel::<Result<String, String>>();
    if api
        .handle
        .requests
        .send(ApiRequest::RunJob {
            name: name.clone(),
            reply,
        })
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match tokio::time::timeout(DIFF_TIMEOUT, answer).await {
        Ok(Ok(Ok(job))) => {
            tracing::info!(job = %job, "API: job run requested");
            json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "accepted": true, "job": job }),
            )
        }
        Ok(Ok(Err(msg))) => error(StatusCode::NOT_FOUND, &msg),
        Ok(Err(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon dropped the request (stopping?)",
        ),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the daemon did not answer within 60 s",
        ),
    }
}

/// `name`, `name=true|1|yes` → true; absent, `name=false|0|no` → false; else an error.
fn query_flag(query: Option<&str>, name: &str) -> Result<bool, String> {
    let mut value = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
        if k != name {
            continue;
        }
        value = match v {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(format!("`{name}` takes true or false")),
        };
    }
    Ok(value)
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(body),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "API: cannot serialise an answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, &serde_json::json!({ "error": message }))
}
