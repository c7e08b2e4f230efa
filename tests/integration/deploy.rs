//! deploy/: the Kubernetes manifests checked offline against the Kubernetes schemas and against
//! each other (tests/deploy/check_manifests.py), the configuration they ship accepted by
//! `sluice check`, and the container image built the README's way, non-root, with its state in
//! a volume and a health check on /readyz.

use crate::common::*;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn kubernetes_manifests_are_valid_and_consistent() {
    let out = Command::new(crate::sdk::python())
        .arg(root().join("tests/deploy/check_manifests.py"))
        .arg(root().join("deploy/kubernetes/base"))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "manifests: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let config: String = serde_json::from_str(&last).expect("the ConfigMap's sluice.yaml");
    sluice_checks(&config, "the ConfigMap's configuration");
}

/// `sluice check` accepts a shipped configuration, read as a pod reads it (its
/// `/var/lib/sluice` data directory made a writable one here).
fn sluice_checks(config: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.yaml");
    let config = config.replace("/var/lib/sluice", dir.path().join("data").to_str().unwrap());
    std::fs::write(&file, config).unwrap();
    let check = Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "sluice check on {what}: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn the_container_image_is_built_the_readme_way() {
    let docker = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let serve = std::fs::read_to_string(root().join("scripts/serve.sh")).unwrap();
    // The README's build: scripts/serve.sh installs cmake and runs `cargo run --release`; the
    // image installs cmake and builds the same release binary from the locked dependencies.
    assert!(serve.contains("apt-get install") && serve.contains("cmake"));
    assert!(serve.contains("cargo run --release"));
    assert!(docker.contains("install -y -qq --no-install-recommends cmake"));
    assert!(docker.contains("RUN cargo build --release --locked --bin sluice"));
    let stages = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "a build stage and a slim runtime stage");
    assert!(
        docker.contains("USER 10001:10001"),
        "runs as a non-root user"
    );
    assert!(docker.contains("VOLUME [\"/var/lib/sluice\"]"));
    assert!(docker.contains("HEALTHCHECK") && docker.contains("/readyz"));
    // The runtime configuration the image ships is a valid one.
    let shipped = std::fs::read_to_string(root().join("deploy/sluice.yaml")).unwrap();
    sluice_checks(&shipped, "the image's configuration");
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    for path in ["target", ".venv", ".git", "**/node_modules"] {
        assert!(ignore.lines().any(|l| l == path), ".dockerignore: {path}");
    }
}
