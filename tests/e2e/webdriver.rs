//! A small WebDriver client for the dashboard's browser tests: Debian's `chromedriver` on a
//! loopback port, driving headless Chromium with a temporary profile of its own. HTTP/1.1 over
//! `std::net::TcpStream` with JSON bodies (no client crate: the protocol needs a handful of
//! calls). Both processes are killed when the `Browser` is dropped (chromedriver is started in
//! a process group of its own, and the group is what is killed), and the profile is deleted.
//!
//! It talks to loopback only: chromedriver, and the pages the test opens.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether Debian's chromium and chromedriver are installed.
pub fn available() -> bool {
    std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists()
}

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One HTTP request to chromedriver; the JSON answer.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    try_request(port, method, path, body).unwrap_or_else(|e| panic!("{e}"))
}

/// `request`, with a WebDriver error as `Err` (its code and message).
fn try_request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(payload.as_bytes()).unwrap();
    // chromedriver may keep the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).expect("chromedriver's answer");
        assert!(n > 0, "chromedriver closed the connection early");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => {
            while raw.len() < head_end + len {
                let n = s.read(&mut buf).expect("chromedriver's answer");
                assert!(n > 0, "chromedriver closed the connection early");
                raw.extend_from_slice(&buf[..n]);
            }
            raw.truncate(head_end + len);
        }
        None => {
            s.read_to_end(&mut raw).expect("chromedriver's answer");
        }
    }
    let body = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(&body)
    } else {
        body
    };
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}: {head}\n{body}"));
    if let Some(err) = v["value"]["error"].as_str() {
        return Err(format!(
            "chromedriver {method} {path}: {err}: {}",
            v["value"]["message"]
        ));
    }
    Ok(v["value"].clone())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

impl Browser {
    /// Headless Chromium at `width`×`height`, its console and network logged.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a profile directory");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let args = vec![
            "--headless=new".to_string(),
            // Root in a container: Chromium's sandbox needs user namespaces it may not have.
            "--no-sandbox".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--hide-scrollbars".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
        }}});
        let v = request(port, "POST", "/session", Some(&caps));
        b.session = v["sessionId"].as_str().expect("a session id").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        request(self.port, method, &path, body.as_ref())
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; its return value.
    pub fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    fn element(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{css}`: {v}"))
            .to_string()
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Types `keys` (WebDriver key codes allowed: `\u{E007}` is Enter) into the focused element.
    /// A live update may replace the element between the two calls: then it is found again.
    pub fn send_keys_to_focused(&self, keys: &str) {
        for _ in 0..20 {
            let v = self.call("GET", "/element/active", None);
            let e = v[ELEMENT].as_str().expect("a focused element").to_string();
            let path = format!("/session/{}/element/{e}/value", self.session);
            match try_request(self.port, "POST", &path, Some(&json!({ "text": keys }))) {
                Ok(_) => return,
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the focused element kept going stale");
    }

    /// Emulates `prefers-color-scheme: dark` (or light) through the DevTools protocol.
    pub fn emulate_dark(&self, dark: bool) {
        let value = if dark { "dark" } else { "light" };
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": value}]
            }})),
        );
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let b64 = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("base64 PNG")
    }

    /// Log entries of `kind` (`browser`: the console; `performance`: DevTools events) since the
    /// last read.
    pub fn log(&self, kind: &str) -> Vec<Value> {
        self.call("POST", "/se/log", Some(json!({ "type": kind })))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls `script` until it returns something truthy or `timeout` passes; its last value.
    pub fn wait_js(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script, json!([]));
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what} (last: {v})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let (port, path) = (self.port, format!("/session/{}", self.session));
            // Ends Chromium; the group kill below is what guarantees it.
            let _ = std::panic::catch_unwind(move || request(port, "DELETE", &path, None));
        }
        let pgid = self.driver.id() as i32;
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
