//! Configuration: `wire` (the YAML as written) → `snapshot` (validated, precomputed, immutable)
//! → `store` (the `ArcSwap` every request loads once, and the reload path that feeds it).

pub mod auth_build;
pub mod locate;
pub mod snapshot;
pub mod store;
pub mod watch;
pub mod wire;

pub use snapshot::{Access, BuildContext, Provider, ProviderKey, Route, Snapshot, TokenRecord};
pub use store::ConfigStore;
pub use wire::{AuthPolicy, CredentialMode, ProviderKind};

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a configuration file, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// Field path such as `providers[0].keys[1].secret_ref` (empty for whole-file errors).
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error of one load attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and parses a config file (syntax and shape only; `Snapshot::build` validates the rest).
pub fn read_file(file: &Path) -> Result<(wire::Config, String), ConfigErrors> {
    let source = std::fs::read_to_string(file).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: Some(file.to_owned()),
            line: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })?;
    let config = parse(&source).map_err(|mut e| {
        e.file = Some(file.to_owned());
        ConfigErrors(vec![e])
    })?;
    Ok((config, source))
}

/// Parses YAML into the wire types, keeping serde's line number.
pub fn parse(source: &str) -> Result<wire::Config, ConfigError> {
    serde_yaml::from_str(source).map_err(|e| {
        let line = e.location().map(|l| l.line());
        // serde_yaml appends " at line L column C"; the line is reported separately.
        let text = e.to_string();
        let message = match text.rfind(" at line ") {
            Some(cut) => text[..cut].to_owned(),
            None => text,
        };
        let (path, message) = match message.split_once(": ") {
            Some((p, m)) if !p.contains(' ') => (p.to_owned(), m.to_owned()),
            _ => (String::new(), message),
        };
        ConfigError {
            file: None,
            line,
            path,
            message,
        }
    })
}

/// Reads, parses and validates a file into a snapshot, with every error located in the file.
pub fn load(file: &Path, ctx: &BuildContext) -> Result<(wire::Config, Snapshot), ConfigErrors> {
    let (config, source) = read_file(file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    match Snapshot::build(&config, base, ctx) {
        Ok(snapshot) => Ok((config, snapshot)),
        Err(errors) => {
            let lines = locate::Lines::of(&source);
            Err(ConfigErrors(
                errors
                    .into_iter()
                    .map(|mut e| {
                        e.file = Some(file.to_owned());
                        e.line = lines.line(&e.path);
                        e
                    })
                    .collect(),
            ))
        }
    }
}
