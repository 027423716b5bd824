//! The one place Convoy writes to a fleet repository: `convoy rollback`'s revert commit. A
//! revert is a new commit on the branch whose tree is an earlier commit's, so git stays the
//! single record of what should run and going back is a commit like any other.
//!
//! A working tree gets the commit on its checked-out branch, the branch moved only if it is
//! still where it was read (compare and swap), and its index and files checked out, so the
//! next `apply` runs the reverted tree as a clean commit. A bare repository or a URL is fetched
//! into a private clone with the same strict, prompt-free git as a followed remote, and the
//! commit is pushed from there: a branch that moved since it was read makes the push
//! non-fast-forward, and the server refuses it. Either way nothing changes unless everything
//! does. This module decides neither which commit to return to nor whether to write: the
//! command does. It blocks (git runs): call it off the async threads.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::branch::{fleet_path, RemoteBranch};
use super::run::{run, PrivateDir, Ran};
use super::{FollowOptions, GitRev, Limits, Source};

/// The longest one local git command (commit-tree, update-ref, read-tree) may run.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of git's output is kept.
const OUTPUT_CAP: usize = 64 * 1024;
/// How many commits a walk of the branch's history looks at.
pub const WALK_LIMIT: usize = 1000;
/// How many changed paths a dirty-tree refusal names.
const DIRTY_SHOWN: usize = 20;

/// A commit as one line: its full id and its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitLine {
    pub id: String,
    pub subject: String,
}

impl CommitLine {
    /// The first 12 hex digits, as `apply` labels a working tree's commits.
    pub fn short(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    /// The arguments or the repository cannot be used (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// The working tree has uncommitted changes: nothing was written (exit 1).
    #[error("`{top}` has uncommitted changes ({}): commit or discard them first; nothing was changed", .paths.join(", "))]
    Dirty { top: String, paths: Vec<String> },
    /// The branch moved since it was read: nothing was written (exit 1).
    #[error("branch `{branch}` moved since it was read ({detail}): nothing was changed; run the rollback again to revert from its new tip")]
    Moved { branch: String, detail: String },
    /// git failed for another reason.
    #[error("{0}")]
    Git(String),
}

/// How `open` reads the repository (`convoy rollback`'s flags).
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// The branch; a working tree's checked-out one, a remote's HEAD when `None`.
    pub branch: Option<String>,
    /// The fleet root inside the repository (bare repositories and URLs).
    pub path: Option<PathBuf>,
    pub credentials_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub limits: Limits,
}

enum Kind {
    Work {
        /// The working tree's top.
        top: PathBuf,
        /// Reads commits below the fleet root.
        reader: GitRev,
    },
    Published {
        remote: Box<RemoteBranch>,
        /// Holds the private clone; removed with it.
        _dir: PrivateDir,
    },
}

/// A repository opened for a rollback: its branch, the tip it was read at, and how to write.
pub struct RollbackRepo {
    kind: Kind,
    git_dir: PathBuf,
    branch: String,
    tip: git2::Oid,
    shown: String,
}

fn invalid(message: impl Into<String>) -> RevertError {
    RevertError::Invalid(message.into())
}

impl RollbackRepo {
    /// Opens `spec` (a working tree, a bare repository, a `file://` or remote URL). A bare
    /// repository or URL is fetched now into a private clone. Blocks.
    pub fn open(spec: &str, opts: OpenOptions) -> Result<RollbackRepo, RevertError> {
        let path = spec.strip_prefix("file://").unwrap_or(spec);
        let local = Path::new(path);
        if local.exists() {
            let repo = git2::Repository::discover(local)
                .map_err(|_| invalid(format!("`{spec}` is not inside a git repository")))?;
            if let Some(top) = repo.workdir().map(Path::to_path_buf) {
                return RollbackRepo::open_work(spec, local, &top, &repo, opts);
            }
            // A bare repository: written through a clone and a push, like a server's.
            let abs = std::path::absolute(repo.path()).unwrap_or_else(|_| repo.path().into());
            return RollbackRepo::open_published(&abs.to_string_lossy(), spec, opts);
        }
        if spec.contains("://") || spec.contains(':') {
            return RollbackRepo::open_published(spec, spec, opts);
        }
        Err(invalid(format!("`{spec}` does not exist")))
    }

    fn open_work(
        spec: &str,
        dir: &Path,
        top: &Path,
        repo: &git2::Repository,
        opts: OpenOptions,
    ) -> Result<RollbackRepo, RevertError> {
        let head = repo
            .find_reference("HEAD")
            .map_err(|e| invalid(format!("`{spec}`: {}", e.message())))?;
        let Some(branch) = head
            .symbolic_target()
            .ok()
            .flatten()
            .and_then(|t| t.strip_prefix("refs/heads/"))
            .map(String::from)
        else {
            return Err(invalid(format!(
                "`{spec}`: HEAD is detached; check out the branch to roll back first"
            )));
        };
        if let Some(wanted) = &opts.branch {
            if wanted != &branch {
                return Err(invalid(format!(
                    "`{spec}` has branch `{branch}` checked out, not `{wanted}`: check out `{wanted}` first, or give the bare repository or URL"
                )));
            }
        }
        if opts.path.is_some() {
            return Err(invalid(
                "`--path` is for a bare repository or URL; for a working tree, give the fleet's folder as `--repo`",
            ));
        }
        let tip = repo
            .refname_to_id(&format!("refs/heads/{branch}"))
            .map_err(|_| invalid(format!("`{spec}`: branch `{branch}` has no commit yet")))?;
        Ok(RollbackRepo {
            kind: Kind::Work {
                top: top.to_path_buf(),
                reader: GitRev {
                    dir: dir.to_path_buf(),
                    rev: tip.to_string(),
                    limits: opts.limits,
                },
            },
            git_dir: repo.path().to_path_buf(),
            branch,
            tip,
            shown: spec.to_string(),
        })
    }

    fn open_published(
        url: &str,
        spec: &str,
        opts: OpenOptions,
    ) -> Result<RollbackRepo, RevertError> {
        let dir = PrivateDir::new("rollback")
            .map_err(|e| RevertError::Git(format!("cannot create a temporary folder: {e}")))?;
        let prefix = fleet_path(opts.path.as_deref()).map_err(|e| invalid(e.to_string()))?;
        let follow = FollowOptions {
            branch: opts.branch,
            path: None,
            cache_dir: dir.path().to_path_buf(),
            credentials_file: opts.credentials_file,
            ca_file: opts.ca_file,
            signatures: None,
            limits: opts.limits,
        };
        let remote = RemoteBranch::new(url, prefix, follow).map_err(|e| invalid(e.to_string()))?;
        remote.fetch().map_err(|e| invalid(e.to_string()))?;
        let branch = remote.branch().map_err(|e| invalid(e.to_string()))?;
        let git_dir = remote.cache().to_path_buf();
        let repo = git2::Repository::open_bare(&git_dir)
            .map_err(|e| RevertError::Git(format!("the clone of `{spec}`: {}", e.message())))?;
        let refname = format!("refs/heads/{branch}");
        let tip = repo
            .refname_to_id(&refname)
            .map_err(|_| invalid(format!("`{spec}` has no branch `{branch}`")))?;
        // So that `--to HEAD~2` reads as it would in a clone of the branch.
        repo.set_head(&refname)
            .map_err(|e| RevertError::Git(e.message().to_string()))?;
        Ok(RollbackRepo {
            kind: Kind::Published {
                remote: Box::new(remote),
                _dir: dir,
            },
            git_dir,
            branch,
            tip,
            shown: super::redact_userinfo(spec),
        })
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The branch's commit when it was read.
    pub fn tip(&self) -> String {
        self.tip.to_string()
    }

    /// The repository as the user named it (no credentials).
    pub fn describe(&self) -> &str {
        &self.shown
    }

    /// Whether commits are written into a working tree (otherwise pushed).
    pub fn is_work_tree(&self) -> bool {
        matches!(self.kind, Kind::Work { .. })
    }

    /// Reads the fleet at any commit of the repository.
    pub fn source(&self) -> &dyn Source {
        match &self.kind {
            Kind::Work { reader, .. } => reader,
            Kind::Published { remote, .. } => remote.as_ref(),
        }
    }

    fn repo(&self) -> Result<git2::Repository, RevertError> {
        git2::Repository::open(&self.git_dir)
            .map_err(|e| RevertError::Git(format!("`{}`: {}", self.shown, e.message())))
    }

    /// `rev` as a full commit id.
    pub fn resolve(&self, rev: &str) -> Result<String, RevertError> {
        let repo = self.repo()?;
        repo.revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id().to_string())
            .map_err(|e| {
                invalid(format!(
                    "cannot resolve `{rev}` in `{}`: {}",
                    self.shown,
                    e.message()
                ))
            })
    }

    /// The tip and its first parents, newest first, at most `WALK_LIMIT`.
    pub fn first_parents(&self) -> Result<Vec<CommitLine>, RevertError> {
        let repo = self.repo()?;
        let mut out = Vec::new();
        let mut next = repo.find_commit(self.tip).ok();
        while let Some(c) = next {
            if out.len() >= WALK_LIMIT {
                break;
            }
            out.push(line(&c));
            next = c.parent(0).ok();
        }
        Ok(out)
    }

    /// The commits on the branch that `to` does not have, newest first (at most
    /// `WALK_LIMIT`): what a revert to `to` undoes.
    pub fn reverted(&self, to: &str) -> Result<Vec<CommitLine>, RevertError> {
        let repo = self.repo()?;
        let git = |e: git2::Error| RevertError::Git(e.message().to_string());
        let to = git2::Oid::from_str(to).map_err(git)?;
        let mut walk = repo.revwalk().map_err(git)?;
        walk.push(self.tip).map_err(git)?;
        walk.hide(to).map_err(git)?;
        walk.simplify_first_parent().map_err(git)?;
        let mut out = Vec::new();
        for oid in walk.take(WALK_LIMIT) {
            let c = repo.find_commit(oid.map_err(git)?).map_err(git)?;
            out.push(line(&c));
        }
        Ok(out)
    }

    /// The commit `id` as a line.
    pub fn commit_line(&self, id: &str) -> Result<CommitLine, RevertError> {
        let repo = self.repo()?;
        let oid = git2::Oid::from_str(id).map_err(|e| RevertError::Git(e.message().into()))?;
        let c = repo
            .find_commit(oid)
            .map_err(|e| RevertError::Git(e.message().into()))?;
        Ok(line(&c))
    }

    /// Whether two commits have the same whole tree.
    pub fn same_tree(&self, a: &str, b: &str) -> Result<bool, RevertError> {
        let repo = self.repo()?;
        let tree = |id: &str| -> Result<git2::Oid, RevertError> {
            let oid = git2::Oid::from_str(id).map_err(|e| RevertError::Git(e.message().into()))?;
            repo.find_commit(oid)
                .map(|c| c.tree_id())
                .map_err(|e| RevertError::Git(e.message().into()))
        };
        Ok(tree(a)? == tree(b)?)
    }

    /// A working tree's uncommitted changes (untracked files included, ignored ones not):
    /// `Err(Dirty)` when there are any.
    pub fn check_clean(&self) -> Result<(), RevertError> {
        let Kind::Work { top, .. } = &self.kind else {
            return Ok(());
        };
        let repo = self.repo()?;
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = repo
            .statuses(Some(&mut opts))
            .map_err(|e| RevertError::Git(e.message().into()))?;
        let mut paths: Vec<String> = statuses
            .iter()
            .filter(|s| s.status() != git2::Status::IGNORED && s.status() != git2::Status::CURRENT)
            .map(|s| s.path().unwrap_or("?").to_string())
            .collect();
        if paths.is_empty() {
            return Ok(());
        }
        let more = paths.len().saturating_sub(DIRTY_SHOWN);
        paths.truncate(DIRTY_SHOWN);
        if more > 0 {
            paths.push(format!("and {more} more"));
        }
        Err(RevertError::Dirty {
            top: top.display().to_string(),
            paths,
        })
    }

    /// Writes a commit whose tree is `to`'s on top of the tip, with `message`, signed with
    /// the user's git signing setup when `sign`; then moves the branch (working tree: after
    /// pushing first when `push`, so a refused push changes nothing) or pushes it. Returns the
    /// new commit's id.
    pub fn write(
        &self,
        to: &str,
        message: &str,
        sign: bool,
        push: bool,
    ) -> Result<String, RevertError> {
        self.check_clean()?;
        let repo = self.repo()?;
        let tree = {
            let oid = git2::Oid::from_str(to).map_err(|e| RevertError::Git(e.message().into()))?;
            repo.find_commit(oid)
                .map_err(|e| RevertError::Git(e.message().into()))?
                .tree_id()
                .to_string()
        };
        let tip = self.tip.to_string();
        let mut cmd = self.git();
        cmd.args(["commit-tree", &tree, "-p", &tip, "-F", "-"]);
        if sign {
            cmd.arg("-S");
        }
        if !has_identity(&self.git_dir) {
            // No `user.name`/`user.email` configured (a service account, CI): a name that says
            // who wrote it rather than a refusal.
            for (k, v) in [
                ("GIT_AUTHOR_NAME", "Convoy"),
                ("GIT_AUTHOR_EMAIL", "convoy@localhost"),
                ("GIT_COMMITTER_NAME", "Convoy"),
                ("GIT_COMMITTER_EMAIL", "convoy@localhost"),
            ] {
                cmd.env(k, v);
            }
        }
        let ran = local(cmd, Some(message.as_bytes()))?;
        let new = String::from_utf8_lossy(&ran.stdout).trim().to_string();
        if git2::Oid::from_str(&new).is_err() {
            return Err(RevertError::Git(format!(
                "git commit-tree printed no commit id: `{new}`"
            )));
        }
        match &self.kind {
            Kind::Published { remote, .. } => self.push_remote(remote, &new)?,
            Kind::Work { top, .. } => {
                if push {
                    self.push_upstream(&repo, &new)?;
                }
                self.move_work_branch(top, &new)?;
            }
        }
        Ok(new)
    }

    /// `git` on this repository, never prompting.
    fn git(&self) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir").arg(&self.git_dir);
        if let Kind::Work { top, .. } = &self.kind {
            cmd.arg("--work-tree").arg(top).current_dir(top);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C")
            .env("LANGUAGE", "C");
        cmd
    }

    fn push_remote(&self, remote: &RemoteBranch, new: &str) -> Result<(), RevertError> {
        let credential = remote
            .credential()
            .map_err(|e| RevertError::Git(e.to_string()))?;
        let secrets = credential
            .as_ref()
            .map(|(c, _)| c.secrets())
            .unwrap_or_default();
        let mut cmd = remote.git(credential.as_ref().map(|(c, _)| c));
        cmd.args(["push", "--", remote.url()])
            .arg(format!("{new}:refs/heads/{}", self.branch));
        match remote.run_git(cmd, &secrets) {
            Ok(_) => Ok(()),
            Err((message, _)) => Err(self.push_error(message)),
        }
    }

    /// A refused update (non-fast-forward, a ref that changed under the server's lock) is the
    /// branch having moved; anything else is git failing.
    fn push_error(&self, message: String) -> RevertError {
        let moved = [
            "[rejected]",
            "non-fast-forward",
            "fetch first",
            "failed to update ref",
            "cannot lock ref",
            "stale info",
        ];
        if moved.iter().any(|m| message.contains(m)) {
            RevertError::Moved {
                branch: self.branch.clone(),
                detail: message,
            }
        } else {
            RevertError::Git(format!("cannot push to `{}`: {message}", self.shown))
        }
    }

    /// A working tree's branch pushed to its upstream (`branch.<name>.remote` and `.merge`).
    fn push_upstream(&self, repo: &git2::Repository, new: &str) -> Result<(), RevertError> {
        let config = repo
            .config()
            .map_err(|e| RevertError::Git(e.message().into()))?;
        let remote = config.get_string(&format!("branch.{}.remote", self.branch));
        let merge = config.get_string(&format!("branch.{}.merge", self.branch));
        let (Ok(remote), Ok(merge)) = (remote, merge) else {
            return Err(invalid(format!(
                "branch `{}` has no upstream to push to: set one (`git branch -u REMOTE/{}`) or leave out `--push`",
                self.branch, self.branch
            )));
        };
        let mut cmd = self.git();
        cmd.env(
            "GIT_SSH_COMMAND",
            format!(
                "{} -o BatchMode=yes -o StrictHostKeyChecking=yes",
                std::env::var("GIT_SSH_COMMAND")
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "ssh".into())
            ),
        )
        .args(["push", "--", &remote])
        .arg(format!("{new}:{merge}"));
        let ran = run(cmd, None, super::FETCH_TIMEOUT, OUTPUT_CAP)
            .map_err(|e| RevertError::Git(format!("cannot run git: {e}")))?;
        if ran.success() {
            return Ok(());
        }
        Err(self.push_error(output_line(&ran)))
    }

    /// Moves the checked-out branch from the tip to `new` (refused when it moved), then brings
    /// the index and files from the tip's tree to `new`'s.
    fn move_work_branch(&self, top: &Path, new: &str) -> Result<(), RevertError> {
        let tip = self.tip.to_string();
        let refname = format!("refs/heads/{}", self.branch);
        let mut cmd = self.git();
        cmd.args(["update-ref", "-m", "convoy rollback", &refname, new, &tip]);
        if let Err(e) = local(cmd, None) {
            return Err(RevertError::Moved {
                branch: self.branch.clone(),
                detail: e.to_string(),
            });
        }
        let mut cmd = self.git();
        cmd.args(["read-tree", "-m", "-u", &tip, new]);
        local(cmd, None).map_err(|e| {
            RevertError::Git(format!(
                "the branch now points at {new}, but its files could not be checked out in `{}` ({e}): run `git reset --hard` there",
                top.display()
            ))
        })?;
        Ok(())
    }
}

fn line(c: &git2::Commit<'_>) -> CommitLine {
    CommitLine {
        id: c.id().to_string(),
        subject: c
            .summary()
            .ok()
            .flatten()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect(),
    }
}

/// Whether git knows who is committing (`user.name` and `user.email` or their variables).
fn has_identity(git_dir: &Path) -> bool {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(git_dir)
        .args(["var", "GIT_COMMITTER_IDENT"])
        .env("LC_ALL", "C");
    run(cmd, None, LOCAL_TIMEOUT, OUTPUT_CAP).is_ok_and(|r| r.success())
}

/// Runs a local git command; its output, or its last words as the error.
fn local(cmd: Command, stdin: Option<&[u8]>) -> Result<Ran, RevertError> {
    let ran = run(cmd, stdin, LOCAL_TIMEOUT, OUTPUT_CAP)
        .map_err(|e| RevertError::Git(format!("cannot run git: {e}")))?;
    if ran.success() {
        Ok(ran)
    } else {
        Err(RevertError::Git(output_line(&ran)))
    }
}

/// git's error output as one line, bounded.
fn output_line(ran: &Ran) -> String {
    let text = String::from_utf8_lossy(&ran.stderr);
    let mut text: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        text = String::from_utf8_lossy(&ran.stdout).trim().to_string();
    }
    text.chars().take(2000).collect()
}
