//! Read access to a repository's files at one revision: the one door through which the manifest
//! reads, so that it never touches a file system or git itself. Implemented by `infra::source`
//! (a directory, a commit's tree) and by tests (files in memory).

/// Read access to the files of a repository at one revision. Paths are relative to the fleet
/// root and use `/`.
pub trait RepoTree {
    /// The bytes of a file, `Ok(None)` when there is no such file.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String>;
    /// The names of the entries (files and folders) directly inside a folder, sorted; empty
    /// when the folder does not exist.
    fn list(&self, dir: &str) -> Result<Vec<DirEntry>, String>;
    /// A human name for where the files come from (`/srv/fleet`, `abc1234`), for messages.
    fn describe(&self) -> String;
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
}
