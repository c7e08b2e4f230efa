//! `sluice limit list|get|create|update|delete`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value};

use super::client::{enc, set_given, Client};
use super::Conn;

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
    /// Counters shared by all (all), or one set per principal or per owner.
    #[arg(long)]
    per: Option<String>,
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
        set_given(
            doc,
            [
                ("route", self.route.map(Value::from)),
                ("provider", self.provider.map(Value::from)),
                ("owner", self.owner.map(Value::from)),
                ("token", self.token.map(Value::from)),
                ("app", self.app.map(Value::from)),
                ("per", self.per.map(Value::from)),
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
    let c = Client::new(conn)?;
    let path = |name: &str| format!("/v1/limits/{}", enc(name));
    let v = match cmd {
        LimitCmd::List => c.call(Method::GET, "/v1/limits", None)?,
        LimitCmd::Get { name } => c.call(Method::GET, &path(&name), None)?,
        LimitCmd::Create { name, fields } => {
            let mut doc = Value::Object(Map::new());
            doc["name"] = Value::from(name);
            fields.apply(&mut doc);
            c.call(Method::POST, "/v1/limits", Some(doc))?
        }
        LimitCmd::Update { name, fields } => {
            let mut doc = c.stored(&path(&name))?;
            fields.apply(&mut doc);
            c.call(Method::PUT, &path(&name), Some(doc))?
        }
        LimitCmd::Delete { name } => c.call(Method::DELETE, &path(&name), None)?,
    };
    c.show(
        &v,
        &[
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
        ],
    );
    Ok(())
}
