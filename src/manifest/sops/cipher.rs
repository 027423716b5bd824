//! SOPS's value cipher: `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` opened with the file's data
//! key and the value's key path as additional data, and the typed plaintext that comes out.
//!
//! Pure: bytes in, bytes out. The plaintext is returned to the caller and never logged; an
//! error says which check failed, never what a value was.

use aes_gcm::aead::generic_array::typenum::U32;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// SOPS always writes 32-byte IVs (`aes.nonceSize`), which AES-GCM hashes into its counter.
type Gcm = AesGcm<Aes256, U32>;

/// A decrypted value with the type SOPS recorded for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Plain {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    /// A timestamp, kept as the text it was encrypted from.
    Time(String),
    Comment(String),
}

impl Plain {
    /// What SOPS's `ToBytes` feeds the MAC for this value.
    pub fn mac_bytes(&self) -> Vec<u8> {
        match self {
            Plain::Str(s) | Plain::Time(s) | Plain::Comment(s) => s.as_bytes().to_vec(),
            Plain::Int(i) => i.to_string().into_bytes(),
            Plain::Float(f) => go_float(*f).into_bytes(),
            Plain::Bool(true) => b"True".to_vec(),
            Plain::Bool(false) => b"False".to_vec(),
            Plain::Bytes(b) => b.clone(),
        }
    }

    /// The value as text (what an environment variable would hold).
    pub fn text(&self) -> String {
        match self {
            Plain::Str(s) | Plain::Time(s) | Plain::Comment(s) => s.clone(),
            Plain::Int(i) => i.to_string(),
            Plain::Float(f) => go_float(*f),
            Plain::Bool(b) => b.to_string(),
            Plain::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest digits that read back, never an
/// exponent. Rust's `Display` for `f64` is the same except for the infinities.
pub fn go_float(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f.is_nan() {
        return "NaN".into();
    }
    format!("{f}")
}

/// Whether a scalar is written the way SOPS writes an encrypted value.
pub fn is_enc(s: &str) -> bool {
    s.starts_with("ENC[AES256_GCM,") && s.ends_with(']')
}

/// Why a value could not be opened; never contains the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CipherError {
    /// Not `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`.
    Format(&'static str),
    /// The tag does not match: another key, another key path, or changed bytes.
    Tag,
    /// The plaintext does not read as the type recorded beside it.
    Type(String),
}

impl std::fmt::Display for CipherError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CipherError::Format(what) => write!(f, "not a SOPS encrypted value ({what})"),
            CipherError::Tag => write!(
                f,
                "the value does not decrypt with the file's data key (changed since it was encrypted?)"
            ),
            CipherError::Type(t) => write!(f, "the decrypted value is not of its recorded type `{t}`"),
        }
    }
}

/// Opens one `ENC[…]` value. `aad` is the key path joined by `:` with a trailing `:`.
pub fn decrypt(value: &str, key: &[u8; 32], aad: &str) -> Result<Plain, CipherError> {
    let inner = value
        .strip_prefix("ENC[AES256_GCM,data:")
        .and_then(|s| s.strip_suffix(']'))
        .ok_or(CipherError::Format("prefix"))?;
    let (data, rest) = inner
        .split_once(",iv:")
        .ok_or(CipherError::Format("no iv"))?;
    let (iv, rest) = rest
        .split_once(",tag:")
        .ok_or(CipherError::Format("no tag"))?;
    let (tag, kind) = rest
        .split_once(",type:")
        .ok_or(CipherError::Format("no type"))?;
    let b64 =
        |s: &str, what: &'static str| STANDARD.decode(s).map_err(|_| CipherError::Format(what));
    let mut data = b64(data, "data is not base64")?;
    let iv = b64(iv, "iv is not base64")?;
    let tag = b64(tag, "tag is not base64")?;
    if iv.len() != 32 {
        return Err(CipherError::Format("the iv is not 32 bytes"));
    }
    if tag.len() != 16 {
        return Err(CipherError::Format("the tag is not 16 bytes"));
    }
    data.extend_from_slice(&tag);
    let gcm = Gcm::new(GenericArray::from_slice(key));
    let plain = gcm
        .decrypt(
            GenericArray::from_slice(&iv),
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| CipherError::Tag)?;
    let text = || String::from_utf8(plain.clone()).map_err(|_| CipherError::Type(kind.into()));
    let bad = || CipherError::Type(kind.into());
    Ok(match kind {
        "str" => Plain::Str(text()?),
        "int" => Plain::Int(text()?.parse().map_err(|_| bad())?),
        "float" => Plain::Float(text()?.parse().map_err(|_| bad())?),
        "bool" => Plain::Bool(parse_go_bool(&text()?).ok_or_else(bad)?),
        "bytes" => Plain::Bytes(plain),
        "time" => Plain::Time(text()?),
        "comment" => Plain::Comment(text()?),
        _ => return Err(CipherError::Format("unknown type")),
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Encrypts a value the way SOPS does, with the IV given (tests build tampered and
/// Convoy-made files with it; Convoy itself never encrypts).
#[cfg(test)]
pub fn encrypt(plain: &Plain, key: &[u8; 32], aad: &str, iv: &[u8; 32]) -> String {
    let (bytes, kind) = match plain {
        Plain::Str(s) => (s.as_bytes().to_vec(), "str"),
        Plain::Int(i) => (i.to_string().into_bytes(), "int"),
        Plain::Float(f) => (go_float(*f).into_bytes(), "float"),
        Plain::Bool(_) => (plain.mac_bytes(), "bool"),
        Plain::Bytes(b) => (b.clone(), "bytes"),
        Plain::Time(s) => (s.as_bytes().to_vec(), "time"),
        Plain::Comment(s) => (s.as_bytes().to_vec(), "comment"),
    };
    let gcm = Gcm::new(GenericArray::from_slice(key));
    let out = gcm
        .encrypt(
            GenericArray::from_slice(iv),
            Payload {
                msg: &bytes,
                aad: aad.as_bytes(),
            },
        )
        .expect("encrypt");
    let (data, tag) = out.split_at(out.len() - 16);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        STANDARD.encode(data),
        STANDARD.encode(iv),
        STANDARD.encode(tag)
    )
}
