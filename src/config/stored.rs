//! The control plane's resources as the configuration sees them: documents by (kind, name) at
//! one revision and the gateway secrets opened for them (`kind` says how they join the file's
//! resources). The store itself (and the master key that opens the secrets) is `control`'s.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use super::wire;
use crate::secrets::Secret;

use super::kind::Kind;

pub const PROVIDER: &str = <wire::Provider as Kind>::KIND;
pub const ROUTE: &str = <wire::Route as Kind>::KIND;
pub const ISSUER: &str = <wire::Issuer as Kind>::KIND;
pub const TOKEN: &str = <wire::Token as Kind>::KIND;
pub const OWNER: &str = <wire::Owner as Kind>::KIND;
/// The built-in issuer's signing keys (`control::issuer`): the public JWK reaches the snapshot.
pub const SIGNING_KEY: &str = "signing_key";
/// OAuth apps of Sluice's issuer (`control::issuer`): their client ids reach the snapshot (a
/// deleted app's tokens are refused everywhere at the next revision).
pub const APP: &str = "oauth_app";
/// Access tokens of Sluice's issuer revoked before they expire (RFC 7009), by `jti`; removed
/// once expired.
pub const REVOKED: &str = "revoked_token";
/// Secrets are the store's alone (the file references values by `env:`/`file:`).
pub const SECRET: &str = "secret";

/// A stored resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub kind: String,
    pub name: String,
    pub body: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Every resource at one revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    pub revision: u64,
    pub resources: Vec<Resource>,
}

/// The store's resources at one revision, ready for a snapshot build.
#[derive(Debug, Default)]
pub struct ControlState {
    pub dump: Dump,
    /// Opened values of the secrets scoped `gateway`.
    pub secrets: HashMap<String, Secret>,
}

/// What the control plane's store says about the built-in issuer: state, not configuration,
/// so it is kept out of the file's types (`wire::Config`).
#[derive(Debug, Clone, Default)]
pub struct IssuerState {
    /// The public keys (JWKs) of its signing keys.
    pub signing_keys: Vec<serde_json::Value>,
    /// Client ids of its apps.
    pub live_apps: Vec<String>,
    /// `jti`s of its tokens revoked before they expire.
    pub revoked_tokens: Vec<String>,
    /// People signed out everywhere by an operator, with when (Unix milliseconds): what Sluice
    /// issued them before is refused.
    pub signed_out: Vec<(String, u64)>,
    /// Client ids of Sluice's authorization endpoint an operator revoked.
    pub revoked_clients: Vec<String>,
}

/// The `REVOKED` entry that signs a person out everywhere (`person:{principal}`).
pub const SIGNED_OUT_PREFIX: &str = "person:";
/// The `REVOKED` entry that refuses every token of a registered OAuth client (`client:{id}`).
pub const REVOKED_CLIENT_PREFIX: &str = "client:";
