//! `notifications:` of `convoy.yaml` (and of the daemon's config file, which reads the same
//! list through `read_config_notifications`): endpoints for chat messages, signed JSON and
//! commit statuses, each error located (file:line:column, key) with a suggestion for a
//! misspelt key, kind or event.
//!
//! No I/O: file paths (`url_file`, `secret_file`, `token_file`) are kept as written and read on
//! the machine running Convoy by `infra::notify`. A URL is never quoted in an error: a Slack or
//! Discord URL is a credential.

use super::typed::{Diag, Keys};
use super::values::suggest;
use super::yaml::{Kind, Node};
use crate::model::notify::{repo_path, EventKind, NotificationSpec, NotifyKind, SecretText};

const ENDPOINT: Keys = Keys {
    supported: &[
        "url",
        "url_file",
        "kind",
        "events",
        "secret_file",
        "token_file",
        "api_url",
    ],
    unsupported: &[],
    extensions: false,
};

/// The most endpoints a fleet may have: each has a delivery task and a queue.
const MAX_ENDPOINTS: usize = 32;

/// Reads the `notifications:` list at `v`.
pub fn read(d: &mut Diag, v: &Node, path: &str) -> Vec<NotificationSpec> {
    let items = match &v.kind {
        Kind::Seq(items) => items,
        _ if v.is_null() => return Vec::new(),
        _ => {
            d.at(
                v,
                path,
                format!("expected a list of endpoints, found {}", v.type_name()),
            );
            return Vec::new();
        }
    };
    if items.len() > MAX_ENDPOINTS {
        d.at(v, path, format!("at most {MAX_ENDPOINTS} endpoints"));
    }
    let mut out: Vec<NotificationSpec> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        if let Some(spec) = read_endpoint(d, item, &ipath) {
            if out.contains(&spec) {
                d.at(item, &ipath, "the same endpoint is written twice");
            } else {
                out.push(spec);
            }
        }
    }
    out
}

fn read_endpoint(d: &mut Diag, v: &Node, path: &str) -> Option<NotificationSpec> {
    let entries = match &v.kind {
        Kind::Map(entries) => entries,
        _ => {
            d.at(
                v,
                path,
                format!(
                    "expected a map with `kind:` and `url:` (or `url_file:`), found {}",
                    v.type_name()
                ),
            );
            return None;
        }
    };
    let before = d.errors.len();
    let mut kind: Option<NotifyKind> = None;
    let mut url: Option<(String, &Node)> = None;
    let mut url_file = None;
    let mut events = Vec::new();
    let mut secret_file: Option<(String, &Node)> = None;
    let mut token_file: Option<(String, &Node)> = None;
    let mut api_url: Option<(String, &Node)> = None;
    for (name, _k, v, kpath) in d.fields(entries, path, &ENDPOINT) {
        match name {
            "kind" => {
                let Some(s) = d.string(v, &kpath) else {
                    continue;
                };
                match NotifyKind::parse(&s) {
                    Some(k) => kind = Some(k),
                    None => {
                        let all = NotifyKind::ALL.map(NotifyKind::code);
                        let msg = match suggest(&s, all) {
                            Some(s) => format!("unknown kind, did you mean `{s}`?"),
                            None => format!("unknown kind (expected one of: {})", all.join(", ")),
                        };
                        d.at(v, &kpath, msg);
                    }
                }
            }
            "url" => {
                if let Some(s) = d.string(v, &kpath) {
                    if let Some(problem) = url_problem(&s) {
                        d.at(v, &kpath, problem);
                    } else {
                        url = Some((s, v));
                    }
                }
            }
            "api_url" => {
                if let Some(s) = d.string(v, &kpath) {
                    if let Some(problem) = url_problem(&s) {
                        d.at(v, &kpath, problem);
                    } else {
                        api_url = Some((s.trim_end_matches('/').to_string(), v));
                    }
                }
            }
            "url_file" | "secret_file" | "token_file" => {
                let Some(s) = d.string(v, &kpath) else {
                    continue;
                };
                if s.trim().is_empty() || s.chars().any(char::is_control) {
                    d.at(v, &kpath, "expected a file path");
                    continue;
                }
                match name {
                    "url_file" => url_file = Some(s),
                    "secret_file" => secret_file = Some((s, v)),
                    _ => token_file = Some((s, v)),
                }
            }
            "events" => events = read_events(d, v, &kpath),
            _ => {}
        }
    }
    let has = |key: &str| entries.iter().any(|(k, _)| k.scalar() == Some(key));
    let Some(kind) = kind else {
        if !has("kind") {
            let all = NotifyKind::ALL.map(NotifyKind::code).join(", ");
            d.at(v, path, format!("missing `kind:` (one of: {all})"));
        }
        return None;
    };
    match (&url, &url_file) {
        (Some((_, n)), Some(_)) => d.at(
            n,
            &format!("{path}.url"),
            "write `url` or `url_file`, not both",
        ),
        (None, None) if !has("url") && !has("url_file") => {
            d.at(v, path, "missing `url:` or `url_file:`")
        }
        _ => {}
    }
    if kind.is_forge() {
        if let Some((u, n)) = &url {
            if repo_path(u).is_none() {
                d.at(
                    n,
                    &format!("{path}.url"),
                    "expected the repository's address, `https://<server>/<owner>/<repo>`",
                );
            }
        }
        if token_file.is_none() && !has("token_file") {
            d.at(
                v,
                path,
                format!("missing `token_file:` (a {} API token)", kind.code()),
            );
        }
    } else {
        if let Some((_, n)) = &token_file {
            d.at(
                n,
                &format!("{path}.token_file"),
                "only the kinds github, gitea and gitlab use a token",
            );
        }
        if let Some((_, n)) = &api_url {
            d.at(
                n,
                &format!("{path}.api_url"),
                "only the kinds github, gitea and gitlab have an API address",
            );
        }
    }
    match (kind, &secret_file) {
        (NotifyKind::Generic, None) if !has("secret_file") => d.at(
            v,
            path,
            "missing `secret_file:` (the key of the body's `X-Convoy-Signature`)",
        ),
        (NotifyKind::Generic, _) | (_, None) => {}
        (_, Some((_, n))) => d.at(
            n,
            &format!("{path}.secret_file"),
            "only the generic kind signs its body",
        ),
    }
    if kind.is_forge() {
        for e in &events {
            if !matches!(
                e,
                EventKind::Started
                    | EventKind::Applied
                    | EventKind::Failed
                    | EventKind::RolledBack
                    | EventKind::Held
            ) {
                d.at(
                    v,
                    &format!("{path}.events"),
                    format!(
                        "`{}` sets no commit status (a status follows started, applied, failed, rolled_back, held)",
                        e.code()
                    ),
                );
            }
        }
    }
    if d.errors.len() > before {
        return None;
    }
    Some(NotificationSpec {
        kind,
        url: url.map(|(u, _)| SecretText(u)),
        url_file,
        events,
        secret_file: secret_file.map(|(s, _)| s),
        token_file: token_file.map(|(s, _)| s),
        api_url: api_url.map(|(s, _)| s),
    })
}

fn read_events(d: &mut Diag, v: &Node, path: &str) -> Vec<EventKind> {
    let mut out = Vec::new();
    for (i, (s, n)) in d
        .string_list(v, path)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let ipath = format!("{path}[{i}]");
        match EventKind::parse(&s) {
            Some(e) if out.contains(&e) => d.at(n, &ipath, format!("`{s}` is listed twice")),
            Some(e) => out.push(e),
            None => {
                let all = EventKind::ALL.map(EventKind::code);
                let msg = match suggest(&s, all) {
                    Some(x) => format!("unknown event, did you mean `{x}`?"),
                    None => format!("unknown event (expected one of: {})", all.join(", ")),
                };
                d.at(n, &ipath, msg);
            }
        }
    }
    out
}

/// Why `s` is not an `http(s)://host...` address (never quoting it).
fn url_problem(s: &str) -> Option<&'static str> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        None => Some("expected an `https://` (or `http://`) address"),
        Some(r) if r.is_empty() || r.starts_with('/') => Some("the address names no server"),
        Some(_) if s.chars().any(|c| c.is_control() || c.is_whitespace()) => {
            Some("an address cannot hold spaces or control characters")
        }
        Some(_) => None,
    }
}

/// The `notifications:` of a daemon's config file (`file` names it in errors): the list, or
/// every located error. Other keys are the daemon config's to check.
pub fn read_config_notifications(
    file: &str,
    text: &str,
) -> Result<Vec<NotificationSpec>, Vec<super::ManifestError>> {
    let mut errors = Vec::new();
    let Some(root) = super::parse_yaml(file, text, &mut errors) else {
        return Err(errors);
    };
    let mut d = Diag::new(file);
    let mut out = Vec::new();
    if let Kind::Map(entries) = &root.kind {
        for (k, v) in entries {
            if k.scalar() == Some("notifications") {
                out = read(&mut d, v, "notifications");
            }
        }
    }
    if d.errors.is_empty() {
        Ok(out)
    } else {
        Err(d.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Vec<NotificationSpec>, Vec<String>> {
        read_config_notifications("convoy.yaml", text).map_err(|es| {
            es.iter()
                .map(|e| {
                    format!(
                        "{}:{}:{}: {}: {}",
                        e.file, e.line, e.column, e.key, e.message
                    )
                })
                .collect()
        })
    }

    #[test]
    fn every_kind_reads() {
        let specs = read_text(
            "notifications:\n\
             - {kind: slack, url_file: /etc/convoy/slack-url, events: [failed, rolled_back]}\n\
             - {kind: discord, url: 'https://discord.com/api/webhooks/1/x'}\n\
             - {kind: generic, url: 'https://hooks.example.com/convoy', secret_file: hmac.key}\n\
             - {kind: github, url: 'https://github.com/acme/fleet', token_file: gh.token}\n\
             - {kind: gitea, url: 'https://git.example.com/acme/fleet.git', token_file: t, api_url: 'https://git.example.com/api/v1/'}\n\
             - {kind: gitlab, url: 'https://gitlab.com/acme/infra/fleet', token_file: t}\n",
        )
        .unwrap();
        assert_eq!(specs.len(), 6);
        assert_eq!(specs[0].events, [EventKind::Failed, EventKind::RolledBack]);
        assert_eq!(specs[0].url_file.as_deref(), Some("/etc/convoy/slack-url"));
        assert_eq!(
            specs[4].api_url.as_deref(),
            Some("https://git.example.com/api/v1")
        );
        assert_eq!(
            repo_path("https://gitlab.com/acme/infra/fleet").as_deref(),
            Some("acme/infra/fleet")
        );
        assert_eq!(
            repo_path("https://git.example.com/acme/fleet.git").as_deref(),
            Some("acme/fleet")
        );
    }

    #[test]
    fn bad_values_are_located_with_suggestions_and_never_quote_a_url() {
        let errors = read_text(
            "notifications:\n\
             - kind: slak\n\
             \x20 url: 'https://hooks.slack.com/services/T0/B0/s3cr3t'\n\
             - kind: generic\n\
             \x20 url: 'https://h.example.com/x'\n\
             \x20 events: [aplied, started, started]\n\
             \x20 secert_file: k\n\
             - kind: github\n\
             \x20 url: 'https://github.com/acme'\n\
             \x20 url_file: u\n\
             - kind: slack\n\
             \x20 url: 'ftp://hooks.slack.com/services/T0/B0/s3cr3t'\n\
             \x20 token_file: t\n",
        )
        .unwrap_err();
        let all = errors.join("\n");
        assert!(!all.contains("s3cr3t"), "{all}");
        let expect = [
            "convoy.yaml:2:9: notifications[0].kind: unknown kind, did you mean `slack`?",
            "convoy.yaml:6:12: notifications[1].events[0]: unknown event, did you mean `applied`?",
            "convoy.yaml:6:29: notifications[1].events[2]: `started` is listed twice",
            "convoy.yaml:7:3: notifications[1].secert_file: unknown key, did you mean `secret_file`?",
            "convoy.yaml:4:3: notifications[1]: missing `secret_file:`",
            "convoy.yaml:9:8: notifications[2].url: write `url` or `url_file`, not both",
            "convoy.yaml:9:8: notifications[2].url: expected the repository's address",
            "convoy.yaml:8:3: notifications[2]: missing `token_file:`",
            "convoy.yaml:12:8: notifications[3].url: expected an `https://` (or `http://`) address",
            "convoy.yaml:13:15: notifications[3].token_file: only the kinds github, gitea and gitlab use a token",
        ];
        for e in expect {
            assert!(all.contains(e), "missing `{e}` in:\n{all}");
        }
    }

    /// `convoy.yaml` reads the list into the fleet's settings, and its errors are the fleet
    /// file's.
    #[test]
    fn the_fleet_file_reads_notifications() {
        let text = "fleet: f\nnotifications:\n  - {kind: generic, url: 'https://h.example.com/x', secret_file: k}\n";
        let (root, _) = crate::manifest::yaml::parse(text);
        let mut d = Diag::new("convoy.yaml");
        let fleet = super::super::fleet::read(&mut d, &root.unwrap(), &Default::default()).unwrap();
        assert_eq!(fleet.settings.notifications.len(), 1);
        assert_eq!(fleet.settings.notifications[0].kind, NotifyKind::Generic);
        let text = "fleet: f\nnotification: []\n";
        let (root, _) = crate::manifest::yaml::parse(text);
        let mut d = Diag::new("convoy.yaml");
        assert!(super::super::fleet::read(&mut d, &root.unwrap(), &Default::default()).is_none());
        assert_eq!(d.errors[0].key, "notification");
        assert!(
            d.errors[0]
                .message
                .contains("did you mean `notifications`?"),
            "{}",
            d.errors[0].message
        );
    }

    #[test]
    fn an_endpoint_needs_a_kind_and_an_address() {
        let errors =
            read_text("notifications:\n- events: [failed]\n- {kind: slack}\n").unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("convoy.yaml:2:3: notifications[0]: missing `kind:`"),
            "{all}"
        );
        assert!(
            all.contains("convoy.yaml:3:4: notifications[1]: missing `url:` or `url_file:`"),
            "{all}"
        );
        let errors = read_text("notifications: {kind: slack}\n").unwrap_err();
        assert!(
            errors[0].contains("expected a list of endpoints"),
            "{errors:?}"
        );
    }
}
