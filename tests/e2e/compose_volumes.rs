//! Compose volume and network keys on the local engine: an anonymous volume is the slot's own
//! volume, owned by the fleet and kept when the container is replaced.
//!
//! Only the fleet's own containers, networks and volumes are made; `TestFleet` removes them on
//! drop. Any subnet used is in 10.250.x.0/24, one per test, never a range the machine uses.

use crate::harness::*;

fn anon_stack(t: &TestFleet, cmd: &str) {
    t.compose(
        "av",
        &format!(
            "services:\n  db:\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", \"{cmd}\"]\n    volumes:\n      - /data\n"
        ),
    );
}

#[test]
fn an_anonymous_volume_survives_the_replacement_of_its_slot() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let name = t.cname("av", "db", 1);
    anon_stack(&t, "echo kept > /data/f; exec sleep 3600");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    wait_for(
        "the file in the volume",
        std::time::Duration::from_secs(20),
        || docker_try(&["exec", &name, "cat", "/data/f"]).is_some_and(|s| s.trim() == "kept"),
    );
    let volume = t.inspect(
        &name,
        "{{range .Mounts}}{{if eq .Destination \"/data\"}}{{.Name}}{{end}}{{end}}",
    );
    assert!(
        volume.starts_with(&format!("{}_db_1_anon_", t.stack("av"))),
        "{volume}"
    );
    // Owned by the fleet, like the stack's named volumes.
    assert_eq!(
        docker(&[
            "volume",
            "inspect",
            "-f",
            "{{index .Labels \"convoy.fleet\"}}",
            &volume
        ])
        .trim(),
        t.id
    );
    // Converged: nothing changes on the next pass.
    let before = t.engine_view();
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.engine_view(), before);

    // A new command replaces the container; the new one mounts the same volume.
    let old_id = t.id_of(&name);
    anon_stack(&t, "exec sleep 3601");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_ne!(t.id_of(&name), old_id);
    assert_eq!(
        docker(&["exec", &name, "cat", "/data/f"]).trim(),
        "kept",
        "the replacement sees the slot's data"
    );
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

#[test]
fn a_fixed_address_on_an_ipam_network_converges_and_stays_converged() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "ip",
        &format!(
            r#"
services:
  app:
    image: {IMAGE}
    command: sleep 3600
    networks:
      back:
        ipv4_address: 10.250.7.10
networks:
  back:
    driver_opts:
      com.docker.network.bridge.enable_icc: "true"
    ipam:
      config:
        - subnet: 10.250.7.0/24
          gateway: 10.250.7.1
"#
        ),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let name = t.cname("ip", "app", 1);
    assert_eq!(
        t.inspect(
            &name,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        )
        .trim(),
        "10.250.7.10"
    );
    let net = format!("{}_back", t.stack("ip"));
    assert_eq!(
        docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            &net
        ])
        .trim(),
        "10.250.7.0/24"
    );
    let before = t.engine_view();
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.engine_view(), before, "nothing changes on the next pass");

    // An address outside the subnet is a located error, and changes nothing.
    t.compose(
        "ip",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    networks:\n      back:\n        ipv4_address: 10.250.8.10\nnetworks:\n  back:\n    ipam:\n      config:\n        - subnet: 10.250.7.0/24\n"
        ),
    );
    let run = t.convoy(&["validate"]).outcome(Outcome::Invalid);
    assert!(
        run.stderr.contains("compose.yaml:6") && run.stderr.contains("ipv4_address"),
        "{}",
        run.stderr
    );
}
