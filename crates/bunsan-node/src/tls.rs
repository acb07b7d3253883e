//! TLS for listeners (certificate and key from PEM files, ALPN offering `h2` then
//! `http/1.1`) and towards servers (`upstream_tls`: a CA file and the name to verify);
//! rustls with its safe defaults (TLS 1.2 and 1.3) both ways.

use std::path::Path;
use std::sync::Arc;

use bunsan_config::{TlsFiles, UpstreamProtocol, UpstreamTls as UpstreamTlsConfig};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsAcceptor;

use crate::error::NodeError;

/// Builds the acceptor for `listener` from its certificate and key files.
pub fn acceptor(listener: &str, files: &TlsFiles) -> Result<TlsAcceptor, NodeError> {
    let fail = |path: &Path, reason: String| NodeError::Tls {
        listener: listener.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(fail(&files.cert, "no certificate found in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| fail(&files.key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| fail(&files.cert, format!("certificate and key do not work together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// TLS towards a pool's servers: the CAs that may sign their certificates, and the name
/// to ask for and verify (the configured one, else each server's host as written).
pub struct UpstreamTls {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Loads `pool`'s CA file and builds a client config offering the ALPN protocol that
    /// `protocol` speaks.
    pub fn load(pool: &str, tls: &UpstreamTlsConfig, protocol: UpstreamProtocol) -> Result<Self, NodeError> {
        let fail =
            |reason: String| NodeError::UpstreamTls { pool: pool.to_owned(), path: tls.ca.clone(), reason };
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&tls.ca)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| fail(e.to_string()))?;
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(fail("no usable CA certificate found in the file".into()));
        }
        let server_name = tls
            .server_name
            .as_deref()
            .map(|name| ServerName::try_from(name.to_owned()).map_err(|e| fail(format!("server_name: {e}"))))
            .transpose()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = match protocol {
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => vec![b"h2".to_vec()],
            UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        Ok(Self { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), server_name })
    }

    /// The connector.
    pub fn connector(&self) -> &tokio_rustls::TlsConnector {
        &self.connector
    }

    /// The name to verify a server's certificate against: the configured one, else the
    /// host part of the server's address as the operator wrote it.
    pub fn server_name(&self, addr_text: &str) -> Option<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Some(name.clone());
        }
        let host = match addr_text.rsplit_once(':') {
            Some((host, _port)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => addr_text,
        };
        ServerName::try_from(host.to_owned()).ok()
    }
}
