//! Files from the repository that reach the hosts: relative bind mounts, `configs` and
//! `secrets`. The vocabulary shared by the manifest (which reads them), the planner (which turns
//! them into bind mounts per host) and the shipping code (which puts them on the hosts).
//!
//! Data and pure helpers only: no I/O. Two rules hold here: a file's *content address* (the
//! SHA-256 of its entries, owner and mode) names where it is stored on a host, so a change of
//! content is a change of the spec; and a secret's value never leaves memory: it has no content
//! address, it is never serialised, and its `Debug` form says only how long it is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where shipped files are stored on a host when `convoy.yaml` does not say.
pub const DEFAULT_FILES_DIR: &str = "/var/lib/convoy/files";
/// Where secrets are written on a host (a tmpfs) when `convoy.yaml` does not say.
pub const DEFAULT_SECRETS_DIR: &str = "/run/convoy/secrets";
/// The name of the entry inside a content-addressed folder that is bind-mounted.
pub const BLOB_ENTRY: &str = "f";
/// The generation a secret gets in a plan before the executor writes it.
pub const PENDING_GENERATION: &str = "pending";

/// The per-host file settings (`files_dir`, `secrets_dir`, `secrets_on_disk`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFiles {
    pub files_dir: String,
    pub secrets_dir: String,
    /// Allow secrets on a persistent disk when `secrets_dir` is not a tmpfs.
    pub secrets_on_disk: bool,
}

impl Default for HostFiles {
    fn default() -> Self {
        HostFiles {
            files_dir: DEFAULT_FILES_DIR.into(),
            secrets_dir: DEFAULT_SECRETS_DIR.into(),
            secrets_on_disk: false,
        }
    }
}

impl HostFiles {
    /// The folder of a fleet's files: each fleet collects only its own garbage.
    pub fn fleet_files(&self, fleet: &str) -> String {
        format!("{}/{fleet}", self.files_dir.trim_end_matches('/'))
    }

    /// The host path a content-addressed file or folder is bind-mounted from.
    pub fn blob_source(&self, fleet: &str, address: &str) -> String {
        format!("{}/{address}/{BLOB_ENTRY}", self.fleet_files(fleet))
    }

    /// The folder of a fleet's secrets.
    pub fn fleet_secrets(&self, fleet: &str) -> String {
        format!("{}/{fleet}", self.secrets_dir.trim_end_matches('/'))
    }

    /// `<secrets_dir>/<fleet>/<stack>/<name>.`: a generation is appended.
    pub fn secret_prefix(&self, fleet: &str, stack: &str, name: &str) -> String {
        format!("{}/{stack}/{name}.", self.fleet_secrets(fleet))
    }
}

/// What a file mount is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A relative bind mount (`./conf/nginx.conf:/etc/nginx/nginx.conf:ro`).
    Bind,
    Config,
    Secret,
}

/// One file or folder of the repository (or a config or secret) mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileMount {
    pub kind: FileKind,
    /// A bind's source as written (`./conf/nginx.conf`); a config's or secret's name.
    pub name: String,
    /// The content address (hex); empty for a secret, whose value is never hashed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    pub target: String,
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl FileMount {
    /// How `diff` names it when its content changed (never a value).
    pub fn changed_label(&self) -> String {
        match self.kind {
            FileKind::Bind => format!("{} (content changed)", self.name),
            // A config or secret may be mounted at several targets: each line says which.
            FileKind::Config => {
                format!("config {} at {} (content changed)", self.name, self.target)
            }
            FileKind::Secret => format!("secret {} at {} (secret changed)", self.name, self.target),
        }
    }

    pub fn label(&self) -> String {
        match self.kind {
            FileKind::Bind => self.name.clone(),
            FileKind::Config => format!("config {}", self.name),
            FileKind::Secret => format!("secret {}", self.name),
        }
    }
}

/// One entry of a shipped file or folder: `path` is relative to the mounted entry (`""` is the
/// entry itself), `data` is `None` for a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub path: String,
    pub data: Option<Vec<u8>>,
    pub mode: u32,
}

/// The content of one content-addressed file or folder, with its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob {
    /// Sorted by path; the first is the root (`""`).
    pub entries: Vec<BlobEntry>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `<stack>/<service>` for a read-write mount: its copy is that service's own, so what one
    /// service writes never shows in another's mount nor in a read-only copy of the same
    /// content (a content address names content only while nothing writes to it). `None` for
    /// read-only mounts, configs and secrets, which share one copy per content.
    pub owner: Option<String>,
}

impl Blob {
    /// A single file.
    pub fn file(data: Vec<u8>, mode: u32, uid: Option<u32>, gid: Option<u32>) -> Blob {
        Blob {
            entries: vec![BlobEntry {
                path: String::new(),
                data: Some(data),
                mode,
            }],
            uid,
            gid,
            owner: None,
        }
    }

    /// The content address: SHA-256 over every entry (path, kind, mode, length, bytes) and the
    /// owner, 32 hex digits. Deterministic: equal content, owner and modes, equal address.
    pub fn address(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"convoy-files-v1\0");
        for e in &self.entries {
            h.update(e.path.as_bytes());
            h.update([0]);
            h.update(e.mode.to_be_bytes());
            match &e.data {
                Some(d) => {
                    h.update(b"f");
                    h.update((d.len() as u64).to_be_bytes());
                    h.update(d);
                }
                None => h.update(b"d"),
            }
        }
        for id in [self.uid, self.gid] {
            match id {
                Some(n) => {
                    h.update(b"u");
                    h.update(n.to_be_bytes());
                }
                None => h.update(b"-"),
            }
        }
        // Appended only when set, so the addresses of read-only content stay as they were.
        if let Some(owner) = &self.owner {
            h.update(b"o");
            h.update(owner.as_bytes());
        }
        let d = h.finalize();
        d[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn size(&self) -> usize {
        self.entries
            .iter()
            .map(|e| e.data.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// A secret's value and how it is written. Never serialised; `Debug` shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue {
    pub data: Vec<u8>,
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({} bytes)", self.data.len())
    }
}

/// What the files of a desired state are made of: the content by address, the secrets'
/// values by `<stack>/<name>`, and the warnings the manifest gives about them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilePayload {
    pub blobs: BTreeMap<String, Blob>,
    pub secrets: BTreeMap<String, SecretValue>,
    /// Located warnings (`file:line:column: key: message`): they do not fail validation.
    pub warnings: Vec<String>,
}

impl FilePayload {
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.secrets.is_empty()
    }

    /// The key of a secret's value.
    pub fn secret_key(stack: &str, name: &str) -> String {
        format!("{stack}/{name}")
    }
}

/// What a host holds of the files the desired state needs, read at observation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilesSeen {
    /// Content addresses present in the fleet's files folder, among those asked for.
    pub present: BTreeSet<String>,
    /// Host paths of secret generations, bound by a container, whose content equals the value
    /// the desired state gives that secret (compared in memory).
    pub secrets_current: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_follows_content_owner_and_mode() {
        let a = Blob::file(b"x".to_vec(), 0o444, None, None);
        assert_eq!(a.address(), a.clone().address());
        assert_eq!(a.address().len(), 32);
        assert_ne!(
            a.address(),
            Blob::file(b"y".to_vec(), 0o444, None, None).address()
        );
        assert_ne!(
            a.address(),
            Blob::file(b"x".to_vec(), 0o400, None, None).address()
        );
        assert_ne!(
            a.address(),
            Blob::file(b"x".to_vec(), 0o444, Some(1), None).address()
        );
    }

    #[test]
    fn a_secret_value_is_never_in_debug() {
        let s = SecretValue {
            data: b"hunter22".to_vec(),
        };
        assert!(!format!("{s:?}").contains("hunter22"));
    }

    #[test]
    fn host_paths() {
        let h = HostFiles::default();
        assert_eq!(h.blob_source("f1", "abc"), "/var/lib/convoy/files/f1/abc/f");
        assert_eq!(
            h.secret_prefix("f1", "web", "db"),
            "/run/convoy/secrets/f1/web/db."
        );
    }
}
