//! Compose variable interpolation: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
//! `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and `$$` for a literal `$`.
//!
//! Pure string work: the variables come in through a lookup function, never from the process.
//! Error messages name variables but never show their values.

use super::yaml::{Kind, Node};

/// How deeply `${A:-${B:-...}}` may nest: far beyond any real use, and a bound on the recursion
/// (a manifest must never overflow the stack).
const MAX_DEPTH: usize = 16;

/// Replaces every reference in `text`. An unset variable without a default becomes empty, as in
/// Compose (which only warns).
pub fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    interpolate_at(text, lookup, 0)
}

fn interpolate_at(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "invalid interpolation format: `${{...}}` nested more than {MAX_DEPTH} deep"
        ));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let close = matching_brace(&chars, i + 2).ok_or_else(|| {
                    "invalid interpolation format: `${` is never closed".to_string()
                })?;
                let inner: String = chars[i + 2..close].iter().collect();
                out.push_str(&braced(&inner, lookup, depth)?);
                i = close + 1;
            }
            Some(&n) if n == '_' || n.is_ascii_alphabetic() => {
                let mut j = i + 1;
                while j < chars.len() && (chars[j] == '_' || chars[j].is_ascii_alphanumeric()) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(&lookup(&name).unwrap_or_default());
                i = j;
            }
            _ => {
                // A lone `$` followed by something that cannot start a name stays as written.
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
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

fn braced(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    depth: usize,
) -> Result<String, String> {
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
        return Err(
            "invalid interpolation format: `${` must be followed by a variable name".to_string(),
        );
    }
    let rest = &inner[name_len..];
    let value = lookup(name);
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
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
        return Err(format!(
            "invalid interpolation format after `${{{name}`: expected `}}`, `:-`, `-`, `:?`, `?`, `:+` or `+`"
        ));
    };
    let expand = || interpolate_at(word, lookup, depth + 1);
    Ok(match op {
        "" => value.unwrap_or_default(),
        ":-" if !non_empty => expand()?,
        "-" if !set => expand()?,
        ":?" | "?" if (op == ":?" && !non_empty) || (op == "?" && !set) => {
            // The message is shown as written: expanding it could print another variable's value.
            let msg = word;
            return Err(if msg.is_empty() {
                format!("required variable `{name}` is missing a value")
            } else {
                format!("required variable `{name}` is missing a value: {msg}")
            });
        }
        ":+" => {
            if non_empty {
                expand()?
            } else {
                String::new()
            }
        }
        "+" => {
            if set {
                expand()?
            } else {
                String::new()
            }
        }
        _ => value.unwrap_or_default(),
    })
}

/// Interpolates every scalar value (never a key) of a tree in place. A plain scalar stays plain
/// so `replicas: ${N}` is then read as a number; one that became empty is made a string, since
/// Compose reads `image: ${UNSET}` as an empty string, not null.
pub fn interpolate_tree(
    node: &mut Node,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<(usize, usize, String, String)>,
) {
    let (line, col) = (node.line, node.col);
    match &mut node.kind {
        Kind::Scalar { value, plain } => {
            if !value.contains('$') {
                return;
            }
            match interpolate(value, lookup) {
                Ok(new) => {
                    if new.is_empty() {
                        *plain = false;
                    }
                    *value = new;
                }
                Err(msg) => errors.push((line, col, path.to_string(), msg)),
            }
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), lookup, errors);
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
                interpolate_tree(v, &child, lookup, errors);
            }
        }
    }
}
