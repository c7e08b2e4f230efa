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

/// A TLS listener whose certificates can be loaded again from their files
/// (`edge::certs::ListenerCerts`), as the admin API reaches it.
pub trait ReloadCerts: Send + Sync {
    /// The listener's name (`proxy`).
    fn listener(&self) -> &'static str;
    /// Loads the files again and swaps them in, or says why not (the old ones keep serving);
    /// the certificates now served: (first name, expiry in Unix seconds).
    fn reload_certs(&self) -> anyhow::Result<Vec<(String, i64)>>;
}

static LISTENERS: std::sync::Mutex<Vec<Arc<dyn ReloadCerts>>> = std::sync::Mutex::new(Vec::new());

/// Makes `listener` reachable by `reload_listeners` (the admin API's `POST /v1/tls/reload`).
pub fn register(listener: Arc<dyn ReloadCerts>) {
    LISTENERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(listener);
}

/// The certificates a listener serves after a reload (first name, expiry), or why not.
pub type Reloaded = anyhow::Result<Vec<(String, i64)>>;

/// Reloads every registered TLS listener of this process: (listener, what it serves now).
pub fn reload_listeners() -> Vec<(&'static str, Reloaded)> {
    let all = LISTENERS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    all.iter()
        .map(|l| (l.listener(), l.reload_certs()))
        .collect()
}
