//! Variables: `${...}` interpolation and its errors, `.env` and the environment, `env_file`,
//! and secrets: values read from env files or held by secret-named variables are marked for
//! masking and never quoted in an error message.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine, and the
//! environment is a map handed in, never the process's own.

use super::*;

#[test]
fn interpolation_forms() {
    let compose = "services:\n  app:\n    image: ${IMAGE}:$TAG\n    environment:\n      A: ${UNSET:-dflt}\n      B: ${EMPTY-kept}\n      C: ${EMPTY:-fallback}\n      D: ${SET:+alt}\n      E: ${UNSET+alt}x\n      F: $$HOME\n      G: ${UNSET:-${TAG}}\n      H: ${UNSET}\n      I: ${FROM_DOTENV}\n      J: ${OVERRIDDEN}\n    deploy:\n      replicas: ${N}\n";
    let s = ok_env(
        &[
            ("convoy.yaml", FLEET),
            ("stacks/web/compose.yaml", compose),
            ("stacks/web/.env", "FROM_DOTENV=dot\nOVERRIDDEN=dot\nN=3\n"),
        ],
        &[
            ("IMAGE", "nginx"),
            ("TAG", "1.25"),
            ("EMPTY", ""),
            ("SET", "yes"),
            ("OVERRIDDEN", "env"),
        ],
    );
    let app = &s.stacks["web"].services["app"];
    assert_eq!(app.container.image, "nginx:1.25");
    assert_eq!(
        app.container.env,
        env(&[
            ("A", "dflt"),
            ("B", ""),
            ("C", "fallback"),
            ("D", "alt"),
            ("E", "x"),
            ("F", "$HOME"),
            ("G", "1.25"),
            ("H", ""),
            ("I", "dot"),
            ("J", "env"),
        ])
    );
    assert_eq!(app.replicas, 3);
}

#[test]
fn interpolation_errors_are_located() {
    let compose = "services:\n  app:\n    image: x\n    environment:\n      A: ${NEEDED:?set it in .env}\n      B: ${NEEDED?}\n      C: \"${oops\"\n      D: ${1x}\n";
    let e = web_errs(compose);
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:10: services.app.environment.A: required variable `NEEDED` is missing a value: set it in .env",
            "stacks/web/compose.yaml:6:10: services.app.environment.B: required variable `NEEDED` is missing a value",
            "stacks/web/compose.yaml:7:10: services.app.environment.C: invalid interpolation format: `${` is never closed",
            "stacks/web/compose.yaml:8:10: services.app.environment.D: invalid interpolation format: `${` must be followed by a variable name",
        ]
    );
    // Keys are never interpolated, and convoy.yaml is read as written.
    let s = service("services:\n  app:\n    image: x\n    labels:\n      $KEY: v\n");
    assert_eq!(s.container.labels, env(&[("$KEY", "v")]));
}

#[test]
fn env_file_values_are_secret() {
    let compose = "services:\n  app:\n    image: x\n    env_file:\n      - app.env\n      - path: ../shared/extra.env\n        required: true\n      - path: optional.env\n        required: false\n    environment:\n      OVERRIDE: from-environment\n      API_TOKEN: t\n";
    // `stacks/shared` holds no compose file: list the stacks so it is not read as one.
    let s = ok(&[
        ("convoy.yaml", "fleet: prod\nstacks: [web]\n"),
        ("stacks/web/compose.yaml", compose),
        (
            "stacks/web/app.env",
            "DB_URL=postgres://u:p@db/x\nOVERRIDE=from-file\n",
        ),
        ("stacks/shared/extra.env", "# shared\nREGION=eu\n"),
    ]);
    let app = &s.stacks["web"].services["app"];
    assert_eq!(
        app.container.env,
        env(&[
            ("DB_URL", "postgres://u:p@db/x"),
            ("OVERRIDE", "from-environment"),
            ("REGION", "eu"),
            ("API_TOKEN", "t"),
        ])
    );
    assert_eq!(
        app.secret_env,
        ["API_TOKEN", "DB_URL", "OVERRIDE", "REGION"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    // A string env_file; a missing one; a broken one (the message never shows the contents).
    let e = errs(&[
        ("convoy.yaml", FLEET),
        ("stacks/web/compose.yaml", "services:\n  app:\n    image: x\n    env_file: missing.env\n  b:\n    image: x\n    env_file: bad.env\n"),
        ("stacks/web/bad.env", "GOOD=1\nSECRET='supersecret\n"),
    ]);
    assert_eq!(
        e,
        vec![
            "stacks/web/bad.env:2:1: unterminated single quote",
            "stacks/web/compose.yaml:4:15: services.app.env_file: env file `stacks/web/missing.env` not found",
        ]
    );
    assert!(!e.iter().any(|m| m.contains("supersecret")));
}

#[test]
fn required_message_is_not_expanded() {
    let e = errs_env(
        &files(&web("services:\n  a:\n    image: ${IMG:?${DB_PASSWORD}}\n")),
        &[("DB_PASSWORD", "hunter2")],
    );
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:3:12: services.a.image: required variable `IMG` is missing a value: ${DB_PASSWORD}"]
    );
}

#[test]
fn interpolation_errors_do_not_quote_what_may_be_a_secret() {
    let errs = load(
        &tree(&[
            ("convoy.yaml", "fleet: t\n"),
            (
                "stacks/web/compose.yaml",
                "services:\n  app:\n    image: busybox\n    env_file: app.env\n",
            ),
            ("stacks/web/app.env", "DB_PASSWORD=pa${ss!w0rd}\n"),
        ]),
        &env(&[]),
    )
    .expect_err("malformed");
    let text = format!("{:?}", errs.0);
    assert!(!text.contains("ss!w0rd"), "{text}");
    assert!(text.contains("app.env"), "{text}");
}

#[test]
fn values_of_secret_variables_are_collected_for_masking() {
    let d = ok_env(
        &[
            ("convoy.yaml", "fleet: t\n"),
            ("stacks/web/.env", "REDIS_PASSWORD=hunter2secret\nPORT=6379\n"),
            (
                "stacks/web/compose.yaml",
                "services:\n  app:\n    image: busybox\n    command: redis-server --requirepass ${REDIS_PASSWORD} --port ${PORT}\n    environment:\n      API_TOKEN: tok-123456\n",
            ),
        ],
        &[],
    );
    assert!(d.secret_values.contains("hunter2secret"));
    assert!(d.secret_values.contains("tok-123456"));
    assert!(!d.secret_values.contains("6379"));
    assert_eq!(
        crate::model::spec::mask_secrets(
            "--requirepass hunter2secret --port 6379",
            &d.secret_values
        ),
        "--requirepass (secret) --port 6379"
    );
}

/// A value that came from a secret-named variable, a secret-named `environment` entry or an
/// env file is never quoted in an error, whole or in part, whichever key it ends up in.
#[test]
fn no_error_quotes_a_secret_value_whatever_the_key() {
    let compose = "services:\n  app:\n    image: busybox\n    environment:\n      DB_PASSWORD: ${DBPW}\n    restart: ${DBPW}\n    stop_grace_period: ${DBPW}\n    extra_hosts: [\"${DBPW}\", \"db:${DBPW}\"]\n    ports: [\"${DBPW}\", \"127.0.0.1:${DBPW}:80\"]\n    depends_on: [\"${DBPW}\"]\n    healthcheck:\n      test: [CMD, \"true\"]\n      interval: ${DBPW}\n    deploy:\n      resources:\n        limits:\n          memory: ${DBPW}\n  other:\n    image: busybox\n    restart: ${FROM_FILE}\n    env_file: app.env\n";
    let e = errs_env(
        &[
            ("convoy.yaml", FLEET),
            ("stacks/web/compose.yaml", compose),
            ("stacks/web/app.env", "ANYTHING=f1le-value_99\n"),
        ],
        &[("DBPW", "s3cr3t-hunter2"), ("FROM_FILE", "f1le-value_99")],
    );
    let keys: Vec<&str> = e.iter().filter_map(|m| m.split(": ").nth(1)).collect();
    for key in [
        "services.app.restart",
        "services.app.stop_grace_period",
        "services.app.extra_hosts[0]",
        "services.app.extra_hosts[1]",
        "services.app.ports[0]",
        "services.app.ports[1]",
        "services.app.depends_on[0]",
        "services.app.healthcheck.interval",
        "services.app.deploy.resources.limits.memory",
        "services.other.restart",
    ] {
        assert!(keys.contains(&key), "no error at {key}: {e:#?}");
    }
    for part in ["s3cr3t", "hunter2", "f1le", "value_99"] {
        assert!(
            !e.iter().any(|m| m.contains(part)),
            "`{part}` shown: {e:#?}"
        );
    }
    assert!(e.iter().any(|m| m.contains("(secret)")), "{e:#?}");
}

/// A value made secret in one stack is masked in the messages of another.
#[test]
fn a_secret_of_one_stack_is_masked_in_another() {
    let e = errs_env(
        &[
            ("convoy.yaml", FLEET),
            (
                "stacks/a/compose.yaml",
                "services:\n  app:\n    image: busybox\n    environment:\n      API_TOKEN: ${SHARED}\n",
            ),
            (
                "stacks/b/compose.yaml",
                "services:\n  app:\n    image: busybox\n    restart: ${SHARED}\n",
            ),
        ],
        &[("SHARED", "t0ken-abcdef")],
    );
    assert_eq!(
        e,
        vec!["stacks/b/compose.yaml:4:14: services.app.restart: invalid restart policy `(secret)` (expected no, always, on-failure[:N] or unless-stopped)"]
    );
}
