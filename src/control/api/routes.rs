//! Routes through the admin API (named by prefix, without its leading slash in URLs).

use super::docs::Doc;
use super::*;

impl Doc for wire::Route {
    const PATH: &'static str = "/v1/routes";
    const ITEM: &'static str = "{*prefix}";
    const ITEM_NOTE: &'static str = " (prefix without its leading slash)";
    const ONE: &'static str = "a route";
    const MANY: &'static str = "routes";
    const SCHEMA: &'static str = "Route";
    fn url_name(raw: &str) -> String {
        format!("/{}", raw.trim_start_matches('/'))
    }
}
