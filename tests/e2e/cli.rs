//! How the binary behaves as a Unix command: a closed stdout, outcomes as exit codes.

use std::process::Command;

use crate::harness::*;

/// Runs `convoy diff` into a shell pipeline `reader`, with bash's pipefail so the pipeline's
/// status is convoy's own; returns (status, stdout of the pipeline, convoy's stderr).
fn diff_into(t: &TestFleet, reader: &str) -> (i32, String, String) {
    let err = t.path().join("diff.err");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; \"$0\" diff --repo \"$1\" 2>\"$2\" | {reader}"
        ))
        .arg(env!("CARGO_BIN_EXE_convoy"))
        .arg(t.path())
        .arg(&err)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(&err).unwrap_or_default(),
    )
}

#[test]
fn a_closed_stdout_ends_the_output_quietly_with_the_outcome_kept() {
    if !docker_available() {
        return;
    }
    let t = TestFleet::new();
    t.compose(
        "web",
        &format!("services:\n  app:\n    image: {IMAGE}\n    command: sleep 3600\n"),
    );
    // The reader closes its end before convoy writes a byte: every write meets a closed pipe.
    let (code, _, stderr) = diff_into(&t, "{ exec 0<&-; }");
    assert_eq!(code, Outcome::Differs.code(), "stderr: {stderr}");
    assert!(
        stderr.is_empty(),
        "a closed pipe is not worth a word: {stderr}"
    );
    // As people write it.
    let (code, stdout, stderr) = diff_into(&t, "head -1");
    assert_eq!(code, Outcome::Differs.code(), "stderr: {stderr}");
    assert_eq!(stdout, format!("fleet `{}` at unversioned\n", t.id));
    assert!(stderr.is_empty(), "{stderr}");
    assert!(t.containers().is_empty(), "diff changes nothing");
}
