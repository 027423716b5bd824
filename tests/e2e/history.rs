//! The deploy history: a daemon following a bare repository records what it applied and what
//! it held, a restart keeps both (and does not record the held commit twice), `convoy history`
//! reads the file while the daemon runs and `GET /api/v1/history` answers the same; a corrupt
//! `history.db` is moved aside with a warning and the daemon converges all the same; `apply`
//! records its pass and a commit it refuses.
//!
//! The local engine only; HTTP through `curl`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::gitops::Repo;
use crate::harness::*;

/// Commits as Ann (the history records the author) and pushes.
fn push_as_ann(repo: &Repo, message: &str) -> String {
    repo.push(message, &["--author", "Ann Author <ann@example.com>"])
}

fn app(version: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    environment:\n      VERSION: \"{version}\"\n"
    )
}

/// `convoy --state-dir STATE history ARGS --output json`, parsed.
fn history(state: &Path, args: &[&str]) -> Value {
    let run = run_history(state, args);
    assert_eq!(run.code, 0, "convoy history: {}{}", run.stdout, run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// `history`, or `None` while the file cannot be read (exit 2).
fn try_history(state: &Path) -> Option<Value> {
    let run = run_history(state, &[]);
    (run.code == 0).then(|| serde_json::from_str(&run.stdout).expect("history JSON"))
}

fn run_history(state: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("--state-dir")
        .arg(state)
        .arg("history")
        .args(args)
        .args(["--output", "json"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run convoy history");
    Run::from(out)
}

fn entries(doc: &Value) -> Vec<Value> {
    assert_eq!(doc["version"], 1, "{doc}");
    doc["entries"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(entries: &'a [Value], commit: &str, result: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| e["commit"] == commit && e["result"] == result)
}

/// `GET /api/v1/history` with the token: (HTTP status, body).
fn api_history(api: &str, token: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("{api}/api/v1/history"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn running_version(t: &TestFleet, name: &str, v: &str) -> bool {
    docker_try(&["inspect", "-f", "{{.State.Running}}", name]).as_deref() == Some("true")
        && t.inspect(name, "{{range .Config.Env}}{{println .}}{{end}}")
            .contains(&format!("VERSION={v}"))
}

#[test]
fn history_survives_a_daemon_restart_and_the_api_serves_it() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let state = t.path().join("state");
    let token = format!("tok-{}-history", t.id);
    let token_file = t.path().join("api-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_arg = token_file.to_string_lossy().into_owned();
    let repo = Repo::new();
    let url = repo.bare.to_string_lossy().into_owned();
    let stack = t.stack("web");
    repo.write("convoy.yaml", &format!("fleet: {}\n", t.id));
    repo.write(&format!("stacks/{stack}/compose.yaml"), &app("1"));
    let c1 = push_as_ann(&repo, "Deploy v1\n\nThe first version.");

    let d = Daemon::follow(&t, &url, &["--api-token-file", &token_arg], &[]);
    let name = t.cname("web", "app", 1);
    let mut got = Vec::new();
    wait_for("v1 applied in the history", Duration::from_secs(40), || {
        got = entries(&history(&state, &[]));
        find(&got, &c1, "applied").is_some()
    });
    assert!(running_version(&t, &name, "1"), "{}", d.log());
    let e = find(&got, &c1, "applied").unwrap().clone();
    assert_eq!(e["author"], "Ann Author <ann@example.com>", "{e}");
    assert_eq!(e["message"], "Deploy v1\n\nThe first version.", "{e}");
    assert_eq!(e["fleet"], t.id.as_str(), "{e}");
    // The daemon's first pass applied it.
    assert_eq!(e["trigger"]["kind"], "start", "{e}");
    let app = e["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["service"] == "app")
        .unwrap_or_else(|| panic!("{e}"));
    assert_eq!(app["stack"], stack.as_str(), "{e}");
    assert_eq!(app["created"], 1, "{e}");
    assert!(e["started_at"].as_str().unwrap().ends_with('Z'), "{e}");

    // A broken commit: held, once, with its located error.
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        "services:\n  app:\n    image: [broken\n",
    );
    let c2 = push_as_ann(&repo, "Break it");
    wait_for(
        "the held commit in the history",
        Duration::from_secs(20),
        || {
            got = entries(&history(&state, &[]));
            find(&got, &c2, "held").is_some()
        },
    );
    let held = find(&got, &c2, "held").unwrap().clone();
    assert_eq!(held["reason"], "invalid_commit", "{held}");
    assert_eq!(held["message"], "Break it", "{held}");
    assert!(
        held["errors"][0]
            .as_str()
            .unwrap_or_default()
            .contains("compose.yaml:"),
        "a located error: {held}"
    );
    assert_eq!(got[0]["commit"], c2.as_str(), "newest first: {got:?}");
    assert_eq!(d.stop(), 0);

    // Restarted: the same history, and the held commit (read again) is not recorded twice.
    let d = Daemon::follow(&t, &url, &["--api-token-file", &token_arg], &[]);
    let api = d.api();
    let mut doc = Value::Null;
    wait_for(
        "the restarted daemon's API history",
        Duration::from_secs(20),
        || {
            let (code, body) = api_history(&api, &token);
            if code != 200 {
                return false;
            }
            doc = serde_json::from_str(&body).unwrap_or(Value::Null);
            d.log().contains("the history says it already")
        },
    );
    let from_api = entries(&doc);
    assert!(find(&from_api, &c1, "applied").is_some(), "{doc}");
    assert_eq!(
        from_api
            .iter()
            .filter(|e| e["commit"] == c2.as_str())
            .count(),
        1,
        "one entry per held commit: {doc}"
    );
    let (code, _) = api_history(&api, "wrong-token");
    assert_eq!(code, 401);
    // The command reads the file the running daemon writes: the same entries.
    let from_cli = entries(&history(&state, &[]));
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&from_cli), ids(&from_api));
    // Filters: by stack (the held commit changed no stack), by limit.
    let web = entries(&history(&state, &["--stack", &stack]));
    assert!(web.iter().all(|e| e["commit"] == c1.as_str()), "{web:?}");
    assert!(!web.is_empty());
    assert_eq!(entries(&history(&state, &["--limit", "1"])).len(), 1);
    // The text form names the commit's subject.
    let text = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("--state-dir")
        .arg(&state)
        .arg("history")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("Deploy v1 (Ann Author <ann@example.com>)"),
        "{text}"
    );
    assert!(text.contains("held (invalid_commit)"), "{text}");
    assert_eq!(d.stop(), 0);
}

#[test]
fn a_corrupt_history_is_replaced_with_a_warning_and_the_daemon_converges() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose("web", &app("1"));
    let state = t.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("history.db"),
        b"not a database at all, only garbage ".repeat(500),
    )
    .unwrap();
    let d = Daemon::start(&t, &["--listen", "off"]);
    let name = t.cname("web", "app", 1);
    let mut got = Vec::new();
    // Until the daemon has replaced it, the command says the file is unreadable (exit 2).
    wait_for(
        "the pass in the new history",
        Duration::from_secs(40),
        || {
            got = try_history(&state).map(|d| entries(&d)).unwrap_or_default();
            got.iter().any(|e| e["result"] == "applied")
        },
    );
    assert!(running_version(&t, &name, "1"), "{}", d.log());
    assert!(
        d.log()
            .contains("the history database is unreadable: moved aside"),
        "{}",
        d.log()
    );
    let aside: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history.db.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(std::fs::read(state.join(&aside[0]))
        .unwrap()
        .starts_with(b"not a database"));
    assert_eq!(d.stop(), 0);
}

#[test]
fn apply_records_its_pass_and_a_commit_it_refuses() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let state = t.path().join("state");
    let state_arg = state.to_string_lossy().into_owned();
    t.compose("web", &app("1"));
    t.convoy(&["--state-dir", &state_arg, "apply"])
        .outcome(Outcome::Converged);
    let got = entries(&history(&state, &["--fleet", &t.id]));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["result"], "applied");
    assert!(got[0]["converged"].as_bool().unwrap());
    assert_eq!(got[0]["trigger"]["kind"], "command");
    assert_eq!(got[0]["trigger"]["name"], "apply");
    // In sync: nothing changed, nothing recorded.
    t.convoy(&["--state-dir", &state_arg, "apply"])
        .outcome(Outcome::Converged);
    assert_eq!(entries(&history(&state, &[])).len(), 1);
    // Refused: recorded as held, with the located error.
    t.compose("web", "services:\n  app:\n    image: [broken\n");
    t.convoy(&["--state-dir", &state_arg, "apply"])
        .outcome(Outcome::Invalid);
    let got = entries(&history(&state, &[]));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["result"], "held");
    assert_eq!(got[0]["reason"], "invalid_commit");
    assert_eq!(got[0]["fleet"], t.id.as_str());
    assert!(!got[0]["errors"].as_array().unwrap().is_empty(), "{got:?}");
}

#[test]
fn a_commit_held_by_the_deletion_guard_and_its_release_are_both_recorded() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let state = t.path().join("state");
    let token = format!("tok-{}-guard", t.id);
    let token_file = t.path().join("api-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_arg = token_file.to_string_lossy().into_owned();
    let repo = Repo::new();
    let url = repo.bare.to_string_lossy().into_owned();
    let (web, db) = (t.stack("web"), t.stack("db"));
    repo.write("convoy.yaml", &format!("fleet: {}\n", t.id));
    repo.write(&format!("stacks/{web}/compose.yaml"), &app("1"));
    repo.write(&format!("stacks/{db}/compose.yaml"), &app("1"));
    let c1 = push_as_ann(&repo, "Two stacks");
    let d = Daemon::follow(&t, &url, &["--api-token-file", &token_arg], &[]);
    let api = d.api();
    wait_for("c1 in the history", Duration::from_secs(40), || {
        find(&entries(&history(&state, &[])), &c1, "applied").is_some()
    });

    std::fs::remove_dir_all(repo.work.join(format!("stacks/{db}"))).unwrap();
    let c2 = push_as_ann(&repo, "Remove db");
    let mut got = Vec::new();
    wait_for(
        "the guard's hold in the history",
        Duration::from_secs(20),
        || {
            got = entries(&history(&state, &[]));
            find(&got, &c2, "held").is_some()
        },
    );
    let held = find(&got, &c2, "held").unwrap();
    assert_eq!(held["reason"], "deletion_guard", "{held}");
    assert!(
        held["detail"].as_str().unwrap_or_default().contains(&db),
        "the hold says what it would remove: {held}"
    );
    assert_eq!(t.running().len(), 2, "nothing removed while held");

    // Released through the API: the pass that removes db is recorded as applied.
    let out = Command::new("curl")
        .args(["-sS", "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("{api}/api/v1/sync?allow_prune=true"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
    wait_for(
        "the release in the history",
        Duration::from_secs(30),
        || {
            got = entries(&history(&state, &[]));
            find(&got, &c2, "applied").is_some()
        },
    );
    let applied = find(&got, &c2, "applied").unwrap();
    let removed = applied["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["stack"] == db.as_str() && c["service"] == "app")
        .unwrap_or_else(|| panic!("{applied}"));
    assert_eq!(removed["removed"], 1, "{applied}");
    assert_eq!(
        got.iter().filter(|e| e["commit"] == c2.as_str()).count(),
        2,
        "held once, applied once: {got:?}"
    );
    assert_eq!(d.stop(), 0);
}
