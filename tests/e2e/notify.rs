//! Notifications and commit statuses from a daemon following a bare repository, received on
//! loopback: the signed generic JSON (its HMAC checked here with the `hmac` crate, not with
//! Convoy's code) and GitHub-style commit statuses (`api_url` pointed at the receiver), in
//! order and without duplicates across a push, a broken commit, a fix and a heal; no secret,
//! environment value or chat URL in any body or log line; and a receiver that accepts
//! connections and never answers, while passes go on and complete and the daemon still stops
//! cleanly. A forge token rotated in its file is used from the next status on, and a restart
//! at the applied commit says nothing again.
//!
//! The local engine only.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::gitops::Repo;
use crate::harness::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP receiver on a loopback port: records every request and answers 200, or (`hang`)
/// accepts connections and never answers. Its thread ends with the process.
struct Receiver {
    addr: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Receiver {
    fn start(hang: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if hang {
                    held.push(conn);
                    continue;
                }
                let g = g.clone();
                std::thread::spawn(move || serve(conn, &g));
            }
        });
        Receiver { addr, got }
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

fn serve(mut conn: TcpStream, got: &Mutex<Vec<Got>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .unwrap_or_default()
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    got.lock().unwrap().push(Got {
        path,
        headers,
        body,
    });
    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

/// The stack: one replica whose environment holds a secret-named value and a plain one.
fn app(version: &str, secret: &str, plain: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    environment:\n      VERSION: \"{version}\"\n      DB_PASSWORD: \"{secret}\"\n      GREETING: \"{plain}\"\n"
    )
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The generic bodies received (path `/hook`), each signature checked.
fn generic_events(r: &Receiver, key: &[u8]) -> Vec<Value> {
    r.got()
        .into_iter()
        .filter(|g| g.path == "/hook")
        .map(|g| {
            let sig = g.header("x-convoy-signature").unwrap_or_default();
            assert_eq!(
                sig,
                format!("sha256={}", hmac_hex(key, g.body.as_bytes())),
                "the signature of {}",
                g.body
            );
            assert!(!g.body.contains('\n'), "one line: {}", g.body);
            serde_json::from_str(&g.body).unwrap_or_else(|e| panic!("{e}: {}", g.body))
        })
        .collect()
}

/// (commit, state) of the commit statuses received, in order (their tokens are checked
/// where the test rotates one).
fn statuses(r: &Receiver) -> Vec<(String, String)> {
    r.got()
        .into_iter()
        .filter_map(|g| {
            let sha = g.path.strip_prefix("/gh/repos/acme/fleet/statuses/")?;
            let v: Value = serde_json::from_str(&g.body).unwrap();
            Some((sha.to_string(), v["state"].as_str().unwrap().to_string()))
        })
        .collect()
}

fn event_of(v: &Value) -> (String, String) {
    (
        v["event"].as_str().unwrap_or_default().to_string(),
        v["commit"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn signed_notifications_and_commit_statuses_follow_push_break_fix_and_heal() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let r = Receiver::start(false);
    let key = format!("hmac-{}-k3y", t.id);
    let key_file = t.path().join("hmac.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let token_file = t.path().join("gh.token");
    std::fs::write(&token_file, "gh-t0ken\n").unwrap();
    // A chat URL is a credential: kept in a file, and never in a log line or a body.
    let slack_secret = format!("slack-{}-B0s3cr3t", t.id);
    let slack_file = t.path().join("slack-url");
    std::fs::write(&slack_file, format!("{}/slack/{slack_secret}\n", r.addr)).unwrap();
    let secret = format!("pw-{}-s3cr3t", t.id);
    let plain = format!("hello-{}-env", t.id);

    let repo = Repo::new();
    let stack = t.stack("web");
    let fleet = format!(
        "fleet: {}\nnotifications:\n  - {{kind: generic, url: \"{}/hook\", secret_file: {}}}\n  - {{kind: github, url: \"https://github.com/acme/fleet\", token_file: {}, api_url: \"{}/gh\"}}\n  - {{kind: slack, url_file: {}, events: [failed, held]}}\n",
        t.id,
        r.addr,
        key_file.display(),
        token_file.display(),
        r.addr,
        slack_file.display()
    );
    repo.write("convoy.yaml", &fleet);
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &app("1", &secret, &plain),
    );
    let c1 = repo.push("v1", &[]);
    let d = Daemon::follow(&t, &repo.url(), &[], &[]);
    let name = t.cname("web", "app", 1);
    wait_for("v1 applied and said", Duration::from_secs(40), || {
        generic_events(&r, key.as_bytes())
            .iter()
            .any(|v| event_of(v) == ("applied".into(), c1.clone()))
    });

    // The forge token is rotated in its file (a short-lived token): the next statuses carry
    // the new one, with no configuration change.
    std::fs::write(&token_file, "gh-r0tated\n").unwrap();

    // A broken commit: held, said once.
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        "services:\n  app:\n    image: [broken\n",
    );
    let c2 = repo.push("break", &[]);
    wait_for("the hold said", Duration::from_secs(20), || {
        generic_events(&r, key.as_bytes())
            .iter()
            .any(|v| event_of(v) == ("held".into(), c2.clone()))
    });

    // The fix.
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &app("2", &secret, &plain),
    );
    let c3 = repo.push("fix", &[]);
    wait_for("v2 applied and said", Duration::from_secs(40), || {
        generic_events(&r, key.as_bytes())
            .iter()
            .any(|v| event_of(v) == ("applied".into(), c3.clone()))
    });
    assert!(
        t.inspect(&name, "{{range .Config.Env}}{{println .}}{{end}}")
            .contains("VERSION=2"),
        "{}",
        d.log()
    );

    // A heal: the replica killed by hand is started again, and that is said.
    docker(&["kill", &name]);
    wait_for("the heal said", Duration::from_secs(30), || {
        generic_events(&r, key.as_bytes())
            .iter()
            .any(|v| v["event"] == "healed")
    });
    // A resync's worth of quiet: nothing more is said of what was said.
    let api = d.api();
    let metrics = Command::new("curl")
        .args(["-sS", &format!("{api}/metrics")])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();

    let events = generic_events(&r, key.as_bytes());
    let said: Vec<(String, String)> = events.iter().map(event_of).collect();
    let first: Vec<(String, String)> = said.iter().take(5).cloned().collect();
    assert_eq!(
        first,
        [
            ("started".to_string(), c1.clone()),
            ("applied".to_string(), c1.clone()),
            ("held".to_string(), c2.clone()),
            ("started".to_string(), c3.clone()),
            ("applied".to_string(), c3.clone()),
        ],
        "in order, once each: {said:?}\n{}",
        d.log()
    );
    assert!(
        said[5..].iter().all(|(e, c)| e == "healed" && *c == c3),
        "after the fix only heals: {said:?}"
    );
    for v in &events {
        assert_eq!(v["version"], 1, "{v}");
        assert_eq!(v["fleet"], t.id.as_str(), "{v}");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{v}");
    }
    let held = events.iter().find(|v| v["event"] == "held").unwrap();
    assert_eq!(held["hold_reason"], "invalid_commit", "{held}");
    assert_eq!(events[1]["hosts"]["ok"], 1, "{}", events[1]);
    assert_eq!(events[1]["hosts"]["total"], 1, "{}", events[1]);

    // The commit statuses: pending and success for each applied commit, failure for the
    // broken one; in order and once each.
    wait_for("five commit statuses", Duration::from_secs(10), || {
        statuses(&r).len() >= 5
    });
    let st = statuses(&r);
    let s = |c: &str, state: &str| (c.to_string(), state.to_string());
    assert_eq!(
        st,
        [
            s(&c1, "pending"),
            s(&c1, "success"),
            s(&c2, "failure"),
            s(&c3, "pending"),
            s(&c3, "success"),
        ]
    );
    let auth: Vec<String> = r
        .got()
        .into_iter()
        .filter(|g| g.path.starts_with("/gh/"))
        .map(|g| g.header("authorization").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer gh-t0ken",
            "Bearer gh-t0ken",
            "Bearer gh-r0tated",
            "Bearer gh-r0tated",
            "Bearer gh-r0tated"
        ]
    );
    // The chat endpoint wants failures and holds only: the hold.
    let slack: Vec<Got> = r
        .got()
        .into_iter()
        .filter(|g| g.path.starts_with("/slack/"))
        .collect();
    assert_eq!(slack.len(), 1, "{slack:?}");
    assert!(slack[0].body.contains("held (invalid_commit)"), "{slack:?}");

    assert!(
        metrics.contains("convoy_notifications_total{result=\"delivered\"}"),
        "{metrics}"
    );
    let mut log = d.log();
    assert_eq!(d.stop(), 0);

    // A restart at the applied commit says nothing again (no second started or applied, no
    // second pending or success status): the history says it was applied. A commit after it
    // is news as ever, and its events come after everything the restart's passes queued.
    let (api_token, api_header) = crate::gitops::token(&t);
    let d = Daemon::follow(&t, &repo.url(), &["--api-token-file", &api_token], &[]);
    crate::gitops::wait_status(
        &d.api(),
        &api_header,
        "the restarted daemon in sync at v2",
        Duration::from_secs(40),
        |s| crate::gitops::applied(s) == c3 && s["last_pass"]["converged"] == true,
    );
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &app("3", &secret, &plain),
    );
    let c4 = repo.push("v3", &[]);
    wait_for("v3 applied and said", Duration::from_secs(40), || {
        generic_events(&r, key.as_bytes())
            .iter()
            .any(|v| event_of(v) == ("applied".into(), c4.clone()))
    });
    let after: Vec<(String, String)> = generic_events(&r, key.as_bytes())
        .iter()
        .map(event_of)
        .skip(said.len())
        .collect();
    assert_eq!(
        after,
        [
            ("started".to_string(), c4.clone()),
            ("applied".to_string(), c4.clone())
        ],
        "nothing said again after the restart: {after:?}\n{}",
        d.log()
    );
    wait_for("seven commit statuses", Duration::from_secs(10), || {
        statuses(&r).len() >= 7
    });
    assert_eq!(
        statuses(&r)[5..],
        [s(&c4, "pending"), s(&c4, "success")],
        "no status said again after the restart"
    );
    log.push_str(&d.log());
    assert_eq!(d.stop(), 0);

    // No secret, environment value, token or chat URL in any body or log line.
    let mut bodies: String = r.got().iter().map(|g| g.body.clone() + "\n").collect();
    bodies.push_str(&log);
    for hidden in [
        &secret,
        &plain,
        &slack_secret,
        &key,
        &"gh-t0ken".to_string(),
        &"gh-r0tated".to_string(),
    ] {
        assert!(!bodies.contains(hidden.as_str()), "`{hidden}` was shown");
    }
}

#[test]
fn passes_go_on_while_an_endpoint_never_answers() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let r = Receiver::start(true);
    let key_file = t.path().join("hmac.key");
    std::fs::write(&key_file, "k\n").unwrap();
    let token_file = t.path().join("gh.token");
    std::fs::write(&token_file, "tok\n").unwrap();
    let repo = Repo::new();
    let stack = t.stack("web");
    let fleet = format!(
        "fleet: {}\nnotifications:\n  - {{kind: generic, url: \"{}/hook\", secret_file: {}}}\n  - {{kind: github, url: \"https://github.com/acme/fleet\", token_file: {}, api_url: \"{}/gh\"}}\n",
        t.id,
        r.addr,
        key_file.display(),
        token_file.display(),
        r.addr
    );
    repo.write("convoy.yaml", &fleet);
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &app("1", "pw-s3cr3t-xyz", "plain"),
    );
    repo.push("v1", &[]);
    let d = Daemon::follow(&t, &repo.url(), &[], &[]);
    let name = t.cname("web", "app", 1);
    let version = |v: &str| {
        docker_try(&[
            "inspect",
            "-f",
            "{{range .Config.Env}}{{println .}}{{end}}",
            &name,
        ])
        .is_some_and(|env| env.contains(&format!("VERSION={v}")))
    };
    wait_for("v1 running", Duration::from_secs(40), || version("1"));
    // Pushed while the first notifications still wait for an answer.
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        &app("2", "pw-s3cr3t-xyz", "plain"),
    );
    repo.push("v2", &[]);
    wait_for("v2 running", Duration::from_secs(30), || version("2"));
    docker(&["kill", &name]);
    wait_for("the replica healed", Duration::from_secs(30), || {
        docker_try(&["inspect", "-f", "{{.State.Running}}", &name]).as_deref() == Some("true")
    });
    let log = d.log();
    assert!(
        log.contains("notifications configured"),
        "the endpoints were in force: {log}"
    );
    // Shutdown gives queued notifications a bounded grace, then exits cleanly.
    assert_eq!(d.stop(), 0, "{log}");
}

/// A one-shot `convoy apply` tells its endpoints too (a secret file relative to the repository),
/// and a silent endpoint costs it at most its bounded wait at exit.
#[test]
fn apply_tells_its_endpoints_and_waits_a_bounded_time() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let r = Receiver::start(false);
    let silent = Receiver::start(true);
    t.write("hmac.key", "apply-k3y\n");
    t.write(
        "convoy.yaml",
        &format!(
            "fleet: {}\nnotifications:\n  - {{kind: generic, url: \"{}/hook\", secret_file: hmac.key}}\n  - {{kind: discord, url: \"{}/silent\"}}\n",
            t.id, r.addr, silent.addr
        ),
    );
    t.compose("web", &app("1", "pw-apply-s3cr3t", "plain-apply-env"));
    let started = std::time::Instant::now();
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let took = started.elapsed();
    let events = generic_events(&r, b"apply-k3y");
    let said: Vec<String> = events
        .iter()
        .map(|v| v["event"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(said, ["started", "applied"], "{events:?}");
    // A guard against a hang, not a measure: without the bounded wait, the silent endpoint's
    // six attempts of 10 s with their backoff would hold the exit for over a minute.
    assert!(took < Duration::from_secs(60), "apply took {took:?}");
}

#[test]
fn a_failed_run_once_job_is_notified_with_its_exit_code() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let r = Receiver::start(false);
    t.write("hmac.key", "job-k3y\n");
    t.write(
        "convoy.yaml",
        &format!(
            "fleet: {}\nnotifications:\n  - {{kind: generic, url: \"{}/hook\", secret_file: hmac.key}}\n",
            t.id, r.addr
        ),
    );
    t.compose(
        "db",
        &format!(
            "services:\n  migrate:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo migrating; exit 3\"]\n    x-convoy:\n      job: {{}}\n"
        ),
    );
    t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let events = generic_events(&r, b"job-k3y");
    let said: Vec<&str> = events
        .iter()
        .map(|v| v["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(said, ["started", "failed", "job_failed"], "{events:?}");
    let run = &events[2];
    assert_eq!(run["job"], "migrate", "{run}");
    assert_eq!(run["stack"], format!("{}db", t.id), "{run}");
    assert_eq!(run["exit_code"], 3, "{run}");
    assert_eq!(run["host"], "local", "{run}");
}
