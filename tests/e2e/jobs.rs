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

/// The secret of `a_jobs_files_and_secret_reach_its_host_and_the_secret_stays_out_of_output`;
/// the job compares what it reads with this value's SHA-256 only, so the value is in no
/// command line either.
const JOB_SECRET: &str = "tok-e2e-5b1e9d27c4";
const JOB_SECRET_SHA256: &str = "2dad7554885f6af80be02b7ea19ce3ef1591f985af04621be600cc40dc64c159";

/// The secret generations of stack `stack`'s secret `tok` on every host, under `shm`.
fn secret_files(shm: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![shm.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("tok."))
            {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// A job's container gets what a replica gets before it starts: a config, a secret and a
/// relative bind shipped to the host it runs on. The run-once job (under `apply`) and a
/// scheduled one run by hand (`convoy jobs run`) read all three: exit code 0, the config's and
/// the bind's content in `convoy jobs` and `convoy logs`, the secret (checked by the job
/// itself, against its hash) in no output of Convoy's. A second run by hand binds the secret
/// generation the first one wrote (no new file per run).
#[test]
fn a_jobs_files_and_secret_reach_its_host_and_the_secret_stays_out_of_output() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    let dir = tempfile::tempdir().unwrap();
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    crate::compose_files::fleet_file(&hosts, &t, dir.path(), shm.path());
    let stack = t.stack("jf");
    t.write(
        &format!("stacks/{stack}/app.conf"),
        &format!("conf-line-{}\n", t.id),
    );
    t.write(
        &format!("stacks/{stack}/data/note.txt"),
        &format!("note-line-{}\n", t.id),
    );
    t.write(&format!("stacks/{stack}/tok.txt"), JOB_SECRET);
    let svc = |name: &str, job: &str| {
        format!(
            "  {name}:\n    image: {IMAGE}\n    command:\n      - sh\n      - -c\n      - 'cat /etc/app.conf /data/note.txt && test \"$$(sha256sum < /run/secrets/tok | cut -c1-64)\" = {JOB_SECRET_SHA256}'\n    volumes:\n      - ./data:/data:ro\n    configs:\n      - source: app\n        target: /etc/app.conf\n    secrets: [tok]\n    x-convoy:\n      job: {job}\n"
        )
    };
    t.compose(
        "jf",
        &format!(
            "configs:\n  app:\n    file: ./app.conf\nsecrets:\n  tok:\n    file: ./tok.txt\nservices:\n{}{}",
            svc("report", "{}"),
            svc("nightly", "{schedule: \"@yearly\"}")
        ),
    );
    let state = t.path().join("state").to_string_lossy().into_owned();
    let mut outputs = Vec::new();
    let apply = t
        .convoy(&["apply", "--state-dir", &state])
        .outcome(Outcome::Converged);
    outputs.push(format!("{}{}", apply.stdout, apply.stderr));
    let runs = job_runs(&hosts, &t);
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(
        (runs[0].1.as_str(), runs[0].2.as_str(), runs[0].3.as_str()),
        ("once", "exited", "0"),
        "{}",
        outputs[0]
    );
    // What the job read is in `convoy jobs` and `convoy logs`.
    let j = t
        .convoy(&["jobs", "--output", "json", "--state-dir", &state])
        .outcome(Outcome::AllReachable);
    outputs.push(format!("{}{}", j.stdout, j.stderr));
    let doc: serde_json::Value = serde_json::from_str(&j.stdout).expect("json");
    let report = doc["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["name"] == "report"))
        .cloned()
        .unwrap_or_default();
    let lines = report["last_runs"][0]["last_lines"].to_string();
    assert!(lines.contains(&format!("conf-line-{}", t.id)), "{report}");
    assert!(lines.contains(&format!("note-line-{}", t.id)), "{report}");
    assert_eq!(report["last_runs"][0]["exit_code"], 0, "{report}");
    // The deploy history has the run as a job entry, as it has a scheduled run.
    let history = |outputs: &mut Vec<String>| {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_convoy"))
            .args(["--state-dir", &state, "history", "--output", "json"])
            .env_remove("RUST_LOG")
            .output()
            .expect("run convoy history");
        let run = Run::from(run).outcome(Outcome::AllReachable);
        outputs.push(run.stdout.clone());
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("history json");
        doc["entries"].as_array().cloned().unwrap_or_default()
    };
    let entries = history(&mut outputs);
    let doc = serde_json::Value::Array(entries.clone());
    let job = entries
        .iter()
        .find(|e| e["trigger"]["kind"] == "job")
        .unwrap_or_else(|| panic!("a job entry: {doc}"));
    assert_eq!(job["trigger"]["job"], format!("{stack}/report"), "{job}");
    assert!(job["trigger"].get("scheduled").is_none(), "{job}");
    assert_eq!(job["result"], "applied", "{job}");
    assert_eq!(job["jobs"][0]["exit_code"], 0, "{job}");
    let logs = t
        .convoy(&["logs", &format!("{stack}/report"), "--state-dir", &state])
        .outcome(Outcome::AllReachable);
    outputs.push(format!("{}{}", logs.stdout, logs.stderr));
    assert!(
        logs.stdout.contains(&format!("conf-line-{}", t.id)),
        "{}",
        logs.stdout
    );

    // `convoy status` lists both jobs, with the last run's result and exit code.
    let st = t
        .convoy(&["status", "--state-dir", &state])
        .outcome(Outcome::AllReachable);
    outputs.push(st.stdout.clone());
    for want in [
        "\njobs\n".to_string(),
        format!("  {stack}/report: runs once per spec\n    last: once on "),
        format!("  {stack}/nightly: `@yearly` (UTC), next run "),
        "succeeded, exit code 0".to_string(),
    ] {
        assert!(st.stdout.contains(&want), "{want:?} in\n{}", st.stdout);
    }
    let sj = t
        .convoy(&["status", "--output", "json", "--state-dir", &state])
        .outcome(Outcome::AllReachable);
    let sdoc: serde_json::Value = serde_json::from_str(&sj.stdout).expect("status json");
    assert_eq!(sdoc["version"], 1);
    assert_eq!(sdoc["jobs"].as_array().map(Vec::len), Some(2), "{sdoc}");

    // The scheduled job, by hand: the same files on the host it is given, twice.
    let first = t
        .convoy(&["jobs", "run", "nightly", "--state-dir", &state])
        .outcome(Outcome::Converged);
    outputs.push(format!("{}{}", first.stdout, first.stderr));
    assert!(
        first.stdout.contains(&format!("note-line-{}", t.id)),
        "{}",
        first.stdout
    );
    let files = secret_files(shm.path());
    assert!(!files.is_empty(), "the secret is on a tmpfs");
    let second = t
        .convoy(&["jobs", "run", "nightly", "--state-dir", &state])
        .outcome(Outcome::Converged);
    outputs.push(format!("{}{}", second.stdout, second.stderr));
    assert_eq!(
        secret_files(shm.path()),
        files,
        "a run reuses the current generation"
    );
    assert_eq!(
        job_runs(&hosts, &t)
            .iter()
            .filter(|r| r.0.ends_with("-manual") && r.3 == "0")
            .count(),
        2
    );
    // Both runs by hand are in the history too.
    let manual = history(&mut outputs)
        .into_iter()
        .filter(|e| e["trigger"]["job"] == format!("{stack}/nightly"))
        .filter(|e| e["jobs"][0]["manual"] == true && e["result"] == "applied")
        .count();
    assert_eq!(manual, 2);
    for o in &outputs {
        assert!(!o.contains(JOB_SECRET), "{o}");
    }
}

/// A job whose image is built from the repository (`build:`) gets it on its host as a replica
/// does (built on the builder, shipped to that host), and a job that shares a service's volumes
/// (`volumes_from`) runs on that service's host and reads them.
#[test]
fn a_jobs_built_image_is_shipped_and_it_runs_beside_the_service_it_shares_volumes_with() {
    let Some(hosts) = Hosts::get() else { return };
    let t = TestFleet::new();
    let stack = t.stack("jb");
    let _images =
        crate::compose_build::RemoveImages(&hosts, vec![format!("convoy-build/{stack}-tool")]);
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let mut y = std::fs::read_to_string(t.path().join("convoy.yaml")).unwrap();
    y.push_str("builder: local\n");
    t.write("convoy.yaml", &y);
    t.write(
        &format!("stacks/{stack}/tool/Dockerfile"),
        &format!("FROM {IMAGE}\nCOPY hello.txt /hello.txt\n"),
    );
    t.write(
        &format!("stacks/{stack}/tool/hello.txt"),
        &format!("built-{}\n", t.id),
    );
    t.compose(
        "jb",
        "services:\n  web:\n    image: convoy-test/busybox:1\n    command: [sh, -c, 'echo from-web > /shared/x; exec sleep 3600']\n    stop_grace_period: 1s\n    volumes: [/shared]\n    x-convoy:\n      hosts: [host3]\n  tool:\n    build: ./tool\n    command: [sh, -c, 'cat /hello.txt; for i in $$(seq 50); do test -f /shared/x && break; sleep 0.1; done; cat /shared/x']\n    volumes_from: [web]\n    x-convoy:\n      job: {}\n",
    );
    let r = t
        .convoy(&[
            "apply",
            "-v",
            "--state-dir",
            &t.path().join("state").to_string_lossy(),
        ])
        .outcome(Outcome::Converged);
    let runs = job_runs(&hosts, &t);
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", r.stderr);
    assert_eq!(runs[0].3, "0", "{runs:?}\n{}", r.stderr);
    // It ran on web's host, which had never had the built image.
    let on3 = hosts.docker(
        "host3",
        &["ps", "-aq", "--filter", &format!("name=^{}$", runs[0].0)],
    );
    assert!(!on3.trim().is_empty(), "the job runs beside web: {runs:?}");
    let logs = hosts.docker("host3", &["logs", &runs[0].0]);
    assert!(logs.contains(&format!("built-{}", t.id)), "{logs}");
    assert!(logs.contains("from-web"), "{logs}");
    assert!(r.stderr.contains("shipped built image"), "{}", r.stderr);
}

/// The job timer ticks while a pass runs: a pass that waits at a dependency gate (up to
/// `dependency_timeout`, 60 s here) does not hold back a scheduled job, whose runs happen while
/// the gated replica is still not created. On the local engine.
#[test]
fn a_due_job_runs_while_a_long_pass_waits_at_a_gate() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.write(
        "convoy.yaml",
        &format!("fleet: {}\ndependency_timeout: 60s\n", t.id),
    );
    gated_stack(&t, "web");
    t.compose(
        "cron",
        &format!(
            "services:\n  tick:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo tick\"]\n    x-convoy:\n      job: {{schedule: \"@every 2s\"}}\n"
        ),
    );
    let d = Daemon::start(&t, &[]);
    wait_for_the_gate(&t, &d, "web");
    let app = t.cname("web", "app", 1);
    let runs = || {
        docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=convoy.fleet={}", t.id),
            "--filter",
            "label=convoy.job",
        ])
        .lines()
        .filter(|l| !l.is_empty())
        .count()
    };
    wait_for(
        "two runs of the job during the pass",
        Duration::from_secs(20),
        || runs() >= 2,
    );
    // The pass is still at its gate: the runs did not wait for it.
    assert!(
        docker_try(&["inspect", &app]).is_none(),
        "the gate opened: the test proves nothing\n{}",
        d.log()
    );
    assert!(d.log().contains("job run starts"), "{}", d.log());
    d.stop();
}

/// Under the daemon, a pass's run-once job is a job entry of the deploy history, as a
/// scheduled run is, and `status --daemon` lists the job with its run. On the local engine.
#[test]
fn a_run_once_job_under_the_daemon_is_in_the_history_and_the_status() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.write("convoy.yaml", &format!("fleet: {}\n", t.id));
    t.compose(
        "once",
        &format!(
            "services:\n  migrate:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"echo migrated-{}\"]\n    x-convoy:\n      job: {{}}\n",
            t.id
        ),
    );
    let token_file = t.path().join("api-token");
    std::fs::write(&token_file, "jobs-e2e-token-9876543210\n").expect("token file");
    let token = token_file.to_string_lossy().to_string();
    let d = Daemon::start(&t, &["--api-token-file", &token]);
    let api = d.api();
    let state = t.path().join("state").to_string_lossy().into_owned();
    let stack = t.stack("once");
    let mut entry = serde_json::Value::Null;
    wait_for(
        "the run's job entry in the history",
        Duration::from_secs(30),
        || {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_convoy"))
                .args(["--state-dir", &state, "history", "--output", "json"])
                .env_remove("RUST_LOG")
                .output()
                .expect("run convoy history");
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let found = doc["entries"].as_array().and_then(|a| {
                a.iter()
                    .find(|e| e["trigger"]["job"] == format!("{stack}/migrate"))
                    .cloned()
            });
            match found {
                Some(e) => {
                    entry = e;
                    true
                }
                None => false,
            }
        },
    );
    assert_eq!(entry["trigger"]["kind"], "job", "{entry}");
    assert!(entry["trigger"].get("scheduled").is_none(), "{entry}");
    assert_eq!(entry["result"], "applied", "{entry}");
    assert_eq!(entry["jobs"][0]["exit_code"], 0, "{entry}");
    assert!(
        entry["jobs"][0]["container"]
            .as_str()
            .is_some_and(|c| c.contains("-migrate-job-once-")),
        "{entry}"
    );
    // Right after the pass (the status is not left to the idle check, 30 s away).
    wait_for(
        "the daemon's status lists the job's run",
        Duration::from_secs(10),
        || {
            let r = t.convoy(&["status", "--daemon", &api, "--api-token-file", &token]);
            r.stdout.contains(&format!(
                "  {stack}/migrate: runs once per spec\n    last: once on "
            )) && r.stdout.contains("succeeded, exit code 0")
        },
    );
    d.stop();
}
