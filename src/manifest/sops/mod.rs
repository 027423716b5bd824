//! Files encrypted with SOPS (dotenv, YAML, JSON), decrypted in memory: every value opened with
//! the file's data key, the MAC verified, and the document given back in its own format, as
//! `sops --decrypt` would print it, for the readers that parse it next.
//!
//! Pure: bytes in, bytes out. The data key comes from a `KeySource` handed in (age identities
//! and gpg live in `infra::sops_keys`); nothing here reads a file, runs a program or writes
//! anything anywhere, so a decrypted value exists only in memory. An error names the file, the
//! line when it is about one value, and the keys tried, never a value. A file without SOPS
//! metadata passes through untouched (`Ok(None)`).

mod cipher;
mod document;
mod dotenv;
mod metadata;
#[cfg(test)]
mod tests;
mod tree;

pub use tree::DecryptingTree;

/// The 32-byte data key of a file, wiped from memory when dropped.
pub type DataKey = zeroize::Zeroizing<[u8; 32]>;

/// One key a file's data key is encrypted to, as the file's metadata writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterKey {
    /// `enc` is an armored age file holding the 32-byte data key.
    Age { recipient: String, enc: String },
    /// `enc` is an armored OpenPGP message holding the 32-byte data key.
    Pgp { fingerprint: String, enc: String },
    /// A cloud KMS or Vault key, which Convoy does not call: named in errors only.
    Other { kind: String, id: String },
}

impl MasterKey {
    /// How an error names the key (`age1…`, the PGP fingerprint, `kms arn:…`).
    pub fn describe(&self) -> String {
        match self {
            MasterKey::Age { recipient, .. } => format!("age recipient {recipient}"),
            MasterKey::Pgp { fingerprint, .. } => format!("PGP key {fingerprint}"),
            MasterKey::Other { kind, id } => format!("{kind} key {id}"),
        }
    }
}

/// Where data keys come from. `data_key` gets the keys of the file's key group and returns the
/// data key from any one of them, or a reason naming every key tried and why it did not open.
pub trait KeySource {
    fn data_key(&self, keys: &[MasterKey]) -> Result<DataKey, String>;
}

/// A key source that has no keys: every encrypted file is an error naming its keys.
pub struct NoKeys;

impl KeySource for NoKeys {
    fn data_key(&self, keys: &[MasterKey]) -> Result<DataKey, String> {
        Err(format!(
            "no SOPS key is configured for {}",
            keys.iter()
                .map(MasterKey::describe)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// A file that cannot be decrypted: which file, which line (0: the file as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: cannot decrypt with SOPS: {message}", if *.line > 0 { format!(":{}", .line) } else { String::new() })]
pub struct SopsError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// The formats SOPS encrypts value by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    /// SOPS's binary store (a file of another name): `{"data": ENC[…], "sops": …}`, whose
    /// decrypted text is the `data` value itself.
    Binary,
}

/// A decrypted file: its text as `sops --decrypt` prints it (a dotenv file with its lines kept
/// where they were instead: `dotenv::as_printed` gives the printed form), and the values that
/// were encrypted in it (to be masked wherever they appear).
#[derive(Debug, Clone, PartialEq)]
pub struct Decrypted {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub secrets: Vec<String>,
}

/// Whether `bytes` may be a SOPS file at all: every one has an encrypted MAC. A cheap test
/// that spares parsing the files that are not.
pub fn may_be_encrypted(bytes: &[u8]) -> bool {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    has(b"ENC[AES256_GCM,") && has(b"sops")
}

/// The format of a file, from its name as SOPS does (`.yaml`, `.yml`, `.json`, `.env`), else
/// from its contents (an env file may be named anything).
fn format_of(path: &str, text: &str) -> Result<Format, String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("yaml" | "yml") => return Ok(Format::Yaml),
        Some("json") => return Ok(Format::Json),
        Some("env") => return Ok(Format::Dotenv),
        Some("ini") => {
            return Err(
                "INI files encrypted with SOPS are not supported (use dotenv, YAML or JSON)".into(),
            )
        }
        _ => {}
    }
    if text.trim_start().starts_with('{') {
        Ok(Format::Binary)
    } else if text
        .lines()
        .any(|l| l.starts_with("sops_mac=") || l.starts_with("sops_version="))
    {
        Ok(Format::Dotenv)
    } else {
        Ok(Format::Yaml)
    }
}

/// Decrypts `bytes` (the file at repository path `path`) when it carries SOPS metadata;
/// `Ok(None)` when it does not (it is used as it is).
pub fn decrypt_if_encrypted(
    path: &str,
    bytes: &[u8],
    keys: &dyn KeySource,
) -> Result<Option<Decrypted>, SopsError> {
    if !may_be_encrypted(bytes) {
        return Ok(None);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(None);
    };
    let err = |line: usize, message: String| SopsError {
        file: path.to_string(),
        line,
        message,
    };
    let format = format_of(path, text).map_err(|m| err(0, m))?;
    let opened = match format {
        Format::Yaml | Format::Json | Format::Binary => document::decrypt(text, format, keys),
        Format::Dotenv => dotenv::decrypt(text, keys),
    }
    .map_err(|(line, message)| err(line, message))?;
    Ok(opened.map(|(text, secrets)| Decrypted {
        bytes: text.into_bytes(),
        format,
        secrets,
    }))
}

/// A failure inside one file: (line, reason); the caller adds the file.
type Located = (usize, String);

/// What a format's reader returns: the decrypted text and the secret values, or `None` when
/// the file has no SOPS metadata.
type Opened = Option<(String, Vec<String>)>;

/// Gets the data key, decrypts the MAC and compares it with the one computed over the values.
fn check_mac(
    meta: &metadata::Metadata,
    key: &[u8; 32],
    computed: sha2::Sha512,
    line: usize,
) -> Result<(), Located> {
    use sha2::Digest;
    let stored = match cipher::decrypt(&meta.mac, key, &meta.last_modified) {
        Ok(cipher::Plain::Str(s)) => s,
        Ok(_) => return Err((line, "the MAC is not a string".into())),
        Err(e) => return Err((line, format!("the MAC cannot be opened: {e}"))),
    };
    let computed = hex::encode_upper(computed.finalize());
    if stored != computed {
        return Err((
            line,
            "the MAC does not match the values: the file was changed after it was encrypted".into(),
        ));
    }
    Ok(())
}

/// The data key for `meta`'s keys, or a reason naming them.
fn data_key(meta: &metadata::Metadata, keys: &dyn KeySource) -> Result<DataKey, Located> {
    keys.data_key(&meta.keys).map_err(|reason| (0, reason))
}

/// The MAC hash as SOPS starts it.
fn new_mac(meta: &metadata::Metadata) -> sha2::Sha512 {
    use sha2::Digest;
    let mut h = sha2::Sha512::new();
    if meta.mac_only_encrypted {
        h.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    h
}

/// SOPS's `MACOnlyEncryptedInitialization`, so a MAC over the encrypted values only never equals
/// one over all of them.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];
