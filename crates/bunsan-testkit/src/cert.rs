//! Self-signed certificates for TLS tests.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

/// A self-signed certificate for `localhost` and `127.0.0.1`, and its key.
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER, for a client's trust store.
    pub cert_der: CertificateDer<'static>,
}

impl SelfSigned {
    /// Generates a fresh certificate.
    pub fn generate() -> Self {
        Self::for_names(&["localhost", "127.0.0.1"])
    }

    /// Generates a fresh certificate for `names` (DNS names or IP addresses).
    pub fn for_names(names: &[&str]) -> Self {
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let certified = rcgen::generate_simple_self_signed(names).expect("rcgen generates a certificate");
        Self {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            cert_der: certified.cert.der().clone(),
        }
    }

    /// Writes `cert.pem` and `key.pem` into `dir` and returns their paths.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("write cert.pem");
        std::fs::write(&key, &self.key_pem).expect("write key.pem");
        (cert, key)
    }
}
