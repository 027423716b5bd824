//! `convoy daemon --config FILE`: the daemon's flags read from a YAML file, merged with the
//! command line, checked, and resolved into one concrete `DaemonConfig`.
//!
//! Every key of the file is a flag's long name (`poll-interval`, `tls-cert`, ...) plus
//! `state-dir`; a flag given on the command line (or through its environment variable, which
//! clap treats alike) wins over the file, and a value given nowhere takes the default written
//! here and in `systemd/daemon.yaml.example`. Durations are whole numbers in the flag's unit.
//! Relative paths in the file are resolved against the file's own directory, so a config works
//! from any working directory; `path` stays relative to the repository, and a `repo` that is a
//! URL or `host:path` is left alone.
//!
//! Errors are located (`file:line:column: key: message`) and all reported at once, like the
//! manifest's. The manifest's YAML tree is private to it, so the few events a flat map needs are
//! read here from yaml-rust2 directly. This module reads the config file and nothing else: it
//! never opens the files the config names (tokens, keys), never echoes a value in an error (a
//! secret pasted into the wrong key stays out of logs), and must not panic on any input.

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::cli::DaemonArgs;
use crate::manifest::suggest;

/// The largest config file read: a daemon's config is a screenful, and a bound keeps a wrong
/// path (a log, a device) from being read whole.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Every key a config file may have, in the order `systemd/daemon.yaml.example` documents them.
pub const KEYS: [&str; 22] = [
    "repo",
    "branch",
    "path",
    "poll-interval",
    "resync",
    "heartbeat-ms",
    "lock-timeout",
    "listen",
    "insecure-listen",
    "tls-cert",
    "tls-key",
    "api-token-file",
    "metrics-token",
    "webhook-secret-file",
    "git-credentials-file",
    "git-ca-file",
    "require-signed",
    "allowed-signers",
    "gpg-keyring",
    "age-key-file",
    "state-dir",
    "notifications",
];

/// The default API address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// A year: the longest any duration may be, so that `Instant + duration` cannot overflow in the
/// daemon's timers.
const MAX_SECS: u64 = 365 * 24 * 3600;

/// The daemon's settings, resolved: every value concrete, every default applied, every rule
/// checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// A working directory, a bare repository, or a `file://`, `ssh://`, `user@host:path` or
    /// `https://` remote. Default `.`.
    pub repo: String,
    /// None: the repository's HEAD branch.
    pub branch: Option<String>,
    /// The fleet's root inside the repository (relative to the repository, never resolved).
    pub path: Option<PathBuf>,
    /// Default 60 s, at least 1 s.
    pub poll_interval: Duration,
    /// Default 30 s, at least 1 s.
    pub resync: Duration,
    /// Default 1000 ms, at least 100 ms.
    pub heartbeat: Duration,
    /// Default 60 s; zero refuses at once.
    pub lock_timeout: Duration,
    /// Default `127.0.0.1:7878`; None for `off` (no API).
    pub listen: Option<SocketAddr>,
    pub insecure_listen: bool,
    /// (certificate chain, private key): both or neither.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub api_token_file: Option<PathBuf>,
    pub metrics_token: bool,
    pub webhook_secret_file: Option<PathBuf>,
    pub git_credentials_file: Option<PathBuf>,
    pub git_ca_file: Option<PathBuf>,
    /// When true, `allowed_signers` or `gpg_keyring` (or both) is set.
    pub require_signed: bool,
    pub allowed_signers: Option<PathBuf>,
    pub gpg_keyring: Option<PathBuf>,
    /// None: the caller's default state directory.
    pub state_dir: Option<PathBuf>,
    /// age identities for the stacks' SOPS-encrypted files; the global `--age-key-file` (or
    /// `SOPS_AGE_KEY_FILE`) wins over it.
    pub age_key_file: Option<PathBuf>,
    /// `notifications:`, the same list as `convoy.yaml`'s (`manifest::read_config_notifications`),
    /// its relative file paths resolved against the config file's folder. Told besides those of
    /// the commit in force.
    pub notifications: Vec<crate::model::notify::NotificationSpec>,
}

/// One problem with the daemon's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The config file; None when the problem is in a command-line flag.
    pub file: Option<PathBuf>,
    /// 1-based; 0 when the problem concerns the file as a whole or a flag.
    pub line: usize,
    pub column: usize,
    /// The key (`poll-interval`), or the flag (`--poll-interval`); empty for the file itself.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if self.line > 0 {
                write!(f, ":{}:{}", self.line, self.column)?;
            }
            sep = ": ";
        }
        if !self.key.is_empty() {
            write!(f, "{sep}{}", self.key)?;
            sep = ": ";
        }
        write!(f, "{sep}{}", self.message)
    }
}

/// Every problem found (never empty); its Display is one problem per line, in file order, then
/// the flags'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Resolves the daemon's settings: `cli.config`'s file (when given) under the command line's
/// flags, then defaults. `state_dir` is the global `--state-dir` (or `CONVOY_STATE_DIR`).
pub fn resolve(cli: DaemonArgs, state_dir: Option<PathBuf>) -> Result<DaemonConfig, ConfigError> {
    match cli.config.clone() {
        None => merge(cli, state_dir, None),
        Some(path) => {
            let bytes = read_bounded(&path)?;
            resolve_bytes(cli, state_dir, &path, &bytes)
        }
    }
}

/// `resolve` with the config file already read: `path` names it in errors and is the base of
/// its relative paths (`cli.config` is not read).
pub fn resolve_bytes(
    cli: DaemonArgs,
    state_dir: Option<PathBuf>,
    path: &Path,
    bytes: &[u8],
) -> Result<DaemonConfig, ConfigError> {
    let mut file = FileValues {
        path: path.to_path_buf(),
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        entries: Vec::new(),
        issues: Vec::new(),
        notifications: Vec::new(),
    };
    parse_into(&mut file, bytes);
    read_notifications(&mut file, bytes);
    merge(cli, state_dir, Some(file))
}

fn file_issue(path: &Path, message: String) -> ConfigError {
    ConfigError(vec![ConfigIssue {
        file: Some(path.to_path_buf()),
        line: 0,
        column: 0,
        key: String::new(),
        message,
    }])
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let cannot = |e: std::io::Error| file_issue(path, format!("cannot read the config file: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if meta.is_dir() {
        return Err(file_issue(
            path,
            "cannot read the config file: it is a directory".into(),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(file_issue(
            path,
            format!(
                "the config file is larger than {} KiB",
                MAX_CONFIG_BYTES / 1024
            ),
        ));
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Reading the file: a flat map of scalars, located.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Value {
    /// `plain` is false for quoted, block and `!!str` scalars: those are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq,
    Map,
}

#[derive(Debug, Clone)]
struct Entry {
    key: &'static str,
    value: Value,
    line: usize,
    col: usize,
}

struct FileValues {
    path: PathBuf,
    /// Relative paths in the file are resolved against this.
    dir: PathBuf,
    entries: Vec<Entry>,
    issues: Vec<ConfigIssue>,
    notifications: Vec<crate::model::notify::NotificationSpec>,
}

/// `notifications:` is a list of maps, which the flat reader keeps as its kind only: the
/// manifest's reader reads it (its errors located the same way), once the file parses.
fn read_notifications(file: &mut FileValues, bytes: &[u8]) {
    if !file.issues.is_empty() || !file.entries.iter().any(|e| e.key == "notifications") {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let name = file.path.display().to_string();
    match crate::manifest::read_config_notifications(&name, &text) {
        Ok(list) => {
            let dir = file.dir.clone();
            let resolve = |p: &mut Option<String>| {
                if let Some(s) = p.as_mut() {
                    if Path::new(s.as_str()).is_relative() {
                        *s = dir.join(s.as_str()).to_string_lossy().into_owned();
                    }
                }
            };
            file.notifications = list
                .into_iter()
                .map(|mut n| {
                    resolve(&mut n.url_file);
                    resolve(&mut n.secret_file);
                    resolve(&mut n.token_file);
                    n
                })
                .collect();
        }
        Err(errors) => file.issues.extend(errors.into_iter().map(|e| ConfigIssue {
            file: Some(file.path.clone()),
            line: e.line,
            column: e.column,
            key: e.key,
            message: e.message,
        })),
    }
}

impl FileValues {
    fn issue(&mut self, line: usize, col: usize, key: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            file: Some(self.path.clone()),
            line,
            column: col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn take(&mut self, key: &str) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }
}

fn pos(m: &Marker) -> (usize, usize) {
    (m.line().max(1), m.col() + 1)
}

/// The line and column of byte `at` in `bytes` (columns count characters).
fn locate(bytes: &[u8], at: usize) -> (usize, usize) {
    let before = &bytes[..at.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let col = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, col)
}

/// Characters YAML allows: tab, line breaks and printable characters (a NUL byte would end the
/// text early for the parser).
fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{85}')
        || (' '..='~').contains(&c)
        || ('\u{a0}'..='\u{d7ff}').contains(&c)
        || ('\u{e000}'..='\u{fffd}').contains(&c)
        || c >= '\u{10000}'
}

fn parse_into(file: &mut FileValues, bytes: &[u8]) {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let (line, col) = locate(bytes, e.valid_up_to());
            file.issue(line, col, "", "the config file is not UTF-8 text");
            return;
        }
    };
    if let Some((i, c)) = text.char_indices().find(|(_, c)| !allowed(*c)) {
        let (line, col) = locate(bytes, i);
        file.issue(
            line,
            col,
            "",
            format!(
                "invalid yaml: character U+{:04X} is not allowed in a yaml file",
                u32::from(c)
            ),
        );
        return;
    }
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: Vec::new(),
    };
    if let Err((line, col, message)) = reader.document(file) {
        file.issue(line, col, "", message);
    }
}

type Fail = (usize, usize, String);

struct Reader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    /// Anchored values (by anchor id), so that an alias reads as what it names.
    anchors: Vec<(usize, Value)>,
}

impl Reader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), Fail> {
        self.parser.next_token().map_err(|e| {
            let (line, col) = pos(e.marker());
            (line, col, format!("invalid yaml: {}", e.info()))
        })
    }

    fn document(&mut self, file: &mut FileValues) -> Result<(), Fail> {
        let mut seen_document = false;
        loop {
            let (ev, m) = self.next()?;
            match ev {
                Event::StreamEnd => return Ok(()),
                Event::DocumentStart if seen_document => {
                    let (line, col) = pos(&m);
                    return Err((line, col, "only one yaml document is read".into()));
                }
                Event::DocumentStart => {
                    seen_document = true;
                    let (ev, m) = self.next()?;
                    self.root(ev, m, file)?;
                }
                _ => {}
            }
        }
    }

    fn root(&mut self, ev: Event, m: Marker, file: &mut FileValues) -> Result<(), Fail> {
        let (line, col) = pos(&m);
        let not_a_map = |what: &str| {
            (
                line,
                col,
                format!("the config file must be a map of `key: value` lines, not {what}"),
            )
        };
        match ev {
            Event::MappingStart(..) => self.map(file),
            Event::Scalar(text, TScalarStyle::Plain, _, None)
                if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") =>
            {
                // An empty file (or one of comments only): every value from flags or defaults.
                Ok(())
            }
            Event::SequenceStart(..) => Err(not_a_map("a list")),
            _ => Err(not_a_map("a single value")),
        }
    }

    fn map(&mut self, file: &mut FileValues) -> Result<(), Fail> {
        loop {
            let (ev, m) = self.next()?;
            if ev == Event::MappingEnd {
                return Ok(());
            }
            let (line, col) = pos(&m);
            let key = match self.value(ev, &m, file)? {
                Value::Scalar { text, .. } => Some(text),
                Value::Seq | Value::Map => {
                    file.issue(line, col, "", "a key must be a plain string");
                    None
                }
            };
            let (vev, vm) = self.next()?;
            let (vline, vcol) = pos(&vm);
            let value = self.value(vev, &vm, file)?;
            let Some(key) = key else { continue };
            match KEYS.iter().find(|k| **k == key) {
                Some(known) => {
                    if let Some(first) = file.entries.iter().find(|e| e.key == *known) {
                        let msg = format!("duplicate key (first written at line {})", first.line);
                        file.issue(line, col, &key, msg);
                    } else {
                        file.entries.push(Entry {
                            key: known,
                            value,
                            line: vline,
                            col: vcol,
                        });
                    }
                }
                None => {
                    let msg = unknown_key_message(&key);
                    file.issue(line, col, &key, msg);
                }
            }
        }
    }

    /// One value; a list or a map is read to its end and kept as its kind only (no key takes
    /// one). Iterative, so nesting depth cannot exhaust the stack.
    fn value(&mut self, ev: Event, m: &Marker, file: &mut FileValues) -> Result<Value, Fail> {
        let (line, col) = pos(m);
        let (value, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let str_tag = match &tag {
                    None => false,
                    Some(t) if is_str_tag(t) => true,
                    Some(t) => {
                        let msg = format!(
                            "yaml tag `{}{}` is not supported: write the value itself",
                            t.handle, t.suffix
                        );
                        file.issue(line, col, "", msg);
                        true
                    }
                };
                let plain = style == TScalarStyle::Plain && !str_tag;
                (Value::Scalar { text, plain }, anchor)
            }
            Event::Alias(id) => match self.anchors.iter().find(|(a, _)| *a == id) {
                Some((_, v)) => return Ok(v.clone()),
                None => return Err((line, col, "alias to an unknown anchor".into())),
            },
            Event::SequenceStart(anchor, _) => {
                self.skip_collection()?;
                (Value::Seq, anchor)
            }
            Event::MappingStart(anchor, _) => {
                self.skip_collection()?;
                (Value::Map, anchor)
            }
            _ => return Err((line, col, "invalid yaml: unexpected event".into())),
        };
        if anchor > 0 {
            self.anchors.push((anchor, value.clone()));
        }
        Ok(value)
    }

    /// Reads to the end of the collection just started.
    fn skip_collection(&mut self) -> Result<(), Fail> {
        let mut depth = 1usize;
        while depth > 0 {
            match self.next()?.0 {
                Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
                Event::SequenceEnd | Event::MappingEnd => depth -= 1,
                Event::StreamEnd => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// `!!str` (or its long form, or the non-specific `!`): the scalar is a string.
fn is_str_tag(t: &Tag) -> bool {
    const CORE: &str = "tag:yaml.org,2002:";
    (t.handle == CORE && t.suffix == "str")
        || (t.handle.is_empty() && (t.suffix == "!" || t.suffix == "tag:yaml.org,2002:str"))
}

fn unknown_key_message(key: &str) -> String {
    if key == "config" {
        return "unknown key: a config file cannot name another one".into();
    }
    // `poll_interval` and `pollInterval` are near misses too.
    let normal: String = key
        .chars()
        .flat_map(|c| {
            let dash = c == '_' || c.is_ascii_uppercase();
            dash.then_some('-')
                .into_iter()
                .chain(std::iter::once(c.to_ascii_lowercase()).filter(|c| *c != '_'))
        })
        .collect();
    match suggest(&normal, KEYS) {
        Some(s) => format!("unknown key, did you mean `{s}`?"),
        None => format!(
            "unknown key (the keys are the daemon's flags: {})",
            KEYS.join(", ")
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Typing the file's values.
// ---------------------------------------------------------------------------------------------

/// Where a resolved value came from, to locate a rule it breaks.
#[derive(Debug, Clone, Copy)]
enum Origin {
    Flag,
    File(usize, usize),
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn as_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A YAML 1.2 core integer (decimal, `0x`, `0o`).
fn as_int(s: &str) -> Option<i128> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i128::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i128>().ok()?
    } else {
        return None;
    };
    Some(if neg { -value } else { value })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Seq => "a list",
        Value::Map => "a map",
        Value::Scalar { text, plain: true } if is_null(text) => "nothing (null)",
        Value::Scalar { text, plain: true } if as_bool(text).is_some() => "a boolean",
        Value::Scalar { text, plain: true } if as_int(text).is_some() => "an integer",
        Value::Scalar { text, plain: true } if text.parse::<f64>().is_ok() => "a number",
        Value::Scalar { .. } => "a string",
    }
}

impl FileValues {
    fn wrong_type(&mut self, e: &Entry, expected: &str) {
        let msg = format!("expected {expected}, found {}", type_name(&e.value));
        self.issue(e.line, e.col, e.key, msg);
    }

    /// A non-empty string (a plain number reads as its text; a boolean, null or a collection
    /// is an error).
    fn string(&mut self, key: &str) -> Option<(String, Origin)> {
        let e = self.take(key)?;
        match &e.value {
            Value::Scalar { text, plain }
                if !(*plain && (is_null(text) || as_bool(text).is_some())) =>
            {
                if text.is_empty() {
                    self.issue(e.line, e.col, e.key, "must not be empty");
                    return None;
                }
                Some((text.clone(), Origin::File(e.line, e.col)))
            }
            _ => {
                self.wrong_type(&e, "a string");
                None
            }
        }
    }

    /// A path, resolved against the config file's directory when relative.
    fn path(&mut self, key: &str) -> Option<(PathBuf, Origin)> {
        let (text, at) = self.string(key)?;
        Some((self.dir.join(text), at))
    }

    fn bool(&mut self, key: &str) -> Option<(bool, Origin)> {
        let e = self.take(key)?;
        match &e.value {
            Value::Scalar { text, plain: true } if as_bool(text).is_some() => {
                as_bool(text).map(|b| (b, Origin::File(e.line, e.col)))
            }
            _ => {
                self.wrong_type(&e, "true or false");
                None
            }
        }
    }

    /// A whole number in `unit`; its bounds are checked with the flag's.
    fn int(&mut self, key: &str, unit: &str) -> Option<(i128, Origin)> {
        let e = self.take(key)?;
        match &e.value {
            Value::Scalar { text, plain: true } if as_int(text).is_some() => {
                as_int(text).map(|i| (i, Origin::File(e.line, e.col)))
            }
            _ => {
                let expected = format!("a whole number of {unit} (durations have no suffix)");
                self.wrong_type(&e, &expected);
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Merging flags, file and defaults; the rules that span keys.
// ---------------------------------------------------------------------------------------------

/// The flag wins; else the file's value.
fn pick<T>(flag: Option<T>, file: Option<(T, Origin)>) -> Option<(T, Origin)> {
    match flag {
        Some(v) => Some((v, Origin::Flag)),
        None => file,
    }
}

struct Merger {
    file: Option<PathBuf>,
    issues: Vec<ConfigIssue>,
}

impl Merger {
    fn at(&mut self, origin: Origin, key: &str, message: impl Into<String>) {
        let (file, line, column, key) = match origin {
            Origin::File(line, col) => (self.file.clone(), line, col, key.to_string()),
            Origin::Flag => (None, 0, 0, format!("--{key}")),
        };
        self.issues.push(ConfigIssue {
            file,
            line,
            column,
            key,
            message: message.into(),
        });
    }

    /// A duration in `unit` (1 s or 1 ms) within `[min, max]`, or the default.
    fn duration(
        &mut self,
        key: &str,
        value: Option<(i128, Origin)>,
        default: u64,
        (min, max): (u64, u64),
        unit: fn(u64) -> Duration,
    ) -> Duration {
        let Some((v, at)) = value else {
            return unit(default);
        };
        let unit_name = if key.ends_with("-ms") {
            "milliseconds"
        } else {
            "seconds"
        };
        if v < i128::from(min) {
            self.at(at, key, format!("must be at least {min} ({unit_name})"));
            unit(default)
        } else if v > i128::from(max) {
            self.at(
                at,
                key,
                format!("must be at most {max} ({unit_name}: a year)"),
            );
            unit(default)
        } else {
            unit(u64::try_from(v).unwrap_or(default))
        }
    }
}

/// `https://…`, `ssh://…`, `file://…` and scp-like `user@host:path` are remotes; anything else is
/// a local path (git's own rule: a colon before any slash means a host).
fn is_local_repo(repo: &str) -> bool {
    if repo.contains("://") {
        return false;
    }
    match repo.find(':') {
        Some(i) => repo[..i].contains('/'),
        None => true,
    }
}

fn merge(
    cli: DaemonArgs,
    state_dir: Option<PathBuf>,
    file: Option<FileValues>,
) -> Result<DaemonConfig, ConfigError> {
    let mut m = Merger {
        file: file.as_ref().map(|f| f.path.clone()),
        issues: Vec::new(),
    };
    let mut f = file.unwrap_or(FileValues {
        path: PathBuf::new(),
        dir: PathBuf::new(),
        entries: Vec::new(),
        issues: Vec::new(),
        notifications: Vec::new(),
    });

    let file_repo = match f.string("repo") {
        Some((r, at)) if is_local_repo(&r) && Path::new(&r).is_relative() => {
            match f.dir.join(&r).into_os_string().into_string() {
                Ok(joined) => Some((joined, at)),
                Err(_) => {
                    let msg = "the config file's directory is not UTF-8: write an absolute path";
                    m.at(at, "repo", msg);
                    None
                }
            }
        }
        other => other,
    };
    let repo = pick(cli.repo, file_repo);
    let repo = match repo {
        Some((r, at)) if r.is_empty() => {
            m.at(at, "repo", "must not be empty");
            ".".to_string()
        }
        Some((r, _)) => r,
        None => ".".to_string(),
    };
    let branch = pick(cli.branch, f.string("branch"));
    if let Some((b, at)) = &branch {
        if b.is_empty() {
            m.at(*at, "branch", "must not be empty");
        }
    }
    // `path` is inside the repository: never resolved against the config file.
    let path = pick(
        cli.path,
        f.string("path").map(|(s, at)| (PathBuf::from(s), at)),
    );
    if let Some((p, at)) = &path {
        if p.is_absolute() {
            m.at(*at, "path", "must be relative to the repository's top");
        }
    }

    let secs = Duration::from_secs;
    let millis = Duration::from_millis;
    let poll = pick(
        cli.poll_interval.map(i128::from),
        f.int("poll-interval", "seconds"),
    );
    let poll_interval = m.duration("poll-interval", poll, 60, (1, MAX_SECS), secs);
    let resync = pick(cli.resync.map(i128::from), f.int("resync", "seconds"));
    let resync = m.duration("resync", resync, 30, (1, MAX_SECS), secs);
    let hb = pick(
        cli.heartbeat_ms.map(i128::from),
        f.int("heartbeat-ms", "milliseconds"),
    );
    let heartbeat = m.duration("heartbeat-ms", hb, 1000, (100, MAX_SECS * 1000), millis);
    let lock = pick(
        cli.lock_timeout.map(i128::from),
        f.int("lock-timeout", "seconds"),
    );
    let lock_timeout = m.duration("lock-timeout", lock, 60, (0, MAX_SECS), secs);

    let listen = pick(cli.listen, f.string("listen"));
    let listen = match listen {
        None => DEFAULT_LISTEN.parse().ok(),
        Some((s, _)) if s == "off" => None,
        Some((s, at)) => match s.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                m.at(
                    at,
                    "listen",
                    "expected `ip:port` (`127.0.0.1:7878`, `[::1]:7878`) or `off`",
                );
                None
            }
        },
    };

    // A bool flag can only say "true": given, it wins; absent, the file decides.
    let flag_bool = |b: bool| b.then_some(true);
    let insecure_listen = pick(flag_bool(cli.insecure_listen), f.bool("insecure-listen"));
    let metrics_token = pick(flag_bool(cli.metrics_token), f.bool("metrics-token"));
    let require_signed = pick(flag_bool(cli.require_signed), f.bool("require-signed"));

    let tls_cert = pick(cli.tls_cert, f.path("tls-cert"));
    let tls_key = pick(cli.tls_key, f.path("tls-key"));
    let tls = match (tls_cert, tls_key) {
        (Some((c, _)), Some((k, _))) => Some((c, k)),
        (None, None) => None,
        (Some((_, at)), None) => {
            m.at(at, "tls-cert", "needs `tls-key` too (both or neither)");
            None
        }
        (None, Some((_, at))) => {
            m.at(at, "tls-key", "needs `tls-cert` too (both or neither)");
            None
        }
    };
    let api_token_file = pick(cli.api_token_file, f.path("api-token-file"));
    let webhook_secret_file = pick(cli.webhook_secret_file, f.path("webhook-secret-file"));
    let git_credentials_file = pick(cli.git_credentials_file, f.path("git-credentials-file"));
    let git_ca_file = pick(cli.git_ca_file, f.path("git-ca-file"));
    let allowed_signers = pick(cli.allowed_signers, f.path("allowed-signers"));
    let gpg_keyring = pick(cli.gpg_keyring, f.path("gpg-keyring"));
    let state_dir = pick(state_dir, f.path("state-dir"));
    let age_key_file = f.path("age-key-file");
    let _ = f.take("notifications");
    let notifications = std::mem::take(&mut f.notifications);

    if let Some((true, at)) = require_signed {
        if allowed_signers.is_none() && gpg_keyring.is_none() {
            m.at(
                at,
                "require-signed",
                "needs `allowed-signers` or `gpg-keyring` (or both): without them no commit could be applied",
            );
        }
    }

    let mut issues = std::mem::take(&mut f.issues);
    issues.append(&mut m.issues);
    if !issues.is_empty() {
        // File order first (by position), then the flags'; the sort is stable.
        issues.sort_by_key(|i| (i.file.is_none(), i.line, i.column));
        return Err(ConfigError(issues));
    }
    let value = |o: Option<(PathBuf, Origin)>| o.map(|(v, _)| v);
    let flag = |o: Option<(bool, Origin)>| o.is_some_and(|(v, _)| v);
    Ok(DaemonConfig {
        repo,
        branch: branch.map(|(b, _)| b),
        path: value(path),
        poll_interval,
        resync,
        heartbeat,
        lock_timeout,
        listen,
        insecure_listen: flag(insecure_listen),
        tls,
        api_token_file: value(api_token_file),
        metrics_token: flag(metrics_token),
        webhook_secret_file: value(webhook_secret_file),
        git_credentials_file: value(git_credentials_file),
        git_ca_file: value(git_ca_file),
        require_signed: flag(require_signed),
        allowed_signers: value(allowed_signers),
        gpg_keyring: value(gpg_keyring),
        state_dir: value(state_dir),
        age_key_file: value(age_key_file),
        notifications,
    })
}
