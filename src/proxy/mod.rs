//! The data plane: the only module that touches Pingora's `Session`.

pub mod accounting;
pub mod conn_caps;
pub mod ctx;
pub mod fallback;
pub mod feedback;
pub mod forward;
pub mod issuer;
pub mod mcp;
pub mod mcp_caps;
pub mod mcp_group;
pub mod mcp_policy;
pub mod mcp_stream;
pub mod oauth;
pub mod own_loop;
pub mod pool;
pub mod resource_metadata;
pub mod respond;
pub mod reverse;
pub mod signin;
pub mod steps;

pub use ctx::RequestCtx;
pub use reverse::Gateway;
