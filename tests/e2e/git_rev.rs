//! Reading the desired state from git: `--rev`, `--base`, and the commit recorded on containers.

use crate::harness::*;

fn app(replicas: u32) -> String {
    format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n    deploy:\n      replicas: {replicas}\n")
}

#[test]
fn rev_reads_a_commit_without_checkout_and_records_it() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose("web", &app(1));
    git(t.path(), &["init", "-q", "-b", "main"]);
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-qm", "one replica"]);
    let first = git(t.path(), &["rev-parse", "--short=12", "HEAD"]);
    // The working tree moves on, uncommitted: `--rev HEAD` must not see it.
    t.compose("web", &app(3));
    t.convoy(&["apply", "--rev", "HEAD"])
        .outcome(Outcome::Converged);
    assert_eq!(t.containers(), vec![t.cname("web", "app", 1)]);
    let label = t.inspect(
        &t.cname("web", "app", 1),
        "{{index .Config.Labels \"convoy.commit\"}}",
    );
    assert_eq!(label, first);
    t.convoy(&["diff", "--rev", "HEAD"])
        .outcome(Outcome::InSync);

    // Working files that differ from HEAD are recorded as dirty.
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let label = t.inspect(
        &t.cname("web", "app", 3),
        "{{index .Config.Labels \"convoy.commit\"}}",
    );
    assert_eq!(label, format!("{first}-dirty"));

    // A commit that changes nothing in a service leaves its containers alone.
    let before = t.engine_view();
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-qm", "three replicas"]);
    t.convoy(&["apply", "--rev", "HEAD"])
        .outcome(Outcome::Converged);
    assert_eq!(t.engine_view(), before);

    t.convoy(&["diff", "--rev", "no-such-rev"])
        .outcome(Outcome::Error);
}

#[test]
fn diff_base_reviews_a_change_without_any_engine() {
    // No engine is contacted: point DOCKER_HOST at a socket that does not exist.
    let mut t = TestFleet::new();
    t.env("DOCKER_HOST", "unix:///nonexistent/convoy-test.sock");
    t.compose("web", &app(1));
    git(t.path(), &["init", "-q", "-b", "main"]);
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-qm", "a"]);
    t.compose("web", &app(2));
    git(t.path(), &["commit", "-qam", "b"]);
    let out = t
        .convoy(&["diff", "--rev", "HEAD", "--base", "HEAD~1"])
        .outcome(Outcome::Differs);
    assert!(
        out.stdout
            .contains(&format!("+ {}", t.cname("web", "app", 2))),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("1 to create, 0 to replace"),
        "{}",
        out.stdout
    );
    t.convoy(&["diff", "--rev", "HEAD", "--base", "HEAD"])
        .outcome(Outcome::InSync);
    // Without --base the same repository needs the engine, which is not there: an error.
    let blind = t
        .convoy(&["diff", "--rev", "HEAD"])
        .outcome(Outcome::Unobserved);
    assert!(blind.stdout.contains("unreachable"), "{}", blind.stdout);
}
