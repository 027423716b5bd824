//! Signature verification against keys made in the test: commits signed by `git` itself with
//! an SSH key and with an OpenPGP key (in a temporary GnuPG home), an unsigned commit, and
//! commits signed by keys that are not allowed. Only the allowed ones verify.
//!
//! Tests only. The gpg-agent that signing starts is stopped when the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::branch_tests::{commit, git, git_env, repos, write};
use super::*;

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A GnuPG home with its own agent, stopped on drop.
struct GnuPg {
    home: tempfile::TempDir,
}

impl GnuPg {
    fn new() -> GnuPg {
        // Short: the agent's socket path must fit in a unix socket address.
        let home = tempfile::Builder::new()
            .prefix("gpg")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        GnuPg { home }
    }

    fn gpg(&self) -> Command {
        let mut c = Command::new("gpg");
        c.env("GNUPGHOME", self.home.path()).arg("--batch");
        c
    }

    /// A new signing key for `uid`; its fingerprint.
    fn key(&self, uid: &str) -> String {
        run_ok(self.gpg().args([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]));
        let listing = run_ok(self.gpg().args(["--with-colons", "--list-keys", uid]));
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .expect("fingerprint")
    }

    fn export(&self, fpr: &str, armor: bool, to: &Path) {
        let mut c = self.gpg();
        if armor {
            c.arg("--armor");
        }
        let bytes = c.args(["--export", fpr]).output().unwrap().stdout;
        assert!(!bytes.is_empty());
        std::fs::write(to, bytes).unwrap();
    }
}

impl Drop for GnuPg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

fn ssh_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&key),
    );
    key
}

/// Commits a change signed as `git commit -S` does with these `-c` settings; the commit's id.
fn signed_commit(work: &Path, what: &str, config: &[String], gnupg: Option<&Path>) -> String {
    write(work, "convoy.yaml", &format!("fleet: {what}\n"));
    git(work, &["add", "-A"]);
    let mut args: Vec<&str> = Vec::new();
    for c in config {
        args.extend(["-c", c.as_str()]);
    }
    args.extend(["commit", "-q", "-S", "-m", what]);
    let env: Vec<(&str, &Path)> = gnupg.map(|h| ("GNUPGHOME", h)).into_iter().collect();
    git_env(work, &args, &env);
    git(work, &["rev-parse", "HEAD"])
}

#[test]
fn only_commits_signed_by_allowed_keys_verify() {
    let r = repos("main");
    let keys = tempfile::tempdir().unwrap();
    let allowed_key = ssh_key(keys.path(), "allowed");
    let other_key = ssh_key(keys.path(), "other");
    let allowed_signers = keys.path().join("allowed_signers");
    let public = std::fs::read_to_string(allowed_key.with_extension("pub")).unwrap();
    std::fs::write(&allowed_signers, format!("alice@example.invalid {public}")).unwrap();

    let gnupg = GnuPg::new();
    let good_fpr = gnupg.key("Good <good@example.invalid>");
    let bad_fpr = gnupg.key("Bad <bad@example.invalid>");
    let keyring = keys.path().join("allowed.gpg");
    gnupg.export(&good_fpr, false, &keyring);
    let armored = keys.path().join("allowed.asc");
    gnupg.export(&good_fpr, true, &armored);

    let ssh = |key: &Path| {
        vec![
            "gpg.format=ssh".to_string(),
            format!("user.signingkey={}", key.display()),
        ]
    };
    let pgp = |fpr: &str| {
        vec![
            "gpg.format=openpgp".to_string(),
            "gpg.program=gpg".to_string(),
            format!("user.signingkey={fpr}"),
        ]
    };
    let unsigned = commit(&r.work, "unsigned");
    let ssh_good = signed_commit(&r.work, "ssh-good", &ssh(&allowed_key), None);
    let ssh_bad = signed_commit(&r.work, "ssh-bad", &ssh(&other_key), None);
    let home = Some(gnupg.home.path());
    let pgp_good = signed_commit(&r.work, "pgp-good", &pgp(&good_fpr), home);
    let pgp_bad = signed_commit(&r.work, "pgp-bad", &pgp(&bad_fpr), home);
    git(
        &r.work,
        &["push", "-q", r.bare.to_str().unwrap(), "HEAD:main"],
    );

    let follow = |policy: Option<SignaturePolicy>| {
        open_follow(
            r.bare.to_str().unwrap(),
            FollowOptions {
                signatures: policy,
                ..r.opts()
            },
        )
        .unwrap()
    };
    let both = follow(Some(SignaturePolicy {
        allowed_signers: Some(allowed_signers.clone()),
        gpg_keyring: Some(keyring.clone()),
    }));
    assert_eq!(both.verify(&ssh_good), Ok(()));
    assert_eq!(both.verify(&pgp_good), Ok(()));
    assert_eq!(
        both.verify(&unsigned),
        Err(format!("commit {unsigned} is not signed"))
    );
    let e = both.verify(&ssh_bad).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "commit {ssh_bad} is signed by an SSH key that is not in the allowed signers file"
        )),
        "{e}"
    );
    let e = both.verify(&pgp_bad).unwrap_err();
    let bad_id = &bad_fpr[bad_fpr.len() - 16..];
    assert!(
        e.starts_with(&format!(
            "commit {pgp_bad} is signed by OpenPGP key {bad_id}, which is not in the keyring"
        )),
        "{e}"
    );
    for e in [both.verify(&ssh_bad), both.verify(&pgp_bad)] {
        assert!(!e.unwrap_err().contains('\n'));
    }

    // An armored keyring reads the same.
    let armored = follow(Some(SignaturePolicy {
        allowed_signers: None,
        gpg_keyring: Some(armored),
    }));
    assert_eq!(armored.verify(&pgp_good), Ok(()));
    // A kind of signature with no keys given is refused, naming it.
    assert_eq!(
        armored.verify(&ssh_good),
        Err(format!(
            "commit {ssh_good} has an SSH signature, and no allowed signers file was given"
        ))
    );
    let ssh_only = follow(Some(SignaturePolicy {
        allowed_signers: Some(allowed_signers),
        gpg_keyring: None,
    }));
    assert_eq!(
        ssh_only.verify(&pgp_good),
        Err(format!(
            "commit {pgp_good} has an OpenPGP signature, and no GnuPG keyring was given"
        ))
    );
    // Without a policy, every commit may be applied.
    assert_eq!(follow(None).verify(&unsigned), Ok(()));
    // The followed commit's signature, as the daemon asks for it.
    assert_eq!(both.latest().unwrap(), pgp_bad);
    assert!(both.verify(&both.latest().unwrap()).is_err());
}
