//! The HTTP client of `convoy status --daemon` and `convoy sync`: one HTTP/1.1 request per
//! connection to a daemon's API, over TCP or TLS (rustls, `ring`; the CA from `--ca-file`, else
//! the system's roots), with the bearer token from a file.
//!
//! The token goes into one header marked sensitive and nowhere else: not in `Debug`, an error,
//! a log line or the output. Answers are read up to a bound; every wait has a deadline. It
//! decides no exit code and prints nothing: the commands do.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::http::{header, HeaderValue, Method, Request, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::api::{read_secret_file, ApiError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than the daemon's own 60 s for a diff.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(75);
/// The largest answer read.
const REPLY_LIMIT: usize = 16 * 1024 * 1024;

/// A daemon's API at one base URL.
pub struct Client {
    /// `scheme://host:port` and any path prefix, for messages and nothing secret.
    url: String,
    host: String,
    port: u16,
    authority: String,
    prefix: String,
    token: Option<HeaderValue>,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// An answer: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not a daemon URL: give http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    #[error("the API token: {0}")]
    Token(#[from] ApiError),
    #[error("the API token file holds characters an HTTP header cannot carry")]
    TokenNotHeader,
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot reach the daemon at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the daemon at {url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
}

impl Client {
    pub fn new(
        url: &str,
        token_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> Result<Client, ClientError> {
        let bad = || ClientError::BadUrl(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad()),
        };
        if uri.query().is_some() {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        // No `user:password@`: the token file is the one way to pass a credential.
        if authority.as_str().contains('@') {
            return Err(bad());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let prefix = uri.path().trim_end_matches('/').to_string();
        let token = match token_file {
            Some(path) => {
                let token = read_secret_file(path)?;
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| ClientError::TokenNotHeader)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let tls = if https {
            let name = ServerName::try_from(host.clone()).map_err(|_| bad())?;
            Some((connector(ca_file)?, name))
        } else {
            None
        };
        Ok(Client {
            url: format!(
                "{}://{}{prefix}",
                if https { "https" } else { "http" },
                authority.as_str()
            ),
            host,
            port,
            authority: authority.as_str().to_string(),
            prefix,
            token,
            tls,
        })
    }

    /// The base URL, as given (never with a credential).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// One request to `path` (`/api/v1/status`, with any query), on a connection of its own.
    pub async fn request(&self, method: Method, path: &str) -> Result<Reply, ClientError> {
        let timeout = || ClientError::Timeout {
            url: self.url.clone(),
            secs: REQUEST_TIMEOUT.as_secs(),
        };
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path))
            .await
            .map_err(|_| timeout())?
    }

    async fn exchange(&self, method: Method, path: &str) -> Result<Reply, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| unreachable("connecting timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, &self.authority)
            .header(
                header::USER_AGENT,
                concat!("convoy/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|_| ClientError::BadUrl(self.url.clone()))?;
        if let Some(token) = &self.token {
            req.headers_mut()
                .insert(header::AUTHORIZATION, token.clone());
        }
        match &self.tls {
            None => send(tcp, req).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ClientError::Tls(format!("with {}: {e}", self.url)))?;
                send(tls, req).await
            }
        }
        .map_err(|e| unreachable(e.to_string()))
    }
}

async fn send<I>(
    io: I,
    req: Request<Empty<Bytes>>,
) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let res = sender.send_request(req).await?;
    let status = res.status().as_u16();
    let body = Limited::new(res.into_body(), REPLY_LIMIT)
        .collect()
        .await?
        .to_bytes()
        .to_vec();
    driver.abort();
    Ok(Reply { status, body })
}

fn connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    ClientError::Tls(format!("cannot read the CA file `{}`: {e}", path.display()))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(ClientError::Tls(format!(
                    "`{}` holds no usable PEM certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(ClientError::Tls(
                    "no system CA certificates found: give the daemon's CA with --ca-file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Why a reply is not the one hoped for, in one line (the server's `error` when it gave one).
pub fn explain(client: &Client, reply: &Reply) -> String {
    let url = client.url();
    match reply.status {
        401 if !client.has_token() => format!(
            "the daemon at {url} wants an API token: give --api-token-file (or CONVOY_API_TOKEN_FILE)"
        ),
        401 => format!("the daemon at {url} refused the API token"),
        404 => format!(
            "the daemon at {url} serves no API there (it serves one only with --api-token-file)"
        ),
        status => {
            let said = serde_json::from_slice::<serde_json::Value>(&reply.body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(&reply.body);
                    text.lines().next().unwrap_or("").chars().take(200).collect()
                });
            format!("the daemon at {url} answered HTTP {status}: {said}")
        }
    }
}

/// Reports a client failure on stderr: the command ends with `Outcome::Unavailable`.
pub fn unavailable(message: &str) -> super::Outcome {
    eprintln!("error: {message}");
    super::Outcome::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_keep_their_prefix() {
        let c = Client::new("http://127.0.0.1:7878", None, None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("127.0.0.1", 7878, "")
        );
        let c = Client::new("http://[::1]:9/convoy/", None, None).unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.prefix.as_str()),
            ("::1", 9, "/convoy")
        );
        assert_eq!(c.url(), "http://[::1]:9/convoy");
        let c = Client::new("http://localhost", None, None).unwrap();
        assert_eq!(c.port, 80);
        for bad in [
            "127.0.0.1:7878",
            "ftp://x",
            "http://",
            "http://u:p@h:1",
            "http://h:1/?a=b",
            "",
        ] {
            let e = Client::new(bad, None, None).unwrap_err();
            assert!(matches!(e, ClientError::BadUrl(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn the_token_is_read_from_its_file_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "sekrit-value\n").unwrap();
        let c = Client::new("http://127.0.0.1:1", Some(&file), None).unwrap();
        assert!(c.has_token());
        assert!(!format!("{c:?}").contains("sekrit"));
        std::fs::write(&file, "bad\u{1}token").unwrap();
        let e = Client::new("http://127.0.0.1:1", Some(&file), None).unwrap_err();
        assert!(
            matches!(e, ClientError::TokenNotHeader) && !e.to_string().contains("bad"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_daemon_is_named() {
        // A port bound and released: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), None, None).unwrap();
        let e = c.request(Method::GET, "/healthz").await.unwrap_err();
        assert!(
            matches!(&e, ClientError::Unreachable { url, .. } if url.contains(&port.to_string())),
            "{e}"
        );
    }
}
