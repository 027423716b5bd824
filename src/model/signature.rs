//! The `X-Convoy-Signature` scheme, in one place: `sha256=<hex HMAC-SHA256 of the body>` under a
//! shared secret. The daemon's generic webhook verifies it (`api::hooks`) and the generic
//! notifications sign with it (`infra::notify`), so the two cannot drift apart.
//!
//! Pure: bytes in, a string or a verdict out. Verification is constant-time; nothing here logs
//! or keeps the secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "X-Convoy-Signature";

/// The hex HMAC-SHA256 of `body` under `secret` (without the `sha256=` prefix).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The header's value: `sha256=<hex>`.
pub fn header_value(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", sign(secret, body))
}

/// Whether `hex_sig` (without its prefix) is the HMAC of `body` under `secret`, compared in
/// constant time.
pub fn verify(secret: &[u8], body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_body_or_key_does_not() {
        let sig = sign(b"key", b"{\"a\":1}");
        // The well-known example value (also `openssl dgst -sha256 -hmac key`).
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert!(verify(b"key", b"{\"a\":1}", &sig));
        assert!(!verify(b"key", b"{\"a\":2}", &sig));
        assert!(!verify(b"other", b"{\"a\":1}", &sig));
        assert!(!verify(b"key", b"{\"a\":1}", "not hex"));
        assert_eq!(
            header_value(b"key", b"x"),
            format!("sha256={}", sign(b"key", b"x"))
        );
    }
}
