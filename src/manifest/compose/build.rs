//! A service's `build:` (issue 9): the short form (a context path) and the long form
//! (`context`, `dockerfile`, `dockerfile_inline`, `args`, `target`, `labels`, `no_cache`,
//! `pull`, `tags`), the context read from the commit's tree through the `RepoTree` with its
//! `.dockerignore` applied, and the content hash that names the image
//! (`convoy-build/<stack>-<context folder>:<hash16>`) and moves the spec hash exactly when the
//! context or an option that shapes the image changes.
//!
//! No I/O of its own: files come only through the `RepoTree` handed in (never a working
//! directory), so a daemon builds what the commit says. It does not talk to an engine either;
//! `exec::build` sends what is read here. A context outside the repository, a file the tree
//! refuses (too large, a link out) and a context over `MAX_CONTEXT_BYTES` are located errors.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::engine_rules::image_reference_problem;
use super::keys::BUILD;
use super::{resolve, Stack};
use crate::manifest::typed::Diag;
use crate::manifest::yaml::{Kind, Node};
use crate::manifest::MIN_SECRET_LEN;
use crate::model::spec::{is_secret_name, BuildInput, BuildSpec};

/// The most bytes one build context may hold once `.dockerignore` is applied: it is held in
/// memory with the desired state until the pass that builds it.
pub const MAX_CONTEXT_BYTES: u64 = 512 << 20;
/// The most files one build context may hold.
pub const MAX_CONTEXT_FILES: usize = 100_000;
/// The name an inline Dockerfile is sent under, inside the context.
pub const INLINE_DOCKERFILE: &str = ".convoy-inline.Dockerfile";
/// The repository part of the tags Convoy gives to the images it builds.
pub const BUILD_REPOSITORY: &str = "convoy-build";

/// A `build:` as written, before its context is read.
pub(super) struct BuildDecl<'n> {
    /// Where to put errors about the context: the `context` value, or `build` itself.
    at: &'n Node,
    at_path: String,
    context: String,
    dockerfile: Option<(String, &'n Node, String)>,
    inline: Option<String>,
    args: BTreeMap<String, String>,
    target: Option<String>,
    labels: BTreeMap<String, String>,
    no_cache: bool,
    pull: bool,
    tags: Vec<String>,
}

impl Stack<'_> {
    /// Reads `build:` (short or long form); `None` after recording its errors.
    pub(super) fn read_build<'n>(
        &self,
        d: &mut Diag,
        v: &'n Node,
        path: &str,
    ) -> Option<BuildDecl<'n>> {
        let mut b = BuildDecl {
            at: v,
            at_path: path.to_string(),
            context: ".".into(),
            dockerfile: None,
            inline: None,
            args: BTreeMap::new(),
            target: None,
            labels: BTreeMap::new(),
            no_cache: false,
            pull: false,
            tags: Vec::new(),
        };
        let before = d.errors.len();
        match &v.kind {
            Kind::Map(entries) => {
                for (field, _k, fv, fpath) in d.fields(entries, path, &BUILD) {
                    match field {
                        "context" => {
                            if let Some(s) = d.string(fv, &fpath) {
                                b.context = s;
                                b.at = fv;
                                b.at_path = fpath;
                            }
                        }
                        "dockerfile" => {
                            if let Some(s) = d.string(fv, &fpath) {
                                b.dockerfile = Some((s, fv, fpath));
                            }
                        }
                        "dockerfile_inline" => b.inline = d.string(fv, &fpath),
                        "args" => {
                            for (k, val, _) in d.list_or_dict(fv, &fpath, '=').unwrap_or_default() {
                                // A bare `K` takes its value from the variables, as Compose
                                // does, and is left out when they have none.
                                if let Some(val) = val.or_else(|| self.input.vars.get(&k).cloned())
                                {
                                    b.args.insert(k, val);
                                }
                            }
                        }
                        "target" => b.target = d.string(fv, &fpath),
                        "labels" => b.labels = d.string_map(fv, &fpath, true).unwrap_or_default(),
                        "no_cache" => b.no_cache = d.bool(fv, &fpath).unwrap_or(false),
                        "pull" => b.pull = d.bool(fv, &fpath).unwrap_or(false),
                        "tags" => {
                            for (i, (t, n)) in d
                                .string_list(fv, &fpath)
                                .unwrap_or_default()
                                .into_iter()
                                .enumerate()
                            {
                                match image_reference_problem(&t) {
                                    Some(why) => d.at(
                                        n,
                                        &format!("{fpath}[{i}]"),
                                        format!("invalid image reference `{t}`: {why}"),
                                    ),
                                    None => b.tags.push(t),
                                }
                            }
                        }
                        _ => {}
                    }
                }
                if b.inline.is_some() {
                    if let Some((_, n, p)) = &b.dockerfile {
                        d.at(
                            n,
                            p,
                            "`dockerfile` and `dockerfile_inline` cannot both be set: keep one",
                        );
                    }
                }
            }
            _ => {
                b.context = d.string(v, path)?;
            }
        }
        // Secret-looking build args are masked wherever they could show.
        d.secrets.extend(
            b.args
                .iter()
                .filter(|(k, v)| is_secret_name(k) && v.chars().count() >= MIN_SECRET_LEN)
                .map(|(_, v)| v.clone()),
        );
        (d.errors.len() == before).then_some(b)
    }

    /// Reads the context of `b` from the tree and makes the spec: the build and the image
    /// reference the service runs (`image` when given, else Convoy's tag).
    pub(super) fn finish_build(
        &self,
        d: &mut Diag,
        b: BuildDecl<'_>,
        image: Option<&str>,
        service: &str,
        platform: Option<&str>,
    ) -> Option<(BuildSpec, String)> {
        let ctx = &b.context;
        if ctx.contains("://") || ctx.starts_with("git@") {
            d.at(
                b.at,
                &b.at_path,
                format!(
                    "remote build context `{ctx}` is not supported: the context is read from the \
                     repository at the commit; put the files in the repository"
                ),
            );
            return None;
        }
        let outside = || {
            format!(
                "build context `{ctx}` is outside the repository: only a folder of the \
                 repository can be a context"
            )
        };
        if ctx.starts_with('/') || ctx.starts_with('~') {
            d.at(b.at, &b.at_path, outside());
            return None;
        }
        let Some(dir) = resolve(self.input.dir, ctx) else {
            d.at(b.at, &b.at_path, outside());
            return None;
        };
        let tree = self.input.tree;
        // The context folder itself must be a folder of the tree (a link out shows as an
        // unreadable path or as missing).
        if !dir.is_empty() {
            let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir.as_str()));
            match tree.list(parent) {
                Ok(entries) if entries.iter().any(|e| e.name == name && e.is_dir) => {}
                Ok(_) => {
                    d.at(
                        b.at,
                        &b.at_path,
                        format!("build context `{dir}` is not a folder of the repository"),
                    );
                    return None;
                }
                Err(e) => {
                    d.at(
                        b.at,
                        &b.at_path,
                        format!("cannot read build context `{dir}`: {e}"),
                    );
                    return None;
                }
            }
        }
        let read = match self.build_contexts.get(tree, &dir) {
            Ok(r) => r,
            Err(e) => {
                d.at(b.at, &b.at_path, e);
                return None;
            }
        };
        // A file the context lacks, or has with other bytes: the inline Dockerfile, or one
        // `.dockerignore` leaves out.
        let mut extra: Option<(String, Vec<u8>)> = None;
        let dockerfile = match (&b.inline, &b.dockerfile) {
            (Some(text), _) => {
                extra = Some((INLINE_DOCKERFILE.into(), text.as_bytes().to_vec()));
                INLINE_DOCKERFILE.to_string()
            }
            (None, written) => {
                let (name, at, at_path) = match written {
                    Some((s, n, p)) => (s.clone(), *n, p.clone()),
                    None => ("Dockerfile".to_string(), b.at, b.at_path.clone()),
                };
                // Inside the context: the builder sees nothing else.
                let inside = resolve(&dir, &name)
                    .filter(|p| dir.is_empty() || p.starts_with(&format!("{dir}/")))
                    .filter(|_| !name.starts_with('/'));
                let Some(repo_path) = inside else {
                    d.at(
                        at,
                        &at_path,
                        format!("dockerfile `{name}` is outside the build context `{dir}`"),
                    );
                    return None;
                };
                let rel = repo_path
                    .strip_prefix(&format!("{dir}/"))
                    .unwrap_or(&repo_path)
                    .to_string();
                match read
                    .file(&rel)
                    .map_or_else(|| tree.read_raw(&repo_path), |_| Ok(None))
                {
                    // In the context already: read from this very tree in this load.
                    Ok(None) if read.file(&rel).is_some() => {}
                    // Sent even when `.dockerignore` leaves it out, as the Docker CLI does.
                    Ok(Some(bytes)) => extra = Some((rel.clone(), bytes)),
                    Ok(None) => {
                        d.at(at, &at_path, format!("no Dockerfile at `{repo_path}`"));
                        return None;
                    }
                    Err(e) => {
                        d.at(at, &at_path, format!("cannot read `{repo_path}`: {e}"));
                        return None;
                    }
                }
                rel
            }
        };
        let (files, state) = match extra {
            // The usual case: the context's files as read, shared, and their hash state.
            None => (read.files.clone(), read.state.clone()),
            Some((path, bytes)) => {
                let mut m: BTreeMap<String, Vec<u8>> = read.files.iter().cloned().collect();
                m.insert(path, bytes);
                let state = files_state(&m);
                (Arc::new(m.into_iter().collect::<Vec<_>>()), state)
            }
        };
        let hash = finish_hash(
            state,
            &dockerfile,
            &b.args,
            b.target.as_deref(),
            &b.labels,
            platform,
        );
        // Named by the context's folder, not the service: services built alike share one tag
        // (one image, one check per pass), and the hash tells different builds apart.
        let context_name = dir.rsplit('/').next().unwrap_or(service);
        let tag = build_tag(&self.name, context_name, &hash);
        let mut tags: Vec<String> = image.map(str::to_string).into_iter().collect();
        for t in b.tags {
            if !tags.contains(&t) && t != tag {
                tags.push(t);
            }
        }
        let image_ref = image.map(str::to_string).unwrap_or_else(|| tag.clone());
        let spec = BuildSpec {
            hash,
            input: Arc::new(BuildInput {
                tag,
                tags,
                context: if dir.is_empty() { ".".into() } else { dir },
                files,
                dockerfile,
                args: b.args,
                target: b.target,
                labels: b.labels,
                no_cache: b.no_cache,
                pull: b.pull,
                platform: platform.map(str::to_string),
            }),
        };
        Some((spec, image_ref))
    }
}

/// The build contexts one stack's load has read: services built from one folder (another
/// `target`, other args) read and hash its files once, and share them in memory. Keyed by the
/// context's repository path: one load reads one tree, so one path has one content (a working
/// copy changed during the load gives every service the first view, never a mix). Errors are
/// not kept: each service reports its own, at its own `build`.
#[derive(Default)]
pub(super) struct ContextCache(RefCell<BTreeMap<String, Arc<ContextRead>>>);

/// A context as read: its files after `.dockerignore`, and the hash state after them.
pub(super) struct ContextRead {
    files: Arc<Vec<(String, Vec<u8>)>>,
    state: Sha256,
}

impl ContextRead {
    fn file(&self, path: &str) -> Option<&[u8]> {
        self.files
            .binary_search_by(|(p, _)| p.as_str().cmp(path))
            .ok()
            .map(|i| self.files[i].1.as_slice())
    }
}

impl ContextCache {
    fn get(
        &self,
        tree: &dyn crate::model::tree::RepoTree,
        dir: &str,
    ) -> Result<Arc<ContextRead>, String> {
        if let Some(r) = self.0.borrow().get(dir) {
            return Ok(r.clone());
        }
        let ignore = match tree.read_raw(&join_path(dir, ".dockerignore")) {
            Ok(Some(bytes)) => Ignore::parse(&String::from_utf8_lossy(&bytes)),
            Ok(None) => Ignore::default(),
            Err(e) => {
                return Err(format!(
                    "cannot read `{}`: {e}",
                    join_path(dir, ".dockerignore")
                ))
            }
        };
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        read_context(tree, dir, &ignore, &mut files)?;
        let read = Arc::new(ContextRead {
            state: files_state(&files),
            files: Arc::new(files.into_iter().collect()),
        });
        self.0.borrow_mut().insert(dir.to_string(), read.clone());
        Ok(read)
    }
}

fn join_path(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads every file of the context that `ignore` keeps, depth first in the tree's order.
fn read_context(
    tree: &dyn crate::model::tree::RepoTree,
    dir: &str,
    ignore: &Ignore,
    files: &mut BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    let mut total: u64 = 0;
    let mut stack: Vec<String> = vec![String::new()];
    while let Some(rel_dir) = stack.pop() {
        let repo_dir = join_path(dir, &rel_dir);
        let entries = tree
            .list(&repo_dir)
            .map_err(|e| format!("cannot list `{repo_dir}` of the build context: {e}"))?;
        for e in entries {
            let rel = join_path(&rel_dir, &e.name);
            let excluded = ignore.excludes(&rel);
            if e.is_dir {
                // An excluded folder is skipped unless a `!` pattern may take something back.
                if !excluded || ignore.has_exceptions {
                    stack.push(rel);
                }
                continue;
            }
            if excluded {
                continue;
            }
            let repo_path = join_path(dir, &rel);
            let bytes = match tree.read_raw(&repo_path) {
                Ok(Some(b)) => b,
                // Listed but gone: a race with the working directory; the next load sees it.
                Ok(None) => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot read `{repo_path}` of the build context: {e}"
                    ))
                }
            };
            total += bytes.len() as u64;
            if total > MAX_CONTEXT_BYTES {
                return Err(format!(
                    "the build context `{}` is too large: over {MAX_CONTEXT_BYTES} bytes once \
                     `.dockerignore` is applied; leave out what the image does not need",
                    if dir.is_empty() { "." } else { dir }
                ));
            }
            if files.len() >= MAX_CONTEXT_FILES {
                return Err(format!(
                    "the build context `{}` has more than {MAX_CONTEXT_FILES} files once \
                     `.dockerignore` is applied",
                    if dir.is_empty() { "." } else { dir }
                ));
            }
            files.insert(rel, bytes);
        }
    }
    Ok(())
}

/// The content hash of a build: every file's path, length and bytes, the Dockerfile's path,
/// the args, the target, the labels and the platform, each length-prefixed so no two inputs
/// run together. The platform is hashed only when set, so a build without one keeps its hash
/// (and tag); with one, an image built for another platform never passes for this one.
/// Loads compute it in two parts (`files_state`, then `finish_hash`) so a shared context is
/// hashed once; this whole form is the tests' reference.
#[cfg(test)]
pub fn content_hash(
    files: &BTreeMap<String, Vec<u8>>,
    dockerfile: &str,
    args: &BTreeMap<String, String>,
    target: Option<&str>,
    labels: &BTreeMap<String, String>,
    platform: Option<&str>,
) -> String {
    finish_hash(
        files_state(files),
        dockerfile,
        args,
        target,
        labels,
        platform,
    )
}

fn put(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_le_bytes());
    h.update(b);
}

/// The first part of `content_hash`: the version and every file. Kept with a context read, so
/// services built from one context hash its bytes once.
fn files_state(files: &BTreeMap<String, Vec<u8>>) -> Sha256 {
    let mut h = Sha256::new();
    put(&mut h, b"convoy-build/1");
    put(&mut h, &(files.len() as u64).to_le_bytes());
    for (p, bytes) in files {
        put(&mut h, p.as_bytes());
        put(&mut h, bytes);
    }
    h
}

/// The rest of `content_hash`, from the state after the files.
fn finish_hash(
    mut h: Sha256,
    dockerfile: &str,
    args: &BTreeMap<String, String>,
    target: Option<&str>,
    labels: &BTreeMap<String, String>,
    platform: Option<&str>,
) -> String {
    put(&mut h, dockerfile.as_bytes());
    put(&mut h, &(args.len() as u64).to_le_bytes());
    for (k, v) in args {
        put(&mut h, k.as_bytes());
        put(&mut h, v.as_bytes());
    }
    put(&mut h, target.unwrap_or_default().as_bytes());
    put(&mut h, &(labels.len() as u64).to_le_bytes());
    for (k, v) in labels {
        put(&mut h, k.as_bytes());
        put(&mut h, v.as_bytes());
    }
    if let Some(p) = platform {
        put(&mut h, b"platform");
        put(&mut h, p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `convoy-build/<stack>-<context folder>:<hash16>`: a repository name the engine accepts
/// (lowercase, `[a-z0-9]` runs joined by `-`) whatever the folder is called.
pub fn build_tag(stack: &str, context: &str, hash: &str) -> String {
    let mut name = String::new();
    for c in format!("{stack}-{context}").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    format!("{BUILD_REPOSITORY}/{name}:{}", &hash[..16.min(hash.len())])
}

/// `.dockerignore`: patterns in order, the last one that matches a path deciding; `!` takes a
/// path back. A pattern matches a path or any folder above it. `*` and `?` stay within one
/// path segment, `**` spans any number of them, `[...]` is a class, `#` starts a comment.
#[derive(Debug, Default)]
pub struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
    has_exceptions: bool,
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut out = Ignore::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negated, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            // Cleaned as Docker cleans it: no leading `/` or `./`, no empty or `.` segments.
            let segs: Vec<String> = pat
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect();
            if segs.is_empty() {
                continue;
            }
            out.has_exceptions |= negated;
            out.patterns.push((negated, segs));
        }
        out
    }

    /// Whether `path` (inside the context, `/`-separated) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        let segs: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (negated, pat) in &self.patterns {
            // The path itself, or a folder above it.
            let matched = (1..=segs.len()).any(|n| match_segments(pat, &segs[..n]));
            if matched {
                excluded = !negated;
            }
        }
        excluded
    }
}

fn match_segments(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((s, prest)) => {
                match_glob(p.as_bytes(), s.as_bytes()) && match_segments(rest, prest)
            }
            None => false,
        },
    }
}

/// One segment against one glob segment: `*`, `?`, `[...]` (with `!`/`^` and ranges), `\`.
fn match_glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_glob(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some((&c, srest)) = s.split_first() else {
                return false;
            };
            let Some(end) = rest.iter().skip(1).position(|&b| b == b']').map(|i| i + 1) else {
                return false;
            };
            let (class, after) = (&rest[..end], &rest[end + 1..]);
            let (neg, class) = match class.first() {
                Some(b'!') | Some(b'^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != neg && match_glob(after, srest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            s.first() == Some(&rest[0]) && match_glob(&rest[1..], &s[1..])
        }
        Some((&c, rest)) => s.first() == Some(&c) && match_glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{load, MemoryTree};

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text)
    }

    #[test]
    fn dockerignore_patterns() {
        let i = ignore("# comment\n\n*.log\nbuild/\n**/*.tmp\n!keep.log\nsecret?.txt\n[ab].md\n");
        assert!(i.excludes("x.log"));
        assert!(!i.excludes("keep.log"));
        assert!(!i.excludes("dir/x.log"), "`*` stays in the top folder");
        assert!(i.excludes("build"));
        assert!(
            i.excludes("build/out/bin"),
            "a folder's pattern covers what it holds"
        );
        assert!(i.excludes("a/b/c.tmp"));
        assert!(i.excludes("c.tmp"), "`**` spans no folder too");
        assert!(i.excludes("secret1.txt"));
        assert!(!i.excludes("secret12.txt"));
        assert!(i.excludes("a.md") && i.excludes("b.md") && !i.excludes("c.md"));
        assert!(!i.excludes("src/main.rs"));
        assert!(!i.excludes("# comment"));
    }

    #[test]
    fn dockerignore_everything_but() {
        let i = ignore("*\n!app\n!Dockerfile\napp/tests\n");
        assert!(i.excludes("README.md"));
        assert!(!i.excludes("Dockerfile"));
        assert!(!i.excludes("app/main.py"));
        assert!(i.excludes("app/tests/t.py"));
        assert!(i.has_exceptions);
        let i = ignore("/docs\n./tmp/**\n");
        assert!(i.excludes("docs/a.md") && i.excludes("tmp/x/y") && !i.excludes("src/docs"));
    }

    #[test]
    fn glob_classes_and_escapes() {
        assert!(match_glob(b"[a-c]x", b"bx"));
        assert!(!match_glob(b"[!a-c]x", b"bx"));
        assert!(match_glob(b"\\*", b"*"));
        assert!(!match_glob(b"\\*", b"a"));
        assert!(match_glob(b"*.r?", b"main.rs"));
    }

    #[test]
    fn build_tag_is_a_valid_reference() {
        let h = "0123456789abcdef0123";
        assert_eq!(
            build_tag("web", "App.Server_1", h),
            "convoy-build/web-app-server-1:0123456789abcdef"
        );
        assert_eq!(
            build_tag("web", "x-", h),
            "convoy-build/web-x:0123456789abcdef"
        );
        assert!(image_reference_problem(&build_tag("a_b", "c..d", h)).is_none());
    }

    const FLEET: &str = "fleet: prod\n";

    fn repo(compose: &str, extra: &[(&str, &str)]) -> MemoryTree {
        let mut t = MemoryTree::new()
            .with("convoy.yaml", FLEET)
            .with("stacks/web/compose.yaml", compose);
        for (p, c) in extra {
            t.insert(p, c);
        }
        t
    }

    fn app_files() -> Vec<(&'static str, &'static str)> {
        vec![
            (
                "stacks/web/app/Dockerfile",
                "FROM busybox\nCOPY hello.txt /\n",
            ),
            ("stacks/web/app/hello.txt", "hello\n"),
            ("stacks/web/app/.dockerignore", "*.log\n"),
            ("stacks/web/app/debug.log", "noise\n"),
        ]
    }

    fn build_of(t: &MemoryTree) -> (String, BuildSpec) {
        let state = load(t, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e:?}"));
        let svc = &state.stacks["web"].services["app"];
        (
            svc.container.image.clone(),
            svc.container.build.clone().unwrap(),
        )
    }

    const SHORT: &str = "services:\n  app:\n    build: ./app\n";
    const PINNED_HASH16: &str = "071f4e5417f69a15";

    #[test]
    fn a_build_without_image_runs_convoys_tag() {
        let (image, b) = build_of(&repo(SHORT, &app_files()));
        assert_eq!(image, b.input.tag);
        assert!(image.starts_with("convoy-build/web-app:"));
        assert_eq!(&image["convoy-build/web-app:".len()..], &b.hash[..16]);
        let names: Vec<&str> = b.input.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, [".dockerignore", "Dockerfile", "hello.txt"]);
        assert_eq!(b.input.dockerfile, "Dockerfile");
        assert_eq!(b.input.context, "stacks/web/app");
    }

    #[test]
    fn the_hash_follows_the_context_and_not_what_is_ignored() {
        let (_, a) = build_of(&repo(SHORT, &app_files()));
        let (_, same) = build_of(&repo(SHORT, &app_files()));
        assert_eq!(a.hash, same.hash);
        let mut changed = app_files();
        changed[1].1 = "hello, world\n";
        let (_, b) = build_of(&repo(SHORT, &changed));
        assert_ne!(a.hash, b.hash, "a changed file");
        let mut ignored = app_files();
        ignored[3].1 = "other noise\n";
        ignored.push(("stacks/web/app/more.log", "x"));
        let (_, c) = build_of(&repo(SHORT, &ignored));
        assert_eq!(a.hash, c.hash, "ignored files");
        // A file outside the context changes nothing either.
        let mut outside = app_files();
        outside.push(("stacks/web/other.txt", "x"));
        assert_eq!(build_of(&repo(SHORT, &outside)).1.hash, a.hash);
    }

    #[test]
    fn long_form_options_move_the_hash_and_secrets_are_registered() {
        let long = "services:\n  app:\n    image: reg.example:5000/app:1\n    build:\n      context: app\n      args:\n        VERSION: \"1\"\n        API_TOKEN: s3cr3t-value\n      target: prod\n      labels: [a=b]\n      no_cache: true\n      pull: true\n      tags: [extra/app:latest]\n";
        let t = repo(long, &app_files());
        let state = load(&t, &BTreeMap::new()).unwrap();
        let c = &state.stacks["web"].services["app"].container;
        let b = c.build.as_ref().unwrap();
        assert_eq!(c.image, "reg.example:5000/app:1");
        assert_eq!(b.input.tags, ["reg.example:5000/app:1", "extra/app:latest"]);
        assert!(b.input.no_cache && b.input.pull);
        assert_eq!(b.input.target.as_deref(), Some("prod"));
        assert!(state.secret_values.contains("s3cr3t-value"));
        let json = serde_json::to_string(c).unwrap();
        assert!(!json.contains("s3cr3t"), "{json}");
        assert!(json.contains(&b.hash));
        let (_, short) = build_of(&repo(SHORT, &app_files()));
        assert_ne!(short.hash, b.hash);
        // `no_cache`, `pull` and `tags` do not shape the image: out of the hash.
        let other = long.replace("no_cache: true", "no_cache: false");
        let state2 = load(&repo(&other, &app_files()), &BTreeMap::new()).unwrap();
        assert_eq!(
            state2.stacks["web"].services["app"].container.hash(),
            c.hash()
        );
    }

    #[test]
    fn platform_is_built_for_and_moves_the_hash_only_when_set() {
        let (_, none) = build_of(&repo(SHORT, &app_files()));
        assert_eq!(none.input.platform, None);
        // Pinned: a build without `platform` hashes (and is tagged) as before the key was read.
        let files: BTreeMap<String, Vec<u8>> = [("Dockerfile".to_string(), b"FROM x\n".to_vec())]
            .into_iter()
            .collect();
        let empty = BTreeMap::new();
        assert_eq!(
            &content_hash(&files, "Dockerfile", &empty, None, &empty, None)[..16],
            PINNED_HASH16
        );
        let with = |p: &str| {
            let c = format!("services:\n  app:\n    build: ./app\n    platform: {p}\n");
            build_of(&repo(&c, &app_files())).1
        };
        let arm = with("linux/arm64");
        assert_eq!(arm.input.platform.as_deref(), Some("linux/arm64"));
        assert_ne!(arm.hash, none.hash);
        assert_ne!(arm.input.tag, none.input.tag);
        assert_ne!(with("linux/amd64").hash, arm.hash);
        assert_eq!(with("linux/arm64").hash, arm.hash);
    }

    /// Services built from one context read each of its files once and share them; the hash
    /// is what each would have alone, and a Dockerfile added to the context (inline, or one
    /// `.dockerignore` leaves out) is hashed with it.
    #[test]
    fn one_context_is_read_and_hashed_once_per_load() {
        struct Counting(MemoryTree, RefCell<BTreeMap<String, usize>>);
        impl crate::model::tree::RepoTree for Counting {
            fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
                *self.1.borrow_mut().entry(path.to_string()).or_default() += 1;
                self.0.read(path)
            }
            fn list(&self, dir: &str) -> Result<Vec<crate::model::tree::DirEntry>, String> {
                self.0.list(dir)
            }
            fn describe(&self) -> String {
                self.0.describe()
            }
        }
        let shared = "services:\n  a:\n    build: ./app\n  b:\n    build:\n      context: ./app\n      target: t\n  c:\n    build:\n      context: ./app\n      dockerfile_inline: \"FROM scratch\\n\"\n";
        let t = Counting(repo(shared, &app_files()), RefCell::default());
        let state = load(&t, &BTreeMap::new()).unwrap();
        assert_eq!(t.1.borrow()["stacks/web/app/hello.txt"], 1);
        assert_eq!(t.1.borrow()["stacks/web/app/Dockerfile"], 1);
        let b = |s: &str| {
            state.stacks["web"].services[s]
                .container
                .build
                .clone()
                .unwrap()
        };
        let (a, bb, c) = (b("a"), b("b"), b("c"));
        assert!(Arc::ptr_eq(&a.input.files, &bb.input.files));
        assert!(!Arc::ptr_eq(&a.input.files, &c.input.files));
        assert!(c.input.files.iter().any(|(p, _)| p == INLINE_DOCKERFILE));
        assert!(!a.input.files.iter().any(|(p, _)| p == INLINE_DOCKERFILE));
        // The same hashes as each service loaded alone.
        let (_, alone) = build_of(&repo(SHORT, &app_files()));
        assert_eq!(a.hash, alone.hash);
        let only_c = "services:\n  app:\n    build:\n      context: ./app\n      dockerfile_inline: \"FROM scratch\\n\"\n";
        assert_eq!(build_of(&repo(only_c, &app_files())).1.hash, c.hash);
        assert_ne!(a.hash, bb.hash);
        // A Dockerfile the context ignores is sent and hashed all the same.
        let mut f = app_files();
        f[2].1 = "Dockerfile\n";
        let (_, ignored) = build_of(&repo(SHORT, &f));
        let names: Vec<&str> = ignored
            .input
            .files
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(
            names,
            [".dockerignore", "Dockerfile", "debug.log", "hello.txt"]
        );
        let map: BTreeMap<String, Vec<u8>> = ignored.input.files.iter().cloned().collect();
        let empty = BTreeMap::new();
        assert_eq!(
            content_hash(&map, "Dockerfile", &empty, None, &empty, None),
            ignored.hash
        );
    }

    #[test]
    fn inline_dockerfile_and_named_dockerfile() {
        let inline = "services:\n  app:\n    build:\n      context: app\n      dockerfile_inline: |\n        FROM busybox\n";
        let (_, b) = build_of(&repo(inline, &app_files()));
        assert_eq!(b.input.dockerfile, INLINE_DOCKERFILE);
        let named = "services:\n  app:\n    build:\n      context: app\n      dockerfile: docker/Prod.Dockerfile\n";
        let mut f = app_files();
        f.push(("stacks/web/app/docker/Prod.Dockerfile", "FROM busybox\n"));
        let (_, b) = build_of(&repo(named, &f));
        assert_eq!(b.input.dockerfile, "docker/Prod.Dockerfile");
    }

    fn errors(compose: &str, extra: &[(&str, &str)]) -> Vec<String> {
        match load(&repo(compose, extra), &BTreeMap::new()) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn errors_are_located() {
        let e = errors("services:\n  app:\n    build: ../../..\n", &[]);
        assert!(
            e[0].contains("compose.yaml:3:12") && e[0].contains("outside the repository"),
            "{e:?}"
        );
        let e = errors(
            "services:\n  app:\n    build:\n      context: /srv/app\n",
            &[],
        );
        assert!(
            e[0].contains(":4:16") && e[0].contains("services.app.build.context"),
            "{e:?}"
        );
        let e = errors("services:\n  app:\n    build: ~/app\n", &[]);
        assert!(e[0].contains("outside the repository"), "{e:?}");
        let e = errors("services:\n  app:\n    build: ./nope\n", &[]);
        assert!(e[0].contains("not a folder of the repository"), "{e:?}");
        let e = errors(
            "services:\n  app:\n    build: ./app\n",
            &[("stacks/web/app/x", "")],
        );
        assert!(
            e[0].contains("no Dockerfile at `stacks/web/app/Dockerfile`"),
            "{e:?}"
        );
        let e = errors(
            "services:\n  app:\n    build:\n      context: app\n      dockerfile: ../../Dockerfile\n",
            &app_files(),
        );
        assert!(
            e[0].contains(":5:19") && e[0].contains("outside the build context"),
            "{e:?}"
        );
        let e = errors(
            "services:\n  app:\n    build:\n      context: app\n      ssh: [default]\n",
            &app_files(),
        );
        assert!(
            e[0].contains("services.app.build.ssh") && e[0].contains("not supported"),
            "{e:?}"
        );
        let e = errors(
            "services:\n  app:\n    build:\n      contxt: app\n",
            &app_files(),
        );
        assert!(e[0].contains("context"), "a suggestion: {e:?}");
        let e = errors(
            "services:\n  app:\n    build: https://github.com/x/y.git\n",
            &[],
        );
        assert!(e[0].contains("remote build context"), "{e:?}");
        let e = errors(
            "services:\n  app:\n    image: busybox\n    pull_policy: build\n",
            &[],
        );
        assert!(e[0].contains(":4:18") && e[0].contains("`build`"), "{e:?}");
    }

    #[test]
    fn a_service_with_only_build_needs_no_image_and_pull_policy_build_is_read() {
        let c = "services:\n  app:\n    build: app\n    pull_policy: build\n";
        let state = load(&repo(c, &app_files()), &BTreeMap::new()).unwrap();
        let svc = &state.stacks["web"].services["app"];
        assert_eq!(
            svc.container.pull_policy,
            crate::model::spec::PullPolicy::Build
        );
    }

    /// A file the tree refuses (here one over the per-file cap of `infra::source::read`, as a
    /// tree reports it) is an error at the build.
    #[test]
    fn an_unreadable_context_file_is_located() {
        struct Refusing(MemoryTree);
        impl crate::model::tree::RepoTree for Refusing {
            fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
                if path.ends_with("big.bin") {
                    return Err("it is too large".into());
                }
                self.0.read(path)
            }
            fn list(&self, dir: &str) -> Result<Vec<crate::model::tree::DirEntry>, String> {
                self.0.list(dir)
            }
            fn describe(&self) -> String {
                self.0.describe()
            }
        }
        let mut f = app_files();
        f.push(("stacks/web/app/big.bin", "x"));
        let t = Refusing(repo(SHORT, &f));
        let e = load(&t, &BTreeMap::new()).unwrap_err();
        let e = e.0[0].to_string();
        assert!(
            e.contains(":3:12") && e.contains("big.bin") && e.contains("too large"),
            "{e}"
        );
    }

    #[test]
    fn builder_names_a_host_or_local() {
        let hosts = "fleet: prod\nhosts:\n  a:\n    address: unix:///a.sock\n  b:\n    address: unix:///b.sock\n";
        for (builder, want) in [("a", Some("a")), ("local", Some("local"))] {
            let t = repo(SHORT, &app_files())
                .with("convoy.yaml", &format!("{hosts}builder: {builder}\n"));
            let state = load(&t, &BTreeMap::new()).unwrap();
            assert_eq!(state.settings.builder.as_deref(), want);
        }
        let t = repo(SHORT, &app_files());
        assert_eq!(load(&t, &BTreeMap::new()).unwrap().settings.builder, None);
        let t = repo(SHORT, &app_files()).with("convoy.yaml", &format!("{hosts}builder: c\n"));
        let e = load(&t, &BTreeMap::new()).unwrap_err().0[0].to_string();
        assert_eq!(
            e,
            "convoy.yaml:7:10: builder: unknown host `c` (expected `local` or one of the hosts: a, b)"
        );
    }
}
