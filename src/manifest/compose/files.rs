//! Files from the repository: relative bind mounts (`./conf/nginx.conf:/etc/nginx/nginx.conf:ro`),
//! the top-level `configs` and `secrets`, and a service's `configs` and `secrets`.
//!
//! Reads only through the `RepoTree` handed in (the commit being applied), relative to the
//! Compose file's folder; a source that leaves the repository (`../x` past the root, `~/x`, a
//! symlink out) is a located error. Each file or folder becomes a `Blob` stored by content
//! address in the stack's `FilePayload` and a `FileMount` in the container spec; a secret's
//! value goes only into the payload's `secrets` (never hashed, never in the spec) and into the
//! values every message masks. No I/O of its own.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::keys::{CONFIG, SECRET, SERVICE_FILE};
use super::Stack;
use crate::manifest::typed::{join, Diag};
use crate::manifest::yaml::{Kind, Node};
use crate::manifest::MIN_SECRET_LEN;
use crate::model::files::{Blob, BlobEntry, FileKind, FileMount, FilePayload, SecretValue};
use crate::model::spec::{ContainerSpec, MountSpec};

/// The sentinel `mount_source` gives a relative bind's source, turned into a `FileMount` by
/// `repo_mount` (a real source never starts with a NUL).
pub(super) const REPO_SOURCE: &str = "\0repo:";

/// The most one relative mount may ship, in bytes and in entries: the hosts get a copy of it.
const MAX_BLOB_BYTES: usize = 64 << 20;
const MAX_BLOB_ENTRIES: usize = 10_000;

/// What a stack's files reading gathers (inside `Stack`, which services read through `&self`).
#[derive(Default)]
pub(super) struct StackFiles {
    pub payload: RefCell<FilePayload>,
    /// Top-level configs by name: the content, not yet owned or moded.
    pub configs: BTreeMap<String, Vec<u8>>,
    /// Top-level secrets by name: their values.
    pub secrets: BTreeMap<String, Vec<u8>>,
}

/// `path` (relative to the folder `dir`, `/`-separated) as a repository path; an error when it
/// leaves the repository.
fn repo_path(dir: &str, source: &str) -> Result<String, String> {
    if source.starts_with('~') {
        return Err(format!(
            "`{source}` is in a home folder, outside the repository: only files of the repository are shipped"
        ));
    }
    if source.starts_with('/') {
        return Err(format!("`{source}` is not a relative path"));
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in source.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!(
                        "`{source}` leads outside the repository: only files of the repository are shipped"
                    ));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "`{source}` is the whole repository: name a file or folder inside it"
        ));
    }
    Ok(parts.join("/"))
}

/// Octal when written with a leading `0` or `0o` (`0440`, as Compose files write modes).
fn read_mode(d: &mut Diag, v: &Node, path: &str) -> Option<u32> {
    let text = v.text().unwrap_or_default().trim().to_string();
    let parsed = if let Some(o) = text.strip_prefix("0o") {
        u32::from_str_radix(o, 8).ok()
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).ok()
    } else {
        text.parse::<u32>().ok()
    };
    match parsed {
        Some(m) if m <= 0o7777 => Some(m),
        _ => {
            d.at(
                v,
                path,
                format!("invalid mode `{text}` (expected octal, e.g. 0440)"),
            );
            None
        }
    }
}

fn read_id(d: &mut Diag, v: &Node, path: &str) -> Option<u32> {
    let text = v.text().unwrap_or_default().trim().to_string();
    match text.parse::<u32>() {
        Ok(n) => Some(n),
        Err(_) => {
            d.at(v, path, format!("invalid id `{text}` (expected a number)"));
            None
        }
    }
}

/// Why a file or folder of the repository could not be read.
enum ReadError {
    /// It is not in the repository (or is an empty folder, which git does not keep).
    Missing(String),
    Other(String),
}

impl Stack<'_> {
    /// Reads a file or folder of the repository, relative to the Compose file's folder.
    fn read_repo(&self, source: &str, raw: bool) -> Result<(String, Vec<BlobEntry>), ReadError> {
        self.read_repo_inner(source, raw).map_err(|(missing, msg)| {
            if missing {
                ReadError::Missing(msg)
            } else {
                ReadError::Other(msg)
            }
        })
    }

    /// `read_repo`, with `true` beside the message when the source is not in the repository.
    fn read_repo_inner(
        &self,
        source: &str,
        raw: bool,
    ) -> Result<(String, Vec<BlobEntry>), (bool, String)> {
        let path = repo_path(self.input.dir, source).map_err(|m| (false, m))?;
        let tree = self.input.tree;
        let fail = |e: String| (false, format!("cannot read `{source}` (`{path}`): {e}"));
        // Binds are shipped as stored; a config's or secret's `file:` is decrypted (SOPS), as
        // `sops --decrypt` prints it.
        let read = |p: &str| {
            if raw {
                tree.read_raw(p)
            } else {
                tree.read_whole(p)
            }
        };
        match read(&path) {
            Ok(Some(bytes)) => {
                if bytes.len() > MAX_BLOB_BYTES {
                    return Err(fail(format!("it is over {MAX_BLOB_BYTES} bytes")));
                }
                return Ok((
                    path,
                    vec![BlobEntry {
                        path: String::new(),
                        data: Some(bytes),
                        mode: 0o644,
                    }],
                ));
            }
            Ok(None) => {}
            // A folder is not a regular file: try it as one before reporting.
            Err(e) => {
                if !matches!(tree.list(&path), Ok(l) if !l.is_empty()) {
                    return Err(fail(e));
                }
            }
        }
        let top = tree.list(&path).map_err(fail)?;
        if top.is_empty() {
            return Err((
                true,
                format!(
                "`{source}` (`{path}`) does not exist in the repository ({}) or is an empty folder",
                tree.describe()
            ),
            ));
        }
        let mut entries = vec![BlobEntry {
            path: String::new(),
            data: None,
            mode: 0o755,
        }];
        let mut total = 0usize;
        let mut stack = vec![(String::new(), top)];
        while let Some((rel, listing)) = stack.pop() {
            for e in listing {
                let r = if rel.is_empty() {
                    e.name.clone()
                } else {
                    format!("{rel}/{}", e.name)
                };
                let full = format!("{path}/{r}");
                if entries.len() >= MAX_BLOB_ENTRIES {
                    return Err(fail(format!("it has over {MAX_BLOB_ENTRIES} entries")));
                }
                if e.is_dir {
                    entries.push(BlobEntry {
                        path: r.clone(),
                        data: None,
                        mode: 0o755,
                    });
                    let sub = tree.list(&full).map_err(|m| fail(format!("{r}: {m}")))?;
                    stack.push((r, sub));
                } else {
                    let bytes = tree
                        .read_raw(&full)
                        .map_err(|m| fail(format!("{r}: {m}")))?
                        .unwrap_or_default();
                    total += bytes.len();
                    if total > MAX_BLOB_BYTES {
                        return Err(fail(format!("it is over {MAX_BLOB_BYTES} bytes")));
                    }
                    entries.push(BlobEntry {
                        path: r,
                        data: Some(bytes),
                        mode: 0o644,
                    });
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((path, entries))
    }

    /// Stores a blob in the stack's payload; its address.
    fn store(&self, blob: Blob) -> String {
        let address = blob.address();
        self.files
            .payload
            .borrow_mut()
            .blobs
            .entry(address.clone())
            .or_insert(blob);
        address
    }

    pub(super) fn warn(&self, d: &Diag, node: &Node, path: &str, message: String) {
        self.files.payload.borrow_mut().warnings.push(format!(
            "{}:{}:{}: {path}: warning: {message}",
            d.file, node.line, node.col
        ));
    }

    /// A relative bind mount (its source marked by `mount_source`) read from the repository
    /// and added to `c.files`.
    pub(super) fn repo_mount(
        &self,
        d: &mut Diag,
        node: &Node,
        path: &str,
        m: MountSpec,
        c: &mut ContainerSpec,
    ) {
        let source = m.source.trim_start_matches(REPO_SOURCE).to_string();
        if c.files.iter().any(|f| f.target == m.target) {
            d.at(node, path, format!("`{}` is mounted twice", m.target));
            return;
        }
        let entries = match self.read_repo(&source, true) {
            Ok((_, e)) => e,
            // Compose creates a missing source as an empty folder on the host, and projects
            // rely on it for data folders (`./data:/var/lib/app`): the same here, read-write
            // only (a read-only empty folder is a mistake worth an error), with a warning.
            Err(ReadError::Missing(_)) if !m.read_only => {
                self.warn(
                    d,
                    node,
                    path,
                    format!(
                        "`{source}` is not in the repository: an empty folder is mounted \
                         read-write, as Compose creates one; what is written there is not kept \
                         across changes of the service: data belongs in a named volume"
                    ),
                );
                vec![BlobEntry {
                    path: String::new(),
                    data: None,
                    mode: 0o755,
                }]
            }
            Err(ReadError::Missing(msg) | ReadError::Other(msg)) => {
                d.at(node, path, msg);
                return;
            }
        };
        let is_dir = entries.first().is_some_and(|e| e.data.is_none());
        if is_dir && !m.read_only && entries.len() > 1 {
            self.warn(
                d,
                node,
                path,
                format!(
                    "`{source}` is a folder of the repository mounted read-write: writes are \
                     not kept across changes (each content gets a fresh copy); data belongs in \
                     a named volume"
                ),
            );
        }
        // `path` is `services.<name>.volumes[i]`: the service owns its read-write copy.
        let service = path
            .strip_prefix("services.")
            .and_then(|p| p.split('.').next())
            .unwrap_or_default();
        let address = self.store(Blob {
            entries,
            uid: None,
            gid: None,
            owner: (!m.read_only).then(|| format!("{}/{service}", self.name)),
        });
        c.files.push(FileMount {
            kind: FileKind::Bind,
            name: source,
            address,
            target: m.target,
            read_only: m.read_only,
            uid: None,
            gid: None,
            mode: None,
        });
    }

    /// The top-level `configs` (`kind` Config) or `secrets` (Secret).
    pub(super) fn read_file_defs(&mut self, d: &mut Diag, v: &Node, path: &str, kind: FileKind) {
        let Some(entries) = d.map(v, path) else {
            return;
        };
        let keys = if kind == FileKind::Config {
            &CONFIG
        } else {
            &SECRET
        };
        for (k, v) in entries {
            let name = k.scalar().unwrap_or_default().to_string();
            let npath = join(path, &name);
            let Some(fields) = d.map(v, &npath) else {
                continue;
            };
            let before = d.errors.len();
            let mut value: Option<Vec<u8>> = None;
            let mut sources = 0;
            for (field, _k, fv, fpath) in d.fields(fields, &npath, keys) {
                match field {
                    "file" => {
                        sources += 1;
                        if let Some(s) = d.string(fv, &fpath) {
                            match self.read_repo(&s, false) {
                                Ok((_, e)) if e.len() == 1 && e[0].data.is_some() => {
                                    value = e.into_iter().next().and_then(|e| e.data)
                                }
                                Ok(_) => d.at(fv, &fpath, format!("`{s}` is a folder, not a file")),
                                Err(ReadError::Missing(m) | ReadError::Other(m)) => {
                                    d.at(fv, &fpath, m)
                                }
                            }
                        }
                    }
                    "content" => {
                        sources += 1;
                        value = d.string(fv, &fpath).map(String::into_bytes);
                    }
                    "environment" => {
                        sources += 1;
                        if let Some(var) = d.string(fv, &fpath) {
                            match self.input.vars.get(&var) {
                                Some(val) => value = Some(val.clone().into_bytes()),
                                None => d.at(
                                    fv,
                                    &fpath,
                                    format!("variable `{var}` is not set (neither in the environment nor in `.env`)"),
                                ),
                            }
                        }
                    }
                    _ => {}
                }
            }
            if d.errors.len() > before {
                continue;
            }
            if sources != 1 {
                let what = if kind == FileKind::Config {
                    "`file`, `content` or `environment`"
                } else {
                    "`file` or `environment`"
                };
                d.at(k, &npath, format!("needs exactly one of {what}"));
                continue;
            }
            let Some(value) = value else { continue };
            if kind == FileKind::Secret {
                if let Ok(s) = std::str::from_utf8(&value) {
                    let s = s.trim_end_matches('\n');
                    if s.chars().count() >= MIN_SECRET_LEN {
                        d.secrets.insert(s.to_string());
                    }
                }
                self.files.secrets.insert(name, value);
            } else {
                self.files.configs.insert(name, value);
            }
        }
    }

    /// A service's `configs` or `secrets`: short (`- name`) and long syntax.
    pub(super) fn read_service_files(
        &self,
        d: &mut Diag,
        v: &Node,
        path: &str,
        c: &mut ContainerSpec,
        kind: FileKind,
    ) {
        let Kind::Seq(items) = &v.kind else {
            d.at(v, path, format!("expected a list, found {}", v.type_name()));
            return;
        };
        let section = if kind == FileKind::Config {
            "configs"
        } else {
            "secrets"
        };
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let before = d.errors.len();
            let mut source = None;
            let mut target = None;
            let (mut uid, mut gid, mut mode) = (None, None, None);
            match &item.kind {
                Kind::Map(entries) => {
                    for (field, _k, fv, fpath) in d.fields(entries, &ipath, &SERVICE_FILE) {
                        match field {
                            "source" => source = d.string(fv, &fpath),
                            "target" => target = d.string(fv, &fpath),
                            "uid" => uid = read_id(d, fv, &fpath),
                            "gid" => gid = read_id(d, fv, &fpath),
                            "mode" => mode = read_mode(d, fv, &fpath),
                            _ => {}
                        }
                    }
                    if source.is_none() && d.errors.len() == before {
                        d.at(item, &ipath, "missing `source`");
                    }
                }
                _ => source = d.string(item, &ipath),
            }
            if d.errors.len() > before {
                continue;
            }
            let Some(name) = source else { continue };
            let known = if kind == FileKind::Config {
                self.files.configs.contains_key(&name)
            } else {
                self.files.secrets.contains_key(&name)
            };
            if !known {
                d.at(
                    item,
                    &ipath,
                    format!(
                        "{} `{name}` is not declared in the top-level `{section}`",
                        &section[..section.len() - 1]
                    ),
                );
                continue;
            }
            let target = match (kind, target) {
                (FileKind::Config, None) => format!("/{name}"),
                (FileKind::Config, Some(t)) if !t.starts_with('/') => format!("/{t}"),
                (FileKind::Secret, None) => format!("/run/secrets/{name}"),
                (FileKind::Secret, Some(t)) if !t.starts_with('/') => format!("/run/secrets/{t}"),
                (_, Some(t)) => t,
                (FileKind::Bind, None) => continue,
            };
            if c.files.iter().any(|f| f.target == target)
                || c.mounts.iter().any(|m| m.target == target)
            {
                d.at(item, &ipath, format!("`{target}` is mounted twice"));
                continue;
            }
            let address = if kind == FileKind::Config {
                let data = self.files.configs[&name].clone();
                self.store(Blob::file(data, mode.unwrap_or(0o444), uid, gid))
            } else {
                let key = FilePayload::secret_key(&self.name, &name);
                let data = self.files.secrets[&name].clone();
                self.files
                    .payload
                    .borrow_mut()
                    .secrets
                    .insert(key, SecretValue { data });
                String::new()
            };
            c.files.push(FileMount {
                kind,
                name,
                address,
                target,
                read_only: true,
                uid,
                gid,
                mode: if kind == FileKind::Secret {
                    Some(mode.unwrap_or(0o400))
                } else {
                    mode
                },
            });
        }
        c.files.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::repo_path;

    #[test]
    fn repository_paths_stay_inside() {
        assert_eq!(
            repo_path("stacks/web", "./conf/a.conf").unwrap(),
            "stacks/web/conf/a.conf"
        );
        assert_eq!(
            repo_path("stacks/web", "../shared/x").unwrap(),
            "stacks/shared/x"
        );
        assert_eq!(repo_path("stacks/web", "../../x").unwrap(), "x");
        assert!(repo_path("stacks/web", "../../../x")
            .unwrap_err()
            .contains("outside the repository"));
        assert!(repo_path("stacks/web", "~/x")
            .unwrap_err()
            .contains("home folder"));
        assert!(repo_path("stacks/web", "../..").is_err());
    }
}
