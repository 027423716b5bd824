//! `convoy adopt`'s pure parts: the compose file inferred from what runs reads back (through the
//! manifest) as a spec with no drift from it, secret-looking values go to the `.env` and nowhere
//! else, and `convoy.yaml` gets its entry with every other line kept.

use std::collections::BTreeMap;

use super::{add_adoption, add_list_item};
use crate::model::adopt::Adoption;
use crate::model::compose_project::ProjectView;
use crate::model::observed::{ImageDefaults, ObservedContainer, RunState};
use crate::model::spec::{
    ContainerSpec, Healthcheck, MountKind, MountSpec, NetworkAttachment, PortBinding, RestartName,
    RestartPolicy,
};

fn container(service: &str, slot: &str, actual: ContainerSpec) -> ObservedContainer {
    ObservedContainer {
        id: format!("id-{service}-{slot}"),
        name: format!("shop_{service}_{slot}"),
        stack: String::new(),
        service: service.into(),
        slot: slot.into(),
        spec_hash: String::new(),
        commit: String::new(),
        created: String::new(),
        image_id: "sha256:1".into(),
        state: RunState::Running,
        exit_code: 0,
        health: None,
        restart_count: 0,
        actual,
        image_defaults: ImageDefaults {
            env: [("PATH".to_string(), "/bin".to_string())].into(),
            command: Some(vec!["sh".into()]),
            ..Default::default()
        },
    }
}

/// What a `docker-compose up` of a web and a db service reports (after `infra::docker::adopt`
/// left Compose's bookkeeping out).
fn shop() -> ProjectView {
    let net = |aliases: &[&str]| {
        [(
            "shop_default".to_string(),
            NetworkAttachment {
                aliases: aliases.iter().map(|a| a.to_string()).collect(),
                ..Default::default()
            },
        )]
        .into()
    };
    let web = ContainerSpec {
        image: "busybox:1".into(),
        command: Some(vec!["httpd".into(), "-f".into(), "-p".into(), "80".into()]),
        env: [
            ("PATH".to_string(), "/bin".to_string()),
            ("MODE".to_string(), "slow $HOME".to_string()),
            ("API_TOKEN".to_string(), "tok-3x4mple".to_string()),
        ]
        .into(),
        ports: vec![PortBinding {
            host_ip: String::new(),
            host_port: Some(8080),
            container_port: 80,
            protocol: "tcp".into(),
        }],
        labels: [("team".to_string(), "web".to_string())].into(),
        restart: RestartPolicy {
            name: RestartName::Always,
            max_attempts: None,
        },
        healthcheck: Some(Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval_ns: Some(5_000_000_000),
            timeout_ns: None,
            retries: Some(3),
            start_period_ns: None,
            start_interval_ns: None,
        }),
        networks: net(&["web"]),
        ..Default::default()
    };
    let db = ContainerSpec {
        image: "busybox:1".into(),
        command: Some(vec!["sleep".into(), "1000".into()]),
        env: [
            ("PATH".to_string(), "/bin".to_string()),
            ("DB_PASSWORD".to_string(), "s3cr3t-pw".to_string()),
        ]
        .into(),
        mounts: vec![MountSpec {
            kind: MountKind::Volume,
            source: "shop_data".into(),
            target: "/data".into(),
            read_only: false,
        }],
        restart: RestartPolicy {
            name: RestartName::No,
            max_attempts: None,
        },
        networks: net(&["db", "database"]),
        ..Default::default()
    };
    ProjectView {
        project: "shop".into(),
        containers: vec![container("db", "1", db), container("web", "1", web)],
        networks: [("shop_default".to_string(), "default".to_string())].into(),
        volumes: [("shop_data".to_string(), "data".to_string())].into(),
    }
}

#[test]
fn the_inferred_stack_reads_back_in_sync_with_what_runs() {
    let view = shop();
    let inferred = crate::render::adopt::infer(&view, "h1", &Default::default());
    // Secret-looking values are in the `.env`, and only there.
    assert_eq!(inferred.secret_names, ["API_TOKEN", "DB_PASSWORD"]);
    assert_eq!(
        inferred.dotenv,
        "API_TOKEN='tok-3x4mple'\nDB_PASSWORD='s3cr3t-pw'\n"
    );
    assert!(!inferred.compose.contains("s3cr3t"), "{}", inferred.compose);
    assert!(!inferred.compose.contains("tok-3x4mple"));
    assert!(inferred.compose.contains("DB_PASSWORD: \"${DB_PASSWORD}\""));
    // The image's own values are not written.
    assert!(!inferred.compose.contains("PATH"));

    let tree = crate::manifest::MemoryTree::new()
        .with(
            "convoy.yaml",
            "fleet: f\nhosts:\n  h1:\n    address: ssh://root@h1\nadopt:\n  - {project: shop, host: h1, stack: shop}\n",
        )
        .with("stacks/shop/compose.yaml", &inferred.compose)
        .with("stacks/shop/.env", &inferred.dotenv);
    let desired = match crate::manifest::load(&tree, &BTreeMap::new()) {
        Ok(d) => d,
        Err(e) => panic!("{e}\n{}", inferred.compose),
    };
    let stack = &desired.stacks["shop"];
    for c in &view.containers {
        let svc = &stack.services[&c.service];
        let drift = crate::core::drift::container_drift(
            &svc.container,
            &c.actual,
            &c.image_defaults,
            &svc.secret_env,
        );
        assert!(
            drift.is_empty(),
            "{}: {drift:?}\n{}",
            c.service,
            inferred.compose
        );
        assert_eq!(
            svc.placement.constraints.len(),
            1,
            "pinned to its host, where its data is"
        );
    }
    // The secrets are known as such: masked wherever they would be shown.
    assert!(desired.secret_values.contains("s3cr3t-pw"));
    assert!(desired.secret_values.contains("tok-3x4mple"));
    assert_eq!(stack.volumes["data"].engine_name, "shop_data");
    assert_eq!(stack.networks["default"].engine_name, "shop_default");
}

#[test]
fn one_secret_name_with_two_values_is_told_apart_by_service() {
    let mut view = shop();
    let web = view
        .containers
        .iter_mut()
        .find(|c| c.service == "web")
        .unwrap();
    web.actual
        .env
        .insert("DB_PASSWORD".into(), "other-pw".into());
    let inferred = crate::render::adopt::infer(&view, "h1", &Default::default());
    assert_eq!(
        inferred.secret_names,
        ["API_TOKEN", "DB_PASSWORD", "WEB_DB_PASSWORD"]
    );
    assert!(inferred
        .compose
        .contains("DB_PASSWORD: \"${WEB_DB_PASSWORD}\""));
}

fn shop_adoption() -> Adoption {
    Adoption {
        project: "shop".into(),
        host: "h1".into(),
        stack: "shop".into(),
    }
}

#[test]
fn the_adoption_is_appended_and_every_other_line_kept() {
    let entry = r#"{project: "shop", host: "h1", stack: "shop"}"#;
    // No `adopt:` yet: added at the end.
    assert_eq!(
        add_adoption(
            "fleet: f # prod\n# hosts below\nhosts: {}",
            &shop_adoption()
        )
        .unwrap(),
        format!("fleet: f # prod\n# hosts below\nhosts: {{}}\nadopt:\n  - {entry}\n")
    );
    // A block list, followed by a comment and another key: after its last item.
    let text = "fleet: f\nadopt:\n    - {project: a, host: h1, stack: a}\n    # b was here\n\n# next\nhosts: {}\n";
    assert_eq!(
        add_adoption(text, &shop_adoption()).unwrap(),
        format!("fleet: f\nadopt:\n    - {{project: a, host: h1, stack: a}}\n    - {entry}\n    # b was here\n\n# next\nhosts: {{}}\n")
    );
    // Flow lists, empty or not.
    assert_eq!(
        add_list_item("stacks: [web, db] # mine\n", "stacks", "\"shop\"").unwrap(),
        "stacks: [web, db, \"shop\"] # mine\n"
    );
    assert_eq!(
        add_adoption("adopt: []\n", &shop_adoption()).unwrap(),
        format!("adopt:\n  - {entry}\n")
    );
    // A key that only starts like it is another key.
    assert_eq!(
        add_list_item("stacksx: 1\n", "stacks", "a").unwrap(),
        "stacksx: 1\nstacks:\n  - a\n"
    );
    assert!(add_list_item("stacks: web\n", "stacks", "a").is_err());
}

#[test]
fn names_another_stack_makes_are_written_external() {
    let taken = ["shop_default".to_string(), "shop_data".to_string()].into();
    let inferred = crate::render::adopt::infer(&shop(), "h2", &taken);
    assert!(
        inferred
            .compose
            .contains("networks:\n  default:\n    name: \"shop_default\"\n    external: true\n"),
        "{}",
        inferred.compose
    );
    assert!(inferred
        .compose
        .contains("volumes:\n  data:\n    name: \"shop_data\"\n    external: true\n"));
    assert_eq!(inferred.notes.len(), 2, "{:?}", inferred.notes);
    let alone = crate::render::adopt::infer(&shop(), "h2", &Default::default());
    assert!(!alone.compose.contains("external"));
}
