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
                "services:\n  app:\n    external_links: [db]\n    image: convoy-test/busybox:1\n",
            )
        },
        &[
            "stacks/{web}/compose.yaml:3:5: services.app.external_links",
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
                "services:\n  app:\n    image: convoy-test/busybox:1\n    volumes:\n      - ./conf:/etc/app:ro\n      - ../../../etc:/host-etc:ro\n",
            )
        },
        &[
            "stacks/{web}/compose.yaml:5:",
            "`./conf`",
            "does not exist in the repository",
            "stacks/{web}/compose.yaml:6:",
            "leads outside the repository",
        ],
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

/// Runs `convoy <args> --repo <dir>` as `TestFleet::convoy` does, with `env` added, under an
/// address-space limit, and kills it when it has not ended within 20 s: a command that waits
/// on a FIFO or reads a device without end fails the test instead of hanging it or exhausting
/// the machine.
fn convoy_bounded(t: &TestFleet, args: &[&str], env: &[(&str, &str)]) -> Run {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_convoy"));
    cmd.args(args)
        .arg("--repo")
        .arg(t.path())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only setrlimit, which is async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run convoy");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait for convoy").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`convoy {args:?}` still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("convoy's output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn mkfifo(path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn a_fifo_or_a_link_to_a_device_is_refused_without_waiting_or_reading_it() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose("web", GOOD);
    t.compose("ok", GOOD);
    t.compose("env", &format!("{GOOD}    env_file: app.env\n"));
    t.write(&format!("stacks/{}/app.env", t.stack("env")), "A=1\n");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let before = t.engine_view();
    let stack_file =
        |short: &str, file: &str| t.path().join("stacks").join(t.stack(short)).join(file);
    mkfifo(&stack_file("web", "compose.yaml"));
    std::os::unix::fs::symlink("/dev/zero", stack_file("ok", ".env")).expect("symlink");
    mkfifo(&stack_file("env", "app.env"));
    let expect = [
        format!(
            "stacks/{}/compose.yaml: cannot read: it is a FIFO (named pipe), not a regular file",
            t.stack("web")
        ),
        format!(
            "stacks/{}/.env: cannot read: it leads outside the repository (to `/dev/zero`)",
            t.stack("ok")
        ),
        format!(
            "cannot read env file `stacks/{}/app.env`: it is a FIFO (named pipe), not a regular file",
            t.stack("env")
        ),
    ];
    for cmd in [&["validate"][..], &["diff"], &["apply"]] {
        let out = convoy_bounded(&t, cmd, &[]).outcome(Outcome::Invalid);
        for e in &expect {
            assert!(
                out.stderr.contains(e),
                "{cmd:?}: want {e:?} in\n{}",
                out.stderr
            );
        }
        assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    }
    assert_eq!(t.engine_view(), before, "the engine changed");
}

#[test]
fn a_file_over_its_size_cap_is_refused_and_the_cap_is_configurable() {
    let t = TestFleet::new();
    let mut compose = GOOD.to_string();
    compose.push_str(&"# padding\n".repeat(5 * 1024 * 1024 / 10));
    let size = compose.len();
    t.compose("web", &compose);
    let out = convoy_bounded(&t, &["validate"], &[]).outcome(Outcome::Invalid);
    let want = format!(
        "error: stacks/{}/compose.yaml: cannot read: it is too large: {size} bytes, {} over the cap of 4194304 bytes (CONVOY_MAX_FILE_SIZE changes it)",
        t.stack("web"),
        size - 4194304
    );
    assert!(
        out.stderr.contains(&want),
        "want {want:?} in\n{}",
        out.stderr
    );
    convoy_bounded(&t, &["validate"], &[("CONVOY_MAX_FILE_SIZE", "8MiB")]).outcome(Outcome::Valid);
    let out = convoy_bounded(&t, &["validate"], &[("CONVOY_MAX_FILE_SIZE", "lots")])
        .outcome(Outcome::Error);
    assert!(
        out.stderr
            .contains("CONVOY_MAX_FILE_SIZE: invalid size `lots`"),
        "{}",
        out.stderr
    );
}

#[test]
fn links_out_of_the_repository_are_refused_and_links_inside_it_followed() {
    let t = TestFleet::new();
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.env"), "LEAKED=outside-secret\n").expect("write");
    std::fs::create_dir(outside.path().join("stack")).expect("mkdir");
    std::fs::write(outside.path().join("stack/compose.yaml"), GOOD).expect("write");
    let stacks = t.path().join("stacks");
    // Inside to inside: a shared compose file and a shared env file, both followed.
    t.write(
        "shared/compose.yaml",
        &format!("{GOOD}    env_file: ../../shared/common.env\n"),
    );
    t.write("shared/common.env", "A=1\n");
    std::fs::create_dir_all(stacks.join(t.stack("in"))).expect("mkdir");
    std::os::unix::fs::symlink(
        "../../shared/compose.yaml",
        stacks.join(t.stack("in")).join("compose.yaml"),
    )
    .expect("symlink");
    convoy_bounded(&t, &["validate"], &[]).outcome(Outcome::Valid);

    // Out of the repository: an env file, a compose file, a whole stack folder.
    t.compose("web", &format!("{GOOD}    env_file: app.env\n"));
    std::os::unix::fs::symlink(
        outside.path().join("secret.env"),
        stacks.join(t.stack("web")).join("app.env"),
    )
    .expect("symlink");
    std::fs::create_dir_all(stacks.join(t.stack("cf"))).expect("mkdir");
    std::os::unix::fs::symlink(
        outside.path().join("stack/compose.yaml"),
        stacks.join(t.stack("cf")).join("compose.yaml"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(outside.path().join("stack"), stacks.join(t.stack("ext")))
        .expect("symlink");
    let out = convoy_bounded(&t, &["validate"], &[]).outcome(Outcome::Invalid);
    for want in [
        format!(
            "env_file: cannot read env file `stacks/{}/app.env`: it leads outside the repository",
            t.stack("web")
        ),
        format!(
            "error: stacks/{}/compose.yaml: cannot read: it leads outside the repository",
            t.stack("cf")
        ),
        format!(
            "error: stacks/{}: cannot list: it leads outside the repository",
            t.stack("ext")
        ),
    ] {
        assert!(
            out.stderr.contains(&want),
            "want {want:?} in\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("outside-secret"), "{}", out.stderr);

    // A revision follows no link at all, inside or out.
    git(t.path(), &["init", "-q"]);
    git(t.path(), &["add", "-A"]);
    git(t.path(), &["commit", "-q", "-m", "links"]);
    let out = convoy_bounded(&t, &["validate", "--rev", "HEAD"], &[]).outcome(Outcome::Invalid);
    assert!(
        out.stderr.contains(&format!(
            "cannot read env file `stacks/{}/app.env`: it is a symbolic link at",
            t.stack("web")
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("outside-secret"), "{}", out.stderr);
}
