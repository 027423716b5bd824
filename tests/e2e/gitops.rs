//! `convoy daemon` following a git branch: pushes into a local bare repository (the ref watch),
//! an HTTPS remote with a webhook, an `ssh://` remote on a fleet host by polling (and a
//! `convoy rollback --push` into it); a broken
//! commit held with its located error in the API and metrics; the deletion guard and its
//! release; unsigned commits held; a newer commit cancelling a gate wait; `kill -9` trials.
//!
//! Every daemon runs the real binary against the local engine, with its API on a free loopback
//! port; HTTP goes through `curl`, metrics through the Prometheus Python client's parser.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fleet::Hosts;
use crate::gitserver::{push_commit, HttpsGit, SshGit};
use crate::harness::*;

/// A bare repository on this machine and a work clone that commits and pushes to it.
pub(crate) struct Repo {
    _dir: tempfile::TempDir,
    pub(crate) bare: PathBuf,
    pub(crate) work: PathBuf,
}

impl Repo {
    pub(crate) fn new() -> Repo {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("fleet.git");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "fleet.git"],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repo {
            _dir: dir,
            bare,
            work,
        }
    }

    pub(crate) fn url(&self) -> String {
        self.bare.to_string_lossy().into_owned()
    }

    pub(crate) fn write(&self, rel: &str, contents: &str) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, contents).unwrap();
    }

    pub(crate) fn remove(&self, rel: &str) {
        std::fs::remove_dir_all(self.work.join(rel)).unwrap();
    }

    /// Commits everything (with extra `git commit` arguments, a signature say) and pushes;
    /// returns the full commit id.
    pub(crate) fn push(&self, message: &str, commit_args: &[&str]) -> String {
        git(&self.work, &["add", "-A"]);
        let mut args = vec!["commit", "-q", "--allow-empty", "-m", message];
        args.extend_from_slice(commit_args);
        git(&self.work, &args);
        git(
            &self.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

/// The fleet file and one stack of `app` replicas whose environment says `version`.
pub(crate) fn fleet_files(t: &TestFleet, extra: &str) -> String {
    format!("fleet: {}\n{extra}", t.id)
}

fn app(replicas: u32, version: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    environment:\n      VERSION: \"{version}\"\n    deploy:\n      replicas: {replicas}\n      update_config: {{parallelism: 0, monitor: 0s}}\n"
    )
}

/// An API token file in the test's directory, and a curl header file carrying it.
pub(crate) fn token(t: &TestFleet) -> (String, String) {
    let token = format!("tok-{}-secret", t.id);
    let file = t.path().join("api-token");
    std::fs::write(&file, format!("{token}\n")).unwrap();
    let header = t.path().join("api-header");
    std::fs::write(&header, format!("Authorization: Bearer {token}\n")).unwrap();
    (
        file.to_string_lossy().into_owned(),
        header.to_string_lossy().into_owned(),
    )
}

/// `curl` to the daemon: (HTTP status, body).
pub(crate) fn http(method: &str, url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}", url])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub(crate) fn status(api: &str, header: &str) -> Value {
    let (code, body) = http(
        "GET",
        &format!("{api}/api/v1/status"),
        &["-H", &format!("@{header}")],
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

pub(crate) fn wait_status(
    api: &str,
    header: &str,
    what: &str,
    within: Duration,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    wait_for(what, within, || {
        last = status(api, header);
        cond(&last)
    });
    last
}

pub(crate) fn applied(v: &Value) -> &str {
    v["applied_commit"].as_str().unwrap_or_default()
}

/// `/metrics`, checked by the Prometheus client's own parser; the text.
fn metrics(api: &str) -> String {
    let (code, body) = http("GET", &format!("{api}/metrics"), &[]);
    assert_eq!(code, 200, "{body}");
    let parse = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\nprint(len(list(f(sys.stdin.read()))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .expect("python3 with prometheus_client (scripts/ensure-docker installs it)");
    assert!(
        parse.status.success(),
        "the metrics do not parse: {}\n{body}",
        String::from_utf8_lossy(&parse.stderr)
    );
    body
}

/// The value of one sample line of the metrics text (`name{labels}`), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `wait_for`, with the daemon's log in the message when it times out.
pub(crate) fn wait_d(d: &Daemon, what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; the daemon's log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn env_of(t: &TestFleet, name: &str) -> String {
    t.inspect(name, "{{range .Config.Env}}{{println .}}{{end}}")
}

pub(crate) fn version_is(t: &TestFleet, name: &str, v: &str) -> bool {
    docker_try(&["inspect", "-f", "{{.State.Running}}", name]).as_deref() == Some("true")
        && env_of(t, name).contains(&format!("VERSION={v}"))
}

#[test]
fn a_push_deploys_and_a_broken_commit_changes_nothing_until_a_fix() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    let (token_file, header) = token(&t);
    repo.write("convoy.yaml", &fleet_files(&t, ""));
    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        &app(1, "1"),
    );
    let c1 = repo.push("v1", &[]);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    let name = t.cname("web", "app", 1);
    wait_d(&d, "v1 running", Duration::from_secs(30), || {
        version_is(&t, &name, "1")
    });
    let s = wait_status(&api, &header, "v1 applied", Duration::from_secs(10), |s| {
        applied(s) == c1
    });
    assert_eq!(s["version"], 1);

    // A push is a pass at once: the ref watch, no polling.
    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        &app(1, "2"),
    );
    let c2 = repo.push("v2", &[]);
    wait_d(&d, "v2 running", Duration::from_secs(20), || {
        version_is(&t, &name, "2")
    });
    assert!(d.log().contains("reason=new commit"), "{}", d.log());
    let id = t.id_of(&name);

    // A broken commit: held with its located error; nothing changes.
    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        "services:\n  app:\n    image: [broken\n",
    );
    let c3 = repo.push("broken", &[]);
    let s = wait_status(
        &api,
        &header,
        "the broken commit pending",
        Duration::from_secs(15),
        |s| s["pending_commit"]["commit"] == c3.as_str(),
    );
    assert_eq!(applied(&s), c2, "the last good commit stays applied: {s}");
    assert_eq!(s["pending_commit"]["reason"], "invalid_commit", "{s}");
    let e = &s["pending_commit"]["errors"][0];
    assert!(
        e["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("compose.yaml")
            && e["line"].as_u64() > Some(0),
        "a located error: {s}"
    );
    let m = metrics(&api);
    assert_eq!(sample(&m, "convoy_commit_errors_total"), 1.0, "{m}");
    assert_eq!(
        sample(
            &m,
            &format!("convoy_pending_commit{{commit=\"{c3}\",reason=\"invalid_commit\"}}")
        ),
        1.0,
        "the held commit in full in the metrics: {m}"
    );
    assert!(
        m.contains(&c2),
        "the applied commit in full in the metrics: {m}"
    );
    assert_eq!(t.id_of(&name), id, "nothing was replaced");

    // A commit with the same tree is not tried again (it becomes the pending commit, the error
    // count stays); a fix applies.
    let c4 = repo.push("nothing changed", &[]);
    wait_status(
        &api,
        &header,
        "the same tree pending under its new commit",
        Duration::from_secs(15),
        |s| s["pending_commit"]["commit"] == c4.as_str(),
    );
    assert_eq!(sample(&metrics(&api), "convoy_commit_errors_total"), 1.0);
    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        &app(1, "3"),
    );
    let c5 = repo.push("fix", &[]);
    wait_d(&d, "v3 running", Duration::from_secs(20), || {
        version_is(&t, &name, "3")
    });
    let s = wait_status(
        &api,
        &header,
        "the fix applied",
        Duration::from_secs(10),
        |s| applied(s) == c5,
    );
    assert!(s["pending_commit"].is_null(), "{s}");
    let m = metrics(&api);
    assert_eq!(
        sample(&m, "convoy_commit_errors_total"),
        1.0,
        "the broken content was refused once, not again for the commit that kept it: {m}"
    );
    assert_eq!(d.stop(), 0, "SIGTERM exits cleanly");
}

#[test]
fn an_https_remote_fetches_on_a_verified_webhook_only_and_never_shows_its_credentials() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let server = HttpsGit::start();
    server.create_repo("fleet");
    let url = server.url("fleet");
    let stack_file = format!("stacks/{}/compose.yaml", t.stack("web"));
    let fleet = fleet_files(&t, "");
    push_commit(
        &url,
        &server.push_env(),
        "main",
        &[("convoy.yaml", &fleet), (&stack_file, &app(1, "1"))],
        "v1",
    );
    let (token_file, header) = token(&t);
    let secret = t.path().join("hook-secret");
    std::fs::write(&secret, "hook-secret-value\n").unwrap();
    let creds = server.credentials_file_token();
    let ca = server.ca_file();
    let d = Daemon::follow(
        &t,
        &url,
        &[
            "--api-token-file",
            &token_file,
            "--webhook-secret-file",
            secret.to_str().unwrap(),
            "--git-credentials-file",
            creds.to_str().unwrap(),
            "--git-ca-file",
            ca.to_str().unwrap(),
            "--poll-interval",
            "3600",
        ],
        &[],
    );
    let api = d.api();
    let name = t.cname("web", "app", 1);
    wait_d(&d, "v1 running", Duration::from_secs(30), || {
        version_is(&t, &name, "1")
    });
    let fetches = sample(&metrics(&api), "convoy_git_fetches_total");

    let c2 = push_commit(
        &url,
        &server.push_env(),
        "main",
        &[(&stack_file, &app(1, "2"))],
        "v2",
    );
    let body = r#"{"ref":"refs/heads/main"}"#;
    // A bad signature: 401, and no fetch.
    let (code, _) = http(
        "POST",
        &format!("{api}/hooks/github"),
        &[
            "-H",
            "X-GitHub-Event: push",
            "-H",
            "X-Hub-Signature-256: sha256=00",
            "--data",
            body,
        ],
    );
    assert_eq!(code, 401);
    // A good one: 202 and a pass.
    let sig = hmac_sha256_hex(b"hook-secret-value", body.as_bytes());
    let started = Instant::now();
    let (code, _) = http(
        "POST",
        &format!("{api}/hooks/github"),
        &[
            "-H",
            "X-GitHub-Event: push",
            "-H",
            &format!("X-Hub-Signature-256: sha256={sig}"),
            "--data",
            body,
        ],
    );
    assert_eq!(code, 202);
    wait_d(&d, "v2 running", Duration::from_secs(20), || {
        version_is(&t, &name, "2")
    });
    eprintln!("webhook to v2 running: {:?}", started.elapsed());
    let s = wait_status(&api, &header, "v2 applied", Duration::from_secs(10), |s| {
        applied(s) == c2
    });
    let m = metrics(&api);
    assert_eq!(
        sample(&m, "convoy_git_fetches_total"),
        fetches + 1.0,
        "exactly one fetch: the verified webhook's, not the refused one's: {m}"
    );
    assert!(
        m.contains("convoy_webhooks_total{provider=\"github\",result=\"unauthorized\"} 1"),
        "{m}"
    );

    // No credential anywhere: the log, the status, the metrics.
    let log = d.log();
    for secret in server.secret_values() {
        assert!(!log.contains(&secret), "a credential in the daemon's log");
        assert!(
            !s.to_string().contains(&secret),
            "a credential in the status"
        );
        assert!(!m.contains(&secret), "a credential in the metrics");
    }
}

/// HMAC-SHA256 by `openssl`, as a webhook sender computes it.
fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-hmac",
            std::str::from_utf8(key).unwrap(),
            "-r",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_ssh_remote_on_a_fleet_host_is_polled_with_strict_host_keys() {
    if !docker_available() {
        return;
    }
    let Some(hosts) = Hosts::get() else {
        return;
    };
    let t = TestFleet::new();
    let remote = SshGit::on_fleet_host(&hosts, 2);
    let env = remote.git_env();
    let stack_file = format!("stacks/{}/compose.yaml", t.stack("web"));
    let fleet = fleet_files(&t, "");
    let c1 = push_commit(
        &remote.url(),
        &env,
        "main",
        &[("convoy.yaml", &fleet), (&stack_file, &app(1, "1"))],
        "v1",
    );
    // The daemon adds batch mode and strict checking itself.
    let ssh = remote.git_ssh_command();
    let d = Daemon::follow(
        &t,
        &remote.url(),
        &["--poll-interval", "1"],
        &[("GIT_SSH_COMMAND", ssh.as_str())],
    );
    let name = t.cname("web", "app", 1);
    wait_d(&d, "v1 running", Duration::from_secs(30), || {
        version_is(&t, &name, "1")
    });
    push_commit(
        &remote.url(),
        &env,
        "main",
        &[(&stack_file, &app(1, "2"))],
        "v2",
    );
    wait_d(
        &d,
        "v2 running, found by polling",
        Duration::from_secs(20),
        || version_is(&t, &name, "2"),
    );

    // `convoy rollback` over the same remote, with the same ssh: the revert is pushed, and the
    // daemon polls it in like any other commit.
    let rollback = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("--state-dir")
        .arg(t.path().join("rollback-state"))
        .args(["rollback", "--repo", &remote.url(), "--push", "--to", &c1])
        .env("GIT_SSH_COMMAND", &ssh)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env_remove("RUST_LOG")
        .output()
        .expect("convoy rollback");
    assert!(rollback.status.success(), "{rollback:?}");
    wait_d(
        &d,
        "v1 running again, from the revert",
        Duration::from_secs(20),
        || version_is(&t, &name, "1"),
    );
    let trailer = git(
        remote.repo_path(),
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Convoy-Rollback-To,valueonly)",
            "main",
        ],
    );
    assert_eq!(trailer, c1);
    drop(d);

    // A host key the daemon does not know is refused: nothing is fetched, and it says why.
    let empty = t.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let t2 = TestFleet::new();
    let ssh = remote.git_ssh_command_with_known_hosts(&empty);
    let d = Daemon::follow(
        &t2,
        &remote.url(),
        &["--poll-interval", "1"],
        &[("GIT_SSH_COMMAND", ssh.as_str())],
    );
    wait_d(
        &d,
        "the unknown host key refused",
        Duration::from_secs(20),
        || d.log().contains("Host key verification failed"),
    );
    assert!(
        t2.containers().is_empty(),
        "nothing runs from an unverified remote"
    );
}

#[test]
fn the_deletion_guard_holds_a_mass_removal_until_sync_allow_prune() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    let (token_file, header) = token(&t);
    repo.write("convoy.yaml", &fleet_files(&t, ""));
    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        &app(2, "1"),
    );
    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("db")),
        &app(1, "1"),
    );
    let c1 = repo.push("two stacks", &[]);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    wait_for("three replicas", Duration::from_secs(30), || {
        t.running().len() == 3
    });
    wait_status(&api, &header, "c1 applied", Duration::from_secs(10), |s| {
        applied(s) == c1
    });

    repo.remove(&format!("stacks/{}", t.stack("db")));
    let c2 = repo.push("remove db", &[]);
    let s = wait_status(
        &api,
        &header,
        "the removal held",
        Duration::from_secs(15),
        |s| s["pending_commit"]["commit"] == c2.as_str(),
    );
    assert_eq!(s["pending_commit"]["reason"], "deletion_guard", "{s}");
    assert_eq!(applied(&s), c1);
    assert_eq!(t.running().len(), 3, "nothing removed while held");

    // A restart does not release it: with nothing in force yet, the guard still counts.
    assert_eq!(d.stop(), 0);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    let s = wait_status(
        &api,
        &header,
        "the removal held after a restart",
        Duration::from_secs(20),
        |s| s["pending_commit"]["commit"] == c2.as_str(),
    );
    assert_eq!(s["pending_commit"]["reason"], "deletion_guard", "{s}");
    assert_eq!(t.running().len(), 3, "nothing removed by the restart");

    // A client without the token is refused; with it, the release.
    let sync = |extra: &[&str]| {
        let mut args = vec!["sync", "--daemon", api.as_str()];
        args.extend_from_slice(extra);
        Run::from(
            Command::new(env!("CARGO_BIN_EXE_convoy"))
                .args(&args)
                .env_remove("CONVOY_API_TOKEN_FILE")
                .output()
                .unwrap(),
        )
    };
    let wrong = t.path().join("wrong-token");
    std::fs::write(&wrong, "nope\n").unwrap();
    sync(&["--api-token-file", wrong.to_str().unwrap(), "--allow-prune"]).outcome(Outcome::Invalid);
    sync(&["--api-token-file", &token_file, "--allow-prune"]).outcome(Outcome::Accepted);
    wait_for("db removed", Duration::from_secs(20), || {
        t.running().len() == 2
    });
    let s = wait_status(&api, &header, "c2 applied", Duration::from_secs(10), |s| {
        applied(s) == c2
    });
    assert!(s["pending_commit"].is_null(), "{s}");
}

#[test]
fn an_unsigned_commit_is_held_under_require_signed() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    let (token_file, header) = token(&t);
    let key = t.path().join("signing_key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(out.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let signers = t.path().join("allowed_signers");
    std::fs::write(&signers, format!("signer@example.invalid {public}")).unwrap();
    let key_arg = format!("user.signingkey={}", key.display());
    let sign = |repo: &Repo, message: &str| {
        git(&repo.work, &["add", "-A"]);
        git(
            &repo.work,
            &[
                "-c",
                "gpg.format=ssh",
                "-c",
                &key_arg,
                "-c",
                "user.email=signer@example.invalid",
                "commit",
                "-q",
                "-S",
                "-m",
                message,
            ],
        );
        git(
            &repo.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
        git(&repo.work, &["rev-parse", "HEAD"])
    };
    repo.write("convoy.yaml", &fleet_files(&t, ""));
    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        &app(1, "1"),
    );
    let c1 = sign(&repo, "signed v1");
    let d = Daemon::follow(
        &t,
        &repo.url(),
        &[
            "--api-token-file",
            &token_file,
            "--require-signed",
            "--allowed-signers",
            signers.to_str().unwrap(),
        ],
        &[],
    );
    let api = d.api();
    let name = t.cname("web", "app", 1);
    wait_d(&d, "v1 running", Duration::from_secs(30), || {
        version_is(&t, &name, "1")
    });
    wait_status(&api, &header, "c1 applied", Duration::from_secs(10), |s| {
        applied(s) == c1
    });

    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        &app(1, "2"),
    );
    let c2 = repo.push("unsigned v2", &[]);
    let s = wait_status(
        &api,
        &header,
        "the unsigned commit held",
        Duration::from_secs(15),
        |s| s["pending_commit"]["commit"] == c2.as_str(),
    );
    assert_eq!(s["pending_commit"]["reason"], "unsigned_commit", "{s}");
    assert!(version_is(&t, &name, "1"), "nothing of it runs");

    repo.write(
        &format!("stacks/{}/compose.yaml", t.stack("web")),
        &app(1, "3"),
    );
    let c3 = sign(&repo, "signed v3");
    wait_d(&d, "v3 running", Duration::from_secs(20), || {
        version_is(&t, &name, "3")
    });
    wait_status(&api, &header, "c3 applied", Duration::from_secs(10), |s| {
        applied(s) == c3
    });
}

#[test]
fn a_newer_commit_cancels_a_gate_wait_and_lands_at_once() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    repo.write("convoy.yaml", &fleet_files(&t, "dependency_timeout: 60s\n"));
    // The gated stack, written into the repository rather than the test's directory.
    gated_stack(&t, "gate");
    let file = format!("stacks/{}/compose.yaml", t.stack("gate"));
    repo.write(
        &file,
        &std::fs::read_to_string(t.path().join(&file)).unwrap(),
    );
    repo.push("gated", &[]);
    let d = Daemon::follow(&t, &repo.url(), &[], &[]);
    wait_for_the_gate(&t, &d, "gate");
    // The fix: app no longer waits for db to be healthy.
    repo.write(
        &file,
        &format!("services:\n  db:\n    image: {IMAGE}\n    command: sleep 3600\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    depends_on:\n      db:\n        condition: service_started\n"),
    );
    let pushed = Instant::now();
    repo.push("fix the gate", &[]);
    let app = t.cname("gate", "app", 1);
    wait_for("app running after the fix", Duration::from_secs(20), || {
        docker_try(&["inspect", "-f", "{{.State.Running}}", &app]).as_deref() == Some("true")
    });
    assert!(
        pushed.elapsed() < Duration::from_secs(20),
        "the fix landed after {:?}, not after the 60 s gate",
        pushed.elapsed()
    );
    assert!(
        d.log().contains("a newer desired state arrived"),
        "{}",
        d.log()
    );
}

#[test]
fn kill_9_at_random_points_then_a_restart_converges_exactly() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    // The trials alternate between 8 and 12 replicas: the guard would hold the scale-down.
    repo.write("convoy.yaml", &fleet_files(&t, "prune_guard: off\n"));
    let file = format!("stacks/{}/compose.yaml", t.stack("big"));
    let mut seed = u64::from(std::process::id()) * 2_654_435_761 % 1_000_003 + 1;
    eprintln!("kill -9 trials, seed {seed}");
    let mut expected = 0;
    for trial in 1..=10u32 {
        expected = if trial % 2 == 0 { 8 } else { 12 };
        repo.write(&file, &app(expected, &trial.to_string()));
        repo.push(&format!("trial {trial}"), &[]);
        let mut d = Daemon::follow(&t, &repo.url(), &["--listen", "off"], &[]);
        // A random point of the pass: after some of its steps, or before any.
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let steps = (seed >> 33) % 8;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && (d.log().matches(" done").count() as u64) < steps
            && !d.log().contains("pass ended")
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        d.kill9();
    }
    // The restart converges to exactly the last commit: no duplicate, no leftover.
    let d = Daemon::follow(&t, &repo.url(), &["--listen", "off"], &[]);
    let want: Vec<String> = (1..=expected).map(|i| t.cname("big", "app", i)).collect();
    let mut sorted = want.clone();
    sorted.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(t.containers() == sorted
        && t.running() == sorted
        && want.iter().all(|n| version_is(&t, n, "10")))
    {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for exactly the last commit's replicas: {:?} (running {:?}); daemon log:\n{}",
            t.containers(),
            t.running(),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(d);
    // Independent of the daemon: `convoy diff` on the same files finds nothing to do.
    let diff = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["diff", "--repo"])
        .arg(&repo.work)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run::from(diff).outcome(Outcome::InSync);
}

#[test]
fn a_listen_address_in_use_and_a_bad_config_exit_2() {
    let t = TestFleet::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut d = Daemon::follow(&t, &t.path().to_string_lossy(), &["--listen", &addr], &[]);
    assert_eq!(d.wait(Duration::from_secs(20)), 2, "{}", d.log());
    let config = t.path().join("daemon.yaml");
    std::fs::write(&config, "repo: .\npoll-intervall: 5\n").unwrap();
    let mut d = Daemon::follow(
        &t,
        &t.path().to_string_lossy(),
        &["--config", config.to_str().unwrap()],
        &[],
    );
    assert_eq!(d.wait(Duration::from_secs(20)), 2);
    assert!(
        d.log().contains("daemon.yaml:2"),
        "a located error: {}",
        d.log()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["sync"])
        .env_remove("CONVOY_API_TOKEN_FILE")
        .output()
        .unwrap();
    let run = Run::from(out).outcome(Outcome::Invalid);
    assert!(run.stderr.contains("convoy apply"), "{}", run.stderr);
}
