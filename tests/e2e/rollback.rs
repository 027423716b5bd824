//! `convoy rollback`: a revert commit pushed into a bare repository that a daemon follows (the
//! daemon applies it like any other commit, the fleet returns to the old spec, and the history
//! shows the bad commit, its rollback and the revert, also after a restart), a revert
//! committed and checked out in a working tree (the next `apply` records it clean), and the
//! refusals that change nothing: a dirty tree, a branch that moved while the rollback ran,
//! nothing to revert, a bare repository without `--push`.
//!
//! The fleet is the local engine; the repositories are real git repositories in the test's
//! directory; the daemon is the real binary.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::gitops::{applied, fleet_files, status, token, version_is, wait_d, Repo};
use crate::harness::*;

/// Two replicas behind a health check; `start` runs before the replica reports healthy (an
/// `exit 3` there is a bad version). A failed batch rolls back.
fn app(version: &str, start: &str) -> String {
    format!(
        r#"services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "{start} touch /tmp/up; exec sleep 3600"]
    stop_grace_period: 1s
    environment:
      VERSION: "{version}"
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/up"]
      interval: 500ms
      timeout: 2s
      retries: 2
      start_period: 5s
    deploy:
      replicas: 2
      update_config: {{parallelism: 1, monitor: 1s, failure_action: rollback}}
    x-convoy:
      progress_deadline: 4s
"#
    )
}

/// `convoy rollback ARGS` with its state in the test's directory.
fn rollback(t: &TestFleet, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("--state-dir")
        .arg(t.path().join("state"))
        .arg("rollback")
        .args(args)
        .env("NO_COLOR", "1")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .env_remove("RUST_LOG")
        .output()
        .expect("run convoy rollback");
    Run::from(out)
}

/// Waits for the daemon's status to satisfy `cond`; on timeout shows the last status and the
/// daemon's log.
fn wait_until(
    d: &Daemon,
    api: &str,
    header: &str,
    what: &str,
    within: Duration,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_d(d, what, within, || {
        last = status(api, header);
        let ok = cond(&last);
        if !ok && std::env::var_os("CONVOY_TEST_TRACE").is_some() {
            eprintln!("{last}");
        }
        ok
    });
    last
}

fn ids(t: &TestFleet) -> Vec<String> {
    (1..=2)
        .map(|slot| t.id_of(&t.cname("web", "app", slot)))
        .collect()
}

#[test]
fn a_pushed_rollback_returns_a_followed_fleet_to_the_old_spec() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    let (token_file, header) = token(&t);
    let stack = format!("stacks/{}/compose.yaml", t.stack("web"));
    repo.write("convoy.yaml", &fleet_files(&t, ""));
    repo.write(&stack, &app("1", ""));
    let c1 = repo.push("web v1", &[]);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    wait_until(
        &d,
        &api,
        &header,
        "v1 applied",
        Duration::from_secs(60),
        |s| applied(s) == c1 && s["last_pass"]["converged"] == true,
    );
    let v1 = ids(&t);

    // A version that never becomes healthy: rolled back by the daemon, quarantined.
    repo.write(&stack, &app("2", "exit 3;"));
    let c2 = repo.push("web v2: breaks", &[]);
    let s = wait_until(
        &d,
        &api,
        &header,
        "v2 rolled back",
        Duration::from_secs(60),
        |s| applied(s) == c2 && !s["quarantined"].as_array().is_none_or(Vec::is_empty),
    );
    assert_eq!(ids(&t), v1, "the old replicas run again: {s}");

    // A dry run shows the way back and writes nothing.
    let bare = repo.url();
    let dry = rollback(&t, &["--repo", &bare, "--dry-run"]).outcome(Outcome::Written);
    assert!(
        dry.stdout.contains(&format!("back to {}", &c1[..12])),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("nothing was written"), "{}", dry.stdout);
    assert_eq!(git(&repo.bare, &["rev-parse", "main"]), c2);

    // The last commit that applied is read from the containers' labels.
    let run = rollback(
        &t,
        &["--repo", &bare, "--push", "-m", "v2 never became healthy"],
    )
    .outcome(Outcome::Written);
    let new = git(&repo.bare, &["rev-parse", "main"]);
    assert!(run.stdout.contains(&new), "{}", run.stdout);
    assert_eq!(git(&repo.bare, &["rev-parse", "main^"]), c2);
    assert_eq!(
        git(&repo.bare, &["rev-parse", "main^{tree}"]),
        git(&repo.bare, &["rev-parse", &format!("{c1}^{{tree}}")]),
        "the revert has v1's tree"
    );
    let message = git(&repo.bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with(&format!("Roll back to {}: web v1", &c1[..12])),
        "{message}"
    );
    assert!(message.contains("v2 never became healthy"), "{message}");
    assert!(
        message.contains(&format!("{} web v2: breaks", &c2[..12])),
        "{message}"
    );
    assert_eq!(
        git(
            &repo.bare,
            &[
                "log",
                "-1",
                "--format=%(trailers:key=Convoy-Rollback-To,valueonly)",
                "main"
            ]
        ),
        c1
    );

    // The daemon applies it like any other commit: the quarantine goes, nothing is replaced.
    let s = wait_until(
        &d,
        &api,
        &header,
        "the revert applied",
        Duration::from_secs(30),
        |s| applied(s) == new && s["quarantined"].as_array().is_some_and(Vec::is_empty),
    );
    assert_eq!(s["last_pass"]["converged"], true, "{s}");
    assert_eq!(ids(&t), v1, "the v1 replicas keep running");
    wait_d(&d, "v1 running", Duration::from_secs(5), || {
        version_is(&t, &t.cname("web", "app", 1), "1")
    });

    // Reverted already: nothing left to revert, by default or to the tip.
    let again = rollback(&t, &["--repo", &bare, "--push"]).outcome(Outcome::Refused);
    assert!(
        again.stderr.contains("nothing to revert"),
        "{}",
        again.stderr
    );
    rollback(&t, &["--repo", &bare, "--push", "--to", "main"]).outcome(Outcome::Refused);
    // A bare repository cannot be checked out: without `--push` it is an invalid call.
    rollback(&t, &["--repo", &bare, "--to", &c2]).outcome(Outcome::Invalid);
    assert_eq!(git(&repo.bare, &["rev-parse", "main"]), new);
    assert_eq!(status(&api, &header)["applied_commit"], new.as_str());

    // The history tells the story: v1 applied, v2 rolled back, the revert in force; also
    // after a restart, and without recording the revert twice.
    let story = |h: &[serde_json::Value]| {
        let has = |commit: &str, result: &str| {
            h.iter()
                .filter(|e| e["commit"] == commit && e["result"] == result)
                .count()
        };
        assert_eq!(has(&c1, "applied"), 1, "{h:?}");
        assert_eq!(has(&c2, "rolled_back"), 1, "{h:?}");
        assert_eq!(
            h.iter().filter(|e| e["commit"] == new.as_str()).count(),
            1,
            "{h:?}"
        );
        let revert = h.iter().find(|e| e["commit"] == new.as_str()).unwrap();
        assert!(
            revert["message"]
                .as_str()
                .unwrap_or_default()
                .contains("Convoy-Rollback-To:"),
            "{revert}"
        );
        assert!(
            h.iter().position(|e| e["commit"] == new.as_str())
                < h.iter().position(|e| e["commit"] == c2.as_str()),
            "newest first: {h:?}"
        );
    };
    story(&history(&t));
    assert_eq!(d.stop(), 0);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    wait_until(
        &d,
        &api,
        &header,
        "the revert applied after a restart",
        Duration::from_secs(30),
        |s| applied(s) == new && s["last_pass"]["converged"] == true,
    );
    story(&history(&t));
    assert_eq!(d.stop(), 0);
}

/// `convoy history --output json` of the test's state directory: its entries.
fn history(t: &TestFleet) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("--state-dir")
        .arg(t.path().join("state"))
        .args(["history", "--output", "json", "--limit", "100"])
        .output()
        .expect("convoy history");
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["version"], 1);
    doc["entries"].as_array().cloned().unwrap_or_default()
}

/// A pre-receive hook that moves `main` to `to` while a push waits: the push's
/// compare-and-swap then fails, as when someone pushed first.
fn move_branch_during_pushes(bare: &Path, to: &str) {
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\nunset GIT_QUARANTINE_PATH\ngit update-ref refs/heads/main {to}\ncat >/dev/null\nexit 0\n"),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&hook).status().unwrap();
}

#[test]
fn a_working_tree_gets_the_revert_checked_out_and_refusals_change_nothing() {
    if !docker_available() {
        return;
    }
    let mut t = TestFleet::new();
    let dir = t.path().to_string_lossy().into_owned();
    // `apply` records its passes in the history that `rollback` reads.
    let state = t.path().join("state").to_string_lossy().into_owned();
    t.env("CONVOY_STATE_DIR", &state);
    std::fs::write(t.path().join(".gitignore"), "state/\n").unwrap();
    git(t.path(), &["init", "-q", "-b", "main"]);
    t.compose("web", &app("1", ""));
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-qm", "web v1"]);
    let c1 = git(t.path(), &["rev-parse", "HEAD"]);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    t.compose("web", &app("2", ""));
    git(t.path(), &["commit", "-qam", "web v2"]);
    let c2 = git(t.path(), &["rev-parse", "HEAD"]);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let name = t.cname("web", "app", 1);
    assert!(version_is(&t, &name, "2"));

    // Uncommitted changes: refused, nothing changed.
    t.write("notes.txt", "not committed\n");
    let run = rollback(&t, &["--repo", &dir]).outcome(Outcome::Refused);
    assert!(run.stderr.contains("uncommitted changes"), "{}", run.stderr);
    assert!(run.stderr.contains("notes.txt"), "{}", run.stderr);
    assert_eq!(git(t.path(), &["rev-parse", "HEAD"]), c2);
    std::fs::remove_file(t.path().join("notes.txt")).unwrap();

    // The revert is committed and checked out: the next apply runs it as a clean commit.
    let run = rollback(&t, &["--repo", &dir]).outcome(Outcome::Written);
    assert!(
        run.stdout.contains(&format!("back to {}", &c1[..12])),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("checked out"), "{}", run.stdout);
    let new = git(t.path(), &["rev-parse", "HEAD"]);
    assert_eq!(git(t.path(), &["rev-parse", "HEAD^"]), c2);
    assert_eq!(git(t.path(), &["status", "--porcelain"]), "");
    let file = std::fs::read_to_string(
        t.path()
            .join("stacks")
            .join(t.stack("web"))
            .join("compose.yaml"),
    )
    .unwrap();
    assert_eq!(file, app("1", ""));
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(version_is(&t, &name, "1"));
    let label = t.inspect(&name, "{{index .Config.Labels \"convoy.commit\"}}");
    assert_eq!(label, new[..12], "the revert's commit, not -dirty");

    // Nothing to revert to the tip's own tree.
    rollback(&t, &["--repo", &dir, "--to", "HEAD"]).outcome(Outcome::Refused);
    assert_eq!(git(t.path(), &["rev-parse", "HEAD"]), new);

    // A revert that removes a whole stack: it says that a daemon's guard will hold it.
    t.compose("db", &app("1", ""));
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-qm", "add db"]);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let run = rollback(&t, &["--repo", &dir, "--to", &new, "--dry-run"]).outcome(Outcome::Written);
    assert!(
        run.stdout.contains("deletion guard") && run.stdout.contains(&t.stack("db")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("--allow-prune"), "{}", run.stdout);

    // A branch that moves while the revert is pushed: refused, the server's branch kept.
    let server = t.path().join("server.git");
    git(
        t.path(),
        &["clone", "-q", "--bare", &dir, server.to_str().unwrap()],
    );
    move_branch_during_pushes(&server, &c1);
    let run = rollback(
        &t,
        &["--repo", server.to_str().unwrap(), "--push", "--to", &c2],
    )
    .outcome(Outcome::Refused);
    assert!(run.stderr.contains("moved"), "{}", run.stderr);
    assert_eq!(
        git(&server, &["rev-parse", "main"]),
        c1,
        "the hook's move stands"
    );
}
