//! API tokens and the audit of refusals on SQLite.

use arbiter_core::Result;
use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::{Outcome, SqliteStore, internal, now_ms};
use crate::api::TokenStore;
use crate::schema::Migration;
use crate::token::{NewToken, REFUSAL_COLUMNS, Refusal, RefusalRecord, TOKEN_COLUMNS, TokenRecord, exists, unknown};

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: r.get(0)?,
        namespaces: r.get(1)?,
        scopes: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

fn refusal_row(r: &Row<'_>) -> rusqlite::Result<RefusalRecord> {
    Ok(RefusalRecord {
        id: r.get(0)?,
        at: r.get(1)?,
        refusal: Refusal {
            token: r.get(2)?,
            method: r.get(3)?,
            path: r.get(4)?,
            namespace: r.get(5)?,
            missing: r.get(6)?,
            status: r.get(7)?,
        },
    })
}

const BY_NAME: &str =
    "SELECT name, namespaces, scopes, created_at, expires_at, revoked_at FROM api_tokens WHERE name = ?1"; // TOKEN_COLUMNS

#[async_trait]
impl TokenStore for SqliteStore {
    async fn create(&self, token: &NewToken) -> Result<TokenRecord> {
        let token = token.clone();
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let found: Option<String> = tx
                .query_row(
                    "SELECT name FROM api_tokens WHERE name = ?1",
                    params![token.name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(internal)?;
            if found.is_some() && !token.replace {
                return Err(exists(&token.name));
            }
            let expires_at = token.expires_in.map(|d| now.saturating_add(crate::sql::ms(d)));
            tx.execute(
                "INSERT INTO api_tokens (name, secret_sha256, namespaces, scopes, created_at, expires_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)
                 ON CONFLICT (name) DO UPDATE SET
                    secret_sha256 = excluded.secret_sha256, namespaces = excluded.namespaces, scopes = excluded.scopes,
                    created_at = excluded.created_at, expires_at = excluded.expires_at, revoked_at = NULL",
                params![
                    token.name,
                    token.secret_sha256,
                    token.namespaces,
                    token.scopes,
                    now,
                    expires_at
                ],
            )
            .map_err(internal)?;
            let record = tx
                .query_row(BY_NAME, params![token.name], token_row)
                .map_err(internal)?;
            Ok(Outcome::Commit(record))
        })
        .await
    }

    async fn live(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        let hash = secret_sha256.to_string();
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let record = tx
                .query_row(
                    &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_sha256 = ?1"),
                    params![hash],
                    token_row,
                )
                .optional()
                .map_err(internal)?;
            Ok(record.filter(|r| r.live(now)))
        })
        .await
    }

    async fn list(&self) -> Result<(arbiter_core::Millis, Vec<TokenRecord>)> {
        self.read(move |tx| {
            let now = now_ms(tx)?;
            let mut stmt = tx
                .prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name"))
                .map_err(internal)?;
            let rows = stmt
                .query_map([], token_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)?;
            Ok((now, rows))
        })
        .await
    }

    async fn revoke(&self, name: &str) -> Result<TokenRecord> {
        let name = name.to_string();
        self.write(move |tx| {
            let now = now_ms(tx)?;
            let changed = tx
                .execute(
                    "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE name = ?1",
                    params![name, now],
                )
                .map_err(internal)?;
            if changed == 0 {
                return Err(unknown(&name));
            }
            let record = tx.query_row(BY_NAME, params![name], token_row).map_err(internal)?;
            Ok(Outcome::Commit(record))
        })
        .await
    }

    async fn any_live(&self) -> Result<bool> {
        self.read(move |tx| {
            let now = now_ms(tx)?;
            tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_tokens
                                WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1))",
                params![now],
                |r| r.get(0),
            )
            .map_err(internal)
        })
        .await
    }

    async fn audit(&self, refusal: &Refusal, keep: u32) -> Result<()> {
        let refusal = refusal.clone();
        self.write(move |tx| {
            let now = now_ms(tx)?;
            tx.execute(
                "INSERT INTO api_token_refusals (at, token, method, path, namespace, missing, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now,
                    refusal.token,
                    refusal.method,
                    refusal.path,
                    refusal.namespace,
                    refusal.missing,
                    refusal.status
                ],
            )
            .map_err(internal)?;
            // Ids only grow (AUTOINCREMENT), so everything at or below the newest id minus
            // `keep` is older than the newest `keep`: one indexed delete.
            let newest = tx.last_insert_rowid();
            tx.execute(
                "DELETE FROM api_token_refusals WHERE id <= ?1",
                params![newest - i64::from(keep)],
            )
            .map_err(internal)?;
            Ok(Outcome::Commit(()))
        })
        .await
    }

    async fn audit_list(&self, limit: usize) -> Result<Vec<RefusalRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT {REFUSAL_COLUMNS} FROM api_token_refusals ORDER BY id DESC LIMIT ?1"
                ))
                .map_err(internal)?;
            stmt.query_map(params![limit], refusal_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(internal)
        })
        .await
    }
}

/// This primitive's schema steps (see `crate::schema`). Never edit a shipped step; add one.
pub(super) const MIGRATIONS: &[Migration] = &[
    // 7: API tokens (only a secret's SHA-256 is kept; UNIQUE indexes the lookup by it) and
    // the audit of refused requests.
    Migration {
        version: 7,
        sql: r#"
    CREATE TABLE api_tokens (
        name          TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL UNIQUE,
        namespaces    TEXT NOT NULL,
        scopes        TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER,
        revoked_at    INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE api_token_refusals (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        INTEGER NOT NULL,
        token     TEXT NOT NULL,
        method    TEXT NOT NULL,
        path      TEXT NOT NULL,
        namespace TEXT NOT NULL,
        missing   TEXT NOT NULL,
        status    INTEGER NOT NULL
    );
    "#,
    },
];
