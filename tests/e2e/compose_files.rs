//! Files from the repository on the 3-host fleet over SSH: a web server serving a folder and a
//! config shipped from the repository, a changed config replacing exactly the services that
//! mount it, a wiped files folder shipped again; a secret readable in the container, kept on a
//! tmpfs only and out of every output.
//!
//! The test gives every host its own `files_dir`/`secrets_dir` (the hosts share one file
//! system) in a temporary folder (secrets: under /dev/shm, a tmpfs every namespace sees);
//! `HostCleanup` removes the containers, the folders go with their `TempDir`. One test, one
//! convergence, for both the files and the secret: fleet tests run one at a time.

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// `convoy.yaml` over all hosts, each with its own files and secrets folders under `dir` and
/// `shm`.
pub(crate) fn fleet_file(
    hosts: &Hosts,
    t: &TestFleet,
    dir: &std::path::Path,
    shm: &std::path::Path,
) {
    let mut y = format!(
        "fleet: {}\nssh:\n  user: root\n  identity_file: {}\n  known_hosts: {}\nhosts:\n",
        t.id,
        hosts.env["FLEET_SSH_KEY"],
        hosts.known_hosts()
    );
    for h in &hosts.names {
        y.push_str(&format!(
            "  {h}:\n    address: ssh://root@{}\n    docker_socket: {}\n    files_dir: {}/{h}\n    secrets_dir: {}/{h}\n",
            hosts.env[&format!("{}_ADDR", h.to_uppercase())],
            hosts.sock(h),
            dir.display(),
            shm.display(),
        ));
    }
    t.write("convoy.yaml", &y);
}

fn state(t: &TestFleet) -> String {
    t.path().join("state").to_string_lossy().into_owned()
}

/// The host a replica runs on.
fn host_of(hosts: &Hosts, t: &TestFleet, name: &str) -> String {
    hosts
        .names
        .iter()
        .find(|h| hosts.fleet_containers(h, &t.id).contains(&name.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("{name} runs nowhere"))
}

/// Stack `web`: `app` serves `www/` with the `httpd` config, `other` mounts `www/` only. Both
/// are replaced in the test and stop on SIGTERM only after their grace period (PID 1 ignores
/// it), so the period is short.
fn web_stack(t: &TestFleet) {
    t.compose(
        "web",
        &format!(
            "configs:\n  httpd:\n    file: ./httpd.conf\nservices:\n  app:\n    image: {IMAGE}\n    command: [httpd, -f, -p, \"8080\", -h, /www, -c, /httpd]\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{monitor: 0s}}\n    volumes:\n      - ./www:/www:ro\n    configs: [httpd]\n  other:\n    image: {IMAGE}\n    command: [sleep, \"3600\"]\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{monitor: 0s}}\n    volumes:\n      - ./www:/www:ro\n"
        ),
    );
}

fn page(hosts: &Hosts, host: &str, name: &str) -> Option<String> {
    let h = format!("unix://{}", hosts.sock(host));
    docker_try(&[
        "-H",
        &h,
        "exec",
        name,
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/index.html",
    ])
}

fn t_id(hosts: &Hosts, host: &str, name: &str) -> String {
    hosts
        .docker(host, &["inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

/// Stack `db`: one service reading secret `pw` from `pw.txt`.
fn secret_stack(t: &TestFleet, value: &str) {
    t.write(&format!("stacks/{}/pw.txt", t.stack("db")), value);
    t.compose(
        "db",
        &format!(
            "secrets:\n  pw:\n    file: ./pw.txt\nservices:\n  app:\n    image: {IMAGE}\n    command: [sleep, \"3600\"]\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{monitor: 0s}}\n    secrets: [pw]\n"
        ),
    );
}

/// Both halves on one converged fleet (each convergence from scratch costs the serial fleet
/// tests their time): a web server serves a folder and a config shipped from the repository,
/// a changed config replaces exactly the service that mounts it, a wiped files folder is
/// shipped again; a secret is readable in its container, in no output and on no persistent
/// path, and a changed one replaces exactly its user, its diff naming no value.
#[test]
fn files_and_a_secret_from_the_repository_reach_the_hosts_and_a_change_replaces_only_its_users() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    let dir = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    fleet_file(&hosts, &t, dir.path(), shm.path());
    t.write(
        &format!("stacks/{}/www/index.html", t.stack("web")),
        "<p>shipped</p>\n",
    );
    t.write(&format!("stacks/{}/httpd.conf", t.stack("web")), "H:/www\n");
    web_stack(&t);
    let value = "pw-e2e-7f3a9c51";
    secret_stack(&t, value);
    t.convoy(&["validate"]).outcome(Outcome::Valid);
    let apply = t
        .convoy(&["apply", "--state-dir", &state(&t)])
        .outcome(Outcome::Converged);
    let app = t.cname("web", "app", 1);
    let other = t.cname("web", "other", 1);
    let db = t.cname("db", "app", 1);
    let host = host_of(&hosts, &t, &app);
    let other_host = host_of(&hosts, &t, &other);
    let db_host = host_of(&hosts, &t, &db);
    wait_for("the page", std::time::Duration::from_secs(20), || {
        page(&hosts, &host, &app).is_some_and(|p| p.contains("shipped"))
    });

    // The secret: readable in its container, in no output.
    assert_eq!(
        hosts
            .docker(&db_host, &["exec", &db, "cat", "/run/secrets/pw"])
            .trim(),
        value
    );
    let json = t.convoy(&["diff", "--output", "json", "--state-dir", &state(&t)]);
    for out in [&apply.stdout, &apply.stderr, &json.stdout, &json.stderr] {
        assert!(!out.contains(value), "{out}");
    }
    // Not on any persistent path: the fleet's folder and the files folders hold it only in
    // the repository file the test wrote.
    let grep = std::process::Command::new("grep")
        .args(["-rl", value])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        grep.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&grep.stdout)
    );

    // Converged: a second apply changes nothing.
    t.convoy(&["diff", "--state-dir", &state(&t)])
        .outcome(Outcome::InSync);
    let app_id = t_id(&hosts, &host, &app);
    let other_id = t_id(&hosts, &other_host, &other);
    let db_id = t_id(&hosts, &db_host, &db);
    t.convoy(&["apply", "--state-dir", &state(&t)])
        .outcome(Outcome::Converged);
    assert_eq!(t_id(&hosts, &host, &app), app_id);
    assert_eq!(t_id(&hosts, &db_host, &db), db_id);

    // A changed config replaces exactly the service that mounts it, named in the diff.
    t.write(
        &format!("stacks/{}/httpd.conf", t.stack("web")),
        "H:/www\n# changed\n",
    );
    let diff = t.convoy(&["diff", "--state-dir", &state(&t)]);
    assert!(
        diff.stdout
            .contains("config httpd at /httpd (content changed)"),
        "{}",
        diff.stdout
    );
    t.convoy(&["apply", "--state-dir", &state(&t)])
        .outcome(Outcome::Converged);
    assert_ne!(t_id(&hosts, &host, &app), app_id);
    assert_eq!(t_id(&hosts, &other_host, &other), other_id);
    assert_eq!(t_id(&hosts, &db_host, &db), db_id);
    let app_id = t_id(&hosts, &host, &app);
    // The old config's folder is gone: only what containers use is kept.
    let kept = std::fs::read_dir(dir.path().join(&host).join(&t.id))
        .unwrap()
        .count();
    assert!(kept <= 2, "{kept} folders kept on {host}");

    // A changed secret replaces exactly its user; the diff says so without the value.
    t.write(
        &format!("stacks/{}/pw.txt", t.stack("db")),
        "pw-e2e-second-1",
    );
    let diff = t.convoy(&["diff", "--state-dir", &state(&t)]);
    assert!(diff.stdout.contains("(secret changed)"), "{}", diff.stdout);
    assert!(!diff.stdout.contains("pw-e2e-second-1"));
    t.convoy(&["apply", "--state-dir", &state(&t)])
        .outcome(Outcome::Converged);
    assert_ne!(t_id(&hosts, &db_host, &db), db_id);
    assert_eq!(t_id(&hosts, &host, &app), app_id);
    assert_eq!(t_id(&hosts, &other_host, &other), other_id);
    assert_eq!(
        hosts
            .docker(&db_host, &["exec", &db, "cat", "/run/secrets/pw"])
            .trim(),
        "pw-e2e-second-1"
    );

    // A wiped files folder is shipped again and its users made anew.
    std::fs::remove_dir_all(dir.path().join(&host)).unwrap();
    let diff = t.convoy(&["diff", "--state-dir", &state(&t)]);
    assert!(diff.stdout.contains("files missing"), "{}", diff.stdout);
    t.convoy(&["apply", "--state-dir", &state(&t)])
        .outcome(Outcome::Converged);
    assert_ne!(t_id(&hosts, &host, &app), app_id);
    wait_for("the page again", std::time::Duration::from_secs(20), || {
        page(&hosts, &host, &app).is_some_and(|p| p.contains("shipped"))
    });
    t.convoy(&["diff", "--state-dir", &state(&t)])
        .outcome(Outcome::InSync);
}
