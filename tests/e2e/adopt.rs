//! `convoy adopt` on a project started with `docker-compose up -d` on a test host: the stack is
//! written from what runs, `diff` finds it in sync ("adopted"), `apply` replaces nothing, and an
//! edit of one service replaces exactly that one with a labelled replica, its named volume
//! (and data) kept; a daemon heals an adopted container at the engine's event. Another Compose
//! project on the same host, not adopted, is never touched.

use std::path::Path;
use std::process::Command;

use crate::fleet::{HostCleanup, Hosts};
use crate::harness::*;

/// A Compose project on one test host, brought down (containers, network, volumes) on drop.
/// Declared before `HostCleanup`, so that it drops after it: Convoy's replicas leave the
/// project's network first.
struct ComposeProject {
    dir: tempfile::TempDir,
    project: String,
    docker_host: String,
}

impl ComposeProject {
    fn up(project: &str, docker_host: &str, yaml: &str) -> ComposeProject {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("docker-compose.yml"), yaml).expect("write");
        let p = ComposeProject {
            dir,
            project: project.to_string(),
            docker_host: docker_host.to_string(),
        };
        let out = p.compose(&["up", "-d"]);
        assert!(
            out.status.success(),
            "docker-compose up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        p
    }

    fn compose(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(self.dir.path().join("docker-compose.yml"))
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .output()
            .expect("run docker-compose")
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "0"]);
    }
}

fn have_docker_compose() -> bool {
    Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_compose_project_is_adopted_in_sync_and_replaced_one_service_at_a_time() {
    let Some(hosts) = Hosts::get() else { return };
    if !have_docker_compose() {
        assert!(
            !docker_required(),
            "docker-compose is required (scripts/ensure-docker installs it)"
        );
        eprintln!("SKIPPED: no docker-compose");
        return;
    }
    let t = TestFleet::new();
    let host = hosts.names[0].clone();
    let docker_host = format!("unix://{}", hosts.sock(&host));
    let project = t.stack("shop");
    let other = t.stack("other");
    let shop = ComposeProject::up(
        &project,
        &docker_host,
        &format!(
            "version: \"3.8\"\nservices:\n  web:\n    image: {IMAGE}\n    command: sleep 3600\n    environment:\n      MODE: slow\n      API_TOKEN: tok-e2e-s3cret\n    labels:\n      team: web\n    restart: unless-stopped\n  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    environment:\n      ROLE: primary\n    volumes:\n      - data:/data\n    restart: always\nvolumes:\n  data: {{}}\n"
        ),
    );
    // Another project on the same host, never adopted.
    let bystander = ComposeProject::up(
        &other,
        &docker_host,
        &format!(
            "version: \"3.8\"\nservices:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n"
        ),
    );
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let id = |name: &str| hosts.docker(&host, &["inspect", "-f", "{{.Id}}", name]);
    let web = format!("{project}_web_1");
    let db = format!("{project}_db_1");
    let other_app = format!("{other}_app_1");
    let (web_id, db_id, other_id) = (id(&web), id(&db), id(&other_app));
    hosts.docker(
        &host,
        &["exec", &db, "sh", "-c", "echo kept > /data/marker"],
    );

    // Adopt: the stack is written, its secret in the `.env` only, with a warning.
    let run = t
        .convoy(&["adopt", "--project", &project, "--host", &host])
        .outcome(Outcome::Converged);
    assert!(
        run.stdout.contains(&format!(
            "adopted Compose project `{project}` on host `{host}` as stack `{project}`"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("API_TOKEN") && run.stderr.contains("SOPS"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("s3cret") && !run.stderr.contains("s3cret"));
    let stack_dir = t.path().join("stacks").join(&project);
    let compose = read(&stack_dir.join("compose.yaml"));
    assert!(!compose.contains("s3cret"), "{compose}");
    assert!(read(&stack_dir.join(".env")).contains("API_TOKEN='tok-e2e-s3cret'"));
    assert!(read(&t.path().join("convoy.yaml")).contains(&format!(
        "adopt:\n  - {{project: \"{project}\", host: \"{host}\", stack: \"{project}\"}}"
    )));
    // Adopting it again is refused, and changes nothing.
    t.convoy(&["adopt", "--project", &project, "--host", &host])
        .outcome(Outcome::Invalid);

    // In sync: `diff` says so, `apply` replaces nothing.
    let run = t.convoy(&["diff"]).outcome(Outcome::InSync);
    assert!(
        run.stdout
            .contains(&format!("{host}: {web} in sync, adopted"))
            && run
                .stdout
                .contains(&format!("{host}: {db} in sync, adopted")),
        "{}\n{compose}",
        run.stdout
    );
    assert!(!run.stdout.contains("s3cret"));
    // `status` counts the adopted containers as the replicas they are.
    let run = t.convoy(&["status"]).outcome(Outcome::AllReachable);
    assert!(
        run.stdout.contains(&web)
            && run.stdout.contains(&db)
            && run.stdout.matches("1/1 running").count() == 2,
        "{}",
        run.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!((id(&web), id(&db)), (web_id.clone(), db_id.clone()));
    for h in &hosts.names {
        assert_eq!(
            hosts.fleet_containers(h, &t.id),
            Vec::<String>::new(),
            "{h}"
        );
    }

    // A daemon heals an adopted container at the engine's event (its resync is an hour away):
    // stopped by hand, it is started again in place.
    let d = Daemon::start(&t, &["--resync", "3600"]);
    d.api();
    wait_for(
        "the daemon's first pass",
        std::time::Duration::from_secs(30),
        || d.log().contains("pass ended"),
    );
    hosts.docker(&host, &["stop", "-t", "0", &web]);
    let running = || {
        docker_try(&[
            "-H",
            &docker_host,
            "inspect",
            "-f",
            "{{.State.Running}}",
            &web,
        ])
        .as_deref()
            == Some("true")
    };
    wait_for(
        "the stopped adopted container started again by the daemon",
        std::time::Duration::from_secs(20),
        running,
    );
    assert_eq!(id(&web), web_id, "started in place, not replaced");
    assert!(
        d.log().contains(&format!("of {web} on host {host}")),
        "{}",
        d.log()
    );
    assert_eq!(d.stop(), 0);

    // One service edited: exactly that one is replaced, by a labelled replica on its volume.
    t.write(
        &format!("stacks/{project}/compose.yaml"),
        &compose.replace("ROLE: \"primary\"", "ROLE: \"replica\""),
    );
    assert_ne!(
        read(&stack_dir.join("compose.yaml")),
        compose,
        "the edit applies"
    );
    let run = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert_eq!(run.stdout.matches(" ~ ").count(), 1, "{}", run.stdout);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(id(&web), web_id, "the unchanged service is kept");
    assert!(
        docker_try(&["-H", &docker_host, "inspect", &db]).is_none(),
        "the adopted db is gone"
    );
    let new_db = format!("{project}-db-1");
    assert_eq!(hosts.fleet_containers(&host, &t.id), [new_db.as_str()]);
    assert_eq!(
        hosts
            .docker(&host, &["exec", &new_db, "cat", "/data/marker"])
            .trim(),
        "kept"
    );
    assert_eq!(
        hosts
            .docker(
                &host,
                &[
                    "inspect",
                    "-f",
                    "{{range .Config.Env}}{{println .}}{{end}}",
                    &new_db
                ]
            )
            .lines()
            .filter(|l| l.starts_with("ROLE="))
            .collect::<Vec<_>>(),
        ["ROLE=replica"]
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    // The project nobody adopted ran through all of it untouched.
    assert_eq!(id(&other_app), other_id);
    // `_cleanup` drops first (Convoy's replicas off the project's network), then the projects.
    let _ = (&shop, &bystander);
}

#[test]
fn adopt_all_takes_every_project_of_every_host_once_one_name_on_two_hosts_two_stacks() {
    let Some(hosts) = Hosts::get() else { return };
    if !have_docker_compose() {
        assert!(!docker_required(), "docker-compose is required");
        eprintln!("SKIPPED: no docker-compose");
        return;
    }
    let t = TestFleet::new();
    let project = t.stack("svc");
    let yaml = format!(
        "version: \"3.8\"\nservices:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    environment:\n      DB_PASSWORD: pw-e2e-all\n"
    );
    let (h2, h3) = (hosts.names[1].clone(), hosts.names[2].clone());
    let on2 = ComposeProject::up(&project, &format!("unix://{}", hosts.sock(&h2)), &yaml);
    let on3 = ComposeProject::up(&project, &format!("unix://{}", hosts.sock(&h3)), &yaml);
    let _cleanup = HostCleanup(&hosts, t.id.clone());
    hosts.write_fleet_file(&t, &hosts.known_hosts(), "");
    let run = t.convoy(&["adopt", "--all"]).outcome(Outcome::Converged);
    let second = format!("{project}-{h3}");
    for (h, stack) in [(&h2, &project), (&h3, &second)] {
        assert!(
            run.stdout.contains(&format!(
                "adopted Compose project `{project}` on host `{h}` as stack `{stack}`"
            )),
            "{}",
            run.stdout
        );
    }
    // Each stack is pinned to its host: `diff` finds both in sync, adopted.
    let run = t.convoy(&["diff"]).outcome(Outcome::InSync);
    assert!(run
        .stdout
        .contains(&format!("{h2}: {project}_app_1 in sync, adopted")));
    assert!(run
        .stdout
        .contains(&format!("{h3}: {project}_app_1 in sync, adopted")));
    // Nothing is left to adopt.
    let run = t.convoy(&["adopt", "--all"]);
    assert!(
        !run.stdout.contains(&project) && !run.stderr.contains(&project),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
    let _ = (&on2, &on3);
}
