//! Grants and pending links/states as stored: JSON sealed under the master key, the
//! associated data naming whose and what they are (a row moved to another principal does not
//! open).

use serde::{Deserialize, Serialize};

use super::VaultWorker;
use crate::vault::{Failure, Who};

/// A grant as sealed in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Grant {
    pub(super) access_token: String,
    #[serde(default)]
    pub(super) refresh_token: Option<String>,
    #[serde(default)]
    pub(super) expires_at: Option<u64>,
    pub(super) scopes: Vec<String>,
    pub(super) connected_at: u64,
}

/// A link or a state, as sealed in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Pending {
    Link {
        who: Who,
        provider: String,
    },
    State {
        who: Who,
        provider: String,
        verifier: Option<String>,
        scopes: Vec<String>,
        /// SHA-256 (hex) of the cookie the confirming browser holds.
        #[serde(default)]
        browser: Option<String>,
    },
    /// An MCP client's authorization request waiting for sign-in and consent (the ticket).
    Authorization(super::signin::AuthRequest),
    /// A sign-in at the company IdP for a pending authorization (the `state` sent there).
    SignIn {
        /// Where the browser goes once signed in.
        then: super::signin::Then,
        nonce: String,
        verifier: String,
        /// SHA-256 (hex) of the cookie the browser that went to the IdP holds.
        browser: String,
        /// The scopes asked of the IdP.
        #[serde(default)]
        asked: Vec<String>,
    },
    /// A signed-in browser (the session cookie).
    Session(super::signin::Person),
    /// An authorization code, until exchanged.
    Code {
        request: super::signin::AuthRequest,
        person: super::signin::Person,
    },
    /// An exchanged code, kept a while: presented again, the tokens it gave are revoked.
    UsedCode {
        family: String,
        jti: String,
        exp: u64,
    },
    /// The single-use code a console sign-in comes back with, and the SHA-256 (hex) of the
    /// value the console's tab kept.
    ConsoleCode {
        person: super::signin::Person,
        tab: String,
    },
    /// A refresh-token family (`family\0{id}`): the current token's digest and the grant.
    Family(super::user_tokens::Family),
}

impl Pending {
    /// Which presented secrets reach an entry: each kind of secret its own slot.
    pub(super) fn slot(&self) -> &'static str {
        match self {
            Pending::Link { .. } => slot::LINK,
            Pending::State { .. } => slot::STATE,
            Pending::Authorization(_) => slot::TICKET,
            Pending::SignIn { .. } => slot::SIGN_IN,
            Pending::Session(_) => slot::SESSION,
            Pending::Code { .. } | Pending::UsedCode { .. } => slot::CODE,
            Pending::ConsoleCode { .. } => slot::CONSOLE,
            Pending::Family(_) => slot::FAMILY,
        }
    }
}

/// The slots of pending entries.
pub(super) mod slot {
    pub const LINK: &str = "link";
    pub const STATE: &str = "state";
    pub const TICKET: &str = "ticket";
    pub const SIGN_IN: &str = "sign-in";
    pub const SESSION: &str = "session";
    pub const CODE: &str = "code";
    pub const CONSOLE: &str = "console";
    pub const FAMILY: &str = "family";
}

impl VaultWorker {
    pub(super) async fn read_grant(
        &self,
        principal: &str,
        provider: &str,
    ) -> Result<Option<Grant>, Failure> {
        let sealed = self
            .store
            .grant(principal, provider)
            .await
            .map_err(unavailable)?;
        sealed
            .map(|s| self.open_grant(principal, provider, &s))
            .transpose()
    }

    pub(super) fn open_grant(
        &self,
        principal: &str,
        provider: &str,
        sealed: &str,
    ) -> Result<Grant, Failure> {
        let plain = self
            .key
            .open(&grant_aad(principal, provider), sealed)
            .map_err(unavailable)?;
        serde_json::from_str(plain.expose()).map_err(unavailable)
    }

    pub(super) async fn write_grant(
        &self,
        principal: &str,
        provider: &str,
        grant: &Grant,
    ) -> Result<(), Failure> {
        let plain = serde_json::to_string(grant).map_err(unavailable)?;
        let sealed = self
            .key
            .seal(&grant_aad(principal, provider), &plain)
            .map_err(unavailable)?;
        self.store
            .put_grant(principal, provider, &sealed)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn forget_grant(
        &self,
        principal: &str,
        provider: &str,
    ) -> Result<(), Failure> {
        self.store
            .delete_grant(principal, provider)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub(super) async fn put_pending(
        &self,
        secret: &str,
        pending: &Pending,
        expires_at: u64,
    ) -> Result<(), Failure> {
        let id = pending_id(pending.slot(), secret);
        let plain = serde_json::to_string(pending).map_err(unavailable)?;
        let sealed = self
            .key
            .seal(&format!("pending\0{id}"), &plain)
            .map_err(unavailable)?;
        self.store
            .put_pending(&id, &sealed, expires_at)
            .await
            .map_err(unavailable)
    }

    /// The entry of `slot` (see [`Pending::slot`]) under `secret`, removed when `take`: a
    /// secret of one kind presented as another finds nothing (and removes nothing).
    pub(super) async fn take_pending(
        &self,
        secret: &str,
        slot: &str,
        take: bool,
    ) -> Result<Option<Pending>, Failure> {
        if secret.is_empty() || secret.len() > 128 {
            return Ok(None);
        }
        let id = pending_id(slot, secret);
        let Some(sealed) = self.store.pending(&id, take).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let plain = self
            .key
            .open(&format!("pending\0{id}"), &sealed)
            .map_err(unavailable)?;
        Ok(serde_json::from_str(plain.expose()).ok())
    }
}

pub(super) fn grant_aad(principal: &str, provider: &str) -> String {
    format!("grant\0{principal}\0{provider}")
}

/// A pending entry's row id: the digest of its slot and secret (never the secret itself).
pub(super) fn pending_id(slot: &str, secret: &str) -> String {
    super::sha256_hex(&format!("{slot}\0{secret}"))
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> Failure {
    log::warn!("vault: {e}");
    Failure::unavailable("the token vault could not be read or written")
}
