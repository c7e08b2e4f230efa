//! A budget and a model price as written: the types are the request path's (`budgets::spec`),
//! the budget registered here as a kind of the file and the store.

pub use crate::budgets::spec::{Budget, Period, Price};

use crate::config::kind::Kind;
use crate::config::wire;

impl Kind for Budget {
    const KIND: &'static str = "budget";
    const LIST: &'static str = "budgets";
    fn name(&self) -> String {
        self.name.clone()
    }
    fn list(config: &wire::Config) -> &Vec<Self> {
        &config.budgets
    }
    fn list_mut(config: &mut wire::Config) -> &mut Vec<Self> {
        &mut config.budgets
    }
}
