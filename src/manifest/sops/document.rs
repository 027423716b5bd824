//! SOPS's YAML and JSON stores: the document read with the manifest's own YAML parser (JSON is
//! YAML's flow style, and both keep their order, which the MAC depends on), every value opened
//! in order, and the decrypted text made by replacing each `ENC[…]` where it is written and
//! blanking the `sops` section. Lines stay where they were, so an error the Compose reader finds
//! later points at the same line of the encrypted file.
//!
//! Pure; never panics on any input. A document that does not parse, or has no `sops` section
//! with a `mac`, is not a SOPS file here (`Ok(None)`): its reader reports what is wrong with it.

use super::cipher::{self, Plain};
use super::metadata::{self, Meta, Metadata};
use super::{check_mac, data_key, new_mac, Format, KeySource, Located, Opened};
use crate::manifest::yaml::{self, Kind, Node};

/// One value to replace: where it is written and its decrypted text in the document's syntax.
struct Edit {
    line: usize,
    col: usize,
    text: String,
}

struct Walk<'a> {
    meta: &'a Metadata,
    key: &'a [u8; 32],
    mac: sha2::Sha512,
    edits: Vec<Edit>,
    secrets: Vec<String>,
}

pub fn decrypt(text: &str, format: Format, keys: &dyn KeySource) -> Result<Opened, Located> {
    let (node, issues) = yaml::parse(text);
    let Some(root) = node.filter(|_| issues.is_empty()) else {
        return Ok(None);
    };
    let Kind::Map(entries) = &root.kind else {
        return Ok(None);
    };
    let Some((sops_key, sops_node)) = entries.iter().find(|(k, _)| k.scalar() == Some("sops"))
    else {
        return Ok(None);
    };
    let meta_tree = to_meta(sops_node);
    if !matches!(&meta_tree, Meta::Map(m) if m.iter().any(|(k, _)| k == "mac")) {
        return Ok(None);
    }
    let meta = metadata::read(&meta_tree).map_err(|m| (sops_key.line, m))?;
    let key = data_key(&meta, keys)?;
    let mut walk = Walk {
        meta: &meta,
        key: &key,
        mac: new_mac(&meta),
        edits: Vec::new(),
        secrets: Vec::new(),
    };
    for (k, v) in entries {
        if std::ptr::eq(k, sops_key) {
            continue;
        }
        let Some(name) = k.scalar() else {
            return Err((k.line, "a key that is not a string".into()));
        };
        walk.node(v, &mut vec![name])?;
    }
    check_mac(&meta, &key, walk.mac, sops_key.line)?;
    if format == Format::Binary {
        // SOPS's binary store: the file is the one `data` value (else it is JSON after all).
        let rest: Vec<&(Node, Node)> = entries
            .iter()
            .filter(|(k, _)| !std::ptr::eq(k, sops_key))
            .collect();
        if let [(k, v)] = rest.as_slice() {
            if let (Some("data"), Some(value)) = (k.scalar(), v.scalar()) {
                let data = if value.is_empty() {
                    String::new()
                } else {
                    cipher::decrypt(value, &key, "data:")
                        .map_err(|e| (v.line, format!("`data`: {e}")))?
                        .text()
                };
                return Ok(Some((data, walk.secrets)));
            }
        }
    }
    let lines = Lines::new(text);
    let removal = sops_range(&lines, format, entries, sops_key).ok_or((
        sops_key.line,
        "cannot find the end of the `sops` section".to_string(),
    ))?;
    let out = apply(&lines, walk.edits, removal).map_err(|line| {
        (
            line,
            "an encrypted value is not written where the parser placed it".to_string(),
        )
    })?;
    Ok(Some((out, walk.secrets)))
}

impl Walk<'_> {
    fn node<'n>(&mut self, node: &'n Node, path: &mut Vec<&'n str>) -> Result<(), Located> {
        match &node.kind {
            Kind::Map(entries) => {
                for (k, v) in entries {
                    let Some(name) = k.scalar() else {
                        return Err((k.line, "a key that is not a string".into()));
                    };
                    path.push(name);
                    let r = self.node(v, path);
                    path.pop();
                    r?;
                }
                Ok(())
            }
            // A list's items have the list's path: SOPS adds no index.
            Kind::Seq(items) => items.iter().try_for_each(|i| self.node(i, path)),
            Kind::Scalar { value, plain } => {
                if node.is_null() {
                    return Ok(());
                }
                let encrypted = self.meta.rule.encrypted(path);
                let value = if !encrypted {
                    typed(node, value, *plain)
                } else if value.is_empty() {
                    Plain::Str(String::new())
                } else if cipher::is_enc(value) {
                    let aad = format!("{}:", path.join(":"));
                    let opened = cipher::decrypt(value, self.key, &aad)
                        .map_err(|e| (node.line, format!("`{}`: {e}", path.join("."))))?;
                    self.edits.push(Edit {
                        line: node.line,
                        col: node.col,
                        text: literal(&opened),
                    });
                    self.secrets.push(opened.text());
                    opened
                } else {
                    return Err((
                        node.line,
                        format!(
                            "`{}` is written in clear where SOPS encrypts",
                            path.join(".")
                        ),
                    ));
                };
                if !self.meta.mac_only_encrypted || encrypted {
                    use sha2::Digest;
                    self.mac.update(value.mac_bytes());
                }
                Ok(())
            }
        }
    }
}

/// A value left in clear, typed as go-yaml v3 (and SOPS's JSON store) would: quoted is a
/// string; plain is a boolean, an integer, a float or a string.
fn typed(node: &Node, value: &str, plain: bool) -> Plain {
    if !plain {
        return Plain::Str(value.to_string());
    }
    if let Some(b) = node.as_bool() {
        Plain::Bool(b)
    } else if let Some(i) = node.as_int() {
        Plain::Int(i)
    } else if let Some(f) = node.as_float() {
        Plain::Float(f)
    } else {
        match value {
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Plain::Float(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => Plain::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => Plain::Float(f64::NAN),
            _ => Plain::Str(value.to_string()),
        }
    }
}

/// A decrypted value written in YAML/JSON syntax: strings as JSON strings (valid YAML double
/// quoted scalars, on one line whatever they hold).
fn literal(p: &Plain) -> String {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    match p {
        Plain::Int(i) => i.to_string(),
        Plain::Float(f) if f.is_finite() => cipher::go_float(*f),
        Plain::Bool(b) => b.to_string(),
        other => quoted(&other.text()),
    }
}

/// The metadata node as a `Meta` tree (scalars as their text).
fn to_meta(node: &Node) -> Meta {
    match &node.kind {
        Kind::Scalar { value, .. } => Meta::Str(value.clone()),
        Kind::Seq(items) => Meta::List(items.iter().map(to_meta).collect()),
        Kind::Map(entries) => Meta::Map(
            entries
                .iter()
                .map(|(k, v)| (k.scalar().unwrap_or_default().to_string(), to_meta(v)))
                .collect(),
        ),
    }
}

/// Where each line of a text starts, to turn parser positions into byte offsets.
struct Lines<'t> {
    text: &'t str,
    starts: Vec<usize>,
}

impl<'t> Lines<'t> {
    fn new(text: &'t str) -> Lines<'t> {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { text, starts }
    }

    /// The byte offset of a 1-based (line, column in characters) position.
    fn offset(&self, line: usize, col: usize) -> Option<usize> {
        let start = *self.starts.get(line.checked_sub(1)?)?;
        let rest = &self.text[start..];
        let end = rest.find('\n').unwrap_or(rest.len());
        let at = rest[..end]
            .char_indices()
            .nth(col.checked_sub(1)?)
            .map(|(i, _)| i)
            .unwrap_or(end);
        Some(start + at)
    }
}

/// The byte range of the `sops` entry, including the separating comma in a flow map.
fn sops_range(
    lines: &Lines<'_>,
    format: Format,
    entries: &[(Node, Node)],
    key: &Node,
) -> Option<(usize, usize)> {
    let text = lines.text;
    let start = lines.offset(key.line, key.col)?;
    if format == Format::Yaml && key.col == 1 && !text[start..].starts_with(['"', '\'']) {
        // Block style: from its line to the next top-level key written after it.
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let next = entries
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.line > key.line)
            .map(|k| k.line)
            .min();
        let end = match next {
            Some(l) => lines.offset(l, 1)?,
            None => text.len(),
        };
        return Some((line_start, end));
    }
    // Flow style (JSON): the value ends at its matching brace; a comma goes with it.
    // The parser places a collection at its first entry: start from the `:` after the key.
    let key_len = match text.as_bytes().get(start) {
        Some(q @ (b'"' | b'\'')) => 1 + text.get(start + 1..)?.find(*q as char)? + 1,
        _ => "sops".len(),
    };
    let colon = start + key_len + text.get(start + key_len..)?.find(':')? + 1;
    let after_colon = text.get(colon..)?;
    let vstart = colon + (after_colon.len() - after_colon.trim_start().len());
    let vend = flow_end(text, vstart)?;
    let before = text[..start].trim_end();
    if before.ends_with(',') {
        Some((before.len() - 1, vend))
    } else {
        let after = &text[vend..];
        let skip = after.len() - after.trim_start().len();
        if after[skip..].starts_with(',') {
            Some((start, vend + skip + 1))
        } else {
            Some((start, vend))
        }
    }
}

/// The end (exclusive) of the flow value starting at `start`: a bracketed collection or a
/// quoted or plain scalar.
fn flow_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = start;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(q) => {
                if c == b'\\' && q == b'"' {
                    i += 1;
                } else if c == q {
                    quote = None;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
            }
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                b',' | b'\n' if depth == 0 => return Some(i),
                _ => {}
            },
        }
        i += 1;
    }
    (depth == 0).then_some(bytes.len())
}

/// The text with each value replaced and the `removal` range blanked (its line breaks kept).
/// `Err(line)` when a value is not written where the parser said.
fn apply(lines: &Lines<'_>, edits: Vec<Edit>, removal: (usize, usize)) -> Result<String, usize> {
    let text = lines.text;
    let mut spans: Vec<(usize, usize, String)> = Vec::with_capacity(edits.len() + 1);
    for e in edits {
        let start = lines.offset(e.line, e.col).ok_or(e.line)?;
        let rest = &text[start..];
        let len = match rest.as_bytes().first() {
            Some(q @ (b'"' | b'\'')) => 1 + rest[1..].find(*q as char).ok_or(e.line)? + 1,
            _ if rest.starts_with("ENC[") => rest.find(']').ok_or(e.line)? + 1,
            _ => return Err(e.line),
        };
        spans.push((start, start + len, e.text));
    }
    let (rs, re) = removal;
    spans.push((rs, re, "\n".repeat(text[rs..re].matches('\n').count())));
    spans.sort_by_key(|s| s.0);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e, t) in spans {
        if s < at {
            return Err(0);
        }
        out.push_str(&text[at..s]);
        out.push_str(&t);
        at = e;
    }
    out.push_str(&text[at..]);
    Ok(out)
}
