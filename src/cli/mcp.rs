//! `sluice mcp …`: MCP servers fronted at `/mcp/{name}`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

use super::client::{enc, read_doc, set_given, Client};
use super::Conn;
use reqwest::Method;

#[derive(Subcommand, Debug)]
pub enum McpCmd {
    /// Example: sluice mcp list
    List,
    /// Example: sluice mcp get github-tools
    Get { name: String },
    /// Front an upstream MCP server: from flags, or from a YAML or JSON file holding one.
    ///
    /// Example: sluice mcp create --name github-tools --url https://api.githubcopilot.com/mcp/ --auth oauth_provider --oauth-provider github
    ///
    /// Example: sluice mcp create --name work --members github-tools,jira
    ///
    /// Example: sluice mcp create --file tools.yaml
    Create {
        #[arg(long, required_unless_present = "file")]
        name: Option<String>,
        #[command(flatten)]
        fields: McpFields,
        #[arg(long, conflicts_with = "name")]
        file: Option<PathBuf>,
    },
    /// Change the fields given; the others are kept.
    ///
    /// Example: sluice mcp update github-tools --scopes tools
    Update {
        name: String,
        #[command(flatten)]
        fields: McpFields,
    },
    /// Example: sluice mcp delete github-tools
    Delete { name: String },
}

#[derive(Args, Debug, Default)]
pub struct McpFields {
    #[arg(long)]
    display_name: Option<String>,
    /// The upstream MCP endpoint (https://, or http:// to loopback).
    #[arg(long)]
    url: Option<String>,
    /// A group instead: the MCP servers it federates (tools named `{member}__{tool}`).
    #[arg(long, value_delimiter = ',')]
    members: Option<Vec<String>>,
    /// `none`, `oauth_provider` (users' grants), `secret` (a static service token).
    #[arg(long)]
    auth: Option<String>,
    #[arg(long)]
    oauth_provider: Option<String>,
    /// A stored secret scoped `mcp` (UPPER_SNAKE_CASE).
    #[arg(long)]
    secret_ref: Option<String>,
    /// Which Sluice credentials clients may present: `token`, `jwt`, `any`.
    #[arg(long)]
    client_auth: Option<String>,
    #[arg(long, value_delimiter = ',')]
    scopes: Option<Vec<String>>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enabled: Option<bool>,
}

impl McpFields {
    fn apply(self, doc: &mut Value) {
        set_given(
            doc,
            [
                ("display_name", self.display_name.map(Value::from)),
                ("url", self.url.map(Value::from)),
                ("members", self.members.map(|m| json!(m))),
                ("auth", self.auth.map(Value::from)),
                ("oauth_provider", self.oauth_provider.map(Value::from)),
                ("secret_ref", self.secret_ref.map(Value::from)),
                ("client_auth", self.client_auth.map(Value::from)),
                ("scopes", self.scopes.map(|s| json!(s))),
                ("enabled", self.enabled.map(Value::from)),
            ],
        );
    }
}

pub fn mcp(conn: &Conn, cmd: McpCmd) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let path = |name: &str| format!("/v1/mcp-servers/{}", enc(name));
    let v = match cmd {
        McpCmd::List => c.call(Method::GET, "/v1/mcp-servers", None)?,
        McpCmd::Get { name } => c.call(Method::GET, &path(&name), None)?,
        McpCmd::Create {
            file: Some(file), ..
        } => c.call(Method::POST, "/v1/mcp-servers", Some(read_doc(&file)?))?,
        McpCmd::Create { name, fields, .. } => {
            let mut doc = json!({ "name": name });
            fields.apply(&mut doc);
            c.call(Method::POST, "/v1/mcp-servers", Some(doc))?
        }
        McpCmd::Update { name, fields } => {
            let mut doc = c.stored(&path(&name))?;
            fields.apply(&mut doc);
            c.call(Method::PUT, &path(&name), Some(doc))?
        }
        McpCmd::Delete { name } => c.call(Method::DELETE, &path(&name), None)?,
    };
    c.show(
        &v,
        &[
            "name",
            "url",
            "members",
            "auth",
            "oauth_provider",
            "endpoint",
            "enabled",
            "source",
        ],
    );
    Ok(())
}
