//! Who wrote a commit and what it says (`CommitMeta`), for the deploy history: read with git2
//! from the repository a source reads (a working tree's, a followed one, a remote's cache).
//!
//! Best effort and read only: a commit that cannot be found (working files outside git, a
//! cache pruned meanwhile) has no metadata, which is never an error. It must not write to the
//! repository or run git.

use std::path::Path;

use crate::model::history::CommitMeta;

/// The author and message of `commit` (a full or abbreviated id; a `-dirty` suffix is the
/// commit the working files were changed from) in the repository at or above `dir`.
pub(super) fn commit_meta(dir: &Path, commit: &str) -> Option<CommitMeta> {
    let id = commit.strip_suffix("-dirty").unwrap_or(commit);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        // `unversioned`, `uncommitted`: nothing in git to describe.
        return None;
    }
    let repo = git2::Repository::discover(dir).ok()?;
    let found = repo.revparse_single(id).ok()?.peel_to_commit().ok()?;
    let author = found.author();
    let name = String::from_utf8_lossy(author.name_bytes()).into_owned();
    let email = String::from_utf8_lossy(author.email_bytes()).into_owned();
    let author = if email.is_empty() {
        name
    } else {
        format!("{name} <{email}>")
    };
    let message = String::from_utf8_lossy(found.message_bytes()).into_owned();
    Some(CommitMeta { author, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(dir: &Path, message: &str) -> String {
        let repo = git2::Repository::open(dir).unwrap();
        std::fs::write(dir.join("f"), message).unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("f")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("Ann Author", "ann@example.com").unwrap();
        let parents: Vec<git2::Commit> = repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit> = parents.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
            .to_string()
    }

    #[test]
    fn author_and_message_of_full_short_and_dirty_ids() {
        let dir = tempfile::tempdir().unwrap();
        git2::Repository::init(dir.path()).unwrap();
        let first = commit(dir.path(), "first\n\nwith a body\n");
        let second = commit(dir.path(), "second\n");
        let m = commit_meta(dir.path(), &first).unwrap();
        assert_eq!(m.author, "Ann Author <ann@example.com>");
        assert_eq!(m.message, "first\n\nwith a body\n");
        let short = format!("{}-dirty", &second[..12]);
        assert_eq!(commit_meta(dir.path(), &short).unwrap().message, "second\n");
        assert!(commit_meta(dir.path(), "unversioned").is_none());
        assert!(commit_meta(dir.path(), &"0".repeat(40)).is_none());
        let elsewhere = tempfile::tempdir().unwrap();
        assert!(commit_meta(elsewhere.path(), &first).is_none());
    }
}
