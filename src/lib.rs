//! Sluice: an AI gateway edge proxy on Pingora.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod balance;
pub mod budgets;
pub mod cli;
pub mod client_address;
pub mod clock;
pub mod config;
pub mod control;
pub mod edge;
pub mod error;
pub mod forward;
#[cfg(test)]
mod layers;
pub mod limits;
pub mod metrics;
pub mod mock;
pub mod private;
pub mod proxy;
pub mod secrets;
pub mod server;
pub mod tls;
pub mod trace;
pub mod translate;
pub mod upstream;
pub mod vault;
