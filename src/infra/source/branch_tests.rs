//! Following a branch on real repositories made by the system `git` in temporary folders: a
//! bare repository and a `file://` URL followed as pushes arrive, the default branch from HEAD,
//! `--path` and the content key, a working tree with and without `--branch`, and a "remote"
//! (a path git fetches from) fetched into its cache. Credentials: masked in every error and
//! description, and tried a bounded number of times.
//!
//! Tests only; nothing leaves loopback (an HTTPS fetch goes to 127.0.0.1:1, which refuses).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::branch::{
    auth_failed, base64, mask, redact_userinfo, AuthGuard, Credential, MAX_AUTH_FAILURES,
};
use super::*;

/// Runs `git args` in `dir` with a fixed identity and no user or system config; its stdout.
pub(super) fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

pub(super) fn git_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new("git");
    cmd.args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub(super) fn write(root: &Path, rel: &str, contents: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, contents).unwrap();
}

/// Commits every change in `work` and returns the commit's full id.
pub(super) fn commit(work: &Path, message: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "--allow-empty", "-m", message]);
    git(work, &["rev-parse", "HEAD"])
}

/// A working repository with one commit on `branch`, and a bare clone of it (the "server").
pub(super) struct Repos {
    pub _tmp: tempfile::TempDir,
    pub work: PathBuf,
    pub bare: PathBuf,
    pub cache: PathBuf,
}

pub(super) fn repos(branch: &str) -> Repos {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    git(&work, &["init", "-q", "-b", branch]);
    write(&work, "convoy.yaml", "fleet: one\n");
    write(&work, "envs/prod/convoy.yaml", "fleet: prod\n");
    write(&work, "README", "first\n");
    commit(&work, "first");
    git(tmp.path(), &["clone", "-q", "--bare", "work", "bare.git"]);
    Repos {
        work,
        bare: tmp.path().join("bare.git"),
        cache: tmp.path().join("state/git"),
        _tmp: tmp,
    }
}

impl Repos {
    /// Commits in the working repository and pushes to the bare one; the commit's id.
    pub fn push(&self, rel: &str, contents: &str, branch: &str) -> String {
        write(&self.work, rel, contents);
        let id = commit(&self.work, rel);
        git(
            &self.work,
            &[
                "push",
                "-q",
                self.bare.to_str().unwrap(),
                &format!("HEAD:{branch}"),
            ],
        );
        id
    }

    pub fn opts(&self) -> FollowOptions {
        FollowOptions {
            cache_dir: self.cache.clone(),
            ..Default::default()
        }
    }
}

fn read(source: &dyn Source, rev: Option<&str>, path: &str) -> String {
    let tree = source.tree(rev).unwrap();
    String::from_utf8(tree.tree.read(path).unwrap().expect(path)).unwrap()
}

#[test]
fn a_bare_repository_is_followed_as_pushes_arrive() {
    let r = repos("main");
    let source = open_follow(r.bare.to_str().unwrap(), r.opts()).unwrap();
    assert!(!source.is_remote());
    assert_eq!(
        source.watch_refs().unwrap().canonicalize().unwrap(),
        r.bare.canonicalize().unwrap()
    );
    assert_eq!(
        source.describe(),
        format!("{} (branch main)", r.bare.display())
    );
    let first = git(&r.work, &["rev-parse", "HEAD"]);
    assert_eq!(source.latest().unwrap(), first);
    let tree = source.tree(None).unwrap();
    assert_eq!(tree.commit, first);
    assert_eq!(
        tree.key.as_deref(),
        Some(git(&r.work, &["rev-parse", "HEAD^{tree}"]).as_str())
    );
    let time: i64 = git(&r.work, &["log", "-1", "--format=%ct"])
        .parse()
        .unwrap();
    assert_eq!(tree.commit_time, Some(time));
    assert_eq!(read(source.as_ref(), None, "convoy.yaml"), "fleet: one\n");

    let second = r.push("convoy.yaml", "fleet: two\n", "main");
    assert_ne!(second, first);
    assert_eq!(source.latest().unwrap(), second);
    assert_eq!(read(source.as_ref(), None, "convoy.yaml"), "fleet: two\n");
    // Another revision, resolved in the same repository.
    assert_eq!(
        read(source.as_ref(), Some(&first), "convoy.yaml"),
        "fleet: one\n"
    );
    assert_eq!(source.tree(Some("main~1")).unwrap().commit, first);
    assert!(matches!(
        source.tree(Some("no-such-rev")),
        Err(SourceError::BadRevision { .. })
    ));
}

#[test]
fn the_default_branch_is_the_one_head_names_and_a_missing_one_is_an_error() {
    let r = repos("trunk");
    let source = open_follow(r.bare.to_str().unwrap(), r.opts()).unwrap();
    assert!(
        source.describe().contains("(branch trunk)"),
        "{}",
        source.describe()
    );
    assert_eq!(
        source.latest().unwrap(),
        git(&r.work, &["rev-parse", "HEAD"])
    );
    let other = open_follow(
        r.bare.to_str().unwrap(),
        FollowOptions {
            branch: Some("release".into()),
            ..r.opts()
        },
    )
    .unwrap();
    let e = other.latest().unwrap_err().to_string();
    assert!(e.contains("has no branch `release`"), "{e}");
    r.push("convoy.yaml", "fleet: release\n", "release");
    assert_eq!(
        read(other.as_ref(), None, "convoy.yaml"),
        "fleet: release\n"
    );
}

#[test]
fn a_path_reads_below_it_and_its_key_ignores_changes_outside_it() {
    let r = repos("main");
    let opts = FollowOptions {
        path: Some("envs/prod".into()),
        ..r.opts()
    };
    let source = open_follow(r.bare.to_str().unwrap(), opts).unwrap();
    assert!(source.describe().ends_with("(branch main, path envs/prod)"));
    let a = source.tree(None).unwrap();
    assert_eq!(
        a.tree.read("convoy.yaml").unwrap().unwrap(),
        b"fleet: prod\n"
    );
    r.push("README", "second\n", "main");
    let b = source.tree(None).unwrap();
    assert_ne!(a.commit, b.commit);
    assert_eq!(a.key, b.key);
    assert!(a.key.is_some());
    r.push("envs/prod/convoy.yaml", "fleet: prod2\n", "main");
    let c = source.tree(None).unwrap();
    assert_ne!(c.key, b.key);
    assert_eq!(
        c.tree.read("convoy.yaml").unwrap().unwrap(),
        b"fleet: prod2\n"
    );
    // The whole repository's key changes with the README.
    let top = open_follow(r.bare.to_str().unwrap(), r.opts()).unwrap();
    assert_ne!(
        top.tree(Some(&a.commit)).unwrap().key,
        top.tree(Some(&b.commit)).unwrap().key
    );

    // The fleet root gone at a commit: an error naming both.
    std::fs::remove_dir_all(r.work.join("envs")).unwrap();
    let gone = commit(&r.work, "no envs");
    git(
        &r.work,
        &["push", "-q", r.bare.to_str().unwrap(), "HEAD:main"],
    );
    match source.tree(None) {
        Err(e @ SourceError::MissingPath { .. }) => {
            let e = e.to_string();
            assert!(e.contains("envs/prod") && e.contains(&gone), "{e}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a tree without the fleet root"),
    }
}

#[test]
fn a_path_must_be_relative_and_inside() {
    let r = repos("main");
    for bad in ["../x", "envs/../../x", "/etc"] {
        let opts = FollowOptions {
            path: Some(bad.into()),
            ..r.opts()
        };
        match open_follow(r.bare.to_str().unwrap(), opts) {
            Err(SourceError::BadPath { .. }) => {}
            Err(e) => panic!("{bad}: {e}"),
            Ok(_) => panic!("{bad}: accepted"),
        }
    }
}

#[test]
fn a_file_url_is_followed_like_the_repository_it_names() {
    let r = repos("main");
    let url = format!("file://{}", r.bare.canonicalize().unwrap().display());
    let source = open_follow(&url, r.opts()).unwrap();
    assert!(!source.is_remote() && source.watch_refs().is_some());
    assert_eq!(
        source.latest().unwrap(),
        git(&r.work, &["rev-parse", "HEAD"])
    );
    let id = r.push("convoy.yaml", "fleet: url\n", "main");
    assert_eq!(source.latest().unwrap(), id);
    assert_eq!(read(source.as_ref(), None, "convoy.yaml"), "fleet: url\n");
    assert!(open_follow("file://relative/x", r.opts()).is_err());
}

#[test]
fn a_working_tree_is_its_files_without_a_branch_and_the_branch_with_one() {
    let r = repos("main");
    write(&r.work, "convoy.yaml", "fleet: edited\n");
    let files = open_follow(r.work.to_str().unwrap(), r.opts()).unwrap();
    assert!(files.local_dir().is_some() && files.watch_refs().is_none());
    assert!(files.latest().unwrap().ends_with("-dirty"));
    let tree = files.tree(None).unwrap();
    assert_eq!(tree.key, None);
    assert_eq!(
        tree.tree.read("convoy.yaml").unwrap().unwrap(),
        b"fleet: edited\n"
    );
    // With `--path`, the files below it.
    let sub = open_follow(
        r.work.to_str().unwrap(),
        FollowOptions {
            path: Some("envs/prod".into()),
            ..r.opts()
        },
    )
    .unwrap();
    assert_eq!(read(sub.as_ref(), None, "convoy.yaml"), "fleet: prod\n");

    let branch = open_follow(
        r.work.to_str().unwrap(),
        FollowOptions {
            branch: Some("main".into()),
            ..r.opts()
        },
    )
    .unwrap();
    assert!(branch.local_dir().is_none());
    assert_eq!(
        branch.watch_refs().unwrap().canonicalize().unwrap(),
        r.work.join(".git").canonicalize().unwrap()
    );
    assert_eq!(
        branch.latest().unwrap(),
        git(&r.work, &["rev-parse", "HEAD"])
    );
    // The committed files, not the edit.
    assert_eq!(read(branch.as_ref(), None, "convoy.yaml"), "fleet: one\n");
    // `--repo` naming a folder inside the working tree: the fleet root is that folder.
    let inside = open_follow(
        r.work.join("envs").to_str().unwrap(),
        FollowOptions {
            branch: Some("main".into()),
            path: Some("prod".into()),
            ..r.opts()
        },
    )
    .unwrap();
    assert_eq!(read(inside.as_ref(), None, "convoy.yaml"), "fleet: prod\n");
}

/// A remote branch source for a "remote" that is a path: git fetches from it like from a URL.
fn remote(r: &Repos, opts: FollowOptions) -> RemoteBranch {
    RemoteBranch::new(r.bare.to_str().unwrap(), PathBuf::new(), opts).unwrap()
}

#[test]
fn a_remote_is_fetched_into_its_cache_and_read_from_there() {
    let r = repos("main");
    // No `--branch`: the remote's HEAD says which, once fetched.
    let source = remote(&r, r.opts());
    assert!(source.is_remote() && source.watch_refs().is_none());
    assert!(source.describe().contains("(default branch)"));
    assert!(source.latest().is_err(), "nothing fetched yet");
    source.fetch().unwrap();
    assert!(
        source.describe().ends_with("(branch main)"),
        "{}",
        source.describe()
    );
    // The cache: a bare repository named by the URL's hash, under the cache folder.
    let cache = source.cache().to_path_buf();
    assert_eq!(cache.parent().unwrap(), r.cache);
    let name = cache.file_name().unwrap().to_str().unwrap();
    assert!(
        name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );
    assert!(git2::Repository::open_bare(&cache).is_ok());

    let first = git(&r.work, &["rev-parse", "HEAD"]);
    assert_eq!(source.latest().unwrap(), first);
    assert_eq!(read(&source, None, "convoy.yaml"), "fleet: one\n");
    // A push is seen only after a fetch: `latest` reads the cache, never the network.
    let second = r.push("convoy.yaml", "fleet: two\n", "main");
    assert_eq!(source.latest().unwrap(), first);
    source.fetch().unwrap();
    assert_eq!(source.latest().unwrap(), second);
    assert_eq!(read(&source, None, "convoy.yaml"), "fleet: two\n");
    assert_eq!(read(&source, Some(&first), "convoy.yaml"), "fleet: one\n");
    // A second source on the same URL shares the cache; a given branch needs no HEAD.
    let again = remote(
        &r,
        FollowOptions {
            branch: Some("main".into()),
            ..r.opts()
        },
    );
    assert_eq!(again.cache(), cache);
    assert_eq!(again.latest().unwrap(), second);
    // A branch the remote lacks: the fetch fails, saying so.
    let missing = remote(
        &r,
        FollowOptions {
            branch: Some("nope".into()),
            ..r.opts()
        },
    );
    let e = missing.fetch().unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn specs_name_what_they_follow() {
    let r = repos("main");
    for remote in [
        "ssh://git@127.0.0.1:1/x.git",
        "git@127.0.0.1:x.git",
        "example.invalid:fleet",
        "https://127.0.0.1:1/x.git",
    ] {
        let s = open_follow(remote, r.opts()).unwrap();
        assert!(s.is_remote(), "{remote}");
        assert!(s.describe().starts_with(remote), "{}", s.describe());
    }
    for bad in ["ftp://x/y", "-oProxyCommand=x:y"] {
        assert!(
            matches!(
                open_follow(bad, r.opts()),
                Err(SourceError::Unsupported { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        open_follow("/no/such/dir", r.opts()),
        Err(SourceError::NotADirectory { .. })
    ));
}

#[test]
fn credentials_never_show_in_errors_or_descriptions() {
    let r = repos("main");
    let b64 = base64(b"user:SECRETPW");
    let source = open_follow(
        "https://user:SECRETPW@127.0.0.1:1/x.git",
        FollowOptions {
            branch: Some("main".into()),
            ..r.opts()
        },
    )
    .unwrap();
    let shown = source.describe();
    assert_eq!(shown, "https://127.0.0.1:1/x.git (branch main)");
    let e = source.fetch().unwrap_err().to_string();
    assert!(
        e.starts_with("cannot fetch https://127.0.0.1:1/x.git: "),
        "{e}"
    );
    assert!(!e.contains("SECRETPW") && !e.contains(&b64), "{e}");
    let mut secrets = source.secrets();
    secrets.sort();
    let mut expected = vec![b64.clone(), "SECRETPW".to_string()];
    expected.sort();
    assert_eq!(secrets, expected);
    eprintln!("{e}");

    // From a file: a token alone, rotated between fetches, re-read each time.
    let file = r.work.parent().unwrap().join("token");
    std::fs::write(&file, "TOKEN123\n\n").unwrap();
    let source = open_follow(
        "https://127.0.0.1:1/x.git",
        FollowOptions {
            branch: Some("main".into()),
            credentials_file: Some(file.clone()),
            ..r.opts()
        },
    )
    .unwrap();
    assert!(source
        .secrets()
        .contains(&base64(b"x-access-token:TOKEN123")));
    let e = source.fetch().unwrap_err().to_string();
    assert!(!e.contains("TOKEN123"), "{e}");
    std::fs::write(&file, "bob:hunter2").unwrap();
    assert!(source.secrets().contains(&"hunter2".to_string()));
}

#[test]
fn masking_covers_secrets_their_header_and_urls() {
    let secrets = Credential::parse("user:pw-123\n").unwrap().secrets();
    let text = format!(
        "fatal: Authentication failed for 'https://user:pw-123@h/x' header {} and pw-123",
        base64(b"user:pw-123")
    );
    let masked = mask(&text, &secrets);
    assert!(!masked.contains("pw-123") && !masked.contains(&base64(b"user:pw-123")));
    assert!(masked.contains("'https://***@h/x'"), "{masked}");
    // An ssh user is no secret; an http token in the userinfo is.
    assert_eq!(redact_userinfo("ssh://git@h/x"), "ssh://git@h/x");
    assert_eq!(
        redact_userinfo("see https://tok@h/x."),
        "see https://***@h/x."
    );
    assert_eq!(redact_userinfo("ssh://u:p@h/x"), "ssh://***@h/x");
}

#[test]
fn base64_and_credentials_parse() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"user:password"), "dXNlcjpwYXNzd29yZA==");
    let c = Credential::parse("ghp_abc \n").unwrap();
    assert_eq!(
        (c.user.as_str(), c.password.as_str()),
        ("x-access-token", "ghp_abc")
    );
    let c = Credential::parse("alice:s3:cr3t\n").unwrap();
    assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3:cr3t"));
    assert!(Credential::parse(" \n\n").is_none());
}

#[test]
fn authentication_failures_are_recognised() {
    assert!(auth_failed(
        "fatal: Authentication failed for 'https://h/x'"
    ));
    assert!(auth_failed(
        "fatal: could not read Username for 'https://h': terminal prompts disabled"
    ));
    assert!(auth_failed("git@h: Permission denied (publickey)."));
    assert!(auth_failed("The requested URL returned error: 403"));
    assert!(!auth_failed(
        "fatal: unable to access 'https://h/': Failed to connect"
    ));
}

#[test]
fn credentials_are_tried_a_bounded_number_of_times() {
    let mut guard = AuthGuard::default();
    let creds = [1u8; 32];
    for _ in 0..MAX_AUTH_FAILURES {
        assert!(guard.check(creds).is_ok());
        guard.record(false, true);
    }
    // Refused now, whatever happens, until the credentials change.
    assert_eq!(guard.check(creds), Err(MAX_AUTH_FAILURES));
    assert_eq!(guard.check(creds), Err(MAX_AUTH_FAILURES));
    assert!(guard.check([2u8; 32]).is_ok());
    // A network failure neither counts nor forgives; a success forgives.
    guard.record(false, true);
    guard.record(false, true);
    guard.record(false, false);
    assert!(guard.check([2u8; 32]).is_ok());
    guard.record(true, false);
    guard.record(false, true);
    guard.record(false, true);
    assert!(guard.check([2u8; 32]).is_ok());
}

/// An HTTP server on loopback that refuses every request with 401 and records each request's
/// `Authorization` header; stopped on drop.
struct Refusing {
    port: u16,
    seen: Arc<Mutex<Vec<Option<String>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Refusing {
    fn start() -> Refusing {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Option<String>>>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let mut auth = None;
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some(v) = l.strip_prefix("Authorization: ") {
                        auth = Some(v.to_string());
                    }
                    line.clear();
                }
                s.lock().unwrap().push(auth);
                let _ = conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Refusing {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn refused_credentials_are_sent_in_a_header_and_tried_three_times_until_they_change() {
    let r = repos("main");
    let server = Refusing::start();
    let file = r.work.parent().unwrap().join("credentials");
    std::fs::write(&file, "alice:first-pw\n").unwrap();
    let source = open_follow(
        &format!("http://127.0.0.1:{}/fleet.git", server.port),
        FollowOptions {
            branch: Some("main".into()),
            credentials_file: Some(file.clone()),
            ..r.opts()
        },
    )
    .unwrap();
    for _ in 0..MAX_AUTH_FAILURES {
        let e = source.fetch().unwrap_err().to_string();
        assert!(auth_failed(&e), "{e}");
        assert!(
            !e.contains("first-pw") && !e.contains(&base64(b"alice:first-pw")),
            "{e}"
        );
    }
    let sent = server.requests();
    assert!(!sent.is_empty());
    // Every request carried the header, and nothing asked for other credentials.
    let header = format!("Basic {}", base64(b"alice:first-pw"));
    assert!(
        sent.iter().all(|a| a.as_deref() == Some(header.as_str())),
        "{sent:?}"
    );
    // Refused now without asking the server.
    let e = source.fetch().unwrap_err().to_string();
    assert!(e.contains("authentication failed 3 times in a row"), "{e}");
    assert!(e.contains("credentials file"), "{e}");
    assert_eq!(server.requests().len(), sent.len());
    // New credentials: tried again.
    std::fs::write(&file, "alice:second-pw\n").unwrap();
    let e = source.fetch().unwrap_err().to_string();
    assert!(auth_failed(&e), "{e}");
    let now = server.requests();
    assert!(now.len() > sent.len());
    assert_eq!(
        now.last().unwrap().as_deref(),
        Some(format!("Basic {}", base64(b"alice:second-pw")).as_str())
    );
}

#[test]
fn git_runs_without_prompts_with_strict_ssh_and_credentials_only_in_its_environment() {
    let r = repos("main");
    let file = r.work.parent().unwrap().join("credentials");
    std::fs::write(&file, "alice:pw-in-env\n").unwrap();
    let source = RemoteBranch::new(
        "https://127.0.0.1:1/x.git",
        PathBuf::new(),
        FollowOptions {
            credentials_file: Some(file),
            ca_file: Some("ca.pem".into()),
            ..r.opts()
        },
    )
    .unwrap();
    let cred = Credential::parse("alice:pw-in-env").unwrap();
    let cmd = source.git(Some(&cred));
    let env: std::collections::BTreeMap<String, String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
        .collect();
    assert!(env["GIT_SSH_COMMAND"].ends_with(" -o BatchMode=yes -o StrictHostKeyChecking=yes"));
    assert_eq!(env["GIT_TERMINAL_PROMPT"], "0");
    assert_eq!(env["GIT_ASKPASS"], "/bin/false");
    assert_eq!(env["SSH_ASKPASS"], "/bin/false");
    let config: Vec<(String, String)> = (0..env["GIT_CONFIG_COUNT"].parse::<usize>().unwrap())
        .map(|i| {
            (
                env[&format!("GIT_CONFIG_KEY_{i}")].clone(),
                env[&format!("GIT_CONFIG_VALUE_{i}")].clone(),
            )
        })
        .collect();
    let header = format!("Authorization: Basic {}", base64(b"alice:pw-in-env"));
    assert!(config.contains(&("http.extraHeader".into(), header)));
    assert!(config.contains(&("credential.helper".into(), String::new())));
    assert!(config.iter().any(|(k, v)| k == "http.sslCAInfo"
        && Path::new(v).is_absolute()
        && v.ends_with("ca.pem")));
    assert!(cmd
        .get_args()
        .all(|a| !a.to_string_lossy().contains("pw-in-env")));
}

#[test]
fn an_ssh_remote_that_cannot_be_reached_says_why_in_one_line() {
    let r = repos("main");
    let source = open_follow(
        "ssh://git@127.0.0.1:1/x.git",
        FollowOptions {
            branch: Some("main".into()),
            ..r.opts()
        },
    )
    .unwrap();
    let e = source.fetch().unwrap_err().to_string();
    assert!(
        e.starts_with("cannot fetch ssh://git@127.0.0.1:1/x.git: "),
        "{e}"
    );
    assert!(e.contains("port 1"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}
