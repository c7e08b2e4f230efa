//! A limit as written (YAML `limits:` or the admin API): the type is the request path's
//! (`limits::spec`), registered here as a kind of the file and the store.

pub use crate::limits::spec::{Limit, Per};

use crate::config::kind::Kind;
use crate::config::wire;

impl Kind for Limit {
    const KIND: &'static str = "limit";
    const LIST: &'static str = "limits";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.limits
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.limits
    }
}
