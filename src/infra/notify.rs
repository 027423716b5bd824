//! Delivery of notifications and commit statuses over HTTP (reqwest with rustls): the endpoints
//! resolved from their specs (files read on this machine), one bounded queue and one delivery
//! task per endpoint, retries with exponential backoff and jitter, counts for the metrics.
//!
//! It never blocks, slows or fails its caller: `Notifier::notify` renders the bodies and pushes
//! them onto the queues (a lock held for a push, no await); a full queue drops its oldest entry
//! and counts it. A failing endpoint is warned about at most once per `WARN_INTERVAL`. Nothing
//! of a URL, a token or a secret is logged: endpoints are named `notifications[i] (kind)`, and
//! reqwest's errors lose their URL before they are shown. It decides nothing about what to say
//! (`model::notify` does).

use std::collections::{BTreeSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::model::notify::{commit_status, Event, Notification, NotificationSpec, NotifyKind};
use crate::render::notify as body;

/// Entries an endpoint's queue holds before the oldest is dropped.
pub const QUEUE_CAP: usize = 256;
/// Attempts per message (the first and its retries).
pub const ATTEMPTS: u32 = 6;
/// The first retry's delay; each next one doubles, up to `MAX_BACKOFF`, then ±50 % jitter.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// One request's bound, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one warning per endpoint in this time.
pub const WARN_INTERVAL: Duration = Duration::from_secs(300);
/// The largest URL, token or secret file read.
const MAX_FILE: u64 = 64 * 1024;

/// The `result` label of `convoy_notifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendResult {
    /// The endpoint answered 2xx.
    Delivered = 0,
    /// An attempt failed and another follows.
    Retried = 1,
    /// Given up: attempts exhausted, or refused for good (a 4xx).
    Failed = 2,
    /// Dropped from a full queue, or left queued at exit.
    Dropped = 3,
}

impl SendResult {
    pub const ALL: [SendResult; 4] = [
        SendResult::Delivered,
        SendResult::Retried,
        SendResult::Failed,
        SendResult::Dropped,
    ];

    pub fn code(self) -> &'static str {
        match self {
            SendResult::Delivered => "delivered",
            SendResult::Retried => "retried",
            SendResult::Failed => "failed",
            SendResult::Dropped => "dropped",
        }
    }
}

/// Counts by `SendResult`, shared by the delivery tasks and the metrics' reader.
#[derive(Debug, Clone, Default)]
pub struct NotifyCounts(Arc<[AtomicU64; 4]>);

impl NotifyCounts {
    fn add(&self, r: SendResult) {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, r: SendResult) -> u64 {
        self.0[r as usize].load(Ordering::Relaxed)
    }

    /// Every result's code and count, in a fixed order (zeros included).
    pub fn by_result(&self) -> [(&'static str, u64); 4] {
        SendResult::ALL.map(|r| (r.code(), self.get(r)))
    }
}

/// An endpoint ready to be sent to: its files read.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `notifications[0] (slack)`: how logs name it (never its URL).
    pub name: String,
    pub spec: NotificationSpec,
    url: String,
    secret: Option<Vec<u8>>,
    token: Option<String>,
    /// Where the token was read from: read again for every commit status, so that a token a
    /// sidecar or a secret manager rotates (short-lived forge tokens) is used without a
    /// configuration change. `token` is the fallback while the file cannot be read.
    token_path: Option<PathBuf>,
    /// The forges: the API base and the repository path.
    api: Option<(String, String)>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Endpoint {
    /// The values that must never be shown: the URL of a chat endpoint, the token, the secret.
    /// The token to send now: the file's current text, or the one read at configuration when
    /// it cannot be read at this moment (a rotation half done). A token only ever goes into an
    /// `Authorization` header: no message, log line or error holds one (`send` builds its
    /// errors without the request), so a rotated value needs no new mask.
    fn current_token(&self) -> Option<String> {
        self.token_path
            .as_deref()
            .and_then(|p| read_small(p).ok())
            .or_else(|| self.token.clone())
    }

    pub fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.spec.kind.url_is_secret() {
            out.push(self.url.clone());
        }
        out.extend(self.token.clone());
        out.extend(
            self.secret
                .as_ref()
                .map(|s| String::from_utf8_lossy(s).into_owned()),
        );
        out
    }
}

/// Reads an endpoint's files: `base` is where relative paths start (the repository on this
/// machine, or the config file's folder); without one a relative path is an error. The error
/// names the endpoint and the path, never a value.
pub fn resolve(
    spec: &NotificationSpec,
    name: String,
    base: Option<&Path>,
) -> Result<Endpoint, String> {
    let full_path = |what: &str, p: &str| -> Result<PathBuf, String> {
        let path = Path::new(p);
        let full: PathBuf = if path.is_absolute() {
            path.to_path_buf()
        } else {
            match base {
                Some(b) => b.join(path),
                None => {
                    return Err(format!(
                        "{name}: `{what}` is relative but the repository is not on this machine: write an absolute path"
                    ))
                }
            }
        };
        Ok(full)
    };
    let read = |what: &str, p: &str| -> Result<String, String> {
        let full = full_path(what, p)?;
        read_small(&full)
            .map_err(|e| format!("{name}: cannot read `{what}` {}: {e}", full.display()))
    };
    let url = match (&spec.url, &spec.url_file) {
        (Some(u), _) => u.0.clone(),
        (None, Some(f)) => {
            let u = read("url_file", f)?;
            if !(u.starts_with("https://") || u.starts_with("http://"))
                || u.chars().any(char::is_whitespace)
            {
                return Err(format!(
                    "{name}: `url_file` does not hold an http(s) address"
                ));
            }
            u
        }
        (None, None) => return Err(format!("{name}: no url")),
    };
    let secret = match &spec.secret_file {
        Some(f) => Some(read("secret_file", f)?.into_bytes()),
        None => None,
    };
    let (token, token_path) = match &spec.token_file {
        Some(f) => (
            Some(read("token_file", f)?),
            Some(full_path("token_file", f)?),
        ),
        None => (None, None),
    };
    let api = if spec.kind.is_forge() {
        let repo = crate::model::notify::repo_path(&url)
            .ok_or_else(|| format!("{name}: the url is not a repository's address"))?;
        let api = spec
            .api_url
            .clone()
            .unwrap_or_else(|| default_api(spec.kind, &url));
        Some((api.trim_end_matches('/').to_string(), repo))
    } else {
        None
    };
    Ok(Endpoint {
        name,
        spec: spec.clone(),
        url,
        secret,
        token,
        token_path,
        api,
    })
}

/// A forge's API base from its repository's address: `api.github.com` for github.com, the
/// server's `/api/v3` (GitHub Enterprise), `/api/v1` (Gitea) or `/api/v4` (GitLab) otherwise.
fn default_api(kind: NotifyKind, url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split('/').next().unwrap_or_default();
    match kind {
        NotifyKind::GitHub if host == "github.com" => "https://api.github.com".into(),
        NotifyKind::GitHub => format!("{scheme}://{host}/api/v3"),
        NotifyKind::Gitea => format!("{scheme}://{host}/api/v1"),
        _ => format!("{scheme}://{host}/api/v4"),
    }
}

/// A small file's text, trimmed (a trailing newline is not part of a token).
fn read_small(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("larger than {} KiB", MAX_FILE / 1024));
    }
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err("empty".into());
    }
    Ok(text)
}

/// One request to make.
#[derive(Clone)]
struct Outgoing {
    url: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// `applied abc123` for logs.
    what: String,
}

/// The request an endpoint makes for `n`, if it wants it.
fn request(e: &Endpoint, n: &Notification) -> Option<Outgoing> {
    if !e.spec.wants(n.event.kind()) {
        return None;
    }
    let what = format!(
        "{}{}",
        n.event.kind().code(),
        n.event
            .commit()
            .map(|c| format!(" {}", &c[..c.len().min(12)]))
            .unwrap_or_default()
    );
    let json = ("content-type", "application/json".to_string());
    let out = match e.spec.kind {
        NotifyKind::Slack => Outgoing {
            url: e.url.clone(),
            headers: vec![json],
            body: body::slack_body(n),
            what,
        },
        NotifyKind::Discord => Outgoing {
            url: e.url.clone(),
            headers: vec![json],
            body: body::discord_body(n),
            what,
        },
        NotifyKind::Generic => {
            let b = body::generic_body(n);
            let mut headers = vec![json];
            if let Some(secret) = &e.secret {
                headers.push((
                    "x-convoy-signature",
                    crate::model::signature::header_value(secret, b.as_bytes()),
                ));
            }
            Outgoing {
                url: e.url.clone(),
                headers,
                body: b,
                what,
            }
        }
        NotifyKind::GitHub | NotifyKind::Gitea | NotifyKind::GitLab => {
            let status = commit_status(&n.fleet, &n.event)?;
            let (api, repo) = e.api.as_ref()?;
            let token = e.current_token().unwrap_or_default();
            let (url, auth, b) = match e.spec.kind {
                NotifyKind::GitLab => (
                    format!(
                        "{api}/projects/{}/statuses/{}",
                        repo.replace('/', "%2F"),
                        status.commit
                    ),
                    format!("Bearer {token}"),
                    body::gitlab_status_body(&status),
                ),
                NotifyKind::Gitea => (
                    format!("{api}/repos/{repo}/statuses/{}", status.commit),
                    format!("token {token}"),
                    body::github_status_body(&status),
                ),
                _ => (
                    format!("{api}/repos/{repo}/statuses/{}", status.commit),
                    format!("Bearer {token}"),
                    body::github_status_body(&status),
                ),
            };
            let mut headers = vec![json, ("authorization", auth)];
            if e.spec.kind == NotifyKind::GitHub {
                headers.push(("accept", "application/vnd.github+json".into()));
            }
            Outgoing {
                url,
                headers,
                body: b,
                what: format!("{what} status {}", status.state.github()),
            }
        }
    };
    Some(out)
}

/// One endpoint's queue and its delivery task.
struct Queue {
    endpoint: Endpoint,
    items: Mutex<VecDeque<Outgoing>>,
    /// Shared with the task, which waits on it without keeping the queue alive.
    wake: Arc<Notify>,
    /// 1 while a message is being sent (popped, not yet done).
    busy: AtomicUsize,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(t) = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }
}

struct Inner {
    client: reqwest::Client,
    queues: Mutex<Vec<Arc<Queue>>>,
    counts: NotifyCounts,
    /// Messages queued or in flight, and a wake-up when that reaches zero (`flush`).
    pending: AtomicUsize,
    idle: Notify,
    /// The fleet messages name, and the values masked out of every event.
    fleet: Mutex<String>,
    hidden: Mutex<Arc<BTreeSet<String>>>,
}

/// The delivery of notifications: cheap to clone, shared by the daemon and whoever else tells
/// (the job runner). Its tasks end when the last clone is dropped.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl Notifier {
    /// A notifier with no endpoints yet. Needs a tokio runtime (for `configure`'s tasks).
    pub fn new(counts: NotifyCounts) -> Notifier {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // A redirect would send a signed body or a token somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("convoy/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Notifier {
            inner: Arc::new(Inner {
                client,
                queues: Mutex::new(Vec::new()),
                counts,
                pending: AtomicUsize::new(0),
                idle: Notify::new(),
                fleet: Mutex::new(String::new()),
                hidden: Mutex::new(Arc::new(BTreeSet::new())),
            }),
        }
    }

    pub fn counts(&self) -> NotifyCounts {
        self.inner.counts.clone()
    }

    /// Whether any endpoint is configured.
    pub fn is_empty(&self) -> bool {
        lock(&self.inner.queues).is_empty()
    }

    /// The fleet messages name and the values (secrets, environment values) masked out of
    /// every event from now on.
    pub fn set_context(&self, fleet: &str, hidden: BTreeSet<String>) {
        *lock(&self.inner.fleet) = fleet.to_string();
        *lock(&self.inner.hidden) = Arc::new(hidden);
    }

    /// Sends to `endpoints` from now on. An endpoint configured before keeps its queue and
    /// task; one no longer listed stops (what it had queued is dropped and counted).
    pub fn configure(&self, endpoints: Vec<Endpoint>) {
        let mut queues = lock(&self.inner.queues);
        let mut next = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            match queues.iter().position(|q| q.endpoint == e) {
                Some(i) => next.push(queues.remove(i)),
                None => {
                    let q = Arc::new(Queue {
                        endpoint: e,
                        items: Mutex::new(VecDeque::new()),
                        wake: Arc::new(Notify::new()),
                        busy: AtomicUsize::new(0),
                        task: Mutex::new(None),
                    });
                    let task = tokio::spawn(deliver(Arc::downgrade(&q), self.inner.clone()));
                    *lock(&q.task) = Some(task);
                    next.push(q);
                }
            }
        }
        for gone in queues.drain(..) {
            // Its task is aborted with it: what it had, in flight included, is not sent.
            let left = lock(&gone.items).len() + gone.busy.swap(0, Ordering::SeqCst);
            self.forget(left);
        }
        *queues = next;
    }

    /// Queues `event` for every endpoint that wants it, at `at` (Unix seconds; now when `None`).
    /// Never waits.
    pub fn notify(&self, mut event: Event) {
        let hidden = lock(&self.inner.hidden).clone();
        event.mask(&hidden);
        let n = Notification {
            fleet: lock(&self.inner.fleet).clone(),
            at: unix_now(),
            event,
        };
        let queues = lock(&self.inner.queues).clone();
        for q in queues {
            let Some(out) = request(&q.endpoint, &n) else {
                continue;
            };
            let dropped = {
                let mut items = lock(&q.items);
                let dropped = if items.len() >= QUEUE_CAP {
                    items.pop_front()
                } else {
                    None
                };
                items.push_back(out);
                dropped
            };
            self.inner.pending.fetch_add(1, Ordering::SeqCst);
            if let Some(d) = dropped {
                tracing::debug!(endpoint = %q.endpoint.name, message = %d.what, "notification queue full: the oldest is dropped");
                self.forget(1);
            }
            q.wake.notify_one();
        }
    }

    /// Waits until every queued message is delivered or given up, or until `within` has
    /// passed; returns how many were still waiting then (counted as dropped).
    pub async fn flush(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let idle = self.inner.idle.notified();
            let left = self.inner.pending.load(Ordering::SeqCst);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                let left = self.inner.pending.load(Ordering::SeqCst);
                for _ in 0..left {
                    self.inner.counts.add(SendResult::Dropped);
                }
                return left;
            }
        }
    }

    /// `n` messages will not be sent: counted as dropped.
    fn forget(&self, n: usize) {
        for _ in 0..n {
            self.inner.counts.add(SendResult::Dropped);
        }
        done(&self.inner, n);
    }
}

fn done(inner: &Inner, n: usize) {
    if n == 0 {
        return;
    }
    // Saturating: a removed endpoint's message may be forgotten and finish at once.
    let before = inner
        .pending
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
            Some(p.saturating_sub(n))
        })
        .unwrap_or_default();
    if before <= n {
        inner.idle.notify_waiters();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Why an attempt failed, without the URL; whether trying again can help.
struct SendError {
    message: String,
    retry: bool,
}

/// One endpoint's delivery task: its queue in order, each message retried until it is
/// delivered or given up. Ends when the queue is dropped.
async fn deliver(queue: std::sync::Weak<Queue>, inner: Arc<Inner>) {
    let mut rng = (unix_now() as u64) ^ (Arc::as_ptr(&inner) as u64) | 1;
    let mut last_warn: Option<Instant> = None;
    let mut unsaid = 0u32;
    loop {
        let Some(q) = queue.upgrade() else { return };
        let next = lock(&q.items).pop_front();
        let Some(out) = next else {
            // A push between the pop and this wait leaves a permit: it is not missed.
            let wake = q.wake.clone();
            drop(q);
            wake.notified().await;
            continue;
        };
        let name = q.endpoint.name.clone();
        q.busy.store(1, Ordering::SeqCst);
        let busy = Arc::downgrade(&q);
        drop(q);
        let mut attempt = 1;
        loop {
            match send(&inner.client, &out).await {
                Ok(()) => {
                    inner.counts.add(SendResult::Delivered);
                    tracing::debug!(endpoint = %name, message = %out.what, "notification delivered");
                    break;
                }
                Err(e) => {
                    let give_up = !e.retry || attempt >= ATTEMPTS;
                    let now = Instant::now();
                    if last_warn.is_none_or(|at| now.duration_since(at) >= WARN_INTERVAL) {
                        last_warn = Some(now);
                        tracing::warn!(
                            endpoint = %name,
                            message = %out.what,
                            attempt,
                            given_up = give_up,
                            earlier_failures_unsaid = unsaid,
                            error = %mask(&e.message, &inner),
                            "a notification could not be delivered; passes go on"
                        );
                        unsaid = 0;
                    } else {
                        unsaid += 1;
                        tracing::debug!(endpoint = %name, attempt, error = %mask(&e.message, &inner), "notification attempt failed");
                    }
                    if give_up {
                        inner.counts.add(SendResult::Failed);
                        break;
                    }
                    inner.counts.add(SendResult::Retried);
                    tokio::time::sleep(backoff(attempt, &mut rng)).await;
                    attempt += 1;
                }
            }
        }
        // Not counted twice: a queue removed meanwhile counted its message already.
        if busy
            .upgrade()
            .is_some_and(|q| q.busy.swap(0, Ordering::SeqCst) == 1)
        {
            done(&inner, 1);
        }
    }
}

fn mask(s: &str, inner: &Inner) -> String {
    let hidden = lock(&inner.hidden).clone();
    crate::model::spec::mask_secrets(s, &hidden)
}

/// The delay before attempt `attempt + 1`: 1 s, 2 s, 4 s ... up to a minute, times a jitter
/// from 0.5 to 1.5 so that many daemons do not retry in step.
fn backoff(attempt: u32, rng: &mut u64) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << (attempt - 1).min(16))
        .min(MAX_BACKOFF);
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let unit = (*rng % 1001) as f64 / 1000.0; // 0.0 ..= 1.0
    base.mul_f64(0.5 + unit)
}

async fn send(client: &reqwest::Client, out: &Outgoing) -> Result<(), SendError> {
    let mut req = client.post(&out.url).body(out.body.clone());
    for (k, v) in &out.headers {
        req = req.header(*k, v);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                return Ok(());
            }
            let code = status.as_u16();
            Err(SendError {
                message: format!("the endpoint answered {status}"),
                retry: status.is_server_error() || code == 408 || code == 429,
            })
        }
        Err(e) => {
            // The chain of causes (a refused connection, a timeout), never the URL.
            let e = e.without_url();
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            Err(SendError {
                message,
                retry: true,
            })
        }
    }
}

#[cfg(test)]
#[path = "notify_tests.rs"]
mod tests;
