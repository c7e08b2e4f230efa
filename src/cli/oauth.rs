//! `sluice oauth …`: upstream OAuth providers from the shell, with a catalog of presets.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{enc, set_given, Client};
use super::Conn;
use crate::config::oauth_provider::{Preset, PRESETS};
use reqwest::Method;

#[derive(Subcommand, Debug)]
pub enum OauthCmd {
    /// The catalog of well-known providers that `--preset` pre-fills.
    ///
    /// Example: sluice oauth presets
    Presets,
    /// Example: sluice oauth list
    List,
    /// Example: sluice oauth get github
    Get { name: String },
    /// Register an upstream authorization server Sluice is a client of.
    ///
    /// Example: sluice oauth create --name ramp --display-name "Ramp" --auth-endpoint URL --token-endpoint URL --client-id ID --client-secret-ref RAMP_CLIENT_SECRET --scopes a,b --grant-types authorization_code --auth-method client_secret_basic --pkce --enabled
    ///
    /// Example: sluice oauth create --name github --preset github --client-id ID --client-secret-ref GITHUB_CLIENT_SECRET
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: OauthFields,
    },
    /// Change the fields given; the others are kept.
    ///
    /// Example: sluice oauth update ramp --scopes a,b,c
    Update {
        name: String,
        #[command(flatten)]
        fields: OauthFields,
    },
    /// Example: sluice oauth delete ramp
    Delete { name: String },
    /// As a user: a single-use link (10 minutes) to open in a browser and consent, so the
    /// gateway holds your token for this provider.
    ///
    /// Example: SLUICE_TOKEN=sluice_… sluice oauth connect github --gateway https://gw.example.com
    Connect {
        name: String,
        #[command(flatten)]
        user: UserConn,
    },
    /// As a user: remove your grant (revoked at the provider when it supports RFC 7009); as an
    /// operator, with `--principal`, anyone's.
    ///
    /// Example: sluice oauth disconnect github
    ///
    /// Example: sluice oauth disconnect github --principal owner:alice
    Disconnect {
        name: String,
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        user: UserConn,
    },
    /// Clients of Sluice's own authorization endpoint (MCP clients people signed in with).
    ///
    /// Example: sluice oauth clients
    Clients,
    /// Revoke a client of Sluice's authorization endpoint: its tokens stop working everywhere.
    ///
    /// Example: sluice oauth revoke-client mcp-3x…
    RevokeClient { client_id: String },
    /// Sign a person out everywhere: what Sluice's sign-in gave them until now stops working.
    ///
    /// Example: sluice oauth sign-out jwt:corp:alice
    SignOut { principal: String },
    /// Users' connections (never their tokens): everyone's, one principal's, or `--mine`.
    ///
    /// Example: sluice oauth connections --principal owner:alice
    Connections {
        #[arg(long)]
        principal: Option<String>,
        /// Yours, through the gateway with SLUICE_TOKEN.
        #[arg(long)]
        mine: bool,
        #[command(flatten)]
        user: UserConn,
    },
}

/// Where a user reaches the gateway, and with which credential.
#[derive(Args, Debug, Default)]
pub struct UserConn {
    /// The gateway's public URL (the proxy listener).
    #[arg(
        long,
        env = "SLUICE_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway: String,
    /// Your Sluice credential (an opaque token or a JWT from a trusted issuer).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl UserConn {
    fn client(&self, conn: &Conn) -> anyhow::Result<Client> {
        let token = self.token.clone().ok_or_else(|| {
            anyhow::anyhow!("set SLUICE_TOKEN (or --token): your Sluice credential")
        })?;
        Client::to(&self.gateway, token, conn.output)
    }
}

#[derive(Args, Debug, Default)]
pub struct OauthFields {
    /// Pre-fill endpoints and scopes from the catalog (`sluice oauth presets`).
    #[arg(long)]
    preset: Option<String>,
    /// The domain of an Okta-style preset (`example.okta.com`).
    #[arg(long)]
    domain: Option<String>,
    #[arg(long)]
    display_name: Option<String>,
    /// Discover the endpoints (RFC 8414, then OpenID discovery) instead of giving them.
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long = "auth-endpoint")]
    authorization_endpoint: Option<String>,
    #[arg(long)]
    token_endpoint: Option<String>,
    #[arg(long)]
    revocation_endpoint: Option<String>,
    #[arg(long)]
    client_id: Option<String>,
    /// A stored secret scoped `mcp` (UPPER_SNAKE_CASE).
    #[arg(long)]
    client_secret_ref: Option<String>,
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// `authorization_code`, `token_exchange`.
    #[arg(long, value_delimiter = ',')]
    grant_types: Option<Vec<String>>,
    /// `client_secret_basic` (default), `client_secret_post`, `none`.
    #[arg(long = "auth-method")]
    token_endpoint_auth_method: Option<String>,
    /// PKCE on every authorization request (`--pkce false` turns it off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pkce: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enabled: Option<bool>,
}

impl OauthFields {
    /// Sets the fields given, after the preset's (so a flag wins over the preset).
    fn apply(self, doc: &mut Value) -> anyhow::Result<()> {
        if let Some(name) = &self.preset {
            let preset = PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                anyhow::anyhow!("no preset `{name}`: one of {}", names.join(", "))
            })?;
            apply_preset(doc, preset, self.domain.as_deref())?;
        }
        set_given(
            doc,
            [
                ("display_name", self.display_name.map(Value::from)),
                ("issuer", self.issuer.map(Value::from)),
                (
                    "authorization_endpoint",
                    self.authorization_endpoint.map(Value::from),
                ),
                ("token_endpoint", self.token_endpoint.map(Value::from)),
                (
                    "revocation_endpoint",
                    self.revocation_endpoint.map(Value::from),
                ),
                ("client_id", self.client_id.map(Value::from)),
                ("client_secret_ref", self.client_secret_ref.map(Value::from)),
                ("scopes", self.scopes.map(|s| json!(s))),
                ("grant_types", self.grant_types.map(|g| json!(g))),
                (
                    "token_endpoint_auth_method",
                    self.token_endpoint_auth_method.map(Value::from),
                ),
                ("require_pkce", self.pkce.map(Value::from)),
                ("enabled", self.enabled.map(Value::from)),
            ],
        );
        Ok(())
    }
}

fn apply_preset(doc: &mut Value, preset: &Preset, domain: Option<&str>) -> anyhow::Result<()> {
    let fill = |url: &str| -> anyhow::Result<Option<Value>> {
        if url.is_empty() {
            return Ok(None);
        }
        if url.contains("{domain}") {
            let domain =
                domain.ok_or_else(|| anyhow::anyhow!("preset `{}` needs --domain", preset.name))?;
            return Ok(Some(Value::from(url.replace("{domain}", domain))));
        }
        Ok(Some(Value::from(url)))
    };
    set_given(
        doc,
        [
            ("display_name", Some(Value::from(preset.display_name))),
            (
                "authorization_endpoint",
                fill(preset.authorization_endpoint)?,
            ),
            ("token_endpoint", fill(preset.token_endpoint)?),
            (
                "revocation_endpoint",
                preset.revocation_endpoint.map(fill).transpose()?.flatten(),
            ),
            (
                "scopes",
                (!preset.scopes.is_empty()).then(|| json!(preset.scopes)),
            ),
        ],
    );
    Ok(())
}

pub fn oauth(conn: &Conn, cmd: OauthCmd) -> anyhow::Result<()> {
    if let OauthCmd::Presets = cmd {
        let items: Vec<Value> = PRESETS.iter().map(|p| json!(p)).collect();
        super::client::print_table(
            &items,
            &["name", "display_name", "token_endpoint", "scopes", "note"],
        );
        return Ok(());
    }
    let cmd = match user_verbs(conn, cmd)? {
        Some(cmd) => cmd,
        None => return Ok(()),
    };
    let c = Client::new(conn)?;
    let path = |name: &str| format!("/v1/oauth-providers/{}", enc(name));
    let v = match cmd {
        OauthCmd::Connect { .. } | OauthCmd::Disconnect { .. } | OauthCmd::Connections { .. } => {
            Value::Null
        }
        OauthCmd::Presets => Value::Null,
        OauthCmd::List => c.call(Method::GET, "/v1/oauth-providers", None)?,
        OauthCmd::Get { name } => c.call(Method::GET, &path(&name), None)?,
        OauthCmd::Create { name, fields } => {
            let mut doc = json!({ "name": name });
            fields.apply(&mut doc)?;
            c.call(Method::POST, "/v1/oauth-providers", Some(doc))?
        }
        OauthCmd::Update { name, fields } => {
            let mut doc = c.stored(&path(&name))?;
            fields.apply(&mut doc)?;
            c.call(Method::PUT, &path(&name), Some(doc))?
        }
        OauthCmd::Delete { name } => c.call(Method::DELETE, &path(&name), None)?,
        OauthCmd::Clients => {
            let v = c.call(Method::GET, "/v1/oauth-clients", None)?;
            let columns = ["client_id", "client_name", "redirect_uris", "last_used_at"];
            c.show(&v, &columns);
            return Ok(());
        }
        OauthCmd::SignOut { principal } => {
            let url = format!("/v1/people/{}/sign-out", enc(&principal));
            let v = c.call(Method::POST, &url, Some(json!({})))?;
            c.show(&v, &["principal", "signed_out_at", "revision"]);
            return Ok(());
        }
        OauthCmd::RevokeClient { client_id } => {
            let url = format!("/v1/oauth-clients/{}", enc(&client_id));
            let v = c.call(Method::DELETE, &url, None)?;
            c.show(&v, &["client_id", "revoked", "revision"]);
            return Ok(());
        }
    };
    c.show(
        &v,
        &[
            "name",
            "display_name",
            "grant_types",
            "scopes",
            "enabled",
            "source",
        ],
    );
    Ok(())
}

/// The verbs about users' connections; any other command is handed back.
fn user_verbs(conn: &Conn, cmd: OauthCmd) -> anyhow::Result<Option<OauthCmd>> {
    match cmd {
        OauthCmd::Connect { name, user } => {
            let c = user.client(conn)?;
            let v = c.call(
                Method::POST,
                &format!("/oauth/v1/connect/{}", enc(&name)),
                None,
            )?;
            c.show(&v, &[]);
        }
        OauthCmd::Disconnect {
            name,
            principal: None,
            user,
        } => {
            let c = user.client(conn)?;
            let v = c.call(
                Method::DELETE,
                &format!("/oauth/v1/connections/{}", enc(&name)),
                None,
            )?;
            c.show(&v, &[]);
        }
        OauthCmd::Disconnect {
            name,
            principal: Some(p),
            ..
        } => {
            let c = Client::new(conn)?;
            let path = format!("/v1/oauth/connections/{}?principal={}", enc(&name), enc(&p));
            let v = c.call(Method::DELETE, &path, None)?;
            c.show(&v, &[]);
        }
        OauthCmd::Connections {
            principal,
            mine,
            user,
        } => {
            let (c, path) = if mine {
                (user.client(conn)?, "/oauth/v1/connections".to_owned())
            } else {
                let query = principal
                    .map(|p| format!("?principal={}", enc(&p)))
                    .unwrap_or_default();
                (Client::new(conn)?, format!("/v1/oauth/connections{query}"))
            };
            let mut v = c.call(Method::GET, &path, None)?;
            // Shown as a table like the other lists.
            if let Some(data) = v.get_mut("data").map(Value::take) {
                v = json!({ "items": data });
            }
            c.show(
                &v,
                &[
                    "principal",
                    "provider",
                    "scopes",
                    "expires_at",
                    "refreshable",
                ],
            );
        }
        other => return Ok(Some(other)),
    }
    Ok(None)
}
