//! Sync windows: a daemon following a bare repository holds a pushed commit's change of the
//! stacks a deny window names (status, the API and the history say which window and until
//! when) while the other stacks' changes go on and a removed replica of the held stack is made
//! again with the spec it was running; `convoy sync --force` applies it, and is refused where
//! the window says `manual_sync: false`. A one-shot `apply` respects the window too (exit 1,
//! a `held:` line, an exited replica started again in place), and `apply --force` overrides it.
//!
//! The local engine only; HTTP through `curl`. The window opens at the current minute for ten
//! minutes, so the time it closes is known to the test.

use std::process::Command;
use std::time::Duration;

use crate::gitops::{
    applied, env_of, fleet_files, http, token, version_is, wait_d, wait_status, Repo,
};
use crate::harness::*;

fn app(version: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    environment:\n      VERSION: \"{version}\"\n"
    )
}

/// A deny window that opened at the current UTC minute and stays open ten minutes, on
/// `stack`: the YAML, and when it closes (RFC 3339).
pub(crate) fn deny_now(stack: &str, manual_sync: bool) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = now - now % 60;
    let (h, m) = ((start % 86_400) / 3600, (start % 3600) / 60);
    let yaml = format!(
        "sync_windows:\n  - kind: deny\n    schedule: \"{m} {h} * * *\"\n    duration: 10m\n    stacks: [{stack}]\n    manual_sync: {manual_sync}\n"
    );
    (yaml, convoy::model::time::rfc3339((start + 600) as f64))
}

fn sync_force(api: &str, token_file: &str) -> Run {
    Run::from(
        Command::new(env!("CARGO_BIN_EXE_convoy"))
            .args([
                "sync",
                "--daemon",
                api,
                "--force",
                "--api-token-file",
                token_file,
            ])
            .env_remove("CONVOY_API_TOKEN_FILE")
            .output()
            .unwrap(),
    )
}

#[test]
fn a_deny_window_holds_a_push_while_healing_and_sync_force_applies_it() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    let (token_file, header) = token(&t);
    let (web, other) = (t.stack("web"), t.stack("other"));
    repo.write("convoy.yaml", &fleet_files(&t, ""));
    repo.write(&format!("stacks/{web}/compose.yaml"), &app("1"));
    repo.write(&format!("stacks/{other}/compose.yaml"), &app("1"));
    let c1 = repo.push("v1", &[]);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    let (web1, other1) = (t.cname("web", "app", 1), t.cname("other", "app", 1));
    wait_status(&api, &header, "c1 applied", Duration::from_secs(30), |s| {
        applied(s) == c1 && s["last_pass"]["converged"] == true
    });
    assert!(version_is(&t, &web1, "1") && version_is(&t, &other1, "1"));

    // A window on `web` and a change of both stacks: `other` goes on, `web` waits.
    let (window, closes) = deny_now(&web, true);
    repo.write("convoy.yaml", &fleet_files(&t, &window));
    repo.write(&format!("stacks/{web}/compose.yaml"), &app("2"));
    repo.write(&format!("stacks/{other}/compose.yaml"), &app("2"));
    let c2 = repo.push("v2 during a freeze", &[]);
    wait_d(&d, "other at v2", Duration::from_secs(20), || {
        version_is(&t, &other1, "2")
    });
    let s = wait_status(
        &api,
        &header,
        "the hold in status",
        Duration::from_secs(10),
        |s| s["pending_commit"]["commit"] == c2.as_str(),
    );
    assert_eq!(s["pending_commit"]["reason"], "sync_window", "{s}");
    let w = &s["sync_windows"][0];
    assert_eq!(w["stack"], web.as_str(), "{s}");
    assert_eq!(w["window"], 0, "{s}");
    assert_eq!(w["kind"], "deny", "{s}");
    assert_eq!(w["manual_sync"], true, "{s}");
    assert_eq!(w["opens_at"], closes.as_str(), "{s}");
    assert!(version_is(&t, &web1, "1"), "web keeps v1 while held");
    // The API's diff shows the whole change, and what waits for the window.
    let (code, body) = http(
        "GET",
        &format!("{api}/api/v1/diff"),
        &["-H", &format!("@{header}")],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(&format!("stack `{web}` is held by sync window 0")) && body.contains(&web1),
        "{body}"
    );

    // Healing goes on: a removed replica of the held stack comes back with v1.
    let old_id = t.id_of(&web1);
    docker(&["rm", "-f", &web1]);
    wait_d(&d, "web healed with v1", Duration::from_secs(20), || {
        version_is(&t, &web1, "1") && t.id_of(&web1) != old_id
    });
    let status_text = t_status(&api, &token_file);
    assert!(
        status_text.contains(&format!(
            "window: stack `{web}` held by sync window 0 (deny"
        )) && status_text.contains(&closes),
        "{status_text}"
    );
    // The history records the hold.
    let state = t.path().join("state");
    let hist = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("--state-dir")
        .arg(&state)
        .args(["history", "--output", "json"])
        .output()
        .unwrap();
    let hist: serde_json::Value = serde_json::from_slice(&hist.stdout).expect("history JSON");
    assert!(
        hist["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["commit"] == c2.as_str()
                && e["result"] == "held"
                && e["reason"] == "sync_window"),
        "{hist}"
    );

    // `sync --force`: the window allows manual syncs, the commit comes into force.
    sync_force(&api, &token_file).outcome(Outcome::Accepted);
    wait_d(
        &d,
        "web at v2 after --force",
        Duration::from_secs(20),
        || version_is(&t, &web1, "2"),
    );
    let s = wait_status(
        &api,
        &header,
        "nothing held",
        Duration::from_secs(10),
        |s| s["pending_commit"].is_null() && applied(s) == c2,
    );
    assert_eq!(s["sync_windows"].as_array().map(Vec::len), Some(0), "{s}");

    // A hard freeze: `manual_sync: false` refuses the force, with the reason.
    let (window, _) = deny_now(&web, false);
    repo.write("convoy.yaml", &fleet_files(&t, &window));
    repo.write(&format!("stacks/{web}/compose.yaml"), &app("3"));
    let c3 = repo.push("v3 during a hard freeze", &[]);
    wait_status(&api, &header, "c3 held", Duration::from_secs(20), |s| {
        s["pending_commit"]["commit"] == c3.as_str() && s["sync_windows"][0]["manual_sync"] == false
    });
    let refused = sync_force(&api, &token_file);
    assert_eq!(refused.code, 2, "{} {}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("manual_sync: false"),
        "{}",
        refused.stderr
    );
    let (code, body) = http(
        "POST",
        &format!("{api}/api/v1/sync?force=true"),
        &["-H", &format!("@{header}")],
    );
    assert_eq!(code, 409, "{body}");
    assert!(version_is(&t, &web1, "2"), "web stays at v2");

    // A restart inside the window knows no state in force: the hold is found by planning
    // against what runs, and a killed replica is started again in place with what it ran.
    assert_eq!(d.stop(), 0);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    let s = wait_status(
        &api,
        &header,
        "c3 held after a restart",
        Duration::from_secs(20),
        |s| s["pending_commit"]["commit"] == c3.as_str() && s["last_pass"].is_object(),
    );
    assert_eq!(s["sync_windows"][0]["stack"], web.as_str(), "{s}");
    let id = t.id_of(&web1);
    docker(&["kill", &web1]);
    wait_d(
        &d,
        "web started again at v2",
        Duration::from_secs(20),
        || version_is(&t, &web1, "2"),
    );
    assert_eq!(t.id_of(&web1), id, "started in place");
}

/// `convoy status --daemon API` as text.
fn t_status(api: &str, token_file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .args(["status", "--daemon", api, "--api-token-file", token_file])
        .env("NO_COLOR", "1")
        .env_remove("CONVOY_API_TOKEN_FILE")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_one_shot_apply_respects_a_window_and_force_overrides_it() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let web = t.stack("web");
    t.compose("web", &app("1"));
    t.compose("other", &app("1"));
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let (web1, other1) = (t.cname("web", "app", 1), t.cname("other", "app", 1));

    let (window, closes) = deny_now(&web, true);
    t.write("convoy.yaml", &format!("fleet: {}\n{window}", t.id));
    t.compose("web", &app("2"));
    t.compose("other", &app("2"));
    // The diff shows the whole change and says what the window holds.
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout
            .contains(&format!("stack `{web}` is held by sync window 0"))
            && diff.stdout.contains(&closes),
        "{}",
        diff.stdout
    );
    // A killed replica of the held stack is started again, in place, with what it ran.
    let id = t.id_of(&web1);
    docker(&["kill", &web1]);
    let run = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    assert!(
        run.stderr
            .contains(&format!("held: stack `{web}` is held by sync window 0")),
        "{}",
        run.stderr
    );
    assert!(
        version_is(&t, &other1, "2"),
        "the other stack's change is applied"
    );
    assert!(version_is(&t, &web1, "1"), "web keeps v1 and runs again");
    assert_eq!(t.id_of(&web1), id, "started in place, not replaced");
    let status = t.convoy(&["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("held: stack `{web}` is held by sync window 0")),
        "{}",
        status.stdout
    );

    t.convoy(&["apply", "--force"]).outcome(Outcome::Converged);
    assert!(version_is(&t, &web1, "2"));

    // A hard freeze: `--force` cannot override it.
    let (window, _) = deny_now(&web, false);
    t.write("convoy.yaml", &format!("fleet: {}\n{window}", t.id));
    t.compose("web", &app("3"));
    let run = t
        .convoy(&["apply", "--force"])
        .outcome(Outcome::NotConverged);
    assert!(run.stderr.contains("manual_sync: false"), "{}", run.stderr);
    assert!(version_is(&t, &web1, "2"));
}

#[test]
fn a_held_commit_is_applied_when_its_window_closes() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let repo = Repo::new();
    let (token_file, header) = token(&t);
    let web = t.stack("web");
    repo.write("convoy.yaml", &fleet_files(&t, ""));
    repo.write(&format!("stacks/{web}/compose.yaml"), &app("1"));
    let c1 = repo.push("v1", &[]);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &token_file], &[]);
    let api = d.api();
    let web1 = t.cname("web", "app", 1);
    wait_status(&api, &header, "c1 applied", Duration::from_secs(30), |s| {
        applied(s) == c1 && s["last_pass"]["converged"] == true
    });
    wait_d(&d, "web at v1", Duration::from_secs(10), || {
        version_is(&t, &web1, "1")
    });
    // A window that opened at this minute and closes in 12 s.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = now - now % 60;
    let (h, m) = ((start % 86_400) / 3600, (start % 3600) / 60);
    let closes = now + 12;
    repo.write(
        "convoy.yaml",
        &fleet_files(
            &t,
            &format!(
                "sync_windows:\n  - {{kind: deny, schedule: \"{m} {h} * * *\", duration: {}s}}\n",
                closes - start
            ),
        ),
    );
    repo.write(&format!("stacks/{web}/compose.yaml"), &app("2"));
    let c2 = repo.push("v2", &[]);
    let s = wait_status(&api, &header, "c2 held", Duration::from_secs(8), |s| {
        s["pending_commit"]["commit"] == c2.as_str()
    });
    assert_eq!(
        s["sync_windows"][0]["opens_at"],
        convoy::model::time::rfc3339(closes as f64).as_str(),
        "{s}"
    );
    assert!(
        version_is(&t, &web1, "1"),
        "{}\n{}",
        env_of(&t, &web1),
        d.log()
    );
    // No push, no sync: the daemon's timer decides the commit again once the window closes.
    wait_d(
        &d,
        "v2 once the window closed",
        Duration::from_secs(20),
        || version_is(&t, &web1, "2"),
    );
    let done = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(done >= closes, "applied before the window closed");
    wait_status(
        &api,
        &header,
        "nothing held",
        Duration::from_secs(10),
        |s| s["pending_commit"].is_null() && applied(s) == c2,
    );
}
