//! API tokens and the audit of refusals on PostgreSQL. Times are the server's clock, read in
//! the statement that uses them.

use arbiter_core::{Millis, Result};
use async_trait::async_trait;
use tokio_postgres::Row;

use super::{PgStore, now_ms_sql, pg_error, query};
use crate::api::TokenStore;
use crate::schema::Migration;
use crate::token::{NewToken, REFUSAL_COLUMNS, Refusal, RefusalRecord, TOKEN_COLUMNS, TokenRecord, exists, unknown};

fn token_row(r: &Row) -> TokenRecord {
    TokenRecord {
        name: r.get(0),
        namespaces: r.get(1),
        scopes: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        revoked_at: r.get(5),
    }
}

fn refusal_row(r: &Row) -> RefusalRecord {
    RefusalRecord {
        id: r.get(0),
        at: r.get(1),
        refusal: Refusal {
            token: r.get(2),
            method: r.get(3),
            path: r.get(4),
            namespace: r.get(5),
            missing: r.get(6),
            status: u16::try_from(r.get::<_, i32>(7)).unwrap_or(0),
        },
    }
}

#[async_trait]
impl TokenStore for PgStore {
    async fn create(&self, token: &NewToken) -> Result<TokenRecord> {
        let expires_in: Option<i64> = token.expires_in.map(crate::sql::ms);
        // `ON CONFLICT … WHERE $6` updates only when replacing; otherwise nothing comes back
        // and the name is taken. One statement, so two creators of one name cannot both win.
        let rows = self
            .single(
                &format!(
                    "INSERT INTO api_tokens AS t (name, secret_sha256, namespaces, scopes, created_at, expires_at, revoked_at)
                     SELECT $1, $2, $3, $4, now_ms, now_ms + $5, NULL FROM (SELECT {} AS now_ms) AS clock
                     ON CONFLICT (name) DO UPDATE SET
                        secret_sha256 = excluded.secret_sha256, namespaces = excluded.namespaces,
                        scopes = excluded.scopes, created_at = excluded.created_at,
                        expires_at = excluded.expires_at, revoked_at = NULL
                     WHERE $6
                     RETURNING {TOKEN_COLUMNS}",
                    now_ms_sql!()
                ),
                &[
                    &token.name,
                    &token.secret_sha256,
                    &token.namespaces,
                    &token.scopes,
                    &expires_in,
                    &token.replace,
                ],
            )
            .await?;
        rows.first().map(token_row).ok_or_else(|| exists(&token.name))
    }

    async fn live(&self, secret_sha256: &str) -> Result<Option<TokenRecord>> {
        let rows = self
            .single(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_sha256 = $1
                     AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {})",
                    now_ms_sql!()
                ),
                &[&secret_sha256],
            )
            .await?;
        Ok(rows.first().map(token_row))
    }

    async fn list(&self) -> Result<(Millis, Vec<TokenRecord>)> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let now = super::now_ms(&tx).await?;
        let rows = query(
            &tx,
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY name COLLATE \"C\""),
            &[],
        )
        .await?;
        tx.commit().await.map_err(pg_error)?;
        Ok((now, rows.iter().map(token_row).collect()))
    }

    async fn revoke(&self, name: &str) -> Result<TokenRecord> {
        let rows = self
            .single(
                &format!(
                    "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, {}) WHERE name = $1 RETURNING {TOKEN_COLUMNS}",
                    now_ms_sql!()
                ),
                &[&name],
            )
            .await?;
        rows.first().map(token_row).ok_or_else(|| unknown(name))
    }

    async fn any_live(&self) -> Result<bool> {
        let rows = self
            .single(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM api_tokens
                                    WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > {}))",
                    now_ms_sql!()
                ),
                &[],
            )
            .await?;
        Ok(rows[0].get(0))
    }

    async fn audit(&self, refusal: &Refusal, keep: u32) -> Result<()> {
        let status = i32::from(refusal.status);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let rows = query(
            &tx,
            concat!(
                "INSERT INTO api_token_refusals (at, token, method, path, namespace, missing, status) VALUES (",
                now_ms_sql!(),
                ", $1, $2, $3, $4, $5, $6) RETURNING id"
            ),
            &[
                &refusal.token,
                &refusal.method,
                &refusal.path,
                &refusal.namespace,
                &refusal.missing,
                &status,
            ],
        )
        .await?;
        // Ids only grow (an identity column), so everything at or below the newest id minus `keep`
        // is older than the newest `keep`: one indexed delete.
        let newest: i64 = rows[0].get(0);
        super::execute(
            &tx,
            "DELETE FROM api_token_refusals WHERE id <= $1",
            &[&(newest - i64::from(keep))],
        )
        .await?;
        tx.commit().await.map_err(pg_error)
    }

    async fn audit_list(&self, limit: usize) -> Result<Vec<RefusalRecord>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .single(
                &format!("SELECT {REFUSAL_COLUMNS} FROM api_token_refusals ORDER BY id DESC LIMIT $1"),
                &[&limit],
            )
            .await?;
        Ok(rows.iter().map(refusal_row).collect())
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
        created_at    BIGINT NOT NULL,
        expires_at    BIGINT,
        revoked_at    BIGINT
    );
    CREATE TABLE api_token_refusals (
        id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at        BIGINT NOT NULL,
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
