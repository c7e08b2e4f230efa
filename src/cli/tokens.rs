//! `sluice token …`: tokens on the server, and records for the config file.

use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::json;

use super::{enc, Client, Conn};
use crate::config::wire;

/// What a new token carries: `sluice token create` (on the server) and `sluice token generate`
/// (a record for the config file) take the same flags.
#[derive(Args, Debug)]
pub struct TokenFields {
    /// A label shown as the principal in logs and audit records.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub owner: Option<String>,
    /// Scopes granted, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Lifetime such as 30d, 12h or 90m (at most ten years).
    #[arg(long)]
    pub expires_in: Option<humantime::Duration>,
}

#[derive(Subcommand, Debug)]
pub enum ServerTokenCmd {
    /// Example: sluice token list
    List,
    /// Prints the token once.
    ///
    /// Example: sluice token create --name ci --owner ci-bot --scopes llm --expires-in 30d
    Create(TokenFields),
    /// Example: sluice token revoke Q3vX9kT2mB7a
    Revoke { id: String },
    /// A new token; the old one keeps working for --grace.
    ///
    /// Example: sluice token rotate Q3vX9kT2mB7a --grace 1h
    Rotate {
        id: String,
        #[arg(long)]
        grace: Option<String>,
    },
}

/// `{ id: "…", sha256: "…", name: "ci" }`: a wire type as one YAML flow mapping, fields in
/// their declared order (values JSON-encoded, which YAML reads as flow scalars and sequences).
fn flow_mapping<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    let serde_yaml::Value::Mapping(map) = serde_yaml::to_value(value)? else {
        bail!("not a mapping");
    };
    let mut fields = Vec::new();
    for (k, v) in &map {
        let key = k.as_str().unwrap_or_default();
        fields.push(format!("{key}: {}", serde_json::to_string(v)?));
    }
    Ok(format!("{{ {} }}", fields.join(", ")))
}

/// `sluice token generate`: a new token and its `tokens:` record (a YAML flow mapping written
/// from the wire type), for the config file. Nothing is stored.
pub fn generate_token(fields: TokenFields) -> anyhow::Result<(String, String)> {
    let TokenFields {
        name,
        owner,
        scopes,
        expires_in,
    } = fields;
    let expires_at = match expires_in {
        Some(d) => Some(
            wire::Token::expiry_after(*d)
                .ok_or_else(|| anyhow::anyhow!("--expires-in {d} is longer than ten years"))?,
        ),
        None => None,
    };
    let (token, record) = wire::Token::generate(name, owner, scopes, expires_at)
        .map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;

    Ok((token, flow_mapping(&record)?))
}

pub fn token(conn: &Conn, cmd: ServerTokenCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        ServerTokenCmd::List => c.call(Method::GET, "/v1/tokens", None)?,
        ServerTokenCmd::Create(TokenFields {
            name,
            owner,
            scopes,
            expires_in,
        }) => c.call(
            Method::POST,
            "/v1/tokens",
            Some(
                json!({"name": name, "owner": owner, "scopes": scopes, "expires_in": expires_in.map(|d| d.to_string())}),
            ),
        )?,
        ServerTokenCmd::Revoke { id } => c.call(
            Method::POST,
            &format!("/v1/tokens/{}/revoke", enc(&id)),
            None,
        )?,
        ServerTokenCmd::Rotate { id, grace } => c.call(
            Method::POST,
            &format!("/v1/tokens/{}/rotate", enc(&id)),
            Some(json!({ "grace": grace })),
        )?,
    };
    c.show(
        &v,
        &[
            "id",
            "name",
            "owner",
            "scopes",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ],
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_record_pastes_into_the_config() {
        let fields = |expires_in: &str| TokenFields {
            name: Some("ci".into()),
            owner: Some("bot".into()),
            scopes: vec!["llm".into()],
            expires_in: Some(expires_in.parse().unwrap()),
        };
        let (token, record) = generate_token(fields("30d")).unwrap();
        let config = crate::config::parse(&format!("tokens:\n  - {record}\n")).unwrap();
        let t = &config.tokens[0];
        assert!(token.contains(&t.id));
        assert_eq!(
            (t.name.as_deref(), t.owner.as_deref()),
            (Some("ci"), Some("bot"))
        );
        assert_eq!(t.scopes, ["llm"]);
        assert!(t.expires_at.is_some() && t.revoked_at.is_none());
        assert!(generate_token(fields("11y")).is_err());
    }
}
