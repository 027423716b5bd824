//! Reading a repository's files from disk without trusting them: a path is resolved (every
//! symbolic link followed) and must stay inside the repository's resolved root; only regular
//! files are read, never a FIFO, a device or a socket (which could block forever or never end),
//! and at most the size cap, checked before a byte is read and again while reading.
//!
//! The caps (`Limits`) are 4 MiB for a manifest (`convoy.yaml`, a Compose file) and 1 MiB for
//! an env file (`.env`, an `env_file`), or one size for every file from `CONVOY_MAX_FILE_SIZE`.
//! Errors say what the path is (outside the repository, a FIFO, too large by how much) and leave
//! naming it to the caller, which knows it as the repository path the user wrote.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::model::tree::DirEntry;

/// The environment variable that sets one size cap for every file read from a repository.
pub const MAX_FILE_SIZE_VAR: &str = "CONVOY_MAX_FILE_SIZE";

/// Names of the files read as manifests (the rest are env files).
const MANIFEST_NAMES: [&str; 5] = [
    "convoy.yaml",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The most a file of each kind may hold, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `convoy.yaml` and Compose files.
    pub manifest: u64,
    /// `.env` and `env_file` files.
    pub env: u64,
    /// Whether they come from `CONVOY_MAX_FILE_SIZE` (said in the error, so the user knows what
    /// set the cap).
    pub configured: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            manifest: 4 << 20,
            env: 1 << 20,
            configured: false,
        }
    }
}

impl Limits {
    /// One cap for every file.
    pub fn uniform(bytes: u64) -> Limits {
        Limits {
            manifest: bytes,
            env: bytes,
            configured: true,
        }
    }

    /// The defaults, or the size in `CONVOY_MAX_FILE_SIZE` when it is set.
    pub fn from_env() -> Result<Limits, String> {
        match std::env::var(MAX_FILE_SIZE_VAR) {
            Err(std::env::VarError::NotPresent) => Ok(Limits::default()),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("{MAX_FILE_SIZE_VAR} is not valid utf-8"))
            }
            Ok(v) => parse_size(&v)
                .map(Limits::uniform)
                .map_err(|e| format!("{MAX_FILE_SIZE_VAR}: {e}")),
        }
    }

    /// The cap for a repository path: a manifest's by its file name, an env file's otherwise.
    pub fn for_path(&self, path: &str) -> u64 {
        let name = path.rsplit('/').next().unwrap_or(path);
        if MANIFEST_NAMES.contains(&name) {
            self.manifest
        } else {
            self.env
        }
    }

    pub(super) fn too_large(&self, size: u64, cap: u64) -> String {
        let source = if self.configured {
            format!("set by {MAX_FILE_SIZE_VAR}")
        } else {
            format!("{MAX_FILE_SIZE_VAR} changes it")
        };
        format!(
            "it is too large: {size} bytes, {} over the cap of {cap} bytes ({source})",
            size - cap
        )
    }
}

/// A size in bytes: digits with an optional unit, `k`/`KiB`, `m`/`MiB`, `g`/`GiB` (powers of
/// 1024, case-insensitive), at least 1 byte.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("invalid size `{s}` (expected a number of bytes, e.g. `8MiB`)");
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let number: u64 = t[..digits].parse().map_err(|_| bad())?;
    let unit: u64 = match t[digits..].trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    match number.checked_mul(unit) {
        Some(0) => Err(format!("invalid size `{s}`: it must be at least 1 byte")),
        Some(n) => Ok(n),
        None => Err(bad()),
    }
}

/// The root resolved, to compare resolved paths with.
fn real_root(root: &Path) -> Result<PathBuf, String> {
    root.canonicalize().map_err(|e| {
        format!(
            "cannot resolve the repository root `{}`: {e}",
            root.display()
        )
    })
}

/// `path` (relative to `root`) resolved; `None` when nothing is there; an error when it leads
/// outside the repository.
fn resolve_inside(root: &Path, path: &str) -> Result<Option<PathBuf>, String> {
    let root = real_root(root)?;
    let real = match root.join(path).canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot resolve it: {e}")),
    };
    if !real.starts_with(&root) {
        return Err(format!(
            "it leads outside the repository (to `{}`); only files inside it are read",
            real.display()
        ));
    }
    Ok(Some(real))
}

/// Only a regular file is read; the error says what else it is.
fn regular(meta: &Metadata) -> Result<(), String> {
    let t = meta.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        return Err("it is not a regular file".into());
    };
    Err(format!("it is {what}, not a regular file"))
}

/// The bytes of the regular file at `path` below `root`, at most the cap `limits` gives it;
/// `Ok(None)` when there is no such file.
pub fn read_file(root: &Path, path: &str, limits: &Limits) -> Result<Option<Vec<u8>>, String> {
    let Some(real) = resolve_inside(root, path)? else {
        return Ok(None);
    };
    let cap = limits.for_path(path);
    let meta = std::fs::metadata(&real).map_err(|e| format!("cannot read it: {e}"))?;
    regular(&meta)?;
    if meta.len() > cap {
        return Err(limits.too_large(meta.len(), cap));
    }
    // Non-blocking, so that a file swapped for a FIFO since the check cannot hang the open; not
    // following a link swapped in either. What was opened is checked again.
    let file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&real)
        .map_err(|e| format!("cannot read it: {e}"))?;
    regular(
        &file
            .metadata()
            .map_err(|e| format!("cannot read it: {e}"))?,
    )?;
    let mut bytes = Vec::with_capacity(meta.len().min(cap) as usize + 1);
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > cap {
        // It grew since: say by how much at least.
        return Err(limits.too_large(bytes.len() as u64, cap));
    }
    Ok(Some(bytes))
}

/// The entries of the folder at `dir` below `root`, sorted; empty when there is no such
/// folder.
pub fn list_dir(root: &Path, dir: &str) -> Result<Vec<DirEntry>, String> {
    let Some(real) = resolve_inside(root, dir)? else {
        return Ok(Vec::new());
    };
    let rd = std::fs::read_dir(&real).map_err(|e| format!("cannot list it: {e}"))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| format!("cannot list it: {e}"))?;
        out.push(DirEntry {
            name: entry.file_name().to_string_lossy().into_owned(),
            is_dir: entry.path().is_dir(),
        });
    }
    out.sort();
    Ok(out)
}
