//! Tokens: created (plaintext once), listed, revoked and rotated with a grace period.

use super::*;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::control) struct TokenCreate {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// `30d`, `12h`, …
    #[serde(default)]
    #[schema(example = "30d")]
    expires_in: Option<String>,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(in crate::control) struct TokenRotate {
    /// How long the old token keeps working (`1h`; default 0: at once).
    #[serde(default)]
    #[schema(example = "1h")]
    grace: Option<String>,
}

/// Longest grace period a rotated token keeps working.
const MAX_GRACE: Duration = Duration::from_secs(30 * 86_400);

/// A duration from the caller, refused past `max` (no date arithmetic on unchecked input).
fn duration(field: &str, text: &str, max: Duration) -> ApiResult<Duration> {
    let d = humantime::parse_duration(text).map_err(|e| {
        ApiError::bad(
            field,
            format!("`{text}` is not a duration like 30d or 12h: {e}"),
        )
    })?;
    if d > max {
        return Err(ApiError::bad(
            field,
            format!(
                "`{text}` is longer than the most allowed ({})",
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(d)
}

/// `unix_now() + d`, checked.
fn from_now(field: &str, d: Duration) -> ApiResult<u64> {
    unix_now()
        .checked_add(d.as_secs())
        .ok_or_else(|| ApiError::bad(field, "too far in the future"))
}

impl ControlPlane {
    /// Tokens of an owner that holds an admin-API role (admin, operator, viewer, dataplane, or
    /// any later one) are created, rotated and revoked by admins only: anything less could mint
    /// itself a stronger role or lock an admin out. Operators manage role-less owners' tokens.
    /// A new token's `owner` must be declared (in the file or the store); an existing token
    /// whose owner was deleted since can still be revoked or rotated.
    async fn may_manage_tokens_of(
        &self,
        caller: &Caller,
        owner: Option<&str>,
        creating: bool,
    ) -> ApiResult<()> {
        let Some(owner) = owner else { return Ok(()) };
        // The store is the authority for its owners (the served snapshot may lag a replica's
        // write); owners declared in the config file are in the snapshot.
        let privileged = match self.store.get(state::OWNER, owner).await? {
            Some(r) => Some(
                serde_json::from_value::<wire::Owner>(r.body)
                    .map_err(ApiError::internal)?
                    .privileged(),
            ),
            None => self
                .config
                .snapshot()
                .owners
                .get(owner)
                .map(|o| o.privileged()),
        };
        match privileged {
            None if creating => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_owner",
                format!("no owner named `{owner}`: create it first (POST /v1/owners)"),
            )
            .field("owner")),
            Some(true) if caller.role != Some(Role::Admin) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("owner `{owner}` holds an admin-API role or permissions: only admins manage its tokens"),
            )),
            _ => Ok(()),
        }
    }
}

/// Whether a token minted (or rotated, from one that could: `before`) by `caller` may present
/// its owner's connected accounts upstream: only an admin mints such a credential, and each
/// one is audited. A token without an owner is its own principal.
fn acts_as_owner(caller: &Caller, record: &wire::Token, before: bool) -> bool {
    let Some(owner) = &record.owner else {
        return true;
    };
    let admin = caller.role == Some(Role::Admin);
    if admin && before {
        log::info!(
            "admin API: {} minted token {} that acts as owner `{owner}` upstream",
            caller.principal,
            record.id
        );
    }
    admin && before
}

/// Stores a new token record.
fn create_op(record: &wire::Token) -> ApiResult<Op> {
    Ok(Op::Create {
        kind: state::TOKEN.into(),
        name: record.id.clone(),
        body: to_value(record)?,
    })
}

fn new_token(
    name: Option<String>,
    owner: Option<String>,
    scopes: Vec<String>,
    expires_at: Option<String>,
) -> ApiResult<(String, wire::Token)> {
    wire::Token::generate(name, owner, scopes, expires_at).map_err(ApiError::internal)
}

pub(super) async fn list_tokens(State(cp): Cp, headers: HeaderMap) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::TokenList)?;
    let used = cp.store.tokens_last_used().await?;
    let live = cp.config.usage.snapshot();
    let mut items = Vec::new();
    for r in cp.store.list(state::TOKEN).await? {
        let t: wire::Token = serde_json::from_value(r.body).map_err(ApiError::internal)?;
        let last = used.get(&t.id).copied().max(live.get(&t.id).copied());
        items.push(json!({
            "id": t.id, "name": t.name, "owner": t.owner, "scopes": t.scopes,
            "expires_at": t.expires_at, "revoked_at": t.revoked_at,
            "created_at": rfc3339(r.created_at.max(0) as u64),
            "last_used_at": last.filter(|l| *l > 0).map(rfc3339),
        }));
    }
    Ok(Json(json!({ "items": items })))
}

pub(super) async fn create_token(
    State(cp): Cp,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = cp.authorize(&headers, Permission::TokenCreate)?;
    let req: TokenCreate = parse(&body)?;
    cp.may_manage_tokens_of(&caller, req.owner.as_deref(), true)
        .await?;
    let expires_at = match &req.expires_in {
        Some(t) => {
            let d = duration("expires_in", t, crate::config::token::wire::MAX_LIFETIME)?;
            let at = wire::Token::expiry_after(d);
            Some(at.ok_or_else(|| ApiError::bad("expires_in", "too far in the future"))?)
        }
        None => None,
    };
    let (token, mut record) = new_token(req.name, req.owner, req.scopes, expires_at)?;
    record.owner_id = cp.owner_id(record.owner.as_deref()).await?;
    record.grants = acts_as_owner(&caller, &record, true);
    let revision = cp.commit(vec![create_op(&record)?]).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"revision": revision, "token": token, "id": record.id, "expires_at": record.expires_at,
            "note": "the token is shown once: store it now"}),
        ),
    ))
}

impl ControlPlane {
    /// The id the control plane gave an owner it stores (owners declared in the file have none).
    async fn owner_id(&self, owner: Option<&str>) -> ApiResult<Option<String>> {
        let Some(owner) = owner else {
            return Ok(None);
        };
        Ok(self
            .store
            .get(state::OWNER, owner)
            .await?
            .and_then(|r| serde_json::from_value::<wire::Owner>(r.body).ok())
            .and_then(|o| o.id))
    }

    async fn stored_token(&self, id: &str) -> ApiResult<wire::Token> {
        let r = self.store.get(state::TOKEN, id).await?.ok_or_else(|| {
            ApiError::from(StoreError::NotFound {
                kind: state::TOKEN.into(),
                name: id.into(),
            })
        })?;
        serde_json::from_value(r.body).map_err(ApiError::internal)
    }
}

pub(super) async fn revoke_token(
    State(cp): Cp,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let caller = cp.authorize(&headers, Permission::TokenRevoke)?;
    let mut t = cp.stored_token(&id).await?;
    cp.may_manage_tokens_of(&caller, t.owner.as_deref(), false)
        .await?;
    if t.revoked_at.is_none() {
        t.revoked_at = Some(rfc3339(unix_now()));
    }
    let revision = cp
        .commit(vec![Op::Update {
            kind: state::TOKEN.into(),
            name: id.clone(),
            body: to_value(&t)?,
        }])
        .await?;
    Ok(Json(
        json!({"revision": revision, "id": id, "revoked_at": t.revoked_at}),
    ))
}

pub(super) async fn rotate_token(
    State(cp): Cp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = cp.authorize(&headers, Permission::TokenRotate)?;
    let req: TokenRotate = if body.is_empty() {
        TokenRotate::default()
    } else {
        parse(&body)?
    };
    let grace = match &req.grace {
        Some(g) => duration("grace", g, MAX_GRACE)?,
        None => Duration::ZERO,
    };
    let mut old = cp.stored_token(&id).await?;
    cp.may_manage_tokens_of(&caller, old.owner.as_deref(), false)
        .await?;
    let (token, mut record) = new_token(
        old.name.clone(),
        old.owner.clone(),
        old.scopes.clone(),
        old.expires_at.clone(),
    )?;
    record.owner_id = match &old.owner_id {
        Some(uid) => Some(uid.clone()),
        None => cp.owner_id(old.owner.as_deref()).await?,
    };
    record.grants = acts_as_owner(&caller, &record, old.grants);
    let until = rfc3339(from_now("grace", grace)?);
    old.expires_at = Some(match &old.expires_at {
        Some(e) if e < &until => e.clone(),
        _ => until,
    });
    let revision = cp
        .commit(vec![
            Op::Update {
                kind: state::TOKEN.into(),
                name: id.clone(),
                body: to_value(&old)?,
            },
            create_op(&record)?,
        ])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"revision": revision, "token": token, "id": record.id, "replaces": id,
            "old_expires_at": old.expires_at, "note": "the token is shown once: store it now"}),
        ),
    ))
}
