//! TLS client configuration for outgoing connections.
//!
//! Owns: the rustls `ClientConfig` (ring provider, the system's trust store
//! plus an optional extra CA file in PEM) and the TLS handshake. Certificate
//! and host-name verification are always on: there is deliberately no way to
//! turn them off. The server name for SNI and verification is the configured
//! host (a DNS name or an IP address).

use std::io::{self, BufReader};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tracing::warn;

use crate::protocol::imap::ImapError;

/// The system's trust anchors, loaded once per process (it reads many files).
fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let result = rustls_native_certs::load_native_certs();
        for error in &result.errors {
            warn!(%error, "could not load some system CA certificates");
        }
        result.certs
    })
}

/// Reads every certificate of a PEM file.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ImapError> {
    let file = std::fs::File::open(path).map_err(|e| ImapError::CaFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, io::Error>>()
        .map_err(|e| ImapError::CaFile {
            path: path.to_owned(),
            reason: format!("not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(ImapError::CaFile {
            path: path.to_owned(),
            reason: "no CERTIFICATE block in the file".into(),
        });
    }
    Ok(certs)
}

/// Builds the client configuration: system roots plus the certificates of
/// `ca_file`, if given.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ImapError> {
    let mut roots = RootCertStore::empty();
    let (_, ignored) = roots.add_parsable_certificates(native_roots().iter().cloned());
    if ignored > 0 {
        warn!(ignored, "some system CA certificates could not be parsed");
    }
    if let Some(path) = ca_file {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|e| ImapError::CaFile {
                path: path.to_owned(),
                reason: format!("unusable certificate: {e}"),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(ImapError::NoTrustAnchors);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::CaFile {
            path: ca_file.map(Path::to_owned).unwrap_or_default(),
            reason: format!("TLS set-up failed: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name to verify the server certificate against (and to send as SNI).
pub fn server_name(host: &str) -> Result<ServerName<'static>, ImapError> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned()).map_err(|_| ImapError::InvalidServerName {
        host: host.to_owned(),
    })
}

/// Runs the TLS handshake over `tcp`, verifying the certificate for `host`.
pub async fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ImapError> {
    let name = server_name(host)?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|source| classify_handshake_error(host, source))
}

/// Certificate problems are permanent (configuration); others are transient.
fn classify_handshake_error(host: &str, source: io::Error) -> ImapError {
    let rustls_error = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            e @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType),
        ) => ImapError::Certificate {
            host: host.to_owned(),
            reason: e.to_string(),
        },
        _ => ImapError::TlsHandshake {
            host: host.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_accept_dns_names_and_ip_addresses() {
        assert!(server_name("mail.example.org").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(matches!(
            server_name("bad name"),
            Err(ImapError::InvalidServerName { .. })
        ));
    }

    #[test]
    fn missing_or_empty_ca_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            client_config(Some(&missing)),
            Err(ImapError::CaFile { .. })
        ));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = client_config(Some(&empty)).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        assert!(!err.is_transient());
    }

    #[test]
    fn certificate_errors_are_permanent() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let err = classify_handshake_error("mail.example.org", io);
        assert!(matches!(err, ImapError::Certificate { .. }), "{err}");
        assert!(!err.is_transient());
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert!(classify_handshake_error("h", reset).is_transient());
    }
}
