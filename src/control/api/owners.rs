//! Owners through the admin API.

use super::docs::Doc;
use super::*;

impl Doc for wire::Owner {
    const PATH: &'static str = "/v1/owners";
    const ONE: &'static str = "an owner";
    const MANY: &'static str = "owners";
    const SCHEMA: &'static str = "Owner";
    /// Named permissions must exist (a typo would grant nothing, silently).
    async fn prepare(doc: Self, _cp: &ControlPlane) -> ApiResult<Self> {
        for (i, p) in doc.permissions.iter().enumerate() {
            if !rbac::known(p) {
                return Err(ApiError::bad(
                    &format!("permissions[{i}]"),
                    format!("`{p}` is not a permission (see x-permission in /v1/openapi.json)"),
                ));
            }
        }
        Ok(doc)
    }
}
