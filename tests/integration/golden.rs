//! Golden tests of every configuration Sluice ships: `conf/`, `deploy/` (the file and the
//! Kubernetes ConfigMap's) and each YAML example of the README, compiled by `sluice check
//! --explain` (the file as parsed with every default, then what was built from it) and compared
//! with `tests/golden/NAME.txt`. A change in how a configuration is read shows up as a diff in
//! review. Update them all with one command:
//!
//! ```sh
//! SLUICE_UPDATE_GOLDEN=1 cargo test --test integration golden
//! ```

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `sluice check --explain` of `file`, with every `env:NAME` it names set to a stand-in value;
/// paths that vary between machines replaced.
fn explain(file: &Path, text: &str) -> String {
    let mut cmd = Command::new(sluice_bin());
    cmd.args(["check", "--explain", "--config"])
        .arg(file)
        .env("RUST_LOG", "off");
    for name in text.split("env:").skip(1).map(|rest| {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>()
    }) {
        if !name.is_empty() {
            cmd.env(&name, format!("golden-{}-value-0000", name.to_lowercase()));
        }
    }
    let out = cmd.output().expect("sluice check");
    let dir = file
        .parent()
        .unwrap_or(Path::new("/"))
        .display()
        .to_string();
    format!(
        "exit: {}\n{}{}",
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .replace(&format!("{dir}/"), "<dir>/")
    .replace(&format!("{}/", repo().display()), "<repo>/")
}

/// Compares with (or, with `SLUICE_UPDATE_GOLDEN=1`, writes) `tests/golden/{name}.txt`.
fn golden(name: &str, got: &str) -> Option<String> {
    let path = repo().join("tests/golden").join(format!("{name}.txt"));
    if std::env::var_os("SLUICE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).expect("write golden");
        return None;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want == got {
        return None;
    }
    let line = want
        .lines()
        .zip(got.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(want.lines().count().min(got.lines().count()));
    Some(format!(
        "{name}: differs from {} at line {} (want {:?}, got {:?})",
        path.display(),
        line + 1,
        want.lines().nth(line).unwrap_or("<end>"),
        got.lines().nth(line).unwrap_or("<end>")
    ))
}

/// `text` with secrets mounted under `/run/secrets` moved where no machine has them.
fn unmounted(text: &str) -> String {
    text.replace("/run/secrets/", "/nonexistent/run/secrets/")
}

/// The shipped configurations: (golden name, file, its text).
fn shipped(tmp: &Path) -> Vec<(String, PathBuf, String)> {
    let mut all = Vec::new();
    // conf/ as shipped (its key file sits beside it); deploy/ as a copy whose mounted-secret
    // paths cannot exist on any machine (a CI runner may mount /run/secrets).
    let conf = repo().join("conf/sluice.yaml");
    let text = std::fs::read_to_string(&conf).expect("conf/sluice.yaml");
    all.push(("conf".to_owned(), conf, text));
    let text = unmounted(
        &std::fs::read_to_string(repo().join("deploy/sluice.yaml")).expect("deploy/sluice.yaml"),
    );
    let file = tmp.join("deploy.yaml");
    std::fs::write(&file, &text).unwrap();
    all.push(("deploy".to_owned(), file, text));
    // The ConfigMap's `sluice.yaml`.
    let map: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/kubernetes/base/configmap.yaml"))
            .expect("configmap"),
    )
    .expect("configmap yaml");
    let text = unmounted(
        map["data"]["sluice.yaml"]
            .as_str()
            .expect("data.sluice.yaml"),
    );
    let file = tmp.join("kubernetes-configmap.yaml");
    std::fs::write(&file, &text).unwrap();
    all.push(("kubernetes-configmap".into(), file, text));
    // Each YAML example of the README, alone.
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let mut block: Option<String> = None;
    let mut n = 0;
    for line in readme.lines() {
        match (&mut block, line.trim_start()) {
            (None, "```yaml") => block = Some(String::new()),
            (Some(text), "```") => {
                n += 1;
                let file = tmp.join(format!("readme-{n}.yaml"));
                let text = unmounted(text);
                std::fs::write(&file, &text).unwrap();
                all.push((format!("readme-{n}"), file, text));
                block = None;
            }
            (Some(text), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(n >= 6, "the README's YAML examples: {n}");
    all
}

#[test]
fn every_shipped_configuration_is_read_as_its_golden_file_says() {
    let tmp = tempfile::tempdir().unwrap();
    let mut diffs = Vec::new();
    for (name, file, text) in shipped(tmp.path()) {
        let got = explain(&file, &text);
        diffs.extend(golden(&name, &got));
    }
    assert!(
        diffs.is_empty(),
        "{}\nupdate with: SLUICE_UPDATE_GOLDEN=1 cargo test --test integration golden",
        diffs.join("\n")
    );
}
