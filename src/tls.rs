//! TLS server configurations from PEM files (the admin listener, the mock upstream).

use anyhow::Context;
use pingora::tls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// A server config for `cert` (chain, leaf first) and `key` (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    pingora::tls::install_default_crypto_provider();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: not a PEM private key", key.display()))?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and the key do not match")?;
    Ok(Arc::new(config))
}
