//! The API's TLS: a rustls server configuration (the `ring` provider, TLS 1.2 and 1.3, HTTP/1.1
//! by ALPN) from a PEM certificate chain and private key. Loaded once, at bind time, so a bad
//! file stops the daemon before it starts; it must not log or echo key material.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ApiError;

pub(super) fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, ApiError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| {
            ApiError::Tls(format!(
                "cannot read the certificate chain `{}`: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(ApiError::Tls(format!(
            "`{}` holds no PEM certificate",
            cert.display()
        )));
    }
    // The key's own error may quote nothing of it, but say only what and where.
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        ApiError::Tls(format!(
            "`{}` holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ApiError::Tls(format!("the certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
