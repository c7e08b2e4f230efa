//! `sluice agent …`: agents' HTTP APIs served at `/agents/{agent}/{env}/…`.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

use super::client::{enc, read_doc, set_given, Client};
use super::Conn;
use reqwest::Method;

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Example: sluice agent list
    List,
    /// Example: sluice agent get research
    Get { name: String },
    /// An agent with its environments (`NAME=URL`, each `auth: token` until changed): from
    /// flags, or from a YAML or JSON file holding one.
    ///
    /// Example: sluice agent create --name research --env dev=http://10.0.0.5:8000 --env prod=https://research.internal
    ///
    /// Example: sluice agent create --file research.yaml
    Create {
        #[arg(long, required_unless_present = "file")]
        name: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long = "env", value_name = "NAME=URL")]
        envs: Vec<String>,
        #[arg(long, conflicts_with = "name")]
        file: Option<PathBuf>,
    },
    /// Change one environment's fields (adding it when `--url` is given); the others are kept.
    ///
    /// Example: sluice agent env research prod --auth none --exception "GET /health"
    Env {
        name: String,
        env: String,
        #[command(flatten)]
        fields: EnvFields,
    },
    /// Example: sluice agent delete research
    Delete { name: String },
    /// A 5-minute token of Sluice's issuer for an `auth: oauth` environment, its invoke URL
    /// and a ready curl line.
    ///
    /// Example: sluice agent test-token research --env dev
    TestToken {
        name: String,
        #[arg(long)]
        env: String,
    },
}

#[derive(Args, Debug, Default)]
pub struct EnvFields {
    #[arg(long)]
    url: Option<String>,
    /// `token` (opaque Sluice tokens) or `none` (open).
    #[arg(long)]
    auth: Option<String>,
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    /// An operation open without a credential, `METHOD /path` (`*` for any method, `/docs/*`
    /// for a prefix); repeat it. Given at all, it replaces the list.
    #[arg(long = "exception", value_name = "METHOD /PATH")]
    exceptions: Vec<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enabled: Option<bool>,
}

pub fn agent(conn: &Conn, cmd: AgentCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let path = |name: &str| format!("/v1/agents/{}", enc(name));
    let v = match cmd {
        AgentCmd::List => c.call(Method::GET, "/v1/agents", None)?,
        AgentCmd::Get { name } => c.call(Method::GET, &path(&name), None)?,
        AgentCmd::Create {
            file: Some(file), ..
        } => c.call(Method::POST, "/v1/agents", Some(read_doc(&file)?))?,
        AgentCmd::Create {
            name,
            display_name,
            envs,
            ..
        } => {
            let mut environments = Vec::new();
            for e in envs {
                let Some((env, url)) = e.split_once('=') else {
                    bail!("--env takes NAME=URL (e.g. prod=https://research.internal): `{e}`");
                };
                environments.push(json!({ "name": env, "url": url }));
            }
            let mut doc = json!({ "name": name, "environments": environments });
            set_given(&mut doc, [("display_name", display_name.map(Value::from))]);
            c.call(Method::POST, "/v1/agents", Some(doc))?
        }
        AgentCmd::Env { name, env, fields } => {
            let mut doc = c.stored(&path(&name))?;
            set_env(&mut doc, &env, fields)?;
            c.call(Method::PUT, &path(&name), Some(doc))?
        }
        AgentCmd::Delete { name } => c.call(Method::DELETE, &path(&name), None)?,
        AgentCmd::TestToken { name, env } => {
            let at = format!("{}/environments/{}/test-token", path(&name), enc(&env));
            let v = c.call(Method::POST, &at, None)?;
            c.show(&v, &["invoke_url", "expires_in", "access_token", "curl"]);
            return Ok(());
        }
    };
    c.show(&v, &["name", "display_name", "environments", "source"]);
    Ok(())
}

fn set_env(doc: &mut Value, env: &str, fields: EnvFields) -> anyhow::Result<()> {
    let Some(envs) = doc["environments"].as_array_mut() else {
        bail!("the stored agent has no environments list");
    };
    let at = match envs.iter().position(|e| e["name"] == env) {
        Some(i) => i,
        None if fields.url.is_some() => {
            envs.push(json!({ "name": env }));
            envs.len() - 1
        }
        None => bail!("no environment `{env}`: give --url to add it"),
    };
    let mut exceptions = Vec::new();
    for e in &fields.exceptions {
        let Some((method, path)) = e.trim().split_once(' ') else {
            bail!("--exception takes `METHOD /path` (e.g. \"GET /health\"): `{e}`");
        };
        exceptions.push(json!({ "method": method, "path": path.trim() }));
    }
    set_given(
        &mut envs[at],
        [
            ("url", fields.url.map(Value::from)),
            ("auth", fields.auth.map(Value::from)),
            ("scopes", fields.scopes.map(|s| json!(s))),
            (
                "exceptions",
                (!fields.exceptions.is_empty()).then(|| json!(exceptions)),
            ),
            ("enabled", fields.enabled.map(Value::from)),
        ],
    );
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AppCmd {
    /// Example: sluice app list
    List,
    /// An OAuth app (client credentials) for an `auth: oauth` agent environment; the secret is
    /// shown once.
    ///
    /// Example: sluice app create --agent research --env prod --name billing-bot
    Create {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        env: String,
        #[arg(long)]
        name: String,
    },
    /// A new secret, shown once; the old one is refused at once.
    ///
    /// Example: sluice app regenerate research-prod-1a2b3c4d
    Regenerate { client_id: String },
    /// Its tokens are refused on every data plane at the next revision.
    ///
    /// Example: sluice app revoke research-prod-1a2b3c4d
    Revoke { client_id: String },
}

pub fn app(conn: &Conn, cmd: AppCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let v = match cmd {
        AppCmd::List => c.call(Method::GET, "/v1/apps", None)?,
        AppCmd::Create { agent, env, name } => {
            let at = format!("/v1/agents/{}/environments/{}/apps", enc(&agent), enc(&env));
            c.call(Method::POST, &at, Some(json!({ "name": name })))?
        }
        AppCmd::Regenerate { client_id } => {
            let at = format!("/v1/apps/{}/regenerate", enc(&client_id));
            c.call(Method::POST, &at, None)?
        }
        AppCmd::Revoke { client_id } => c.call(
            Method::DELETE,
            &format!("/v1/apps/{}", enc(&client_id)),
            None,
        )?,
    };
    c.show(
        &v,
        &[
            "client_id",
            "name",
            "agent",
            "env",
            "client_secret",
            "token_endpoint",
        ],
    );
    Ok(())
}
