//! Ingress on a host without a replica (issue 13): a service allowed on two hosts, with one
//! replica, has its published port held by the proxies of both; the host without the replica
//! sends to the other's cross-host listener (the backup servers of `core::proxy::render`), so
//! the port answers on both hosts, and on neither of the others (the service may not run
//! there, so their proxies do not hold it). When the port moves, `diff` says the proxies
//! reload with it, from what their configurations hold. Real nginx behind real HAProxy.

use std::net::SocketAddr;
use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;
use crate::proxy::body_at;

const NGINX: &str = "convoy-test/nginx:1";
const PROXY: &str = "convoy-test/proxy:1";
const PORT: u16 = 18483;

/// Stack `lone`: one nginx replica allowed on `h1` and `h2`, its `port` held by the proxies.
fn lone(t: &TestFleet, h1: &str, h2: &str, port: u16) {
    t.compose(
        "lone",
        &format!(
            "services:\n  web:\n    image: {NGINX}\n    command: [\"sh\", \"-c\", \"echo lone > /var/www/html/index.html && exec nginx -g 'daemon off;'\"]\n    \
             ports: [\"{port}:80\"]\n    x-convoy:\n      ingress: true\n      hosts: [{h1}, {h2}]\n"
        ),
    );
}

#[test]
fn a_host_without_a_replica_sends_its_ingress_to_the_host_with_one() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_proxy_fleet_file(&t, &format!("  image: {PROXY}\n"));
    let (h1, h2, h3) = (&hosts.names[0], &hosts.names[1], &hosts.names[2]);
    lone(&t, h1, h2, PORT);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let addr = |h: &str| -> SocketAddr {
        format!(
            "{}:{PORT}",
            hosts.env[&format!("{}_ADDR", h.to_uppercase())]
        )
        .parse()
        .unwrap()
    };
    let with: Vec<&String> = [h1, h2]
        .into_iter()
        .filter(|h| {
            hosts
                .fleet_containers(h, &t.id)
                .iter()
                .any(|n| n.contains("-web-"))
        })
        .collect();
    assert_eq!(with.len(), 1, "one replica, on {h1} or {h2}: {with:?}");
    for h in [h1, h2] {
        wait_for(
            &format!("the page through {h}'s proxy"),
            Duration::from_secs(30),
            || body_at(addr(h)).as_deref() == Some("lone"),
        );
    }
    // The third host's proxy holds nothing for a service that may not run there.
    assert_eq!(body_at(addr(h3)), None, "{h3} answers on {PORT}");
    // What the proxies' configurations hold is read back: in sync once applied.
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    // The port moves: a reload of the two proxies, said as their own lines, no replica touched.
    lone(&t, h1, h2, PORT + 1);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    let mut lines: Vec<&str> = diff
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines.retain(|l| l.starts_with(['+', '-', '~', '>']));
    let mut want: Vec<String> = [h1, h2]
        .iter()
        .map(|h| format!("~ proxy on host {h}  (reload: + :{}, - :{PORT})", PORT + 1))
        .collect();
    want.sort();
    assert_eq!(lines, want, "{}", diff.stdout);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    let moved: SocketAddr = format!("{}:{}", addr(h1).ip(), PORT + 1).parse().unwrap();
    wait_for("the page on the new port", Duration::from_secs(30), || {
        body_at(moved).as_deref() == Some("lone")
    });
    assert_eq!(body_at(addr(h1)), None, "the old port is let go");
}
