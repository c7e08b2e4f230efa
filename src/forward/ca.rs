//! Sluice's interception CA: loaded from configured files or created on first run under the
//! data dir (key 0600), and the per-host TLS acceptors whose leaf certificates it signs.

use anyhow::Context;
use moka::sync::Cache;
use pingora::listeners::tls::Acceptor;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::METRICS;

/// Leaf certificates are valid this long and re-issued well before (`LEAF_CACHE_TTL`).
const LEAF_VALIDITY_DAYS: i64 = 30;
const LEAF_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
const LEAF_CACHE_CAPACITY: u64 = 10_000;

pub struct CertAuthority {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    ca_der: CertificateDer<'static>,
    /// The CA certificate as given to clients (`/ca.pem`, `sluice ca export`).
    pub pem: String,
    /// One key for every leaf (as mitmproxy does): issuing a leaf is one signature.
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    acceptors: Cache<String, Arc<Acceptor>>,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority").finish_non_exhaustive()
    }
}

/// Where the CA lives: configured files, or `data_dir/ca/`.
pub fn ca_paths(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> anyhow::Result<(PathBuf, PathBuf, bool)> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok((c.to_owned(), k.to_owned(), false)),
        (None, None) => {
            let dir = data_dir.join("ca");
            Ok((dir.join("sluice-ca.pem"), dir.join("sluice-ca.key"), true))
        }
        _ => anyhow::bail!("forward.ca_cert and forward.ca_key must be set together"),
    }
}

impl CertAuthority {
    /// Loads the CA, creating it first when it lives under the data dir and does not exist yet.
    pub fn load_or_create(
        data_dir: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> anyhow::Result<CertAuthority> {
        let (cert_path, key_path, managed) = ca_paths(data_dir, cert, key)?;
        if managed && !cert_path.exists() && !key_path.exists() {
            create(&cert_path, &key_path)?;
            log::info!(
                "created the forward proxy CA at {} (clients must trust it: `sluice ca export`)",
                cert_path.display()
            );
        }
        let cert_pem = std::fs::read_to_string(&cert_path)
            .with_context(|| format!("forward CA certificate {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(&key_path)
            .with_context(|| format!("forward CA key {}", key_path.display()))?;
        CertAuthority::from_pem(&cert_pem, &key_pem)
            .with_context(|| format!("forward CA {}", cert_path.display()))
    }

    pub fn from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<CertAuthority> {
        let ca_key = KeyPair::from_pem(key_pem).context("the CA key is not a PEM private key")?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)
            .context("the CA certificate is not a PEM certificate")?;
        // Re-signing the parsed parameters gives an issuer with the same name and key: leaves
        // chain to the certificate on disk, which is the one handed to clients.
        let ca_cert = params
            .self_signed(&ca_key)
            .context("the CA key does not match the certificate")?;
        let ca_der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .context("the CA certificate is not PEM")?;
        let leaf_key = KeyPair::generate().context("generating the leaf key")?;
        let leaf_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = rustls::crypto::ring::sign::any_supported_type(&leaf_der)
            .context("the leaf key cannot sign")?;
        Ok(CertAuthority {
            ca_cert,
            ca_key,
            ca_der,
            pem: cert_pem.to_owned(),
            leaf_key,
            leaf_signer,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            acceptors: Cache::builder()
                .max_capacity(LEAF_CACHE_CAPACITY)
                .time_to_live(LEAF_CACHE_TTL)
                .build(),
        })
    }

    /// The TLS acceptor for `host` (leaf certificate signed by this CA, `http/1.1` only),
    /// cached per host.
    pub fn acceptor(&self, host: &str) -> anyhow::Result<Arc<Acceptor>> {
        if let Some(hit) = self.acceptors.get(host) {
            METRICS.forward_leaf_certs.with_label_values(&["hit"]).inc();
            return Ok(hit);
        }
        METRICS
            .forward_leaf_certs
            .with_label_values(&["miss"])
            .inc();
        let leaf = self.issue(host)?;
        let resolver = Arc::new(HostCert {
            host: host.to_owned(),
            key: Arc::new(CertifiedKey::new(
                vec![leaf, self.ca_der.clone()],
                self.leaf_signer.clone(),
            )),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = Arc::new(Acceptor::from_server_config(Arc::new(config)));
        self.acceptors.insert(host.to_owned(), acceptor.clone());
        Ok(acceptor)
    }

    fn issue(&self, host: &str) -> anyhow::Result<CertificateDer<'static>> {
        let mut params = CertificateParams::new(vec![host.to_owned()])
            .with_context(|| format!("`{host}` cannot be a certificate name"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(LEAF_VALIDITY_DAYS);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, &self.ca_cert, &self.ca_key)
            .context("signing the leaf certificate")?;
        Ok(cert.der().clone())
    }
}

/// Answers with the host's certificate when the client's SNI names that host (or is absent, as
/// for IP addresses); any other SNI fails the handshake.
#[derive(Debug)]
struct HostCert {
    host: String,
    key: Arc<CertifiedKey>,
}

impl ResolvesServerCert for HostCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            None => Some(self.key.clone()),
            Some(sni) if sni.trim_end_matches('.').eq_ignore_ascii_case(&self.host) => {
                Some(self.key.clone())
            }
            Some(_) => {
                METRICS
                    .forward_connects
                    .with_label_values(&["sni_mismatch"])
                    .inc();
                None
            }
        }
    }
}

fn create(cert_path: &Path, key_path: &Path) -> anyhow::Result<()> {
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Sluice forward proxy CA");
    dn.push(DnType::OrganizationName, "Sluice");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).context("signing the CA")?;
    if let Some(dir) = cert_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::private::write(key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(cert_path, cert.pem())
        .with_context(|| format!("writing {}", cert_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_ca_is_private_reloadable_and_signs_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertAuthority::load_or_create(dir.path(), None, None).unwrap();
        let key_file = dir.path().join("ca/sluice-ca.key");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second start loads the same CA instead of creating another.
        let again = CertAuthority::load_or_create(dir.path(), None, None).unwrap();
        assert_eq!(ca.pem, again.pem);

        // A client trusting the CA file on disk accepts the leaf for that name only.
        use rustls::client::danger::ServerCertVerifier;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der.clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            again.provider.clone(),
        )
        .build()
        .unwrap();
        let leaf = again.issue("api.openai.com").unwrap();
        let now = rustls_pki_types::UnixTime::now();
        let name = |n: &str| rustls_pki_types::ServerName::try_from(n.to_owned()).unwrap();
        verifier
            .verify_server_cert(&leaf, &[], &name("api.openai.com"), &[], now)
            .expect("leaf chains to the CA on disk");
        assert!(verifier
            .verify_server_cert(&leaf, &[], &name("api.anthropic.com"), &[], now)
            .is_err());
        assert!(again.acceptor("api.openai.com").is_ok());
        assert!(again.acceptor("127.0.0.1").is_ok());
    }

    #[test]
    fn half_configured_ca_is_refused() {
        let err = ca_paths(Path::new("/tmp"), Some(Path::new("a.pem")), None).unwrap_err();
        assert!(err.to_string().contains("forward.ca_key"));
    }
}
