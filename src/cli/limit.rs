//! `sluice limit list|get|create|update|delete`.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::set_given;
use super::{named, Conn, Selectors, Verb};

#[derive(Subcommand, Debug)]
pub enum LimitCmd {
    /// Example: sluice limit list
    List,
    /// Example: sluice limit get ci-bot-rate
    Get { name: String },
    /// Example: sluice limit create ci-bot-rate --owner ci-bot --requests-per-minute 60 --concurrent 4
    ///
    /// Example: sluice limit create per-user --route /openai --per principal --tokens-per-minute 200000
    Create {
        name: String,
        #[command(flatten)]
        fields: LimitFields,
    },
    /// Change a limit; fields not given are kept (its counters start afresh).
    ///
    /// Example: sluice limit update ci-bot-rate --requests-per-minute 120
    Update {
        name: String,
        #[command(flatten)]
        fields: LimitFields,
    },
    /// Example: sluice limit delete ci-bot-rate
    Delete { name: String },
}

#[derive(Args, Debug, Default)]
pub struct LimitFields {
    #[command(flatten)]
    selectors: Selectors,
    /// An MCP server's name: the limit applies to its requests and streams.
    #[arg(long)]
    mcp_server: Option<String>,
    /// One of Sluice's own unauthenticated endpoints: `issuer` (`/oauth2/…`) or `vault`
    /// (`/oauth/v1/…`), usually with `--per source`.
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    requests_per_second: Option<u32>,
    #[arg(long)]
    requests_per_minute: Option<u32>,
    #[arg(long)]
    tokens_per_minute: Option<u64>,
    #[arg(long)]
    concurrent: Option<u32>,
}

impl LimitFields {
    fn apply(self, doc: &mut Value) {
        self.selectors.apply(doc);
        set_given(
            doc,
            [
                ("mcp_server", self.mcp_server.map(Value::from)),
                ("endpoint", self.endpoint.map(Value::from)),
                (
                    "requests_per_second",
                    self.requests_per_second.map(Value::from),
                ),
                (
                    "requests_per_minute",
                    self.requests_per_minute.map(Value::from),
                ),
                ("tokens_per_minute", self.tokens_per_minute.map(Value::from)),
                ("concurrent", self.concurrent.map(Value::from)),
            ],
        );
    }
}

pub fn limit(conn: &Conn, cmd: LimitCmd) -> anyhow::Result<()> {
    let verb = match cmd {
        LimitCmd::List => Verb::List,
        LimitCmd::Get { name } => Verb::Get(name),
        LimitCmd::Create { name, fields } => Verb::Create(name, fields),
        LimitCmd::Update { name, fields } => Verb::Update(name, fields),
        LimitCmd::Delete { name } => Verb::Delete(name),
    };
    let columns = [
        "name",
        "route",
        "provider",
        "owner",
        "token",
        "per",
        "requests_per_minute",
        "tokens_per_minute",
        "concurrent",
        "source",
    ];
    named(conn, "/v1/limits", verb, LimitFields::apply, &columns)
}
