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
