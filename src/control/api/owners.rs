//! Owners through the admin API.

use super::docs::Doc;
use super::*;
use crate::config::kind::Kind;

impl Doc for wire::Owner {
    const PATH: &'static str = "/v1/owners";
    const ONE: &'static str = "an owner";
    const MANY: &'static str = "owners";
    const SCHEMA: &'static str = "Owner";
    /// A deleted owner's grants go with it (its principal is never seen again: a new owner of
    /// the same name gets a new id), and its stored tokens are revoked with it, so none (not
    /// even one minted before tokens carried their owner's id) acts for a later owner of the
    /// same name.
    async fn companions(
        name: &str,
        new: Option<&Self>,
        cp: &ControlPlane,
    ) -> ApiResult<(Vec<Op>, Value)> {
        if new.is_some() {
            return Ok((Vec::new(), Value::Null));
        }
        let stored = cp
            .store
            .get(Self::KIND, name)
            .await?
            .and_then(|r| serde_json::from_value::<Self>(r.body).ok());
        if let Some(owner) = stored {
            let key = crate::auth::Identity::Owner {
                name: owner.name,
                uid: owner.id,
            }
            .render();
            for grant in cp.store.grants(Some(&key)).await? {
                cp.store.delete_grant(&key, &grant.provider).await?;
            }
        }
        let now = crate::clock::rfc3339(unix_now());
        let mut ops = Vec::new();
        for r in cp.store.list(state::TOKEN).await? {
            let Ok(mut t) = serde_json::from_value::<wire::Token>(r.body) else {
                continue;
            };
            if t.owner.as_deref() == Some(name) && t.revoked_at.is_none() {
                t.revoked_at = Some(now.clone());
                ops.push(Op::Update {
                    kind: state::TOKEN.into(),
                    name: t.id.clone(),
                    body: serde_json::to_value(&t).map_err(ApiError::internal)?,
                });
            }
        }
        Ok((ops, Value::Null))
    }
    /// Names are usable in principal renderings (`owner:{name}#{id}`): checked before the
    /// rest of the configuration so the answer names the field.
    fn check_name(name: &str) -> ApiResult<()> {
        if crate::auth::valid_principal_name(name) {
            return Ok(());
        }
        Err(ApiError::bad(
            "name",
            format!("`{name}` is not an owner name: 1 to 128 letters, digits and `-_.@+`"),
        ))
    }
    /// Named permissions must exist (a typo would grant nothing, silently). The owner's id is
    /// the stored one's, or new: never the request's, so nobody can take over the grants of an
    /// owner deleted before.
    async fn prepare(mut doc: Self, cp: &ControlPlane) -> ApiResult<Self> {
        let stored = cp
            .store
            .get(Self::KIND, &doc.name)
            .await?
            .and_then(|r| serde_json::from_value::<Self>(r.body).ok())
            .and_then(|o| o.id);
        doc.id = match stored {
            Some(id) => Some(id),
            None => Some(crate::auth::opaque::random_base62(12).map_err(ApiError::internal)?),
        };
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
