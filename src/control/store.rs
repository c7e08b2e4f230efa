//! The control plane's store: every dynamic resource as a JSON document keyed by (kind, name),
//! one global revision bumped in the same transaction as every change, and token last-use
//! times (which are not configuration: they never bump the revision).
//!
//! One implementation over sqlx's `Any` driver serves both backends with the same SQL: SQLite
//! (`sqlite://…`, the embedded default under the data dir) and PostgreSQL (`postgres://…`, for
//! several control-plane replicas). Schema migrations are versioned and applied at start.

use async_trait::async_trait;

pub use crate::config::stored::{Dump, Resource};

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Row;
use std::collections::HashMap;

/// One change; `apply` runs a list of them in one transaction under one new revision.
#[derive(Debug, Clone)]
pub enum Op {
    Create {
        kind: String,
        name: String,
        body: serde_json::Value,
    },
    Update {
        kind: String,
        name: String,
        body: serde_json::Value,
    },
    Delete {
        kind: String,
        name: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} `{name}` already exists")]
    Conflict { kind: String, name: String },
    #[error("{kind} `{name}` does not exist")]
    NotFound { kind: String, name: String },
    #[error("store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store: {0}")]
    Corrupt(String),
}

#[async_trait]
pub trait Store: Send + Sync {
    async fn revision(&self) -> Result<u64, StoreError>;
    /// Applies `ops` atomically and returns the new revision.
    async fn apply(&self, ops: &[Op]) -> Result<u64, StoreError>;
    async fn get(&self, kind: &str, name: &str) -> Result<Option<Resource>, StoreError>;
    async fn list(&self, kind: &str) -> Result<Vec<Resource>, StoreError>;
    /// Every resource and the revision they belong to, read in one transaction.
    async fn dump(&self) -> Result<Dump, StoreError>;
    /// Records token uses (batched by the caller; newest wins).
    async fn touch_tokens(&self, uses: &[(String, u64)]) -> Result<(), StoreError>;
    async fn tokens_last_used(&self) -> Result<HashMap<String, u64>, StoreError>;
    /// Change notifications from every writer sharing the store (PostgreSQL LISTEN/NOTIFY), or
    /// `None` for a backend without them. Notifications can be lost across a reconnect: callers
    /// still poll the revision, less often.
    async fn listen(&self) -> Result<Option<Listener>, StoreError>;
    /// The sealed grant of `principal` at `provider`.
    async fn grant(&self, principal: &str, provider: &str) -> Result<Option<String>, StoreError>;
    /// Creates or replaces a grant.
    async fn put_grant(
        &self,
        principal: &str,
        provider: &str,
        sealed: &str,
    ) -> Result<(), StoreError>;
    /// Removes a grant; whether there was one.
    async fn delete_grant(&self, principal: &str, provider: &str) -> Result<bool, StoreError>;
    /// Every grant (principal, provider, sealed, created, updated), or one principal's.
    async fn grants(&self, principal: Option<&str>) -> Result<Vec<GrantRow>, StoreError>;
    /// Stores a pending link or state until `expires_at` (Unix seconds).
    async fn put_pending(&self, id: &str, sealed: &str, expires_at: u64) -> Result<(), StoreError>;
    /// A pending entry that has not expired; `take` removes it in the same statement, so only
    /// one reader can ever use it.
    async fn pending(&self, id: &str, take: bool) -> Result<Option<String>, StoreError>;
    /// Takes the lease `name` for `holder` for `ttl_ms` if nobody holds it or the holder's
    /// lease has ended: one holder across every replica of the store. Time is the database's,
    /// so replicas' clocks need not agree.
    async fn try_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError>;
    /// Gives the lease back (if `holder` still holds it).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// Stores a newly registered client until `expires_at` (Unix seconds).
    async fn put_client(&self, id: &str, body: &str, expires_at: u64) -> Result<(), StoreError>;
    /// A client that has not expired.
    async fn client(&self, id: &str) -> Result<Option<ClientRow>, StoreError>;
    /// Records a client's use (creating it when it is not stored: a metadata document's) and
    /// keeps it until `expires_at`.
    async fn client_used(&self, id: &str, body: &str, expires_at: u64) -> Result<(), StoreError>;
    /// Every client that has not expired, newest first.
    async fn clients(&self) -> Result<Vec<ClientRow>, StoreError>;
    /// Removes a client; whether there was one.
    async fn delete_client(&self, id: &str) -> Result<bool, StoreError>;
}

/// One client of Sluice's authorization endpoint.
#[derive(Debug, Clone)]
pub struct ClientRow {
    pub id: String,
    pub body: String,
    pub created_at: u64,
    pub last_used_at: Option<u64>,
    pub expires_at: u64,
}

/// One stored grant.
#[derive(Debug, Clone)]
pub struct GrantRow {
    pub principal: String,
    pub provider: String,
    pub sealed: String,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The NOTIFY channel every commit signals on.
const CHANNEL: &str = "sluice_revision";

/// A live LISTEN on the store's change channel.
pub struct Listener(sqlx::postgres::PgListener);

impl Listener {
    /// Waits for the next change (reconnecting after a lost connection).
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        self.0.recv().await?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    url: String,
    pub backend: Backend,
}

/// Versioned schema: entry `i` upgrades version `i` to `i + 1`. Portable SQL only.
const MIGRATIONS: &[&[&str]] = &[
    &[
        "CREATE TABLE sluice_resources (kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (kind, name))",
        "CREATE TABLE sluice_revision (id BIGINT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO sluice_revision (id, value) VALUES (1, 0)",
        "CREATE TABLE sluice_token_usage (id TEXT PRIMARY KEY, last_used_at BIGINT NOT NULL)",
    ],
    // The token vault: grants and the consent flow's pending links and states. Not
    // configuration: they never bump the revision.
    &[
        "CREATE TABLE sluice_grants (principal TEXT NOT NULL, provider TEXT NOT NULL, sealed TEXT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (principal, provider))",
        "CREATE TABLE sluice_oauth_pending (id TEXT PRIMARY KEY, sealed TEXT NOT NULL, expires_at BIGINT NOT NULL)",
    ],
    // Leases: one holder of a named task across replicas (a grant's refresh).
    &["CREATE TABLE sluice_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ms BIGINT NOT NULL)"],
    // Clients of Sluice's authorization endpoint (MCP clients): not configuration either.
    &[
        "CREATE TABLE sluice_oauth_clients (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at BIGINT NOT NULL, last_used_at BIGINT, expires_at BIGINT NOT NULL)",
        // Expired entries are deleted as new ones come: by index, not by scanning the table.
        "CREATE INDEX sluice_oauth_pending_expiry ON sluice_oauth_pending (expires_at)",
        "CREATE INDEX sluice_oauth_clients_expiry ON sluice_oauth_clients (expires_at)",
    ],
];

/// Arbitrary key for PostgreSQL's advisory lock around migrations (replicas start together).
const MIGRATION_LOCK: i64 = 0x51_1ce;

impl SqlStore {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`) and migrates the schema.
    pub async fn open(url: &str) -> anyhow::Result<SqlStore> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            anyhow::bail!("--database must be sqlite://PATH or postgres://…, not `{url}`");
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        // SQLite allows one writer: one connection avoids SQLITE_BUSY instead of retrying it.
        let max = if backend == Backend::Sqlite { 1 } else { 8 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(&url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))?;
        let store = SqlStore { pool, url, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            sqlx::query(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                .execute(&mut *conn)
                .await?;
        }
        let result = async {
            sqlx::query("CREATE TABLE IF NOT EXISTS sluice_schema (version BIGINT NOT NULL)")
                .execute(&mut *conn)
                .await?;
            let row = sqlx::query("SELECT MAX(version) AS v FROM sluice_schema")
                .fetch_one(&mut *conn)
                .await?;
            let current = row.try_get::<Option<i64>, _>("v")?.unwrap_or(0) as usize;
            for (i, statements) in MIGRATIONS.iter().enumerate().skip(current) {
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                for sql in *statements {
                    sqlx::query(sql).execute(&mut *tx).await?;
                }
                sqlx::query(&format!(
                    "INSERT INTO sluice_schema (version) VALUES ({})",
                    i + 1
                ))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                log::info!("store schema migrated to version {}", i + 1);
            }
            Ok::<_, sqlx::Error>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            sqlx::query(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                .execute(&mut *conn)
                .await?;
        }
        result.map_err(|e| anyhow::anyhow!("store migration failed: {e}"))
    }
}

fn row_to_resource(row: &sqlx::any::AnyRow) -> Result<Resource, StoreError> {
    let body: String = row.try_get("body")?;
    Ok(Resource {
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        body: serde_json::from_str(&body)
            .map_err(|e| StoreError::Corrupt(format!("resource body: {e}")))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn now() -> i64 {
    crate::clock::unix_now() as i64
}

fn client_row(r: &sqlx::any::AnyRow) -> Result<ClientRow, StoreError> {
    Ok(ClientRow {
        id: r.try_get("id")?,
        body: r.try_get("body")?,
        created_at: r.try_get::<i64, _>("created_at")? as u64,
        last_used_at: r
            .try_get::<Option<i64>, _>("last_used_at")?
            .map(|t| t as u64),
        expires_at: r.try_get::<i64, _>("expires_at")? as u64,
    })
}

/// `NotFound` when a change touched no row.
fn found(rows: u64, kind: &str, name: &str) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::NotFound {
            kind: kind.to_owned(),
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[async_trait]
impl Store for SqlStore {
    async fn revision(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT value FROM sluice_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("value")? as u64)
    }

    async fn apply(&self, ops: &[Op]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Taking the revision row first serializes writers (PostgreSQL row lock).
        let row = sqlx::query(
            "UPDATE sluice_revision SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        let revision = row.try_get::<i64, _>("value")? as u64;
        let ts = now();
        for op in ops {
            match op {
                Op::Create { kind, name, body } => {
                    let exists = sqlx::query(
                        "SELECT 1 AS one FROM sluice_resources WHERE kind = $1 AND name = $2",
                    )
                    .bind(kind.as_str())
                    .bind(name.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    if exists.is_some() {
                        return Err(StoreError::Conflict {
                            kind: kind.clone(),
                            name: name.clone(),
                        });
                    }
                    sqlx::query("INSERT INTO sluice_resources (kind, name, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)")
                        .bind(kind.as_str())
                        .bind(name.as_str())
                        .bind(body.to_string())
                        .bind(ts)
                        .bind(ts)
                        .execute(&mut *tx)
                        .await?;
                }
                Op::Update { kind, name, body } => {
                    let done = sqlx::query("UPDATE sluice_resources SET body = $1, updated_at = $2 WHERE kind = $3 AND name = $4")
                        .bind(body.to_string())
                        .bind(ts)
                        .bind(kind.as_str())
                        .bind(name.as_str())
                        .execute(&mut *tx)
                        .await?;
                    found(done.rows_affected(), kind, name)?;
                }
                Op::Delete { kind, name } => {
                    let done =
                        sqlx::query("DELETE FROM sluice_resources WHERE kind = $1 AND name = $2")
                            .bind(kind.as_str())
                            .bind(name.as_str())
                            .execute(&mut *tx)
                            .await?;
                    found(done.rows_affected(), kind, name)?;
                }
            }
        }
        if self.backend == Backend::Postgres {
            // Delivered to the listeners at commit, not before.
            sqlx::query(&format!("NOTIFY {CHANNEL}"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(revision)
    }

    async fn get(&self, kind: &str, name: &str) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query("SELECT kind, name, body, created_at, updated_at FROM sluice_resources WHERE kind = $1 AND name = $2")
            .bind(kind)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_to_resource).transpose()
    }

    async fn list(&self, kind: &str) -> Result<Vec<Resource>, StoreError> {
        let rows = sqlx::query("SELECT kind, name, body, created_at, updated_at FROM sluice_resources WHERE kind = $1 ORDER BY name")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(row_to_resource).collect()
    }

    async fn dump(&self) -> Result<Dump, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query("SELECT value FROM sluice_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let revision = row.try_get::<i64, _>("value")? as u64;
        let rows = sqlx::query("SELECT kind, name, body, created_at, updated_at FROM sluice_resources ORDER BY kind, name")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Dump {
            revision,
            resources: rows.iter().map(row_to_resource).collect::<Result<_, _>>()?,
        })
    }

    async fn touch_tokens(&self, uses: &[(String, u64)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (id, at) in uses {
            sqlx::query("INSERT INTO sluice_token_usage (id, last_used_at) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET last_used_at = excluded.last_used_at WHERE excluded.last_used_at > sluice_token_usage.last_used_at")
                .bind(id.as_str())
                .bind(*at as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn tokens_last_used(&self) -> Result<HashMap<String, u64>, StoreError> {
        let rows = sqlx::query("SELECT id, last_used_at FROM sluice_token_usage")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get::<i64, _>("last_used_at")? as u64,
                ))
            })
            .collect()
    }

    async fn listen(&self) -> Result<Option<Listener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(CHANNEL).await?;
        Ok(Some(Listener(listener)))
    }

    async fn grant(&self, principal: &str, provider: &str) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT sealed FROM sluice_grants WHERE principal = $1 AND provider = $2")
                .bind(principal)
                .bind(provider)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("sealed")).transpose()?)
    }

    async fn put_grant(
        &self,
        principal: &str,
        provider: &str,
        sealed: &str,
    ) -> Result<(), StoreError> {
        let ts = now();
        sqlx::query("INSERT INTO sluice_grants (principal, provider, sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (principal, provider) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at")
            .bind(principal)
            .bind(provider)
            .bind(sealed)
            .bind(ts)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_grant(&self, principal: &str, provider: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sluice_grants WHERE principal = $1 AND provider = $2")
            .bind(principal)
            .bind(provider)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn grants(&self, principal: Option<&str>) -> Result<Vec<GrantRow>, StoreError> {
        let columns =
            "SELECT principal, provider, sealed, created_at, updated_at FROM sluice_grants";
        let rows = match principal {
            Some(p) => {
                sqlx::query(&format!(
                    "{columns} WHERE principal = $1 ORDER BY principal, provider"
                ))
                .bind(p)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("{columns} ORDER BY principal, provider"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(GrantRow {
                    principal: r.try_get("principal")?,
                    provider: r.try_get("provider")?,
                    sealed: r.try_get("sealed")?,
                    created_at: r.try_get::<i64, _>("created_at")? as u64,
                    updated_at: r.try_get::<i64, _>("updated_at")? as u64,
                })
            })
            .collect()
    }

    async fn put_pending(&self, id: &str, sealed: &str, expires_at: u64) -> Result<(), StoreError> {
        // Expired entries go as new ones come.
        sqlx::query("DELETE FROM sluice_oauth_pending WHERE expires_at < $1")
            .bind(now())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO sluice_oauth_pending (id, sealed, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(sealed)
        .bind(expires_at as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn try_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        // The database's clock in Unix milliseconds.
        let now = match self.backend {
            Backend::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        };
        let sql = format!("INSERT INTO sluice_leases (name, holder, until_ms) VALUES ($1, $2, {now} + $3) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms WHERE sluice_leases.until_ms < {now}");
        let taken = sqlx::query(&sql)
            .bind(name)
            .bind(holder)
            .bind(ttl_ms as i64)
            .execute(&self.pool)
            .await?;
        Ok(taken.rows_affected() == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sluice_leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_client(&self, id: &str, body: &str, expires_at: u64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sluice_oauth_clients WHERE expires_at < $1")
            .bind(now())
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO sluice_oauth_clients (id, body, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(body)
            .bind(now())
            .bind(expires_at as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn client(&self, id: &str) -> Result<Option<ClientRow>, StoreError> {
        let row = sqlx::query("SELECT id, body, created_at, last_used_at, expires_at FROM sluice_oauth_clients WHERE id = $1 AND expires_at >= $2")
            .bind(id)
            .bind(now())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| client_row(&r)).transpose()
    }

    async fn client_used(&self, id: &str, body: &str, expires_at: u64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sluice_oauth_clients (id, body, created_at, last_used_at, expires_at) VALUES ($1, $2, $3, $3, $4) ON CONFLICT (id) DO UPDATE SET last_used_at = excluded.last_used_at, expires_at = excluded.expires_at")
            .bind(id)
            .bind(body)
            .bind(now())
            .bind(expires_at as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        let rows = sqlx::query("SELECT id, body, created_at, last_used_at, expires_at FROM sluice_oauth_clients WHERE expires_at >= $1 ORDER BY created_at DESC, id")
            .bind(now())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(client_row).collect()
    }

    async fn delete_client(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sluice_oauth_clients WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn pending(&self, id: &str, take: bool) -> Result<Option<String>, StoreError> {
        let sql = if take {
            "DELETE FROM sluice_oauth_pending WHERE id = $1 AND expires_at >= $2 RETURNING sealed"
        } else {
            "SELECT sealed FROM sluice_oauth_pending WHERE id = $1 AND expires_at >= $2"
        };
        let row = sqlx::query(sql)
            .bind(id)
            .bind(now())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("sealed")).transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One holder at a time, on the database's clock; a lease that ended is taken over.
    #[tokio::test]
    async fn leases_have_one_holder_until_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqlStore::open(&url).await.unwrap();
        assert!(store.try_lease("refresh:x", "a", 60_000).await.unwrap());
        assert!(!store.try_lease("refresh:x", "b", 60_000).await.unwrap());
        assert!(store.try_lease("refresh:y", "b", 60_000).await.unwrap());
        store.release_lease("refresh:x", "b").await.unwrap();
        assert!(
            !store.try_lease("refresh:x", "b", 60_000).await.unwrap(),
            "b does not hold it"
        );
        store.release_lease("refresh:x", "a").await.unwrap();
        assert!(store.try_lease("refresh:x", "b", 1).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(
            store.try_lease("refresh:x", "c", 60_000).await.unwrap(),
            "ended"
        );
    }

    #[tokio::test]
    async fn pending_entries_are_single_use_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = SqlStore::open(&url).await.unwrap();
        let now = crate::clock::unix_now();
        store
            .put_pending("fresh", "sealed-1", now + 600)
            .await
            .unwrap();
        store
            .put_pending("stale", "sealed-2", now - 1)
            .await
            .unwrap();
        assert_eq!(
            store.pending("fresh", false).await.unwrap().as_deref(),
            Some("sealed-1")
        );
        assert_eq!(
            store.pending("fresh", true).await.unwrap().as_deref(),
            Some("sealed-1")
        );
        assert_eq!(
            store.pending("fresh", true).await.unwrap(),
            None,
            "used twice"
        );
        assert_eq!(store.pending("stale", true).await.unwrap(), None, "expired");

        store.put_grant("owner:a", "gh", "g1").await.unwrap();
        store.put_grant("owner:a", "gh", "g2").await.unwrap();
        assert_eq!(
            store.grant("owner:a", "gh").await.unwrap().as_deref(),
            Some("g2")
        );
        let before = store.revision().await.unwrap();
        assert_eq!(store.grants(Some("owner:a")).await.unwrap().len(), 1);
        assert!(store.delete_grant("owner:a", "gh").await.unwrap());
        assert!(!store.delete_grant("owner:a", "gh").await.unwrap());
        assert_eq!(
            store.revision().await.unwrap(),
            before,
            "grants are not configuration"
        );
    }
}
