//! Jobs in both exports, read by the real manifest reader: a scheduled job becomes a
//! Kubernetes CronJob with its time zone, concurrency, deadline and history (an `@every` that a
//! crontab can say becomes one; one it cannot is a note and no workload), a run-once job a Job
//! that is never retried; in a Swarm stack file a job is never restarted and its schedule or
//! ordering is a note.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

use super::*;
use crate::manifest::{load, MemoryTree};

const STACK: &str = r#"services:
  backup:
    image: busybox
    command: ["sh", "-c", "echo backup"]
    x-convoy:
      job: {schedule: "0 3 * * *", timezone: Europe/Berlin, concurrency: replace, deadline: 10m, history: 3}
  tick:
    image: busybox
    x-convoy:
      job: {schedule: "@every 15m"}
  fast:
    image: busybox
    x-convoy:
      job: {schedule: "@every 10s"}
  migrate:
    image: busybox
    x-convoy:
      job: {before: [web]}
  web:
    image: busybox
    command: sleep 3600
"#;

fn desired() -> crate::model::spec::DesiredState {
    let tree = MemoryTree::new()
        .with("convoy.yaml", "fleet: f\n")
        .with("stacks/app/compose.yaml", STACK);
    match load(&tree, &BTreeMap::new()) {
        Ok(d) => d,
        Err(e) => panic!(
            "{:?}",
            e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        ),
    }
}

fn docs(e: &Exported, path: &str) -> Vec<Yaml> {
    let f = e.files.iter().find(|f| f.path == path).expect(path);
    YamlLoader::load_from_str(&String::from_utf8(f.data.clone()).unwrap()).expect("YAML")
}

fn workload<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> Option<&'a Yaml> {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

#[test]
fn kubernetes_gets_cronjobs_and_a_job_that_is_never_retried() {
    let e = kubernetes::export(&desired(), ExportOptions::default());
    let d = docs(&e, "app.yaml");
    let backup = workload(&d, "CronJob", "backup").expect("backup is a CronJob");
    let spec = &backup["spec"];
    assert_eq!(spec["schedule"].as_str(), Some("0 3 * * *"));
    assert_eq!(spec["timeZone"].as_str(), Some("Europe/Berlin"));
    assert_eq!(spec["concurrencyPolicy"].as_str(), Some("Replace"));
    assert_eq!(spec["startingDeadlineSeconds"].as_i64(), Some(600));
    assert_eq!(spec["successfulJobsHistoryLimit"].as_i64(), Some(3));
    assert_eq!(spec["failedJobsHistoryLimit"].as_i64(), Some(3));
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"].as_i64(), Some(0));
    assert_eq!(job["activeDeadlineSeconds"].as_i64(), Some(600));
    assert_eq!(
        job["template"]["spec"]["restartPolicy"].as_str(),
        Some("Never")
    );
    assert_eq!(
        job["template"]["spec"]["containers"][0]["image"].as_str(),
        Some("busybox")
    );
    // `@every 15m` is a crontab step; the default deadline is the period, said in full.
    let tick = workload(&d, "CronJob", "tick").expect("tick is a CronJob");
    assert_eq!(tick["spec"]["schedule"].as_str(), Some("*/15 * * * *"));
    assert_eq!(tick["spec"]["concurrencyPolicy"].as_str(), Some("Forbid"));
    assert_eq!(tick["spec"]["startingDeadlineSeconds"].as_i64(), Some(900));
    // Seconds have no CronJob form: a note, and no workload at all.
    assert!(d
        .iter()
        .all(|x| x["metadata"]["name"].as_str() != Some("fast")));
    assert!(
        e.unexpressed
            .iter()
            .any(|u| u.service == "fast" && u.what.contains("`@every 10s`")),
        "{:?}",
        e.unexpressed
    );
    let migrate = workload(&d, "Job", "migrate").expect("migrate is a Job");
    assert_eq!(migrate["spec"]["backoffLimit"].as_i64(), Some(0));
    assert_eq!(
        migrate["spec"]["template"]["spec"]["restartPolicy"].as_str(),
        Some("Never")
    );
    assert!(e
        .unexpressed
        .iter()
        .any(|u| u.service == "migrate" && u.what.contains("before: [web]")));
    assert!(workload(&d, "Deployment", "web").is_some());
}

#[test]
fn swarm_never_restarts_a_job_and_names_what_it_cannot_schedule() {
    let e = swarm::export(&desired(), ExportOptions::default());
    let f = e
        .files
        .iter()
        .find(|f| f.path == "app.yaml")
        .expect("app.yaml");
    let doc = YamlLoader::load_from_str(&String::from_utf8(f.data.clone()).unwrap())
        .expect("YAML")
        .remove(0);
    for job in ["backup", "tick", "fast", "migrate"] {
        assert_eq!(
            doc["services"][job]["deploy"]["restart_policy"]["condition"].as_str(),
            Some("none"),
            "{job}"
        );
    }
    assert_eq!(
        doc["services"]["web"]["deploy"]["restart_policy"]["condition"].as_str(),
        Some("any")
    );
    for (svc, what) in [
        ("backup", "`0 3 * * *`: Swarm has no schedule"),
        ("migrate", "before: [web]"),
    ] {
        assert!(
            e.unexpressed
                .iter()
                .any(|u| u.service == svc && u.what.contains(what)),
            "{svc}: {:?}",
            e.unexpressed
        );
    }
}
