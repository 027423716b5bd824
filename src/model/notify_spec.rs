//! A notification endpoint as `convoy.yaml` or the daemon's config writes it
//! (`NotificationSpec`), its kinds and the events it may subscribe to: the part of
//! `model::notify` that fleet settings hold, kept apart so the settings need nothing else of it.
//!
//! Pure data and parsing of names; no I/O. A URL is wrapped in `SecretText`, whose `Debug`
//! never shows it.

use std::fmt;

use serde::Serialize;

/// Where a notification goes and in what form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    Slack,
    Discord,
    /// Compact signed JSON (`render::notify::generic_body`).
    Generic,
    /// Commit statuses.
    GitHub,
    Gitea,
    GitLab,
}

impl NotifyKind {
    pub const ALL: [NotifyKind; 6] = [
        NotifyKind::Slack,
        NotifyKind::Discord,
        NotifyKind::Generic,
        NotifyKind::GitHub,
        NotifyKind::Gitea,
        NotifyKind::GitLab,
    ];

    pub fn code(self) -> &'static str {
        match self {
            NotifyKind::Slack => "slack",
            NotifyKind::Discord => "discord",
            NotifyKind::Generic => "generic",
            NotifyKind::GitHub => "github",
            NotifyKind::Gitea => "gitea",
            NotifyKind::GitLab => "gitlab",
        }
    }

    pub fn parse(s: &str) -> Option<NotifyKind> {
        NotifyKind::ALL.into_iter().find(|k| k.code() == s)
    }

    /// Sets commit statuses rather than posting messages.
    pub fn is_forge(self) -> bool {
        matches!(
            self,
            NotifyKind::GitHub | NotifyKind::Gitea | NotifyKind::GitLab
        )
    }

    /// Its URL is a credential (whoever has it can post): masked everywhere, best in `url_file`.
    pub fn url_is_secret(self) -> bool {
        matches!(self, NotifyKind::Slack | NotifyKind::Discord)
    }
}

/// The kinds of event an endpoint may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    Applied,
    Failed,
    RolledBack,
    Held,
    Healed,
    HostDown,
    HostUp,
    JobFailed,
    JobSucceeded,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Started,
        EventKind::Applied,
        EventKind::Failed,
        EventKind::RolledBack,
        EventKind::Held,
        EventKind::Healed,
        EventKind::HostDown,
        EventKind::HostUp,
        EventKind::JobFailed,
        EventKind::JobSucceeded,
    ];

    pub fn code(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Applied => "applied",
            EventKind::Failed => "failed",
            EventKind::RolledBack => "rolled_back",
            EventKind::Held => "held",
            EventKind::Healed => "healed",
            EventKind::HostDown => "host_down",
            EventKind::HostUp => "host_up",
            EventKind::JobFailed => "job_failed",
            EventKind::JobSucceeded => "job_succeeded",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.code() == s)
    }
}

/// A value that must never be shown: its `Debug` says `(secret)`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretText(pub String);

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(secret)")
    }
}

/// One endpoint as written. File paths are as written too (absolute, or relative to the
/// repository for `convoy.yaml` and to the config file's folder for the daemon's config): they
/// are read on the machine running Convoy, by `infra::notify`, never from the repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NotificationSpec {
    pub kind: NotifyKind,
    /// `url:` (exactly one of `url` and `url_file`). For the forges: the repository's web
    /// address (`https://github.com/owner/repo`), from which the API's is derived.
    pub url: Option<SecretText>,
    pub url_file: Option<String>,
    /// Empty: every event the kind can show.
    pub events: Vec<EventKind>,
    /// HMAC key of the generic kind's `X-Convoy-Signature`.
    pub secret_file: Option<String>,
    /// The forges' API token.
    pub token_file: Option<String>,
    /// The forge's API base (self-hosted servers): `https://git.example.com/api/v1`.
    pub api_url: Option<String>,
}

impl NotificationSpec {
    /// Whether this endpoint wants `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        if self.kind.is_forge() {
            // A commit status follows its commit's passes and holds only.
            return commit_status_kinds().contains(&kind)
                && (self.events.is_empty() || self.events.contains(&kind));
        }
        self.events.is_empty() || self.events.contains(&kind)
    }
}

/// The events that can set a commit status.
fn commit_status_kinds() -> [EventKind; 5] {
    [
        EventKind::Started,
        EventKind::Applied,
        EventKind::Failed,
        EventKind::RolledBack,
        EventKind::Held,
    ]
}

/// `owner/repo` (or a GitLab `group/sub/project`) of a repository's web address, without
/// a trailing `.git`.
pub fn repo_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let (_, path) = rest.split_once('/')?;
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    (parts.len() >= 2 && parts.iter().all(|p| !p.is_empty())).then(|| parts.join("/"))
}
