//! Tidy: checks on the source text of `src/` that the compiler does not make, in the spirit of
//! rust-analyzer's `tidy` test. Each rule is one `#[test]`; a failure lists every offence with
//! its file and line, so one run shows all there is to fix.
//!
//! The rules: the pure planning core (`model`, `core`, `manifest`, `render`) does no I/O, reads
//! no clock, draws no random numbers and has no `HashMap` whose order could show; the files of
//! `src/` do not import each other in a cycle; every file opens with a `//!` paragraph; no file
//! grows past `MAX_LINES`; the layers' arrows point one way (ARCHITECTURE.md); no comment cites
//! a document the repository does not have.
//!
//! The checker reads Rust through a small lexer that drops comments and the contents of string
//! and char literals, so a word in prose or in a message is never mistaken for a use. It knows
//! modules as files: a path is resolved to the longest module prefix that has a file. The
//! `checker_*` tests at the end run it on in-memory sources, to show that each rule can fail.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

/// The longest a file under `src/` may grow: past it, split the file by what its parts do.
const MAX_LINES: usize = 1200;

/// The folders of the pure planning core (ARCHITECTURE.md, "Invariants").
const CORE_DIRS: &[&str] = &["model/", "core/", "manifest/", "render/"];

/// Identifiers the pure core may not name: runtimes and I/O crates, the wall clock, randomness,
/// and `HashMap`, whose iteration order would leak into plans and output (the core uses
/// `BTreeMap`).
const CORE_FORBIDDEN_IDENTS: &[&str] = &[
    "tokio",
    "bollard",
    "git2",
    "openssh",
    "SystemTime",
    "HashMap",
    "rand",
];

/// `std` modules that do I/O; the core may not name them.
const CORE_FORBIDDEN_STD: &[&str] = &["fs", "net", "process"];

/// Layer rules: files under the folder may not refer to these top-level modules.
const LAYER_RULES: &[(&str, &[&str])] = &[
    // The HTTP API reads the daemon's status and sends it requests; it never runs a pass.
    (
        "api/",
        &[
            "reconcile",
            "core",
            "exec",
            "infra",
            "manifest",
            "render",
            "cmd",
            "cli",
        ],
    ),
    ("daemon/", &["api", "cli", "cmd"]),
    (
        "infra/",
        &["api", "core", "reconcile", "exec", "daemon", "cmd"],
    ),
    (
        "core/",
        &["api", "infra", "exec", "reconcile", "daemon", "cmd", "cli"],
    ),
    (
        "model/",
        &["infra", "exec", "reconcile", "daemon", "cmd", "cli"],
    ),
    ("reconcile/", &["api", "daemon", "cmd", "cli"]),
    (
        "render/",
        &["api", "infra", "exec", "reconcile", "daemon", "cmd", "cli"],
    ),
    (
        "manifest/",
        &[
            "api",
            "infra",
            "exec",
            "reconcile",
            "daemon",
            "cmd",
            "cli",
            "core",
            "render",
        ],
    ),
];

/// A document comments must not cite: the repository has no such file.
const MISSING_DOCS: &[&str] = &["DESIGN.md"];

// ---------------------------------------------------------------------------------------------
// The checks on the real tree.
// ---------------------------------------------------------------------------------------------

/// The planning core is pure (ARCHITECTURE.md): the same inputs give the same plan, which is
/// what makes `diff` trustworthy, the daemon's passes repeatable and the core testable without
/// engines. A use of an I/O crate, `std::fs`/`net`/`process`, the clock, randomness or a
/// `HashMap` is how that quietly stops being true.
#[test]
fn pure_core_does_no_io_and_has_no_hidden_order() {
    let files = src_files();
    let mut report = String::new();
    for file in files.iter().filter(|f| is_core(&f.rel)) {
        for (line, what) in core_offences(&file.text) {
            let _ = writeln!(report, "  src/{}:{line}: uses `{what}`", file.rel);
        }
    }
    fail_if_any(
        &report,
        "the pure planning core (src/model, src/core, src/manifest, src/render) must not do I/O, \
         read a clock, draw random numbers or use a HashMap (use BTreeMap); move the effect to \
         infra/exec/reconcile and pass its result in",
    );
}

/// Files that import each other in a cycle cannot be understood, tested or split one at a
/// time, and a cycle between layers means some arrow points the wrong way. A `mod.rs` and the
/// files of its own folder (a parent and its children) are one module tree and are allowed to
/// refer to each other; test modules are left out.
#[test]
fn no_import_cycles_between_files() {
    let files = src_files();
    let cycles = find_cycles(&files);
    let mut report = String::new();
    for cycle in &cycles {
        let _ = writeln!(report, "  {cycle}");
    }
    fail_if_any(
        &report,
        "files under src/ import each other in a cycle; move the shared part down a layer \
         (often into model) or pass it in, so that the arrows point one way",
    );
}

/// The first thing a reader of any file sees should say what the file is for and how it fits;
/// `//!` is also what rustdoc shows for the module.
#[test]
fn every_file_opens_with_a_module_doc() {
    let files = src_files();
    let mut report = String::new();
    for file in &files {
        if !opens_with_module_doc(&file.text) {
            let _ = writeln!(report, "  src/{}", file.rel);
        }
    }
    fail_if_any(
        &report,
        "every .rs file under src/ must open with a `//!` paragraph saying what it is for",
    );
}

/// A file past `MAX_LINES` holds more than one thing; split it along what its parts do so
/// that each can be read, reviewed and tested on its own.
#[test]
fn files_stay_short() {
    let files = src_files();
    let mut report = String::new();
    for file in &files {
        let lines = file.text.lines().count();
        if lines > MAX_LINES {
            let _ = writeln!(report, "  src/{}: {lines} lines", file.rel);
        }
    }
    fail_if_any(
        &report,
        &format!("files under src/ must have at most {MAX_LINES} lines; split them"),
    );
}

/// The layers' arrows point one way (ARCHITECTURE.md): `model` is the shared vocabulary and
/// names nothing else; the core knows nothing of engines, execution or the daemon; `infra`
/// knows nothing of planning or of its callers; the daemon and `reconcile` know nothing of the
/// command line. A use against the arrow is how a layer starts to need the one above it.
#[test]
fn layers_point_one_way() {
    let files = src_files();
    let mut report = String::new();
    for (rel, line, path, rule) in layer_offences(&files) {
        let _ = writeln!(
            report,
            "  src/{rel}:{line}: uses `crate::{}` ({rule})",
            path.join("::")
        );
    }
    fail_if_any(&report, "a layer refers to one it must not");
}

/// A comment that cites a document the repository does not have sends the reader nowhere;
/// cite ARCHITECTURE.md or say the thing in place.
#[test]
fn comments_cite_only_documents_that_exist() {
    let files = src_files();
    let mut report = String::new();
    for file in &files {
        for (line, doc) in missing_doc_citations(&file.text) {
            let _ = writeln!(report, "  src/{}:{line}: cites {doc}", file.rel);
        }
    }
    fail_if_any(
        &report,
        "comments cite a document the repository does not have (ARCHITECTURE.md is the one)",
    );
}

fn fail_if_any(report: &str, why: &str) {
    assert!(report.is_empty(), "tidy: {why}:\n{report}");
}

// ---------------------------------------------------------------------------------------------
// Reading the tree.
// ---------------------------------------------------------------------------------------------

/// One source file: its path relative to `src/` with `/` separators, and its text.
struct SourceFile {
    rel: String,
    text: String,
}

impl SourceFile {
    fn new(rel: &str, text: &str) -> SourceFile {
        SourceFile {
            rel: rel.to_string(),
            text: text.to_string(),
        }
    }
}

fn src_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    collect(&root, &root, &mut out);
    assert!(
        out.iter().any(|f| f.rel == "lib.rs"),
        "tidy: found no src/lib.rs under {}",
        root.display()
    );
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<SourceFile>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("tidy: cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("tidy: cannot read {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("tidy: cannot read {}: {e}", path.display()));
            let rel = path
                .strip_prefix(root)
                .expect("a file under src/")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push(SourceFile { rel, text });
        }
    }
}

fn is_core(rel: &str) -> bool {
    CORE_DIRS.iter().any(|dir| rel.starts_with(dir))
}

/// The module path a file defines: `lib.rs` is the crate root, `a/mod.rs` and `a.rs` are `a`.
/// `main.rs` (and `bin/`) are roots of other crates and have none.
fn module_of(rel: &str) -> Option<Vec<String>> {
    if rel == "main.rs" || rel.starts_with("bin/") {
        return None;
    }
    if rel == "lib.rs" {
        return Some(Vec::new());
    }
    let stem = rel.strip_suffix(".rs")?;
    let mut segs: Vec<String> = stem.split('/').map(str::to_string).collect();
    if segs.last().is_some_and(|s| s == "mod") {
        segs.pop();
    }
    Some(segs)
}

/// A test module by its name: `tests.rs`, `testkit.rs`, or anything in a `tests/` folder.
fn is_test_file_by_name(rel: &str) -> bool {
    let mut parts = rel.split('/').collect::<Vec<_>>();
    let name = parts.pop().unwrap_or_default();
    name == "tests.rs" || name == "testkit.rs" || parts.contains(&"tests")
}

// ---------------------------------------------------------------------------------------------
// A small Rust lexer: enough to tell code from comments and literals.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A string, char or number literal; its contents are dropped.
    Literal,
    Lifetime,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

struct Comment {
    text: String,
    line: usize,
}

struct Lexed {
    tokens: Vec<Token>,
    comments: Vec<Comment>,
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

fn lex(src: &str) -> Lexed {
    let cs: Vec<char> = src.chars().collect();
    let at = |i: usize| cs.get(i).copied().unwrap_or('\0');
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal body from `i` (just past the opening quote) up to and past the
    // closing `quote`; with `raw_hashes`, a raw string closed by `"` and that many `#`.
    let skip_quoted = |i: &mut usize, line: &mut usize, raw_hashes: Option<usize>| {
        while *i < cs.len() {
            let c = cs[*i];
            if c == '\n' {
                *line += 1;
            }
            match raw_hashes {
                None if c == '\\' => {
                    if at(*i + 1) == '\n' {
                        *line += 1;
                    }
                    *i += 2;
                    continue;
                }
                None if c == '"' => {
                    *i += 1;
                    return;
                }
                Some(n) if c == '"' && (1..=n).all(|k| at(*i + k) == '#') => {
                    *i += 1 + n;
                    return;
                }
                _ => {}
            }
            *i += 1;
        }
    };
    while i < cs.len() {
        let c = cs[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            let start = i;
            while i < cs.len() && cs[i] != '\n' {
                i += 1;
            }
            comments.push(Comment {
                text: cs[start..i].iter().collect(),
                line,
            });
        } else if c == '/' && at(i + 1) == '*' {
            let (start, start_line) = (i, line);
            let mut depth = 0;
            while i < cs.len() {
                if cs[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if cs[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if cs[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            comments.push(Comment {
                text: cs[start..i.min(cs.len())].iter().collect(),
                line: start_line,
            });
        } else if is_ident_start(c) {
            let (start, start_line) = (i, line);
            while i < cs.len() && is_ident_continue(cs[i]) {
                i += 1;
            }
            let word: String = cs[start..i].iter().collect();
            let raw_prefix = matches!(word.as_str(), "r" | "br" | "cr");
            let str_prefix = matches!(word.as_str(), "b" | "c");
            if raw_prefix && (at(i) == '"' || at(i) == '#') {
                let mut hashes = 0;
                while at(i + hashes) == '#' {
                    hashes += 1;
                }
                if at(i + hashes) == '"' {
                    i += hashes + 1;
                    skip_quoted(&mut i, &mut line, Some(hashes));
                    tokens.push(Token {
                        tok: Tok::Literal,
                        line: start_line,
                    });
                    continue;
                }
                if word == "r" && hashes == 1 && is_ident_start(at(i + 1)) {
                    // A raw identifier, `r#type`.
                    i += 1;
                    let s = i;
                    while i < cs.len() && is_ident_continue(cs[i]) {
                        i += 1;
                    }
                    tokens.push(Token {
                        tok: Tok::Ident(cs[s..i].iter().collect()),
                        line,
                    });
                    continue;
                }
            }
            if str_prefix && at(i) == '"' {
                i += 1;
                skip_quoted(&mut i, &mut line, None);
                tokens.push(Token {
                    tok: Tok::Literal,
                    line: start_line,
                });
                continue;
            }
            if word == "b" && at(i) == '\'' {
                i = skip_char_literal(&cs, i);
                tokens.push(Token {
                    tok: Tok::Literal,
                    line,
                });
                continue;
            }
            tokens.push(Token {
                tok: Tok::Ident(word),
                line,
            });
        } else if c.is_ascii_digit() {
            while i < cs.len()
                && (is_ident_continue(cs[i]) || (cs[i] == '.' && at(i + 1).is_ascii_digit()))
            {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Literal,
                line,
            });
        } else if c == '"' {
            let start_line = line;
            i += 1;
            skip_quoted(&mut i, &mut line, None);
            tokens.push(Token {
                tok: Tok::Literal,
                line: start_line,
            });
        } else if c == '\'' {
            if at(i + 1) == '\\' || (at(i + 2) == '\'' && at(i + 1) != '\n') {
                i = skip_char_literal(&cs, i);
                tokens.push(Token {
                    tok: Tok::Literal,
                    line,
                });
            } else {
                i += 1;
                while i < cs.len() && is_ident_continue(cs[i]) {
                    i += 1;
                }
                tokens.push(Token {
                    tok: Tok::Lifetime,
                    line,
                });
            }
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            tokens.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    Lexed { tokens, comments }
}

/// Skips a char literal whose opening `'` is at `i`; returns the index past its closing `'`.
fn skip_char_literal(cs: &[char], mut i: usize) -> usize {
    i += 1;
    if cs.get(i) == Some(&'\\') {
        i += 2;
    } else {
        i += 1;
    }
    while i < cs.len() && cs[i] != '\'' && cs[i] != '\n' {
        i += 1;
    }
    i + 1
}

fn ident(t: Option<&Token>) -> Option<&str> {
    match t.map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is_punct(t: Option<&Token>, c: char) -> bool {
    matches!(t.map(|t| &t.tok), Some(Tok::Punct(p)) if *p == c)
}

fn is_sep(t: Option<&Token>) -> bool {
    matches!(t.map(|t| &t.tok), Some(Tok::PathSep))
}

// ---------------------------------------------------------------------------------------------
// Paths a file refers to.
// ---------------------------------------------------------------------------------------------

/// A path as written in a file: from a `use` (with groups expanded, `as` and globs dropped) or
/// a `crate::`/`super::`/`self::` path in code. `module` is the module it is written in (the
/// file's module plus any inline `mod name { .. }` around it).
#[derive(Clone, Debug)]
struct PathRef {
    segs: Vec<String>,
    module: Vec<String>,
    line: usize,
    /// Inside an inline `#[cfg(test)] mod .. { .. }`.
    in_test: bool,
}

/// What a file says about paths and modules.
struct FileRefs {
    paths: Vec<PathRef>,
    /// Children declared `#[cfg(test)] mod name;`.
    test_children: Vec<String>,
}

fn file_refs(module: &[String], lexed: &Lexed) -> FileRefs {
    let toks = &lexed.tokens;
    let mut paths = Vec::new();
    let mut test_children = Vec::new();
    // Inline modules around the current token: name, brace depth inside it, cfg(test).
    let mut inline: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let here = |inline: &[(String, usize, bool)]| {
            let mut m = module.to_vec();
            m.extend(inline.iter().map(|(n, _, _)| n.clone()));
            (m, inline.iter().any(|(_, _, t)| *t))
        };
        match &toks[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d, _)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Tok::Ident(kw) if kw == "mod" => {
                if let Some(name) = ident(toks.get(i + 1)) {
                    let test = has_cfg_test_attr(toks, i);
                    if is_punct(toks.get(i + 2), '{') {
                        depth += 1;
                        inline.push((name.to_string(), depth, test));
                        i += 3;
                        continue;
                    }
                    if is_punct(toks.get(i + 2), ';') && test {
                        test_children.push(name.to_string());
                    }
                }
            }
            Tok::Ident(kw) if kw == "use" && !is_punct(toks.get(i + 1), '<') => {
                let (m, in_test) = here(&inline);
                let mut pos = i + 1;
                let mut leaves = Vec::new();
                parse_use_tree(toks, &mut pos, &[], &mut leaves);
                for (segs, line) in leaves {
                    paths.push(PathRef {
                        segs,
                        module: m.clone(),
                        line,
                        in_test,
                    });
                }
                while pos < toks.len() && !is_punct(toks.get(pos), ';') {
                    pos += 1;
                }
                i = pos + 1;
                continue;
            }
            Tok::Ident(kw)
                if matches!(kw.as_str(), "crate" | "super" | "self")
                    && is_sep(toks.get(i + 1))
                    && !(i > 0 && is_punct(toks.get(i - 1), '$'))
                    && !(i > 0 && ident(toks.get(i - 1)) == Some("in")) =>
            {
                let (m, in_test) = here(&inline);
                let line = toks[i].line;
                let mut segs = vec![kw.clone()];
                let mut j = i + 1;
                while is_sep(toks.get(j)) {
                    match ident(toks.get(j + 1)) {
                        Some(s) => segs.push(s.to_string()),
                        None => break,
                    }
                    j += 2;
                }
                paths.push(PathRef {
                    segs,
                    module: m,
                    line,
                    in_test,
                });
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    FileRefs {
        paths,
        test_children,
    }
}

/// Whether the item whose keyword is at `kw` (past any visibility) has `#[cfg(test)]`.
fn has_cfg_test_attr(toks: &[Token], kw: usize) -> bool {
    let mut j = kw;
    // Visibility: `pub`, `pub(crate)`, `pub(in path)`.
    if j > 0 && is_punct(toks.get(j - 1), ')') {
        let mut k = j - 1;
        while k > 0 && !is_punct(toks.get(k), '(') {
            k -= 1;
        }
        if k > 0 && ident(toks.get(k - 1)) == Some("pub") {
            j = k - 1;
        }
    } else if j > 0 && ident(toks.get(j - 1)) == Some("pub") {
        j -= 1;
    }
    // Outer attributes, last to first.
    while j > 0 && is_punct(toks.get(j - 1), ']') {
        let close = j - 1;
        let mut k = close;
        let mut nesting = 0;
        loop {
            if is_punct(toks.get(k), ']') {
                nesting += 1;
            } else if is_punct(toks.get(k), '[') {
                nesting -= 1;
                if nesting == 0 {
                    break;
                }
            }
            if k == 0 {
                return false;
            }
            k -= 1;
        }
        if k == 0 || !is_punct(toks.get(k - 1), '#') {
            return false;
        }
        let inner: Vec<&Tok> = toks[k + 1..close].iter().map(|t| &t.tok).collect();
        let cfg_test = [
            Tok::Ident("cfg".into()),
            Tok::Punct('('),
            Tok::Ident("test".into()),
            Tok::Punct(')'),
        ];
        if inner.len() == cfg_test.len() && inner.iter().zip(&cfg_test).all(|(a, b)| *a == b) {
            return true;
        }
        j = k - 1;
    }
    false
}

/// Parses one use tree at `pos` (after `use`, or inside a group), appending each leaf path,
/// prefixed by `prefix`, with its line. `self` in a group stands for the group's prefix; a
/// glob stands for its module; a leading `::` is kept as a `::` segment (an extern path).
fn parse_use_tree(
    toks: &[Token],
    pos: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) {
    let mut path = prefix.to_vec();
    let mut line = toks.get(*pos).map_or(0, |t| t.line);
    if is_sep(toks.get(*pos)) {
        path.push("::".to_string());
        *pos += 1;
    }
    loop {
        let t = toks.get(*pos);
        if is_punct(t, '{') {
            *pos += 1;
            while *pos < toks.len() && !is_punct(toks.get(*pos), '}') {
                let before = *pos;
                parse_use_tree(toks, pos, &path, out);
                if is_punct(toks.get(*pos), ',') {
                    *pos += 1;
                }
                if *pos == before {
                    // Not a use tree; stop rather than loop.
                    *pos += 1;
                }
            }
            *pos += 1;
            return;
        }
        if is_punct(t, '*') {
            *pos += 1;
            out.push((path, line));
            return;
        }
        let Some(seg) = ident(t) else {
            return;
        };
        line = toks[*pos].line;
        *pos += 1;
        if seg == "self" && path.len() == prefix.len() && !prefix.is_empty() {
            // `a::{self, ..}`: the module `a` itself.
        } else {
            path.push(seg.to_string());
        }
        if is_sep(toks.get(*pos)) {
            *pos += 1;
            continue;
        }
        if ident(toks.get(*pos)) == Some("as") {
            *pos += 2;
        }
        out.push((path, line));
        return;
    }
}

/// Resolves a path to an absolute module path within the crate, or `None` for a path outside
/// it (`std::..`, a dependency). A bare first segment is taken as relative only when it names
/// a child module of `module` that has a file.
fn resolve(r: &PathRef, modules: &BTreeMap<Vec<String>, String>) -> Option<Vec<String>> {
    let segs = &r.segs;
    let first = segs.first()?;
    match first.as_str() {
        "crate" => Some(segs[1..].to_vec()),
        "self" => {
            let mut p = r.module.clone();
            p.extend_from_slice(&segs[1..]);
            Some(p)
        }
        "super" => {
            let mut p = r.module.clone();
            let mut k = 0;
            while segs.get(k).is_some_and(|s| s == "super") {
                p.pop()?;
                k += 1;
            }
            p.extend_from_slice(&segs[k..]);
            Some(p)
        }
        "::" => None,
        _ => {
            let mut child = r.module.clone();
            child.push(first.clone());
            if modules.contains_key(&child) {
                let mut p = r.module.clone();
                p.extend_from_slice(segs);
                Some(p)
            } else {
                None
            }
        }
    }
}

/// The file of the longest prefix of `path` that is a module with a file.
fn file_of<'a>(path: &[String], modules: &'a BTreeMap<Vec<String>, String>) -> Option<&'a str> {
    (0..=path.len())
        .rev()
        .find_map(|k| modules.get(&path[..k]))
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------------
// Rule: the pure core.
// ---------------------------------------------------------------------------------------------

/// What a core file names that the core must not, by line.
fn core_offences(text: &str) -> Vec<(usize, String)> {
    let lexed = lex(text);
    let toks = &lexed.tokens;
    let mut found = BTreeSet::new();
    for (i, t) in toks.iter().enumerate() {
        let Tok::Ident(word) = &t.tok else { continue };
        if CORE_FORBIDDEN_IDENTS.contains(&word.as_str()) {
            found.insert((t.line, word.clone()));
        }
        let next = ident(toks.get(i + 2)).filter(|_| is_sep(toks.get(i + 1)));
        if let Some(next) = next {
            if word == "std" && CORE_FORBIDDEN_STD.contains(&next) {
                found.insert((t.line, format!("std::{next}")));
            }
            if word == "Instant" && next == "now" {
                found.insert((t.line, "Instant::now".to_string()));
            }
        }
    }
    // `use std::{fs, io}` names `std::fs` without the two being next to each other.
    for r in file_refs(&[], &lexed).paths {
        let segs: Vec<&str> = r
            .segs
            .iter()
            .map(String::as_str)
            .skip_while(|s| *s == "::")
            .collect();
        if let ["std", module, ..] = segs.as_slice() {
            if CORE_FORBIDDEN_STD.contains(module) {
                found.insert((r.line, format!("std::{module}")));
            }
        }
    }
    found.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// Rule: no import cycles.
// ---------------------------------------------------------------------------------------------

/// Every import cycle between files, one per strongly connected group of files, each as
/// `a.rs -> b.rs -> a.rs` followed by where each arrow is written.
fn find_cycles(files: &[SourceFile]) -> Vec<String> {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter_map(|f| module_of(&f.rel).map(|m| (m, f.rel.clone())))
        .collect();
    let refs: BTreeMap<&str, FileRefs> = files
        .iter()
        .filter_map(|f| module_of(&f.rel).map(|m| (f.rel.as_str(), file_refs(&m, &lex(&f.text)))))
        .collect();

    // Test modules: by name, or declared `#[cfg(test)] mod x;`, and everything below them.
    let mut test_modules: BTreeSet<Vec<String>> = BTreeSet::new();
    for f in files {
        let Some(m) = module_of(&f.rel) else { continue };
        if is_test_file_by_name(&f.rel) {
            test_modules.insert(m.clone());
        }
        for child in &refs[f.rel.as_str()].test_children {
            let mut c = m.clone();
            c.push(child.clone());
            test_modules.insert(c);
        }
    }
    let is_test = |m: &[String]| (0..=m.len()).any(|k| test_modules.contains(&m[..k]));

    // Edges between files, with the first place each is written.
    let mut edges: BTreeMap<&str, BTreeMap<&str, (usize, String)>> = BTreeMap::new();
    for f in files {
        let Some(from_mod) = module_of(&f.rel) else {
            continue;
        };
        if is_test(&from_mod) {
            continue;
        }
        let out = edges.entry(f.rel.as_str()).or_default();
        for r in &refs[f.rel.as_str()].paths {
            if r.in_test {
                continue;
            }
            let Some(abs) = resolve(r, &modules) else {
                continue;
            };
            let Some(to) = file_of(&abs, &modules) else {
                continue;
            };
            let to_mod = module_of(to).expect("a module file");
            let parent_child = from_mod.len() == to_mod.len() + 1 && from_mod.starts_with(&to_mod)
                || to_mod.len() == from_mod.len() + 1 && to_mod.starts_with(&from_mod);
            if to == f.rel || parent_child || is_test(&to_mod) {
                continue;
            }
            out.entry(to).or_insert_with(|| (r.line, r.segs.join("::")));
        }
    }

    let reach = |start: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            for next in edges.get(n).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(*next) {
                    queue.push_back(next);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<&str>> = edges.keys().map(|n| (*n, reach(n))).collect();

    let mut reported: BTreeSet<&str> = BTreeSet::new();
    let mut cycles = Vec::new();
    for (&start, from_start) in &reaches {
        if reported.contains(start) || !from_start.contains(start) {
            continue;
        }
        // The group of files on a cycle with `start`.
        let group: BTreeSet<&str> = from_start
            .iter()
            .copied()
            .filter(|n| reaches.get(n).is_some_and(|r| r.contains(start)))
            .collect();
        reported.extend(group.iter().copied());
        // The shortest cycle through `start`, by breadth-first search.
        let mut back: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        'search: while let Some(n) = queue.pop_front() {
            for next in edges.get(n).into_iter().flat_map(|e| e.keys()) {
                if *next == start {
                    back.insert(start, n);
                    break 'search;
                }
                if group.contains(next) && !back.contains_key(next) {
                    back.insert(next, n);
                    queue.push_back(next);
                }
            }
        }
        let mut path = vec![start];
        let mut n = back[start];
        while n != start {
            path.push(n);
            n = back[n];
        }
        path.push(start);
        path.reverse();
        let mut text = path.join(" -> ");
        for pair in path.windows(2) {
            let (line, written) = &edges[pair[0]][pair[1]];
            let _ = write!(text, "\n      src/{}:{line}: {written}", pair[0]);
        }
        if group.len() > path.len() - 1 {
            let others: Vec<&str> = group
                .iter()
                .copied()
                .filter(|n| !path.contains(n))
                .collect();
            let _ = write!(text, "\n      (also in this tangle: {})", others.join(", "));
        }
        cycles.push(text);
    }
    cycles
}

// ---------------------------------------------------------------------------------------------
// Rules: module docs, layers, cited documents.
// ---------------------------------------------------------------------------------------------

fn opens_with_module_doc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with("//!"))
}

/// Uses against the layers' arrows: file, line, the absolute path used, the rule broken.
fn layer_offences(files: &[SourceFile]) -> Vec<(String, usize, Vec<String>, String)> {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter_map(|f| module_of(&f.rel).map(|m| (m, f.rel.clone())))
        .collect();
    let mut out = Vec::new();
    for f in files {
        let Some(m) = module_of(&f.rel) else { continue };
        let mut seen = BTreeSet::new();
        for r in file_refs(&m, &lex(&f.text)).paths {
            let Some(abs) = resolve(&r, &modules) else {
                continue;
            };
            let Some(top) = abs.first() else { continue };
            let mut broken = None;
            for (dir, banned) in LAYER_RULES {
                if f.rel.starts_with(dir) && banned.contains(&top.as_str()) {
                    broken = Some(format!("src/{dir} may not use crate::{top}"));
                }
            }
            if f.rel.starts_with("model/") && top != "model" {
                broken = Some("src/model/ may use only crate::model".to_string());
            }
            if let Some(rule) = broken {
                if seen.insert((r.line, abs.clone())) {
                    out.push((f.rel.clone(), r.line, abs, rule));
                }
            }
        }
    }
    out.sort();
    out
}

/// Comments citing a document in `MISSING_DOCS`, by line.
fn missing_doc_citations(text: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for c in lex(text).comments {
        for doc in MISSING_DOCS {
            for (k, l) in c.text.lines().enumerate() {
                if l.contains(doc) {
                    out.push((c.line + k, *doc));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The checker on in-memory sources: each rule can fail, and prose is not code.
// ---------------------------------------------------------------------------------------------

fn crate_of(files: &[(&str, &str)]) -> Vec<SourceFile> {
    let mut v: Vec<SourceFile> = files.iter().map(|(r, t)| SourceFile::new(r, t)).collect();
    if !v.iter().any(|f| f.rel == "lib.rs") {
        v.push(SourceFile::new("lib.rs", "//! Root.\npub mod a;\n"));
    }
    v
}

#[test]
fn checker_finds_a_three_file_cycle() {
    let files = crate_of(&[
        ("a.rs", "//! A.\nuse crate::b::B;\n"),
        ("b.rs", "//! B.\nuse crate::c::{self, C};\npub struct B;\n"),
        ("c/mod.rs", "//! C.\npub fn f() { crate::a::g(); }\n"),
    ]);
    let cycles = find_cycles(&files);
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert!(
        cycles[0].starts_with("a.rs -> b.rs -> c/mod.rs -> a.rs"),
        "{cycles:?}"
    );
    assert!(
        cycles[0].contains("src/c/mod.rs:2: crate::a::g"),
        "{cycles:?}"
    );
}

#[test]
fn checker_finds_a_cycle_through_super_and_grouped_uses() {
    let files = crate_of(&[
        ("x/mod.rs", "//! X.\nmod p;\nmod q;\n"),
        ("x/p.rs", "//! P.\nuse super::{q::Q, Other};\n"),
        ("x/q.rs", "//! Q.\nuse super::super::x::p::P;\n"),
    ]);
    let cycles = find_cycles(&files);
    assert_eq!(cycles, vec![cycles[0].clone()]);
    assert!(cycles[0].starts_with("x/p.rs -> x/q.rs -> x/p.rs"));
}

#[test]
fn checker_does_not_count_parent_and_child_as_a_cycle() {
    let files = crate_of(&[
        (
            "m/mod.rs",
            "//! M.\nmod child;\npub use child::Thing;\npub use self::child::f;\n",
        ),
        (
            "m/child.rs",
            "//! Child.\nuse super::Helper;\nuse crate::m::Other;\n",
        ),
    ]);
    assert_eq!(find_cycles(&files), Vec::<String>::new());
}

#[test]
fn checker_ignores_paths_in_comments_strings_and_test_modules() {
    let files = crate_of(&[
        (
            "a.rs",
            "//! A, which crate::b::x would make a cycle.\n\
             // use crate::b::X;\n\
             /* crate::b::X */\n\
             const S: &str = \"crate::b::X\";\n\
             const R: &str = r#\"crate::b::X \"quoted\"\"#;\n\
             const C: char = '\"';\n\
             fn f<'a>(x: &'a str) -> &'a str { x }\n\
             #[cfg(test)]\nmod tests { use crate::b::X; }\n",
        ),
        ("b.rs", "//! B.\nuse crate::a::f;\n"),
        (
            "c/tests.rs",
            "//! Tests.\nuse crate::a::f;\nuse crate::d::D;\n",
        ),
        ("d.rs", "//! D.\nuse crate::c::tests::T;\n"),
    ]);
    assert_eq!(find_cycles(&files), Vec::<String>::new());
}

#[test]
fn checker_flags_real_uses_in_the_core_and_not_prose() {
    let prose = "//! Pure: no std::fs, no tokio, no HashMap.\n\
                 /// Never calls Instant::now or SystemTime.\n\
                 fn f() -> &'static str { \"std::process and rand\" }\n";
    assert_eq!(core_offences(prose), Vec::<(usize, String)>::new());

    let code = "//! Impure.\n\
                use std::collections::HashMap;\n\
                use std::{fs, io};\n\
                fn f() { let _ = std :: process::id(); let _ = std::time::Instant::now(); }\n\
                async fn g() { tokio::task::yield_now().await }\n";
    let found: Vec<String> = core_offences(code)
        .into_iter()
        .map(|(l, w)| format!("{l}:{w}"))
        .collect();
    assert_eq!(
        found,
        [
            "2:HashMap",
            "3:std::fs",
            "4:Instant::now",
            "4:std::process",
            "5:tokio"
        ]
    );
}

#[test]
fn checker_flags_layer_uses_against_the_arrows() {
    let files = crate_of(&[
        ("model/mod.rs", "//! Model.\npub mod spec;\n"),
        (
            "model/spec.rs",
            "//! Spec.\nuse crate::model::Ok;\nuse super::super::render::Style;\n",
        ),
        (
            "daemon/mod.rs",
            "//! Daemon.\nfn f() { crate::cmd::run(); }\n",
        ),
        (
            "infra/mod.rs",
            "//! Infra.\n// crate::core::plan in prose\n",
        ),
    ]);
    let found: Vec<String> = layer_offences(&files)
        .into_iter()
        .map(|(f, l, p, _)| format!("{f}:{l}:{}", p.join("::")))
        .collect();
    assert_eq!(
        found,
        ["daemon/mod.rs:2:cmd::run", "model/spec.rs:3:render::Style"]
    );
}

#[test]
fn checker_flags_missing_module_docs_and_missing_documents() {
    assert!(opens_with_module_doc("\n//! Doc.\nfn f() {}\n"));
    assert!(!opens_with_module_doc("/// Item doc.\nfn f() {}\n"));
    assert!(!opens_with_module_doc("use std::io;\n//! Late.\n"));
    assert!(!opens_with_module_doc(""));

    let text = "//! See ARCHITECTURE.md.\n\
                /// As DESIGN.md, invariant 2, says.\n\
                const S: &str = \"DESIGN.md\";\n";
    assert_eq!(missing_doc_citations(text), [(2, "DESIGN.md")]);
}
