//! The web dashboard in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver by `webdriver.rs`) against a daemon that follows a
//! bare repository on the local engine. It logs in with the API token; the page lists the host
//! and the stack's replicas; a replica removed with `docker rm -f` shows as gone and comes back
//! on the page within 2 s of the heal; a rollout's batches show while they run; a broken commit
//! shows its located error; the console has no error; every request the browser made went to
//! the daemon's origin; and the first load is at most 150 KB.
//!
//! With `CONVOY_SCREENSHOTS=1` the main views are saved under `docs/` (else in the test's
//! directory, so taking them is tested all the same).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fleet::{HostCleanup, Hosts};
use crate::gitops::Repo;
use crate::harness::*;
use crate::webdriver::{self, Browser};

fn app(version: &str) -> String {
    format!(
        "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    \
         environment:\n      VERSION: \"{version}\"\n    deploy:\n      replicas: 3\n      \
         update_config:\n        parallelism: 1\n        monitor: 1s\n"
    )
}

/// Unix milliseconds of an engine time (`2024-01-01T10:00:00.123456789Z`), by `date`.
fn unix_ms(rfc3339: &str) -> i64 {
    let out = Command::new("date")
        .args(["-d", rfc3339, "+%s%3N"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a time: {rfc3339}"))
}

/// Where screenshots go.
fn shots(t: &TestFleet) -> PathBuf {
    if std::env::var_os("CONVOY_SCREENSHOTS").is_some() {
        project_root().join("docs")
    } else {
        t.path().join("shots")
    }
}

fn save(b: &Browser, dir: &std::path::Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let png = b.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(name), png).unwrap();
}

/// Records, in the page, every state the replica's row shows (`state container` at each
/// change of the live part), with the browser's time.
const WATCH_ROW: &str = r#"
const name = arguments[0];
window.__seen = [];
const look = () => {
  const row = document.querySelector(`[data-replica="${name}"]`);
  const flight = document.getElementById('in-flight');
  const s = row ? `${row.dataset.state} ${row.dataset.container}` : 'absent';
  const f = flight && flight.textContent.includes(name) ? ' in-flight' : '';
  const last = window.__seen[window.__seen.length - 1];
  if (!last || last.s !== s + f) window.__seen.push({s: s + f, at: Date.now()});
};
look();
new MutationObserver(look).observe(document.getElementById('live'), {childList: true, subtree: true});
return true;
"#;

#[test]
fn the_dashboard_shows_the_fleet_live_in_a_real_browser() {
    if !docker_available() {
        return;
    }
    if !webdriver::available() {
        assert!(
            !docker_required(),
            "the dashboard test needs chromium and chromium-driver (scripts/ensure-docker)"
        );
        return;
    }
    let started = Instant::now();
    let t = TestFleet::new();
    let token = format!("tok-{}-dash", t.id);
    let token_file = t.path().join("api-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let repo = Repo::new();
    let stack = t.stack("web");
    repo.write("convoy.yaml", &format!("fleet: {}\n", t.id));
    repo.write(&format!("stacks/{stack}/compose.yaml"), &app("1"));
    let c1 = repo.push("Deploy v1", &[]);
    let d = Daemon::follow(
        &t,
        &repo.url(),
        &["--api-token-file", &token_file.to_string_lossy()],
        &[],
    );
    let api = d.api();
    let names: Vec<String> = (1..=3).map(|i| t.cname("web", "app", i)).collect();
    wait_for("v1 running", Duration::from_secs(40), || {
        t.running().len() == 3
    });
    let dir = shots(&t);

    // Log in.
    let b = Browser::start(1200, 900);
    b.goto(&format!("{api}/"));
    assert!(
        b.url().ends_with("/login"),
        "sent to the login form: {}",
        b.url()
    );
    b.type_into("#token", "wrong");
    b.click("button[type=submit]");
    b.wait_js(
        "the refusal",
        Duration::from_secs(5),
        "return document.querySelector('.error') && document.querySelector('.error').textContent",
    );
    // The refusal is a 401, which the console reports: that entry, and only it, is expected.
    let refused: Vec<Value> = b
        .log("browser")
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(
        refused.iter().all(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("/login") && m.contains("401"))),
        "{refused:?}"
    );
    b.type_into("#token", &token);
    // (Not a main view: kept with the test's files.)
    save(&b, &t.path().join("shots"), "dashboard-login.png");
    b.click("button[type=submit]");
    b.wait_js(
        "the fleet page",
        Duration::from_secs(10),
        "return location.pathname === '/' && document.getElementById('live')",
    );
    // The session cookie is not readable by scripts (HttpOnly) and is not the token.
    assert_eq!(b.js("return document.cookie", json!([])), json!(""));

    // The host and the stack's replicas, live.
    b.wait_js(
        "the live stream",
        Duration::from_secs(5),
        "return document.getElementById('conn').textContent === 'live'",
    );
    let host = b.wait_js(
        "the host listed",
        Duration::from_secs(10),
        "const r = document.querySelector('[data-host]'); return r && r.dataset.state === 'connected' && r.textContent",
    );
    let host = host.as_str().unwrap().to_string();
    assert!(host.contains("local"), "{host}");
    assert!(host.contains("replicas"), "what runs there: {host}");
    let listed = b.wait_js(
        "the stack and its replicas",
        Duration::from_secs(10),
        &format!(
            "const s = document.querySelector('[data-stack=\"{stack}\"]'); \
             return s && s.querySelectorAll('[data-replica][data-state=running]').length === 3 && s.textContent"
        ),
    );
    assert!(listed.as_str().unwrap().contains("3/3 running"), "{listed}");
    for n in &names {
        let shown = b.js(
            "return document.querySelector(`[data-replica=\"${arguments[0]}\"]`).dataset.container",
            json!([n]),
        );
        assert_eq!(shown.as_str().unwrap(), &t.id_of(n)[..12], "{n}");
    }
    assert!(b
        .js(
            "return document.querySelector('#applied a').getAttribute('href')",
            json!([])
        )
        .as_str()
        .unwrap()
        .ends_with(&c1));
    // (The SSH fleet's test takes the fleet view for the docs.)
    save(&b, &t.path().join("shots"), "dashboard-fleet.png");

    // A replica removed by hand: gone on the page, then back within 2 s of the heal.
    let victim = &names[1];
    let old = t.id_of(victim);
    b.js(WATCH_ROW, json!([victim]));
    docker(&["rm", "-f", victim]);
    let mut new_id = String::new();
    wait_for("the heal", Duration::from_secs(20), || {
        new_id = docker_try(&["inspect", "-f", "{{.Id}}", victim]).unwrap_or_default();
        !new_id.is_empty() && new_id != old
    });
    let healed_at = unix_ms(&t.inspect(victim, "{{.State.StartedAt}}"));
    let short = new_id[..12].to_string();
    let back = b.wait_js(
        "the healed replica on the page",
        Duration::from_secs(10),
        &format!(
            "const s = window.__seen.find(x => x.s === 'running {short}'); return s ? s.at : null"
        ),
    );
    let seen_at = back.as_i64().unwrap();
    assert!(
        seen_at - healed_at <= 2000,
        "shown {} ms after the heal",
        seen_at - healed_at
    );
    let seen = b.js("return window.__seen.map(x => x.s)", json!([]));
    let states: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let gone = states
        .iter()
        .position(|s| s.starts_with("missing") || s.ends_with("in-flight"));
    let came_back = states.iter().position(|s| *s == format!("running {short}"));
    assert!(
        matches!((gone, came_back), (Some(g), Some(c)) if g < c),
        "gone, then back: {states:?}"
    );

    // The keyboard: "Sync now" is a real button; Enter on it asks for a pass (a CSRF-checked
    // POST from the page itself).
    b.js(
        "document.getElementById('sync-now').focus(); return true",
        json!([]),
    );
    let outline = b.js(
        "return document.activeElement.id + ' ' + getComputedStyle(document.activeElement).outlineStyle",
        json!([]),
    );
    assert!(
        outline.as_str().unwrap().starts_with("sync-now"),
        "{outline}"
    );
    b.send_keys_to_focused("\u{E007}");
    b.wait_js(
        "the requested pass",
        Duration::from_secs(10),
        "const l = document.getElementById('last-pass'); return location.pathname === '/' && l && l.textContent.includes('requested by api')",
    );
    // Dark mode follows the system's.
    let light = b.js(
        "return getComputedStyle(document.body).backgroundColor",
        json!([]),
    );
    b.emulate_dark(true);
    let dark = b.js(
        "return getComputedStyle(document.body).backgroundColor",
        json!([]),
    );
    assert_ne!(light, dark, "the dark palette applies");
    assert_eq!(dark, json!("rgb(15, 18, 23)"));
    save(&b, &dir, "dashboard-dark.png");
    b.emulate_dark(false);

    // A rollout: its batches show while they run.
    repo.write(&format!("stacks/{stack}/compose.yaml"), &app("2"));
    let c2 = repo.push("Deploy v2", &[]);
    let progress = b.wait_js(
        "the rollout's progress, a replica on the new spec",
        Duration::from_secs(20),
        &format!(
            "const r = document.querySelector('[data-rollout=\"{stack}/app\"]'); \
             return r && /batch \\d of 3/.test(r.textContent) && r.querySelector('.badge.new') \
             && r.querySelector('.badge.old') && r.textContent"
        ),
    );
    let progress = progress.as_str().unwrap().to_string();
    assert!(progress.contains("replicas updated"), "{progress}");
    assert!(
        progress.contains("new") || progress.contains("old"),
        "{progress}"
    );
    save(&b, &dir, "dashboard-rollout.png");
    // It ends: no rollout in flight, v2 in force, its three replicas running.
    b.wait_js(
        "the rollout's end",
        Duration::from_secs(30),
        &format!(
            "const a = document.querySelector('#applied a'); \
             return !document.querySelector('[data-rollout]') && a && a.getAttribute('href').endsWith('{c2}') \
             && document.querySelectorAll('[data-stack=\"{stack}\"] [data-replica][data-state=running]').length === 3"
        ),
    );

    // A broken commit: held, with its located error.
    repo.write(
        &format!("stacks/{stack}/compose.yaml"),
        "services:\n  app:\n    image: [broken\n",
    );
    let c3 = repo.push("Break it", &[]);
    let err = b.wait_js(
        "the located error",
        Duration::from_secs(20),
        "const p = document.getElementById('pending'); return p && p.querySelector('.loc') && p.textContent",
    );
    let err = err.as_str().unwrap().to_string();
    assert!(err.contains("invalid_commit"), "{err}");
    assert!(err.contains(&c3[..12]), "{err}");
    assert!(
        err.contains(&format!("stacks/{stack}/compose.yaml:4:1")),
        "located: {err}"
    );
    save(&b, &dir, "dashboard-invalid.png");

    // The history links a commit to its page.
    b.goto(&format!("{api}/history"));
    let link = b.wait_js(
        "the history's link to v2",
        Duration::from_secs(5),
        &format!(
            "const a = document.querySelector('a[href=\"/commit/{c2}\"]'); return a && a.href"
        ),
    );
    save(&b, &dir, "dashboard-history.png");
    b.goto(link.as_str().unwrap());
    let page = b.wait_js(
        "the commit's page",
        Duration::from_secs(10),
        "const c = document.getElementById('commit'); return c && c.textContent",
    );
    assert!(page.as_str().unwrap().contains("Deploy v2"), "{page}");
    // The diff view: `convoy diff`'s text (the branch's newest commit is held, and it says so).
    b.goto(&format!("{api}/diff"));
    let diff = b.wait_js(
        "the diff view",
        Duration::from_secs(30),
        "const d = document.getElementById('diff'); return d && d.textContent",
    );
    assert!(
        diff.as_str().unwrap().contains("held (invalid_commit)"),
        "{diff}"
    );

    // A phone-sized screen: the page fits its width.
    b.goto(&format!("{api}/"));
    b.resize(390, 844);
    b.wait_js(
        "the page again",
        Duration::from_secs(10),
        "return document.getElementById('pending')",
    );
    // (Polled: the window's new size reaches the layout a moment after the resize.)
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let overflow = b.js(
            "return window.innerWidth <= 400 && \
             document.documentElement.scrollWidth - document.documentElement.clientWidth",
            json!([]),
        );
        if overflow == json!(0) || overflow.as_i64().is_some_and(|o| o < 0) {
            break;
        }
        let wide = b.js(
            "const w = document.documentElement.clientWidth; \
             return [w, window.innerWidth, ...[...document.querySelectorAll('body *')].filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > w) \
               .map(e => e.tagName + '.' + e.className + ' ' + e.scrollWidth + '/' + e.clientWidth + ' ' + e.getBoundingClientRect().right + ' ' + (e.textContent || '').slice(0, 30))]",
            json!([]),
        );
        assert!(
            Instant::now() < deadline,
            "no sideways scroll on a phone: {overflow}: {wide}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    save(&b, &dir, "dashboard-phone.png");

    // The first load: page, style, script, icon, counted by their bodies (a cached style or
    // script transfers nothing, and counts all the same).
    let bytes = b.js(
        "const n = performance.getEntriesByType('navigation')[0]; \
         const rs = performance.getEntriesByType('resource'); \
         const names = rs.map(r => new URL(r.name).pathname); \
         if (!names.includes('/dash/style.css') || !names.includes('/dash/app.js')) return names.join(' '); \
         return fetch('/dash/icon.svg').then(r => r.text()).then(icon => \
           rs.reduce((s, r) => s + r.decodedBodySize, n.decodedBodySize) + icon.length)",
        json!([]),
    );
    eprintln!("first load: {bytes} bytes");
    assert!(
        bytes.as_i64().is_some_and(|n| n > 5000 && n <= 150 * 1024),
        "first load {bytes} bytes"
    );

    // No console error, and no request left the daemon's origin.
    let console: Vec<Value> = b
        .log("browser")
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .collect();
    assert!(console.is_empty(), "console errors: {console:?}");
    let mut urls = Vec::new();
    for e in b.log("performance") {
        let msg: Value =
            serde_json::from_str(e["message"].as_str().unwrap_or("{}")).unwrap_or_default();
        let params = &msg["message"]["params"];
        // The browser's own new-tab page (open before the first navigation) is not ours.
        let document = params["documentURL"].as_str().unwrap_or_default();
        if msg["message"]["method"] == "Network.requestWillBeSent"
            && !document.starts_with("chrome://")
            && !document.starts_with("chrome-untrusted://")
        {
            urls.push(
                params["request"]["url"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    assert!(urls.len() > 5, "the network log: {urls:?}");
    let foreign: Vec<&String> = urls
        .iter()
        .filter(|u| !u.starts_with(&format!("{api}/")) && u.as_str() != api)
        .collect();
    assert!(
        foreign.is_empty(),
        "requests to another origin: {foreign:?}"
    );
    drop(b);
    assert_eq!(d.stop(), 0);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(90), "took {took:?}");
}

/// On the 3-host SSH test fleet: every host listed with what its engine reports and what it
/// runs; a host cut from the network shows as unreachable, then down with the time since when.
#[test]
fn the_dashboard_lists_the_ssh_fleet_and_a_host_going_down() {
    let Some(hosts) = Hosts::get() else { return };
    if !webdriver::available() {
        assert!(
            !docker_required(),
            "the dashboard test needs chromium and chromium-driver (scripts/ensure-docker)"
        );
        return;
    }
    let t = TestFleet::new();
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let fleet_file = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
    t.write("convoy.yaml", &format!("{fleet_file}host_down_after: 2s\n"));
    let _clean = HostCleanup(&hosts, t.id.clone());
    t.compose(
        "web",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    stop_grace_period: 1s\n    \
             deploy:\n      replicas: 3\n"
        ),
    );
    // A replica that keeps failing, and prints a secret as it goes.
    let secret = format!("s3cret-{}-pw", t.id);
    t.compose(
        "bad",
        &format!(
            "services:\n  crash:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo connecting with $$DB_PASSWORD; echo giving up; exit 3\"]\n    \
             restart: always\n    environment:\n      DB_PASSWORD: {secret}\n"
        ),
    );
    let token = format!("tok-{}-dash", t.id);
    let token_file = t.path().join("api-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let d = Daemon::start(&t, &["--api-token-file", &token_file.to_string_lossy()]);
    let api = d.api();
    let b = Browser::start(1200, 800);
    b.goto(&format!("{api}/login"));
    b.type_into("#token", &token);
    b.click("button[type=submit]");
    let rows = b.wait_js(
        "three connected hosts with their engines' facts",
        Duration::from_secs(40),
        "const rows = [...document.querySelectorAll('[data-host]')]; \
         return rows.length === 3 && rows.every(r => r.dataset.state === 'connected' && / ms/.test(r.textContent) \
           && /GiB/.test(r.textContent) && /replica/.test(r.textContent)) && rows.map(r => r.textContent)",
    );
    for (row, name) in rows.as_array().unwrap().iter().zip(&hosts.names) {
        let text = row.as_str().unwrap();
        assert!(text.starts_with(name.as_str()), "{text}");
        let version = hosts.docker(name, &["version", "-f", "{{.Server.Version}}"]);
        assert!(text.contains(version.trim()), "{version} in {text}");
    }
    let stack = t.stack("web");
    b.wait_js(
        "the stack's replicas running",
        Duration::from_secs(20),
        &format!(
            "return document.querySelectorAll('[data-stack=\"{stack}\"] [data-replica][data-state=running]').length === 3"
        ),
    );
    save(&b, &shots(&t), "dashboard-ssh-fleet.png");

    // The failing replica: a crash loop, its last lines shown with the secret masked.
    let crash = t.cname("bad", "crash", 1);
    let logs = b.wait_js(
        "the crash loop's last lines",
        Duration::from_secs(40),
        &format!(
            "const r = document.querySelector('[data-replica=\"{crash}\"]'); \
             const l = [...document.querySelectorAll('details.logs')].find(d => d.textContent.includes('{crash}')); \
             return r && /crash loop|restarting|exit 3/.test(r.textContent) && l && l.textContent.includes('giving up') && l.textContent"
        ),
    );
    let logs = logs.as_str().unwrap();
    assert!(logs.contains("connecting with (secret)"), "masked: {logs}");
    let page = b.js("return document.documentElement.outerHTML", json!([]));
    assert!(
        !page.as_str().unwrap().contains(&secret),
        "the secret never reaches the page"
    );
    b.js(
        "document.querySelector('details.logs').scrollIntoView({block: 'center'}); return true",
        json!([]),
    );
    save(&b, &shots(&t), "dashboard-crash-loop.png");

    // host3 cut from the network: unreachable, then down, with since when.
    hosts.cut(3);
    // (The host's state and its facts are published one after the other: polled together.)
    let row = b.wait_js(
        "host3 down, since when",
        Duration::from_secs(40),
        "const r = document.querySelector('[data-host=\"host3\"]'); \
         return r && r.dataset.state === 'down' && / since .* ago/.test(r.textContent) && r.textContent",
    );
    assert!(
        row.as_str().unwrap().contains("–"),
        "no round trip to a silent host: {row}"
    );
    drop(b);
    hosts.heal(3);
    assert_eq!(d.stop(), 0);
}
