//! A TLS listener's certificates: loaded from PEM files, one chosen per handshake by the
//! client's SNI among the certificates' names (the first certificate when none matches, as
//! nginx's default server), and replaced live. A reload loads every file first and swaps the
//! whole set at once: a handshake sees the old set or the new one, never half of each, and a
//! set that does not load (a key written before its certificate, say) leaves the old one
//! serving until the next try.

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::metrics::METRICS;

/// One certificate's PEM files (paths already resolved against the config file's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The certificates of one listener, swapped whole on reload.
pub struct ListenerCerts {
    listener: &'static str,
    /// The first is the default certificate.
    files: Vec<CertFiles>,
    set: ArcSwap<CertSet>,
}

impl std::fmt::Debug for ListenerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerCerts")
            .field("listener", &self.listener)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

struct CertSet {
    default: Arc<CertifiedKey>,
    /// Lower-case DNS names, and wildcard names (`*.example.com`) by the part after `*.`.
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Each certificate's first name and expiry (Unix seconds), for the expiry gauge.
    expiries: Vec<(String, i64)>,
}

impl CertSet {
    fn load(files: &[CertFiles]) -> anyhow::Result<CertSet> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut expiries = Vec::new();
        let mut default = None;
        for f in files {
            let loaded = load_one(f)?;
            // Earlier certificates win a name two of them share.
            for name in &loaded.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_owned()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| loaded.key.clone());
            }
            let first = loaded.names.first().cloned().unwrap_or_default();
            expiries.push((first, loaded.not_after));
            default.get_or_insert(loaded.key);
        }
        let default = default.context("no certificate")?;
        Ok(CertSet {
            default,
            exact,
            wildcard,
            expiries,
        })
    }

    /// The certificate for the name a client asked for, or the default one.
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(hit) = self.exact.get(&name) {
            return hit.clone();
        }
        // A wildcard covers exactly one label.
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

struct Loaded {
    key: Arc<CertifiedKey>,
    names: Vec<String>,
    not_after: i64,
}

fn load_one(files: &CertFiles) -> anyhow::Result<Loaded> {
    let cert_path = files.cert.display();
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{cert_path}: not a PEM certificate chain"))?;
    let leaf = certs
        .first()
        .with_context(|| format!("{cert_path}: no certificate"))?;
    let (names, not_after) = leaf_facts(leaf).with_context(|| format!("{cert_path}"))?;
    let key_path = files.key.display();
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("{key_path}: not a PEM private key"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .with_context(|| format!("{key_path}: not an RSA, ECDSA or Ed25519 key"))?;
    let key = CertifiedKey::new(certs, signer);
    key.keys_match()
        .with_context(|| format!("{key_path} is not the key of {cert_path}"))?;
    Ok(Loaded {
        key: Arc::new(key),
        names,
        not_after,
    })
}

/// The leaf's DNS names (subject alternative names, else its common name), lower case, and
/// its expiry.
fn leaf_facts(leaf: &CertificateDer<'_>) -> anyhow::Result<(Vec<String>, i64)> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    let mut names: Vec<String> = san_names(&cert)
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(ip) => ip_text(ip),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// A certificate's subject alternative names (none when it has no such extension or an
/// unreadable one).
fn san_names<'a>(
    cert: &'a x509_parser::certificate::X509Certificate<'_>,
) -> impl Iterator<Item = &'a x509_parser::extensions::GeneralName<'a>> {
    cert.subject_alternative_name()
        .ok()
        .flatten()
        .into_iter()
        .flat_map(|san| san.value.general_names.iter())
}

/// An IP address SAN as text (the name the expiry gauge shows for such a certificate).
fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

impl ListenerCerts {
    /// Loads every certificate of `listener` (the first is the default one).
    pub fn load(listener: &'static str, files: Vec<CertFiles>) -> anyhow::Result<ListenerCerts> {
        let set = CertSet::load(&files)?;
        let certs = ListenerCerts {
            listener,
            files,
            set: ArcSwap::from_pointee(set),
        };
        certs.export_expiries(&[]);
        Ok(certs)
    }

    /// The files this listener's certificates come from (what a watcher watches).
    pub fn files(&self) -> &[CertFiles] {
        &self.files
    }

    /// Loads the files again and swaps the new set in; on an error the old set keeps serving.
    pub fn reload(&self) -> anyhow::Result<()> {
        let result = CertSet::load(&self.files);
        let outcome = if result.is_ok() { "ok" } else { "error" };
        METRICS
            .tls_reloads
            .with_label_values(&[self.listener, outcome])
            .inc();
        let set = result?;
        let old = self.set.swap(Arc::new(set));
        self.export_expiries(&old.expiries);
        Ok(())
    }

    fn export_expiries(&self, old: &[(String, i64)]) {
        for (name, _) in old {
            let _ = METRICS
                .tls_cert_expiry
                .remove_label_values(&[self.listener, name]);
        }
        for (name, not_after) in &self.set.load().expiries {
            METRICS
                .tls_cert_expiry
                .with_label_values(&[self.listener, name])
                .set(*not_after);
        }
    }

    /// The rustls configuration of a listener serving these certificates: TLS 1.3 and 1.2
    /// with rustls' (AEAD, forward-secret) suites, session tickets, and ALPN `h2` (when
    /// `http2`) before `http/1.1`.
    pub fn server_config(
        self: &Arc<Self>,
        http2: bool,
        client_ca: Option<&std::path::Path>,
    ) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => builder.with_client_cert_verifier(client_verifier(path, provider)?),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.ticketer = rustls::crypto::ring::Ticketer::new().context("session tickets")?;
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(config)
    }
}

/// Verifies the certificate a client presents against the CAs in `path`; a client may present
/// none (routes that need one refuse it).
fn client_verifier(
    path: &std::path::Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let shown = path.display();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{shown}: not a PEM certificate file"))?
    {
        let cert = cert.with_context(|| format!("{shown}: not a PEM certificate"))?;
        roots
            .add(cert)
            .with_context(|| format!("{shown}: not a CA certificate"))?;
    }
    anyhow::ensure!(!roots.is_empty(), "{shown}: no certificate");
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .with_context(|| format!("{shown}: cannot verify clients with it"))
}

/// The identity of a verified client certificate: `spiffe://…` (its one SPIFFE ID, a URI SAN;
/// the scheme matched in any case) or `cn:` and its subject's common name — so a common name
/// can never pass for a SPIFFE ID. `None` when the certificate is outside its validity at `now`
/// (a resumed TLS session carries the certificate of its first handshake), holds two SPIFFE
/// IDs, names nobody, or names them with anything but printable ASCII (bidirectional and
/// other format characters would disguise names in logs) or at more than 256 characters.
pub fn peer_identity(leaf: &[u8], now: i64) -> Option<crate::auth::PeerCert> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        return None;
    }
    let spiffe: Vec<String> = san_names(&cert)
        .filter_map(|n| match n {
            GeneralName::URI(uri) => uri
                .get(..9)
                .filter(|scheme| scheme.eq_ignore_ascii_case("spiffe://"))
                .map(|_| format!("spiffe://{}", &uri[9..])),
            _ => None,
        })
        .collect();
    let subject = match spiffe.as_slice() {
        [one] => one.clone(),
        [] => {
            let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
            format!("cn:{cn}")
        }
        _ => return None,
    };
    let printable = subject.bytes().all(|b| (0x20..0x7f).contains(&b));
    (printable && subject.len() <= 256 && !subject.ends_with(':')).then(|| crate::auth::PeerCert {
        subject: subject.into_boxed_str(),
    })
}

/// Hands the verified client certificate's identity to the HTTP layer (the session's
/// `SslDigest::extension`, read by admission).
pub struct PeerCertCallback;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for PeerCertCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &pingora::protocols::tls::TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let now = crate::clock::unix_now() as i64;
        let identity = peer_identity(tls.peer_certificate_der()?, now)?;
        Some(Arc::new(identity))
    }
}

impl crate::tls::ReloadCerts for ListenerCerts {
    fn listener(&self) -> &'static str {
        self.listener
    }

    fn reload_certs(&self) -> anyhow::Result<Vec<(String, i64)>> {
        self.reload()?;
        Ok(self.set.load().expiries.clone())
    }
}

impl ResolvesServerCert for ListenerCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.set.load().pick(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_cert(dir: &std::path::Path, stem: &str, names: &[&str]) -> CertFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let files = CertFiles {
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    fn leaf_of(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].to_vec()
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let main = write_cert(dir.path(), "main", &["gateway.example.com"]);
        let other = write_cert(
            dir.path(),
            "other",
            &["*.internal.example", "api.other.test"],
        );
        let certs = ListenerCerts::load("test", vec![main.clone(), other]).unwrap();
        let set = certs.set.load();
        let default = leaf_of(&set.default);
        let other_leaf = leaf_of(&set.exact["api.other.test"]);
        assert_ne!(default, other_leaf);
        assert_eq!(leaf_of(&set.pick(None)), default);
        assert_eq!(leaf_of(&set.pick(Some("GATEWAY.example.com."))), default);
        assert_eq!(leaf_of(&set.pick(Some("api.other.test"))), other_leaf);
        assert_eq!(leaf_of(&set.pick(Some("a.internal.example"))), other_leaf);
        // One label only, and an unknown name gets the default.
        assert_eq!(leaf_of(&set.pick(Some("a.b.internal.example"))), default);
        assert_eq!(leaf_of(&set.pick(Some("unknown.test"))), default);
    }

    #[test]
    fn a_client_certificate_is_named_by_its_spiffe_id_else_its_common_name() {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let now = crate::clock::unix_now() as i64;
        let cert = |uris: &[&str], cn: Option<&str>| {
            let mut params = CertificateParams::default();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.subject_alt_names = vec![SanType::DnsName("x.test".try_into().unwrap())];
            for uri in uris {
                params
                    .subject_alt_names
                    .push(SanType::URI((*uri).try_into().unwrap()));
            }
            if let Some(cn) = cn {
                params.distinguished_name.push(DnType::CommonName, cn);
            }
            params.self_signed(&key).unwrap()
        };
        let named = |uris: &[&str], cn: Option<&str>| {
            peer_identity(cert(uris, cn).der(), now).map(|p| p.subject.to_string())
        };
        let id = "spiffe://example.org/ns/a";
        assert_eq!(named(&[id], Some("ignored")).as_deref(), Some(id));
        assert_eq!(
            named(&["SPIFFE://example.org/ns/a"], Some("mallory")).as_deref(),
            Some(id)
        );
        assert_eq!(
            named(&["https://not-spiffe.test/"], Some("bot")).as_deref(),
            Some("cn:bot")
        );
        assert_eq!(named(&[], Some("bot")).as_deref(), Some("cn:bot"));
        // A common name never passes for a SPIFFE ID.
        assert_eq!(
            named(&[], Some(id)).as_deref(),
            Some("cn:spiffe://example.org/ns/a")
        );
        // Refused: two SPIFFE IDs, no name, control and format characters.
        assert_eq!(named(&[id, "spiffe://example.org/ns/b"], None), None);
        assert_eq!(named(&[], None), None);
        assert_eq!(named(&[], Some("evil\nname")), None);
        assert_eq!(named(&[], Some("ali\u{202e}ce")), None);
        assert_eq!(peer_identity(b"not DER", now), None);
        // Outside its validity (a resumed session's certificate may have expired since).
        let valid = cert(&[], Some("bot"));
        let mut expired = CertificateParams::default();
        expired.distinguished_name = rcgen::DistinguishedName::new();
        expired.distinguished_name.push(DnType::CommonName, "bot");
        expired.not_before = time::OffsetDateTime::from_unix_timestamp(now - 7200).unwrap();
        expired.not_after = time::OffsetDateTime::from_unix_timestamp(now - 3600).unwrap();
        let expired = expired.self_signed(&key).unwrap();
        assert!(peer_identity(valid.der(), now).is_some());
        assert_eq!(peer_identity(expired.der(), now), None);
    }

    #[test]
    fn a_reload_that_fails_keeps_the_old_set_and_a_good_one_swaps_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_cert(dir.path(), "gw", &["gw.test"]);
        let certs = ListenerCerts::load("reload-test", vec![files.clone()]).unwrap();
        let before = leaf_of(&certs.set.load().default);
        // A new key written before its certificate: the pair does not match.
        let fresh = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&files.key, fresh.serialize_pem()).unwrap();
        let err = certs.reload().unwrap_err();
        assert!(format!("{err:#}").contains("is not the key of"), "{err:#}");
        assert_eq!(leaf_of(&certs.set.load().default), before);
        // Then the certificate: the new pair serves.
        let cert = rcgen::CertificateParams::new(vec!["gw.test".to_owned()])
            .unwrap()
            .self_signed(&fresh)
            .unwrap();
        std::fs::write(&files.cert, cert.pem()).unwrap();
        certs.reload().unwrap();
        assert_eq!(leaf_of(&certs.set.load().default), cert.der().to_vec());
        let ok = METRICS
            .tls_reloads
            .with_label_values(&["reload-test", "ok"])
            .get();
        assert_eq!(ok, 1);
        let expiry = METRICS
            .tls_cert_expiry
            .with_label_values(&["reload-test", "gw.test"])
            .get();
        assert!(expiry > crate::clock::unix_now() as i64, "{expiry}");
    }
}
