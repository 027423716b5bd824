//! `extends`, top-level `include` and `profiles`: the merge rules, errors located in the file
//! that writes the offending value, cycles, depth, paths leaving the repository, name clashes
//! of included files, and profiles enabled from `convoy.yaml`.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

fn stack(
    extra: &[(&'static str, &'static str)],
    compose: &'static str,
) -> Vec<(&'static str, String)> {
    let mut f = web(compose);
    f.extend(extra.iter().map(|(p, c)| (*p, c.to_string())));
    f
}

#[test]
fn extends_in_the_same_file_merges_as_compose() {
    let f = stack(
        &[],
        "services:\n  base:\n    image: app:1\n    command: [serve, --slow]\n    environment:\n      A: base\n      B: base\n    ports: ['80']\n    dns: 1.1.1.1\n    depends_on: [db]\n  db:\n    image: db\n  web:\n    extends: base\n    command: [serve, --fast]\n    environment: [B=web, C=web]\n    ports: ['8081:81']\n    dns: [8.8.8.8]\n",
    );
    let state = ok(&files(&f));
    let web = &state.stacks["web"].services["web"];
    assert_eq!(web.container.image, "app:1");
    assert_eq!(
        web.container.command,
        Some(vec!["serve".to_string(), "--fast".to_string()])
    );
    let env: Vec<(&str, &str)> = web
        .container
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, vec![("A", "base"), ("B", "web"), ("C", "web")]);
    let ports: Vec<(Option<u16>, u16)> = web
        .container
        .ports
        .iter()
        .map(|p| (p.host_port, p.container_port))
        .collect();
    assert_eq!(ports, vec![(None, 80), (Some(8081), 81)]);
    assert_eq!(web.container.dns, vec!["1.1.1.1", "8.8.8.8"]);
    // `depends_on` is not inherited.
    assert!(web.depends_on.is_empty());
    assert_eq!(state.stacks["web"].services["base"].depends_on.len(), 1);
}

#[test]
fn extends_from_another_file_with_healthcheck_and_volumes() {
    let f = stack(
        &[(
            "shared/base.yaml",
            "services:\n  app:\n    image: app:2\n    entrypoint: [/bin/a]\n    healthcheck:\n      test: [CMD, a]\n      interval: 10s\n    volumes: ['data:/data', 'logs:/logs']\n    labels: {team: a}\n",
        )],
        "volumes:\n  data: {}\n  logs: {}\n  other: {}\nservices:\n  web:\n    extends:\n      file: ../../shared/base.yaml\n      service: app\n    healthcheck:\n      test: [CMD, b]\n    volumes: ['other:/data']\n    labels: [tier=front]\n",
    );
    let state = ok(&files(&f));
    let web = &state.stacks["web"].services["web"];
    assert_eq!(web.container.image, "app:2");
    assert_eq!(web.container.entrypoint, Some(vec!["/bin/a".to_string()]));
    let hc = web.container.healthcheck.as_ref().expect("healthcheck");
    assert_eq!(hc.test, vec!["CMD".to_string(), "b".to_string()]);
    assert_eq!(hc.interval_ns, Some(10_000_000_000));
    let targets: Vec<(&str, &str)> = web
        .container
        .mounts
        .iter()
        .map(|m| (m.source.as_str(), m.target.as_str()))
        .collect();
    assert!(targets.contains(&("web_other", "/data")), "{targets:?}");
    assert!(targets.iter().any(|(_, t)| *t == "/logs"), "{targets:?}");
    assert!(
        !targets.iter().any(|(s, _)| s.ends_with("_data")),
        "{targets:?}"
    );
    assert_eq!(
        web.container.labels.get("team").map(String::as_str),
        Some("a")
    );
    assert_eq!(
        web.container.labels.get("tier").map(String::as_str),
        Some("front")
    );
}

#[test]
fn an_error_in_an_extended_file_names_that_file() {
    let f = stack(
        &[(
            "stacks/web/base.yaml",
            "services:\n  app:\n    image: app\n    ports: ['99999:80']\n    restart: sometimes\n",
        )],
        "services:\n  web:\n    extends: {file: base.yaml, service: app}\n    user: [1]\n",
    );
    let e = errs(&files(&f));
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e.iter().any(|m| m.starts_with("stacks/web/base.yaml:4:")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("stacks/web/base.yaml:5:14: services.web.restart")),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("stacks/web/compose.yaml:4:12: services.web.user")),
        "{e:#?}"
    );
}

#[test]
fn extends_cycles_depth_and_unknown_services_are_located() {
    let e = web_errs("services:\n  a:\n    extends: b\n  b:\n    extends: a\n    image: x\n");
    assert!(
        e.iter().any(|m| m.starts_with("stacks/web/compose.yaml:5:14: services.a.extends: `extends` makes a cycle: `a` → `b` → `a`")),
        "{e:#?}"
    );
    // Across files: compose.yaml → other.yaml → compose.yaml.
    let f = stack(
        &[(
            "stacks/web/other.yaml",
            "services:\n  o:\n    extends: {file: compose.yaml, service: w}\n",
        )],
        "services:\n  w:\n    extends: {file: other.yaml, service: o}\n    image: x\n",
    );
    let e = errs(&files(&f));
    assert!(e.iter().any(|m| m.contains("makes a cycle")), "{e:#?}");

    let mut chain = String::from("services:\n  s0:\n    image: x\n");
    for i in 1..=20 {
        chain.push_str(&format!("  s{i}:\n    extends: s{}\n", i - 1));
    }
    let e = web_errs(&chain);
    assert!(
        e.iter()
            .any(|m| m.contains("`extends` chains more than 16 services")),
        "{e:#?}"
    );

    let e = web_errs("services:\n  a:\n    extends: nope\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:3:14: services.a.extends: `extends` names unknown service `nope`"]
    );
}

#[test]
fn files_outside_the_repository_are_refused() {
    for (rel, col) in [("../../../etc/compose.yaml", 21), ("/etc/compose.yaml", 21)] {
        let e = web_errs(&format!(
            "services:\n  a:\n    extends: {{file: {rel}, service: x}}\n"
        ));
        assert_eq!(
            e,
            vec![format!(
                "stacks/web/compose.yaml:3:{col}: services.a.extends.file: `{rel}` is outside the repository: only files of the repository are read"
            )]
        );
    }
    let e = web_errs("include: [../../../x.yaml]\nservices:\n  a:\n    image: x\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:1:11: include[0]: `../../../x.yaml` is outside the repository: only files of the repository are read"]
    );
    let e = web_errs("include: [missing.yaml]\nservices:\n  a:\n    image: x\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:1:11: include[0]: `stacks/web/missing.yaml` does not exist"]
    );
}

#[test]
fn include_brings_services_networks_and_volumes() {
    let f = stack(
        &[(
            "stacks/web/db/compose.yaml",
            "services:\n  db:\n    image: postgres\n    networks: [back]\n    volumes: ['pg:/var/lib/postgresql/data']\nnetworks:\n  back: {}\nvolumes:\n  pg: {}\n",
        )],
        "include:\n  - path: db/compose.yaml\nservices:\n  web:\n    image: nginx\n    depends_on: [db]\n    networks: [back]\n",
    );
    let state = ok(&files(&f));
    let s = &state.stacks["web"];
    assert_eq!(s.services.keys().collect::<Vec<_>>(), vec!["db", "web"]);
    assert!(s.networks.contains_key("back"));
    assert!(s.volumes.contains_key("pg"));
}

#[test]
fn an_included_service_clashing_with_a_local_one_is_located() {
    let f = stack(
        &[(
            "stacks/web/more.yaml",
            "services:\n  web:\n    image: other\n",
        )],
        "include: [more.yaml]\nservices:\n  web:\n    image: nginx\n",
    );
    let e = errs(&files(&f));
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:3:3: services.web: `web` is also defined in `stacks/web/more.yaml` (line 2): an included file's services may not be redefined"]
    );
    // An error inside the included file names it.
    let f = stack(
        &[(
            "stacks/web/more.yaml",
            "services:\n  extra:\n    image: x\n    replicas: 2\n",
        )],
        "include: [more.yaml]\nservices:\n  web:\n    image: nginx\n",
    );
    let e = errs(&files(&f));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with("stacks/web/more.yaml:4:5: services.extra.replicas: unknown key"),
        "{e:#?}"
    );
    // An include cycle is an error, not a stack overflow.
    let f = stack(
        &[(
            "stacks/web/more.yaml",
            "include: [compose.yaml]\nservices:\n  extra:\n    image: x\n",
        )],
        "include: [more.yaml]\nservices:\n  web:\n    image: nginx\n",
    );
    let e = errs(&files(&f));
    assert!(
        e.iter().any(|m| m.starts_with(
            "stacks/web/more.yaml:1:11: include[0]: `stacks/web/compose.yaml` includes itself"
        )),
        "{e:#?}"
    );
}

const PROFILED: &str = "services:\n  web:\n    image: nginx\n  debug:\n    image: busybox\n    profiles: [debug, tools]\n";

#[test]
fn a_service_with_a_profile_runs_only_when_enabled() {
    let f = web(PROFILED);
    let state = ok(&files(&f));
    assert_eq!(
        state.stacks["web"].services.keys().collect::<Vec<_>>(),
        vec!["web"]
    );

    let enabled = vec![
        (
            "convoy.yaml",
            "fleet: prod\nprofiles:\n  web: [tools]\n".to_string(),
        ),
        ("stacks/web/compose.yaml", PROFILED.to_string()),
    ];
    let state = ok(&files(&enabled));
    assert_eq!(
        state.stacks["web"].services.keys().collect::<Vec<_>>(),
        vec!["debug", "web"]
    );
}

#[test]
fn profiles_errors_are_located() {
    let with_fleet = |fleet: &str| {
        vec![
            ("convoy.yaml", fleet.to_string()),
            ("stacks/web/compose.yaml", PROFILED.to_string()),
        ]
    };
    assert_eq!(
        errs(&files(&with_fleet(
            "fleet: prod\nprofiles:\n  wbe: [tools]\n"
        ))),
        vec!["convoy.yaml:3:3: profiles.wbe: no stack is named `wbe`"]
    );
    assert_eq!(
        errs(&files(&with_fleet("fleet: prod\nprofiles:\n  web: [-bad]\n"))),
        vec!["convoy.yaml:3:9: profiles.web[0]: a profile name is letters, digits, `_`, `.` and `-`, starting with a letter or digit (at least two characters)"]
    );
    let e = web_errs("services:\n  web:\n    image: nginx\n    depends_on:\n      db:\n        condition: service_started\n  db:\n    image: pg\n    profiles: [data]\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:5:7: services.web.depends_on.db: `web` depends on `db`, which runs only with profile `data`: none is enabled for stack `web` (`profiles:` in convoy.yaml)"]
    );
    let e = web_errs("services:\n  web:\n    image: nginx\n    profiles: [x!]\n");
    assert!(
        e[0].starts_with("stacks/web/compose.yaml:4:16: services.web.profiles[0]: a profile name"),
        "{e:#?}"
    );
}

#[test]
fn paths_and_variables_of_other_files() {
    // An included file's `env_file` is read from its own folder; a `.env` variable only the
    // included file uses still interpolates it, and a secret-named one stays masked.
    let f = stack(
        &[
            ("stacks/web/.env", "TAG=15\nDB_PASSWORD=hunter22\n"),
            (
                "stacks/web/db/compose.yaml",
                "services:\n  db:\n    image: postgres:${TAG}\n    env_file: db.env\n    command: [run, '${DB_PASSWORD}', '${DB_PASSWORD}:x']\n    ports: ['${DB_PASSWORD}:5432']\n",
            ),
            ("stacks/web/db/db.env", "PGDATA=/data\n"),
        ],
        "include: [db/compose.yaml]\nservices:\n  web:\n    image: nginx\n",
    );
    let e = errs(&files(&f));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("stacks/web/db/compose.yaml:6:"), "{e:#?}");
    assert!(!e[0].contains("hunter22"), "{e:#?}");

    let mut fixed = f.clone();
    fixed[3].1 = fixed[3]
        .1
        .replace("    ports: ['${DB_PASSWORD}:5432']\n", "");
    let state = ok(&files(&fixed));
    let db = &state.stacks["web"].services["db"];
    assert_eq!(db.container.image, "postgres:15");
    assert_eq!(
        db.container.env.get("PGDATA").map(String::as_str),
        Some("/data")
    );
    assert!(state.secret_values.contains("hunter22"));
}

#[test]
fn an_optional_dependency_on_a_disabled_service_is_left_out() {
    let svc = service_named(
        "services:\n  web:\n    image: nginx\n    depends_on:\n      db:\n        condition: service_started\n        required: false\n  db:\n    image: pg\n    profiles: [data]\n",
        "web",
    );
    assert!(svc.depends_on.is_empty());
}

fn service_named(compose: &str, name: &str) -> ServiceSpec {
    let f = web(compose);
    ok(&files(&f)).stacks["web"].services[name].clone()
}

#[test]
fn include_options_and_bounds() {
    let f = stack(
        &[(
            "stacks/web/db/compose.yaml",
            "secrets: {}\nservices:\n  db:\n    image: pg\n",
        )],
        "include:\n  - path: db/compose.yaml\n    project_directory: ..\n    env_file: db/.env\nservices:\n  web:\n    image: nginx\n",
    );
    assert_eq!(
        errs(&files(&f)),
        vec![
            "stacks/web/compose.yaml:3:24: include[0].project_directory: `project_directory` other than the included file's own folder is not supported: an included file's relative paths are read from its folder",
            "stacks/web/compose.yaml:4:15: include[0].env_file: `env_file` of an include is not supported yet: the included file is interpolated with the stack's own variables",
        ]
    );
    // The included file's own folder is its project directory already.
    let f = stack(
        &[("stacks/web/db/compose.yaml", "services:\n  db:\n    image: pg\n")],
        "include:\n  - path: db/compose.yaml\n    project_directory: db\nservices:\n  web:\n    image: nginx\n",
    );
    ok(&files(&f));

    // At most 32 other files per stack.
    let compose = format!(
        "include: [{}]\nservices:\n  web:\n    image: nginx\n",
        (0..40)
            .map(|i| format!("f{i}.yaml"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut many: Vec<(String, String)> = vec![
        ("convoy.yaml".into(), FLEET.into()),
        ("stacks/web/compose.yaml".into(), compose),
    ];
    for i in 0..40 {
        many.push((
            format!("stacks/web/f{i}.yaml"),
            format!("services:\n  s{i}:\n    image: x\n"),
        ));
    }
    let many: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let e = errs(&many);
    assert!(
        !e.is_empty()
            && e.iter()
                .all(|m| m.contains("a stack may read at most 32 other compose files")),
        "{e:#?}"
    );
}

#[test]
fn a_service_left_out_by_its_profiles_is_still_checked() {
    // A typo is found before the profile is enabled; publishing the port an enabled service
    // publishes is not a clash, since the two never run together here.
    let e = web_errs("services:\n  web:\n    image: nginx\n    ports: ['80:80']\n  debug:\n    image: busybox\n    profiles: [debug]\n    ports: ['80:80']\n    enviroment: {}\n");
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:9:5: services.debug.enviroment: unknown key, did you mean `environment`?"]
    );
    let f = web("services:\n  web:\n    image: nginx\n    ports: ['80:80']\n  debug:\n    image: busybox\n    profiles: [debug]\n    ports: ['80:80']\n    depends_on: [web]\n");
    ok(&files(&f));
}
