//! A frozen stack heals from what runs (`core::frozen`): under a sync window, with no earlier
//! state known to a one-shot `apply`, a replica removed by hand while the held commit changes
//! its spec is made again from the spec its sibling runs, read back from the engine (its spec
//! hash, environment, its own slot's anonymous volume), and that copy is in sync with the
//! spec it came from: back on that spec, nothing differs.
//!
//! The local engine only; every container is this test's fleet's, removed by the harness.

use crate::gitops::version_is;
use crate::harness::*;

/// Two replicas with many settings the engine reports back: what the copy must carry over.
fn app(version: &str) -> String {
    format!(
        "services:
  app:
    image: {IMAGE}
    command: sleep 3600
    stop_grace_period: 1s
    working_dir: /tmp
    init: true
    environment:
      VERSION: \"{version}\"
      API_TOKEN: \"frozen-secret-{version}\"
    labels:
      team: core
    volumes:
      - /data
      - shared:/shared
    tmpfs:
      - /run/x
    cap_add: [NET_ADMIN]
    ulimits:
      nofile: {{soft: 1024, hard: 2048}}
    expose: [\"8080\"]
    ports: [\"80\"]
    healthcheck:
      test: [\"CMD\", \"true\"]
      interval: 5s
    deploy:
      replicas: 2
volumes:
  shared: {{}}
"
    )
}

#[test]
fn a_held_stack_makes_a_removed_replica_again_from_the_spec_its_sibling_runs() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let web = t.stack("web");
    t.compose("web", &app("1"));
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let (one, two) = (t.cname("web", "app", 1), t.cname("web", "app", 2));
    let hash = |n: &str| t.inspect(n, "{{index .Config.Labels \"convoy.spec-hash\"}}");
    let v1 = hash(&two);
    assert_eq!(hash(&one), v1);

    // A window holds `web`, the commit changes it, and a replica is removed by hand.
    let (window, _) = crate::windows::deny_now(&web, true);
    t.write("convoy.yaml", &format!("fleet: {}\n{window}", t.id));
    t.compose("web", &app("2"));
    docker(&["rm", "-f", &two]);
    let run = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(version_is(&t, &two, "1"), "made again with v1: {all}");
    assert_eq!(hash(&two), v1, "{all}");
    assert!(version_is(&t, &one, "1"));
    assert!(!all.contains("frozen-secret"), "{all}");
    // Each slot keeps its own anonymous volume.
    let volumes = |n: &str| t.inspect(n, "{{range .Mounts}}{{.Name}} {{end}}");
    assert!(
        volumes(&two).contains(&format!("{web}_app_2_anon_")),
        "{}",
        volumes(&two)
    );
    assert!(!volumes(&two).contains(&format!("{web}_app_1_anon_")));

    // The window gone and v1 written again: the copy is v1 to the engine too.
    t.write("convoy.yaml", &format!("fleet: {}\n", t.id));
    t.compose("web", &app("1"));
    let diff = t.convoy(&["diff"]).outcome(Outcome::InSync);
    assert!(!diff.stdout.contains(&two), "{}", diff.stdout);
}
