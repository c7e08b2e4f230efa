//! `sluice usage`: totals over audit files (the current one and its rotations) by principal,
//! provider or model, within a time range.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Principal,
    Provider,
    Model,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    /// What it cost, in micro-dollars (by the price table `totals` was given).
    pub micro_usd: u64,
}

/// What a record's usage cost, in micro-dollars: (provider, model, usage) → cost.
pub type Pricing<'a> = &'a dyn Fn(&str, Option<&str>, &crate::audit::Usage) -> u64;

#[derive(Deserialize)]
struct Line {
    time: String,
    principal: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    usage: Option<LineUsage>,
}

#[derive(Deserialize)]
struct LineUsage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
}

/// The audit file and its rotations, oldest first.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..=100)
        .map(|n| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        })
        .take_while(|p| p.exists())
        .collect();
    out.reverse();
    if path.exists() {
        out.push(path.to_owned());
    }
    out
}

/// Sums usage per group over records with `since <= time < until`.
pub fn totals(
    files: &[PathBuf],
    by: GroupBy,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    price: Pricing<'_>,
) -> std::io::Result<BTreeMap<String, Totals>> {
    let mut out: BTreeMap<String, Totals> = BTreeMap::new();
    for file in files {
        for line in std::io::BufReader::new(std::fs::File::open(file)?).lines() {
            let Ok(record) = serde_json::from_str::<Line>(&line?) else {
                continue;
            };
            let Ok(time) = humantime::parse_rfc3339_weak(&record.time) else {
                continue;
            };
            if since.is_some_and(|s| time < s) || until.is_some_and(|u| time >= u) {
                continue;
            }
            let cost = match (&record.provider, &record.usage) {
                (Some(p), Some(u)) => price(
                    p,
                    record.model.as_deref(),
                    &crate::audit::Usage {
                        input: u.input,
                        output: u.output,
                        cache_read: u.cache_read,
                        cache_write: u.cache_write,
                    },
                ),
                _ => 0,
            };
            let key = match by {
                GroupBy::Principal => record.principal,
                GroupBy::Provider => record.provider,
                GroupBy::Model => record.model,
            }
            .unwrap_or_else(|| "-".to_owned());
            let t = out.entry(key).or_default();
            t.requests += 1;
            t.micro_usd += cost;
            if let Some(u) = record.usage {
                t.input += u.input;
                t.output += u.output;
                t.cache_read += u.cache_read;
                t.cache_write += u.cache_write;
            }
        }
    }
    Ok(out)
}

/// A human table of `totals`.
pub fn table(by: GroupBy, totals: &BTreeMap<String, Totals>) -> String {
    let head = match by {
        GroupBy::Principal => "principal",
        GroupBy::Provider => "provider",
        GroupBy::Model => "model",
    };
    let width = totals
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(head.len());
    let mut out = format!(
        "{head:<width$}  {:>9}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}\n",
        "requests", "input", "output", "cache_read", "cache_write", "usd"
    );
    for (k, t) in totals {
        out.push_str(&format!(
            "{k:<width$}  {:>9}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12.4}\n",
            t.requests,
            t.input,
            t.output,
            t.cache_read,
            t.cache_write,
            t.micro_usd as f64 / 1e6
        ));
    }
    out
}
