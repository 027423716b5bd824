//! Value syntaxes shared by the fleet file and Compose: Go durations, byte sizes, POSIX shell
//! words, dotenv files, and the "did you mean" key suggestion.
//!
//! Plain functions from text to values; no I/O. Errors are short lowercase phrases that never
//! repeat a value that could be secret (dotenv errors name lines, not contents).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::interpolate::{
    check_format, interpolate, interpolate_tree, Budget, Failure, Var, MAX_FILE_BYTES,
    MAX_VALUE_BYTES,
};
use super::yaml::Node;

/// An interpolation error: line, column, key path, message.
pub type LocatedError = (usize, usize, String, String);

/// Interpolates a whole file's tree as Compose does: the environment `env` first, then the
/// `.env` entries of `dotenv`. Returns the errors (line, column, key path, message) and the
/// names of the `.env` variables the file used (a secret-named one is to be masked).
pub fn interpolate_file(
    root: &mut Node,
    env: &BTreeMap<String, String>,
    dotenv: &DotenvVars,
) -> (Vec<LocatedError>, BTreeSet<String>) {
    let used: RefCell<BTreeSet<String>> = RefCell::default();
    let lookup = |n: &str| match env.get(n) {
        Some(v) => Var::Set(v.clone()),
        None => {
            if dotenv.defines(n) {
                used.borrow_mut().insert(n.to_string());
            }
            dotenv.get(n)
        }
    };
    let mut errors = Vec::new();
    let mut budget = Budget::new(MAX_FILE_BYTES);
    interpolate_tree(root, "", &lookup, MAX_VALUE_BYTES, &mut budget, &mut errors);
    (errors, used.into_inner())
}

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
/// variables defined above them and then `outer`: every variable is used (an `env_file`, all of
/// which goes into the container), each expanded once, within the caps of `DotenvVars`. The
/// first error by line, if any.
pub fn dotenv_map(
    entries: &[DotenvEntry],
    outer: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, (usize, String)> {
    let vars = DotenvVars::new(entries, outer, MAX_VALUE_BYTES, MAX_FILE_BYTES);
    let mut map = BTreeMap::new();
    for name in vars.names() {
        if let Var::Set(v) = vars.get(name) {
            map.insert(name.to_string(), v);
        }
    }
    match vars.take_errors().into_iter().next() {
        Some(e) => Err(e),
        None => Ok(map),
    }
}

/// One definition in a dotenv file, as far as it can be known without expanding anything.
enum Def {
    /// A single-quoted value, a value without `$`, or a bare `KEY` that `outer` sets.
    Known(String),
    /// A value with references, expanded on first use.
    Expand(String),
}

/// Where the expansion of a `Def::Expand` stands.
enum Slot {
    Todo,
    Done(String),
    /// Its error is recorded; what uses it fails too, without a second message.
    Failed,
}

/// What a name means at some line of the file.
enum Found {
    Value(String),
    Unset,
    Pending(usize),
    Broken,
}

/// The variables of one dotenv file (`.env`, an `env_file`), expanded lazily: a variable is
/// expanded when it is first asked for, at most once (memoised), and one that is never used is
/// never expanded. As Compose reads the file top to bottom, a value sees the definitions above
/// it, then `outer`. Expansion needs no recursion: a reference to a variable not expanded yet
/// answers `Var::Pending`, that variable is expanded first (an explicit stack, and always one
/// defined higher up, so it ends), and the value is tried again.
///
/// Bounded: a value may not grow past `max_value` bytes and the values expanded in the file
/// together past `max_total`; either is an error on the line of the variable, naming it and
/// never its value. Format errors are found in every value up front, used or not.
pub struct DotenvVars<'a> {
    entries: &'a [DotenvEntry],
    defs: Vec<Option<Def>>,
    /// For each name, the entries that define it, in file order.
    by_name: BTreeMap<String, Vec<usize>>,
    outer: &'a dyn Fn(&str) -> Option<String>,
    slots: RefCell<Vec<Slot>>,
    max_value: usize,
    budget: RefCell<Budget>,
    errors: RefCell<Vec<(usize, String)>>,
}

impl<'a> DotenvVars<'a> {
    pub fn new(
        entries: &'a [DotenvEntry],
        outer: &'a dyn Fn(&str) -> Option<String>,
        max_value: usize,
        max_total: usize,
    ) -> DotenvVars<'a> {
        let mut errors = Vec::new();
        let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut slots = Vec::with_capacity(entries.len());
        let mut defs = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let def = match &e.value {
                // A bare `KEY` takes its value from outside, and defines nothing without one.
                None => outer(&e.key).map(Def::Known),
                Some(v) if e.literal || !v.contains('$') => Some(Def::Known(v.clone())),
                Some(v) => Some(Def::Expand(v.clone())),
            };
            let mut slot = Slot::Todo;
            if let Some(Def::Expand(v)) = &def {
                if let Err(m) = check_format(v) {
                    errors.push((e.line, format!("variable `{}`: {m}", e.key)));
                    slot = Slot::Failed;
                }
            }
            if def.is_some() {
                by_name.entry(e.key.clone()).or_default().push(i);
            }
            defs.push(def);
            slots.push(slot);
        }
        DotenvVars {
            entries,
            defs,
            by_name,
            outer,
            slots: RefCell::new(slots),
            max_value,
            budget: RefCell::new(Budget::new(max_total)),
            errors: RefCell::new(errors),
        }
    }

    /// The names the file defines, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn defines(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// A variable's value at the end of the file (then `outer`), expanding what it needs.
    pub fn get(&self, name: &str) -> Var {
        let end = self.entries.len();
        let mut found = self.before(name, end);
        if let Found::Pending(j) = found {
            self.resolve(j);
            found = self.before(name, end);
        }
        match found {
            Found::Value(v) => Var::Set(v),
            Found::Unset => Var::Unset,
            // Resolved above: a slot never stays pending after `resolve`.
            Found::Pending(_) | Found::Broken => Var::Broken,
        }
    }

    /// Every error found so far, by line: (line, message).
    pub fn take_errors(&self) -> Vec<(usize, String)> {
        let mut errors = std::mem::take(&mut *self.errors.borrow_mut());
        errors.sort();
        errors.dedup();
        errors
    }

    /// What `name` means to the entry at index `end` (the last definition above it).
    fn before(&self, name: &str, end: usize) -> Found {
        let Some(indices) = self.by_name.get(name) else {
            return match (self.outer)(name) {
                Some(v) => Found::Value(v),
                None => Found::Unset,
            };
        };
        let above = indices.partition_point(|&j| j < end);
        let Some(&j) = above.checked_sub(1).and_then(|k| indices.get(k)) else {
            return match (self.outer)(name) {
                Some(v) => Found::Value(v),
                None => Found::Unset,
            };
        };
        match &self.defs[j] {
            Some(Def::Known(v)) => Found::Value(v.clone()),
            Some(Def::Expand(_)) => match &self.slots.borrow()[j] {
                Slot::Done(v) => Found::Value(v.clone()),
                Slot::Failed => Found::Broken,
                Slot::Todo => Found::Pending(j),
            },
            // Never indexed: a definition that defines nothing is not in `by_name`.
            None => Found::Unset,
        }
    }

    /// Expands the entry at `target` and, first, every entry its value turns out to need.
    fn resolve(&self, target: usize) {
        let mut stack = vec![target];
        while let Some(&i) = stack.last() {
            let Some(Def::Expand(text)) = &self.defs[i] else {
                stack.pop();
                continue;
            };
            if !matches!(self.slots.borrow()[i], Slot::Todo) {
                stack.pop();
                continue;
            }
            let pending = RefCell::new(Vec::new());
            let lookup = |n: &str| match self.before(n, i) {
                Found::Value(v) => Var::Set(v),
                Found::Unset => Var::Unset,
                Found::Broken => Var::Broken,
                Found::Pending(j) => {
                    pending.borrow_mut().push(j);
                    Var::Pending
                }
            };
            let result = interpolate(text, &lookup, self.max_value);
            let key = &self.entries[i].key;
            let line = self.entries[i].line;
            let slot = match result {
                Ok(e) if !e.complete => {
                    // Every entry pushed is defined above `i`, so this ends.
                    let mut deps = pending.into_inner();
                    deps.sort_unstable();
                    deps.dedup();
                    stack.extend(deps);
                    continue;
                }
                Ok(e) => match self.budget.borrow_mut().spend(e.value.len()) {
                    Ok(()) => Slot::Done(e.value),
                    Err(m) => self.fail(line, format!("variable `{key}`: {m}")),
                },
                Err(Failure::Broken(_)) => Slot::Failed,
                Err(Failure::Invalid(m)) => self.fail(line, format!("variable `{key}`: {m}")),
                Err(Failure::TooLarge { limit, .. }) => self.fail(
                    line,
                    format!(
                        "variable `{key}` expands to more than {limit} bytes (the cap on an interpolated value)"
                    ),
                ),
            };
            self.slots.borrow_mut()[i] = slot;
            stack.pop();
        }
    }

    fn fail(&self, line: usize, message: String) -> Slot {
        self.errors.borrow_mut().push((line, message));
        Slot::Failed
    }
}

/// The words in `text` that could be variable names of a dotenv file (`[A-Za-z0-9_.-]+`): a
/// superset of the names a text can refer to or look up.
pub fn name_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .filter(|w| !w.is_empty())
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
