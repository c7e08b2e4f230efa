//! `sluice budget list|get|create|update|delete`.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::set_given;
use super::{named, Conn, Selectors, Verb};

#[derive(Subcommand, Debug)]
pub enum BudgetCmd {
    /// Example: sluice budget list
    List,
    /// Example: sluice budget get team-a-monthly
    Get { name: String },
    /// Example: sluice budget create team-a-monthly --owner team-a --period month --usd 500
    ///
    /// Example: sluice budget create per-user-daily --per principal --period day --tokens 2000000
    Create {
        name: String,
        #[command(flatten)]
        fields: BudgetFields,
    },
    /// Change a budget; fields not given are kept (its spend starts afresh).
    ///
    /// Example: sluice budget update team-a-monthly --usd 800
    Update {
        name: String,
        #[command(flatten)]
        fields: BudgetFields,
    },
    /// Example: sluice budget delete team-a-monthly
    Delete { name: String },
}

#[derive(Args, Debug, Default)]
pub struct BudgetFields {
    #[command(flatten)]
    selectors: Selectors,
    /// day, month or hours (with --window-hours).
    #[arg(long)]
    period: Option<String>,
    #[arg(long)]
    window_hours: Option<u32>,
    /// Tokens per period.
    #[arg(long)]
    tokens: Option<u64>,
    /// US dollars per period.
    #[arg(long)]
    usd: Option<f64>,
    /// Share at which a warning is recorded (default 0.8).
    #[arg(long)]
    warn_at: Option<f64>,
}

impl BudgetFields {
    fn apply(self, doc: &mut Value) {
        self.selectors.apply(doc);
        set_given(
            doc,
            [
                ("period", self.period.map(Value::from)),
                ("window_hours", self.window_hours.map(Value::from)),
                ("tokens", self.tokens.map(Value::from)),
                ("usd", self.usd.map(Value::from)),
                ("warn_at", self.warn_at.map(Value::from)),
            ],
        );
    }
}

pub fn budget(conn: &Conn, cmd: BudgetCmd) -> anyhow::Result<()> {
    let verb = match cmd {
        BudgetCmd::List => Verb::List,
        BudgetCmd::Get { name } => Verb::Get(name),
        BudgetCmd::Create { name, fields } => Verb::Create(name, fields),
        BudgetCmd::Update { name, fields } => Verb::Update(name, fields),
        BudgetCmd::Delete { name } => Verb::Delete(name),
    };
    let columns = [
        "name", "owner", "route", "per", "period", "tokens", "usd", "source",
    ];
    named(conn, "/v1/budgets", verb, BudgetFields::apply, &columns)
}
