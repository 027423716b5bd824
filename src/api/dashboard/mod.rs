//! The read-only web dashboard on the API's listener: `/` (the fleet at a glance, live over
//! Server-Sent Events at `/events`), `/diff` (the plan of the newest commit as `convoy diff`
//! prints it), `/history` and `/commit/{id}`, a login form (`/login`, `/logout`), and the one
//! action the API allows with the same token (`POST /sync`, "sync now" and "allow prune").
//!
//! It reads only what the API reads (`DaemonStatus` from the watch channel, the history
//! reader) and sends only the API's requests (`ApiRequest::Sync`, `ApiRequest::DiffText`): it
//! must not change the fleet any other way. Without an API token it serves nothing but a page
//! that says so. A browser logs in with the token and gets a session cookie (never the token);
//! a script may send `Authorization: Bearer` instead. Forms carry the session's CSRF token, the
//! cookie is SameSite=Strict, and every page is served under a Content-Security-Policy that
//! allows this origin only, no inline script or style, and no framing. Markup, style and
//! script are compiled into the binary: nothing is loaded from another origin.

mod html;
mod session;
mod view;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

use super::{digest, Api, ApiConfig};
use crate::daemon::{ApiRequest, DaemonStatus};
use crate::model::history::HistoryEntry;

use session::Sessions;

/// The policy every dashboard answer carries: this origin only, no inline code, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'";
/// The largest form body read (a login or a button).
const FORM_LIMIT: usize = 8 * 1024;
/// How long the diff view waits for the daemon's plan.
const DIFF_TIMEOUT: Duration = Duration::from_secs(60);
/// A comment on an idle event stream this often keeps proxies from closing it.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Updates closer together than this are sent as one (the newest state).
const COALESCE: Duration = Duration::from_millis(100);
/// Passes shown on the main page, and on the history page.
const LIVE_HISTORY: usize = 15;
const PAGE_HISTORY: usize = 200;
/// A failed login waits this long: guessing the token stays slow.
const LOGIN_FAIL_DELAY: Duration = Duration::from_millis(300);

const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("app.js");
const ICON: &str = include_str!("icon.svg");

/// The dashboard's own state in the API.
pub(super) struct Dashboard {
    sessions: Sessions,
    /// Served over TLS: the cookie is `Secure`.
    secure: bool,
}

impl Dashboard {
    pub(super) fn new(cfg: &ApiConfig) -> Dashboard {
        Dashboard {
            sessions: Sessions::default(),
            secure: cfg.tls.is_some(),
        }
    }
}

/// The dashboard's routes, merged into the API's router.
pub(super) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/sync", post(sync))
        .route("/events", get(events))
        .route("/diff", get(diff))
        .route("/history", get(history_page))
        .route("/commit/{id}", get(commit_page))
        .route(
            "/dash/style.css",
            get(|| async { asset("text/css", STYLE) }),
        )
        .route(
            "/dash/app.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route(
            "/dash/icon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
}

/// Who asks.
enum Who {
    /// A browser with a session: its id (for logout) and CSRF token.
    Session { id: String, csrf: String },
    /// A script with the API token in `Authorization: Bearer`.
    Bearer,
}

impl Who {
    fn csrf(&self) -> &str {
        match self {
            Who::Session { csrf, .. } => csrf,
            Who::Bearer => "",
        }
    }
}

/// Why a request is not served.
enum Denied {
    /// No API token configured: the dashboard does not exist.
    NotServed,
    /// Not logged in (a browser is sent to the login form).
    NoLogin,
    /// A bearer token that is wrong.
    BadToken,
}

fn who(api: &Api, headers: &HeaderMap) -> Result<Who, Denied> {
    if api.token.is_none() {
        return Err(Denied::NotServed);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return match api.authorize(headers) {
            Ok(()) => Ok(Who::Bearer),
            Err(_) => Err(Denied::BadToken),
        };
    }
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
        .ok_or(Denied::NoLogin)?;
    let s = api.dashboard.sessions.get(id).ok_or(Denied::NoLogin)?;
    Ok(Who::Session {
        id: id.to_string(),
        csrf: s.csrf,
    })
}

fn denied(d: Denied) -> Response {
    match d {
        Denied::NotServed => html(
            StatusCode::NOT_FOUND,
            html::not_served(
                "This daemon has no API token (--api-token-file), and the dashboard is served \
                 only to those who hold it. Give the daemon a token to see its dashboard here.",
            ),
        ),
        Denied::NoLogin => redirect("/login"),
        Denied::BadToken => {
            let mut r = html(StatusCode::UNAUTHORIZED, html::login(Some("Wrong token.")));
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"convoy\""),
            );
            r
        }
    }
}

/// The headers every dashboard answer carries.
fn harden(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the page's own forms,
    // and the origin check refuses them. `same-origin` still sends nothing to other origins.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    harden(h);
    r
}

fn redirect(to: &'static str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    harden(r.headers_mut());
    r
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    harden(h);
    r
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The newest `limit` history entries, or why there are none to show.
async fn read_history(api: &Api, limit: usize) -> Result<Vec<HistoryEntry>, String> {
    match &api.handle.history {
        None => Err("This daemon keeps no history (see its log).".into()),
        Some(reader) => reader.entries(limit, None).await.map_err(|e| {
            tracing::warn!(error = %e, "dashboard: cannot read the history");
            "The history cannot be read now (see the daemon's log).".to_string()
        }),
    }
}

/// The live fragment for `status` and the newest passes.
async fn live_fragment(api: &Api, status: &DaemonStatus, csrf: &str) -> String {
    let history = read_history(api, LIVE_HISTORY).await;
    view::live(&view::Live {
        status,
        history: history.as_deref().map_err(String::as_str),
        csrf,
        now: now(),
    })
}

async fn index(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let who = match who(&api, &headers) {
        Ok(w) => w,
        Err(d) => return denied(d),
    };
    // Copied out at once: a reader never holds the loop's channel while rendering.
    let status = api.handle.status.borrow().clone();
    let fragment = live_fragment(&api, &status, who.csrf()).await;
    let body = format!("<div id=\"live\">{fragment}</div>");
    html(StatusCode::OK, html::page("Fleet", Some(who.csrf()), &body))
}

async fn login_form(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    match who(&api, &headers) {
        Err(Denied::NotServed) => denied(Denied::NotServed),
        Ok(_) => redirect("/"),
        Err(_) => html(StatusCode::OK, html::login(None)),
    }
}

/// A form body, bounded; `None` when it is too large or unreadable.
async fn form(req: Request) -> Option<Vec<(String, String)>> {
    let bytes = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
        .await
        .ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    Some(parse_form(text))
}

/// `application/x-www-form-urlencoded` pairs (`+` and `%XX` decoded; bad escapes kept as is).
pub(crate) fn parse_form(text: &str) -> Vec<(String, String)> {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A POST from another origin is refused whatever it carries (SameSite=Strict already keeps
/// the cookie from it; this is the second lock). Browsers send `Origin` on every POST.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host)
}

async fn login(State(api): State<Arc<Api>>, req: Request) -> Response {
    let Some(expected) = api.token else {
        return denied(Denied::NotServed);
    };
    if !same_origin(req.headers()) {
        return html(
            StatusCode::FORBIDDEN,
            html::login(Some("Refused: the form came from another origin.")),
        );
    }
    let Some(form) = form(req).await else {
        return html(StatusCode::BAD_REQUEST, html::login(Some("Bad form.")));
    };
    let given = field(&form, "token").unwrap_or("").trim_end();
    if !bool::from(digest(given).ct_eq(&expected)) {
        tracing::info!("dashboard: a login with a wrong token");
        tokio::time::sleep(LOGIN_FAIL_DELAY).await;
        return html(StatusCode::UNAUTHORIZED, html::login(Some("Wrong token.")));
    }
    let Some((id, _)) = api.dashboard.sessions.create() else {
        tracing::error!("dashboard: no randomness for a session id");
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            html::login(Some("The server cannot make a session now.")),
        );
    };
    tracing::info!("dashboard: logged in");
    let mut r = redirect("/");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, api.dashboard.secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The session and checked CSRF token of a form POST, or the answer that refuses it. A bearer
/// client needs no CSRF token: no browser sends that header on its own.
async fn checked_post(api: &Api, req: Request) -> Result<(Who, Vec<(String, String)>), Response> {
    let who = who(api, req.headers()).map_err(denied)?;
    if !same_origin(req.headers()) {
        return Err(html(
            StatusCode::FORBIDDEN,
            html::not_served("Refused: the form came from another origin."),
        ));
    }
    let form = form(req)
        .await
        .ok_or_else(|| html(StatusCode::BAD_REQUEST, html::not_served("Bad form.")))?;
    if let Who::Session { id, .. } = &who {
        let session = api.dashboard.sessions.get(id);
        let ok = session
            .zip(field(&form, "csrf"))
            .is_some_and(|(s, given)| s.csrf_matches(given));
        if !ok {
            tracing::warn!("dashboard: a form without its session's CSRF token was refused");
            return Err(html(
                StatusCode::FORBIDDEN,
                html::not_served(
                    "Refused: the form's CSRF token does not match your session. Reload the page.",
                ),
            ));
        }
    }
    Ok((who, form))
}

async fn logout(State(api): State<Arc<Api>>, req: Request) -> Response {
    let (who, _) = match checked_post(&api, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if let Who::Session { id, .. } = who {
        api.dashboard.sessions.remove(&id);
    }
    let mut r = redirect("/login");
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(api.dashboard.secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn sync(State(api): State<Arc<Api>>, req: Request) -> Response {
    let (_, form) = match checked_post(&api, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let allow_prune = field(&form, "allow_prune") == Some("true");
    if api
        .handle
        .requests
        .send(ApiRequest::Sync { allow_prune })
        .is_err()
    {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            html::not_served("The daemon is stopping."),
        );
    }
    tracing::info!(allow_prune, "dashboard: sync requested");
    redirect("/")
}

/// One Server-Sent Event named `name` whose data is `data` (one `data:` line per line).
fn sse_event(name: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// What the event stream carries between its events.
struct Stream {
    api: Arc<Api>,
    rx: tokio::sync::watch::Receiver<DaemonStatus>,
    session: Option<String>,
    csrf: String,
    first: bool,
    done: bool,
}

/// `GET /events`: the live fragment at once, then again on every change of the daemon's
/// status (coalesced over `COALESCE`), a comment every `KEEPALIVE` while nothing changes. It
/// ends when the session does (with a `login` event) or the daemon stops.
async fn events(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let who = match who(&api, &headers) {
        Ok(w) => w,
        Err(Denied::NotServed) => return denied(Denied::NotServed),
        Err(_) => {
            let mut r = (StatusCode::UNAUTHORIZED, "log in first\n").into_response();
            harden(r.headers_mut());
            return r;
        }
    };
    let mut rx = api.handle.status.clone();
    rx.mark_changed();
    let state = Stream {
        csrf: who.csrf().to_string(),
        session: match who {
            Who::Session { id, .. } => Some(id),
            Who::Bearer => None,
        },
        api,
        rx,
        first: true,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.first {
            tokio::time::sleep(COALESCE).await;
        }
        st.first = false;
        match tokio::time::timeout(KEEPALIVE, st.rx.changed()).await {
            Err(_) => {
                return Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(b": keepalive\n\n")),
                    st,
                ))
            }
            Ok(Err(_)) => return None,
            Ok(Ok(())) => {}
        }
        if let Some(id) = &st.session {
            if st.api.dashboard.sessions.get(id).is_none() {
                st.done = true;
                return Some((Ok(sse_event("login", "")), st));
            }
        }
        let status = st.rx.borrow_and_update().clone();
        if status.phase == "stopping" {
            st.done = true;
        }
        let fragment = live_fragment(&st.api, &status, &st.csrf).await;
        Some((Ok(sse_event("live", &fragment)), st))
    });
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    harden(h);
    r
}

/// The plan of the newest commit as `convoy diff` prints it, or why there is none.
async fn diff_text(api: &Api) -> Result<String, String> {
    let (reply, answer) = oneshot::channel();
    if api
        .handle
        .requests
        .send(ApiRequest::DiffText { reply })
        .is_err()
    {
        return Err("The daemon is stopping.".into());
    }
    match tokio::time::timeout(DIFF_TIMEOUT, answer).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("The daemon dropped the request (stopping?).".into()),
        Err(_) => Err("The daemon did not plan within 60 s.".into()),
    }
}

fn diff_section(result: Result<String, String>) -> String {
    match result {
        Ok(text) => format!(
            "<section class=\"card\" id=\"diff\" aria-labelledby=\"h-diff\"><h2 id=\"h-diff\">Plan of the newest commit</h2>\
             <p>As <code>convoy diff</code> prints it: what the next pass would do.</p>{}</section>",
            html::diff_block(&text)
        ),
        Err(why) => format!(
            "<section class=\"card warn\" id=\"diff\"><h2>No plan</h2><p>{}</p></section>",
            html::esc(&why)
        ),
    }
}

async fn diff(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let who = match who(&api, &headers) {
        Ok(w) => w,
        Err(d) => return denied(d),
    };
    let body = diff_section(diff_text(&api).await);
    html(StatusCode::OK, html::page("Diff", Some(who.csrf()), &body))
}

async fn history_page(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let who = match who(&api, &headers) {
        Ok(w) => w,
        Err(d) => return denied(d),
    };
    let mut body =
        String::from("<section class=\"card\" id=\"history\"><h2>History of passes</h2>");
    match read_history(&api, PAGE_HISTORY).await {
        Ok(entries) if entries.is_empty() => body.push_str("<p>No pass recorded yet.</p>"),
        Ok(entries) => view::history_table(&mut body, &entries),
        Err(why) => body.push_str(&format!("<p>{}</p>", html::esc(&why))),
    }
    body.push_str("</section>");
    html(
        StatusCode::OK,
        html::page("History", Some(who.csrf()), &body),
    )
}

/// A commit: its passes in the history (what they changed, how they ended), and, when it is the
/// branch's newest commit, the plan that brings the fleet to it.
async fn commit_page(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let who = match who(&api, &headers) {
        Ok(w) => w,
        Err(d) => return denied(d),
    };
    if !html::is_commit_id(&id) {
        return html(
            StatusCode::NOT_FOUND,
            html::page("Commit", Some(who.csrf()), "<p>No such commit.</p>"),
        );
    }
    let status = api.handle.status.borrow().clone();
    let newest = status
        .pending
        .as_ref()
        .map(|p| p.commit.clone())
        .or(status.commit.clone());
    let mut body = format!(
        "<section class=\"card\" id=\"commit\"><h2>Commit <code>{}</code></h2>",
        html::esc(&id)
    );
    if status.commit.as_deref() == Some(id.as_str()) {
        body.push_str("<p><span class=\"badge ok\">in force</span></p>");
    }
    if let Some(p) = status.pending.as_ref().filter(|p| p.commit == id) {
        body.push_str(&format!(
            "<p><span class=\"badge held\">pending</span> {}: {}</p>",
            html::esc(p.reason.code()),
            html::esc(&p.message)
        ));
        if !p.errors.is_empty() {
            body.push_str("<ul class=\"errors\">");
            for e in &p.errors {
                body.push_str(&format!(
                    "<li><code class=\"loc\">{}:{}:{}</code>{}: {}</li>",
                    html::esc(&e.file),
                    e.line,
                    e.column,
                    view::key_code(&e.key),
                    html::esc(&e.message)
                ));
            }
            body.push_str("</ul>");
        }
    }
    match read_history(&api, PAGE_HISTORY).await {
        Ok(entries) => {
            let mine: Vec<HistoryEntry> = entries.into_iter().filter(|e| e.commit == id).collect();
            if mine.is_empty() {
                body.push_str("<p>No recent pass of this commit in the history.</p>");
            } else {
                if let Some(m) = mine.iter().find_map(|e| e.message.as_deref()) {
                    let author = mine.iter().find_map(|e| e.author.as_deref()).unwrap_or("");
                    body.push_str(&format!(
                        "<p><strong>{}</strong> {}</p>",
                        html::esc(author),
                        html::esc(m)
                    ));
                }
                body.push_str("<h3>Its passes (what each changed)</h3>");
                view::history_table(&mut body, &mine);
            }
        }
        Err(why) => body.push_str(&format!("<p>{}</p>", html::esc(&why))),
    }
    body.push_str("</section>");
    if newest.as_deref() == Some(id.as_str()) {
        body.push_str(&diff_section(diff_text(&api).await));
    } else {
        body.push_str(
            "<p>The plan is shown for the branch's newest commit only: the fleet is planned \
             against what runs now. See <a href=\"/diff\">the newest plan</a>.</p>",
        );
    }
    html(
        StatusCode::OK,
        html::page("Commit", Some(who.csrf()), &body),
    )
}
