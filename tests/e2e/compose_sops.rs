//! SOPS-encrypted env files, end to end: a stack's `env_file` written by the real `sops`
//! (SOPS's own fixture `functional-tests/res/format.enc.env`, PGP-encrypted to the test key it
//! publishes) is decrypted in memory by `validate`, `diff` and `apply` with the key in a private
//! `GNUPGHOME`, its value reaches the container and is masked in what Convoy prints; without the
//! key every command stops at a located error naming the file and the key. The age variant
//! (same values, data key re-wrapped with the real `age` CLI) opens with `--age-key-file`.
//!
//! gpg runs with a temporary home whose agent is stopped on drop; `TestFleet` removes the
//! containers. Without gpg the PGP test is skipped, unless Docker is required (CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

const PGP_FPR: &str = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4";
const AGE_RECIPIENT: &str = "age1lzd99uklcjnc0e7d860axevet2cz99ce9pq6tzuzd05l5nr28ams36nvun";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(project_root().join("tests/fixtures/sops").join(name)).expect(name)
}

/// A private GNUPGHOME (with SOPS's test key imported when asked); its agent is stopped on drop.
struct GpgHome(tempfile::TempDir);

impl GpgHome {
    fn new(import: bool) -> Option<GpgHome> {
        if Command::new("gpg").arg("--version").output().is_err() {
            assert!(
                !docker_required(),
                "gpg is required (CI or CONVOY_REQUIRE_DOCKER set): run scripts/ensure-docker"
            );
            eprintln!("SKIPPED: gpg is not installed");
            return None;
        }
        let home = GpgHome(tempfile::tempdir().expect("tempdir"));
        if import {
            let out = Command::new("gpg")
                .args(["--batch", "--quiet", "--import"])
                .arg(project_root().join("tests/fixtures/sops/sops_functional_tests_key.asc"))
                .env("GNUPGHOME", home.path())
                .output()
                .expect("gpg --import");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(home)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.path())
            .output();
    }
}

/// A fleet whose stack `sops` reads `app.env` (written by the caller), with no age key file
/// reachable by default (SOPS's default file is under `XDG_CONFIG_HOME`).
fn fleet(config: &Path, gnupghome: &Path) -> TestFleet {
    let mut t = TestFleet::new();
    t.env("GNUPGHOME", &gnupghome.display().to_string());
    t.env("XDG_CONFIG_HOME", &config.display().to_string());
    t.compose(
        "sops",
        &format!(
            "services:\n  app:\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n    env_file: app.env\n    stop_grace_period: 1s\n    deploy:\n      update_config: {{monitor: 0s}}\n"
        ),
    );
    t
}

fn app_env(t: &TestFleet) -> String {
    format!("stacks/{}/app.env", t.stack("sops"))
}

/// The decrypted value (`foo = bar` in the fixture) in any form output could quote it.
fn assert_value_not_shown(what: &str, run: &Run) {
    for form in ["=bar", "\"bar\"", " bar\"", "= bar", ": bar"] {
        assert!(
            !run.stdout.contains(form),
            "{what}: `{form}` on stdout:\n{}",
            run.stdout
        );
        assert!(
            !run.stderr.contains(form),
            "{what}: `{form}` on stderr:\n{}",
            run.stderr
        );
    }
}

#[test]
fn without_the_pgp_key_every_command_stops_at_a_located_error_naming_file_and_key() {
    let Some(empty) = GpgHome::new(false) else {
        return;
    };
    let config = tempfile::tempdir().expect("tempdir");
    let t = fleet(config.path(), empty.path());
    t.write(&app_env(&t), &fixture("format.enc.env"));
    for args in [&["validate"][..], &["diff"], &["apply"]] {
        let run = t.convoy(args).outcome(Outcome::Invalid);
        let stack = t.stack("sops");
        assert!(
            run.stderr.contains(&format!(
                "stacks/{stack}/compose.yaml:5:15: services.app.env_file: cannot read env file `stacks/{stack}/app.env`: cannot decrypt with SOPS"
            )),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(PGP_FPR), "{args:?}: {}", run.stderr);
    }
    assert_eq!(t.containers(), Vec::<String>::new());
}

#[test]
fn a_sops_env_file_decrypts_with_the_pgp_key_reaches_the_container_and_stays_masked() {
    if !docker_available() {
        return;
    }
    let Some(home) = GpgHome::new(true) else {
        return;
    };
    let config = tempfile::tempdir().expect("tempdir");
    let t = fleet(config.path(), home.path());
    // First in clear, with another value, so the switch to the encrypted file is a change.
    t.write(&app_env(&t), "foo=in-clear-before\n");
    t.convoy(&["apply"]).outcome(Outcome::Converged);
    let name = t.cname("sops", "app", 1);

    t.write(&app_env(&t), &fixture("format.enc.env"));
    t.convoy(&["validate"]).outcome(Outcome::Valid);
    for args in [&["diff"][..], &["diff", "--output", "json"]] {
        let run = t.convoy(args).outcome(Outcome::Differs);
        assert!(run.stdout.contains(&name), "{args:?}: {}", run.stdout);
        // The change is shown, its values masked.
        assert!(run.stdout.contains("foo"), "{args:?}: {}", run.stdout);
        assert!(run.stdout.contains("(secret)"), "{args:?}: {}", run.stdout);
        assert!(
            !run.stdout.contains("in-clear-before"),
            "{args:?}: {}",
            run.stdout
        );
        assert_value_not_shown(&format!("{args:?}"), &run);
    }
    let run = t.convoy(&["apply", "-vv"]).outcome(Outcome::Converged);
    assert_value_not_shown("apply -vv", &run);
    let env = t.inspect(&name, "{{range .Config.Env}}{{println .}}{{end}}");
    assert!(env.lines().any(|l| l == "foo=bar"), "{env}");
    // Converged: the decrypted file plans nothing more.
    t.convoy(&["diff"]).outcome(Outcome::InSync);
}

#[test]
fn an_age_encrypted_env_file_opens_with_age_key_file() {
    let empty = tempfile::tempdir().expect("tempdir");
    let config = tempfile::tempdir().expect("tempdir");
    let t = fleet(config.path(), empty.path());
    t.write(&app_env(&t), &fixture("format.age.env"));
    // No identity anywhere: the recipient is named.
    let run = t.convoy(&["validate"]).outcome(Outcome::Invalid);
    assert!(run.stderr.contains(AGE_RECIPIENT), "{}", run.stderr);
    assert!(
        run.stderr.contains("app.env`: cannot decrypt with SOPS"),
        "{}",
        run.stderr
    );
    // SOPS's published test identity, from a key file given by flag or by SOPS's variable.
    let keys: PathBuf = config.path().join("keys.txt");
    std::fs::write(
        &keys,
        "AGE-SECRET-KEY-1G0Q5K9TV4REQ3ZSQRMTMG8NSWQGYT0T7TZ33RAZEE0GZYVZN0APSU24RK7\n",
    )
    .expect("write keys");
    let keys = keys.display().to_string();
    t.convoy(&["validate", "--age-key-file", &keys])
        .outcome(Outcome::Valid);
    let mut t = t;
    t.env("SOPS_AGE_KEY_FILE", &keys);
    t.convoy(&["validate"]).outcome(Outcome::Valid);
}
