//! The example repository that the README's first command applies (`examples-repo/`) keeps
//! working: copied into a test fleet (its own fleet id, stack names and a free port, so it never
//! meets a user's own run of the example on this machine), it validates, applies, serves its
//! page from nginx on the published port, its worker reaches `web` by name, and a second apply
//! finds it in sync.
//!
//! The local engine only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// One HTTP/1.0 GET on loopback: the status line and headers, and the body.
fn get(port: u16) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

#[test]
fn the_example_repository_applies_and_serves_its_page_from_nginx() {
    if !docker_available() {
        return;
    }
    let status = Command::new("bash")
        .arg(project_root().join("scripts/test-image"))
        .arg("nginx")
        .status()
        .expect("scripts/test-image");
    assert!(status.success(), "scripts/test-image nginx failed");

    let t = TestFleet::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let examples = project_root().join("examples-repo");
    let fleet = std::fs::read_to_string(examples.join("convoy.yaml")).expect("convoy.yaml");
    assert!(fleet.contains("\nfleet: example\n"), "{fleet}");
    t.write(
        "convoy.yaml",
        &fleet.replace("\nfleet: example\n", &format!("\nfleet: {}\n", t.id)),
    );
    let mut stacks = 0;
    for entry in std::fs::read_dir(examples.join("stacks")).expect("stacks/") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        let yaml =
            std::fs::read_to_string(examples.join("stacks").join(&name).join("compose.yaml"))
                .expect("compose.yaml");
        t.compose(
            &name,
            &yaml.replace("127.0.0.1:18080:", &format!("127.0.0.1:{port}:")),
        );
        stacks += 1;
    }
    assert!(stacks >= 2, "the example has its stacks");

    t.convoy(&["validate"]).outcome(Outcome::Valid);
    t.convoy(&["apply"]).outcome(Outcome::Converged);

    // Real nginx answers on the published port with the page the command wrote.
    let (head, body) = get(port).expect("the example's web answers");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_lowercase().contains("server: nginx"), "{head}");
    assert_eq!(body.trim(), "hello from convoy");
    // The worker reaches `web` by its service name on the stack's network.
    let worker = t.cname("web", "worker", 1);
    wait_for(
        "the worker to fetch the page",
        Duration::from_secs(30),
        || docker_try(&["logs", &worker]).is_some_and(|l| l.contains("hello from convoy")),
    );
    // Both tickers write to the shared volume.
    assert_eq!(t.running().len(), 4, "{:?}", t.running());

    t.convoy(&["diff"]).outcome(Outcome::InSync);
}
