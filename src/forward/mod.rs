//! What the forward proxy decides and signs with, below the configuration: the destination
//! policy (`policy`) and the interception CA (`ca`). The CONNECT server itself is
//! `proxy::forward`.

pub mod ca;
pub mod policy;
