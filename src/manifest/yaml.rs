//! YAML text → a small node tree that remembers where every node is written.
//!
//! Positions must survive anchors, aliases and `<<` merge keys, which a serde layer loses, so the
//! tree is built here from yaml-rust2's event parser. An alias is a copy of the anchored node with
//! the anchor's positions (where the user has to fix things), and merged keys keep the position of
//! the line that writes them. Scalars stay text plus their style; typing (YAML 1.2 core schema, as
//! go-yaml v3 which Compose uses) happens when a value is read, so interpolation can run first.
//! This module does no I/O and must not panic on any input.
//!
//! Nothing is dropped silently: a character YAML does not allow (a NUL byte would end the text
//! early for the parser) and a tag other than `!!str`, `!!map` and `!!seq` (`!include`,
//! `!!binary`, which Compose would read otherwise) are located errors.

use std::collections::BTreeMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 200;
/// Alias expansion may not create more nodes than this ("billion laughs").
const MAX_NODES: usize = 1_000_000;
/// Nor copy more scalar text than this: a few aliases of a long string multiply bytes, not
/// nodes (a 100 KB file reached 614 MB before this bound).
const MAX_ALIAS_BYTES: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `plain` is false for quoted and block scalars: those are always strings.
    Scalar {
        value: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub col: usize,
}

/// A problem found while reading the YAML itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

impl Node {
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    fn plain(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { value, plain: true } => Some(value),
            _ => None,
        }
    }

    /// `null`, `~` or nothing at all, unquoted.
    pub fn is_null(&self) -> bool {
        matches!(self.plain(), Some("" | "~" | "null" | "Null" | "NULL"))
    }

    /// A scalar's text when it is not null (numbers and booleans keep their written text).
    pub fn text(&self) -> Option<&str> {
        if self.is_null() {
            None
        } else {
            self.scalar()
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.plain()? {
            "true" | "True" | "TRUE" => Some(true),
            "false" | "False" | "FALSE" => Some(false),
            _ => None,
        }
    }

    /// A YAML 1.2 core integer (decimal, `0x`, `0o`), plain only.
    pub fn as_int(&self) -> Option<i64> {
        parse_int(self.plain()?)
    }

    /// A YAML 1.2 core number (int or float), plain only.
    pub fn as_float(&self) -> Option<f64> {
        let s = self.plain()?;
        parse_int(s).map(|i| i as f64).or_else(|| parse_float(s))
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a map",
            Kind::Scalar { .. } if self.is_null() => "null",
            Kind::Scalar { .. } if self.as_bool().is_some() => "a boolean",
            Kind::Scalar { .. } if self.as_float().is_some() => "a number",
            Kind::Scalar { .. } => "a string",
        }
    }
}

pub fn parse_int(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i64>().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

pub fn parse_float(s: &str) -> Option<f64> {
    // Rust's parser also takes `inf`, `NaN` and `1e5` forms YAML spells differently: allow only
    // digits, sign, point and exponent.
    if s.is_empty()
        || !s.bytes().any(|b| b.is_ascii_digit())
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Parses one YAML document. `None` when the text is not YAML at all (the issue says where);
/// otherwise the tree plus any structural issues (duplicate keys, bad merges). An empty file
/// gives a null node.
pub fn parse(src: &str) -> (Option<Node>, Vec<Issue>) {
    if let Some(issue) = forbidden_character(src) {
        return (None, vec![issue]);
    }
    let mut b = Builder {
        parser: Parser::new_from_str(src),
        anchors: BTreeMap::new(),
        nodes: 0,
        alias_bytes: 0,
        issues: Vec::new(),
    };
    match b.document() {
        Ok(node) => (Some(node), b.issues),
        Err(issue) => {
            b.issues.push(issue);
            (None, b.issues)
        }
    }
}

/// The first character YAML does not allow (only tab, line breaks and printable characters
/// are), located.
fn forbidden_character(src: &str) -> Option<Issue> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{85}')
            || (' '..='~').contains(&c)
            || ('\u{a0}'..='\u{d7ff}').contains(&c)
            || ('\u{e000}'..='\u{fffd}').contains(&c)
            || c >= '\u{10000}'
    };
    let (line, col, c) = src.lines().enumerate().find_map(|(l, text)| {
        text.chars()
            .enumerate()
            .find(|(_, c)| !allowed(*c) && *c != '\r')
            .map(|(col, c)| (l + 1, col + 1, c))
    })?;
    let what = if c == '\0' { " (a NUL byte)" } else { "" };
    Some(Issue {
        line,
        col,
        key: String::new(),
        message: format!(
            "invalid yaml: character U+{:04X}{what} is not allowed in a yaml file",
            u32::from(c)
        ),
    })
}

/// A tag as written: `!!str`, `!include`, `!<tag:...>`.
fn tag_text(t: &Tag) -> String {
    match t.handle.as_str() {
        CORE_TAGS => format!("!!{}", t.suffix),
        "" if t.suffix == "!" => "!".to_string(),
        "" => format!("!<{}>", t.suffix),
        handle => format!("{handle}{}", t.suffix),
    }
}

/// A YAML core schema tag's name (`str` for `!!str` or `!<tag:yaml.org,2002:str>`).
fn core_tag(t: &Tag) -> Option<&str> {
    match t.handle.as_str() {
        CORE_TAGS => Some(&t.suffix),
        "" => t.suffix.strip_prefix(CORE_TAGS),
        _ => None,
    }
}

const CORE_TAGS: &str = "tag:yaml.org,2002:";

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: BTreeMap<usize, Node>,
    nodes: usize,
    /// Scalar bytes copied by alias expansion so far.
    alias_bytes: usize,
    issues: Vec<Issue>,
}

fn pos(m: &Marker) -> (usize, usize) {
    (m.line().max(1), m.col() + 1)
}

fn issue_at(m: &Marker, key: &str, message: impl Into<String>) -> Issue {
    let (line, col) = pos(m);
    Issue {
        line,
        col,
        key: key.to_string(),
        message: message.into(),
    }
}

/// A key path: `services.web` joined with `image` is `services.web.image`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The scalar text (keys included) a copy of `node` holds.
fn text_bytes(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar { value, .. } => value.len(),
        Kind::Seq(items) => items.iter().map(text_bytes).sum(),
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, v)| text_bytes(k) + text_bytes(v))
            .sum(),
    }
}

fn size(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| size(k) + size(v))
                .sum::<usize>()
        }
    }
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), Issue> {
        self.parser.next_token().map_err(|e| {
            let m = e.marker();
            let (line, col) = pos(m);
            Issue {
                line,
                col,
                key: String::new(),
                message: format!("invalid yaml: {}", e.info()),
            }
        })
    }

    fn document(&mut self) -> Result<Node, Issue> {
        let mut root: Option<Node> = None;
        loop {
            let (ev, m) = self.next()?;
            match ev {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    if root.is_some() {
                        return Err(issue_at(
                            &m,
                            "",
                            "only one yaml document per file is supported",
                        ));
                    }
                    let (ev, m) = self.next()?;
                    root = Some(self.node(ev, m, "", 0)?);
                }
                other => {
                    // Events outside a document do not happen with yaml-rust2; treat as a node.
                    root = Some(self.node(other, m, "", 0)?);
                }
            }
        }
        Ok(root.unwrap_or(Node {
            kind: Kind::Scalar {
                value: String::new(),
                plain: true,
            },
            line: 0,
            col: 0,
        }))
    }

    /// A tag other than the one that means what the node already is (`!!str` on a scalar,
    /// which makes it a string, `!!map`, `!!seq`) would be read otherwise by Compose, or
    /// dropped: it is an error.
    fn check_tag(&mut self, tag: Option<&Tag>, allowed: &str, m: &Marker, path: &str) {
        let Some(t) = tag else { return };
        let non_specific = t.handle.is_empty() && t.suffix == "!";
        if core_tag(t) == Some(allowed) || (allowed == "str" && non_specific) {
            return;
        }
        self.issues.push(issue_at(
            m,
            path,
            format!(
                "yaml tag `{}` is not supported: write the value itself (only `!!str` is read)",
                tag_text(t)
            ),
        ));
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    fn node(&mut self, ev: Event, m: Marker, path: &str, depth: usize) -> Result<Node, Issue> {
        if depth > MAX_DEPTH {
            return Err(issue_at(&m, path, "yaml nested too deeply"));
        }
        self.nodes += 1;
        let (line, col) = pos(&m);
        match ev {
            Event::Scalar(value, style, anchor, tag) => {
                // `!!str 1` is a string; any other tag is refused.
                self.check_tag(tag.as_ref(), "str", &m, path);
                let str_tag = tag.is_some();
                let node = Node {
                    kind: Kind::Scalar {
                        value,
                        plain: style == TScalarStyle::Plain && !str_tag,
                    },
                    line,
                    col,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::Alias(id) => {
                let Some(node) = self.anchors.get(&id) else {
                    return Err(issue_at(&m, path, "alias to an unknown anchor"));
                };
                self.nodes += size(node);
                self.alias_bytes += text_bytes(node);
                if self.nodes > MAX_NODES || self.alias_bytes > MAX_ALIAS_BYTES {
                    return Err(issue_at(
                        &m,
                        path,
                        "alias expansion makes the document too large",
                    ));
                }
                Ok(node.clone())
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_tag(tag.as_ref(), "seq", &m, path);
                let mut items = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    let item_path = format!("{path}[{}]", items.len());
                    items.push(self.node(ev, m, &item_path, depth + 1)?);
                }
                // Same as for maps: the first item is where the list is written.
                let (line, col) = items.first().map_or((line, col), |i| (i.line, i.col));
                let node = Node {
                    kind: Kind::Seq(items),
                    line,
                    col,
                };
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::MappingStart(anchor, tag) => {
                self.check_tag(tag.as_ref(), "map", &m, path);
                let node = self.mapping(line, col, path, depth)?;
                self.remember(anchor, &node);
                Ok(node)
            }
            Event::SequenceEnd | Event::MappingEnd => Err(issue_at(
                &m,
                path,
                "invalid yaml: unexpected end of collection",
            )),
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => Err(issue_at(
                &m,
                path,
                "invalid yaml: unexpected document marker",
            )),
        }
    }

    fn mapping(
        &mut self,
        line: usize,
        col: usize,
        path: &str,
        depth: usize,
    ) -> Result<Node, Issue> {
        let mut explicit: Vec<(Node, Node)> = Vec::new();
        let mut merged: Vec<(Node, Node)> = Vec::new();
        loop {
            let (ev, m) = self.next()?;
            if ev == Event::MappingEnd {
                break;
            }
            let key = self.node(ev, m, path, depth + 1)?;
            let (vev, vm) = self.next()?;
            let key_text = key.scalar().map(str::to_string);
            let child_path = join(path, key_text.as_deref().unwrap_or("?"));
            let value = self.node(vev, vm, &child_path, depth + 1)?;
            let Some(key_text) = key_text else {
                self.issues.push(Issue {
                    line: key.line,
                    col: key.col,
                    key: path.to_string(),
                    message: "a key must be a plain string, not a list or a map".into(),
                });
                continue;
            };
            if key.plain() == Some("<<") {
                match value.kind {
                    Kind::Map(entries) => merged.extend(entries),
                    Kind::Seq(items) => {
                        for item in items {
                            match item.kind {
                                Kind::Map(entries) => merged.extend(entries),
                                _ => self.issues.push(Issue {
                                    line: item.line,
                                    col: item.col,
                                    key: child_path.clone(),
                                    message: "a merge key `<<` takes a map or a list of maps"
                                        .into(),
                                }),
                            }
                        }
                    }
                    _ => self.issues.push(Issue {
                        line: value.line,
                        col: value.col,
                        key: child_path.clone(),
                        message: "a merge key `<<` takes a map or a list of maps".into(),
                    }),
                }
                continue;
            }
            if let Some((first, _)) = explicit
                .iter()
                .find(|(k, _)| k.scalar() == Some(key_text.as_str()))
            {
                self.issues.push(Issue {
                    line: key.line,
                    col: key.col,
                    key: child_path,
                    message: format!("duplicate key (first written at line {})", first.line),
                });
                continue;
            }
            explicit.push((key, value));
        }
        // The parser marks a block map where its first key ends; point at the first key written
        // instead, which is where a reader looks for the map.
        let (line, col) = explicit
            .first()
            .map_or((line, col), |(k, _)| (k.line, k.col));
        // Explicit keys win over merged ones; among merged maps the first one wins (YAML merge).
        for (k, v) in merged {
            let name = k.scalar().unwrap_or_default();
            if !explicit.iter().any(|(e, _)| e.scalar() == Some(name)) {
                explicit.push((k, v));
            }
        }
        Ok(Node {
            kind: Kind::Map(explicit),
            line,
            col,
        })
    }
}
