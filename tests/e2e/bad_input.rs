//! Broken repositories: every error is located (file, line, key), and the engine is unchanged.

use crate::harness::*;

const GOOD: &str = "services:\n  app:\n    image: convoy-test/busybox:1\n    command: sleep 3600\n";

/// Applies a good repository, breaks it with `break_it`, and checks that `apply` refuses with
/// every expected fragment on stderr and that nothing on the engine changed.
fn rejected(break_it: impl Fn(&TestFleet), expect: &[&str]) {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose("web", GOOD);
    t.compose("ok", GOOD);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let before = t.engine_view();
    break_it(&t);
    // Scaling the good stack too: an all-or-nothing refusal must not apply even that.
    t.compose(
        "ok",
        "services:\n  app:\n    image: convoy-test/busybox:1\n    command: sleep 3600\n    deploy:\n      replicas: 2\n",
    );
    for cmd in [&["validate"][..], &["diff"], &["apply"]] {
        let out = t.convoy(cmd).outcome(Outcome::Invalid);
        for e in expect {
            let e = e.replace("{web}", &t.stack("web"));
            assert!(
                out.stderr.contains(&e),
                "{cmd:?}: want {e:?} in\n{}",
                out.stderr
            );
        }
        assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    }
    assert_eq!(t.engine_view(), before, "the engine changed");
}

#[test]
fn yaml_syntax_error() {
    rejected(
        |t| t.compose("web", "services:\n  app:\n    image: [unclosed\n"),
        &["stacks/{web}/compose.yaml:"],
    );
}

#[test]
fn unknown_key_with_a_suggestion() {
    rejected(
        |t| {
            t.compose(
                "web",
                "services:\n  app:\n    image: convoy-test/busybox:1\n    deploy:\n      replicsa: 2\n",
            )
        },
        &[
            "stacks/{web}/compose.yaml:5:7: services.app.deploy.replicsa: unknown key",
            "`replicas`",
        ],
    );
}

#[test]
fn unsupported_key_says_so() {
    rejected(
        |t| {
            t.compose(
                "web",
                "services:\n  app:\n    build: .\n    image: convoy-test/busybox:1\n",
            )
        },
        &[
            "stacks/{web}/compose.yaml:3:5: services.app.build",
            "not supported",
        ],
    );
}

#[test]
fn bad_interpolation() {
    rejected(
        |t| {
            t.compose(
                "web",
                "services:\n  app:\n    image: convoy-test/busybox:${TAG:?set TAG to the release}\n",
            )
        },
        &[
            "stacks/{web}/compose.yaml:3:12",
            "TAG",
            "set TAG to the release",
        ],
    );
}

#[test]
fn duplicate_host_port() {
    rejected(
        |t| {
            t.compose(
                "web",
                "services:\n  a:\n    image: convoy-test/busybox:1\n    ports: [\"127.0.0.1:18099:80\"]\n  b:\n    image: convoy-test/busybox:1\n    ports: [\"127.0.0.1:18099:81\"]\n",
            )
        },
        &["stacks/{web}/compose.yaml:7:", "18099"],
    );
}

#[test]
fn relative_bind_source() {
    rejected(
        |t| {
            t.compose(
                "web",
                "services:\n  app:\n    image: convoy-test/busybox:1\n    volumes:\n      - ./conf:/etc/app\n",
            )
        },
        &["stacks/{web}/compose.yaml:5:", "relative bind-mount source"],
    );
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    rejected(
        |t| {
            t.compose(
                "web",
                "services:\n  app:\n    image: convoy-test/busybox:1\n    restartt: always\n    deploy:\n      replicsa: 2\n",
            )
        },
        &[
            "stacks/{web}/compose.yaml:4:5: services.app.restartt",
            "stacks/{web}/compose.yaml:6:7: services.app.deploy.replicsa",
        ],
    );
}

#[test]
fn an_empty_repository_is_an_error_not_a_request_to_remove_everything() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose("web", GOOD);
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let before = t.engine_view();
    std::fs::remove_dir_all(t.path().join("stacks")).unwrap();
    for cmd in [&["validate"][..], &["diff"], &["apply"]] {
        let out = t.convoy(cmd).outcome(Outcome::Invalid);
        assert!(out.stderr.contains("stacks: []"), "{cmd:?}: {}", out.stderr);
    }
    assert_eq!(t.engine_view(), before);
    // Said explicitly, removing everything is what the user asked for.
    t.write("convoy.yaml", &format!("fleet: {}\nstacks: []\n", t.id));
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    assert!(t.containers().is_empty());
}
