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

    // A change to the watched files starts a pass.
    replicas(&t, 3);
    wait_for("a third replica", Duration::from_secs(10), || {
        t.running().len() == 3
    });

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
    let out = t
        .convoy(&["status", "--output", "json"])
        .outcome(Outcome::AllReachable);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let r = &doc["services"][0]["replicas"][0];
    assert!(r["restarts"].as_i64().unwrap() >= 3, "{r}");
    assert_eq!(r["crash_loop"], true, "{r}");
    assert_eq!(r["exit_code"], 3, "{r}");
    assert!(r["last_logs"].to_string().contains("boom-"), "{r}");
    let text = t.convoy(&["status"]).outcome(Outcome::AllReachable);
    assert!(
        text.stdout.contains("crash loop (last exit code 3)"),
        "{}",
        text.stdout
    );
}
