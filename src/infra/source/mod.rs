//! Where the desired state's files come from: the `Source` trait (the tree at a revision, the
//! latest revision, fetch now) and its implementations: a working directory (`WorkDir`) and a
//! commit's tree through git2 (`GitRev`). Following a remote branch is a third one.
//!
//! Trees implement `model::tree::RepoTree`, so the manifest reader never knows which it reads.
//! A commit is read straight from the object database with git2, without a checkout, which is
//! what lets `convoy diff --rev origin/main` run in CI on any working tree. A source reads when
//! asked and watches nothing: the daemon's triggers decide when to ask. It never writes to the
//! repository.

use std::path::{Path, PathBuf};

use crate::model::tree::{DirEntry, RepoTree};

/// Where the desired state comes from.
pub trait Source: Send + Sync {
    /// The files at `rev`, or at the source's own revision (the working files, the followed
    /// revision) when `None`.
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError>;
    /// The revision `tree(None)` would read now (a commit id, with `-dirty` for working files
    /// that differ from it): a trigger compares it with the last one read.
    fn latest(&self) -> Result<String, SourceError>;
    /// Brings the source up to date with its origin (nothing to do for local ones).
    fn fetch(&self) -> Result<(), SourceError> {
        Ok(())
    }
    /// Where the files come from, for messages.
    fn describe(&self) -> String;
    /// The local directory whose files make the desired state, when there is one (what a file
    /// watch should watch).
    fn local_dir(&self) -> Option<&Path> {
        None
    }
}

/// A repository's files at one revision, plus the commit to record on containers.
pub struct Tree {
    pub tree: Box<dyn RepoTree>,
    /// `abc123def456`, `abc123def456-dirty` (working files differ from HEAD), or
    /// `unversioned` (not in git).
    pub commit: String,
}

/// The working files of a directory (`--repo DIR`); other revisions through git.
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    pub fn new(root: &Path) -> Result<WorkDir, SourceError> {
        if !root.is_dir() {
            return Err(SourceError::NotADirectory {
                path: root.to_path_buf(),
            });
        }
        Ok(WorkDir {
            root: root.to_path_buf(),
        })
    }
}

impl Source for WorkDir {
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError> {
        match rev {
            None => Ok(Tree {
                commit: working_commit(&self.root),
                tree: Box::new(DirTree {
                    root: self.root.clone(),
                }),
            }),
            Some(rev) => git_tree(&self.root, rev),
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
}

/// A fixed revision of a git repository (`--rev REV`), read without a checkout.
pub struct GitRev {
    dir: PathBuf,
    rev: String,
}

impl Source for GitRev {
    fn tree(&self, rev: Option<&str>) -> Result<Tree, SourceError> {
        git_tree(&self.dir, rev.unwrap_or(&self.rev))
    }

    fn latest(&self) -> Result<String, SourceError> {
        Ok(GitTree::open(&self.dir, &self.rev)?.commit)
    }

    fn describe(&self) -> String {
        format!("{} at {}", self.dir.display(), self.rev)
    }
}

fn git_tree(dir: &Path, rev: &str) -> Result<Tree, SourceError> {
    let tree = GitTree::open(dir, rev)?;
    Ok(Tree {
        commit: tree.commit.clone(),
        tree: Box::new(tree),
    })
}

/// `--repo DIR` with an optional `--rev`: the working files, or that revision.
pub fn open(dir: &Path, rev: Option<&str>) -> Result<Box<dyn Source>, SourceError> {
    let work = WorkDir::new(dir)?;
    Ok(match rev {
        None => Box::new(work),
        Some(rev) => {
            // Resolved now, so that a bad revision is an error before anything else happens.
            GitTree::open(dir, rev)?;
            Box::new(GitRev {
                dir: dir.to_path_buf(),
                rev: rev.to_string(),
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
}

/// The files of a directory.
pub struct DirTree {
    pub root: PathBuf,
}

impl RepoTree for DirTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        let full = self.root.join(path);
        match std::fs::read(&full) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if full.is_dir() => Err(format!("`{path}` is a directory: {e}")),
            Err(e) => Err(format!("cannot read `{}`: {e}", full.display())),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>, String> {
        let full = self.root.join(dir);
        let rd = match std::fs::read_dir(&full) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(format!("cannot list `{}`: {e}", full.display())),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", full.display()))?;
            out.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                is_dir: entry.path().is_dir(),
            });
        }
        out.sort();
        Ok(out)
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
    pub commit: String,
}

impl GitTree {
    pub fn open(dir: &Path, rev: &str) -> Result<GitTree, SourceError> {
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
        // Resolved in a block: the commit borrows the repository, which moves into the tree.
        let (tree_id, commit) = {
            let commit = repo
                .revparse_single(rev)
                .and_then(|o| o.peel_to_commit())
                .map_err(bad)?;
            (commit.tree_id(), short(&commit.id()))
        };
        Ok(GitTree {
            repo,
            tree_id,
            prefix,
            commit,
        })
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

impl RepoTree for GitTree {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        match self.entry(path)? {
            None => Ok(None),
            Some(obj) => match obj.as_blob() {
                Some(blob) => Ok(Some(blob.content().to_vec())),
                None => Err(format!("`{path}` is not a file at {}", self.commit)),
            },
        }
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
