//! The admin API client behind every `sluice` verb, and how answers are printed.

use anyhow::{bail, Context};
use serde_json::Value;
use std::path::PathBuf;

use super::{Conn, Output};

pub(super) struct Client {
    http: reqwest::blocking::Client,
    base: String,
    token: String,
    output: Output,
}

impl Client {
    pub(super) fn new(conn: &Conn) -> anyhow::Result<Client> {
        let token = match &conn.admin_token {
            Some(t) => t.clone(),
            None => std::fs::read_to_string("data/admin-token")
                .map(|t| t.trim().to_owned())
                .context(
                    "set SLUICE_ADMIN_TOKEN (or --admin-token): a token whose owner has a role",
                )?,
        };
        Client::to(&conn.admin_url, token, conn.output)
    }

    /// A client of another base URL (the gateway's own endpoints) with another credential.
    pub(super) fn to(base: &str, token: String, output: Output) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
            output,
        })
    }

    pub(super) fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let text = resp.text()?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let e = &value["error"];
            let mut msg = format!("{status}: {}", e["message"].as_str().unwrap_or("error"));
            if let Some(f) = e["field"].as_str() {
                msg.push_str(&format!(" (field {f})"));
            }
            bail!(msg);
        }
        Ok(value)
    }

    /// A stored document as the API takes it back (without the `source` and times it is shown
    /// with).
    pub(super) fn stored(&self, path: &str) -> anyhow::Result<Value> {
        let mut doc = self.call(reqwest::Method::GET, path, None)?;
        if let Some(o) = doc.as_object_mut() {
            for shown in [
                "source",
                "created_at",
                "updated_at",
                "redirect_uri",
                "endpoint",
                "invoke_urls",
            ] {
                o.remove(shown);
            }
        }
        Ok(doc)
    }

    pub(super) fn show(&self, value: &Value, columns: &[&str]) {
        if self.output == Output::Json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
            return;
        }
        match value.get("items").and_then(Value::as_array) {
            Some(items) => print_table(items, columns),
            None => {
                if let Value::Object(map) = value {
                    for (k, v) in map {
                        println!("{k}: {}", cell(v));
                    }
                }
            }
        }
    }
}

pub(super) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

pub(super) fn print_table(items: &[Value], columns: &[&str]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| match *c {
                    "keys" => item["keys"]
                        .as_array()
                        .map(|k| k.len().to_string())
                        .unwrap_or_default(),
                    c => cell(&item[c]),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(r));
    }
}

pub(super) fn read_doc(file: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("{} is not YAML or JSON", file.display()))
}

pub(super) fn env_value(var: &str) -> anyhow::Result<String> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("environment variable {var} is not set"))
}

pub(super) fn labels(list: &[String]) -> anyhow::Result<Value> {
    let mut map = serde_json::Map::new();
    for l in list {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("--label {l}: expected key=value"))?;
        map.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Ok(Value::Object(map))
}

pub(super) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sets each field that was given on the command line; the others keep their value (or the
/// API's default).
pub(super) fn set_given<const N: usize>(doc: &mut Value, fields: [(&str, Option<Value>); N]) {
    for (field, value) in fields {
        if let Some(v) = value {
            doc[field] = v;
        }
    }
}
