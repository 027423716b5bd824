//! Compose keys that change how Convoy names and fetches a container, on the local engine:
//! `container_name` (the replica's engine name, while ownership, healing and removal still go
//! by the fleet's labels) and `pull_policy` (`never` fetches nothing, `always` pulls even an
//! image the host has).
//!
//! Registries are only ever addressed on loopback (`127.0.0.1:1`, where nothing listens), so a
//! pull that happens fails at once and says so, and nothing leaves the machine.

use crate::harness::*;

/// A local tag of the test image, untagged on drop (the image itself stays).
struct Tag(String);

impl Tag {
    fn new(name: String) -> Tag {
        docker(&["tag", IMAGE, &name]);
        Tag(name)
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = docker_try(&["rmi", &self.0]);
    }
}

fn named_stack(t: &TestFleet, name: &str, with_other: bool) {
    let other = if with_other {
        format!("  other:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n")
    } else {
        String::new()
    };
    t.compose(
        "cn",
        &format!(
            "services:\n  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    container_name: {name}\n{other}"
        ),
    );
}

#[test]
fn a_container_name_converges_heals_and_is_removed_by_its_labels() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let name = format!("{}-named-db", t.id);
    named_stack(&t, &name, true);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(
        t.containers(),
        vec![name.clone(), t.cname("cn", "other", 1)]
    );
    assert_eq!(t.inspect(&name, "{{.State.Status}}"), "running");
    for (label, want) in [
        ("convoy.fleet", t.id.clone()),
        ("convoy.stack", t.stack("cn")),
        ("convoy.service", "db".into()),
        ("convoy.slot", "1".into()),
    ] {
        assert_eq!(
            t.inspect(&name, &format!("{{{{index .Config.Labels \"{label}\"}}}}")),
            want
        );
    }
    // A second apply changes nothing.
    let before = t.engine_view();
    let again = t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
    assert_eq!(t.engine_view(), before);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    let status = t.convoy(&["status"]);
    assert!(status.stdout.contains(&name), "{}", status.stdout);

    // Deleted behind Convoy's back: made again under its name.
    docker(&["rm", "-f", &name]);
    t.convoy(&["diff"]).outcome(Outcome::Differs);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.inspect(&name, "{{.State.Status}}"), "running");
    t.convoy(&["diff"]).outcome(Outcome::InSync);

    // The service removed: its container goes, found by its labels.
    t.compose(
        "cn",
        &format!("services:\n  other:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.containers(), vec![t.cname("cn", "other", 1)]);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

/// Setting the name on a running service replaces its container: one container, new name.
#[test]
fn setting_a_container_name_renames_the_replica() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "cn",
        &format!("services:\n  db:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"),
    );
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.containers(), vec![t.cname("cn", "db", 1)]);
    let name = format!("{}-renamed", t.id);
    named_stack(&t, &name, false);
    let diff = t.convoy(&["diff"]).outcome(Outcome::Differs);
    assert!(diff.stdout.contains("container_name"), "{}", diff.stdout);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.containers(), vec![name]);
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

#[test]
fn a_container_name_held_by_a_foreign_container_is_a_conflict() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let name = format!("{}-foreign", t.id);
    let foreign = Unowned::run(&name, &[]);
    named_stack(&t, &name, false);
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("not owned by fleet"), "{all}");
    assert!(t.containers().is_empty());
    // The foreign container is untouched.
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Status}}", &foreign.0]),
        "running"
    );
}

#[test]
fn pull_policy_never_fails_the_step_with_a_missing_image_and_the_rest_converges() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let absent = format!("127.0.0.1:1/convoy-absent-{}:1", t.id);
    t.compose(
        "pp",
        &format!(
            "services:\n  gone:\n    image: {absent}\n    pull_policy: never\n  ok:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    pull_policy: never\n"
        ),
    );
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("pull_policy: never"), "{all}");
    assert!(all.contains(&absent), "{all}");
    // No pull was tried: the engine's pull error would name the registry's refusal.
    assert!(!all.contains("cannot pull"), "{all}");
    assert_eq!(t.running(), vec![t.cname("pp", "ok", 1)]);
}

/// `always` pulls even an image the host has: with the image's registry on a closed loopback
/// port, `missing` converges from the local copy and `always` fails, naming the pull. Changing
/// the policy replaces nothing.
#[test]
fn pull_policy_always_pulls_an_image_the_host_has() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    let tag = Tag::new(format!("127.0.0.1:1/convoy-always-{}:1", t.id));
    let stack = |policy: &str| {
        t.compose(
            "pp",
            &format!(
                "services:\n  app:\n    image: {}\n    command: [\"sleep\", \"3600\"]\n    pull_policy: {policy}\n",
                tag.0
            ),
        )
    };
    stack("missing");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let before = t.engine_view();
    // Only the policy changed: in sync, nothing replaced.
    stack("always");
    t.convoy(&["diff"]).outcome(Outcome::InSync);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert_eq!(t.engine_view(), before);
    // A replacement now pulls first, and the pull fails.
    docker(&["rm", "-f", &t.cname("pp", "app", 1)]);
    let out = t.convoy(&["apply"]).outcome(Outcome::NotConverged);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("cannot pull image"), "{all}");
    assert!(t.containers().is_empty());
}
