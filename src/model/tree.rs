//! Read access to a repository's files at one revision: the one door through which the manifest
//! reads, so that it never touches a file system or git itself. Implemented by `infra::source`
//! (a directory, a commit's tree) and by tests (files in memory).

/// Read access to the files of a repository at one revision. Paths are relative to the fleet
/// root and use `/`.
pub trait RepoTree {
    /// The bytes of a file, `Ok(None)` when there is no such file.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String>;
    /// The bytes as the repository stores them, never transformed (a SOPS-encrypted file stays
    /// encrypted): for what is shipped as it is, bind mounts and build contexts, so that a
    /// decrypted secret is never baked into an image or copied onto a host's disk.
    fn read_raw(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self.read(path)
    }
    /// The bytes of a file delivered whole into containers (a config's or secret's `file:`):
    /// as `read`, except that a decrypted file is given exactly as `sops --decrypt` prints it,
    /// where `read` may keep the encrypted file's lines for readers that report line numbers.
    fn read_whole(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self.read(path)
    }
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

/// The paths a reader used: files it read (or looked for) and folders it listed. What the
/// desired state is made of, so that a watcher can tell a change that matters from a log file
/// written beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeInputs {
    pub files: std::collections::BTreeSet<String>,
    pub dirs: std::collections::BTreeSet<String>,
}

impl TreeInputs {
    /// Whether a change at `path` (relative to the root, `/`-separated) can change what a
    /// reader of these inputs reads: a file it read or looked for, or an entry appearing in or
    /// leaving a folder it listed (`created_or_removed`).
    pub fn concerns(&self, path: &str, created_or_removed: bool) -> bool {
        if self.files.contains(path) {
            return true;
        }
        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        // A folder it listed gained or lost an entry, or a listed folder itself came or went.
        created_or_removed && (self.dirs.contains(parent) || self.dirs.contains(path))
    }
}

/// A `RepoTree` that remembers what was read through it.
pub struct RecordingTree<'a> {
    inner: &'a dyn RepoTree,
    inputs: std::cell::RefCell<TreeInputs>,
}

impl<'a> RecordingTree<'a> {
    pub fn new(inner: &'a dyn RepoTree) -> RecordingTree<'a> {
        RecordingTree {
            inner,
            inputs: Default::default(),
        }
    }

    pub fn into_inputs(self) -> TreeInputs {
        self.inputs.into_inner()
    }
}

impl RepoTree for RecordingTree<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self.inputs.borrow_mut().files.insert(path.to_string());
        self.inner.read(path)
    }

    fn read_raw(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self.inputs.borrow_mut().files.insert(path.to_string());
        self.inner.read_raw(path)
    }

    fn read_whole(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
        self.inputs.borrow_mut().files.insert(path.to_string());
        self.inner.read_whole(path)
    }

    fn list(&self, dir: &str) -> Result<Vec<DirEntry>, String> {
        self.inputs.borrow_mut().dirs.insert(dir.to_string());
        self.inner.list(dir)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_concern_read_files_and_entries_of_listed_folders_only() {
        let mut inputs = TreeInputs::default();
        inputs.files.insert("convoy.yaml".into());
        inputs.files.insert("stacks/web/compose.yaml".into());
        inputs.dirs.insert("stacks".into());
        inputs.dirs.insert("stacks/web".into());
        assert!(inputs.concerns("convoy.yaml", false));
        assert!(inputs.concerns("stacks/web/compose.yaml", false));
        // A new stack folder, a new compose file beside the old one.
        assert!(inputs.concerns("stacks/api", true));
        assert!(inputs.concerns("stacks/web/compose.yml", true));
        // A log file written and appended to beside the manifests.
        assert!(!inputs.concerns("app.log", true));
        assert!(!inputs.concerns("stacks/web/app.log", false));
        assert!(!inputs.concerns("stacks/web/data/x", true));
    }
}
