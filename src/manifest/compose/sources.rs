//! The files of one stack: its own Compose file and those it names through `include` and
//! `extends`, read through the `RepoTree` only, parsed, interpolated with the stack's variables
//! and numbered.
//!
//! Positions: a node from the `i`-th file read has `i * LINE_STRIDE` added to its line (the
//! stack's own file is number 0 and keeps its lines), so the readers locate errors as usual and
//! `relocate` turns each back into (file, line) at the end. A path leaving the repository, an
//! absolute one, a missing file and too many files are located errors. No I/O of its own; it
//! must never read a file outside the repository.

use std::collections::BTreeMap;

use super::super::interpolate::{self, Var};
use super::super::typed::Diag;
use super::super::yaml::{self, Kind, Node};
use super::super::{values, MIN_SECRET_LEN};
use super::{env_file::resolve, Input, Place};
use crate::model::spec::is_secret_name;
/// Lines of the `i`-th file read are offset by `i` times this. A file is at most
/// `MAX_FILE_BYTES`, so it cannot have this many lines.
pub(super) const LINE_STRIDE: usize = 10_000_000;
/// Files a stack may read besides its own (included and extended ones, each counted once).
const MAX_FILES: usize = 32;
/// The longest `extends` chain and the deepest `include` nesting.
pub(super) const MAX_DEPTH: usize = 16;
/// A file read by `include` or `extends` may not be larger than this.
const MAX_FILE_BYTES: usize = interpolate::MAX_FILE_BYTES;

/// One Compose file of the stack, parsed, interpolated and with its lines offset.
pub(super) struct File {
    /// Repository path.
    pub path: String,
    /// Repository path of its folder, against which its relative paths are read.
    pub dir: String,
    pub root: Node,
}

/// The files of one stack, the stack's own first.
pub(super) struct Files<'a> {
    pub list: Vec<File>,
    input: &'a Input<'a>,
    /// Where, in the stack's own file, each file was first named (for places of services).
    origin: Vec<Option<(usize, usize)>>,
}

impl<'a> Files<'a> {
    pub(super) fn new(path: &str, root: &Node, input: &'a Input<'a>) -> Files<'a> {
        Files {
            list: vec![File {
                path: path.to_string(),
                dir: input.dir.to_string(),
                root: root.clone(),
            }],
            input,
            origin: vec![None],
        }
    }

    /// The index of the file `rel` names from the folder `dir`, reading it on first use; `None`
    /// after a located error at `at`.
    pub fn load(
        &mut self,
        d: &mut Diag,
        dir: &str,
        rel: &str,
        at: &Node,
        path: &str,
    ) -> Option<usize> {
        let Some(repo_path) = inside(dir, rel) else {
            d.at(
                at,
                path,
                format!("`{rel}` is outside the repository: only files of the repository are read"),
            );
            return None;
        };
        if let Some(i) = self.list.iter().position(|f| f.path == repo_path) {
            return Some(i);
        }
        if self.list.len() > MAX_FILES {
            d.at(
                at,
                path,
                format!("a stack may read at most {MAX_FILES} other compose files"),
            );
            return None;
        }
        let text = match self.input.tree.read(&repo_path) {
            Ok(Some(bytes)) if bytes.len() > MAX_FILE_BYTES => {
                d.at(
                    at,
                    path,
                    format!("`{repo_path}` is larger than {MAX_FILE_BYTES} bytes"),
                );
                return None;
            }
            Ok(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    d.at(at, path, format!("`{repo_path}` is not valid utf-8"));
                    return None;
                }
            },
            Ok(None) => {
                d.at(at, path, format!("`{repo_path}` does not exist"));
                return None;
            }
            Err(e) => {
                d.at(at, path, format!("cannot read `{repo_path}`: {e}"));
                return None;
            }
        };
        let index = self.list.len();
        let offset = index * LINE_STRIDE;
        let (node, issues) = yaml::parse(&text);
        let clean = issues.is_empty();
        for i in issues {
            push_at(d, &repo_path, i.line, i.col, &i.key, i.message);
        }
        let mut root = match node {
            Some(n) if clean => n,
            _ => return None,
        };
        // The stack's variables: the environment (in `vars`, with the `.env` values the
        // stack's own file uses), then the stack's `.env` (its errors are the stack file's
        // reader's to report). A secret-named one used here is masked like the others.
        let vars = self.input.vars;
        let entries = self
            .input
            .tree
            .read(&format!("{}/.env", self.list[0].dir))
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| values::parse_dotenv(&t).ok())
            .unwrap_or_default();
        let outer = |n: &str| vars.get(n).cloned();
        let dotenv = values::DotenvVars::new(
            &entries,
            &outer,
            interpolate::MAX_VALUE_BYTES,
            interpolate::MAX_FILE_BYTES,
        );
        let (errors, used) = values::interpolate_file(&mut root, vars, &dotenv);
        for name in used {
            if let Var::Set(v) = dotenv.get(&name) {
                if is_secret_name(&name) && v.chars().count() >= MIN_SECRET_LEN {
                    d.secrets.insert(v);
                }
            }
        }
        if !errors.is_empty() {
            for (line, col, key, message) in errors {
                push_at(d, &repo_path, line, col, &key, message);
            }
            return None;
        }
        shift(&mut root, offset);
        let dir = parent(&repo_path).to_string();
        self.list.push(File {
            path: repo_path,
            dir,
            root,
        });
        self.origin.push(Some((at.line, at.col)));
        Some(index)
    }

    /// Which file a (possibly offset) line is in.
    pub(super) fn index_of(line: usize) -> usize {
        line / LINE_STRIDE
    }
}

/// An error in `file` at its own (not offset) position.
fn push_at(d: &mut Diag, file: &str, line: usize, col: usize, key: &str, message: String) {
    d.errors.push(crate::manifest::ManifestError {
        file: file.to_string(),
        line,
        column: col,
        key: key.to_string(),
        message,
    });
}

/// The repository path `rel` names from `dir`, or `None` when it leaves the repository.
pub(super) fn inside(dir: &str, rel: &str) -> Option<String> {
    if rel.is_empty() || rel.starts_with('~') || rel.contains('\\') {
        return None;
    }
    resolve(dir, rel).filter(|p| !p.is_empty())
}

fn shift(node: &mut Node, offset: usize) {
    if node.line > 0 {
        node.line += offset;
    }
    match &mut node.kind {
        Kind::Scalar { .. } => {}
        Kind::Seq(items) => items.iter_mut().for_each(|i| shift(i, offset)),
        Kind::Map(entries) => {
            for (k, v) in entries {
                shift(k, offset);
                shift(v, offset);
            }
        }
    }
}

/// The value of `key` in a map node.
pub(super) fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.kind {
        Kind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.scalar() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Turns offset lines in the errors back into (file, line), and places of services written in
/// other files into where the stack's file names that file.
pub(super) fn relocate(
    d: &mut Diag,
    files: &Files<'_>,
    places: Option<&mut BTreeMap<String, Place>>,
) {
    for e in &mut d.errors {
        let i = Files::index_of(e.line);
        if i > 0 && e.file == files.list[0].path {
            if let Some(f) = files.list.get(i) {
                e.file = f.path.clone();
                e.line %= LINE_STRIDE;
            }
        }
    }
    let Some(places) = places else { return };
    for p in places.values_mut() {
        let i = Files::index_of(p.key.0);
        if i > 0 {
            // A service written in another file: point at where the stack's file names that
            // file (following nested includes back to it).
            let mut at = (0, 0);
            let mut file = i;
            for _ in 0..=MAX_FILES {
                match files.origin.get(file).copied().flatten() {
                    Some(o) if Files::index_of(o.0) == 0 => {
                        at = o;
                        break;
                    }
                    Some(o) => file = Files::index_of(o.0),
                    None => break,
                }
            }
            p.key = at;
        }
        if p.replicas.is_some_and(|r| Files::index_of(r.0) > 0) {
            p.replicas = None;
        }
    }
}

/// The folder of a repository path (`""` at the root).
pub(super) fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}
