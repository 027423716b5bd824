//! `POST /hooks/{github,gitea,gitlab,generic}`: webhooks that make the daemon fetch now.
//!
//! Order matters: the size is checked first (413 before any work), then the signature or
//! token over the raw body, in constant time (401, and nothing reaches the daemon), and only
//! then is the body parsed. A push to the tracked branch sends one `ApiRequest::Fetch`; other
//! events and branches are acknowledged (202) and ignored. Nothing of a body, a signature or
//! the secret is logged or echoed: the log says provider and result.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{error, json, Api, BODY_LIMIT};
use crate::daemon::{ApiRequest, FetchCause};

const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where a webhook comes from (Forgejo counts as Gitea: same headers, same payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub = 0,
    Gitea = 1,
    GitLab = 2,
    Generic = 3,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::GitHub,
        Provider::Gitea,
        Provider::GitLab,
        Provider::Generic,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::GitLab => "gitlab",
            Provider::Generic => "generic",
        }
    }
}

/// What became of a webhook: the `result` label of `convoy_webhooks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookResult {
    Accepted = 0,
    Ignored = 1,
    Unauthorized = 2,
    TooLarge = 3,
    BadRequest = 4,
}

impl HookResult {
    pub(super) const ALL: [HookResult; 5] = [
        HookResult::Accepted,
        HookResult::Ignored,
        HookResult::Unauthorized,
        HookResult::TooLarge,
        HookResult::BadRequest,
    ];

    pub(super) fn code(self) -> &'static str {
        match self {
            HookResult::Accepted => "accepted",
            HookResult::Ignored => "ignored",
            HookResult::Unauthorized => "unauthorized",
            HookResult::TooLarge => "too_large",
            HookResult::BadRequest => "bad_request",
        }
    }
}

/// What a verified webhook asks for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fetch,
    Ignored(&'static str),
    Bad(&'static str),
}

pub(super) async fn handle(api: &Api, provider: Provider, req: Request) -> Response {
    let Some(secret) = api.webhook_secret.as_deref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return finish(api, provider, HookResult::TooLarge, None);
    }
    // A body trickled in slowly must not hold a connection slot for ever.
    let body = match tokio::time::timeout(BODY_TIMEOUT, read_limited(body)).await {
        Ok(Ok(b)) => b,
        Ok(Err(Some(result))) => return finish(api, provider, result, None),
        Ok(Err(None)) => return finish(api, provider, HookResult::BadRequest, None),
        Err(_) => {
            let why = "the body did not arrive within 30 s";
            return finish(api, provider, HookResult::BadRequest, Some(why));
        }
    };
    if !verify(provider, &parts.headers, &body, secret) {
        return finish(api, provider, HookResult::Unauthorized, None);
    }
    match decide(provider, &parts.headers, &body, &api.followed_ref()) {
        Verdict::Fetch => {
            let cause = FetchCause::Webhook {
                provider: provider.code(),
            };
            if api
                .handle
                .requests
                .send(ApiRequest::Fetch { cause })
                .is_err()
            {
                tracing::info!(provider = provider.code(), "webhook while the daemon stops");
                return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
            }
            finish(api, provider, HookResult::Accepted, None)
        }
        Verdict::Ignored(why) => finish(api, provider, HookResult::Ignored, Some(why)),
        Verdict::Bad(why) => finish(api, provider, HookResult::BadRequest, Some(why)),
    }
}

/// Counts, logs and answers.
fn finish(api: &Api, provider: Provider, result: HookResult, why: Option<&str>) -> Response {
    api.hooks.add(provider, result);
    let p = provider.code();
    let r = result.code();
    match result {
        HookResult::Accepted | HookResult::Ignored => {
            tracing::info!(provider = p, result = r, "webhook")
        }
        _ => tracing::warn!(provider = p, result = r, "webhook refused"),
    }
    match result {
        HookResult::Accepted => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "accepted": true }),
        ),
        HookResult::Ignored => json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "ignored": why.unwrap_or("not a push") }),
        ),
        HookResult::Unauthorized => error(StatusCode::UNAUTHORIZED, "invalid or missing signature"),
        HookResult::TooLarge => error(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 1 MiB"),
        HookResult::BadRequest => error(StatusCode::BAD_REQUEST, why.unwrap_or("unreadable body")),
    }
}

/// The whole body, or `Err(Some(TooLarge))` past the limit, `Err(None)` if it broke off.
async fn read_limited(body: Body) -> Result<Vec<u8>, Option<HookResult>> {
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Some(HookResult::TooLarge)),
        Err(_) => Err(None),
    }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The signature or token is right for this body. Every comparison is constant-time.
fn verify(provider: Provider, headers: &HeaderMap, body: &[u8], secret: &[u8]) -> bool {
    match provider {
        Provider::GitHub => header(headers, "x-hub-signature-256")
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|hex| hmac_ok(secret, body, hex)),
        Provider::Gitea => header(headers, "x-forgejo-signature")
            .or_else(|| header(headers, "x-gitea-signature"))
            .is_some_and(|hex| hmac_ok(secret, body, hex)),
        Provider::GitLab => header(headers, "x-gitlab-token").is_some_and(|token| {
            // Digests, so that the length of the secret does not leak either.
            let a = <Sha256 as sha2::Digest>::digest(token.as_bytes());
            let b = <Sha256 as sha2::Digest>::digest(secret);
            bool::from(a.ct_eq(&b))
        }),
        Provider::Generic => header(headers, "x-convoy-signature")
            .and_then(|s| s.strip_prefix("sha256="))
            .is_some_and(|hex| hmac_ok(secret, body, hex)),
    }
}

/// The one HMAC check (`model::signature`), shared with the signed notifications.
fn hmac_ok(secret: &[u8], body: &[u8], hex_sig: &str) -> bool {
    crate::model::signature::verify(secret, body, hex_sig)
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

/// What a verified webhook asks for.
fn decide(provider: Provider, headers: &HeaderMap, body: &[u8], branch_ref: &str) -> Verdict {
    let event = match provider {
        Provider::GitHub => header(headers, "x-github-event"),
        Provider::Gitea => {
            header(headers, "x-forgejo-event").or_else(|| header(headers, "x-gitea-event"))
        }
        Provider::GitLab => header(headers, "x-gitlab-event"),
        Provider::Generic => return generic(body, branch_ref),
    };
    let push = match provider {
        Provider::GitLab => "Push Hook",
        _ => "push",
    };
    match event {
        None => Verdict::Bad("no event header"),
        Some("ping") => Verdict::Ignored("ping"),
        Some(e) if e == push => push_to(body, branch_ref),
        Some(_) => Verdict::Ignored("not a push"),
    }
}

fn push_to(body: &[u8], branch_ref: &str) -> Verdict {
    match serde_json::from_slice::<Push>(body) {
        Ok(Push { git_ref: Some(r) }) if r == branch_ref || branch_ref.is_empty() => Verdict::Fetch,
        Ok(Push { git_ref: Some(_) }) => Verdict::Ignored("a push to another branch"),
        Ok(Push { git_ref: None }) => Verdict::Bad("the push names no ref"),
        Err(_) => Verdict::Bad(
            "the body is not a JSON push payload (content type must be application/json)",
        ),
    }
}

/// Any validly signed POST fetches; a JSON body may name the ref, and one naming another
/// branch is ignored.
fn generic(body: &[u8], branch_ref: &str) -> Verdict {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Fetch;
    }
    match serde_json::from_slice::<Push>(body) {
        Ok(Push { git_ref: Some(r) }) if r != branch_ref && !branch_ref.is_empty() => {
            Verdict::Ignored("a push to another branch")
        }
        Ok(_) => Verdict::Fetch,
        Err(_) => Verdict::Bad("the body is neither empty nor a JSON object"),
    }
}

#[cfg(test)]
pub(super) fn sign(secret: &[u8], body: &[u8]) -> String {
    crate::model::signature::sign(secret, body)
}
