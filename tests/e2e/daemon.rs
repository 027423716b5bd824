//! `convoy daemon` on the local engine: healing from engine events, unhealthy replacement,
//! crash-loop reports, and following the repository's files.

use std::time::Duration;

use crate::harness::*;

fn replicas(t: &TestFleet, n: u32) {
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    deploy:\n      replicas: {n}\n"),
    );
}

#[test]
fn a_removed_container_is_replaced_and_files_are_followed() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    replicas(&t, 2);
    let d = Daemon::start(&t, &[]);
    let (a1, a2) = (t.cname("web", "app", 1), t.cname("web", "app", 2));
    wait_for("two replicas", Duration::from_secs(30), || {
        t.running() == vec![a1.clone(), a2.clone()]
    });
    let old = t.id_of(&a1);
    let keep = t.id_of(&a2);
    docker(&["rm", "-f", &a1]);
    wait_for(
        "a replacement with a new ID",
        Duration::from_secs(10),
        || {
            docker_try(&["inspect", "-f", "{{.Id}} {{.State.Running}}", &a1])
                .is_some_and(|s| !s.starts_with(&old) && s.ends_with("true"))
        },
    );
    assert_eq!(t.id_of(&a2), keep, "the other replica is untouched");
    // Every pass says why it ran, on its span.
    wait_for("the event's pass logged", Duration::from_secs(5), || {
        d.log().contains("pass{reason=event `")
    });
    assert!(d.log().contains("pass{reason=start"), "{}", d.log());

    // A change to the watched files starts a pass.
    replicas(&t, 3);
    wait_for("a third replica", Duration::from_secs(10), || {
        t.running().len() == 3
    });
    assert!(d.log().contains("pass{reason=files changed"), "{}", d.log());

    // A commit that does not validate changes nothing: the last good state keeps running.
    let before = t.engine_view();
    t.compose("web", "services:\n  app:\n    image: [broken\n");
    wait_for(
        "the daemon to report the broken file",
        Duration::from_secs(10),
        || d.log().contains("does not validate"),
    );
    docker(&["rm", "-f", &a2]);
    wait_for(
        "healing with the last good state",
        Duration::from_secs(10),
        || t.running().len() == 3,
    );
    assert_eq!(t.engine_view().len(), before.len());
    assert_eq!(d.stop(), 0, "daemon exits 0 on SIGTERM");
}

#[test]
fn an_unhealthy_container_is_replaced() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!(
            r#"
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "touch /tmp/ok; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 500ms
      timeout: 1s
      retries: 2
"#
        ),
    );
    let _d = Daemon::start(&t, &[]);
    let name = t.cname("web", "app", 1);
    wait_for("a healthy container", Duration::from_secs(30), || {
        docker_try(&["inspect", "-f", "{{.State.Health.Status}}", &name]).as_deref()
            == Some("healthy")
    });
    let old = t.id_of(&name);
    docker(&["exec", &name, "rm", "/tmp/ok"]);
    wait_for("a healthy replacement", Duration::from_secs(30), || {
        docker_try(&["inspect", "-f", "{{.Id}} {{.State.Health.Status}}", &name]).is_some_and(|s| {
            !s.starts_with(&old) && s.ends_with("healthy") && !s.ends_with("unhealthy")
        })
    });
}

#[test]
fn a_crash_loop_is_left_to_the_engine_and_reported() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo boom-$$HOSTNAME; exit 3\"]\n    restart: always\n"),
    );
    let _d = Daemon::start(&t, &[]);
    let name = t.cname("web", "app", 1);
    wait_for("the container", Duration::from_secs(30), || {
        docker_try(&["inspect", &name]).is_some()
    });
    let id = t.id_of(&name);
    wait_for("three restarts", Duration::from_secs(30), || {
        t.inspect(&name, "{{.RestartCount}}")
            .parse::<i64>()
            .unwrap_or(0)
            >= 3
    });
    // The engine restarts it; Convoy does not fight it by replacing the container.
    assert_eq!(t.id_of(&name), id);
    // Between two restarts the container runs for a moment, and the engine has reset its exit
    // code: status then says "crash loop" without a code. Poll until one status is read while
    // the engine waits to restart it, as it does most of the time.
    let mut last = String::new();
    wait_for(
        "a status with the exit code",
        Duration::from_secs(30),
        || {
            let out = t
                .convoy(&["status", "--output", "json"])
                .outcome(Outcome::AllReachable);
            let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            let r = doc["services"][0]["replicas"][0].clone();
            assert!(r["restarts"].as_i64().unwrap() >= 3, "{r}");
            assert_eq!(r["crash_loop"], true, "{r}");
            assert!(r["last_logs"].to_string().contains("boom-"), "{r}");
            assert!(
                r["exit_code"].is_null() || r["exit_code"] == 3,
                "a running container has no known exit code, others exited with 3: {r}"
            );
            r["exit_code"] == 3
        },
    );
    wait_for(
        "the text status with the exit code",
        Duration::from_secs(30),
        || {
            let text = t.convoy(&["status"]).outcome(Outcome::AllReachable);
            assert!(!text.stdout.contains("last exit code 0"), "{}", text.stdout);
            last = text.stdout;
            last.contains("crash loop (last exit code 3)")
        },
    );
    assert!(last.contains("boom-"), "{last}");
}

#[test]
fn an_invalid_repository_under_json_logs_gives_only_json_lines() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        "services:\n  app:\n    image: [broken\n    enviroment: {}\n",
    );
    let d = Daemon::start(&t, &["--log-format", "json"]);
    wait_for(
        "the daemon to report the invalid repository",
        Duration::from_secs(20),
        || d.log().contains("does not validate"),
    );
    assert_eq!(d.stop(), Outcome::Stopped.code());
    let log = std::fs::read_to_string(t.path().join("daemon.log")).unwrap();
    let mut located = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n--- whole log\n{log}"));
        // Each manifest error is its own event, with its location as fields.
        if v["fields"]["message"] == "invalid manifest" {
            located |= v["fields"]["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("compose.yaml"))
                && v["fields"]["line"].as_u64().is_some_and(|l| l > 0);
        }
    }
    assert!(located, "no located manifest error event in:\n{log}");
}

#[test]
fn sigterm_during_a_dependency_gate_exits_within_seconds_and_makes_nothing_half() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.write(
        "convoy.yaml",
        &format!("fleet: {}\ndependency_timeout: 60s\n", t.id),
    );
    gated_stack(&t, "web");
    let d = Daemon::start(&t, &[]);
    let app = t.cname("web", "app", 1);
    wait_for_the_gate(&t, &d, "web");
    let started = std::time::Instant::now();
    let code = d.stop();
    let took = started.elapsed();
    assert_eq!(code, Outcome::Stopped.code());
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM during a gate wait took {took:?}"
    );
    // The gated step never started, and nothing else is left half made.
    assert!(
        docker_try(&["inspect", &app]).is_none(),
        "app was created after SIGTERM"
    );
    let states: Vec<String> = t
        .containers()
        .iter()
        .map(|n| t.inspect(n, "{{.State.Status}}"))
        .collect();
    assert_eq!(states, vec!["running".to_string()], "{states:?}");
    let log = std::fs::read_to_string(t.path().join("daemon.log")).unwrap();
    assert!(log.contains("not started: shutting down"), "{log}");
}

#[test]
fn files_beside_the_manifests_do_not_start_passes() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    replicas(&t, 1);
    let d = Daemon::start(&t, &[]);
    wait_for("one replica", Duration::from_secs(30), || {
        t.running().len() == 1
    });
    let reloads = |log: &str| log.matches("desired state loaded").count();
    let before = reloads(&d.log());
    // A log file in the repository root and one beside a compose file, appended to more slowly
    // than the daemon's quiet period, so that each append would be a change of its own.
    let beside = t.path().join("stacks").join(t.stack("web")).join("app.log");
    for i in 0..5 {
        for p in [t.path().join("app.log"), beside.clone()] {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            writeln!(f, "line {i}").unwrap();
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    // A real change is still followed, and it is the only new read beside (at most) the one
    // for the log file that appeared in a stack's folder.
    replicas(&t, 2);
    wait_for("a second replica", Duration::from_secs(10), || {
        t.running().len() == 2
    });
    let after = reloads(&d.log());
    assert!(
        after - before <= 2,
        "{} reloads for one change and a log file",
        after - before
    );
}
