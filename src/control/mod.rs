//! The control plane: a store of dynamic resources (SQLite embedded, PostgreSQL for replicas),
//! secrets sealed under a master key, the admin REST API with roles, and the revision feed data
//! planes follow.

pub mod api;
pub mod console;
pub mod crypto;
pub mod issuer;
pub mod offpath;
pub mod openapi;
pub mod rbac;
pub mod service;
pub mod state;
pub mod store;
pub mod vault;
