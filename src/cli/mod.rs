//! `sluice provider|key|secret|token|issuer|route|owner|limit|budget|oauth|mcp|agent <verb>`: the admin API from the shell.
//! `SLUICE_ADMIN_URL` (default http://127.0.0.1:9090) and `SLUICE_ADMIN_TOKEN` (default: the
//! first-run token in ./data/admin-token). Human tables by default, `--output json` for scripts.

mod agent;
mod budget;
mod client;
mod limit;
mod mcp;
mod oauth;
mod tokens;

pub use agent::{agent, app, AgentCmd, AppCmd};
pub use budget::{budget, BudgetCmd};
use client::{enc, env_value, labels, read_doc, set_given, Client};
pub use limit::{limit, LimitCmd};
pub use mcp::{mcp, McpCmd};
pub use oauth::{oauth, OauthCmd};
pub use tokens::{generate_token, token, ServerTokenCmd, TokenFields};

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// What a limit or a budget applies to (`--owner ci-bot --route /openai`), and who shares it.
#[derive(Args, Debug, Default)]
pub(crate) struct Selectors {
    /// Requests on this route prefix only.
    #[arg(long)]
    route: Option<String>,
    /// Requests to this provider only (its routes and intercepted hosts).
    #[arg(long)]
    provider: Option<String>,
    /// Requests by this owner's tokens only.
    #[arg(long)]
    owner: Option<String>,
    /// Requests with this opaque token id only.
    #[arg(long)]
    token: Option<String>,
    /// Requests by this client of Sluice's issuer only.
    #[arg(long)]
    app: Option<String>,
    /// Shared by all (all), or one per principal, owner, token or client address (source).
    #[arg(long)]
    per: Option<String>,
}

impl Selectors {
    fn apply(self, doc: &mut Value) {
        set_given(
            doc,
            [
                ("route", self.route.map(Value::from)),
                ("provider", self.provider.map(Value::from)),
                ("owner", self.owner.map(Value::from)),
                ("token", self.token.map(Value::from)),
                ("app", self.app.map(Value::from)),
                ("per", self.per.map(Value::from)),
            ],
        );
    }
}

/// What to do with one document of a kind managed by name (limits, budgets).
pub(crate) enum Verb<F> {
    List,
    Get(String),
    Create(String, F),
    Update(String, F),
    Delete(String),
}

/// Runs `verb` on the collection at `base` (`/v1/limits`): a created document is its name and
/// the fields given; an update changes the given fields of the stored one.
pub(crate) fn named<F>(
    conn: &Conn,
    base: &str,
    verb: Verb<F>,
    apply: fn(F, &mut Value),
    columns: &[&str],
) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let path = |name: &str| format!("{base}/{}", enc(name));
    let v = match verb {
        Verb::List => c.call(Method::GET, base, None)?,
        Verb::Get(name) => c.call(Method::GET, &path(&name), None)?,
        Verb::Create(name, fields) => {
            let mut doc = json!({ "name": name });
            apply(fields, &mut doc);
            c.call(Method::POST, base, Some(doc))?
        }
        Verb::Update(name, fields) => {
            let mut doc = c.stored(&path(&name))?;
            apply(fields, &mut doc);
            c.call(Method::PUT, &path(&name), Some(doc))?
        }
        Verb::Delete(name) => c.call(Method::DELETE, &path(&name), None)?,
    };
    c.show(&v, columns);
    Ok(())
}

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Admin API base URL.
    #[arg(
        long,
        env = "SLUICE_ADMIN_URL",
        default_value = "http://127.0.0.1:9090",
        global = true
    )]
    pub admin_url: String,
    /// A Sluice token whose owner has a role (default: ./data/admin-token when present).
    #[arg(
        long,
        env = "SLUICE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// `table` (default) or `json`.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ProviderCmd {
    /// Example: sluice provider list
    List,
    /// Example: sluice provider get openai-eu
    Get { name: String },
    /// Create from a YAML or JSON file holding one provider.
    ///
    /// Example: sluice provider create --file openai-eu.yaml
    Create {
        #[arg(long)]
        file: PathBuf,
    },
    /// Replace a stored provider from a file (its name cannot change).
    ///
    /// Example: sluice provider update openai-eu --file openai-eu.yaml
    Update {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Example: sluice provider delete openai-eu
    Delete { name: String },
    /// Provider keys.
    Key {
        #[command(subcommand)]
        command: KeyCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Add a key. With --value-env the value is stored as a secret labelled managed-by: sluice.
    ///
    /// Example: NEW_KEY=sk-… sluice provider key add openai --id k2 --value-env NEW_KEY --weight 1
    Add {
        provider: String,
        #[arg(long)]
        id: String,
        /// Environment variable holding the key (kept off the command line).
        #[arg(long, conflicts_with = "secret_ref")]
        value_env: Option<String>,
        /// `secret:NAME` (a stored secret) instead of a value.
        #[arg(long)]
        secret_ref: Option<String>,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        #[arg(long)]
        disabled: bool,
    },
    /// Change a key's weight or state, or rotate its managed secret's value.
    ///
    /// Example: sluice provider key set openai k1 --weight 0
    Set {
        provider: String,
        id: String,
        #[arg(long)]
        weight: Option<u32>,
        #[arg(long)]
        enabled: Option<bool>,
        #[arg(long)]
        value_env: Option<String>,
    },
    /// Example: sluice provider key remove openai k1
    Remove { provider: String, id: String },
}

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// Names, labels and scopes (values are never shown).
    ///
    /// Example: sluice secret list
    List,
    /// Example: sluice secret get OPENAI_KEY_2
    Get { name: String },
    /// Example: VALUE=sk-… sluice secret create OPENAI_KEY_2 --value-env VALUE --label team=ml
    Create {
        name: String,
        #[arg(long)]
        value_env: String,
        /// `key=value`, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// gateway (default), mcp, agent; repeatable.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// A new value rotates the secret for every key that references it.
    ///
    /// Example: VALUE=sk-new sluice secret update OPENAI_KEY_2 --value-env VALUE
    Update {
        name: String,
        #[arg(long)]
        value_env: Option<String>,
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Example: sluice secret delete OPENAI_KEY_2
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum IssuerCmd {
    /// Example: sluice issuer list
    List,
    /// Sluice's own issuer: its signing keys (public halves) and which one signs now.
    ///
    /// Example: sluice issuer keys
    Keys,
    /// Sluice's own issuer: a new signing key, published at once and signing after the
    /// publish delay; keys that cannot have signed a live token are removed.
    ///
    /// Example: sluice issuer rotate --algorithm EdDSA
    Rotate {
        /// `ES256` or `EdDSA`; default: the configured `builtin_issuer.algorithm`.
        #[arg(long)]
        algorithm: Option<String>,
    },
    /// Example: sluice issuer get corp
    Get { name: String },
    /// Trust a JWT issuer: from flags, or from a YAML or JSON file holding one issuer.
    ///
    /// Example: sluice issuer create corp --issuer https://login.example.com --audience urn:sluice:gateway
    ///
    /// Example: sluice issuer create --file corp.yaml
    Create {
        /// Short name for routes, metrics and logs.
        #[arg(required_unless_present = "file")]
        name: Option<String>,
        /// The exact `iss` claim (its OIDC discovery document names the JWKS).
        #[arg(long, required_unless_present = "file")]
        issuer: Option<String>,
        /// An accepted `aud` (repeatable).
        #[arg(long = "audience", required_unless_present = "file")]
        audiences: Vec<String>,
        /// Accepted algorithms, comma-separated (default RS256,ES256,EdDSA).
        #[arg(long, value_delimiter = ',')]
        algorithms: Vec<String>,
        /// Where the signing keys are, when there is no discovery document.
        #[arg(long)]
        jwks_uri: Option<String>,
        /// The claim naming the principal (default sub).
        #[arg(long)]
        principal_claim: Option<String>,
        #[arg(long)]
        leeway_seconds: Option<u64>,
        #[arg(long, conflicts_with_all = ["name", "issuer", "audiences"])]
        file: Option<PathBuf>,
    },
    /// Example: sluice issuer update corp --file corp.yaml
    Update {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Example: sluice issuer delete corp
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// Example: sluice route list
    List,
    /// Example: sluice route create --prefix /eu --provider openai-eu --auth token --scopes llm
    Create {
        #[arg(long)]
        prefix: String,
        #[arg(long)]
        provider: String,
        #[arg(long, default_value = "any")]
        auth: String,
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
    },
    /// Example: sluice route get /eu
    Get { prefix: String },
    /// Change a stored route; fields not given are kept.
    ///
    /// Example: sluice route update /eu --auth jwt --scopes llm,eu
    Update {
        prefix: String,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        auth: Option<String>,
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
    },
    /// Example: sluice route delete /eu
    Delete { prefix: String },
}

#[derive(Subcommand, Debug)]
pub enum OwnerCmd {
    /// Example: sluice owner list
    List,
    /// Example: sluice owner create ci-bot --role operator
    Create {
        name: String,
        /// admin, operator, viewer or dataplane.
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        disabled: bool,
    },
    /// Example: sluice owner get ci-bot
    Get { name: String },
    /// Change a stored owner's role or state; disabling refuses all its tokens at once.
    ///
    /// Example: sluice owner update ci-bot --role viewer --enabled false
    Update {
        name: String,
        /// admin, operator, viewer, dataplane, or none.
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
    },
    /// Example: sluice owner delete ci-bot
    Delete { name: String },
}

const PROVIDER_COLS: &[&str] = &["name", "kind", "base_url", "credentials", "keys", "source"];

pub fn provider(conn: &Conn, cmd: ProviderCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        ProviderCmd::List => c.call(Method::GET, "/v1/providers", None)?,
        ProviderCmd::Get { name } => {
            c.call(Method::GET, &format!("/v1/providers/{}", enc(&name)), None)?
        }
        ProviderCmd::Create { file } => {
            c.call(Method::POST, "/v1/providers", Some(read_doc(&file)?))?
        }
        ProviderCmd::Update { name, file } => c.call(
            Method::PUT,
            &format!("/v1/providers/{}", enc(&name)),
            Some(read_doc(&file)?),
        )?,
        ProviderCmd::Delete { name } => c.call(
            Method::DELETE,
            &format!("/v1/providers/{}", enc(&name)),
            None,
        )?,
        ProviderCmd::Key { command } => return key(conn, command),
    };
    c.show(&v, PROVIDER_COLS);
    Ok(())
}

pub fn key(conn: &Conn, cmd: KeyCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        KeyCmd::Add {
            provider,
            id,
            value_env,
            secret_ref,
            weight,
            disabled,
        } => {
            let mut body = json!({"id": id, "weight": weight, "enabled": !disabled});
            match (value_env, secret_ref) {
                (Some(var), None) => body["value"] = Value::String(env_value(&var)?),
                (None, Some(r)) => body["secret_ref"] = Value::String(r),
                _ => bail!("give --value-env VAR or --secret-ref REF"),
            }
            c.call(
                Method::POST,
                &format!("/v1/providers/{}/keys", enc(&provider)),
                Some(body),
            )?
        }
        KeyCmd::Set {
            provider,
            id,
            weight,
            enabled,
            value_env,
        } => {
            let mut body = json!({});
            if let Some(w) = weight {
                body["weight"] = json!(w);
            }
            if let Some(e) = enabled {
                body["enabled"] = json!(e);
            }
            if let Some(var) = value_env {
                body["value"] = Value::String(env_value(&var)?);
            }
            c.call(
                Method::PATCH,
                &format!("/v1/providers/{}/keys/{}", enc(&provider), enc(&id)),
                Some(body),
            )?
        }
        KeyCmd::Remove { provider, id } => c.call(
            Method::DELETE,
            &format!("/v1/providers/{}/keys/{}", enc(&provider), enc(&id)),
            None,
        )?,
    };
    c.show(&v, &[]);
    Ok(())
}

pub fn secret(conn: &Conn, cmd: SecretCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        SecretCmd::List => c.call(Method::GET, "/v1/secrets", None)?,
        SecretCmd::Get { name } => {
            c.call(Method::GET, &format!("/v1/secrets/{}", enc(&name)), None)?
        }
        SecretCmd::Create {
            name,
            value_env,
            labels: l,
            scopes,
        } => {
            let mut body =
                json!({"name": name, "value": env_value(&value_env)?, "labels": labels(&l)?});
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            c.call(Method::POST, "/v1/secrets", Some(body))?
        }
        SecretCmd::Update {
            name,
            value_env,
            labels: l,
            scopes,
        } => {
            let mut body = json!({});
            if let Some(var) = value_env {
                body["value"] = Value::String(env_value(&var)?);
            }
            if !l.is_empty() {
                body["labels"] = labels(&l)?;
            }
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            c.call(
                Method::PATCH,
                &format!("/v1/secrets/{}", enc(&name)),
                Some(body),
            )?
        }
        SecretCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/secrets/{}", enc(&name)), None)?
        }
    };
    c.show(&v, &["name", "scopes", "labels", "version"]);
    Ok(())
}

/// `sluice tls reload`: the process behind the admin API loads its listeners' certificates
/// again (`POST /v1/tls/reload`).
pub fn tls_reload(conn: &Conn) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = c.call(Method::POST, "/v1/tls/reload", None)?;
    c.show(&v, &["listener", "certificates"]);
    Ok(())
}

pub fn issuer(conn: &Conn, cmd: IssuerCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        IssuerCmd::List => c.call(Method::GET, "/v1/issuers", None)?,
        IssuerCmd::Keys => {
            let v = c.call(Method::GET, "/v1/issuer/keys", None)?;
            c.show(&v, &["kid", "alg", "created_at", "signing"]);
            return Ok(());
        }
        IssuerCmd::Rotate { algorithm } => {
            let body = algorithm.map(|a| json!({ "algorithm": a }));
            let v = c.call(Method::POST, "/v1/issuer/keys/rotate", body)?;
            c.show(&v, &["kid", "alg", "created_at", "signing"]);
            return Ok(());
        }
        IssuerCmd::Get { name } => {
            c.call(Method::GET, &format!("/v1/issuers/{}", enc(&name)), None)?
        }
        IssuerCmd::Create {
            file: Some(file), ..
        } => c.call(Method::POST, "/v1/issuers", Some(read_doc(&file)?))?,
        IssuerCmd::Create {
            name,
            issuer,
            audiences,
            algorithms,
            jwks_uri,
            principal_claim,
            leeway_seconds,
            file: None,
        } => {
            // Only what was given: the API fills in the defaults and names a missing field.
            let mut doc = json!({"name": name, "issuer": issuer, "audiences": audiences});
            set_given(
                &mut doc,
                [
                    (
                        "algorithms",
                        (!algorithms.is_empty()).then(|| json!(algorithms)),
                    ),
                    ("jwks_uri", jwks_uri.map(Value::from)),
                    ("principal_claim", principal_claim.map(Value::from)),
                    ("leeway_seconds", leeway_seconds.map(Value::from)),
                ],
            );
            c.call(Method::POST, "/v1/issuers", Some(doc))?
        }
        IssuerCmd::Update { name, file } => c.call(
            Method::PUT,
            &format!("/v1/issuers/{}", enc(&name)),
            Some(read_doc(&file)?),
        )?,
        IssuerCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/issuers/{}", enc(&name)), None)?
        }
    };
    c.show(&v, &["name", "issuer", "audiences", "source"]);
    Ok(())
}

pub fn route(conn: &Conn, cmd: RouteCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        RouteCmd::List => c.call(Method::GET, "/v1/routes", None)?,
        RouteCmd::Create {
            prefix,
            provider,
            auth,
            scopes,
        } => c.call(
            Method::POST,
            "/v1/routes",
            Some(json!({"prefix": prefix, "provider": provider, "auth": auth, "scopes": scopes})),
        )?,
        RouteCmd::Get { prefix } => c.call(Method::GET, &route_path(&prefix), None)?,
        RouteCmd::Update {
            prefix,
            provider,
            auth,
            scopes,
        } => {
            let mut doc = c.stored(&route_path(&prefix))?;
            set_given(
                &mut doc,
                [
                    ("provider", provider.map(Value::from)),
                    ("auth", auth.map(Value::from)),
                    ("scopes", scopes.map(Value::from)),
                ],
            );
            c.call(Method::PUT, &route_path(&prefix), Some(doc))?
        }
        RouteCmd::Delete { prefix } => c.call(Method::DELETE, &route_path(&prefix), None)?,
    };
    c.show(&v, &["prefix", "provider", "auth", "scopes", "source"]);
    Ok(())
}

/// `/v1/routes/PREFIX` (the prefix without its leading slash).
fn route_path(prefix: &str) -> String {
    format!("/v1/routes/{}", prefix.trim_start_matches('/'))
}

pub fn owner(conn: &Conn, cmd: OwnerCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        OwnerCmd::List => c.call(Method::GET, "/v1/owners", None)?,
        OwnerCmd::Create {
            name,
            role,
            disabled,
        } => c.call(
            Method::POST,
            "/v1/owners",
            Some(json!({"name": name, "role": role, "enabled": !disabled})),
        )?,
        OwnerCmd::Get { name } => {
            c.call(Method::GET, &format!("/v1/owners/{}", enc(&name)), None)?
        }
        OwnerCmd::Update {
            name,
            role,
            enabled,
        } => {
            let path = format!("/v1/owners/{}", enc(&name));
            let mut doc = c.stored(&path)?;
            match role.as_deref() {
                Some("none") => {
                    doc.as_object_mut().map(|o| o.remove("role"));
                }
                Some(r) => doc["role"] = json!(r),
                None => {}
            }
            set_given(&mut doc, [("enabled", enabled.map(Value::from))]);
            c.call(Method::PUT, &path, Some(doc))?
        }
        OwnerCmd::Delete { name } => {
            c.call(Method::DELETE, &format!("/v1/owners/{}", enc(&name)), None)?
        }
    };
    c.show(&v, &["name", "role", "enabled", "source"]);
    Ok(())
}
