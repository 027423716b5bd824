//! Typed, located reading of YAML nodes: "expected an integer" and "unknown key, did you mean"
//! errors carry the file, the node's position and the dotted key path.
//!
//! Every reader returns `None` after recording an error, so callers keep going and the whole
//! repository's errors are reported at once. No I/O; never panics on user data.
//!
//! "Secrets stay masked" holds for errors too: a `Diag` remembers which value each error is
//! about, and `mask` keeps every secret value out of the messages, also where a message quotes
//! only part of a value that holds one.

use std::collections::{BTreeMap, BTreeSet};

use super::values::suggest;
pub use super::yaml::join;
use super::yaml::{Kind, Node};
use super::ManifestError;

/// The errors of one file.
pub struct Diag {
    pub file: String,
    pub errors: Vec<ManifestError>,
    /// Values read for this file that must never be shown: those of its env files and of its
    /// secret-named `environment` entries.
    pub secrets: BTreeSet<String>,
    /// The scalar each error is about, by the error's index, for `mask`.
    subjects: BTreeMap<usize, String>,
}

/// The keys a mapping may hold at one place of a file.
pub struct Keys {
    /// Read by Convoy.
    pub supported: &'static [&'static str],
    /// Valid Compose here but not supported yet, each with a hint (may be empty).
    pub unsupported: &'static [(&'static str, &'static str)],
    /// Whether `x-*` extension keys are allowed (and ignored) here.
    pub extensions: bool,
}

impl Diag {
    pub fn new(file: &str) -> Diag {
        Diag {
            file: file.to_string(),
            errors: Vec::new(),
            secrets: BTreeSet::new(),
            subjects: BTreeMap::new(),
        }
    }

    pub fn at(&mut self, node: &Node, key: &str, message: impl Into<String>) {
        if let Kind::Scalar { value, .. } = &node.kind {
            if !value.is_empty() {
                self.subjects.insert(self.errors.len(), value.clone());
            }
        }
        self.errors.push(ManifestError {
            file: self.file.clone(),
            line: node.line,
            column: node.col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn file_level(&mut self, message: impl Into<String>) {
        self.errors.push(ManifestError {
            file: self.file.clone(),
            line: 0,
            column: 0,
            key: String::new(),
            message: message.into(),
        });
    }

    /// Keeps every value of `secrets` out of the messages: each occurrence is replaced, and an
    /// error about a value that holds a secret also loses every quoted (backticked) part of
    /// that value which overlaps the secret (`invalid port `s3cr3t`` for `s3cr3t-x:80`).
    pub fn mask(&mut self, secrets: &BTreeSet<String>) {
        if secrets.is_empty() {
            return;
        }
        for (i, e) in self.errors.iter_mut().enumerate() {
            if let Some(subject) = self.subjects.get(&i) {
                e.message = mask_quoted_parts(&e.message, subject, secrets);
            }
            e.message = crate::model::spec::mask_secrets(&e.message, secrets);
        }
    }

    fn expected(&mut self, node: &Node, key: &str, what: &str) {
        let got = node.type_name();
        self.at(node, key, format!("expected {what}, found {got}"));
    }

    /// The entries of a map; null counts as an empty map (`volumes:` with nothing under it).
    pub fn map<'n>(&mut self, node: &'n Node, key: &str) -> Option<&'n [(Node, Node)]> {
        match &node.kind {
            Kind::Map(entries) => Some(entries),
            _ if node.is_null() => Some(&[]),
            _ => {
                self.expected(node, key, "a map");
                None
            }
        }
    }

    /// Checks the keys of a map against `keys` and returns the supported entries as
    /// (name, key node, value node, dotted path).
    pub fn fields<'n>(
        &mut self,
        entries: &'n [(Node, Node)],
        path: &str,
        keys: &Keys,
    ) -> Vec<(&'n str, &'n Node, &'n Node, String)> {
        let mut out = Vec::new();
        for (k, v) in entries {
            let name = k.scalar().unwrap_or_default();
            let kpath = join(path, name);
            if keys.supported.contains(&name) {
                out.push((name, k, v, kpath));
            } else if name == "x-convoy" {
                self.at(
                    k,
                    &kpath,
                    "`x-convoy` is only supported at the service level",
                );
            } else if keys.extensions && name.starts_with("x-") {
                // Extension fields are the user's own; Compose ignores them, so do we.
            } else if let Some((_, hint)) = keys.unsupported.iter().find(|(u, _)| *u == name) {
                let msg = if hint.is_empty() {
                    format!("`{name}` is not supported yet")
                } else {
                    format!("`{name}` is not supported yet: {hint}")
                };
                self.at(k, &kpath, msg);
            } else {
                let all = keys
                    .supported
                    .iter()
                    .copied()
                    .chain(keys.unsupported.iter().map(|(u, _)| *u));
                let msg = match suggest(name, all) {
                    Some(s) => format!("unknown key, did you mean `{s}`?"),
                    None => "unknown key".to_string(),
                };
                self.at(k, &kpath, msg);
            }
        }
        out
    }

    pub fn string(&mut self, node: &Node, key: &str) -> Option<String> {
        match &node.kind {
            Kind::Scalar { value, .. } if !node.is_null() => Some(value.clone()),
            _ => {
                self.expected(node, key, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, node: &Node, key: &str) -> Option<bool> {
        // The schema allows a quoted "true" too.
        let value = node.as_bool().or(match node.scalar() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        });
        if value.is_none() {
            self.expected(node, key, "a boolean");
        }
        value
    }

    /// An integer; a quoted one is accepted where Compose's schema allows a string.
    pub fn int(&mut self, node: &Node, key: &str) -> Option<i64> {
        let value = node
            .as_int()
            .or_else(|| node.text().and_then(|t| super::yaml::parse_int(t.trim())));
        if value.is_none() {
            self.expected(node, key, "an integer");
        }
        value
    }

    pub fn non_negative(&mut self, node: &Node, key: &str) -> Option<u32> {
        let v = self.int(node, key)?;
        match u32::try_from(v) {
            Ok(v) => Some(v),
            Err(_) => {
                self.at(node, key, "expected a non-negative integer");
                None
            }
        }
    }

    pub fn number(&mut self, node: &Node, key: &str) -> Option<f64> {
        let value = node.as_float().or_else(|| {
            node.text().and_then(|t| {
                let t = t.trim();
                super::yaml::parse_int(t)
                    .map(|i| i as f64)
                    .or_else(|| super::yaml::parse_float(t))
            })
        });
        if value.is_none() {
            self.expected(node, key, "a number");
        }
        value
    }

    pub fn string_list<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
    ) -> Option<Vec<(String, &'n Node)>> {
        match &node.kind {
            Kind::Seq(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(s) = self.string(item, &format!("{key}[{i}]")) {
                        out.push((s, item));
                    }
                }
                Some(out)
            }
            _ => {
                self.expected(node, key, "a list of strings");
                None
            }
        }
    }

    /// A string or a list of strings.
    pub fn string_or_list<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
    ) -> Option<Vec<(String, &'n Node)>> {
        match &node.kind {
            Kind::Seq(_) => self.string_list(node, key),
            Kind::Scalar { value, .. } if !node.is_null() => Some(vec![(value.clone(), node)]),
            _ => {
                self.expected(node, key, "a string or a list");
                None
            }
        }
    }

    /// A list of `K<sep>V` strings or a map, as Compose's `list_or_dict`. A list entry without
    /// the separator, or a map value of null, gives `None`.
    pub fn list_or_dict<'n>(
        &mut self,
        node: &'n Node,
        key: &str,
        sep: char,
    ) -> Option<Vec<(String, Option<String>, &'n Node)>> {
        let mut out: Vec<(String, Option<String>, &'n Node)> = Vec::new();
        match &node.kind {
            Kind::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ipath = format!("{key}[{i}]");
                    let Some(s) = self.string(item, &ipath) else {
                        continue;
                    };
                    let (k, v) = match s.split_once(sep) {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (s, None),
                    };
                    if k.is_empty() {
                        self.at(item, &ipath, "empty name");
                        continue;
                    }
                    if out.iter().any(|(o, _, _)| *o == k) {
                        self.at(item, &ipath, format!("`{k}` is set twice"));
                        continue;
                    }
                    out.push((k, v, item));
                }
            }
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let name = k.scalar().unwrap_or_default().to_string();
                    let vpath = join(key, &name);
                    let value = match &v.kind {
                        _ if v.is_null() => None,
                        Kind::Scalar { value, .. } => Some(value.clone()),
                        _ => {
                            self.expected(v, &vpath, "a string, a number or a boolean");
                            continue;
                        }
                    };
                    out.push((name, value, k));
                }
            }
            _ => {
                self.expected(node, key, "a list or a map");
                return None;
            }
        }
        Some(out)
    }

    /// A map of string to string (`labels`, `driver_opts`, `options`); null values are empty.
    pub fn string_map(
        &mut self,
        node: &Node,
        key: &str,
        allow_list: bool,
    ) -> Option<BTreeMap<String, String>> {
        if !allow_list && matches!(node.kind, Kind::Seq(_)) {
            self.expected(node, key, "a map");
            return None;
        }
        let entries = self.list_or_dict(node, key, '=')?;
        Some(
            entries
                .into_iter()
                .map(|(k, v, _)| (k, v.unwrap_or_default()))
                .collect(),
        )
    }
}

/// `message` with each backticked part that, where it occurs in `subject`, overlaps an
/// occurrence of a secret there replaced by `(secret)`.
fn mask_quoted_parts(message: &str, subject: &str, secrets: &BTreeSet<String>) -> String {
    let mut covered: Vec<(usize, usize)> = Vec::new();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        covered.extend(
            subject
                .match_indices(s.as_str())
                .map(|(i, m)| (i, i + m.len())),
        );
    }
    if covered.is_empty() {
        return message.to_string();
    }
    let overlaps = |part: &str| {
        !part.is_empty()
            && subject.match_indices(part).any(|(i, m)| {
                let end = i + m.len();
                covered.iter().any(|(a, b)| i < *b && *a < end)
            })
    };
    let pieces: Vec<&str> = message.split('`').collect();
    // An odd number of pieces: every quote is closed, and the odd pieces are the quoted ones.
    // Otherwise the value itself holds a backtick, and where a quote ends cannot be told: all
    // that follows the first one goes.
    if pieces.len() % 2 == 0 {
        return format!("{}`(secret)`", pieces[0]);
    }
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i % 2 == 1 && overlaps(p) {
                "(secret)"
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join("`")
}
