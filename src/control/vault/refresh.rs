//! A user's grant when it is used: refreshed near its expiry, once per grant across every
//! control-plane replica (a lease in the store), and never deleted for an `invalid_grant` that
//! only says another replica rotated it first.

use std::time::Duration;

use super::sealed::{unavailable, Grant};
use super::upstream::CallError;
use super::{missing_scopes, near_expiry, split_scopes, VaultWorker};
use crate::clock::unix_now;
use crate::config::oauth_provider::OAuthProvider;
use crate::vault::{Failure, Who};

/// How long a replica holds a grant's refresh lease: longer than a token call can take.
const REFRESH_LEASE: Duration = Duration::from_secs(30);
/// How often a replica waiting for another's refresh reads the grant again.
const REFRESH_POLL: Duration = Duration::from_millis(50);

impl VaultWorker {
    /// The principal's grant, refreshed when near expiry; otherwise why the user must connect.
    pub(super) async fn usable_grant(
        &self,
        who: &Who,
        p: &OAuthProvider,
    ) -> Result<Grant, Failure> {
        let grant = self.read_grant(&who.key, &p.name).await?;
        let Some(grant) = grant else {
            return Err(self.not_connected(who, p).await);
        };
        let missing = missing_scopes(p, &grant);
        if !missing.is_empty() {
            let (connect_url, _) = self.link(who, p).await?;
            return Err(Failure::Reconsent {
                provider: p.name.clone(),
                missing: missing.join(" "),
                connect_url,
            });
        }
        if !near_expiry(&grant, unix_now()) {
            return Ok(grant);
        }
        // One refresh per grant: the others wait, then read what it stored.
        let flight = {
            let mut flights = self
                .flights
                .lock()
                .map_err(|_| Failure::unavailable("vault lock"))?;
            flights
                .entry(format!("{}\0{}", who.key, p.name))
                .or_default()
                .clone()
        };
        let _turn = flight.lock().await;
        // One refresh across replicas too: the lease's holder refreshes (the grant read again
        // once held); the others wait for the grant it stores. Two replicas refreshing with the
        // same rotating refresh token make the provider revoke both.
        // Provider names have no `:`: the principal key follows unambiguously.
        let lease = format!("grant-refresh:{}:{}", p.name, who.key);
        let waited = std::time::Instant::now();
        loop {
            let grant = match self.read_grant(&who.key, &p.name).await? {
                Some(g) if !near_expiry(&g, unix_now()) => return Ok(g),
                Some(g) => g,
                None => return Err(self.not_connected(who, p).await),
            };
            let ttl = REFRESH_LEASE.as_millis() as u64;
            let held = self
                .store
                .try_lease(&lease, &self.holder, ttl)
                .await
                .map_err(unavailable)?;
            if held {
                let refreshed = match self.read_grant(&who.key, &p.name).await {
                    Ok(Some(g)) if !near_expiry(&g, unix_now()) => Ok(g),
                    Ok(Some(g)) => self.refresh(who, p, g).await,
                    Ok(None) => Err(self.not_connected(who, p).await),
                    Err(e) => Err(e),
                };
                if let Err(e) = self.store.release_lease(&lease, &self.holder).await {
                    log::warn!("vault: refresh lease not released (it ends by itself): {e}");
                }
                return refreshed;
            }
            if waited.elapsed() > REFRESH_LEASE {
                return Err(Failure::unavailable(
                    "another replica is refreshing this grant",
                ));
            }
            drop(grant);
            tokio::time::sleep(REFRESH_POLL).await;
        }
    }

    async fn refresh(&self, who: &Who, p: &OAuthProvider, grant: Grant) -> Result<Grant, Failure> {
        let Some(refresh_token) = grant.refresh_token.clone() else {
            // Expired and nothing to refresh it with.
            if grant.expires_at.is_some_and(|at| at <= unix_now()) {
                self.forget_grant(&who.key, &p.name).await?;
                return Err(self.not_connected(who, p).await);
            }
            return Ok(grant);
        };
        let form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.clone()),
        ];
        match self.call_token_endpoint(p, form).await {
            Ok(answer) => {
                self.event(p, "refresh", "ok");
                let now = unix_now();
                let renewed = Grant {
                    expires_at: answer.expires_in.map(|s| now + s),
                    scopes: answer
                        .scope
                        .as_deref()
                        .map(split_scopes)
                        .unwrap_or_else(|| grant.scopes.clone()),
                    // A provider that does not rotate keeps the old refresh token valid.
                    refresh_token: answer.refresh_token.or(Some(refresh_token)),
                    access_token: answer.access_token,
                    connected_at: grant.connected_at,
                };
                self.write_grant(&who.key, &p.name, &renewed).await?;
                Ok(renewed)
            }
            Err(CallError::OAuth(e, _)) if e == "invalid_grant" => {
                // Another replica may have rotated the refresh token a moment ago (its lease
                // ended, or it predates leases): what it stored is good, nothing is deleted.
                if let Ok(Some(stored)) = self.read_grant(&who.key, &p.name).await {
                    if stored.refresh_token.as_deref() != Some(refresh_token.as_str())
                        && !near_expiry(&stored, unix_now())
                    {
                        self.event(p, "refresh", "rotated_elsewhere");
                        return Ok(stored);
                    }
                }
                self.event(p, "refresh", "invalid_grant");
                self.audit("oauth.refresh", &who.key, &p.name, "invalid_grant");
                self.forget_grant(&who.key, &p.name).await?;
                Err(self.not_connected(who, p).await)
            }
            Err(e) => {
                self.event(p, "refresh", "error");
                self.audit("oauth.refresh", &who.key, &p.name, "error");
                Err(Failure::Upstream {
                    provider: p.name.clone(),
                    error: e.text(),
                })
            }
        }
    }
}
