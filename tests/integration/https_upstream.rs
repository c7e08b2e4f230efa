//! Upstream HTTPS through rustls: a per-provider `ca_file` is trusted, the system roots are not
//! fooled by a private CA.

use crate::common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A private CA and a leaf for 127.0.0.1 and localhost, as PEM files.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "sluice test upstream CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("leaf.key"), leaf_key.serialize_pem()).unwrap();
        Pki { dir }
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

#[tokio::test]
async fn https_upstream_with_a_provider_ca_file() {
    let pki = Pki::new();
    let mock = Mock::start(&[
        "--tls-cert",
        &pki.path("leaf.pem"),
        "--tls-key",
        &pki.path("leaf.key"),
    ]);
    let config = format!(
        r#"providers:
  - {{ name: trusted, kind: openai, base_url: "https://127.0.0.1:{port}/v1", ca_file: "{ca}", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
  - {{ name: untrusted, kind: openai, base_url: "https://127.0.0.1:{port}/v1", keys: [{{ id: a, secret_ref: "env:KEY_A" }}] }}
routes:
  - {{ prefix: /trusted, provider: trusted, auth: none }}
  - {{ prefix: /untrusted, provider: untrusted, auth: none }}
"#,
        port = mock.port,
        ca = pki.path("ca.pem")
    );
    let sluice = Sluice::start_with_env(&config, &[("KEY_A", "sk-tls-key-0000000")]);
    let c = client();
    for _ in 0..3 {
        let r = c
            .post(sluice.url("/trusted/chat/completions"))
            .body(CHAT_STREAM)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    }
    let r = c
        .post(sluice.url("/untrusted/chat/completions"))
        .body(CHAT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        502,
        "a private CA must not be trusted through the system roots"
    );

    // The mock's stats, over HTTPS with the test CA: the pool key arrived three times.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            &pki.path("ca.pem"),
            &format!("https://127.0.0.1:{}/_mock/stats", mock.port),
        ])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        stats["credentials"]["authorization: Bearer sk-tls-key-0000000"], 3,
        "{stats}"
    );
    let log = sluice.proc.log_text();
    assert!(!log.contains("sk-tls-key"), "{log}");
}
