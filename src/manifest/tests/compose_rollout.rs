//! The keys of a rollout (issue 10): `deploy.update_config` and `deploy.rollback_config` with
//! Swarm's keys and Convoy's defaults, `x-convoy: {progress_deadline, readiness}`, the located
//! error of every bad value, the dotted `x-convoy.<key>` refused with the nested form, and
//! rollout settings kept out of the container's spec hash.
//!
//! Tests only, on in-memory repositories through `load`; no disk, no engine.

use super::*;
use crate::model::rollout::{FailureAction, Readiness, RolloutSpec, UpdateConfig, UpdateOrder};

/// A service `a` whose `deploy` holds `deploy` (indented by 6) and whose `x-convoy` holds
/// `x` (indented by 6), each left out when empty.
fn compose(deploy: &str, x: &str) -> String {
    let mut s = String::from("services:\n  a:\n    image: x\n");
    if !deploy.is_empty() {
        s += "    deploy:\n";
        s += deploy;
    }
    if !x.is_empty() {
        s += "    x-convoy:\n";
        s += x;
    }
    s
}

fn rollout(deploy: &str, x: &str) -> RolloutSpec {
    service(&compose(deploy, x)).rollout
}

#[test]
fn defaults_when_nothing_is_written() {
    let r = rollout("", "");
    assert_eq!(r, RolloutSpec::default());
    assert_eq!(r.update, UpdateConfig::default());
    assert_eq!(r.rollback, UpdateConfig::rollback_default());
    assert_eq!(r.update.failure_action, FailureAction::Rollback);
    assert_eq!(r.rollback.failure_action, FailureAction::Pause);
    assert_eq!(r.progress_deadline_ms, 120_000);
    assert_eq!(r.readiness, None);
    // Empty (or null) mappings are the defaults too.
    let r = rollout(
        "      update_config: {}\n      rollback_config:\n",
        "      hosts: [local]\n",
    );
    assert_eq!(r, RolloutSpec::default());
    // Extensions are the user's own, as elsewhere in `deploy`.
    let r = rollout("      update_config:\n        x-note: slow\n", "");
    assert_eq!(r.update, UpdateConfig::default());
}

#[test]
fn every_update_config_key_is_read() {
    let r = rollout(
        "      update_config:\n        parallelism: 2\n        delay: 1m30s\n        order: start-first\n        monitor: 500ms\n        failure_action: continue\n        max_failure_ratio: 0.25\n      rollback_config:\n        parallelism: 0\n        delay: 10s\n        order: stop-first\n        monitor: 0s\n        failure_action: continue\n        max_failure_ratio: 1\n",
        "",
    );
    assert_eq!(
        r.update,
        UpdateConfig {
            parallelism: 2,
            delay_ms: 90_000,
            order: UpdateOrder::StartFirst,
            monitor_ms: 500,
            failure_action: FailureAction::Continue,
            max_failure_ratio: 0.25,
        }
    );
    assert_eq!(
        r.rollback,
        UpdateConfig {
            parallelism: 0,
            delay_ms: 10_000,
            order: UpdateOrder::StopFirst,
            monitor_ms: 0,
            failure_action: FailureAction::Continue,
            max_failure_ratio: 1.0,
        }
    );
    // 0 is "all at once".
    assert_eq!(r.rollback.batch_size(4), 4);
    // What is not written keeps the default of its own mapping.
    let r = rollout(
        "      update_config:\n        failure_action: pause\n      rollback_config:\n        parallelism: 3\n",
        "",
    );
    assert_eq!(
        r.update,
        UpdateConfig {
            failure_action: FailureAction::Pause,
            ..UpdateConfig::default()
        }
    );
    assert_eq!(
        r.rollback,
        UpdateConfig {
            parallelism: 3,
            ..UpdateConfig::rollback_default()
        }
    );
    let r = rollout(
        "      update_config:\n        failure_action: rollback\n        parallelism: \"4\"\n",
        "",
    );
    assert_eq!(r.update.failure_action, FailureAction::Rollback);
    assert_eq!(r.update.parallelism, 4);
}

#[test]
fn x_convoy_rollout_keys_are_read() {
    let r = rollout(
        "",
        "      hosts: [local]\n      progress_deadline: 3m\n      readiness:\n        port: 8080\n        path: /healthz?full=1\n        expect: 204\n",
    );
    assert_eq!(r.progress_deadline_ms, 180_000);
    assert_eq!(
        r.readiness,
        Some(Readiness {
            port: 8080,
            path: "/healthz?full=1".into(),
            expect: 204,
        })
    );
    let s = service(&compose(
        "",
        "      readiness: {port: 80}\n      hosts: [local]\n",
    ));
    assert_eq!(
        s.rollout.readiness,
        Some(Readiness {
            port: 80,
            path: "/".into(),
            expect: 200,
        })
    );
    // `hosts` is read as before, beside the rollout keys.
    assert_eq!(s.placement.hosts, Some(vec!["local".to_string()]));
    // A duration below a millisecond is not 0.
    assert_eq!(
        rollout("", "      progress_deadline: 10us\n").progress_deadline_ms,
        1
    );
}

#[test]
fn bad_update_config_values_are_located() {
    let e = web_errs(&compose(
        "      update_config:\n        parallelism: -1\n        delay: soon\n        order: random\n        monitor: -5s\n        failure_action: retry\n        max_failure_ratio: 1.5\n        paralelism: 2\n",
        "",
    ));
    let p = "stacks/web/compose.yaml";
    let k = "services.a.deploy.update_config";
    assert_eq!(
        e,
        vec![
            format!("{p}:6:22: {k}.parallelism: expected a non-negative integer"),
            format!("{p}:7:16: {k}.delay: invalid duration `soon` (expected e.g. `30s`, `1m30s`, `500ms`)"),
            format!("{p}:8:16: {k}.order: invalid order `random` (expected stop-first or start-first)"),
            format!("{p}:9:18: {k}.monitor: expected a non-negative duration"),
            format!("{p}:10:25: {k}.failure_action: invalid failure_action `retry` (expected rollback, pause or continue)"),
            format!("{p}:11:28: {k}.max_failure_ratio: invalid max_failure_ratio 1.5 (expected a fraction from 0 to 1: 0.25 tolerates one failed replica in four)"),
            format!("{p}:12:9: {k}.paralelism: unknown key, did you mean `parallelism`?"),
        ]
    );
    let e = web_errs(&compose(
        "      update_config:\n        max_failure_ratio: -0.1\n        parallelism: [1]\n        order: 1\n      rollback_config: stop-first\n",
        "",
    ));
    assert_eq!(
        e,
        vec![
            format!("{p}:6:28: {k}.max_failure_ratio: invalid max_failure_ratio -0.1 (expected a fraction from 0 to 1: 0.25 tolerates one failed replica in four)"),
            format!("{p}:7:23: {k}.parallelism: expected an integer, found a list"),
            format!("{p}:8:16: {k}.order: invalid order `1` (expected stop-first or start-first)"),
            format!("{p}:9:24: services.a.deploy.rollback_config: expected a map, found a string"),
        ]
    );
}

#[test]
fn rollback_config_refuses_failure_action_rollback() {
    let e = web_errs(&compose(
        "      rollback_config:\n        failure_action: rollback\n",
        "",
    ));
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:6:25: services.a.deploy.rollback_config.failure_action: `failure_action: rollback` cannot be used in `rollback_config`: a failed rollback has no older version to go back to (expected pause or continue)"]
    );
    let e = web_errs(&compose(
        "      rollback_config:\n        failure_action: stop\n",
        "",
    ));
    assert_eq!(
        e,
        vec!["stacks/web/compose.yaml:6:25: services.a.deploy.rollback_config.failure_action: invalid failure_action `stop` (expected pause or continue)"]
    );
}

#[test]
fn bad_x_convoy_rollout_values_are_located() {
    let p = "stacks/web/compose.yaml";
    let e = web_errs(&compose(
        "",
        "      progress_deadline: 0s\n      readiness:\n        port: 70000\n        path: healthz\n        expect: 700\n        method: GET\n",
    ));
    assert_eq!(
        e,
        vec![
            format!("{p}:5:26: services.a.x-convoy.progress_deadline: a progress deadline of 0 would fail every new replica: expected a duration above 0 (the default is 2m)"),
            format!("{p}:7:15: services.a.x-convoy.readiness.port: invalid port 70000 (expected 1 to 65535)"),
            format!("{p}:8:15: services.a.x-convoy.readiness.path: the probe's path `healthz` does not start with `/`"),
            format!("{p}:9:17: services.a.x-convoy.readiness.expect: invalid HTTP status 700 (expected 100 to 599)"),
            format!("{p}:10:9: services.a.x-convoy.readiness.method: unknown key"),
        ]
    );
    let e = web_errs(&compose(
        "",
        "      progress_deadline: later\n      readiness: {path: \"/a b\", expect: 99}\n      readines: {}\n",
    ));
    assert_eq!(
        e,
        vec![
            format!("{p}:5:26: services.a.x-convoy.progress_deadline: invalid duration `later` (expected e.g. `30s`, `1m30s`, `500ms`)"),
            format!("{p}:6:19: services.a.x-convoy.readiness: missing `port`: the container port the probe asks, e.g. `readiness: {{port: 8080}}`"),
            format!("{p}:6:25: services.a.x-convoy.readiness.path: the probe's path holds a space or a control character: percent-encode it (`%20`)"),
            format!("{p}:6:41: services.a.x-convoy.readiness.expect: invalid HTTP status 99 (expected 100 to 599)"),
            format!("{p}:7:7: services.a.x-convoy.readines: unknown key, did you mean `readiness`?"),
        ]
    );
    let e = web_errs(&compose("", "      readiness: {port: 0}\n"));
    assert_eq!(
        e,
        vec![format!(
            "{p}:5:25: services.a.x-convoy.readiness.port: invalid port 0 (expected 1 to 65535)"
        )]
    );
}

/// YAML reads `x-convoy.readiness:` as one key with a dot, an extension Compose ignores: the
/// setting would do nothing, so it is an error that shows the nested form.
#[test]
fn dotted_x_convoy_keys_are_refused_with_the_nested_form() {
    let e = web_errs("services:\n  a:\n    image: x\n    x-convoy.readiness: {port: 8080}\n    x-convoy.progress_deadline: 2m\n    x-convoy.readiness.port: 80\n    x-other.thing: 1\n");
    assert_eq!(
        e,
        vec![
            "stacks/web/compose.yaml:4:5: services.a.x-convoy.readiness: `x-convoy.readiness` is one key with a dot in its name, which Compose ignores as an extension: nest it, as `x-convoy: {readiness: ...}`",
            "stacks/web/compose.yaml:5:5: services.a.x-convoy.progress_deadline: `x-convoy.progress_deadline` is one key with a dot in its name, which Compose ignores as an extension: nest it, as `x-convoy: {progress_deadline: ...}`",
            "stacks/web/compose.yaml:6:5: services.a.x-convoy.readiness.port: `x-convoy.readiness.port` is one key with a dot in its name, which Compose ignores as an extension: nest it, as `x-convoy: {readiness: ...}`",
        ]
    );
    // Beside a nested `x-convoy` too; the user's own extensions stay ignored.
    let e = web_errs("services:\n  a:\n    image: x\n    x-convoy:\n      hosts: [local]\n    x-convoy.hosts: [local]\n");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].starts_with("stacks/web/compose.yaml:6:5: services.a.x-convoy.hosts: "));
    assert!(e[0].ends_with("nest it, as `x-convoy: {hosts: ...}`"));
    service("services:\n  a:\n    image: x\n    x-other.thing: 1\n    x-convoyish: 2\n");
}

/// Rollout settings are not part of the container's spec: changing them alone replaces nothing.
#[test]
fn rollout_settings_leave_the_spec_hash_unchanged() {
    let plain = service(&compose("", ""));
    let tuned = service(&compose(
        "      update_config:\n        parallelism: 2\n        order: start-first\n        monitor: 30s\n      rollback_config:\n        parallelism: 0\n",
        "      progress_deadline: 5m\n      readiness: {port: 8080, path: /ready}\n",
    ));
    assert_ne!(plain.rollout, tuned.rollout);
    assert_eq!(plain.container, tuned.container);
    assert_eq!(plain.container.hash(), tuned.container.hash());
    // And a change of the container still changes it (the comparison can fail).
    let other = service("services:\n  a:\n    image: y\n");
    assert_ne!(plain.container.hash(), other.container.hash());
}
