//! The module layering, checked: each top-level module may use only modules of a lower layer,
//! so there is no import cycle between modules and no lower layer reaching up. A new module
//! must be given a layer here; an import that points up fails this test with its file and line.
//!
//! `balance` and `forward` (the destination policy and the CA) sit below `config` because the
//! snapshot holds what they build (pick tables, policies); `auth` sits below them, taking what it
//! needs from the snapshot through `auth::CredentialIndex`.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. Modules in one layer may not use each other.
const LAYERS: &[&[&str]] = &[
    &[
        "clock",
        "private",
        "metrics",
        "tls",
        "secrets",
        "translate",
        "client_address",
    ],
    &["upstream", "audit", "trace"],
    &["error", "balance"],
    &["auth"],
    &["forward", "mock", "limits"],
    &["budgets"],
    &["config"],
    &["vault"],
    &["proxy", "admin"],
    &["control", "edge"],
    &["server", "cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level modules a source file names through `crate::…` (in paths and `use` groups).
fn uses(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in source.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            } else if rest.starts_with('{') {
                // `use crate::{a, b::{c, d}};` possibly over several lines: top-level names only.
                let group = source.lines().skip(n).collect::<Vec<_>>().join("\n");
                let start = group
                    .find("crate::{")
                    .map(|i| i + "crate::{".len())
                    .unwrap_or(0);
                let mut depth = 0;
                let mut item = String::new();
                for c in group[start..].chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.push((n + 1, std::mem::take(&mut item)));
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 && (c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                        item.push(c);
                    }
                }
                found.push((n + 1, item));
            }
        }
    }
    found
        .into_iter()
        .map(|(n, item)| (n, item.split("::").next().unwrap_or("").to_owned()))
        .filter(|(_, m)| !m.is_empty() && m != "self")
        .collect()
}

/// Production code of a file: everything before its `#[cfg(test)]` test module.
fn production(source: &str) -> &str {
    match source.find("#[cfg(test)]\nmod tests") {
        Some(cut) => &source[..cut],
        None => source,
    }
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_name().is_some_and(|n| n != "tests.rs")
        {
            files.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_module_of_its_own_or_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut problems = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let module = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_owned();
        if module == "main" || module == "lib" || module == "layers" {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            problems.insert(
                rel.display().to_string(),
                format!("module `{module}` has no layer"),
            );
            continue;
        };
        let source = std::fs::read_to_string(&file).unwrap_or_default();
        for (line, used) in uses(production(&source)) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(l) if l < own => {}
                Some(_) => {
                    problems.insert(
                        format!("{}:{line}", rel.display()),
                        format!("`{module}` uses `{used}`, which is not in a lower layer"),
                    );
                }
                None => {
                    problems.insert(
                        format!("{}:{line}", rel.display()),
                        format!("`{used}` has no layer"),
                    );
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layering broken (see src/layers.rs):\n{}",
        problems
            .iter()
            .map(|(at, p)| format!("  {at}: {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn use_groups_are_read() {
    let names: Vec<String> = uses("use crate::{a::b, c::{d, e}, f};\nlet x = crate::g::h();")
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(names, ["a", "c", "f", "g"]);
}
