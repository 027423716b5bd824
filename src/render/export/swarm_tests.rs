//! The Swarm export of a repository read by the real manifest reader: the stack file parses as
//! YAML with the keys `docker stack deploy` reads, Convoy's keys become Swarm's, secrets stay
//! out of every file unless asked for, and what Swarm cannot run is listed.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

use super::swarm::export;
use super::*;
use crate::manifest::{load, MemoryTree};

const FLEET: &str = "fleet: f\nhosts:\n  h1: {address: \"ssh://h1\", labels: {zone: a}}\n  h2: {address: \"ssh://h2\", labels: {zone: b}}\n";

const WEB: &str = r#"configs:
  site:
    file: ./site.conf
secrets:
  dbpass:
    file: ./dbpass.txt
volumes:
  data: {}
services:
  web:
    image: nginx:1.25
    command: ["sh", "-c", "echo $$HOME > /tmp/x && exec nginx"]
    environment:
      GREETING: hi
      DB_PASSWORD: hunter2-secret
    ports:
      - "127.0.0.1:8080:80"
    volumes:
      - data:/var/lib/web
      - ./static.txt:/srv/static.txt:ro
    configs:
      - source: site
        target: /etc/nginx/conf.d/site.conf
        mode: 0444
    secrets:
      - dbpass
    healthcheck:
      test: ["CMD", "true"]
      interval: 500ms
      retries: 2
    deploy:
      replicas: 3
      update_config: {parallelism: 2, order: start-first}
      placement:
        constraints: ["node.labels.zone == a"]
        preferences: [{spread: node.labels.zone}]
    x-convoy:
      hosts: [h1, h2]
  worker:
    image: busybox
    depends_on: [web]
    x-convoy:
      hosts: [h2]
"#;

fn desired() -> crate::model::spec::DesiredState {
    let tree = MemoryTree::new()
        .with("convoy.yaml", FLEET)
        .with("stacks/web/compose.yaml", WEB)
        .with("stacks/web/site.conf", "server {}\n")
        .with("stacks/web/static.txt", "static\n")
        .with("stacks/web/dbpass.txt", "s3cr3t-db-pass\n");
    match load(&tree, &BTreeMap::new()) {
        Ok(d) => d,
        Err(e) => panic!(
            "{:?}",
            e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        ),
    }
}

fn doc(e: &Exported, path: &str) -> Yaml {
    let f = e.files.iter().find(|f| f.path == path).expect(path);
    let text = String::from_utf8(f.data.clone()).unwrap();
    YamlLoader::load_from_str(&text)
        .expect("the stack file is YAML")
        .remove(0)
}

#[test]
fn a_stack_becomes_a_stack_file_with_swarms_keys() {
    let e = export(&desired(), ExportOptions::default());
    let d = doc(&e, "web.yaml");
    assert_eq!(d["version"].as_str(), Some("3.8"));
    let web = &d["services"]["web"];
    assert_eq!(web["image"].as_str(), Some("nginx:1.25"));
    // A literal `$` survives `docker stack deploy`'s interpolation.
    assert_eq!(
        web["command"][2].as_str(),
        Some("echo $$HOME > /tmp/x && exec nginx")
    );
    assert_eq!(web["environment"]["GREETING"].as_str(), Some("hi"));
    assert_eq!(web["deploy"]["replicas"].as_i64(), Some(3));
    assert_eq!(
        web["deploy"]["update_config"]["parallelism"].as_i64(),
        Some(2)
    );
    assert_eq!(
        web["deploy"]["update_config"]["order"].as_str(),
        Some("start-first")
    );
    assert_eq!(
        web["deploy"]["update_config"]["failure_action"].as_str(),
        Some("rollback")
    );
    let constraints: Vec<&str> = web["deploy"]["placement"]["constraints"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        constraints,
        vec![
            "node.labels.convoy.web.web == true",
            "node.labels.zone == a"
        ]
    );
    assert_eq!(
        web["deploy"]["placement"]["preferences"][0]["spread"].as_str(),
        Some("node.labels.zone")
    );
    assert_eq!(web["healthcheck"]["interval"].as_str(), Some("500ms"));
    assert_eq!(web["ports"][0]["target"].as_i64(), Some(80));
    assert_eq!(web["ports"][0]["published"].as_i64(), Some(8080));
    assert_eq!(web["volumes"][0]["source"].as_str(), Some("data"));
    assert_eq!(
        d["volumes"]["data"]["name"].as_str(),
        Some("web_data"),
        "Convoy's engine name"
    );
    assert_eq!(d["networks"]["default"]["driver"].as_str(), Some("overlay"));
    // Configs and repository files are Swarm configs, their content beside the stack file.
    let site = web["configs"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|c| c["source"].as_str() == Some("site"))
        .expect("the site config");
    assert_eq!(site["target"].as_str(), Some("/etc/nginx/conf.d/site.conf"));
    assert_eq!(site["mode"].as_i64(), Some(0o444));
    assert_eq!(
        d["configs"]["site"]["file"].as_str(),
        Some("./web.files/configs/site")
    );
    let files: Vec<&str> = e.files.iter().map(|f| f.path.as_str()).collect();
    assert!(files.contains(&"web.files/configs/site"), "{files:?}");
    assert!(
        files.contains(&"web.files/configs/file_static_txt"),
        "{files:?}"
    );
    // One host: its hostname; several: a node label, with the commands that set it.
    let worker = &d["services"]["worker"];
    assert_eq!(
        worker["deploy"]["placement"]["constraints"][0].as_str(),
        Some("node.hostname == h2")
    );
    for cmd in [
        "docker node update --label-add convoy.web.web=true h1",
        "docker node update --label-add convoy.web.web=true h2",
        "docker node update --label-add zone=a h1",
    ] {
        assert!(
            e.commands.iter().any(|c| c == cmd),
            "{cmd}: {:?}",
            e.commands
        );
    }
    // What Swarm cannot do is listed, service by service.
    let notes: Vec<String> = e.unexpressed.iter().map(ToString::to_string).collect();
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("web/worker: depends_on")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("web/web: port 80: the host address 127.0.0.1")),
        "{notes:?}"
    );
}

#[test]
fn secrets_are_external_unless_asked_for_and_never_in_a_file_otherwise() {
    let e = export(&desired(), ExportOptions::default());
    for f in &e.files {
        let text = String::from_utf8_lossy(&f.data);
        assert!(!text.contains("s3cr3t-db-pass"), "{}: {text}", f.path);
        assert!(!text.contains("hunter2-secret"), "{}: {text}", f.path);
        assert!(!f.secret);
    }
    let d = doc(&e, "web.yaml");
    assert_eq!(d["secrets"]["dbpass"]["external"].as_bool(), Some(true));
    assert_eq!(d["secrets"]["dbpass"]["name"].as_str(), Some("web_dbpass"));
    assert_eq!(
        d["services"]["web"]["environment"]["DB_PASSWORD"].as_str(),
        Some("${DB_PASSWORD}")
    );
    assert!(e
        .commands
        .iter()
        .any(|c| c.starts_with("docker secret create web_dbpass -")));
    assert!(e.commands.iter().all(|c| !c.contains("s3cr3t")));

    let e = export(
        &desired(),
        ExportOptions {
            include_secrets: true,
        },
    );
    let secret = e
        .files
        .iter()
        .find(|f| f.path == "web.files/secrets/dbpass")
        .expect("the secret as a file");
    assert!(secret.secret, "written 0600");
    assert_eq!(secret.data, b"s3cr3t-db-pass\n");
    let d = doc(&e, "web.yaml");
    assert_eq!(
        d["services"]["web"]["environment"]["DB_PASSWORD"].as_str(),
        Some("hunter2-secret")
    );
}
