//! Service discovery across hosts (issue 13) on the 3-host SSH fleet: a frontend on the first
//! host calls `api` by name while `api`'s two replicas run on the other two. The mesh container
//! Convoy runs beside the frontend answers the name and forwards to both hosts' proxies; the
//! calls keep working when a replica is killed and healed, and when a host is drained.
//!
//! Requests are made from inside the frontend container (busybox `nc`, one connection each)
//! and counted per replica; every wait polls with a deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// A stack of a frontend pinned to `front` and `api` (2 replicas, pinned to `back`), each
/// replica answering its own container name on 8080 (a byte stream to the proxies) and on 8081
/// (`app_protocol: http`: carried as HTTP).
fn shop(t: &TestFleet, front: &str, back: [&str; 2]) {
    t.compose(
        "shop",
        &format!(
            "services:\n  frontend:\n    image: {IMAGE}\n    command: sleep 3600\n    \
             x-convoy:\n      hosts: [{front}]\n  api:\n    image: {IMAGE}\n    \
             command: [\"sh\", \"-c\", \"mkdir -p /www && hostname > /www/index.html && httpd -p 8081 -h /www && exec httpd -f -p 8080 -h /www\"]\n    \
             expose: [\"8080\"]\n    ports:\n      - {{target: 8081, app_protocol: http}}\n    deploy:\n      replicas: 2\n    \
             x-convoy:\n      hosts: [{}, {}]\n",
            back[0], back[1]
        ),
    );
}

/// `convoy.yaml` over the fleet with the proxy, `drain: true` on `drained` if any.
fn fleet_file(hosts: &Hosts, t: &TestFleet, drained: Option<&str>) {
    hosts.write_proxy_fleet_file(t, "  image: convoy-test/proxy:1\n");
    if let Some(h) = drained {
        let y = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
        t.write(
            "convoy.yaml",
            &y.replace(&format!("  {h}:\n"), &format!("  {h}:\n    drain: true\n")),
        );
    }
}

/// `n` requests to `http://api:8080/` from the frontend: the body of each (the replica's
/// container ID) or `FAIL`.
fn call_api(hosts: &Hosts, host: &str, frontend: &str, n: u32) -> Vec<String> {
    call_api_on(hosts, host, frontend, 8080, n)
}

/// The same on `port`.
fn call_api_on(hosts: &Hosts, host: &str, frontend: &str, port: u16, n: u32) -> Vec<String> {
    // busybox `nc`, not `wget`: the static busybox's `wget` dies in glibc's resolver inside the
    // fleet's engines, and a raw HTTP/1.0 request shows the same thing (the body's last line).
    let script = format!(
        "for i in $(seq {n}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 api {port} 2>/dev/null \\
         | tail -n1 | grep . || echo FAIL; done"
    );
    hosts
        .docker(host, &["exec", frontend, "sh", "-c", &script])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn count(answers: &[String]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in answers {
        *out.entry(a.clone()).or_default() += 1;
    }
    out
}

/// The short container IDs of the running `api` replicas on `host` (what `hostname` answers).
fn api_ids(hosts: &Hosts, host: &str, t: &TestFleet) -> Vec<String> {
    hosts
        .docker(
            host,
            &[
                "ps",
                "--filter",
                &format!("label=convoy.fleet={}", t.id),
                "--filter",
                "label=convoy.service=api",
                "--format",
                "{{.ID}}",
            ],
        )
        .lines()
        .map(|l| l.chars().take(12).collect())
        .collect()
}

/// Polls until 20 calls in a row succeed, then asserts 20 more have no error.
fn wait_until_calls_succeed(hosts: &Hosts, host: &str, frontend: &str, what: &str) {
    wait_for(what, Duration::from_secs(60), || {
        call_api(hosts, host, frontend, 20)
            .iter()
            .all(|a| a != "FAIL")
    });
    let answers = call_api(hosts, host, frontend, 20);
    assert_eq!(answers.len(), 20, "{answers:?}");
    assert!(answers.iter().all(|a| a != "FAIL"), "{what}: {answers:?}");
}

#[test]
fn a_frontend_reaches_api_on_other_hosts_through_the_mesh() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    let (h1, h2, h3) = (
        hosts.names[0].clone(),
        hosts.names[1].clone(),
        hosts.names[2].clone(),
    );
    let state = t.path().join("state").to_string_lossy().into_owned();
    fleet_file(&hosts, &t, None);
    shop(&t, &h1, [&h2, &h3]);
    t.convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    let stack = t.stack("shop");
    let frontend = t.cname("shop", "frontend", 1);
    let mesh = format!("convoy-mesh-{stack}");
    // The mesh runs where the frontend runs, and only there: api's hosts answer its name
    // themselves and call nothing remote that declares a port.
    assert!(
        hosts.fleet_containers(&h1, &t.id).contains(&mesh),
        "{:?}",
        hosts.fleet_containers(&h1, &t.id)
    );
    for h in [&h2, &h3] {
        assert!(
            !hosts
                .fleet_containers(h, &t.id)
                .iter()
                .any(|c| c.starts_with("convoy-mesh")),
            "{h}"
        );
    }
    // A second look finds the fleet in sync: the mesh is not replaced on the next pass.
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);

    // Both replicas answer, over fresh connections.
    let on2 = api_ids(&hosts, &h2, &t);
    let on3 = api_ids(&hosts, &h3, &t);
    assert_eq!((on2.len(), on3.len()), (1, 1), "{on2:?} {on3:?}");
    wait_until_calls_succeed(&hosts, &h1, &frontend, "api answers through the mesh");
    let answers = call_api(&hosts, &h1, &frontend, 40);
    let counts = count(&answers);
    eprintln!("40 calls from {h1}: {counts:?}");
    assert_eq!(counts.get("FAIL"), None, "{counts:?}");
    for id in on2.iter().chain(&on3) {
        assert!(
            counts.get(id).copied().unwrap_or(0) >= 5,
            "replica {id} answered too few: {counts:?}"
        );
    }

    // The HTTP port too, through HTTP listeners on both sides (kept connections between them).
    let counts = count(&call_api_on(&hosts, &h1, &frontend, 8081, 40));
    eprintln!("40 calls on the HTTP port from {h1}: {counts:?}");
    assert_eq!(counts.get("FAIL"), None, "{counts:?}");
    for id in on2.iter().chain(&on3) {
        assert!(
            counts.get(id).copied().unwrap_or(0) >= 5,
            "replica {id} answered too few on the HTTP port: {counts:?}"
        );
    }
    let mesh_cfg = hosts.docker(&h1, &["exec", &mesh, "cat", "/tmp/convoy-mesh.cfg"]);
    assert!(
        mesh_cfg
            .contains("listen api_8081\n    bind :8081\n    balance roundrobin\n    mode http\n"),
        "{mesh_cfg}"
    );

    // A replica killed: the calls keep working once healed.
    hosts.docker(&h3, &["rm", "-f", &on3[0]]);
    t.convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    wait_until_calls_succeed(&hosts, &h1, &frontend, "api answers after the heal");
    let healed = api_ids(&hosts, &h3, &t);
    assert_eq!(healed.len(), 1);
    let counts = count(&call_api(&hosts, &h1, &frontend, 40));
    assert!(
        counts.get(&healed[0]).copied().unwrap_or(0) >= 5,
        "{counts:?}"
    );

    // The third host drained: both replicas on the second, calls still answered.
    fleet_file(&hosts, &t, Some(&h3));
    t.convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    assert!(api_ids(&hosts, &h3, &t).is_empty());
    assert_eq!(api_ids(&hosts, &h2, &t).len(), 2);
    wait_until_calls_succeed(&hosts, &h1, &frontend, "api answers after the drain");
    let counts = count(&call_api(&hosts, &h1, &frontend, 40));
    assert_eq!(counts.get("FAIL"), None, "{counts:?}");
    assert_eq!(counts.len(), 2, "both replicas on {h2} answer: {counts:?}");
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);
}

/// A mesh made by a pass answers from its own step on, not once the pass is over: here a
/// service on the caller's host holds the pass for 20 s (a `post_start` hook), and `api` on
/// the other hosts answers through the new mesh well before that, while `apply` still runs.
#[test]
fn a_new_mesh_answers_before_the_pass_ends() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    let (h1, h2, h3) = (
        hosts.names[0].clone(),
        hosts.names[1].clone(),
        hosts.names[2].clone(),
    );
    fleet_file(&hosts, &t, None);
    shop(&t, &h1, [&h2, &h3]);
    let file = format!("stacks/{}/compose.yaml", t.stack("shop"));
    let mut y = std::fs::read_to_string(t.path().join(&file)).unwrap();
    y.push_str(&format!(
        "  slow:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_signal: SIGKILL\n    \
         post_start:\n      - command: [\"sleep\", \"20\"]\n    x-convoy:\n      hosts: [{h1}]\n"
    ));
    t.write(&file, &y);
    let state = t.path().join("state").to_string_lossy().into_owned();
    let started = std::time::Instant::now();
    let mut apply = t.spawn_convoy(&["apply", "--state-dir", &state]);
    let frontend = t.cname("shop", "frontend", 1);
    let sock = format!("unix://{}", hosts.sock(&h1));
    let call = || {
        docker_try(&[
            "-H",
            &sock,
            "exec",
            &frontend,
            "sh",
            "-c",
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 api 8080 | tail -n1",
        ])
        .is_some_and(|body| body.len() == 12)
    };
    wait_for(
        "api answers through the new mesh",
        Duration::from_secs(60),
        call,
    );
    let answered_after = started.elapsed();
    let still_running = apply.try_wait().expect("poll apply").is_none();
    let out = apply.wait_with_output().expect("apply ends");
    Run::from(out).outcome(Outcome::Converged);
    eprintln!("api answered {answered_after:?} after the apply began");
    assert!(
        still_running && answered_after < Duration::from_secs(15),
        "the new mesh answered only {answered_after:?} after the apply began (apply still \
         running: {still_running}); the slow service's hook holds the pass for 20 s"
    );
}
