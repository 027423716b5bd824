//! Jobs on the SSH test fleet (issue 12): a run-once job under `convoy apply` runs once per
//! spec and gates the service of its `before:` (success lets it roll out; failure stops it,
//! reported with the exit code and the job's last lines, the service left on its running
//! spec, and still healed with that spec); a scheduled job under the daemon runs at its `@every` times (counted from the epoch)
//! and only its `history` newest runs remain.
//!
//! Every container is this test's fleet's; `HostCleanup` removes them from every host.

use std::time::Duration;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// Every job container of fleet `t` on every host: (name, `convoy.job` label, state, exit
/// code), from one listing per host (a run pruned meanwhile is simply not in it).
fn job_runs(hosts: &Hosts, t: &TestFleet) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for h in &hosts.names {
        let text = hosts.docker(
            h,
            &[
                "ps",
                "-a",
                "--filter",
                &format!("label=convoy.fleet={}", t.id),
                "--filter",
                "label=convoy.job",
                "--format",
                "{{.Names}}|{{.Label \"convoy.job\"}}|{{.State}}|{{.Status}}",
            ],
        );
        for line in text.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.splitn(4, '|').collect();
            // `Exited (3) 2 seconds ago`
            let code = f[3]
                .strip_prefix("Exited (")
                .and_then(|r| r.split(')').next())
                .unwrap_or("")
                .to_string();
            out.push((f[0].to_string(), f[1].to_string(), f[2].to_string(), code));
        }
    }
    out.sort();
    out
}

/// The ID of the one container of `t`'s fleet named `name` on any host.
fn id_anywhere(hosts: &Hosts, name: &str) -> Option<String> {
    hosts.names.iter().find_map(|h| {
        let id = hosts.docker(h, &["ps", "-aq", "--filter", &format!("name=^{name}$")]);
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
}

/// The host of the container of `t`'s fleet named `name` and its `convoy.spec-hash` label.
fn spec_hash_anywhere(hosts: &Hosts, name: &str) -> Option<(String, String)> {
    let host = hosts.names.iter().find(|h| {
        !hosts
            .docker(h, &["ps", "-aq", "--filter", &format!("name=^{name}$")])
            .trim()
            .is_empty()
    })?;
    let label = hosts.docker(
        host,
        &[
            "inspect",
            "-f",
            "{{index .Config.Labels \"convoy.spec-hash\"}}",
            name,
        ],
    );
    Some((host.clone(), label.trim().to_string()))
}

fn gated(t: &TestFleet, job_cmd: &str, web_cmd: &str) {
    t.compose(
        "mig",
        &format!(
            "services:\n  migrate:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"{job_cmd}\"]\n    x-convoy:\n      job: {{before: [web]}}\n  web:\n    image: {IMAGE}\n    command: {web_cmd}\n    deploy:\n      replicas: 2\n"
        ),
    );
}

#[test]
fn a_run_once_job_gates_its_service_and_runs_once_per_spec() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    gated(&t, "echo migrated", "sleep 3600");
    // The plan says the job runs before `web`.
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout.contains("job ") && diff.stdout.contains("/migrate runs once"),
        "{}",
        diff.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let runs = job_runs(&hosts, &t);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].1.as_str(), runs[0].2.as_str(), runs[0].3.as_str()),
        ("once", "exited", "0")
    );
    let web = t.cname("mig", "web", 1);
    let web_id = id_anywhere(&hosts, &web).expect("web runs after its job");
    // Applied twice: the job does not run again (same spec), nothing changes.
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(job_runs(&hosts, &t), runs);
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    // A new job spec that fails, and a new `web`: the job runs once, fails, and `web` stays.
    gated(&t, "echo boom-from-the-job; exit 3", "sleep 3601");
    let r = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("exit code 3"), "{all}");
    assert!(all.contains("boom-from-the-job"), "{all}");
    assert!(all.contains("rollout of web stopped"), "{all}");
    assert_eq!(id_anywhere(&hosts, &web).as_deref(), Some(web_id.as_str()));
    let runs = job_runs(&hosts, &t);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().any(|r| r.3 == "3"), "{runs:?}");
    // Not run again by the next apply: the failure stands until the spec changes.
    let again = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    assert!(
        again.stdout.contains("failed (exit code 3)"),
        "{}",
        again.stdout
    );
    assert_eq!(job_runs(&hosts, &t).len(), 2);
    assert_eq!(id_anywhere(&hosts, &web).as_deref(), Some(web_id.as_str()));
    // Frozen, not forgotten: the plan says `web` stays on the spec it runs.
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout.contains("stays on its running spec"),
        "{}",
        diff.stdout
    );
    // A `web` replica removed by hand while the job stays failed is made again, with the
    // spec `web` runs (its spec-hash label and command as before), and the job is not run.
    let web2 = t.cname("mig", "web", 2);
    let (host2, old_hash) = spec_hash_anywhere(&hosts, &web2).expect("web-2 runs");
    assert_eq!(
        spec_hash_anywhere(&hosts, &web).map(|w| w.1),
        Some(old_hash.clone())
    );
    hosts.docker(&host2, &["rm", "-f", &web2]);
    assert!(id_anywhere(&hosts, &web2).is_none());
    let healed = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let (host, hash) = spec_hash_anywhere(&hosts, &web2)
        .unwrap_or_else(|| panic!("web-2 made again: {}{}", healed.stdout, healed.stderr));
    assert_eq!(hash, old_hash, "{}", healed.stdout);
    let cmd = hosts.docker(&host, &["inspect", "-f", "{{json .Config.Cmd}}", &web2]);
    assert_eq!(cmd.trim(), r#"["sleep","3600"]"#);
    assert_eq!(
        job_runs(&hosts, &t).len(),
        2,
        "the failed job is not run again"
    );
    assert_eq!(id_anywhere(&hosts, &web).as_deref(), Some(web_id.as_str()));
    // `convoy status` lists `web` as it runs, and says what holds it.
    let st = t.convoy(&["status"]).outcome(Outcome::AllReachable);
    assert!(
        st.stdout.contains("/web  2/2 running")
            && st.stdout.contains("/web` stays on its running spec: job `"),
        "{}",
        st.stdout
    );
    // A killed one is started again in place.
    let host1 = spec_hash_anywhere(&hosts, &web).expect("web-1").0;
    hosts.docker(&host1, &["kill", &web]);
    t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let running = hosts.docker(&host1, &["inspect", "-f", "{{.State.Running}}", &web]);
    assert_eq!(running.trim(), "true");
    assert_eq!(id_anywhere(&hosts, &web).as_deref(), Some(web_id.as_str()));
    assert_eq!(job_runs(&hosts, &t).len(), 2);
    // `convoy jobs` reports the failure with its exit code and lines.
    let j = t
        .convoy(&["jobs", "--output", "json"])
        .outcome(Outcome::AllReachable);
    let doc: serde_json::Value = serde_json::from_str(&j.stdout).expect("json");
    assert_eq!(doc["version"], 1);
    let job = &doc["jobs"][0];
    assert_eq!(job["name"], "migrate");
    let newest = &job["last_runs"][0];
    assert_eq!(newest["exit_code"], 3, "{job}");
    assert_eq!(newest["phase"], "failed");
    assert!(
        newest["last_lines"]
            .to_string()
            .contains("boom-from-the-job"),
        "{job}"
    );
    // `convoy logs` includes job runs, both of them, under the job's name.
    let stack = format!("{}mig/migrate", t.id);
    let logs = t.convoy(&["logs", &stack]).outcome(Outcome::AllReachable);
    assert!(logs.stdout.contains("boom-from-the-job"), "{}", logs.stdout);
    assert_eq!(
        logs.stdout.matches("-migrate-job-once-").count(),
        2,
        "{}",
        logs.stdout
    );
    // Back to the first commit (its job succeeded, so nothing is gated): the replica made
    // from the running spec is that spec to the engine too, so nothing is replaced.
    let web2_id = id_anywhere(&hosts, &web2).expect("web-2");
    gated(&t, "echo migrated", "sleep 3600");
    let back = t.convoy(&["diff"]).outcome(Outcome::InSync);
    assert!(
        !back.stdout.contains("stays on its running spec"),
        "{}",
        back.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(id_anywhere(&hosts, &web2), Some(web2_id));
    assert_eq!(job_runs(&hosts, &t).len(), 2);
}

#[test]
fn a_scheduled_job_runs_at_its_times_and_keeps_its_history() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    t.compose(
        "cron",
        &format!(
            "services:\n  tick:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo tick\"]\n    x-convoy:\n      job: {{schedule: \"@every 3s\", history: 2}}\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n"
        ),
    );
    let token_file = t.path().join("api-token");
    std::fs::write(&token_file, "jobs-e2e-token-0123456789\n").expect("token file");
    let token = token_file.to_string_lossy().to_string();
    let d = Daemon::start(&t, &["--resync", "60", "--api-token-file", &token]);
    let api = d.api();
    // Several runs happen; only the two newest remain.
    let mut seen = std::collections::BTreeSet::new();
    wait_for("four runs of the job", Duration::from_secs(40), || {
        for r in job_runs(&hosts, &t) {
            seen.insert(r.1);
        }
        seen.len() >= 4
    });
    wait_for("the history kept at 2", Duration::from_secs(15), || {
        job_runs(&hosts, &t)
            .iter()
            .filter(|r| r.2 == "exited")
            .count()
            == 2
            && job_runs(&hosts, &t).len() <= 3
    });
    // Each run is for a time counted from the epoch, each time once.
    for s in &seen {
        let at: i64 = s.parse().expect("a scheduled time");
        assert_eq!(at % 3, 0, "{seen:?}");
    }
    let log = d.log();
    assert!(log.contains("job run starts"), "{log}");
    // The job is never counted as a service that must run: the status shows `web` only.
    let st = t.convoy(&["jobs"]).outcome(Outcome::AllReachable);
    assert!(
        st.stdout.contains("`@every 3s` (UTC), next run"),
        "{}",
        st.stdout
    );
    assert!(st.stdout.contains("succeeded"), "{}", st.stdout);
    // Through the daemon: its status has the job, and a run by hand is started by it.
    let via = |args: &[&str]| {
        let mut all = vec!["jobs"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--daemon", &api, "--api-token-file", &token]);
        t.convoy(&all)
    };
    wait_for(
        "the daemon's status lists the job's runs",
        Duration::from_secs(15),
        || {
            let r = via(&["--output", "json"]);
            let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_default();
            doc["jobs"][0]["name"] == "tick" && doc["jobs"][0]["last_runs"][0]["exit_code"] == 0
        },
    );
    // The dashboard shows the job with its schedule and a succeeded run.
    let header = t.path().join("api-header");
    std::fs::write(&header, "Authorization: Bearer jobs-e2e-token-0123456789\n").unwrap();
    let at = format!("@{}", header.display());
    let (code, page) = crate::gitops::http("GET", &format!("{api}/"), &["-H", &at]);
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains("<code>@every 3s</code> UTC (forbid)"),
        "{page}"
    );
    assert!(page.contains("succeeded exit 0"), "{page}");
    via(&["run", "tick"]).outcome(Outcome::Accepted);
    wait_for("the run by hand", Duration::from_secs(20), || {
        job_runs(&hosts, &t)
            .iter()
            .any(|r| r.0.ends_with("-manual"))
    });
    via(&["run", "nope"]).outcome(Outcome::Invalid);
    d.stop();
}
