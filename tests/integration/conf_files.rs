//! Every configuration shipped in `conf/` and `deploy/` parses and validates.

use sluice::config::{load, BuildContext};
use std::path::Path;

#[test]
fn shipped_configs_validate() {
    let mut checked = 0;
    for dir in ["conf", "deploy"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                if let Err(errors) = load(&path, &BuildContext::default()) {
                    panic!("{errors}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no configuration files found");
}
