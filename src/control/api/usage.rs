//! `GET /v1/usage`: requests, tokens and spend over time per provider, model or principal,
//! read from this process's audit records (the console's charts).

use super::*;
use crate::audit::report::{self, GroupBy};

#[derive(Debug, serde::Deserialize)]
pub(super) struct UsageQuery {
    #[serde(default)]
    by: Option<String>,
    /// How far back, in hours (default 24, at most 2,160: 90 days).
    #[serde(default)]
    hours: Option<u64>,
    /// Bucket length in seconds (default 3600; 60 to 86,400; at most 1,000 buckets).
    #[serde(default)]
    bucket: Option<u64>,
}

pub(super) async fn usage(
    State(cp): Cp,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<UsageQuery>,
) -> ApiResult<Json<Value>> {
    cp.authorize(&headers, Permission::UsageRead)?;
    let by = match q.by.as_deref().unwrap_or("provider") {
        "provider" => GroupBy::Provider,
        "model" => GroupBy::Model,
        "principal" => GroupBy::Principal,
        _ => return Err(ApiError::bad("by", "one of provider, model, principal")),
    };
    let hours = q.hours.unwrap_or(24);
    if !(1..=2160).contains(&hours) {
        return Err(ApiError::bad("hours", "1 to 2160"));
    }
    let bucket = q.bucket.unwrap_or(3600);
    if !(60..=86_400).contains(&bucket) || hours * 3600 / bucket > 1000 {
        return Err(ApiError::bad(
            "bucket",
            "60 to 86400 seconds, and at most 1000 buckets",
        ));
    }
    let buckets = (hours * 3600).div_ceil(bucket);
    let now = crate::clock::unix_now();
    // Buckets end at the next bucket boundary after now.
    let start = (now / bucket + 1) * bucket - buckets * bucket;
    let snap = cp.config.snapshot();
    let file = cp.audit_file.clone();
    let series = tokio::task::spawn_blocking(move || {
        let kinds: std::collections::HashMap<&str, crate::config::ProviderKind> = snap
            .providers
            .iter()
            .map(|p| (p.name.as_str(), p.kind))
            .collect();
        let price = |provider: &str, model: Option<&str>, u: &crate::audit::Usage| {
            let kind = kinds
                .get(provider)
                .copied()
                .unwrap_or(crate::config::ProviderKind::OpenAi);
            snap.budgets.prices.cost_micro_usd(provider, kind, model, u)
        };
        let files = report::files(&file);
        report::series(&files, by, (start, bucket, buckets as usize), &price)
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "start": start, "bucket_seconds": bucket, "buckets": buckets, "series": series,
    })))
}
