//! Value syntaxes shared by the fleet file and Compose: Go durations, byte sizes, POSIX shell
//! words, dotenv files, and the "did you mean" key suggestion.
//!
//! Plain functions from text to values; no I/O. Errors are short lowercase phrases that never
//! repeat a value that could be secret (dotenv errors name lines, not contents).

use std::collections::BTreeMap;

/// A Go `time.ParseDuration` string (`1m30s`, `500ms`, `2us`) in nanoseconds.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration `{s}` (expected e.g. `30s`, `1m30s`, `500ms`)");
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += number * unit;
    }
    if total > i64::MAX as f64 {
        return Err(bad());
    }
    let ns = total.round() as i64;
    Ok(if neg { -ns } else { ns })
}

/// A byte size as Compose reads it (`512m`, `1.5g`, `100k`, `10b`, plain digits as bytes);
/// units are powers of 1024, case-insensitive, with an optional `b` suffix.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid size `{s}` (expected e.g. `512m`, `1g` or a number of bytes)");
    let t = s.trim().to_ascii_lowercase();
    let num_len = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    if num_len == 0 {
        return Err(bad());
    }
    let number: f64 = t[..num_len].parse().map_err(|_| bad())?;
    let mult: f64 = match t[num_len..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024f64.powi(4),
        "p" | "pb" | "pib" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    let bytes = number * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// Splits a command string into words as a POSIX shell would (quotes and backslashes; no
/// expansion), which is what Compose does for a string `command`/`entrypoint`.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(ch @ ('"' | '\\' | '$' | '`')) => word.push(ch),
                            Some('\n') => {}
                            Some(ch) => {
                                word.push('\\');
                                word.push(ch);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(ch) => word.push(ch),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') => {}
                    Some(ch) => word.push(ch),
                    None => return Err("a trailing backslash escapes nothing".into()),
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// One `KEY=value` line of a dotenv file; `value` is None for a bare `KEY`.
#[derive(Debug, Clone, PartialEq)]
pub struct DotenvEntry {
    pub line: usize,
    pub key: String,
    pub value: Option<String>,
    /// Single-quoted values are literal: no interpolation.
    pub literal: bool,
}

/// Parses a dotenv file as Compose does: `KEY=VALUE`, `export KEY=VALUE`, `#` comments, single
/// quotes (literal), double quotes (with `\n`, `\t`, `\"`, `\\` escapes, may span lines), and
/// unquoted values ending at ` #`. Errors are (line, message) and never quote values.
pub fn parse_dotenv(text: &str) -> Result<Vec<DotenvEntry>, (usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let raw = lines[i].trim_start_matches('\u{feff}');
        i += 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let (key, value) = match line.find('=') {
            Some(p) => (line[..p].trim(), Some(line[p + 1..].trim_start())),
            None => (line, None),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err((lineno, "invalid variable name".into()));
        }
        let Some(value) = value else {
            out.push(DotenvEntry {
                line: lineno,
                key: key.into(),
                value: None,
                literal: false,
            });
            continue;
        };
        let (value, literal) = if let Some(rest) = value.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => (rest[..end].to_string(), true),
                None => return Err((lineno, "unterminated single quote".into())),
            }
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut acc = String::new();
            let mut cur = rest.to_string();
            loop {
                let mut closed = false;
                let mut chars = cur.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some('n') => acc.push('\n'),
                            Some('t') => acc.push('\t'),
                            Some('r') => acc.push('\r'),
                            Some(ch) => acc.push(ch),
                            None => acc.push('\\'),
                        },
                        ch => acc.push(ch),
                    }
                }
                if closed {
                    break;
                }
                // An unclosed double quote continues on the next line.
                match lines.get(i) {
                    Some(next) => {
                        acc.push('\n');
                        cur = next.to_string();
                        i += 1;
                    }
                    None => return Err((lineno, "unterminated double quote".into())),
                }
            }
            (acc, false)
        } else {
            let end = value.find(" #").unwrap_or(value.len());
            (value[..end].trim_end().to_string(), false)
        };
        out.push(DotenvEntry {
            line: lineno,
            key: key.into(),
            value: Some(value),
            literal,
        });
    }
    Ok(out)
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The nearest candidate when it is close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = 2.max(word.chars().count() / 3);
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// Turns a dotenv file into a map, interpolating unquoted and double-quoted values with the
/// variables defined above them and then `outer`.
pub fn dotenv_map(
    entries: &[DotenvEntry],
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, (usize, String)> {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for e in entries {
        let value = match &e.value {
            None => match outer(&e.key) {
                Some(v) => v,
                None => continue,
            },
            Some(v) if e.literal => v.clone(),
            Some(v) => {
                let lookup = |name: &str| map.get(name).cloned().or_else(|| outer(name));
                super::interpolate::interpolate(v, &lookup).map_err(|m| (e.line, m))?
            }
        };
        map.insert(e.key.clone(), value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ns("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration_ns("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("2us"), Ok(2_000));
        assert_eq!(parse_duration_ns("1h"), Ok(3_600_000_000_000));
        assert_eq!(parse_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_duration_ns("0"), Ok(0));
        assert!(parse_duration_ns("10").is_err());
        assert!(parse_duration_ns("s").is_err());
        assert!(parse_duration_ns("10x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("100k"), Ok(102_400));
        assert_eq!(parse_bytes("10b"), Ok(10));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_split(r#"sh -c 'echo "hi there"' a\ b "x\"y""#).unwrap(),
            vec!["sh", "-c", "echo \"hi there\"", "a b", "x\"y"]
        );
        assert_eq!(shell_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shell_split("''").unwrap(), vec![""]);
        assert!(shell_split("echo 'oops").is_err());
    }

    #[test]
    fn dotenv() {
        let text = "# c\nA=1\nexport B = two # note\nC='lit $A'\nD=\"x\\ny\"\nE=${A}z\nF\n";
        let entries = parse_dotenv(text).unwrap();
        let outer = |n: &str| (n == "F").then(|| "from-env".to_string());
        let map = dotenv_map(&entries, &outer).unwrap();
        assert_eq!(map["A"], "1");
        assert_eq!(map["B"], "two");
        assert_eq!(map["C"], "lit $A");
        assert_eq!(map["D"], "x\ny");
        assert_eq!(map["E"], "1z");
        assert_eq!(map["F"], "from-env");
        assert_eq!(parse_dotenv("A='x\n").unwrap_err().0, 1);
        assert_eq!(parse_dotenv("ok=1\nbad key=2\n").unwrap_err().0, 2);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("replicsa", ["replicas", "mode"]), Some("replicas"));
        assert_eq!(suggest("imgae", ["image", "init"]), Some("image"));
        assert_eq!(suggest("zzzzzz", ["image"]), None);
    }
}
