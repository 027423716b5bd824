//! Compose variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`.
//!
//! Pure string work: the variables come in through a lookup function, never from the process.
//! Error messages name variables but never show their values. What it builds is bounded: a
//! value may not grow past `MAX_VALUE_BYTES` and a file's values together past a `Budget`, so a
//! few hundred bytes of nested references fail with a located error instead of taking
//! gigabytes; a lookup may answer `Var::Pending`, which lets a dotenv file expand its variables
//! lazily, each at most once, without recursion.

use super::yaml::{Kind, Node};

/// How deeply `${A:-${B:-...}}` may nest: far beyond any real use, and a bound on the recursion
/// (a manifest must never overflow the stack).
const MAX_DEPTH: usize = 16;

/// The cap on one value grown by interpolation: 64 KiB, far beyond any real variable, and what
/// keeps a few hundred bytes of nested references from expanding to gigabytes. A value written
/// longer than this may stay as long as it is written; it may not grow past it.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The cap on what interpolation produces in one file, all its values together (4 MiB).
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

/// What a lookup knows of a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    Set(String),
    Unset,
    /// Not expanded yet (a dotenv variable defined above the one being expanded): the reference
    /// and whatever depends on it (a `${X:-default}` word) are skipped for now, and the result
    /// is marked incomplete, so that the caller expands the variable and tries again.
    Pending,
    /// Has no usable value: its own expansion failed, and that error is reported where the
    /// variable is defined.
    Broken,
}

/// Why a value could not be interpolated. Messages name variables, never their values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A format error, or a required variable without a value.
    Invalid(String),
    /// The value would grow past `limit` bytes; `name` is the variable whose value crossed it.
    TooLarge { limit: usize, name: Option<String> },
    /// It uses this variable, which has no usable value.
    Broken(String),
}

/// An interpolated value; `complete` is false when a `Var::Pending` variable was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub value: String,
    pub complete: bool,
}

/// Replaces every reference in `text`. An unset variable without a default becomes empty, as in
/// Compose (which only warns). The result may not be longer than `max_value` bytes, or than
/// `text` itself when that is longer; nothing larger is ever built.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Var,
    max_value: usize,
) -> Result<Expanded, Failure> {
    let mut run = Run {
        lookup,
        limit: max_value.max(text.len()),
        complete: true,
        check_only: false,
    };
    let value = run.expand(text, 0)?;
    Ok(Expanded {
        value,
        complete: run.complete,
    })
}

/// Checks the format of every reference in `text`, in every branch, without looking any
/// variable up: what a value that may never be expanded is still held to.
pub fn check_format(text: &str) -> Result<(), String> {
    let mut run = Run {
        lookup: &|_| Var::Unset,
        limit: usize::MAX,
        complete: true,
        check_only: true,
    };
    match run.expand(text, 0) {
        Ok(_) => Ok(()),
        Err(Failure::Invalid(m)) => Err(m),
        Err(Failure::TooLarge { limit, .. }) => Err(format!("longer than {limit} bytes")),
        Err(Failure::Broken(name)) => Err(format!("variable `{name}` has no usable value")),
    }
}

/// One interpolation: the lookup, the size limit, and whether a pending variable was skipped.
struct Run<'a> {
    lookup: &'a dyn Fn(&str) -> Var,
    limit: usize,
    complete: bool,
    /// Only the format is checked: no lookup, every word is checked, the output stays empty.
    check_only: bool,
}

impl Run<'_> {
    /// A variable's value; `None` when it is pending (the run is then incomplete).
    fn look(&mut self, name: &str) -> Result<Option<Option<String>>, Failure> {
        if self.check_only {
            return Ok(Some(None));
        }
        match (self.lookup)(name) {
            Var::Set(v) => Ok(Some(Some(v))),
            Var::Unset => Ok(Some(None)),
            Var::Pending => {
                self.complete = false;
                Ok(None)
            }
            Var::Broken => Err(Failure::Broken(name.to_string())),
        }
    }

    /// Appends `piece`, failing rather than growing `out` past the limit.
    fn push(&self, out: &mut String, piece: &str, name: Option<&str>) -> Result<(), Failure> {
        if out.len() + piece.len() > self.limit {
            return Err(Failure::TooLarge {
                limit: self.limit,
                name: name.map(str::to_string),
            });
        }
        out.push_str(piece);
        Ok(())
    }

    fn expand(&mut self, text: &str, depth: usize) -> Result<String, Failure> {
        if depth > MAX_DEPTH {
            return Err(Failure::Invalid(format!(
                "invalid interpolation format: `${{...}}` nested more than {MAX_DEPTH} deep"
            )));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut out = String::with_capacity(text.len().min(self.limit));
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c != '$' {
                if !self.check_only {
                    let mut buf = [0u8; 4];
                    self.push(&mut out, c.encode_utf8(&mut buf), None)?;
                }
                i += 1;
                continue;
            }
            match chars.get(i + 1) {
                Some('$') => {
                    if !self.check_only {
                        self.push(&mut out, "$", None)?;
                    }
                    i += 2;
                }
                Some('{') => {
                    let close = matching_brace(&chars, i + 2).ok_or_else(|| {
                        Failure::Invalid(
                            "invalid interpolation format: `${` is never closed".to_string(),
                        )
                    })?;
                    let inner: String = chars[i + 2..close].iter().collect();
                    let piece = self.braced(&inner, depth)?;
                    let name_end = inner
                        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                        .unwrap_or(inner.len());
                    self.push(&mut out, &piece, Some(&inner[..name_end]))?;
                    i = close + 1;
                }
                Some(&n) if n == '_' || n.is_ascii_alphabetic() => {
                    let mut j = i + 1;
                    while j < chars.len() && (chars[j] == '_' || chars[j].is_ascii_alphanumeric()) {
                        j += 1;
                    }
                    let name: String = chars[i + 1..j].iter().collect();
                    if let Some(Some(v)) = self.look(&name)? {
                        self.push(&mut out, &v, Some(&name))?;
                    }
                    i = j;
                }
                _ => {
                    // A lone `$` followed by something that cannot start a name stays as written.
                    if !self.check_only {
                        self.push(&mut out, "$", None)?;
                    }
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    fn braced(&mut self, inner: &str, depth: usize) -> Result<String, Failure> {
        let invalid = |m: String| Err(Failure::Invalid(m));
        let name_len = inner
            .char_indices()
            .find(|(_, c)| !(*c == '_' || c.is_ascii_alphanumeric()))
            .map_or(inner.len(), |(i, _)| i);
        let name = &inner[..name_len];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
        // The written text is not quoted back: in an env file or `.env` it may be a literal
        // password that happens to contain `${`.
        if !valid {
            return invalid(
                "invalid interpolation format: `${` must be followed by a variable name".into(),
            );
        }
        let rest = &inner[name_len..];
        let (op, word) = if rest.is_empty() {
            ("", "")
        } else if let Some(w) = rest.strip_prefix(":-") {
            (":-", w)
        } else if let Some(w) = rest.strip_prefix(":?") {
            (":?", w)
        } else if let Some(w) = rest.strip_prefix(":+") {
            (":+", w)
        } else if let Some(w) = rest.strip_prefix('-') {
            ("-", w)
        } else if let Some(w) = rest.strip_prefix('?') {
            ("?", w)
        } else if let Some(w) = rest.strip_prefix('+') {
            ("+", w)
        } else {
            return invalid(format!(
                "invalid interpolation format after `${{{name}`: expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+`"
            ));
        };
        if self.check_only {
            // A `?` message is shown as written, never expanded: nothing in it to check.
            if !op.contains('?') {
                self.expand(word, depth + 1)?;
            }
            return Ok(String::new());
        }
        let Some(value) = self.look(name)? else {
            // Not known yet: which branch applies is decided once it is.
            return Ok(String::new());
        };
        let set = value.is_some();
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        Ok(match op {
            "" => value.unwrap_or_default(),
            ":-" if !non_empty => self.expand(word, depth + 1)?,
            "-" if !set => self.expand(word, depth + 1)?,
            ":?" | "?" if (op == ":?" && !non_empty) || (op == "?" && !set) => {
                // The message is shown as written: expanding it could print another variable's
                // value.
                let msg = word;
                return invalid(if msg.is_empty() {
                    format!("required variable `{name}` is missing a value")
                } else {
                    format!("required variable `{name}` is missing a value: {msg}")
                });
            }
            ":+" if non_empty => self.expand(word, depth + 1)?,
            "+" if set => self.expand(word, depth + 1)?,
            ":+" | "+" => String::new(),
            _ => value.unwrap_or_default(),
        })
    }
}

/// Index of the `}` closing a `${` whose contents start at `start`, allowing nested `${...}`.
fn matching_brace(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'$') => i += 1,
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 1;
            }
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// What interpolation may still produce in one file (`MAX_FILE_BYTES` in all), so that many
/// values each under `MAX_VALUE_BYTES` cannot add up to gigabytes either.
#[derive(Debug, Clone)]
pub struct Budget {
    left: usize,
    cap: usize,
    over: bool,
}

impl Budget {
    pub fn new(cap: usize) -> Budget {
        Budget {
            left: cap,
            cap,
            over: false,
        }
    }

    /// Takes `bytes` from the budget; the error says what was exceeded.
    pub fn spend(&mut self, bytes: usize) -> Result<(), String> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                self.over = true;
                Err(format!(
                    "interpolation produces more than {} bytes in this file (the cap per file)",
                    self.cap
                ))
            }
        }
    }

    /// Whether it was ever exceeded.
    pub fn exhausted(&self) -> bool {
        self.over
    }
}

/// The message for a value that grows past the cap, naming the variable when there is one.
pub fn too_large_message(limit: usize, name: Option<&str>) -> String {
    match name {
        Some(name) => format!(
            "the value grows past {limit} bytes with `${{{name}}}` (the cap on an interpolated value)"
        ),
        None => format!("the value grows past {limit} bytes (the cap on an interpolated value)"),
    }
}

/// Interpolates every scalar value (never a key) of a tree in place. A plain scalar stays plain
/// so `replicas: ${N}` is then read as a number; one that became empty is made a string, since
/// Compose reads `image: ${UNSET}` as an empty string, not null. Every value is held to
/// `max_value` and all of them together to `budget`; once the budget is spent (said once), the
/// rest is left as written.
pub fn interpolate_tree(
    node: &mut Node,
    path: &str,
    lookup: &dyn Fn(&str) -> Var,
    max_value: usize,
    budget: &mut Budget,
    errors: &mut Vec<(usize, usize, String, String)>,
) {
    let (line, col) = (node.line, node.col);
    match &mut node.kind {
        Kind::Scalar { value, plain } => {
            if !value.contains('$') || budget.exhausted() {
                return;
            }
            let message = match interpolate(value, lookup, max_value) {
                Ok(new) => match budget.spend(new.value.len()) {
                    Ok(()) => {
                        if new.value.is_empty() {
                            *plain = false;
                        }
                        *value = new.value;
                        return;
                    }
                    Err(m) => m,
                },
                Err(Failure::Invalid(m)) => m,
                Err(Failure::TooLarge { limit, name }) => too_large_message(limit, name.as_deref()),
                Err(Failure::Broken(name)) => format!(
                    "variable `{name}` has no usable value: its definition could not be expanded"
                ),
            };
            errors.push((line, col, path.to_string(), message));
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let child = format!("{path}[{i}]");
                interpolate_tree(item, &child, lookup, max_value, budget, errors);
            }
        }
        Kind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let key = k.scalar().unwrap_or_default();
                let child = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_tree(v, &child, lookup, max_value, budget, errors);
            }
        }
    }
}

/// Calls `f` with every scalar of a tree, keys included.
pub fn each_scalar(node: &Node, f: &mut dyn FnMut(&str)) {
    match &node.kind {
        Kind::Scalar { value, .. } => f(value),
        Kind::Seq(items) => items.iter().for_each(|i| each_scalar(i, f)),
        Kind::Map(entries) => {
            for (k, v) in entries {
                each_scalar(k, f);
                each_scalar(v, f);
            }
        }
    }
}
