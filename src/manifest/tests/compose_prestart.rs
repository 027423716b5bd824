//! Compose's `pre_start` lifecycle hook as the manifest reads it: the fields the specification
//! gives (`command`, optional here; `user`, `privileged`, `working_dir`, `environment`,
//! `per_replica`), the hook's own `image` refused by name, located errors for bad values, a
//! warning for a scaled service whose hooks are not `per_replica`, and the spec hash of a
//! service without it unchanged.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;

#[test]
fn pre_start_hooks_are_read_in_order_with_their_fields() {
    let s = service(
        "services:\n  web:\n    image: x\n    environment: [A=1]\n    pre_start:\n      - command: [\"./manage.py\", \"migrate\"]\n      - command: sh -c 'chown -R 1000 /data'\n        user: root\n        privileged: true\n        working_dir: /srv\n        environment: {B: \"2\", DB_PASSWORD: s3cr3t-value-long}\n      - per_replica: false\n",
    );
    let h = &s.container.hooks;
    assert_eq!(h.pre_start.len(), 3);
    assert_eq!(h.pre_start[0].command, ["./manage.py", "migrate"]);
    let second = &h.pre_start[1];
    assert_eq!(second.command, ["sh", "-c", "chown -R 1000 /data"]);
    assert_eq!(second.user.as_deref(), Some("root"));
    assert!(second.privileged);
    assert_eq!(second.working_dir.as_deref(), Some("/srv"));
    assert_eq!(second.env_list(), ["B=2", "DB_PASSWORD=s3cr3t-value-long"]);
    assert!(!format!("{h:?}").contains("s3cr3t"));
    // No command: the image's own runs.
    assert!(h.pre_start[2].command.is_empty());
    assert!(h.post_start.is_empty() && h.pre_stop.is_empty());
}

#[test]
fn a_pre_start_secret_looking_value_is_a_secret_of_the_state() {
    let st = ok(&files(&web(
        "services:\n  web:\n    image: x\n    pre_start:\n      - command: \"true\"\n        environment: [API_TOKEN=hunter2-and-more]\n",
    )));
    assert!(st.secret_values.contains("hunter2-and-more"));
}

#[test]
fn a_spec_without_pre_start_hashes_as_before() {
    let plain = service("services:\n  web:\n    image: x\n");
    let empty = service("services:\n  web:\n    image: x\n    pre_start: []\n");
    let hooked = service("services:\n  web:\n    image: x\n    pre_start: [{command: \"true\"}]\n");
    let other = service("services:\n  web:\n    image: x\n    pre_start: [{command: \"false\"}]\n");
    assert_eq!(plain.container.hash(), empty.container.hash());
    assert_ne!(plain.container.hash(), hooked.container.hash());
    assert_ne!(hooked.container.hash(), other.container.hash());
    // The same command as a `post_start` is another spec.
    let post = service("services:\n  web:\n    image: x\n    post_start: [{command: \"true\"}]\n");
    assert_ne!(post.container.hash(), hooked.container.hash());
}

#[test]
fn pre_start_errors_are_located() {
    let e = web_errs(
        "services:\n  a:\n    image: x\n    pre_start:\n      - command: []\n      - image: busybox\n        command: x\n      - command: x\n        working_dir: rel\n        per_replica: maybe\n        bogus: 1\n      - just-a-string\n  b:\n    image: x\n    pre_start: {command: x}\n",
    );
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:5:9: services.a.pre_start[0]: the hook's `command` is empty",
            "stacks/web/compose.yaml:6:9: services.a.pre_start[1].image: `image` is not supported yet: Convoy ships each host the images of its services only, so another image for the hook would reach no host; run the hook from the service's image, or make it a one-shot service (`restart: no`) that this one depends on with `condition: service_completed_successfully`",
            "stacks/web/compose.yaml:9:22: services.a.pre_start[2].working_dir: working_dir `rel` is not an absolute path",
            "stacks/web/compose.yaml:10:22: services.a.pre_start[2].per_replica: expected a boolean, found a string",
            "stacks/web/compose.yaml:11:9: services.a.pre_start[2].bogus: unknown key",
            "stacks/web/compose.yaml:12:9: services.a.pre_start[3]: expected a map, found a string",
            "stacks/web/compose.yaml:15:17: services.b.pre_start: expected a list of hooks, found a map",
        ]
    );
}

/// Convoy runs `pre_start` before each replica it starts: a scaled service is warned unless
/// every hook says `per_replica: true`; one replica is not.
#[test]
fn a_scaled_service_without_per_replica_is_warned() {
    let st = ok(&files(&web(
        "services:\n  one:\n    image: x\n    pre_start: [{command: \"true\"}]\n  many:\n    image: x\n    deploy: {replicas: 3}\n    pre_start: [{command: \"true\"}]\n  said:\n    image: x\n    deploy: {replicas: 3}\n    pre_start: [{command: \"true\", per_replica: true}]\n",
    )));
    let w = &st.files.warnings;
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].starts_with("stacks/web/compose.yaml:8:18: services.many.pre_start: warning: `pre_start` runs before each replica Convoy starts, not once for the service (3 replicas"),
        "{w:#?}"
    );
    assert!(w[0].contains("per_replica: true"), "{w:#?}");
}
