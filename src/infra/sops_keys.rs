//! Where SOPS data keys come from on this machine: age identities (`--age-key-file`,
//! `SOPS_AGE_KEY_FILE`, `SOPS_AGE_KEY`, the daemon's `age_key_file:`, or SOPS's default
//! `~/.config/sops/age/keys.txt`) opened with the `age` crate, and PGP keys through the system's
//! `gpg --decrypt` (the armored message on stdin, the data key on stdout, `GNUPGHOME` as the
//! user set it).
//!
//! A data key lives in memory only (wiped on drop) and is kept for the life of the process, so
//! a daemon does not call gpg on every pass. Nothing here writes a file, and no error carries a
//! key or a decrypted byte: it names the keys tried and why each did not open.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use crate::manifest::sops::{DataKey, KeySource, MasterKey};

/// How long gpg may take to open one data key (an agent starting included).
const GPG_TIMEOUT: Duration = Duration::from_secs(30);

/// The keys of this process: age identities and the gpg to ask.
pub struct SopsKeys {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    /// The public recipients of the identities (those that are x25519 keys), for messages.
    recipients: Vec<String>,
    /// Where identities were read from, and what could not be read.
    sources: Vec<String>,
    problems: Vec<String>,
    gpg: PathBuf,
    gnupghome: Option<PathBuf>,
    /// Data keys opened so far, by the encrypted key they came from.
    opened: Mutex<BTreeMap<String, DataKey>>,
    /// Whether an age key file was named (rather than SOPS's default looked for).
    explicit_file: bool,
}

impl SopsKeys {
    /// No identities, gpg from `PATH` with its default home.
    pub fn empty() -> SopsKeys {
        SopsKeys {
            identities: Vec::new(),
            recipients: Vec::new(),
            sources: Vec::new(),
            problems: Vec::new(),
            gpg: PathBuf::from("gpg"),
            gnupghome: None,
            opened: Mutex::default(),
            explicit_file: false,
        }
    }

    /// The keys SOPS itself would use: the age key file named (`--age-key-file`, which reads
    /// `SOPS_AGE_KEY_FILE`), else SOPS's default file when it exists, plus the identities in
    /// `SOPS_AGE_KEY`; gpg with the environment's `GNUPGHOME`.
    pub fn from_env(age_key_file: Option<&Path>) -> SopsKeys {
        let mut keys = SopsKeys::empty();
        match age_key_file {
            Some(f) => {
                keys.explicit_file = true;
                keys.add_age_file(f);
            }
            None => {
                if let Some(f) = default_age_file().filter(|f| f.is_file()) {
                    keys.add_age_file(&f);
                }
            }
        }
        if let Ok(text) = std::env::var("SOPS_AGE_KEY") {
            keys.add_age_text("SOPS_AGE_KEY", &text);
        }
        keys
    }

    /// Reads the age identities of a key file (`AGE-SECRET-KEY-1…` lines, comments allowed).
    pub fn add_age_file(&mut self, path: &Path) {
        match std::fs::read_to_string(path) {
            Ok(text) => self.add_age_text(&path.display().to_string(), &text),
            Err(e) => self.problems.push(format!(
                "cannot read the age key file {}: {e}",
                path.display()
            )),
        }
    }

    /// Adds the identities written in `text`; `from` names where they came from.
    pub fn add_age_text(&mut self, from: &str, text: &str) {
        let parsed = age::IdentityFile::from_buffer(text.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|f| f.into_identities().map_err(|e| e.to_string()));
        match parsed {
            Ok(ids) if ids.is_empty() => {
                self.problems.push(format!("{from} holds no age identity"))
            }
            Ok(ids) => {
                self.identities.extend(ids);
                self.sources.push(from.to_string());
                for line in text.lines().map(str::trim) {
                    if let Ok(id) = age::x25519::Identity::from_str(line) {
                        self.recipients.push(id.to_public().to_string());
                    }
                }
            }
            // The parser's message quotes no key material.
            Err(e) => self
                .problems
                .push(format!("cannot read the age identities in {from}: {e}")),
        }
    }

    /// gpg's home folder (`GNUPGHOME`) and program; the environment's when not set.
    pub fn with_gpg(mut self, program: Option<PathBuf>, home: Option<PathBuf>) -> SopsKeys {
        if let Some(p) = program {
            self.gpg = p;
        }
        self.gnupghome = home;
        self
    }

    fn open_age(&self, recipient: &str, enc: &str) -> Result<DataKey, String> {
        if self.identities.is_empty() {
            let mut why =
                "no age identity is configured (--age-key-file, SOPS_AGE_KEY_FILE)".to_string();
            for p in &self.problems {
                why.push_str("; ");
                why.push_str(p);
            }
            return Err(format!("age recipient {recipient}: {why}"));
        }
        let armored = age::armor::ArmoredReader::new(enc.as_bytes());
        let opened = age::Decryptor::new_buffered(std::io::BufReader::new(armored))
            .and_then(|d| {
                d.decrypt(
                    self.identities
                        .iter()
                        .map(|i| i.as_ref() as &dyn age::Identity),
                )
            })
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => format!(
                    "no age identity for recipient {recipient} (identities from {}{})",
                    self.sources.join(", "),
                    if self.recipients.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", self.recipients.join(", "))
                    }
                ),
                other => format!("age recipient {recipient}: {other}"),
            })?;
        let mut plain = zeroize::Zeroizing::new(Vec::new());
        opened
            .take(64)
            .read_to_end(&mut plain)
            .map_err(|e| format!("age recipient {recipient}: {e}"))?;
        to_key(&plain)
            .ok_or_else(|| format!("age recipient {recipient}: the data key is not 32 bytes"))
    }

    /// Asks gpg to open one armored message; `Err` is what went wrong, in gpg's words.
    fn open_pgp(&self, enc: &str) -> Result<DataKey, String> {
        let mut cmd = Command::new(&self.gpg);
        cmd.args(["--batch", "--quiet", "--no-tty", "--decrypt"]);
        if let Some(home) = &self.gnupghome {
            cmd.env("GNUPGHOME", home);
        }
        let mut ran =
            crate::infra::source::run_program(cmd, Some(enc.as_bytes()), GPG_TIMEOUT, 4096)
                .map_err(|e| format!("cannot run {}: {e}", self.gpg.display()))?;
        // The data key, wiped when dropped.
        let out = zeroize::Zeroizing::new(std::mem::take(&mut ran.stdout));
        if ran.status.is_none() {
            return Err(format!("gpg took longer than {}s", GPG_TIMEOUT.as_secs()));
        }
        if !ran.success() {
            return Err(crate::infra::source::last_line(&ran.stderr));
        }
        to_key(&out).ok_or_else(|| "gpg returned a data key that is not 32 bytes".to_string())
    }
}

fn to_key(bytes: &[u8]) -> Option<DataKey> {
    let arr: [u8; 32] = bytes.try_into().ok()?;
    Some(zeroize::Zeroizing::new(arr))
}

/// SOPS's default age key file: `$XDG_CONFIG_HOME/sops/age/keys.txt`, else under `~/.config`.
fn default_age_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("sops").join("age").join("keys.txt"))
}

impl KeySource for SopsKeys {
    fn data_key(&self, keys: &[MasterKey]) -> Result<DataKey, String> {
        let cached = |enc: &str| {
            self.opened
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(enc)
                .cloned()
        };
        let keep = |enc: &str, key: &DataKey| {
            self.opened
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(enc.to_string(), key.clone());
        };
        let mut why = Vec::new();
        // age first: no process to run.
        for k in keys {
            if let MasterKey::Age { recipient, enc } = k {
                if let Some(key) = cached(enc) {
                    return Ok(key);
                }
                match self.open_age(recipient, enc) {
                    Ok(key) => {
                        keep(enc, &key);
                        return Ok(key);
                    }
                    Err(e) => why.push(e),
                }
            }
        }
        let pgp: Vec<(&str, &str)> = keys
            .iter()
            .filter_map(|k| match k {
                MasterKey::Pgp { fingerprint, enc } => Some((fingerprint.as_str(), enc.as_str())),
                _ => None,
            })
            .collect();
        if let Some(key) = pgp.iter().find_map(|(_, enc)| cached(enc)) {
            return Ok(key);
        }
        let mut gpg_said: Option<String> = None;
        for (_, enc) in &pgp {
            match self.open_pgp(enc) {
                Ok(key) => {
                    keep(enc, &key);
                    return Ok(key);
                }
                Err(e) => {
                    gpg_said.get_or_insert(e);
                }
            }
        }
        if let Some(said) = gpg_said {
            let fps: Vec<&str> = pgp.iter().map(|(f, _)| *f).collect();
            why.push(format!(
                "none of the PGP keys {} opens with gpg{} ({said})",
                fps.join(", "),
                self.gnupghome
                    .as_ref()
                    .map(|h| format!(" (GNUPGHOME={})", h.display()))
                    .unwrap_or_default(),
            ));
        }
        for k in keys {
            if let MasterKey::Other { .. } = k {
                why.push(format!("{} is not supported by Convoy", k.describe()));
            }
        }
        Err(why.join("; "))
    }
}

/// The key source of this process, set once from the flags (and the daemon's configuration).
static PROCESS_KEYS: RwLock<Option<Arc<SopsKeys>>> = RwLock::new(None);

/// Makes `keys` the ones every later load of this process uses.
pub fn install(keys: SopsKeys) {
    *PROCESS_KEYS.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(keys));
}

/// Uses the age key file of the daemon's configuration, unless one was named on the command
/// line (or by `SOPS_AGE_KEY_FILE`), which wins as every flag does over the file.
pub fn install_from_config(file: &Path) {
    let explicit = PROCESS_KEYS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|k| k.explicit_file);
    if !explicit {
        install(SopsKeys::from_env(Some(file)));
    }
}

/// The installed keys, or those of the environment (`SopsKeys::from_env(None)`) when none were.
pub fn process_keys() -> Arc<SopsKeys> {
    if let Some(k) = PROCESS_KEYS
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        return k.clone();
    }
    let keys = Arc::new(SopsKeys::from_env(None));
    PROCESS_KEYS
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert(keys)
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::sops::decrypt_if_encrypted;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sops");
    /// The fingerprint of SOPS's published functional-tests key.
    const TEST_FPR: &str = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(Path::new(FIXTURES).join(name)).unwrap()
    }

    /// A private GNUPGHOME, with its gpg-agent stopped when dropped. `None` (the test is
    /// skipped) when gpg is not installed, except under CI where that is a failure.
    struct GpgHome(tempfile::TempDir);

    impl GpgHome {
        fn new(import: bool) -> Option<GpgHome> {
            let installed = Command::new("gpg").arg("--version").output().is_ok();
            if !installed {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "gpg is not installed (scripts/ensure-docker installs gnupg)"
                );
                eprintln!("skipped: gpg is not installed");
                return None;
            }
            let home = GpgHome(tempfile::tempdir().unwrap());
            if import {
                let out = Command::new("gpg")
                    .args(["--batch", "--quiet", "--import"])
                    .arg(Path::new(FIXTURES).join("sops_functional_tests_key.asc"))
                    .env("GNUPGHOME", home.path())
                    .output()
                    .unwrap();
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

        fn keys(&self) -> SopsKeys {
            SopsKeys::empty().with_gpg(None, Some(self.path().to_path_buf()))
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

    /// Every file under `dir` (recursively) written since `since` whose bytes contain `needle`.
    fn files_containing(dir: &Path, needle: &[u8], since: std::time::SystemTime) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return found;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                found.extend(files_containing(&path, needle, since));
            } else if meta.is_file()
                && meta.len() < (1 << 20)
                && meta.modified().is_ok_and(|m| m >= since)
            {
                if let Ok(bytes) = std::fs::read(&path) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(path);
                    }
                }
            }
        }
        found
    }

    fn text(d: Option<crate::manifest::sops::Decrypted>) -> String {
        String::from_utf8(d.expect("a SOPS file").bytes).unwrap()
    }

    #[test]
    fn the_real_sops_fixtures_decrypt_with_the_published_pgp_key_through_gpg() {
        let start = std::time::SystemTime::now();
        let Some(home) = GpgHome::new(true) else {
            return;
        };
        let keys = home.keys();
        let yaml = text(
            decrypt_if_encrypted("stacks/a/example.yaml", &fixture("example.yaml"), &keys).unwrap(),
        );
        assert!(yaml.contains("myapp1: \"t00m4nys3cr3tzupdated\""), "{yaml}");
        assert!(!yaml.contains("sops:"), "{yaml}");
        let json = text(
            decrypt_if_encrypted("stacks/a/example.json", &fixture("example.json"), &keys).unwrap(),
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["firstName"], "John", "{json}");
        assert!(v.get("sops").is_none());
        let txt = text(
            decrypt_if_encrypted("stacks/a/example.txt", &fixture("example.txt"), &keys).unwrap(),
        );
        // The binary store gives back the file itself.
        assert!(txt.starts_with("Welcome to SOPS!\n"), "{txt}");
        let env = text(
            decrypt_if_encrypted("stacks/a/format.enc.env", &fixture("format.enc.env"), &keys)
                .unwrap(),
        );
        assert_eq!(env.lines().next(), Some("foo = bar"), "{env}");
        for name in ["format.enc.yaml", "format.enc.json", "comments.enc.yaml"] {
            let out = text(
                decrypt_if_encrypted(&format!("stacks/a/{name}"), &fixture(name), &keys).unwrap(),
            );
            assert!(
                !out.contains("ENC[AES256_GCM,data") || out.contains("#ENC["),
                "{name}: {out}"
            );
        }
        // The plaintext was never written: not by gpg in its home, not in the temp folder.
        for dir in [home.path(), &std::env::temp_dir()] {
            assert_eq!(
                files_containing(dir, b"t00m4nys3cr3tzupdated", start),
                Vec::<PathBuf>::new()
            );
        }
    }

    #[test]
    fn a_keyring_without_the_key_is_an_error_naming_the_file_and_the_fingerprint() {
        let Some(home) = GpgHome::new(false) else {
            return;
        };
        let e = decrypt_if_encrypted(
            "stacks/web/format.enc.env",
            &fixture("format.enc.env"),
            &home.keys(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("stacks/web/format.enc.env: cannot decrypt with SOPS:"),
            "{e}"
        );
        assert!(e.contains(TEST_FPR), "{e}");
        assert!(e.contains("none of the PGP keys"), "{e}");
    }

    #[test]
    fn age_identities_from_a_key_file_open_the_age_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.txt");
        std::fs::write(
            &file,
            "# SOPS's published mockIdentity\nAGE-SECRET-KEY-1G0Q5K9TV4REQ3ZSQRMTMG8NSWQGYT0T7TZ33RAZEE0GZYVZN0APSU24RK7\n",
        )
        .unwrap();
        let mut keys = SopsKeys::empty().with_gpg(Some(PathBuf::from("/nonexistent/gpg")), None);
        keys.add_age_file(&file);
        let env = text(
            decrypt_if_encrypted("stacks/a/app.env", &fixture("format.age.env"), &keys).unwrap(),
        );
        assert_eq!(env.lines().next(), Some("foo = bar"));
        // The data key is kept: a second file with it opens without the identities' work.
        assert_eq!(keys.opened.lock().unwrap().len(), 1);

        // Another identity: the error names the recipient and where identities came from.
        let other = dir.path().join("other.txt");
        std::fs::write(
            &other,
            "AGE-SECRET-KEY-1432K5YRNSC44GC4986NXMX6GVZ52WTMT9C79CLUVWYY4DKDHD5JSNDP4MC\n",
        )
        .unwrap();
        let mut keys = SopsKeys::empty();
        keys.add_age_file(&other);
        let e = decrypt_if_encrypted("stacks/a/app.env", &fixture("format.age.env"), &keys)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no age identity for recipient age1lzd99uklcjnc0e7d860axevet2cz99ce9pq6tzuzd05l5nr28ams36nvun"), "{e}");
        assert!(e.contains(&other.display().to_string()), "{e}");
        assert!(!e.contains("AGE-SECRET-KEY"), "{e}");
        // A key file that cannot be read is said so.
        let mut keys = SopsKeys::empty();
        keys.add_age_file(&dir.path().join("missing.txt"));
        let e = decrypt_if_encrypted("stacks/a/app.env", &fixture("format.age.env"), &keys)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read the age key file"), "{e}");
    }
}
