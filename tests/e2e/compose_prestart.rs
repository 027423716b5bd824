//! Compose's `pre_start` lifecycle hook on the SSH fleet: each hook runs in a one-off
//! container of the service's image, with the replica's named volume, before the replica
//! starts (the replica's own command reads what the hook wrote, and fails without it); the
//! hook containers are gone afterwards; a second apply runs nothing; a failing hook fails the
//! step with an error naming the hook and its last lines, and the replica is never started.
//!
//! Everything made is the test fleet's: its containers and networks are removed by
//! `HostCleanup`, its volumes and any hook container left by a failure by `Leftovers`.

use crate::harness::*;

/// Removes this fleet's volumes and `pre_start` containers from every host; declared before
/// `HostCleanup` so that it drops after it (a volume in use cannot be removed).
struct Leftovers<'a>(&'a crate::fleet::Hosts, String);

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        for h in &self.0.names {
            let sock = format!("unix://{}", self.0.sock(h));
            let hooks = format!("label=convoy.pre_start.fleet={}", self.1);
            if let Some(ids) = docker_try(&["-H", &sock, "ps", "-aq", "--filter", &hooks]) {
                for id in ids.split_whitespace() {
                    let _ = docker_try(&["-H", &sock, "rm", "-f", id]);
                }
            }
            let owned = format!("label=convoy.fleet={}", self.1);
            if let Some(vols) = docker_try(&["-H", &sock, "volume", "ls", "-q", "--filter", &owned])
            {
                for v in vols.split_whitespace() {
                    let _ = docker_try(&["-H", &sock, "volume", "rm", v]);
                }
            }
        }
    }
}

/// The host of the fleet that runs `name`.
fn host_of(hosts: &crate::fleet::Hosts, fleet: &str, name: &str) -> String {
    hosts
        .names
        .iter()
        .find(|h| hosts.fleet_containers(h, fleet).iter().any(|n| n == name))
        .unwrap_or_else(|| panic!("{name} runs on no host"))
        .clone()
}

/// The `pre_start` containers of fleet `fleet` on every host, whatever their state.
fn hook_containers(hosts: &crate::fleet::Hosts, fleet: &str) -> Vec<String> {
    hosts
        .names
        .iter()
        .flat_map(|h| {
            hosts
                .docker(
                    h,
                    &[
                        "ps",
                        "-a",
                        "--filter",
                        &format!("label=convoy.pre_start.fleet={fleet}"),
                        "--format",
                        "{{.Names}}",
                    ],
                )
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn pre_start_runs_before_the_replica_and_a_failing_one_keeps_it_from_starting() {
    let Some(hosts) = crate::fleet::Hosts::get() else {
        return;
    };
    let t = TestFleet::new();
    let _leftovers = Leftovers(&hosts, t.id.clone());
    let _cleanup = crate::fleet::HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let state = t.path().join("state").to_string_lossy().into_owned();
    // The replica's command fails at once when the hook's file is not there when it starts,
    // and keeps what it found in its own filesystem (not the volume).
    t.compose(
        "ps",
        &format!(
            r#"
services:
  app:
    image: {IMAGE}
    command: sh -c 'cat /data/prepared > /tmp/seen-at-start || exit 1; exec sleep 3600'
    restart: "no"
    environment: [VERSION=1]
    volumes: [data:/data]
    pre_start:
      - command: sh -c 'echo run >> /data/runs; echo prepared-$$VERSION-$$HOOK_VAR > /data/prepared'
        environment: [HOOK_VAR=from-hook, API_TOKEN=not-shown-anywhere]
      - command: ["sh", "-c", "pwd > /data/hook_dir"]
        working_dir: /data
volumes:
  data: {{}}
"#
        ),
    );
    let run = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!all.contains("not-shown-anywhere"), "{all}");
    let name = t.cname("ps", "app", 1);
    let host = host_of(&hosts, &t.id, &name);
    assert_eq!(
        hosts.docker(&host, &["inspect", "-f", "{{.State.Status}}", &name]),
        "running"
    );
    // What the replica found when it started: the hook ran first, with the service's
    // environment and its own.
    assert_eq!(
        hosts.docker(&host, &["exec", &name, "cat", "/tmp/seen-at-start"]),
        "prepared-1-from-hook"
    );
    // The second hook ran after the first, in its working folder.
    assert_eq!(
        hosts.docker(&host, &["exec", &name, "cat", "/data/hook_dir"]),
        "/data"
    );
    assert_eq!(hook_containers(&hosts, &t.id), Vec::<String>::new());
    let id = hosts.docker(&host, &["inspect", "-f", "{{.Id}}", &name]);

    // Converged: a second apply neither replaces the replica nor runs a hook again.
    let again = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(
        hosts.docker(&host, &["inspect", "-f", "{{.Id}}", &name]),
        id
    );
    assert_eq!(
        hosts.docker(&host, &["exec", &name, "cat", "/data/runs"]),
        "run"
    );
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::InSync);

    // A failing hook: the step fails naming the hook, with its last lines, and the replica
    // never runs (it is removed unstarted, so the next pass tries again).
    t.compose(
        "bad",
        &format!(
            "services:\n  failing:\n    image: {IMAGE}\n    command: sh -c 'echo replica-ran > /data/ran; exec sleep 3600'\n    volumes: [bad:/data]\n    pre_start:\n      - command: \"true\"\n      - command: sh -c 'echo hook-said-no; exit 3'\nvolumes:\n  bad: {{}}\n"
        ),
    );
    let run = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::NotConverged);
    let all = format!("{}{}", run.stdout, run.stderr);
    let failing = t.cname("bad", "failing", 1);
    assert!(
        all.contains(&format!("pre_start hook 2 of `{failing}`")),
        "{all}"
    );
    assert!(all.contains("exited with code 3"), "{all}");
    assert!(all.contains("hook-said-no"), "{all}");
    for h in &hosts.names {
        assert!(!hosts.fleet_containers(h, &t.id).contains(&failing), "{h}");
    }
    assert_eq!(hook_containers(&hosts, &t.id), Vec::<String>::new());
    // The replica's command never ran: nothing in its volume says so.
    for h in &hosts.names {
        let vols = hosts.docker(
            h,
            &[
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("label=convoy.fleet={}", t.id),
            ],
        );
        for v in vols.lines().filter(|v| v.contains("bad")) {
            let seen = hosts.docker(
                h,
                &[
                    "run",
                    "--rm",
                    "-v",
                    &format!("{v}:/v"),
                    IMAGE,
                    "sh",
                    "-c",
                    "cat /v/ran 2>/dev/null || echo none",
                ],
            );
            assert_eq!(seen, "none", "{h} {v}");
        }
    }
    t.convoy(&["diff", "--state-dir", &state])
        .outcome(Outcome::Differs);
    // The first service is untouched by the other's failure.
    assert_eq!(
        hosts.docker(&host, &["inspect", "-f", "{{.Id}}", &name]),
        id
    );
}
