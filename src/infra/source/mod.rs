//! Where the desired state's files come from: the `Source` trait (the tree at a revision, the
//! latest revision, fetch now, whether a commit is signed by an allowed key) and its
//! implementations: a working directory (`WorkDir`), a commit's tree through git2 (`GitRev`),
//! and a followed branch (`branch`: of a local repository, or of a remote fetched into a cache).
//!
//! Trees implement `model::tree::RepoTree`, so the manifest reader never knows which it reads.
//! A commit is read straight from the object database with git2, without a checkout, which is
//! what lets `convoy diff --rev origin/main` run in CI on any working tree. A source reads when
//! asked and watches nothing: the daemon's triggers decide when to ask. It never writes to the
//! repository; only `revert` (`convoy rollback`'s commit) does, and only a new commit.
//!
//! Nothing read is trusted: a working file is read only when it resolves inside the repository
//! and is a regular file under its size cap (`read`), a commit's blob only when it is a file (a
//! link is not followed) under the same cap, checked before its contents are copied.

mod branch;
#[cfg(test)]
mod branch_tests;
mod meta;
mod read;
mod revert;
#[cfg(test)]
mod revert_tests;
mod run;
mod signature;
#[cfg(test)]
mod signature_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::model::tree::{DirEntry, RepoTree};
pub use branch::{
    open_follow, redact_userinfo, FollowOptions, LocalBranch, RemoteBranch, FETCH_TIMEOUT,
};
pub use read::{parse_size, Limits, MAX_FILE_SIZE_VAR};
pub use revert::{CommitLine, OpenOptions, RevertError, RollbackRepo};
/// Helper programs with a deadline, for the other infra modules that run one (`sops_keys`: gpg).
pub(crate) use run::{last_line, run as run_program};
pub use signature::{verify_commit, SignaturePolicy};

/// Where the desired state comes from.
pub trait Source: Send + Sync {
    /// The files at `rev`, or at the source's own revision (the working files, the followed
    /// revision) when `None`.
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError>;
    /// The revision `tree(None)` would read now (a commit id, with `-dirty` for working files
    /// that differ from it): a trigger compares it with the last one read.
    fn latest(&self) -> Result<String, SourceError>;
    /// Brings the source up to date with its origin (nothing to do for local ones). It blocks
    /// (a remote's runs `git fetch`, bounded by `FETCH_TIMEOUT`): call it from a blocking
    /// context.
    fn fetch(&self) -> Result<(), SourceError> {
        Ok(())
    }
    /// Where the files come from, for messages; never a credential.
    fn describe(&self) -> String;
    /// The local directory whose files make the desired state, when there is one (what a file
    /// watch should watch).
    fn local_dir(&self) -> Option<&Path> {
        None
    }
    /// The git directory whose `refs/` and `packed-refs` say when the followed branch moves
    /// (a local branch source): what a watch of pushes should watch, recursively.
    fn watch_refs(&self) -> Option<PathBuf> {
        None
    }
    /// Whether `latest` only changes after `fetch` reaches the network (poll it).
    /// The branch followed (once known: a remote's default branch is learnt by its first
    /// fetch), so webhooks can tell pushes to it from others.
    fn followed_branch(&self) -> Option<String> {
        None
    }
    fn is_remote(&self) -> bool {
        false
    }
    /// Credential values this source uses (a password or token, and the header form it is
    /// sent in), for the log writer to mask; empty for sources without credentials.
    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }
    /// `Ok` when `commit` may be applied under the source's signature policy (always, without
    /// one); otherwise one line naming the commit and why not. Blocks while `ssh-keygen` or
    /// `gpgv` runs.
    fn verify(&self, _commit: &str) -> Result<(), String> {
        Ok(())
    }
    /// Who wrote `commit` and its message, for the deploy history; `None` when unknown (not
    /// in git, not found). Blocks while git2 reads the repository.
    fn commit_meta(&self, _commit: &str) -> Option<crate::model::history::CommitMeta> {
        None
    }
}

/// A repository's files at one revision, plus the commit to record on containers.
pub struct Tree {
    pub tree: Box<dyn RepoTree>,
    /// `abc123def456`, `abc123def456-dirty` (working files differ from HEAD), or
    /// `unversioned` (not in git); the full 40 hex digits for a followed branch.
    pub commit: String,
    /// What the manifest reads, as content: the git tree id of the fleet root at a commit, so
    /// two commits that change nothing below it share a key. `None` for working files (each
    /// edit is new), and for a revision whose commit lacks the fleet root.
    pub key: Option<String>,
    /// The commit's committer time (Unix seconds), for git revisions.
    pub commit_time: Option<i64>,
}

/// The working files of a directory (`--repo DIR`); other revisions through git.
pub struct WorkDir {
    root: PathBuf,
    limits: Limits,
}

impl WorkDir {
    /// With the size caps of the environment (`CONVOY_MAX_FILE_SIZE`, else the defaults).
    pub fn new(root: &Path) -> Result<WorkDir, SourceError> {
        WorkDir::with_limits(root, Limits::from_env().map_err(SourceError::Limit)?)
    }

    pub fn with_limits(root: &Path, limits: Limits) -> Result<WorkDir, SourceError> {
        if !root.is_dir() {
            return Err(SourceError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        Ok(WorkDir {
            root: root.to_path_buf(),
            limits,
        })
    }
}

impl Source for WorkDir {
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError> {
        match rev {
            None => Ok(Tree {
                commit: working_commit(&self.root),
                key: None,
                commit_time: None,
                tree: Box::new(DirTree {
                    root: self.root.clone(),
                    limits: self.limits,
                }),
            }),
            Some(rev) => git_tree(&self.root, rev, self.limits),
        }
    }

    fn latest(&self) -> Result<String, SourceError> {
        Ok(working_commit(&self.root))
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn commit_meta(&self, commit: &str) -> Option<crate::model::history::CommitMeta> {
        meta::commit_meta(&self.root, commit)
    }
}

/// A fixed revision of a git repository (`--rev REV`), read without a checkout.
pub struct GitRev {
    dir: PathBuf,
    rev: String,
    limits: Limits,
}

impl Source for GitRev {
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError> {
        git_tree(&self.dir, rev.unwrap_or(&self.rev), self.limits)
    }

    fn latest(&self) -> Result<String, SourceError> {
        Ok(GitTree::open(&self.dir, &self.rev, self.limits)?.commit)
    }

    fn describe(&self) -> String {
        format!("{} at {}", self.dir.display(), self.rev)
    }

    fn commit_meta(&self, commit: &str) -> Option<crate::model::history::CommitMeta> {
        meta::commit_meta(&self.dir, commit)
    }
}

fn git_tree(dir: &Path, rev: &str, limits: Limits) -> Result<Tree, SourceError> {
    Ok(GitTree::open(dir, rev, limits)?.into_tree())
}

/// `--repo DIR` with an optional `--rev`: the working files, or that revision; with the size
/// caps of the environment (`CONVOY_MAX_FILE_SIZE`, else the defaults).
pub fn open(dir: &Path, rev: Option<&str>) -> Result<Box<dyn Source>, SourceError> {
    open_with(dir, rev, Limits::from_env().map_err(SourceError::Limit)?)
}

/// `open` with the given size caps.
pub fn open_with(
    dir: &Path,
    rev: Option<&str>,
    limits: Limits,
) -> Result<Box<dyn Source>, SourceError> {
    let work = WorkDir::with_limits(dir, limits)?;
    Ok(match rev {
        None => Box::new(work),
        Some(rev) => {
            // Resolved now, so that a bad revision is an error before anything else happens.
            GitTree::open(dir, rev, limits)?;
            Box::new(GitRev {
                dir: dir.to_path_buf(),
                rev: rev.to_string(),
                limits,
            })
        }
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("`{path}` is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("`--rev` needs a git repository, and `{path}` is not inside one")]
    NotGit { path: PathBuf },
    #[error("cannot resolve revision `{rev}` in `{repo}`: {message}")]
    BadRevision {
        rev: String,
        repo: PathBuf,
        message: String,
    },
    /// The size cap set in the environment is not a size.
    #[error("{0}")]
    Limit(String),
    /// `--path` is not a relative path inside the repository.
    #[error("`--path {path}`: {reason}")]
    BadPath { path: PathBuf, reason: &'static str },
    /// The fleet root is missing (or not a folder) at a commit.
    #[error("`{path}` is not a folder in commit {commit}")]
    MissingPath { path: PathBuf, commit: String },
    /// `--repo` names nothing Convoy can follow.
    #[error("cannot follow `{spec}`: {reason}")]
    Unsupported { spec: String, reason: String },
    /// A repository (or the cache of a remote) cannot be read: names it and says why.
    #[error("`{repo}`: {message}")]
    Repository { repo: String, message: String },
    /// The followed branch has no commit (yet, or any more).
    #[error("{repo} has no branch `{branch}`{hint}")]
    NoBranch {
        repo: String,
        branch: String,
        hint: &'static str,
    },
    /// Fetching a remote failed (credentials masked, git's output bounded).
    #[error("cannot fetch {remote}: {message}")]
    Fetch { remote: String, message: String },
}

/// The files of a directory: only regular files under their size cap, and only inside the
/// directory once every link is followed (a link inside the repository to a file inside it is
/// fine; one that leads out is an error naming where it leads).
pub struct DirTree {
    pub root: PathBuf,
    pub limits: Limits,
}

impl RepoTree for DirTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        read::read_file(&self.root, path, &self.limits)
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>, String> {
        read::list_dir(&self.root, dir)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// The files of one commit, below the fleet root's path inside the repository.
pub struct GitTree {
    repo: git2::Repository,
    tree_id: git2::Oid,
    /// The fleet root relative to the repository's top (`""` when they are the same).
    prefix: PathBuf,
    limits: Limits,
    pub commit: String,
    /// The id of the fleet root's tree (`Tree::key`), when the commit has it.
    pub key: Option<String>,
    /// The committer time, Unix seconds.
    pub commit_time: i64,
}

impl GitTree {
    pub fn open(dir: &Path, rev: &str, limits: Limits) -> Result<GitTree, SourceError> {
        let repo = git2::Repository::discover(dir).map_err(|_| SourceError::NotGit {
            path: dir.to_path_buf(),
        })?;
        let top = repo
            .workdir()
            .or_else(|| repo.path().parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let prefix = relative_to(dir, &top);
        let bad = |e: git2::Error| SourceError::BadRevision {
            rev: rev.to_string(),
            repo: top.clone(),
            message: e.message().to_string(),
        };
        let oid = repo
            .revparse_single(rev)
            .and_then(|o| o.peel_to_commit())
            .map(|c| c.id())
            .map_err(bad)?;
        let mut tree = GitTree::at(repo, oid, prefix, limits)?;
        tree.commit = short(&oid);
        Ok(tree)
    }

    /// The commit `commit` of `repo` (bare or not), read below `prefix` (a relative path
    /// inside the repository, `""` for its top), named by its full id. The fleet root missing
    /// at that commit is an error.
    pub fn at_prefix(
        repo: git2::Repository,
        commit: git2::Oid,
        prefix: &Path,
        limits: Limits,
    ) -> Result<GitTree, SourceError> {
        let tree = GitTree::at(repo, commit, prefix.to_path_buf(), limits)?;
        if tree.key.is_none() {
            return Err(SourceError::MissingPath {
                path: prefix.to_path_buf(),
                commit: commit.to_string(),
            });
        }
        Ok(tree)
    }

    /// The commit's tree, with the key of the tree at `prefix` when there is one there.
    fn at(
        repo: git2::Repository,
        commit: git2::Oid,
        prefix: PathBuf,
        limits: Limits,
    ) -> Result<GitTree, SourceError> {
        let bad = |e: git2::Error| SourceError::BadRevision {
            rev: commit.to_string(),
            repo: repo.path().to_path_buf(),
            message: e.message().to_string(),
        };
        // Resolved in a block: the commit borrows the repository, which moves into the tree.
        let (tree_id, key, commit_time) = {
            let c = repo.find_commit(commit).map_err(bad)?;
            let root = c.tree().map_err(bad)?;
            let key = if prefix.as_os_str().is_empty() {
                Some(root.id())
            } else {
                match root.get_path(&prefix) {
                    Ok(e) if e.kind() == Some(git2::ObjectType::Tree) => Some(e.id()),
                    Ok(_) => None,
                    Err(e) if e.code() == git2::ErrorCode::NotFound => None,
                    Err(e) => return Err(bad(e)),
                }
            };
            (root.id(), key, c.time().seconds())
        };
        Ok(GitTree {
            repo,
            tree_id,
            prefix,
            limits,
            commit: commit.to_string(),
            key: key.map(|k| k.to_string()),
            commit_time,
        })
    }

    /// As a `Tree`, naming its commit, key and time.
    pub fn into_tree(self) -> Tree {
        Tree {
            commit: self.commit.clone(),
            key: self.key.clone(),
            commit_time: Some(self.commit_time),
            tree: Box::new(self),
        }
    }

    /// The entry at `path`, without loading what it points to.
    fn tree_entry(&self, path: &str) -> Result<Option<git2::TreeEntry<'static>>, String> {
        let tree = self
            .repo
            .find_tree(self.tree_id)
            .map_err(|e| e.message().to_string())?;
        match tree.get_path(&self.prefix.join(path)) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.message().to_string()),
        }
    }

    fn entry(&self, path: &str) -> Result<Option<git2::Object<'_>>, String> {
        let tree = self
            .repo
            .find_tree(self.tree_id)
            .map_err(|e| e.message().to_string())?;
        let full = self.prefix.join(path);
        if full.as_os_str().is_empty() {
            return Ok(Some(tree.into_object()));
        }
        match tree.get_path(&full) {
            Ok(entry) => entry
                .to_object(&self.repo)
                .map(Some)
                .map_err(|e| e.message().to_string()),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.message().to_string()),
        }
    }
}

/// The mode git records for a symbolic link.
const GIT_LINK_MODE: i32 = 0o120000;

impl RepoTree for GitTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(entry) = self.tree_entry(path)? else {
            return Ok(None);
        };
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return Err(format!("it is not a file at {}", self.commit));
        }
        if entry.filemode() == GIT_LINK_MODE {
            return Err(format!(
                "it is a symbolic link at {}, and links are not followed in a revision",
                self.commit
            ));
        }
        // The size from the object's header, before its contents are inflated and copied.
        let odb = self.repo.odb().map_err(|e| e.message().to_string())?;
        let (size, _) = odb
            .read_header(entry.id())
            .map_err(|e| e.message().to_string())?;
        let cap = self.limits.for_path(path);
        if size as u64 > cap {
            return Err(self.limits.too_large(size as u64, cap));
        }
        let blob = self
            .repo
            .find_blob(entry.id())
            .map_err(|e| e.message().to_string())?;
        Ok(Some(blob.content().to_vec()))
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>, String> {
        let Some(obj) = self.entry(dir)? else {
            return Ok(Vec::new());
        };
        let Some(tree) = obj.as_tree() else {
            return Ok(Vec::new());
        };
        let mut out: Vec<DirEntry> = tree
            .iter()
            .filter_map(|e| {
                Some(DirEntry {
                    name: e.name().ok()?.to_string(),
                    is_dir: e.kind() == Some(git2::ObjectType::Tree),
                })
            })
            .collect();
        out.sort();
        Ok(out)
    }

    fn describe(&self) -> String {
        self.commit.clone()
    }
}

fn short(oid: &git2::Oid) -> String {
    oid.to_string().chars().take(12).collect()
}

fn relative_to(dir: &Path, top: &Path) -> PathBuf {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let top = top.canonicalize().unwrap_or_else(|_| top.to_path_buf());
    dir.strip_prefix(&top)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The commit that working files correspond to: HEAD, with `-dirty` when files below `dir`
/// differ from it (untracked ones included); `unversioned` outside git.
fn working_commit(dir: &Path) -> String {
    let Ok(repo) = git2::Repository::discover(dir) else {
        return "unversioned".into();
    };
    let head = match repo.head().ok().and_then(|h| h.peel_to_commit().ok()) {
        Some(c) => short(&c.id()),
        None => return "uncommitted".into(),
    };
    let Some(top) = repo.workdir().map(Path::to_path_buf) else {
        return head;
    };
    let prefix = relative_to(dir, &top);
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true).recurse_untracked_dirs(true);
    if !prefix.as_os_str().is_empty() {
        opts.pathspec(prefix.to_string_lossy().as_ref());
    }
    let dirty = match repo.statuses(Some(&mut opts)) {
        Ok(st) => st.iter().any(|s| s.status() != git2::Status::IGNORED),
        Err(_) => false,
    };
    if dirty {
        format!("{head}-dirty")
    } else {
        head
    }
}
