//! Whether a commit is signed by an allowed key: the signature and the signed payload come out
//! of the commit with git2, and the system's own tools judge them, the way `git verify-commit`
//! would: `ssh-keygen -Y find-principals` then `-Y verify` (namespace `git`) against an allowed
//! signers file for SSH signatures, `gpgv` against a keyring for OpenPGP ones. Every key in the
//! keyring or the allowed signers file is trusted; nothing else is.
//!
//! It decides nothing about what a refused commit means (the daemon holds it) and never reads
//! the user's GnuPG home: `gpgv` runs with a fresh empty home in a private temporary folder,
//! which also holds the signature and payload files and is removed afterwards. Every answer is
//! one line naming the commit and why. Blocks while the tools run (bounded by a timeout).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::run::{last_line, run, PrivateDir, Ran};

/// The keys a commit must be signed with (`--allowed-signers`, `--gpg-keyring`); a signature of
/// a kind with no keys given is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// SSH signers, in git's `gpg.ssh.allowedSignersFile` format.
    pub allowed_signers: Option<PathBuf>,
    /// An OpenPGP keyring (`gpg --export`, binary or ASCII-armored).
    pub gpg_keyring: Option<PathBuf>,
}

/// How long one verifying tool may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(20);
/// The most of a tool's output kept.
const OUTPUT_CAP: usize = 16 * 1024;

const SSH_ARMOR: &[u8] = b"-----BEGIN SSH SIGNATURE-----";
const PGP_ARMOR: &[u8] = b"-----BEGIN PGP SIGNATURE-----";
const X509_ARMOR: &[u8] = b"-----BEGIN SIGNED MESSAGE-----";

/// `Ok` when the commit `commit` (a full id, or anything `rev-parse` takes) of `repo` is signed
/// by a key `policy` allows; otherwise one line saying why not.
pub fn verify_commit(
    repo: &git2::Repository,
    commit: &str,
    policy: &SignaturePolicy,
) -> Result<(), String> {
    let oid = repo
        .revparse_single(commit)
        .and_then(|o| o.peel_to_commit())
        .map(|c| c.id())
        .map_err(|e| format!("cannot find commit {commit}: {}", e.message()))?;
    let (signature, payload) = match repo.extract_signature(&oid, None) {
        Ok((s, p)) => (s.to_vec(), p.to_vec()),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            return Err(format!("commit {oid} is not signed"))
        }
        Err(e) => {
            return Err(format!(
                "cannot read the signature of commit {oid}: {}",
                e.message()
            ))
        }
    };
    let sig = signature.trim_ascii_start();
    if sig.starts_with(SSH_ARMOR) {
        let Some(allowed) = &policy.allowed_signers else {
            return Err(format!(
                "commit {oid} has an SSH signature, and no allowed signers file was given"
            ));
        };
        verify_ssh(&oid.to_string(), &signature, &payload, allowed)
    } else if sig.starts_with(PGP_ARMOR) {
        let Some(keyring) = &policy.gpg_keyring else {
            return Err(format!(
                "commit {oid} has an OpenPGP signature, and no GnuPG keyring was given"
            ));
        };
        verify_pgp(&oid.to_string(), &signature, &payload, keyring)
    } else if sig.starts_with(X509_ARMOR) {
        Err(format!(
            "commit {oid} has an X.509 signature; only SSH and OpenPGP signatures are verified"
        ))
    } else {
        Err(format!("commit {oid} has a signature of an unknown kind"))
    }
}

fn tool(ran: std::io::Result<Ran>, name: &str) -> Result<Ran, String> {
    match ran {
        Ok(r) if r.status.is_none() => Err(format!(
            "{name} did not finish within {} s",
            TOOL_TIMEOUT.as_secs()
        )),
        Ok(r) => Ok(r),
        Err(e) => Err(format!("cannot run {name}: {e}")),
    }
}

fn private_dir() -> Result<PrivateDir, String> {
    PrivateDir::new("signature").map_err(|e| format!("cannot create a temporary folder: {e}"))
}

fn verify_ssh(
    commit: &str,
    signature: &[u8],
    payload: &[u8],
    allowed: &Path,
) -> Result<(), String> {
    let tmp = private_dir()?;
    let sig = tmp
        .file("commit.sig", signature)
        .map_err(|e| format!("cannot write the signature: {e}"))?;
    let mut find = Command::new("ssh-keygen");
    find.args(["-Y", "find-principals", "-s"])
        .arg(&sig)
        .arg("-f")
        .arg(allowed);
    let found = tool(run(find, None, TOOL_TIMEOUT, OUTPUT_CAP), "ssh-keygen")?;
    let principals: Vec<String> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if !found.success() || principals.is_empty() {
        let why = last_line(&found.stderr);
        return Err(if why.contains("No principal matched") {
            format!(
                "commit {commit} is signed by an SSH key that is not in the allowed signers file `{}`",
                allowed.display()
            )
        } else {
            format!(
                "commit {commit}: cannot check its SSH signature against `{}`: {why}",
                allowed.display()
            )
        });
    }
    let mut why = String::new();
    for principal in &principals {
        let mut verify = Command::new("ssh-keygen");
        verify
            .args(["-Y", "verify", "-n", "git", "-f"])
            .arg(allowed)
            .arg("-I")
            .arg(principal)
            .arg("-s")
            .arg(&sig);
        let ran = tool(
            run(verify, Some(payload), TOOL_TIMEOUT, OUTPUT_CAP),
            "ssh-keygen",
        )?;
        if ran.success() {
            return Ok(());
        }
        why = last_line(&ran.stderr);
    }
    Err(format!(
        "commit {commit}: its SSH signature by {} does not verify: {why}",
        principals.join(", ")
    ))
}

const PGP_KEY_ARMOR: &[u8] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----";

fn verify_pgp(
    commit: &str,
    signature: &[u8],
    payload: &[u8],
    keyring: &Path,
) -> Result<(), String> {
    let tmp = private_dir()?;
    let home = tmp.path().join("gnupg");
    std::fs::create_dir(&home).map_err(|e| format!("cannot create a temporary folder: {e}"))?;
    let sig = tmp
        .file("commit.sig", signature)
        .map_err(|e| format!("cannot write the signature: {e}"))?;
    let data = tmp
        .file("commit.payload", payload)
        .map_err(|e| format!("cannot write the signed payload: {e}"))?;
    let readable = gpgv_keyring(keyring, &tmp, &home)?;
    let mut gpgv = Command::new("gpgv");
    gpgv.arg("--homedir")
        .arg(&home)
        .args(["--status-fd", "1", "--keyring"])
        .arg(&readable)
        .arg(&sig)
        .arg(&data);
    let ran = tool(run(gpgv, None, TOOL_TIMEOUT, OUTPUT_CAP), "gpgv")?;
    let status = String::from_utf8_lossy(&ran.stdout);
    let said = |what: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix("[GNUPG:] ")
                .and_then(|l| l.strip_prefix(what))
                .map(|rest| rest.trim().to_string())
        })
    };
    if ran.success() && said("GOODSIG ").is_some() {
        return Ok(());
    }
    let key_id = |rest: String| rest.split(' ').next().unwrap_or("").to_string();
    Err(if let Some(rest) = said("NO_PUBKEY ") {
        format!(
            "commit {commit} is signed by OpenPGP key {}, which is not in the keyring `{}`",
            key_id(rest),
            keyring.display()
        )
    } else if let Some(rest) = said("BADSIG ") {
        format!(
            "commit {commit}: its OpenPGP signature by key {} is bad",
            key_id(rest)
        )
    } else if let Some(rest) = said("EXPKEYSIG ") {
        format!(
            "commit {commit} is signed by OpenPGP key {}, which has expired",
            key_id(rest)
        )
    } else if let Some(rest) = said("REVKEYSIG ") {
        format!(
            "commit {commit} is signed by OpenPGP key {}, which is revoked",
            key_id(rest)
        )
    } else if let Some(rest) = said("EXPSIG ") {
        format!(
            "commit {commit}: its OpenPGP signature by key {} has expired",
            key_id(rest)
        )
    } else {
        format!(
            "commit {commit}: its OpenPGP signature does not verify: {}",
            last_line(&ran.stderr)
        )
    })
}

/// A keyring `gpgv` can read: the given one as an absolute path (gpgv looks a bare name up in
/// its home), or, when it is ASCII-armored (which gpgv cannot read), a dearmored copy.
fn gpgv_keyring(keyring: &Path, tmp: &PrivateDir, home: &Path) -> Result<PathBuf, String> {
    let cannot =
        |e: std::io::Error| format!("cannot read the GnuPG keyring `{}`: {e}", keyring.display());
    let absolute = std::path::absolute(keyring).map_err(cannot)?;
    let bytes = std::fs::read(&absolute).map_err(cannot)?;
    if !bytes.trim_ascii_start().starts_with(PGP_KEY_ARMOR) {
        return Ok(absolute);
    }
    let out = tmp.path().join("keyring.gpg");
    let mut gpg = Command::new("gpg");
    gpg.arg("--homedir")
        .arg(home)
        .args(["--batch", "--quiet", "--dearmor", "--output"])
        .arg(&out)
        .arg(&absolute);
    let ran = tool(run(gpg, None, TOOL_TIMEOUT, OUTPUT_CAP), "gpg")?;
    if !ran.success() {
        return Err(format!(
            "cannot read the GnuPG keyring `{}`: {}",
            keyring.display(),
            last_line(&ran.stderr)
        ));
    }
    Ok(out)
}
