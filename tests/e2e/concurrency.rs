//! Concurrent runs and crash leftovers on the local engine: two `apply`s at once on a new stack,
//! a stack network that exists twice, a container a killed `apply` left created but not started
//! (the engine finished the create after the process died), and the per-fleet lock.
//!
//! The leftovers are made by hand with the names and labels Convoy uses; the killed process's
//! container is made while a live `apply` waits on a dependency gate, after it observed and
//! before it creates, which is the window a kill -9 leaves to the engine. The long trial series
//! (20 and 30 rounds) are in `scripts/bench-crash`.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// A `convoy` running in the background, killed on drop so that a failing test leaves no
/// process acting on the engine after its cleanup.
struct Background(Option<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `convoy apply --repo <dir> <extra>` started in the background.
fn spawn_apply(t: &TestFleet, extra: &[&str]) -> Background {
    let child = Command::new(env!("CARGO_BIN_EXE_convoy"))
        .arg("apply")
        .arg("--repo")
        .arg(t.path())
        .args(extra)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn convoy apply");
    Background(Some(child))
}

/// Waits for a background `convoy` and returns its exit code and both streams.
fn finish(mut bg: Background) -> (i32, String, String) {
    let child = bg.0.take().expect("running");
    let out = child.wait_with_output().expect("wait for convoy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// IDs of the networks of the fleet named `name`.
fn networks_named(t: &TestFleet, name: &str) -> Vec<String> {
    let label = format!("label=convoy.fleet={}", t.id);
    docker(&[
        "network",
        "ls",
        "--filter",
        &label,
        "--format",
        "{{.ID}} {{.Name}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .filter(|(_, n)| *n == name)
    .map(|(id, _)| id.to_string())
    .collect()
}

/// A network as Convoy labels it, created through the engine API without the duplicate check
/// (the docker CLI always asks for it): what two processes racing leave behind.
fn raw_network(t: &TestFleet, stack: &str, name: &str) -> String {
    let body = format!(
        r#"{{"Name":"{name}","Driver":"bridge","Labels":{{"convoy.fleet":"{}","convoy.stack":"{stack}","convoy.resource":"{name}"}}}}"#,
        t.id
    );
    let (status, answer) = engine_post("/networks/create", &body);
    assert_eq!(status, 201, "create network {name}: {answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("create answer");
    v["Id"].as_str().expect("network id").to_string()
}

/// One POST to the local engine's socket: (HTTP status, body).
fn engine_post(path: &str, body: &str) -> (u32, String) {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("engine socket");
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read answer");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Stack `short`: `app` x3 and `db` x1, sleeping.
fn small_stack(t: &TestFleet, short: &str) {
    t.compose(
        short,
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    deploy:\n      replicas: 3\n  db:\n    image: {IMAGE}\n    command: sleep 3600\n"
        ),
    );
}

/// Exactly the stack's four replicas run, on its one network, and nothing else of it exists.
fn assert_small_stack_converged(t: &TestFleet, short: &str) {
    let want: Vec<String> = vec![
        t.cname(short, "app", 1),
        t.cname(short, "app", 2),
        t.cname(short, "app", 3),
        t.cname(short, "db", 1),
    ];
    let of_stack = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|n| n.starts_with(&format!("{}-", t.stack(short))))
            .collect()
    };
    assert_eq!(of_stack(t.running()), want);
    assert_eq!(of_stack(t.containers()), want, "no leftover container");
    let net = format!("{}_default", t.stack(short));
    let nets = networks_named(t, &net);
    assert_eq!(nets.len(), 1, "one network per stack: {nets:?}");
    for c in &want {
        assert_eq!(
            t.inspect(
                c,
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}"
            ),
            net
        );
    }
}

#[test]
fn two_applies_started_together_on_a_new_stack_converge_once() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    for trial in 0..3 {
        let short = format!("c{trial}");
        small_stack(&t, &short);
        let a = spawn_apply(&t, &[]);
        let b = spawn_apply(&t, &[]);
        let (ca, oa, ea) = finish(a);
        let (cb, ob, eb) = finish(b);
        assert_eq!(
            (ca, cb),
            (0, 0),
            "trial {trial}: both exit 0\n--- a\n{oa}\n{ea}\n--- b\n{ob}\n{eb}"
        );
        assert_small_stack_converged(&t, &short);
        let again = t.convoy(&["apply"]).outcome(Outcome::Converged);
        assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    }
}

#[test]
fn a_stack_network_made_twice_is_healed_by_one_apply() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let stack = t.stack("d");
    let net = format!("{stack}_default");
    // Two networks of the stack's name, as two processes racing leave them.
    let first = raw_network(&t, &stack, &net);
    let second = raw_network(&t, &stack, &net);
    assert_eq!(networks_named(&t, &net).len(), 2);
    small_stack(&t, "d");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_small_stack_converged(&t, "d");
    // The older of two empty copies is the one kept.
    let kept = networks_named(&t, &net);
    assert!(
        first.starts_with(&kept[0]),
        "kept {kept:?}, first {first}, second {second}"
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    // A copy with a container of the stack on it: that container moves to the kept network.
    let extra = raw_network(&t, &stack, &net);
    let moved = t.cname("d", "app", 2);
    docker(&["network", "disconnect", &first, &moved]);
    docker(&["network", "connect", "--alias", "app", &extra, &moved]);
    let before = t.id_of(&moved);
    let out = t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(out.stdout.contains(&format!("~ {moved}")), "{}", out.stdout);
    assert_small_stack_converged(&t, "d");
    assert_ne!(t.id_of(&moved), before, "replaced onto the kept network");
    let again = t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
}

/// Stack `k`: `second` waits for `first` to be healthy, which takes about four seconds: a
/// window between the pass's observation and its create of `second`.
fn health_gated_stack(t: &TestFleet) {
    t.compose(
        "k",
        &format!(
            r#"
services:
  first:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 4; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      timeout: 1s
      retries: 30
  second:
    image: {IMAGE}
    command: sleep 3600
    depends_on:
      first:
        condition: service_healthy
"#
        ),
    );
}

/// The labels Convoy gives replica `second` slot 1 of stack `k`, from the plan (`diff`).
fn labels_of_second(t: &TestFleet) -> Vec<String> {
    let out = t.convoy(&["diff", "--output", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan json");
    let replica = plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| &s["action"]["replica"])
        .find(|r| r["service"] == "second")
        .expect("a create of second")
        .clone();
    vec![
        format!("convoy.fleet={}", t.id),
        format!("convoy.stack={}", t.stack("k")),
        "convoy.service=second".into(),
        "convoy.slot=1".into(),
        format!(
            "convoy.spec-hash={}",
            replica["spec_hash"].as_str().unwrap()
        ),
        format!("convoy.commit={}", plan["commit"].as_str().unwrap()),
    ]
}

/// While an `apply` waits for `first`, creates (never starts) `second`'s container by hand with
/// `labels`, as the engine finishes the create of a killed process; returns the apply's result
/// and the hand-made container's ID, with a guard that removes it (it may carry no fleet label,
/// which the fleet's own cleanup would miss).
fn apply_with_a_leftover(
    t: &TestFleet,
    labels: &[String],
) -> ((i32, String, String), String, Unowned) {
    let apply = spawn_apply(t, &[]);
    let first = t.cname("k", "first", 1);
    wait_for("first to be created", Duration::from_secs(20), || {
        docker_try(&["inspect", "-f", "{{.Id}}", &first]).is_some()
    });
    let name = t.cname("k", "second", 1);
    let net = format!("{}_default", t.stack("k"));
    let mut args = vec![
        "create".to_string(),
        "--name".into(),
        name.clone(),
        "--restart".into(),
        "unless-stopped".into(),
        "--network".into(),
        net,
        "--network-alias".into(),
        "second".into(),
    ];
    for l in labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    args.extend([IMAGE.to_string(), "sleep".into(), "3600".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker(&args);
    let guard = Unowned(name.clone());
    assert_eq!(
        t.inspect(&name, "{{.State.Status}}"),
        "created",
        "made before the apply reached it"
    );
    (finish(apply), id, guard)
}

#[test]
fn a_container_a_killed_apply_left_created_is_adopted_or_replaced_in_the_same_pass() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    health_gated_stack(&t);
    let second = t.cname("k", "second", 1);
    let labels = labels_of_second(&t);

    // Ours, with the replica's spec: adopted (same container) and started.
    let ((code, out, err), id, _made) = apply_with_a_leftover(&t, &labels);
    assert_eq!(code, 0, "adopted, exit 0\n{out}\n{err}");
    assert_eq!(t.id_of(&second), id, "the same container");
    assert_eq!(t.inspect(&second, "{{.State.Status}}"), "running");
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    // Ours, with another spec: replaced within the same pass.
    for c in t.containers() {
        docker(&["rm", "-f", &c]);
    }
    let mut stale = labels.clone();
    stale[4] = "convoy.spec-hash=stale".into();
    let ((code, out, err), id, _made) = apply_with_a_leftover(&t, &stale);
    assert_eq!(code, 0, "replaced, exit 0\n{out}\n{err}");
    assert_ne!(t.id_of(&second), id, "a new container");
    assert_eq!(t.inspect(&second, "{{.State.Status}}"), "running");
    assert_eq!(
        t.inspect(&second, "{{index .Config.Labels \"convoy.spec-hash\"}}"),
        labels[4].trim_start_matches("convoy.spec-hash=")
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    // Not ours: a conflict, and the container is left exactly as it is.
    for c in t.containers() {
        docker(&["rm", "-f", &c]);
    }
    let ((code, out, err), id, _unowned) = apply_with_a_leftover(&t, &[]);
    assert_eq!(code, 1, "not converged\n{out}\n{err}");
    assert!(
        out.contains("not owned by fleet"),
        "the conflict is named\n{out}\n{err}"
    );
    assert_eq!(t.id_of(&second), id);
    assert_eq!(t.inspect(&second, "{{.State.Status}}"), "created");
}

#[test]
fn a_second_apply_with_lock_timeout_zero_fails_naming_the_holder() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    health_gated_stack(&t);
    let state = t.path().join("state");
    let state = state.to_string_lossy();
    let holder = spawn_apply(&t, &["--state-dir", &state]);
    let pid = holder.0.as_ref().expect("running").id();
    wait_for("the first apply to act", Duration::from_secs(20), || {
        docker_try(&["inspect", "-f", "{{.Id}}", &t.cname("k", "first", 1)]).is_some()
    });
    let second = t
        .convoy(&["apply", "--lock-timeout", "0", "--state-dir", &state])
        .outcome(Outcome::Error);
    assert!(
        second
            .stderr
            .contains("is locked by another Convoy process")
            && second.stderr.contains(&format!("pid {pid}:"))
            && second.stderr.contains("apply"),
        "names the holder: {}",
        second.stderr
    );
    let (code, out, err) = finish(holder);
    assert_eq!(code, 0, "the holder converges\n{out}\n{err}");
    // Released with its holder: the next one takes it at once.
    t.convoy(&["apply", "--lock-timeout", "0", "--state-dir", &state])
        .outcome(Outcome::Converged);
}
