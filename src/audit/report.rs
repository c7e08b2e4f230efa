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

/// Calls `f` with each record's time, group, usage and cost (by `price`), in file order.
fn each_record(
    files: &[PathBuf],
    by: GroupBy,
    price: Pricing<'_>,
    mut f: impl FnMut(SystemTime, String, Option<crate::audit::Usage>, u64),
) -> std::io::Result<()> {
    for file in files {
        for line in std::io::BufReader::new(std::fs::File::open(file)?).lines() {
            let Ok(record) = serde_json::from_str::<Line>(&line?) else {
                continue;
            };
            let Ok(time) = humantime::parse_rfc3339_weak(&record.time) else {
                continue;
            };
            let usage = record.usage.as_ref().map(|u| crate::audit::Usage {
                input: u.input,
                output: u.output,
                cache_read: u.cache_read,
                cache_write: u.cache_write,
            });
            let cost = match (&record.provider, &usage) {
                (Some(p), Some(u)) => price(p, record.model.as_deref(), u),
                _ => 0,
            };
            let key = match by {
                GroupBy::Principal => record.principal,
                GroupBy::Provider => record.provider,
                GroupBy::Model => record.model,
            }
            .unwrap_or_else(|| "-".to_owned());
            f(time, key, usage, cost);
        }
    }
    Ok(())
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
    each_record(files, by, price, |time, key, usage, cost| {
        if since.is_some_and(|s| time < s) || until.is_some_and(|u| time >= u) {
            return;
        }
        let t = out.entry(key).or_default();
        t.requests += 1;
        t.micro_usd += cost;
        if let Some(u) = usage {
            t.input += u.input;
            t.output += u.output;
            t.cache_read += u.cache_read;
            t.cache_write += u.cache_write;
        }
    })?;
    Ok(out)
}

/// Requests, tokens and cost per group in each of `buckets` buckets of `bucket_secs` from
/// `start` (Unix seconds): the console's charts.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Series {
    pub requests: Vec<u64>,
    /// Input + output + cache writes, as budgets count them.
    pub tokens: Vec<u64>,
    pub micro_usd: Vec<u64>,
}

/// At most this many groups are charted; the rest are summed as `other`.
const MAX_GROUPS: usize = 8;

/// `series` per group over records from `start` on, in `buckets` buckets of `bucket_secs`.
pub fn series(
    files: &[PathBuf],
    by: GroupBy,
    (start, bucket_secs, buckets): (u64, u64, usize),
    price: Pricing<'_>,
) -> std::io::Result<BTreeMap<String, Series>> {
    let since = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(start);
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    each_record(files, by, price, |time, key, usage, cost| {
        let Ok(age) = time.duration_since(since) else {
            return;
        };
        let i = (age.as_secs() / bucket_secs.max(1)) as usize;
        if i >= buckets {
            return;
        }
        let s = out.entry(key).or_insert_with(|| Series {
            requests: vec![0; buckets],
            tokens: vec![0; buckets],
            micro_usd: vec![0; buckets],
        });
        s.requests[i] += 1;
        s.tokens[i] += usage.map_or(0, |u| u.input + u.output + u.cache_write);
        s.micro_usd[i] += cost;
    })?;
    Ok(fold_small_groups(out))
}

/// The `MAX_GROUPS` − 1 largest groups by requests, the rest summed as `other`.
fn fold_small_groups(all: BTreeMap<String, Series>) -> BTreeMap<String, Series> {
    if all.len() <= MAX_GROUPS {
        return all;
    }
    let mut ranked: Vec<(String, Series)> = all.into_iter().collect();
    ranked.sort_by_key(|(_, s)| std::cmp::Reverse(s.requests.iter().sum::<u64>()));
    let rest = ranked.split_off(MAX_GROUPS - 1);
    let mut out: BTreeMap<String, Series> = ranked.into_iter().collect();
    let mut other = Series::default();
    for (_, s) in rest {
        for (field, add) in [
            (&mut other.requests, &s.requests),
            (&mut other.tokens, &s.tokens),
            (&mut other.micro_usd, &s.micro_usd),
        ] {
            field.resize(add.len(), 0);
            for (a, b) in field.iter_mut().zip(add) {
                *a += b;
            }
        }
    }
    out.insert("other".to_owned(), other);
    out
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
