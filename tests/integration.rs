//! Integration tests: real `sluice` processes, mock upstreams and clients on 127.0.0.1.

#[path = "integration/common.rs"]
mod common;

#[path = "integration/accounting.rs"]
mod accounting;
#[path = "integration/admission.rs"]
mod admission;
#[path = "integration/agents.rs"]
mod agents;
#[path = "integration/azure.rs"]
mod azure;
#[path = "integration/conf_files.rs"]
mod conf_files;
#[path = "integration/console.rs"]
mod console;
#[path = "integration/control.rs"]
mod control;
#[path = "integration/control_nodes.rs"]
mod control_nodes;
#[path = "integration/deploy.rs"]
mod deploy;
#[path = "integration/edge.rs"]
mod edge;
#[path = "integration/fallback.rs"]
mod fallback;
#[path = "integration/forward.rs"]
mod forward;
#[path = "integration/gemini.rs"]
mod gemini;
#[path = "integration/golden.rs"]
mod golden;
#[path = "integration/https_upstream.rs"]
mod https_upstream;
#[path = "integration/jwt.rs"]
mod jwt;
#[path = "integration/limits.rs"]
mod limits;
#[path = "integration/mcp.rs"]
mod mcp;
#[path = "integration/mcp_groups.rs"]
mod mcp_groups;
#[path = "integration/oauth.rs"]
mod oauth;
#[path = "integration/observability.rs"]
mod observability;
#[path = "integration/pingora_patches.rs"]
mod pingora_patches;
#[path = "integration/reload.rs"]
mod reload;
#[path = "integration/reverse.rs"]
mod reverse;
#[path = "integration/sdk.rs"]
mod sdk;
#[path = "integration/security.rs"]
mod security;
#[path = "integration/signin.rs"]
mod signin;
#[path = "integration/tokens.rs"]
mod tokens;
#[path = "integration/vault.rs"]
mod vault;
