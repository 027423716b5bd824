//! `apply`, `diff` and `status` against the local engine: converge, edit, scale, remove, heal.

use std::time::Duration;

use crate::harness::*;

fn two_services(t: &TestFleet, env_value: &str, replicas: u32) {
    t.compose(
        "web",
        &format!(
            r#"
services:
  app:
    image: {IMAGE}
    command: ["sleep", "3600"]
    environment:
      MODE: "{env_value}"
    deploy:
      replicas: {replicas}
  db:
    image: {IMAGE}
    command: sleep 3600
    labels:
      team: data
"#
        ),
    );
}

#[test]
fn apply_converges_then_a_second_apply_changes_nothing() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    two_services(&t, "a", 2);
    t.convoy(&["diff"]).outcome(Outcome::Differs);
    let out = t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(out.stdout.contains("Converged"), "{}", out.stdout);
    let want = vec![
        t.cname("web", "app", 1),
        t.cname("web", "app", 2),
        t.cname("web", "db", 1),
    ];
    assert_eq!(t.containers(), want);
    for name in &want {
        assert_eq!(t.inspect(name, "{{.State.Status}}"), "running");
        assert_eq!(
            t.inspect(name, "{{.HostConfig.RestartPolicy.Name}}"),
            "unless-stopped"
        );
        assert_eq!(
            t.inspect(name, "{{index .Config.Labels \"convoy.fleet\"}}"),
            t.id
        );
    }
    assert_eq!(
        t.inspect(&want[0], "{{index .Config.Labels \"convoy.slot\"}}"),
        "1"
    );
    assert_eq!(
        t.inspect(&want[2], "{{index .Config.Labels \"team\"}}"),
        "data"
    );
    // Service names resolve inside the stack's network.
    let net = format!("{}_default", t.stack("web"));
    assert_eq!(
        docker(&["network", "inspect", "-f", "{{.Name}}", &net]),
        net
    );

    let before = t.engine_view();
    let again = t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(t.engine_view(), before);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

#[test]
fn an_edit_shows_in_diff_and_replaces_exactly_one_container() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    two_services(&t, "a", 1);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let before = t.engine_view();

    two_services(&t, "b", 1);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    let app = t.cname("web", "app", 1);
    assert!(diff.stdout.contains(&format!("~ {app}")), "{}", diff.stdout);
    assert!(
        diff.stdout.contains("environment.MODE: \"a\" → \"b\""),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains("0 to create, 1 to replace"),
        "{}",
        diff.stdout
    );
    assert!(
        !diff.stdout.contains(&t.cname("web", "db", 1)),
        "{}",
        diff.stdout
    );

    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let after = t.engine_view();
    assert_eq!(before.len(), after.len());
    let changed: Vec<&String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b.1 != a.1)
        .map(|(b, _)| &b.0)
        .collect();
    assert_eq!(changed, vec![&app]);
    assert!(t.inspect(&app, "{{.Config.Env}}").contains("MODE=b"));
}

#[test]
fn scale_up_and_down() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    two_services(&t, "a", 1);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    two_services(&t, "a", 3);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(
        t.containers()
            .iter()
            .filter(|n| n.contains("-app-"))
            .count(),
        3
    );
    two_services(&t, "a", 1);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(diff.stdout.contains("scaled down to 1"), "{}", diff.stdout);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(
        t.containers(),
        vec![t.cname("web", "app", 1), t.cname("web", "db", 1)]
    );
}

#[test]
fn removing_a_stack_removes_its_containers_and_network_but_keeps_its_volume() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    two_services(&t, "a", 1);
    t.compose(
        "jobs",
        &format!(
            r#"
services:
  tick:
    image: {IMAGE}
    command: sleep 3600
    volumes:
      - data:/data
volumes:
  data: {{}}
"#
        ),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let vol = format!("{}_data", t.stack("jobs"));
    assert_eq!(docker(&["volume", "inspect", "-f", "{{.Name}}", &vol]), vol);
    t.remove_stack("jobs");
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout
            .contains(&format!("stack `{}` removed", t.stack("jobs"))),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout.contains(&vol),
        "orphaned volume is reported: {}",
        diff.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(t.containers().iter().all(|n| !n.contains("jobs")));
    let net = format!("{}_default", t.stack("jobs"));
    assert!(
        docker_try(&["network", "inspect", &net]).is_none(),
        "network removed"
    );
    assert_eq!(
        docker(&["volume", "inspect", "-f", "{{.Name}}", &vol]),
        vol,
        "volume kept"
    );
    let status = t.convoy(&["status"]).outcome(Outcome::AllReachable);
    assert!(
        status.stdout.contains(&format!("orphaned volume `{vol}`")),
        "{}",
        status.stdout
    );
}

#[test]
fn drift_made_by_hand_is_healed() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!(
            r#"
services:
  app:
    image: {IMAGE}
    command: sleep 3600
    deploy:
      replicas: 3
      resources:
        limits:
          memory: 64m
"#
        ),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let (a1, a2, a3) = (
        t.cname("web", "app", 1),
        t.cname("web", "app", 2),
        t.cname("web", "app", 3),
    );
    let id3 = t.id_of(&a3);
    docker(&["rm", "-f", &a1]);
    docker(&["stop", "-t", "0", &a2]);
    docker(&["update", "--memory", "128m", "--memory-swap", "256m", &a3]);

    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(diff.stdout.contains(&format!("+ {a1}")), "{}", diff.stdout);
    assert!(diff.stdout.contains(&format!("> {a2}")), "{}", diff.stdout);
    assert!(
        diff.stdout
            .contains("deploy.resources.limits.memory: 128MiB → 64MiB"),
        "{}",
        diff.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    for n in [&a1, &a2, &a3] {
        assert_eq!(t.inspect(n, "{{.State.Status}}"), "running", "{n}");
    }
    assert_ne!(t.id_of(&a3), id3, "drifted container replaced");
    assert_eq!(
        t.inspect(&a3, "{{.HostConfig.Memory}}"),
        (64u64 << 20).to_string()
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

#[test]
fn a_container_recreated_by_hand_with_our_labels_but_another_env_is_replaced() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    environment: [A=1]\n"),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let name = t.cname("web", "app", 1);
    let labels = t.inspect(&name, "{{json .Config.Labels}}");
    let labels: std::collections::BTreeMap<String, String> = serde_json::from_str(&labels).unwrap();
    docker(&["rm", "-f", &name]);
    let mut args = vec![
        "run".to_string(),
        "-d".into(),
        "--name".into(),
        name.clone(),
        "-e".into(),
        "A=2".into(),
    ];
    for (k, v) in &labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([IMAGE.to_string(), "sleep".into(), "3600".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(
        diff.stdout.contains("environment.A: \"2\" → \"1\""),
        "{}",
        diff.stdout
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(t.inspect(&name, "{{.Config.Env}}").contains("A=1"));
}

#[test]
fn unowned_containers_are_never_touched_and_a_name_clash_is_a_conflict() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    // Same name Convoy wants, not ours; and one claiming another fleet's label.
    let clash = Unowned::run(&t.cname("web", "app", 1), &[]);
    let other = Unowned::run(
        &format!("{}-other", t.id),
        &[&format!("convoy.fleet={}zz", t.id)],
    );
    let clash_id = t.id_of(&clash.0);
    let other_id = t.id_of(&other.0);
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n  db:\n    image: {IMAGE}\n    command: sleep 3600\n"),
    );
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    assert!(out.stdout.contains("not owned by fleet"), "{}", out.stdout);
    assert_eq!(t.id_of(&clash.0), clash_id);
    assert_eq!(t.inspect(&clash.0, "{{.State.Status}}"), "running");
    assert_eq!(t.id_of(&other.0), other_id);
    assert_eq!(t.containers(), vec![t.cname("web", "db", 1)]);
}

#[test]
fn depends_on_healthy_starts_the_dependent_after_the_dependency_is_healthy() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!(
            r#"
services:
  worker:
    image: {IMAGE}
    command: sleep 3600
    depends_on:
      api:
        condition: service_healthy
  api:
    image: {IMAGE}
    command: ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 3600"]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 500ms
      retries: 20
"#
        ),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let api = t.cname("web", "api", 1);
    let worker = t.cname("web", "worker", 1);
    assert_eq!(t.inspect(&api, "{{.State.Health.Status}}"), "healthy");
    // The first passing probe ended before the worker started. Both times as RFC 3339 in UTC
    // with nine fraction digits, so that they compare as strings.
    let probes = t.inspect(
        &api,
        "{{range .State.Health.Log}}{{if eq .ExitCode 0}}{{.End.UTC.Format \"2006-01-02T15:04:05.000000000Z\"}} {{end}}{{end}}",
    );
    let first_ok = probes
        .split_whitespace()
        .next()
        .expect("a passing probe")
        .to_string();
    let started = nine_digits(&t.inspect(&worker, "{{.State.StartedAt}}"));
    assert!(
        started >= first_ok,
        "worker started {started} before api was healthy {first_ok}"
    );
}

#[test]
fn a_one_shot_service_that_completed_is_converged_and_not_restarted() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!("services:\n  migrate:\n    image: {IMAGE}\n    command: [\"true\"]\n    restart: \"no\"\n"),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let name = t.cname("web", "migrate", 1);
    wait_for("the one-shot to exit", Duration::from_secs(20), || {
        t.inspect(&name, "{{.State.Status}}") == "exited"
    });
    let started = t.inspect(&name, "{{.State.StartedAt}}");
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.inspect(&name, "{{.State.StartedAt}}"), started);
}

#[test]
fn secret_values_never_reach_diff_output() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let write = |pw: &str, file_val: &str| {
        t.write(
            &format!("stacks/{}/app.env", t.stack("web")),
            &format!("FROM_FILE={file_val}\n"),
        );
        // A secret-named variable interpolated into `command` and a label, not `environment`.
        t.write(
            &format!("stacks/{}/.env", t.stack("web")),
            &format!("REDIS_PASSWORD=redispass-{pw}\n"),
        );
        t.compose(
            "web",
            &format!(
                "services:\n  app:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"sleep 3600 # --requirepass ${{REDIS_PASSWORD}}\"]\n    labels:\n      auth: \"user:${{REDIS_PASSWORD}}\"\n    env_file: app.env\n    environment:\n      DB_PASSWORD: {pw}\n"
            ),
        );
    };
    write("hunter2-old", "filesecret-old");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    write("hunter2-new", "filesecret-new");
    for output in ["text", "json"] {
        let diff = t
            .convoy(&["diff", "--output", output])
            .outcome(Outcome::Differs);
        assert!(diff.stdout.contains("command"), "{output}: {}", diff.stdout);
        for secret in ["hunter2", "filesecret", "redispass"] {
            assert!(!diff.stdout.contains(secret), "{output}: {}", diff.stdout);
            assert!(!diff.stderr.contains(secret), "{output}: {}", diff.stderr);
        }
        assert!(diff.stdout.contains("DB_PASSWORD"), "{}", diff.stdout);
        assert!(diff.stdout.contains("(secret)"), "{}", diff.stdout);
    }
    let status = t
        .convoy(&["status", "--output", "json"])
        .outcome(Outcome::AllReachable);
    assert!(!status.stdout.contains("hunter2"));
}

#[test]
fn status_reports_desired_and_running_replicas() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    two_services(&t, "a", 2);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    docker(&["stop", "-t", "0", &t.cname("web", "app", 2)]);
    let out = t
        .convoy(&["status", "--output", "json"])
        .outcome(Outcome::AllReachable);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    let app = doc["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "app")
        .unwrap();
    assert_eq!(app["desired"], 2);
    assert_eq!(app["running"], 1);
}

#[test]
fn a_failing_pull_is_an_error_for_that_service_not_a_crash() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    // A registry on a closed loopback port: the pull fails at once and nothing leaves the box.
    t.compose(
        "web",
        &format!("services:\n  good:\n    image: {IMAGE}\n    command: sleep 3600\n  bad:\n    image: 127.0.0.1:9/convoy/missing:1\n"),
    );
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("cannot pull image `127.0.0.1:9/convoy/missing:1`"),
        "{text}"
    );
    assert!(text.contains(&t.cname("web", "bad", 1)), "{text}");
    assert_eq!(t.containers(), vec![t.cname("web", "good", 1)]);
}

#[test]
fn diff_json_is_stable_and_versioned() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    two_services(&t, "a", 1);
    let out = t
        .convoy(&["diff", "--output", "json"])
        .outcome(Outcome::Differs);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["in_sync"], false);
    assert_eq!(doc["summary"]["create"], 2);
    assert!(doc["unreachable"].as_object().unwrap().is_empty());
    assert!(doc["pending"].as_array().unwrap().is_empty());
}

/// `2026-01-01T00:00:00.5Z` → `2026-01-01T00:00:00.500000000Z`.
fn nine_digits(rfc3339: &str) -> String {
    let body = rfc3339.trim_end_matches('Z');
    let (secs, frac) = body.split_once('.').unwrap_or((body, ""));
    format!("{secs}.{frac:0<9}Z")
}

/// Every supported key at once: after `apply`, the engine's view must compare equal to the spec
/// (a field the engine reports differently would replace the container on every pass).
#[test]
fn every_supported_key_converges_and_stays_converged() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    every_key_stack(&t, (18391, 18392));
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let diff = t.convoy(&["diff"]).outcome(Outcome::InSync);
    assert!(diff.stdout.contains("No changes"), "{}", diff.stdout);
    let app = t.cname("web", "app", 1);
    assert_eq!(
        t.inspect(&app, "{{.HostConfig.Memory}}"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        t.inspect(
            &app,
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:3"
    );
    assert_eq!(t.inspect(&app, "{{.Config.Hostname}}"), "app-host");
    assert!(t
        .inspect(&app, "{{json .NetworkSettings.Networks}}")
        .contains(&format!("{}_back", t.stack("web"))));
    let before = t.engine_view();
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.engine_view(), before, "a second apply replaced something");
}

/// A stack whose service `extends` one from a second file (outside its folder), with an
/// optional service in a profile: it converges as the merged service, the profiled service is
/// not run until `convoy.yaml` enables its profile, and a second `diff` is in sync.
#[test]
fn a_stack_using_extends_and_profiles_converges() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.write(
        "shared/base.yaml",
        &format!(
            "services:\n  sleeper:\n    image: {IMAGE}\n    command: [sleep, '3600']\n    environment:\n      FROM_BASE: b\n      MODE: base\n"
        ),
    );
    t.compose(
        "ext",
        "services:\n  app:\n    extends:\n      file: ../../shared/base.yaml\n      service: sleeper\n    environment:\n      MODE: local\n  debug:\n    extends: app\n    profiles: [debug]\n",
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let app = t.cname("ext", "app", 1);
    assert_eq!(t.containers(), vec![app.clone()]);
    let env = t.inspect(&app, "{{json .Config.Env}}");
    assert!(env.contains("\"FROM_BASE=b\""), "{env}");
    assert!(env.contains("\"MODE=local\""), "{env}");
    assert_eq!(
        t.inspect(&app, "{{json .Config.Cmd}}"),
        r#"["sleep","3600"]"#
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    t.write(
        "convoy.yaml",
        &format!(
            "fleet: {}\nprofiles:\n  {}: [debug]\n",
            t.id,
            t.stack("ext")
        ),
    );
    t.convoy(&["diff"]).outcome(Outcome::Differs);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(
        t.containers(),
        vec![app.clone(), t.cname("ext", "debug", 1)]
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}
