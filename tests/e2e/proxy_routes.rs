//! Several services behind one published port (issue 13): `x-convoy.ingress` with host names
//! and a path puts the port's listener in HTTP mode, and real HAProxy sends each request to the
//! service whose host name and path it matches, the longest path first; a host name no service
//! claims gets HAProxy's 503, not some service's page. Real nginx behind real HAProxy, requests
//! from the test machine with the `Host` header a browser sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

const NGINX: &str = "convoy-test/nginx:1";
const PROXY: &str = "convoy-test/proxy:1";
const PORT: u16 = 18493;

/// `GET path` with `Host: host` on a fresh connection: (status code, body) once answered.
fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .trim()
        .to_string();
    Some((code, body))
}

#[test]
fn services_share_a_port_by_host_name_and_path() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_proxy_fleet_file(&t, &format!("  image: {PROXY}\n"));
    let h1 = &hosts.names[0];
    // `api` answers for shop.example under /api, `site` for shop.example and any name under
    // site.example; both on the same published port of the same host.
    let page = |name: &str, dir: &str| {
        format!(
            "    image: {NGINX}\n    command: [\"sh\", \"-c\", \"mkdir -p /var/www/html{dir} && echo {name} > /var/www/html{dir}/index.html && exec nginx -g 'daemon off;'\"]\n    ports: [\"{PORT}:80\"]\n"
        )
    };
    t.compose(
        "routes",
        &format!(
            "services:\n  api:\n{}    x-convoy:\n      hosts: [{h1}]\n      ingress: {{hosts: [shop.example], path: /api}}\n  site:\n{}    x-convoy:\n      hosts: [{h1}]\n      ingress: {{hosts: [shop.example, \"*.site.example\"]}}\n",
            page("api", "/api"),
            page("site", ""),
        ),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let addr: SocketAddr = format!(
        "{}:{PORT}",
        hosts.env[&format!("{}_ADDR", h1.to_uppercase())]
    )
    .parse()
    .unwrap();
    wait_for(
        "the api page by host and path",
        Duration::from_secs(30),
        || get(addr, "shop.example", "/api/") == Some((200, "api".into())),
    );
    // The path chooses between the two services of one host name; the port in `Host` is
    // ignored, and host names match without regard to case.
    assert_eq!(get(addr, "shop.example", "/"), Some((200, "site".into())));
    assert_eq!(
        get(addr, "Shop.Example:18493", "/api/index.html"),
        Some((200, "api".into()))
    );
    // `/apis` is not under `/api`.
    assert_eq!(
        get(addr, "shop.example", "/apis").map(|(c, _)| c),
        Some(404)
    );
    // A wildcard name, and a name nobody claims.
    assert_eq!(
        get(addr, "www.site.example", "/"),
        Some((200, "site".into()))
    );
    assert_eq!(get(addr, "other.example", "/").map(|(c, _)| c), Some(503));
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}
