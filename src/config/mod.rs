//! Configuration: `wire` (the YAML as written) → `snapshot` (validated, precomputed, immutable)
//! → `store` (the `ArcSwap` every request loads once, and the reload path that feeds it).

pub mod agent;
pub mod budget;
pub mod describe;
mod forward;
pub mod issuer;
pub mod kind;
pub mod limit;
pub mod locate;
pub mod mcp_server;
pub mod name;
pub mod oauth_provider;
pub mod owner;
pub mod provider;
pub mod route;
pub mod snapshot;
pub mod store;
pub mod stored;
pub mod token;
pub mod watch;
pub mod wire;

pub use crate::auth::opaque::TokenRecord;
pub use crate::auth::Access;
pub use mcp_server::McpServer;
pub use oauth_provider::OAuthProvider;
pub use provider::{Provider, ProviderKey};
pub use route::Route;
pub use snapshot::{revoked_client_key, BuildContext, Snapshot};
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
    let source = read_source(file)?;
    let config = parse_file(file, &source)?;
    Ok((config, source))
}

fn read_source(file: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(file).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: Some(file.to_owned()),
            line: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }])
    })
}

fn parse_file(file: &Path, source: &str) -> Result<wire::Config, ConfigErrors> {
    parse(source).map_err(|mut e| {
        e.file = Some(file.to_owned());
        ConfigErrors(vec![e])
    })
}

/// The last file read and what it parsed to: a rebuild for a new control-plane revision does
/// not parse an unchanged file again (a 10,000-token file takes longer to parse than to build).
#[derive(Default)]
pub struct ParseCache(std::sync::Mutex<Option<(String, wire::Config)>>);

impl ParseCache {
    /// A cache that already holds `source` parsed (the file as read at start).
    pub fn seeded(source: String, config: wire::Config) -> ParseCache {
        ParseCache(std::sync::Mutex::new(Some((source, config))))
    }

    /// `read_file`, parsing only when the file's content changed.
    pub fn read(&self, file: &Path) -> Result<(wire::Config, String), ConfigErrors> {
        let source = read_source(file)?;
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, config)) = last.as_ref() {
            if *seen == source {
                return Ok((config.clone(), source));
            }
        }
        let config = parse_file(file, &source)?;
        *last = Some((source.clone(), config.clone()));
        Ok((config, source))
    }
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
    load_with(file, ctx, None, &ParseCache::default())
}

/// `load`, with the control plane's resources added to the file's. Returns the file's own
/// configuration (static settings are the file's alone).
pub fn load_with(
    file: &Path,
    ctx: &BuildContext,
    control: Option<&stored::ControlState>,
    cache: &ParseCache,
) -> Result<(wire::Config, Snapshot), ConfigErrors> {
    let (config, source) = cache.read(file)?;
    build_from(file, config, &source, ctx, control)
}

/// Builds a snapshot from a file already read and parsed (`source` locates the errors).
pub fn build_from(
    file: &Path,
    config: wire::Config,
    source: &str,
    ctx: &BuildContext,
    control: Option<&stored::ControlState>,
) -> Result<(wire::Config, Snapshot), ConfigErrors> {
    let base = file.parent().unwrap_or(Path::new("."));
    let mut merged = config.clone();
    let mut merge_errors = Vec::new();
    let mut issuer = stored::IssuerState::default();
    if let Some(control) = control {
        (merge_errors, issuer) = kind::merge(&mut merged, &control.dump.resources);
    }
    let built = if merge_errors.is_empty() {
        Snapshot::build(&merged, &issuer, base, ctx)
    } else {
        Err(merge_errors)
    };
    match built {
        Ok(snapshot) => Ok((config, snapshot)),
        Err(errors) => {
            let lines = locate::Lines::of(source);
            Err(ConfigErrors(
                errors
                    .into_iter()
                    .map(|mut e| {
                        match kind::stored_path(&e.path, &config, &merged) {
                            // A resource from the control plane's store: named, no file line.
                            Some(path) => e.path = path,
                            None => {
                                e.file = Some(file.to_owned());
                                e.line = lines.line(&e.path);
                            }
                        }
                        e
                    })
                    .collect(),
            ))
        }
    }
}
