//! The configuration as Sluice understands it (`sluice check --explain`): the file as parsed,
//! every default filled in, then what was built from it — each route's provider, access and
//! fallback, each provider's upstream and key pool, the forward proxy's interception, and the
//! warnings. Deterministic (sorted, no addresses or times), so the golden tests of the shipped
//! configurations show any change in how a configuration is read as a diff in review.

use std::fmt::Write;

use super::snapshot::Snapshot;
use super::wire;

pub fn describe(config: &wire::Config, snap: &Snapshot) -> String {
    let mut out = String::new();
    let _ = write_description(&mut out, config, snap);
    without_url_passwords(&out)
}

/// `scheme://user:PASSWORD@host` → `scheme://user:…@host` (a Redis or collector URL may carry
/// one; the description is printed and checked in).
fn without_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                let userinfo = &authority[..userinfo_end];
                match userinfo.split_once(':') {
                    Some((user, _)) => {
                        out.push_str(user);
                        out.push_str(":…");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

fn write_description(out: &mut String, config: &wire::Config, snap: &Snapshot) -> std::fmt::Result {
    writeln!(out, "# parsed, defaults filled in")?;
    writeln!(out, "{config:#?}")?;
    writeln!(out, "\n# built")?;
    write_routes(out, snap)?;
    write_providers(out, snap)?;
    write_credentials(out, snap)?;
    write_rest(out, snap)
}

fn write_routes(out: &mut String, snap: &Snapshot) -> std::fmt::Result {
    writeln!(out, "routes:")?;
    for r in &snap.routes {
        let issuers = match &r.access.issuers {
            None => "all".to_owned(),
            Some(ids) => ids
                .iter()
                .filter_map(|i| snap.jwt.issuers.get(*i).map(|t| t.name.clone()))
                .collect::<Vec<_>>()
                .join(","),
        };
        let at = if r.intercept {
            format!("intercepted hosts of {}", r.label)
        } else {
            r.prefix.clone()
        };
        writeln!(
            out,
            "  {at} -> provider {}: auth {:?}, scopes {:?}, issuers {issuers}, claims {:?}, audit {}",
            r.provider.name,
            r.access.auth,
            r.access.scopes,
            r.access.required_claims,
            r.audit,
        )?;
        if let Some(f) = &r.fallback {
            writeln!(out, "    fallback: {:?}", f)?;
        }
        for o in &r.open {
            writeln!(out, "    open: {o:?}")?;
        }
    }
    Ok(())
}

fn write_providers(out: &mut String, snap: &Snapshot) -> std::fmt::Result {
    writeln!(out, "providers:")?;
    for p in &snap.providers {
        writeln!(
            out,
            "  {}: {:?}, credentials {:?}, upstream {}://{}{}, quarantine {}s, cooldown {}s, affinity {}",
            p.name,
            p.kind,
            p.credentials,
            if p.upstream.tls { "https" } else { "http" },
            p.upstream.authority,
            p.upstream.base_path,
            p.quarantine.as_secs(),
            p.cooldown.as_secs(),
            p.affinity,
        )?;
        if !p.intercept_hosts.is_empty() {
            writeln!(out, "    intercepts {:?}", p.intercept_hosts)?;
        }
        for k in &p.keys {
            writeln!(
                out,
                "    key {}: weight {}, {}, secret {}",
                k.id,
                k.weight,
                if k.enabled { "enabled" } else { "disabled" },
                k.hint
            )?;
        }
    }
    Ok(())
}

/// Issuers and tokens.
fn write_credentials(out: &mut String, snap: &Snapshot) -> std::fmt::Result {
    writeln!(out, "issuers:")?;
    for i in &snap.jwt.issuers {
        let algorithms: Vec<String> = i
            .validations
            .iter()
            .map(|(a, _)| format!("{a:?}"))
            .collect();
        writeln!(
            out,
            "  {}: iss {}, principal claim {}, algorithms {algorithms:?}",
            i.name, i.issuer, i.principal_claim
        )?;
    }
    let mut tokens: Vec<_> = snap.tokens.values().collect();
    tokens.sort_by(|a, b| a.id.cmp(&b.id));
    writeln!(out, "tokens:")?;
    for t in tokens {
        writeln!(
            out,
            "  {}: principal {}, scopes {:?}, expires {:?}, revoked {}",
            t.id,
            t.principal.key,
            t.principal.scopes,
            t.expires_at,
            t.revoked_at.is_some()
        )?;
    }
    Ok(())
}

/// The forward proxy, the other resources by name, the public URL and the warnings.
fn write_rest(out: &mut String, snap: &Snapshot) -> std::fmt::Result {
    let f = &snap.forward;
    let mut intercepted: Vec<_> = f.intercept.keys().collect();
    intercepted.sort();
    writeln!(
        out,
        "forward: {:?}, auth {:?}, ports {:?}, allow {:?}, deny {:?}, allow_cidrs {:?}, intercepted {intercepted:?}",
        f.tunnel,
        f.access.auth,
        f.ports,
        f.allow_hosts,
        f.deny_hosts,
        f.allow_cidrs
    )?;
    let mut names = |what: &str, mut v: Vec<&String>| {
        v.sort();
        writeln!(out, "{what}: {v:?}")
    };
    names("oauth_providers", snap.oauth_providers.keys().collect())?;
    names("mcp_servers", snap.mcp_servers.keys().collect())?;
    names("owners", snap.owners.keys().collect())?;
    writeln!(out, "public_base_url: {}", snap.public_base_url)?;
    writeln!(out, "warnings:")?;
    for w in &snap.warnings {
        writeln!(out, "  {w}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_passwords_are_left_out() {
        let text = r#"limits_backend: Some("redis://prod:s3cret@redis:6379/0"), x: "https://h/p", y: "rediss://:only@h""#;
        let out = super::without_url_passwords(text);
        assert!(!out.contains("s3cret") && !out.contains("only@"), "{out}");
        assert!(
            out.contains("redis://prod:…@redis:6379/0") && out.contains("https://h/p"),
            "{out}"
        );
    }
}
