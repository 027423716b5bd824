//! A service's `env_file`: the files named there, read through the `RepoTree` handed in and
//! parsed as dotenv, each value marked secret.
//!
//! This is the only place the Compose reader touches a file other than the Compose file, and it
//! does so only through the `RepoTree`: no path outside the repository, no direct I/O. A value
//! read from an env file never appears in an error message.

use std::collections::{BTreeMap, BTreeSet};

use super::keys::ENV_FILE;
use super::Stack;
use crate::manifest::typed::Diag;
use crate::manifest::values::{dotenv_map, parse_dotenv};
use crate::manifest::yaml::{Kind, Node};
use crate::manifest::ManifestError;

impl Stack<'_> {
    pub(super) fn read_env_files(
        &self,
        d: &mut Diag,
        v: &Node,
        path: &str,
        secret: &mut BTreeSet<String>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let items: Vec<&Node> = match &v.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![v],
        };
        for (i, item) in items.into_iter().enumerate() {
            let ipath = if matches!(v.kind, Kind::Seq(_)) {
                format!("{path}[{i}]")
            } else {
                path.to_string()
            };
            let (file, required) = match &item.kind {
                Kind::Map(entries) => {
                    let mut file = None;
                    let mut required = true;
                    for (field, _k, v, fpath) in d.fields(entries, &ipath, &ENV_FILE) {
                        match field {
                            "path" => file = d.string(v, &fpath),
                            "required" => required = d.bool(v, &fpath).unwrap_or(true),
                            _ => {}
                        }
                    }
                    match file {
                        Some(f) => (f, required),
                        None => {
                            if !entries.iter().any(|(k, _)| k.scalar() == Some("path")) {
                                d.at(item, &ipath, "missing `path`");
                            }
                            continue;
                        }
                    }
                }
                _ => match d.string(item, &ipath) {
                    Some(s) => (s, true),
                    None => continue,
                },
            };
            let Some(repo_path) = resolve(self.input.dir, &file) else {
                d.at(
                    item,
                    &ipath,
                    format!("env file `{file}` is outside the repository"),
                );
                continue;
            };
            let bytes = match self.input.tree.read(&repo_path) {
                Ok(Some(b)) => b,
                Ok(None) if !required => continue,
                Ok(None) => {
                    d.at(item, &ipath, format!("env file `{repo_path}` not found"));
                    continue;
                }
                Err(e) => {
                    d.at(
                        item,
                        &ipath,
                        format!("cannot read env file `{repo_path}`: {e}"),
                    );
                    continue;
                }
            };
            let env_err = |line: usize, message: String| ManifestError {
                file: repo_path.clone(),
                line,
                column: if line > 0 { 1 } else { 0 },
                key: String::new(),
                message,
            };
            let Ok(text) = String::from_utf8(bytes) else {
                d.errors.push(env_err(0, "not valid utf-8".into()));
                continue;
            };
            let vars = self.input.vars;
            let lookup = |n: &str| vars.get(n).cloned();
            match parse_dotenv(&text).and_then(|e| dotenv_map(&e, &lookup)) {
                Ok(map) => {
                    for (k, v) in map {
                        secret.insert(k.clone());
                        out.insert(k, v);
                    }
                }
                Err((line, m)) => d.errors.push(env_err(line, m)),
            }
        }
        out
    }
}

/// Joins a relative path onto a repository folder; None when it leaves the repository.
pub fn resolve(dir: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}
