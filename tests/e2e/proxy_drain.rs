//! A drain waits for the requests under way (issue 13): a slow request through the host's
//! proxy to a replica that a start-first update replaces completes, because the replica is
//! stopped only once the proxy's old worker (the configuration before the drain) has no
//! connection to it left. The replica is busybox httpd with a CGI that takes seconds, and
//! busybox dies at once on SIGTERM: without the wait, the stop would cut the request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

const PROXY: &str = "convoy-test/proxy:1";
const PORT: u16 = 18482;
/// How long the slow request takes: longer than the update needs to reach the drain.
const SLOW_SECS: u64 = 6;

fn stack(t: &TestFleet, h1: &str, version: &str) {
    t.compose(
        "slow",
        &format!(
            "services:\n  web:\n    image: {IMAGE}\n    environment:\n      V: {version}\n      \
             SLOW: |\n        #!/bin/sh\n        touch /tmp/started\n        sleep {SLOW_SECS}\n        \
             printf 'Content-Type: text/plain\\r\\n\\r\\nslow done %s\\n' \"$(cat /www/version)\"\n    \
             command: [\"sh\", \"-c\", \"mkdir -p /www/cgi-bin && echo \\\"$$SLOW\\\" > /www/cgi-bin/slow && \
             chmod +x /www/cgi-bin/slow && echo ok > /www/index.html && echo $$V > /www/version && exec httpd -f -p 8080 -h /www\"]\n    \
             stop_grace_period: 20s\n    stop_signal: SIGKILL\n    ports: [\"{PORT}:8080\"]\n    deploy:\n      update_config:\n        \
             order: start-first\n    x-convoy:\n      ingress: true\n      hosts: [{h1}]\n"
        ),
    );
}

/// `GET <path>` over a fresh connection: the answer and when it ended.
fn get(addr: SocketAddr, path: &str) -> Result<(String, SystemTime), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: web\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    Ok((
        String::from_utf8_lossy(&answer).into_owned(),
        SystemTime::now(),
    ))
}

#[test]
fn a_drain_lets_a_request_under_way_finish_before_the_replica_stops() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_proxy_fleet_file(&t, &format!("  image: {PROXY}\n"));
    let h1 = hosts.names[0].clone();
    let ip = hosts.env[&format!("{}_ADDR", h1.to_uppercase())].clone();
    let addr: SocketAddr = format!("{ip}:{PORT}").parse().unwrap();

    stack(&t, &h1, "v1");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    wait_for(
        "the page through the proxy",
        Duration::from_secs(60),
        || get(addr, "/").is_ok_and(|(a, _)| a.starts_with("HTTP/1.") && a.contains("ok")),
    );
    let replica = format!("{}-slow-web-1", t.id);
    let replica = hosts
        .fleet_containers(&h1, &t.id)
        .into_iter()
        .find(|n| n.ends_with("-web-1") || *n == replica)
        .expect("the replica on host 1");

    let old_id = hosts.docker(&h1, &["inspect", "-f", "{{.Id}}", &replica]);
    let old_id = old_id.trim().to_string();
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The slow request, under way in the replica before the update starts.
    let slow = std::thread::spawn(move || get(addr, "/cgi-bin/slow"));
    let sock = format!("unix://{}", hosts.sock(&h1));
    wait_for(
        "the slow request in the replica",
        Duration::from_secs(10),
        || docker_try(&["-H", &sock, "exec", &replica, "test", "-f", "/tmp/started"]).is_some(),
    );
    stack(&t, &h1, "v2");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let (answer, ended) = slow.join().unwrap().expect("the slow request");
    assert!(
        answer.contains("slow done v1"),
        "the request under way was cut: {answer:?}"
    );

    // The replica it went to stopped after it ended, not before: the engine's `die` event.
    let until = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let died = hosts.docker(
        &h1,
        &[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--filter",
            &format!("container={old_id}"),
            "--filter",
            "event=die",
            "--format",
            "{{.TimeNano}}",
        ],
    );
    let died: u128 = died
        .trim()
        .parse()
        .expect("one `die` event of the old replica");
    let ended = ended
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    assert!(
        died + 500_000_000 >= ended,
        "the replica died {} ms before the request ended",
        (ended - died) / 1_000_000
    );
    // And the new version answers through the proxy.
    wait_for("v2 through the proxy", Duration::from_secs(30), || {
        get(addr, "/cgi-bin/slow").is_ok_and(|(a, _)| a.contains("slow done v2"))
    });
}
