//! An MCP server's per-tool policy: which tools, resources and prompts each principal may see
//! (`tools/list`, `resources/list`, `prompts/list` answers are filtered) and use (`tools/call`,
//! `resources/read`, `prompts/get` and the like are refused).
//!
//! Rules apply to everyone, or to principals holding a scope, of an owner, or matching a
//! principal pattern (all the selectors a rule names). For each kind (tools, resources,
//! prompts): when no rule allows anything of that kind, all of it is allowed; otherwise an item
//! is allowed when a rule that applies allows it. Either way, a rule that applies and denies it
//! wins. Patterns are globs: `*` any characters, `?` one.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use wildmatch::WildMatch;

use crate::auth::Principal;

/// Most rules one server's policy may hold (the rules applying to a principal are a bit set).
pub const MAX_RULES: usize = 64;
/// Most patterns one list may hold.
const MAX_PATTERNS: usize = 256;

/// One rule as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireRule {
    /// For principals holding this scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// For the principal of this owner's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// For principals as audit records name them (`jwt:corp:alice`, `cert:spiffe://…`); a glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Lists::is_empty")]
    pub allow: Lists,
    #[serde(default, skip_serializing_if = "Lists::is_empty")]
    pub deny: Lists,
}

/// Globs per kind: tool names, resource URIs (and URI templates), prompt names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<String>,
}

impl Lists {
    fn is_empty(&self) -> bool {
        self.tools.is_empty() && self.resources.is_empty() && self.prompts.is_empty()
    }

    fn of(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Resource => &self.resources,
            Kind::Prompt => &self.prompts,
        }
    }
}

/// What a policy decides about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Resource,
    Prompt,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Tool, Kind::Resource, Kind::Prompt];

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Resource => "resource",
            Kind::Prompt => "prompt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug)]
struct Rule {
    scope: Option<String>,
    owner: Option<String>,
    principal: Option<WildMatch>,
    allow: [Vec<WildMatch>; 3],
    deny: [Vec<WildMatch>; 3],
}

impl Rule {
    fn applies(&self, p: &Principal) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|s| p.scopes.iter().any(|h| h == s))
            && self
                .owner
                .as_ref()
                .is_none_or(|o| p.owner_name() == Some(o.as_str()))
            && self.principal.as_ref().is_none_or(|m| m.matches(&p.key))
    }
}

/// A server's policy, built.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    /// Per kind: some rule allows something of it (so what no rule allows is hidden).
    restricted: [bool; 3],
}

impl Policy {
    /// Builds `rules` (at `{at}[i]` in errors); `None` when there are none.
    pub fn build(
        rules: &[WireRule],
        at: &str,
        bad: &mut impl FnMut(String, String),
    ) -> Option<Arc<Policy>> {
        if rules.is_empty() {
            return None;
        }
        if rules.len() > MAX_RULES {
            bad(
                at.to_owned(),
                format!("at most {MAX_RULES} rules ({} given)", rules.len()),
            );
            return None;
        }
        let mut built = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let here = format!("{at}[{i}]");
            if r.allow.is_empty() && r.deny.is_empty() {
                bad(here.clone(), "a rule allows or denies something".into());
            }
            for (field, value) in [
                ("scope", &r.scope),
                ("owner", &r.owner),
                ("principal", &r.principal),
            ] {
                if value
                    .as_ref()
                    .is_some_and(|v| v.is_empty() || v.len() > 1024)
                {
                    bad(format!("{here}.{field}"), "1 to 1024 characters".into());
                }
            }
            let mut globs = |lists: &Lists, which: &str| {
                Kind::ALL.map(|k| {
                    let list = lists.of(k);
                    let field = format!("{here}.{which}.{}s", k.noun());
                    if list.len() > MAX_PATTERNS {
                        bad(field.clone(), format!("at most {MAX_PATTERNS} patterns"));
                    }
                    if list.iter().any(|p| p.is_empty() || p.len() > 1024) {
                        bad(field, "patterns are 1 to 1024 characters".into());
                    }
                    list.iter().map(|p| WildMatch::new(p)).collect()
                })
            };
            let allow = globs(&r.allow, "allow");
            let deny = globs(&r.deny, "deny");
            built.push(Rule {
                scope: r.scope.clone(),
                owner: r.owner.clone(),
                principal: r.principal.as_deref().map(WildMatch::new),
                allow,
                deny,
            });
        }
        let restricted = Kind::ALL.map(|k| rules.iter().any(|r| !r.allow.of(k).is_empty()));
        Some(Arc::new(Policy {
            rules: built,
            restricted,
        }))
    }

    /// The rules that apply to `principal`.
    pub fn applied(self: &Arc<Self>, principal: &Principal) -> Applied {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.applies(principal))
            .fold(0u64, |set, (i, _)| set | (1 << i));
        // A kind is governed by an allow list for it, or a deny of it that applies.
        let governs = Kind::ALL.map(|k| {
            let k = k.index();
            self.restricted[k]
                || self
                    .rules
                    .iter()
                    .enumerate()
                    .any(|(i, r)| rules & (1 << i) != 0 && !r.deny[k].is_empty())
        });
        Applied {
            policy: self.clone(),
            rules,
            governs,
        }
    }
}

/// A policy as it applies to one principal.
#[derive(Debug, Clone)]
pub struct Applied {
    policy: Arc<Policy>,
    rules: u64,
    /// Per kind: the policy decides anything about it for this principal.
    governs: [bool; 3],
}

impl Applied {
    /// Whether this principal may see and use `name` (a tool or prompt name, a resource URI).
    /// A resource URI is matched as written: one that is not in its canonical form (see
    /// [`canonical_uri`]) is never permitted where the policy governs resources.
    pub fn permits(&self, kind: Kind, name: &str) -> bool {
        if kind == Kind::Resource && self.governs[kind.index()] && !canonical_uri(name) {
            return false;
        }
        let k = kind.index();
        let mut allowed = !self.policy.restricted[k];
        for (i, rule) in self.policy.rules.iter().enumerate() {
            if self.rules & (1 << i) == 0 {
                continue;
            }
            if rule.deny[k].iter().any(|m| m.matches(name)) {
                return false;
            }
            allowed = allowed || rule.allow[k].iter().any(|m| m.matches(name));
        }
        allowed
    }
}

/// A URI an upstream reads as written: a lowercase scheme, no dot segments (`.`/`..`, also
/// percent-encoded), no percent-encoded unreserved characters, no backslash, whitespace or
/// control characters (RFC 3986 §6.2.2). Servers normalise URIs before they look a resource
/// up, so `demo://r/text/../static/x` must not pass for a match of `demo://r/text/*`.
pub fn canonical_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if !scheme_ok
        || uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return false;
    }
    let bytes = rest.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(c) if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => return false,
                Some(_) => {}
                None => return false,
            }
        }
    }
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{CredentialKind, Identity};

    fn rules(yaml: &str) -> Arc<Policy> {
        let wire: Vec<WireRule> = serde_yaml::from_str(yaml).unwrap();
        let mut errors = Vec::new();
        let p = Policy::build(&wire, "policy", &mut |f, m| {
            errors.push(format!("{f}: {m}"))
        });
        assert!(errors.is_empty(), "{errors:?}");
        p.unwrap()
    }

    fn person(name: &str, scopes: &[&str]) -> Principal {
        let mut p = Principal::new(
            CredentialKind::Jwt,
            Identity::Jwt {
                issuer: "corp".into(),
                subject: name.into(),
            },
            name.into(),
        );
        p.scopes = scopes.iter().map(|s| s.to_string()).collect();
        p
    }

    #[test]
    fn allow_lists_hide_the_rest_and_denials_win() {
        let p = rules(
            r#"
- allow: { tools: ["get_*", "list_*"] }
- { scope: write, allow: { tools: ["create_*"] } }
- { principal: "jwt:corp:mallory", deny: { tools: ["*"] } }
"#,
        );
        let reader = p.applied(&person("alice", &[]));
        assert!(reader.permits(Kind::Tool, "get_issue"));
        assert!(!reader.permits(Kind::Tool, "create_issue"));
        assert!(!reader.permits(Kind::Tool, "delete_repo"));
        // No rule allows resources or prompts: those stay open.
        assert!(reader.permits(Kind::Resource, "file:///etc/motd"));
        assert!(reader.permits(Kind::Prompt, "summarise"));
        let writer = p.applied(&person("bob", &["write"]));
        assert!(writer.permits(Kind::Tool, "create_issue"));
        assert!(writer.permits(Kind::Tool, "get_issue"));
        let mallory = p.applied(&person("mallory", &["write"]));
        assert!(!mallory.permits(Kind::Tool, "get_issue"));
        assert!(!mallory.permits(Kind::Tool, "create_issue"));
        // A glob matches the whole name, not a part of it.
        assert!(!reader.permits(Kind::Tool, "xget_issue"));
    }

    #[test]
    fn resource_uris_match_only_in_their_canonical_form() {
        let p = rules(r#"[{ allow: { resources: ["demo://resource/text/*"] } }]"#);
        let a = p.applied(&person("alice", &[]));
        assert!(a.permits(Kind::Resource, "demo://resource/text/1"));
        for sneaky in [
            "demo://resource/text/../../static/doc.md",
            "demo://resource/text/%2e%2e/static",
            "demo://resource/text/./1",
            "DEMO://resource/text/1",
            "demo://resource/text/%31",
            "demo://resource/text/1\t",
            " demo://resource/text/1",
            "demo://resource/text/1\\..",
            "demo://resource/text/%zz",
            "no-scheme",
        ] {
            assert!(!a.permits(Kind::Resource, sneaky), "{sneaky:?}");
        }
        // Where no rule governs resources, URIs are not judged.
        let tools_only = rules(r#"[{ allow: { tools: ["x"] } }]"#);
        let b = tools_only.applied(&person("bob", &[]));
        assert!(b.permits(Kind::Resource, "DEMO://a/../b"));
    }

    #[test]
    fn empty_rules_and_too_many_are_refused() {
        let mut errors = Vec::new();
        let wire = vec![WireRule::default()];
        Policy::build(&wire, "p", &mut |f, m| errors.push(format!("{f}: {m}")));
        assert_eq!(errors, ["p[0]: a rule allows or denies something"]);
        let mut errors = Vec::new();
        let long = vec![WireRule {
            principal: Some("x".repeat(1025)),
            deny: Lists {
                tools: vec!["*".into()],
                ..Lists::default()
            },
            ..WireRule::default()
        }];
        Policy::build(&long, "p", &mut |f, m| errors.push(format!("{f}: {m}")));
        assert_eq!(errors, ["p[0].principal: 1 to 1024 characters"]);
        let many = vec![
            WireRule {
                allow: Lists {
                    tools: vec!["*".into()],
                    ..Lists::default()
                },
                ..WireRule::default()
            };
            MAX_RULES + 1
        ];
        let mut errors = Vec::new();
        assert!(Policy::build(&many, "p", &mut |f, m| errors.push(format!("{f}: {m}"))).is_none());
        assert_eq!(errors.len(), 1);
    }
}
