//! TLS for listeners (certificates and keys from PEM files, chosen by SNI; ALPN offering
//! `h2` then `http/1.1`) and towards servers (`upstream_tls`: a CA file, the name to
//! verify, and optionally a client certificate); rustls with its safe defaults (TLS 1.2
//! and 1.3) both ways.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bunsan_config::{TlsFiles, UpstreamProtocol, UpstreamTls as UpstreamTlsConfig};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsAcceptor;

use crate::error::NodeError;

/// Builds the acceptor for `listener` from its certificate files: the default chain and
/// key, and the `sni` ones a client's requested name picks.
pub fn acceptor(listener: &str, files: &TlsFiles) -> Result<TlsAcceptor, NodeError> {
    let fail =
        |(path, reason): (PathBuf, String)| NodeError::Tls { listener: listener.to_owned(), path, reason };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let default = Arc::new(certified_key(&files.cert, &files.key, &provider).map_err(fail)?);
    let by_name = files
        .sni
        .iter()
        .map(|more| certified_key(&more.cert, &more.key, &provider).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail((files.cert.clone(), e.to_string())))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ByServerName { default, by_name }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A certificate chain and its key from PEM files, checked to belong together; an error
/// names the file at fault.
fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, (PathBuf, String)> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| (cert.to_owned(), e.to_string()))?;
    if certs.is_empty() {
        return Err((cert.to_owned(), "no certificate found in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| (key.to_owned(), e.to_string()))?;
    CertifiedKey::from_der(certs, key_der, provider)
        .map_err(|e| (cert.to_owned(), format!("certificate and key do not work together: {e}")))
}

/// Picks a listener's certificate by the name the client asked for (SNI): the first of
/// the `sni` certificates valid for it, else the default one — also for clients that ask
/// for no name.
#[derive(Debug)]
struct ByServerName {
    default: Arc<CertifiedKey>,
    by_name: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ByServerName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().and_then(|name| ServerName::try_from(name).ok());
        let chosen = name.and_then(|name| self.by_name.iter().find(|key| valid_for(key, &name)));
        Some(chosen.unwrap_or(&self.default).clone())
    }
}

/// Whether `key`'s certificate names `name` (its subject alternative names, wildcards
/// included, as a client would check).
fn valid_for(key: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Ok(der) = key.end_entity_cert() else { return false };
    webpki::EndEntityCert::try_from(der).is_ok_and(|cert| cert.verify_is_valid_for_subject_name(name).is_ok())
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
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| fail(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &tls.client_cert {
            None => builder.with_no_client_auth(),
            Some(files) => {
                let fail = |(path, reason): (PathBuf, String)| NodeError::UpstreamTls {
                    pool: pool.to_owned(),
                    path,
                    reason,
                };
                let key = certified_key(&files.cert, &files.key, &provider).map_err(fail)?;
                builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)))
            }
        };
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
