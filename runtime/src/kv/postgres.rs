//! [`KvBackend`] on Postgres, shared by every host of a fleet: a write
//! through one host is read through any other.
//!
//! Every write runs in one transaction that first locks its tenant's row of
//! `kv_usage`. That lock orders a tenant's writes across all hosts, which
//! makes increment and compare-and-swap atomic and keeps the tenant's usage
//! (its quota) exact, without retries. Reads take no lock.

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use std::time::Duration;
use tokio::sync::OnceCell;

use super::{
    KvBackend, KvError, KvQuota, KvResult, Namespace, Usage, check_entry, incremented,
    usage_after_write,
};

/// Created by the first host to use key-value data, under an advisory lock
/// so hosts starting together do not trip over each other.
const SCHEMA: &str = "
SELECT pg_advisory_xact_lock(7262376);
CREATE TABLE IF NOT EXISTS kv (
    tenant  TEXT NOT NULL,
    service TEXT NOT NULL,
    bucket  TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BYTEA NOT NULL,
    PRIMARY KEY (tenant, service, bucket, key)
);
CREATE TABLE IF NOT EXISTS kv_usage (
    tenant  TEXT PRIMARY KEY,
    keys    BIGINT NOT NULL,
    bytes   BIGINT NOT NULL
);
";

/// `$head` on one key of a namespace: `$1` to `$4` are its place.
macro_rules! on_key {
    ($head:literal) => {
        concat!(
            $head,
            " WHERE tenant = $1 AND service = $2 AND bucket = $3 AND key = $4"
        )
    };
    ($head:literal, $tail:literal) => {
        concat!(on_key!($head), " ", $tail)
    };
}

/// A statement on one key of a namespace, its first four parameters bound.
fn keyed<'q>(
    sql: &'static str,
    ns: &'q Namespace,
    key: &'q str,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(&*ns.tenant)
        .bind(&*ns.service)
        .bind(&*ns.bucket)
        .bind(key)
}

pub struct PostgresKv {
    url: String,
    pool: OnceCell<PgPool>,
}

impl PostgresKv {
    /// The store in the database at `url`, connected at its first use.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            pool: OnceCell::new(),
        }
    }

    async fn pool(&self) -> KvResult<&PgPool> {
        self.pool
            .get_or_try_init(|| async {
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect(&self.url)
                    .await?;
                let mut tx = pool.begin().await?;
                sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok::<_, KvError>(pool)
            })
            .await
    }

    /// Begins a write of the tenant's data, holding its usage row until the
    /// write commits.
    async fn begin(&self, tenant: &str) -> KvResult<(Transaction<'static, Postgres>, Usage)> {
        let mut tx = self.pool().await?.begin().await?;
        sqlx::query(
            "INSERT INTO kv_usage (tenant, keys, bytes) \
             SELECT $1, count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0)::BIGINT \
             FROM kv WHERE tenant = $1 ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT keys, bytes FROM kv_usage WHERE tenant = $1 FOR UPDATE")
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
        let usage = Usage {
            keys: u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0),
            bytes: u64::try_from(row.try_get::<i64, _>(1)?).unwrap_or(0),
        };
        Ok((tx, usage))
    }

    async fn current(
        tx: &mut Transaction<'static, Postgres>,
        ns: &Namespace,
        key: &str,
    ) -> KvResult<Option<Vec<u8>>> {
        let row = keyed(on_key!("SELECT value FROM kv"), ns, key)
            .fetch_optional(&mut **tx)
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
    }

    /// Writes `value` over `old` and commits, if the quota allows it.
    async fn put(
        mut tx: Transaction<'static, Postgres>,
        usage: Usage,
        ns: &Namespace,
        key: &str,
        old: Option<&[u8]>,
        value: &[u8],
        quota: &KvQuota,
    ) -> KvResult<()> {
        let next = usage_after_write(usage, key, old.map(<[u8]>::len), value, quota)?;
        keyed(
            "INSERT INTO kv (tenant, service, bucket, key, value) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant, service, bucket, key) DO UPDATE SET value = excluded.value",
            ns,
            key,
        )
        .bind(value)
        .execute(&mut *tx)
        .await?;
        Self::set_usage(&mut tx, &ns.tenant, next).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_usage(
        tx: &mut Transaction<'static, Postgres>,
        tenant: &str,
        usage: Usage,
    ) -> KvResult<()> {
        sqlx::query("UPDATE kv_usage SET keys = $2, bytes = $3 WHERE tenant = $1")
            .bind(tenant)
            .bind(i64::try_from(usage.keys).unwrap_or(i64::MAX))
            .bind(i64::try_from(usage.bytes).unwrap_or(i64::MAX))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl KvBackend for PostgresKv {
    async fn get(&self, ns: &Namespace, key: &str) -> KvResult<Option<Vec<u8>>> {
        let row = keyed(on_key!("SELECT value FROM kv"), ns, key)
            .fetch_optional(self.pool().await?)
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>(0)).transpose()?)
    }

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8], quota: &KvQuota) -> KvResult<()> {
        check_entry(key, Some(value), quota)?;
        let (mut tx, usage) = self.begin(&ns.tenant).await?;
        let old = Self::current(&mut tx, ns, key).await?;
        Self::put(tx, usage, ns, key, old.as_deref(), value, quota).await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> KvResult<()> {
        let (mut tx, usage) = self.begin(&ns.tenant).await?;
        let removed = keyed(
            on_key!(
                "DELETE FROM kv",
                "RETURNING octet_length(key) + octet_length(value)"
            ),
            ns,
            key,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = removed {
            let bytes = u64::try_from(row.try_get::<i32, _>(0)?).unwrap_or(0);
            let next = Usage {
                keys: usage.keys.saturating_sub(1),
                bytes: usage.bytes.saturating_sub(bytes),
            };
            Self::set_usage(&mut tx, &ns.tenant, next).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> KvResult<bool> {
        let row = keyed(on_key!("SELECT 1 FROM kv"), ns, key)
            .fetch_optional(self.pool().await?)
            .await?;
        Ok(row.is_some())
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> KvResult<Vec<String>> {
        let rows = sqlx::query(
            r#"SELECT key FROM kv WHERE tenant = $1 AND service = $2 AND bucket = $3
               AND key COLLATE "C" > $4 ORDER BY key COLLATE "C" LIMIT $5"#,
        )
        .bind(&*ns.tenant)
        .bind(&*ns.service)
        .bind(&*ns.bucket)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.pool().await?)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> KvResult<i64> {
        check_entry(key, None, quota)?;
        let (mut tx, usage) = self.begin(&ns.tenant).await?;
        let old = Self::current(&mut tx, ns, key).await?;
        let sum = incremented(old.as_deref(), delta)?;
        let value = sum.to_string();
        Self::put(tx, usage, ns, key, old.as_deref(), value.as_bytes(), quota).await?;
        Ok(sum)
    }

    async fn swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        quota: &KvQuota,
    ) -> KvResult<Result<(), Option<Vec<u8>>>> {
        check_entry(key, Some(value), quota)?;
        let (mut tx, usage) = self.begin(&ns.tenant).await?;
        let old = Self::current(&mut tx, ns, key).await?;
        if old.as_deref() != expected {
            return Ok(Err(old));
        }
        Self::put(tx, usage, ns, key, old.as_deref(), value, quota).await?;
        Ok(Ok(()))
    }

    async fn delete_scope(&self, tenant: &str, service: Option<&str>) -> KvResult<()> {
        let (mut tx, _) = self.begin(tenant).await?;
        sqlx::query("DELETE FROM kv WHERE tenant = $1 AND ($2::TEXT IS NULL OR service = $2)")
            .bind(tenant)
            .bind(service)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE kv_usage SET keys = c.keys, bytes = c.bytes FROM \
             (SELECT count(*) AS keys, \
              coalesce(sum(octet_length(key) + octet_length(value)), 0)::BIGINT AS bytes \
              FROM kv WHERE tenant = $1) AS c WHERE kv_usage.tenant = $1",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
