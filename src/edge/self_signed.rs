//! `sluice tls self-signed`: a certificate for trying HTTPS locally — an ECDSA P-256 leaf for
//! the given names, signed by a throw-away CA whose certificate clients are given to trust
//! (`SSL_CERT_FILE`, `curl --cacert`). The CA's key is never written: it can sign nothing else.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// What was written.
#[derive(Debug)]
pub struct Written {
    /// The CA certificate to trust.
    pub ca: PathBuf,
    /// The leaf chain (`listeners.proxy_tls.cert`).
    pub cert: PathBuf,
    /// Its key, mode 0600 (`listeners.proxy_tls.key`).
    pub key: PathBuf,
}

/// Writes `ca.pem`, `cert.pem` and `key.pem` under `dir` for `names` (DNS names or IP
/// addresses), valid for `days`.
pub fn write(dir: &Path, names: &[String], days: i64) -> anyhow::Result<Written> {
    anyhow::ensure!(!names.is_empty(), "name at least one host");
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Sluice local CA (self-signed)");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(days);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;

    let key = KeyPair::generate().context("generating the key")?;
    let mut leaf = CertificateParams::new(names.to_vec())
        .with_context(|| format!("{names:?} cannot be certificate names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].as_str());
    leaf.distinguished_name = dn;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(days);
    let leaf_cert = leaf
        .signed_by(&key, &ca_cert, &ca_key)
        .context("signing the certificate")?;

    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let written = Written {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    crate::private::write(&written.key, key.serialize_pem().as_bytes())?;
    for (path, pem) in [
        (&written.cert, leaf_cert.pem()),
        (&written.ca, ca_cert.pem()),
    ] {
        std::fs::write(path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::certs::{CertFiles, ListenerCerts};

    #[test]
    fn writes_a_pair_the_listener_loads() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let w = write(dir.path(), &names, 30).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&w.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let files = CertFiles {
            cert: w.cert,
            key: w.key,
        };
        ListenerCerts::load("self-signed-test", vec![files]).unwrap();
        assert!(std::fs::read_to_string(&w.ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(write(dir.path(), &[], 30).is_err());
    }
}
