//! Following a git branch: `open_follow` turns what the user gave as `--repo` into a source.
//! A working tree without `--branch` stays today's working files (`WorkDir`); a bare repository,
//! a `file://` URL, or a working tree with `--branch` is a `LocalBranch` (the ref read straight
//! from that repository, its git directory watched for pushes); an `ssh://`, scp-like or
//! `http(s)://` URL is a `RemoteBranch`, fetched by the system `git` into a bare cache and read
//! from there with git2, without a checkout.
//!
//! A remote is fetched strictly: never a prompt (`GIT_TERMINAL_PROMPT=0`, askpass programs that
//! fail, ssh in batch mode with strict host keys on top of the user's own ssh setup), HTTPS
//! credentials given to git in its environment (never in argv or a URL), tried a bounded number
//! of times, and masked in every error and description. It never writes to a followed local
//! repository, and it decides nothing about when to fetch: the daemon does.

use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::run::{run, Ran};
use super::signature::{verify_commit, SignaturePolicy};
use super::{relative_to, GitTree, Limits, Source, SourceError, Tree, WorkDir};

/// How a followed repository is opened (`convoy daemon`'s flags).
#[derive(Debug, Clone, Default)]
pub struct FollowOptions {
    /// The branch; the repository's HEAD branch (a remote's own HEAD) when `None`.
    pub branch: Option<String>,
    /// The fleet root inside the repository: relative, without `..`.
    pub path: Option<PathBuf>,
    /// Where remotes are cached (`<state_dir>/git`).
    pub cache_dir: PathBuf,
    /// HTTPS: a file holding a token (one line) or `user:password`.
    pub credentials_file: Option<PathBuf>,
    /// HTTPS: a CA bundle to verify the server with.
    pub ca_file: Option<PathBuf>,
    /// Which keys commits must be signed with, when they must be.
    pub signatures: Option<SignaturePolicy>,
    pub limits: Limits,
}

/// The longest one `git fetch` (or `ls-remote`) may run before it is killed.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of git's output an error quotes.
const ERROR_CAP: usize = 4096;
/// How much of git's output is read (masked before it is cut to `ERROR_CAP`, so a secret cut in
/// two at the edge is never half shown).
const OUTPUT_CAP: usize = 64 * 1024;
/// Authentication failures in a row after which the same credentials are not tried again.
pub(super) const MAX_AUTH_FAILURES: u32 = 3;
/// The largest credentials file read.
const CREDENTIALS_CAP: u64 = 64 * 1024;

/// What `--repo` names.
#[derive(Debug, PartialEq, Eq)]
enum Spec {
    Dir(PathBuf),
    FileUrl(PathBuf),
    Remote(String),
}

fn unsupported(spec: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Unsupported {
        spec: redact_userinfo(spec),
        reason: reason.into(),
    }
}

fn classify(spec: &str) -> Result<Spec, SourceError> {
    if spec.starts_with('-') {
        return Err(unsupported(spec, "it starts with `-`"));
    }
    if let Some(rest) = spec.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(unsupported(spec, "a `file://` URL needs an absolute path"));
        }
        return Ok(Spec::FileUrl(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = spec.split_once("://") {
        return match scheme {
            "ssh" | "git+ssh" | "ssh+git" | "https" | "http" => Ok(Spec::Remote(spec.into())),
            _ => Err(unsupported(
                spec,
                format!("`{scheme}://` is not supported (ssh, https, http and file are)"),
            )),
        };
    }
    if Path::new(spec).exists() {
        return Ok(Spec::Dir(PathBuf::from(spec)));
    }
    // scp-like `[user@]host:path`: a colon before any slash, as git reads it.
    match (spec.find(':'), spec.find('/')) {
        (Some(colon), slash) if colon > 0 && slash.is_none_or(|s| colon < s) => {
            Ok(Spec::Remote(spec.into()))
        }
        _ => Ok(Spec::Dir(PathBuf::from(spec))),
    }
}

/// `--path` as a relative path with no `..`; `""` for the repository's top.
pub(super) fn fleet_path(path: Option<&Path>) -> Result<PathBuf, SourceError> {
    let mut out = PathBuf::new();
    let Some(path) = path else {
        return Ok(out);
    };
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(SourceError::BadPath {
                    path: path.into(),
                    reason: "it may not contain `..`",
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(SourceError::BadPath {
                    path: path.into(),
                    reason: "it must be relative to the repository's top",
                })
            }
        }
    }
    Ok(out)
}

/// What `--repo SPEC` (with `--branch`, `--path` and the rest) follows; nothing is fetched yet.
pub fn open_follow(spec: &str, opts: FollowOptions) -> Result<Box<dyn Source>, SourceError> {
    let prefix = fleet_path(opts.path.as_deref())?;
    match classify(spec)? {
        Spec::Remote(url) => Ok(Box::new(RemoteBranch::new(&url, prefix, opts)?)),
        Spec::FileUrl(dir) => Ok(Box::new(LocalBranch::open(spec, &dir, prefix, opts)?)),
        Spec::Dir(dir) => {
            let repo = git2::Repository::discover(&dir).ok();
            let follow = opts.branch.is_some() || repo.as_ref().is_some_and(|r| r.is_bare());
            if follow {
                Ok(Box::new(LocalBranch::open(spec, &dir, prefix, opts)?))
            } else {
                Ok(Box::new(WorkDir::with_limits(
                    &dir.join(prefix),
                    opts.limits,
                )?))
            }
        }
    }
}

/// The branch that `HEAD` of `repo` names.
fn head_branch(repo: &git2::Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    head.symbolic_target()
        .ok()??
        .strip_prefix("refs/heads/")
        .map(String::from)
}

/// Reads a followed branch and its commits from one repository (the followed one, or a
/// remote's cache).
struct Reader {
    git_dir: PathBuf,
    /// The repository as the user named it, for messages (no credentials).
    shown: String,
    prefix: PathBuf,
    limits: Limits,
    signatures: Option<SignaturePolicy>,
}

impl Reader {
    fn repo(&self) -> Result<git2::Repository, SourceError> {
        git2::Repository::open(&self.git_dir).map_err(|e| SourceError::Repository {
            repo: self.shown.clone(),
            message: e.message().to_string(),
        })
    }

    fn head(&self, branch: &str, hint: &'static str) -> Result<git2::Oid, SourceError> {
        let repo = self.repo()?;
        let no_branch = || SourceError::NoBranch {
            repo: self.shown.clone(),
            branch: branch.to_string(),
            hint,
        };
        let reference = repo
            .find_reference(&format!("refs/heads/{branch}"))
            .map_err(|_| no_branch())?;
        let commit = reference.peel_to_commit().map_err(|_| no_branch())?;
        Ok(commit.id())
    }

    fn tree(
        &self,
        rev: Option<&str>,
        branch: &str,
        hint: &'static str,
    ) -> Result<Tree, SourceError> {
        let repo = self.repo()?;
        let oid = match rev {
            None => self.head(branch, hint)?,
            Some(rev) => repo
                .revparse_single(rev)
                .and_then(|o| o.peel_to_commit())
                .map(|c| c.id())
                .map_err(|e| SourceError::BadRevision {
                    rev: rev.to_string(),
                    repo: PathBuf::from(&self.shown),
                    message: e.message().to_string(),
                })?,
        };
        Ok(GitTree::at_prefix(repo, oid, &self.prefix, self.limits)?.into_tree())
    }

    fn verify(&self, commit: &str) -> Result<(), String> {
        let Some(policy) = &self.signatures else {
            return Ok(());
        };
        let repo = self.repo().map_err(|e| e.to_string())?;
        verify_commit(&repo, commit, policy)
    }

    fn describe(&self, branch: Option<&str>) -> String {
        let branch = match branch {
            Some(b) => format!("branch {b}"),
            None => "default branch".to_string(),
        };
        if self.prefix.as_os_str().is_empty() {
            format!("{} ({branch})", self.shown)
        } else {
            format!("{} ({branch}, path {})", self.shown, self.prefix.display())
        }
    }
}

/// A branch of a repository on this machine (bare, a `file://` URL, or a working tree with
/// `--branch`), read straight from its object database: nothing fetched, nothing copied.
pub struct LocalBranch {
    reader: Reader,
    branch: String,
    /// Where refs live (a worktree's common directory): what a push changes.
    refs_dir: PathBuf,
}

impl LocalBranch {
    fn open(
        spec: &str,
        dir: &Path,
        prefix: PathBuf,
        opts: FollowOptions,
    ) -> Result<LocalBranch, SourceError> {
        let repo = git2::Repository::discover(dir).map_err(|_| SourceError::Repository {
            repo: spec.to_string(),
            message: "it is not a git repository".into(),
        })?;
        // `--repo` may name a folder inside a working tree: the fleet root is below it.
        let prefix = match repo.workdir() {
            Some(top) => relative_to(dir, top).join(prefix),
            None => prefix,
        };
        let branch = match opts.branch {
            Some(b) => b,
            None => head_branch(&repo).ok_or_else(|| SourceError::Unsupported {
                spec: spec.to_string(),
                reason: "its HEAD names no branch: give `--branch`".into(),
            })?,
        };
        Ok(LocalBranch {
            reader: Reader {
                git_dir: repo.path().to_path_buf(),
                shown: spec.to_string(),
                prefix,
                limits: opts.limits,
                signatures: opts.signatures,
            },
            branch,
            refs_dir: repo.commondir().to_path_buf(),
        })
    }
}

impl Source for LocalBranch {
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError> {
        self.reader.tree(rev, &self.branch, "")
    }

    fn latest(&self) -> Result<String, SourceError> {
        Ok(self.reader.head(&self.branch, "")?.to_string())
    }

    fn describe(&self) -> String {
        self.reader.describe(Some(&self.branch))
    }

    fn watch_refs(&self) -> Option<PathBuf> {
        Some(self.refs_dir.clone())
    }

    fn followed_branch(&self) -> Option<String> {
        Some(self.branch.clone())
    }

    fn verify(&self, commit: &str) -> Result<(), String> {
        self.reader.verify(commit)
    }

    fn commit_meta(&self, commit: &str) -> Option<crate::model::history::CommitMeta> {
        super::meta::commit_meta(&self.reader.git_dir, commit)
    }
}

/// HTTPS credentials: a user and a password (a token alone is sent as `x-access-token`'s).
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Credential {
    pub user: String,
    pub password: String,
}

impl Credential {
    /// A credentials file's text: `user:password` or a token, trailing whitespace trimmed.
    pub fn parse(text: &str) -> Option<Credential> {
        let line = text.trim_end().lines().next().unwrap_or("").trim_end();
        if line.is_empty() {
            return None;
        }
        Some(match line.split_once(':') {
            Some((user, password)) => Credential {
                user: user.into(),
                password: password.into(),
            },
            None => Credential {
                user: "x-access-token".into(),
                password: line.into(),
            },
        })
    }

    pub fn basic(&self) -> String {
        base64(format!("{}:{}", self.user, self.password).as_bytes())
    }

    /// What must never be shown: the password and the header form it travels in.
    pub fn secrets(&self) -> Vec<String> {
        vec![self.password.clone(), self.basic()]
    }
}

/// Standard base64 with padding.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `text` with the userinfo of every URL that may hold a secret (`user:pass@`, or any userinfo
/// of an `http(s)://` URL, where a token alone is one) shown as `***@`. An ssh user stays.
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let http = head.ends_with("http://") || head.ends_with("https://");
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) if http || tail[..at].contains(':') => {
                out.push_str("***");
                out.push_str(&tail[at..end]);
            }
            _ => out.push_str(&tail[..end]),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// `text` with each secret replaced by `***` (longest first) and URLs' userinfo redacted.
pub(super) fn mask(text: &str, secrets: &[String]) -> String {
    let mut by_len: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    by_len.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in by_len {
        out = out.replace(s.as_str(), "***");
    }
    redact_userinfo(&out)
}

/// Whether git's output says the server refused who we are (not that it was unreachable).
pub(super) fn auth_failed(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "authentication failed",
        "could not read username",
        "could not read password",
        "access denied",
        "invalid username or password",
        "returned error: 401",
        "returned error: 403",
        "permission denied (publickey",
    ]
    .iter()
    .any(|m| s.contains(m))
}

/// Counts authentication failures in a row with the same credentials; after
/// `MAX_AUTH_FAILURES`, refuses to try them again until they change.
#[derive(Debug, Default)]
pub(super) struct AuthGuard {
    failures: u32,
    credentials: Option<[u8; 32]>,
}

impl AuthGuard {
    /// Before a fetch with credentials hashing to `hash`: `Err` while they are refused.
    pub fn check(&mut self, hash: [u8; 32]) -> Result<(), u32> {
        if self.credentials != Some(hash) {
            self.credentials = Some(hash);
            self.failures = 0;
        }
        if self.failures >= MAX_AUTH_FAILURES {
            Err(self.failures)
        } else {
            Ok(())
        }
    }

    /// After a fetch: a success forgets past failures, an authentication failure counts, any
    /// other failure (the network) neither.
    pub fn record(&mut self, succeeded: bool, auth_failure: bool) {
        if succeeded {
            self.failures = 0;
        } else if auth_failure {
            self.failures += 1;
        }
    }
}

/// Where a remote's credentials come from.
enum CredentialSource {
    None,
    File(PathBuf),
    /// The userinfo of the URL the user gave (removed from the URL git is given).
    Url(Credential),
}

/// What a remote's fetches share (behind one lock, so two never run at once on one cache).
#[derive(Default)]
struct RemoteState {
    /// The branch followed: `--branch`, or the remote's HEAD once asked.
    branch: Option<String>,
    guard: AuthGuard,
}

/// A branch of a remote repository (`ssh://`, `user@host:path`, `https://`), fetched by the
/// system `git` into a bare cache under the state directory and read from the cache.
pub struct RemoteBranch {
    /// The URL given to git: without credentials.
    url: String,
    reader: Reader,
    credentials: CredentialSource,
    ca_file: Option<PathBuf>,
    /// Held only for moments (a description never waits for a fetch).
    state: Mutex<RemoteState>,
    /// Held for a whole fetch: two never run at once on one cache.
    fetching: Mutex<()>,
}

impl RemoteBranch {
    /// Any URL (or path) git fetches from; nothing is fetched yet.
    pub(super) fn new(
        url: &str,
        prefix: PathBuf,
        opts: FollowOptions,
    ) -> Result<RemoteBranch, SourceError> {
        let (url, from_url) = split_credentials(url);
        let credentials = match (opts.credentials_file, from_url) {
            (Some(file), _) => CredentialSource::File(file),
            (None, Some(c)) => CredentialSource::Url(c),
            (None, None) => CredentialSource::None,
        };
        let digest = Sha256::digest(url.as_bytes());
        let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Ok(RemoteBranch {
            reader: Reader {
                git_dir: opts.cache_dir.join(name),
                shown: redact_userinfo(&url),
                prefix,
                limits: opts.limits,
                signatures: opts.signatures,
            },
            url,
            credentials,
            ca_file: opts.ca_file,
            state: Mutex::new(RemoteState {
                branch: opts.branch,
                guard: AuthGuard::default(),
            }),
            fetching: Mutex::new(()),
        })
    }

    /// The bare cache this remote is fetched into.
    pub fn cache(&self) -> &Path {
        &self.reader.git_dir
    }

    /// The URL git is given (without credentials).
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn branch(&self) -> Result<String, SourceError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.branch.clone().ok_or_else(|| SourceError::Repository {
            repo: self.reader.shown.clone(),
            message: "not fetched yet (its default branch is not known)".into(),
        })
    }

    /// The credentials now (the file is read on every fetch, so a rotated one is used), and a
    /// hash of them; `None` without credentials.
    pub(super) fn credential(&self) -> Result<Option<(Credential, [u8; 32])>, SourceError> {
        let cred = match &self.credentials {
            CredentialSource::None => return Ok(None),
            CredentialSource::Url(c) => c.clone(),
            CredentialSource::File(path) => {
                let fail = |message: String| SourceError::Fetch {
                    remote: self.reader.shown.clone(),
                    message,
                };
                let meta = std::fs::metadata(path).map_err(|e| {
                    fail(format!(
                        "cannot read the credentials file `{}`: {e}",
                        path.display()
                    ))
                })?;
                if meta.len() > CREDENTIALS_CAP {
                    return Err(fail(format!(
                        "the credentials file `{}` is larger than {CREDENTIALS_CAP} bytes",
                        path.display()
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    fail(format!(
                        "cannot read the credentials file `{}`: {e}",
                        path.display()
                    ))
                })?;
                Credential::parse(&text).ok_or_else(|| {
                    fail(format!(
                        "the credentials file `{}` is empty",
                        path.display()
                    ))
                })?
            }
        };
        let hash: [u8; 32] = Sha256::digest(format!("{}\n{}", cred.user, cred.password)).into();
        Ok(Some((cred, hash)))
    }

    /// `git` with the strict, prompt-free environment and the credentials in its config.
    pub(super) fn git(&self, cred: Option<&Credential>) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir").arg(&self.reader.git_dir);
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_CONFIG_PARAMETERS",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_INDEX_FILE",
        ] {
            cmd.env_remove(var);
        }
        // ssh takes an option's first value, and command-line options before its config files:
        // these win over the user's setup, which otherwise applies (`-F`, agent, known_hosts).
        let ssh = std::env::var("GIT_SSH_COMMAND")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "ssh".into());
        cmd.env(
            "GIT_SSH_COMMAND",
            format!("{ssh} -o BatchMode=yes -o StrictHostKeyChecking=yes"),
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS_REQUIRE", "never")
        // The transports a followed remote may use, whatever the user's config allows (never
        // `ext::`, which runs a command).
        .env("GIT_ALLOW_PROTOCOL", "ssh:https:http:file")
        // English messages, which `auth_failed` reads.
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C");
        // No credential helper: the given credentials are tried once per fetch, never a stored
        // or prompted other.
        let mut config: Vec<(&str, String)> = vec![("credential.helper", String::new())];
        if let Some(c) = cred {
            config.push((
                "http.extraHeader",
                format!("Authorization: Basic {}", c.basic()),
            ));
        }
        if let Some(ca) = &self.ca_file {
            let ca = std::path::absolute(ca).unwrap_or_else(|_| ca.clone());
            // The environment's `GIT_SSL_CAINFO` (set machine-wide on some systems) wins over
            // any config: the CA given for this remote must win over both.
            cmd.env("GIT_SSL_CAINFO", &ca);
            config.push(("http.sslCAInfo", ca.to_string_lossy().into_owned()));
        }
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (key, value)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), key)
                .env(format!("GIT_CONFIG_VALUE_{i}"), value);
        }
        cmd
    }

    /// Runs git; `Err` with its masked, bounded output and whether it was an authentication
    /// failure.
    pub(super) fn run_git(&self, cmd: Command, secrets: &[String]) -> Result<Ran, (String, bool)> {
        let ran = run(cmd, None, FETCH_TIMEOUT, OUTPUT_CAP)
            .map_err(|e| (format!("cannot run git: {e}"), false))?;
        if ran.success() {
            return Ok(ran);
        }
        let text = String::from_utf8_lossy(&ran.stderr);
        let auth = auth_failed(&text);
        // One line: git's lines joined, for log lines and API answers.
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let masked = mask(&lines.join("; "), secrets);
        let mut message: String = masked.chars().take(ERROR_CAP).collect();
        if message.len() < masked.len() {
            message.push_str(" […]");
        }
        if ran.status.is_none() {
            message = format!(
                "git did not finish within {} s and was stopped{}{message}",
                FETCH_TIMEOUT.as_secs(),
                if message.is_empty() { "" } else { ": " }
            );
        } else if message.is_empty() {
            message = format!(
                "git failed ({})",
                ran.status.map(|s| s.to_string()).unwrap_or_default()
            );
        }
        Err((message, auth))
    }

    /// The remote's default branch (`ls-remote --symref URL HEAD`).
    fn default_branch(
        &self,
        cred: Option<&Credential>,
        secrets: &[String],
    ) -> Result<String, (String, bool)> {
        let mut cmd = self.git(cred);
        cmd.args(["ls-remote", "--symref", "--", &self.url, "HEAD"]);
        let ran = self.run_git(cmd, secrets)?;
        let out = String::from_utf8_lossy(&ran.stdout);
        out.lines()
            .find_map(|l| {
                let (target, name) = l.strip_prefix("ref: ")?.split_once('\t')?;
                (name == "HEAD")
                    .then_some(target)?
                    .strip_prefix("refs/heads/")
                    .map(String::from)
            })
            .ok_or_else(|| {
                (
                    "its HEAD names no branch: give `--branch`".to_string(),
                    false,
                )
            })
    }

    fn ensure_cache(&self) -> Result<(), SourceError> {
        let cache = &self.reader.git_dir;
        if git2::Repository::open_bare(cache).is_ok() {
            return Ok(());
        }
        let fail = |message: String| SourceError::Repository {
            repo: cache.display().to_string(),
            message,
        };
        if let Some(parent) = cache.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| fail(format!("cannot create the cache folder: {e}")))?;
        }
        git2::Repository::init_bare(cache).map(drop).map_err(|e| {
            fail(format!(
                "cannot create the cache repository: {}",
                e.message()
            ))
        })
    }
}

/// A URL without the userinfo of an `http(s)://` URL, and that userinfo as credentials (it is
/// never given to git in argv). Other URLs are kept as they are (an ssh user is no secret).
fn split_credentials(url: &str) -> (String, Option<Credential>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    if scheme != "https" && scheme != "http" {
        return (url.to_string(), None);
    }
    let end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..end].rfind('@') else {
        return (url.to_string(), None);
    };
    let cred = Credential::parse(&rest[..at]);
    (format!("{scheme}://{}", &rest[at + 1..]), cred)
}

impl Source for RemoteBranch {
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError> {
        self.reader.tree(rev, &self.branch()?, " (fetch it first)")
    }

    fn latest(&self) -> Result<String, SourceError> {
        Ok(self
            .reader
            .head(&self.branch()?, " (fetch it first)")?
            .to_string())
    }

    /// Runs `git fetch` into the cache; blocks up to `FETCH_TIMEOUT`.
    fn fetch(&self) -> Result<(), SourceError> {
        let _fetching = self.fetching.lock().unwrap_or_else(PoisonError::into_inner);
        let state = || self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let credential = self.credential()?;
        let secrets = credential
            .as_ref()
            .map(|(c, _)| c.secrets())
            .unwrap_or_default();
        if let Some((_, hash)) = &credential {
            let checked = state().guard.check(*hash);
            if let Err(n) = checked {
                let until = match &self.credentials {
                    CredentialSource::File(p) => {
                        format!("the credentials file `{}` changes", p.display())
                    }
                    _ => "the daemon is restarted with other credentials".into(),
                };
                return Err(SourceError::Fetch {
                    remote: self.reader.shown.clone(),
                    message: format!(
                        "authentication failed {n} times in a row: not trying these credentials again until {until}"
                    ),
                });
            }
        }
        self.ensure_cache()?;
        let cred = credential.as_ref().map(|(c, _)| c);
        let known = state().branch.clone();
        let result = (|| {
            let branch = match known {
                Some(b) => b,
                None => self.default_branch(cred, &secrets)?,
            };
            let mut cmd = self.git(cred);
            cmd.args([
                "fetch",
                "--prune",
                "--no-tags",
                "--no-write-fetch-head",
                "--",
                &self.url,
            ])
            .arg(format!("+refs/heads/{branch}:refs/heads/{branch}"));
            self.run_git(cmd, &secrets)?;
            Ok(branch)
        })();
        match result {
            Ok(branch) => {
                let mut state = state();
                state.guard.record(true, false);
                state.branch = Some(branch);
                Ok(())
            }
            Err((message, auth)) => {
                if credential.is_some() {
                    state().guard.record(false, auth);
                }
                Err(SourceError::Fetch {
                    remote: self.reader.shown.clone(),
                    message,
                })
            }
        }
    }

    fn describe(&self) -> String {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.reader.describe(state.branch.as_deref())
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn followed_branch(&self) -> Option<String> {
        self.branch().ok()
    }

    fn secrets(&self) -> Vec<String> {
        match self.credential() {
            Ok(Some((c, _))) => c.secrets(),
            _ => Vec::new(),
        }
    }

    fn verify(&self, commit: &str) -> Result<(), String> {
        self.reader.verify(commit)
    }

    fn commit_meta(&self, commit: &str) -> Option<crate::model::history::CommitMeta> {
        super::meta::commit_meta(&self.reader.git_dir, commit)
    }
}
