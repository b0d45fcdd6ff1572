//! [`KvBackend`] on one SQLite file in the data directory (one per tenant,
//! `kv/{tenant}.db`, through `TenantShardedKv`),
//! apart from the control plane's database so that guest traffic never
//! waits on deploys.
//!
//! Reads go through a pool of read-only connections. Writes go through one
//! connection behind a mutex, which makes every read-modify-write (increment,
//! swap, the quota check before a set) atomic without retries, and lets each
//! tenant's usage be kept in memory: it is counted from the data when the
//! tenant first writes after a start. WAL with `synchronous = NORMAL`: a
//! write survives the host process being killed; a power cut may lose the
//! last few.

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqlitePool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

use super::{
    KvBackend, KvError, KvQuota, KvResult, Namespace, Usage, check_entry, incremented,
    usage_after_write,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    tenant  TEXT NOT NULL,
    service TEXT NOT NULL,
    bucket  TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   BLOB NOT NULL,
    replaced_length INTEGER,
    PRIMARY KEY (tenant, service, bucket, key)
) WITHOUT ROWID;
";

/// `replaced_length` holds the length of the value the row's last update
/// replaced, and is written only so that an upsert can report it: RETURNING
/// sees only the new row, and the quota needs the old length. Files made
/// before the column existed gain it when opened.
const ADD_REPLACED_LENGTH: &str = "ALTER TABLE kv ADD COLUMN replaced_length INTEGER";

/// Writes a value and returns the length of the one it replaced (NULL when
/// the key was new), so that a plain `set` is one round trip where a read
/// and a write took two; every write goes through it.
const UPSERT_RETURNING_REPLACED: &str =
    "INSERT INTO kv (tenant, service, bucket, key, value) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (tenant, service, bucket, key)
     DO UPDATE SET value = excluded.value, replaced_length = length(kv.value)
     RETURNING replaced_length";

const SELECT_VALUE: &str =
    "SELECT value FROM kv WHERE tenant = ? AND service = ? AND bucket = ? AND key = ?";

/// A statement on one key of a namespace, its four `?` bound in order.
fn keyed<'q>(
    sql: &'static str,
    ns: &'q Namespace,
    key: &'q str,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    sqlx::query(sql)
        .bind(&*ns.tenant)
        .bind(&*ns.service)
        .bind(&*ns.bucket)
        .bind(key)
}

struct Writer {
    conn: SqliteConnection,
    usage: HashMap<String, Usage>,
}

struct Open {
    readers: SqlitePool,
    writer: Mutex<Writer>,
}

pub struct SqliteKv {
    path: PathBuf,
    /// A file an older Berth kept every tenant's data in, and the tenant
    /// whose rows this file takes from it when it is first made.
    legacy: Option<(PathBuf, String)>,
    open: OnceCell<Open>,
}

impl SqliteKv {
    /// The store at `path`, opened (and created) at its first use, so that a
    /// host whose services use no key-value data never touches the file.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            legacy: None,
            open: OnceCell::new(),
        }
    }

    /// One tenant's store at `path`; when it is first made, it takes that
    /// tenant's rows from the shared file `legacy` an older Berth wrote.
    pub fn for_tenant(path: &Path, legacy: &Path, tenant: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            legacy: Some((legacy.to_path_buf(), tenant.to_string())),
            open: OnceCell::new(),
        }
    }

    async fn open(&self) -> KvResult<&Open> {
        self.open
            .get_or_try_init(|| async {
                let fresh = !self.path.exists();
                let options = SqliteConnectOptions::new()
                    .filename(&self.path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10));
                let mut conn = SqliteConnection::connect_with(&options).await?;
                sqlx::raw_sql(SCHEMA).execute(&mut conn).await?;
                let has_replaced_length: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pragma_table_info('kv') WHERE name = 'replaced_length'",
                )
                .fetch_one(&mut conn)
                .await?;
                if has_replaced_length == 0 {
                    sqlx::raw_sql(ADD_REPLACED_LENGTH)
                        .execute(&mut conn)
                        .await?;
                }
                if fresh && let Some((legacy, tenant)) = &self.legacy {
                    import_legacy(&mut conn, legacy, tenant).await?;
                }
                let readers = SqlitePoolOptions::new()
                    .max_connections(2)
                    .min_connections(0)
                    // Each connection is a thread: a tenant that stops
                    // reading gives its readers back.
                    .idle_timeout(Duration::from_secs(30))
                    // A ping before each use would double every read's
                    // round trips to the connection's worker thread; a
                    // local file's connection does not go stale.
                    .test_before_acquire(false)
                    .connect_with(options.read_only(true))
                    .await?;
                Ok::<_, KvError>(Open {
                    readers,
                    writer: Mutex::new(Writer {
                        conn,
                        usage: HashMap::new(),
                    }),
                })
            })
            .await
    }
}

/// Copies `tenant`'s rows from the shared file an older Berth kept every
/// tenant's data in, in one transaction with the new file's first use.
async fn import_legacy(conn: &mut SqliteConnection, legacy: &Path, tenant: &str) -> KvResult<()> {
    if !legacy.is_file() {
        return Ok(());
    }
    sqlx::query("ATTACH DATABASE ? AS legacy")
        .bind(legacy.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await?;
    let copied = sqlx::query(
        "INSERT OR IGNORE INTO kv (tenant, service, bucket, key, value)
         SELECT tenant, service, bucket, key, value FROM legacy.kv WHERE tenant = ?",
    )
    .bind(tenant)
    .execute(&mut *conn)
    .await;
    sqlx::query("DETACH DATABASE legacy")
        .execute(&mut *conn)
        .await?;
    let copied = copied?.rows_affected();
    if copied > 0 {
        tracing::info!(
            tenant,
            keys = copied,
            "key-value data moved to the tenant's own file"
        );
    }
    Ok(())
}

impl Writer {
    async fn usage(&mut self, tenant: &str) -> KvResult<Usage> {
        if let Some(usage) = self.usage.get(tenant) {
            return Ok(*usage);
        }
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv WHERE tenant = ?",
        )
        .bind(tenant)
        .fetch_one(&mut self.conn)
        .await?;
        let usage = Usage {
            keys: u64::try_from(row.get::<i64, _>(0)).unwrap_or(0),
            bytes: u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
        };
        self.usage.insert(tenant.to_string(), usage);
        Ok(usage)
    }

    async fn current(&mut self, ns: &Namespace, key: &str) -> KvResult<Option<Vec<u8>>> {
        let row = keyed(SELECT_VALUE, ns, key)
            .fetch_optional(&mut self.conn)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// Writes `value` over `old`, if the tenant's quota allows the change.
    async fn put(
        &mut self,
        ns: &Namespace,
        key: &str,
        old: Option<&[u8]>,
        value: &[u8],
        quota: &KvQuota,
    ) -> KvResult<()> {
        let usage = self.usage(&ns.tenant).await?;
        let next = usage_after_write(usage, key, old.map(<[u8]>::len), value, quota)?;
        keyed(UPSERT_RETURNING_REPLACED, ns, key)
            .bind(value)
            .fetch_one(&mut self.conn)
            .await?;
        self.usage.insert(ns.tenant.to_string(), next);
        Ok(())
    }

    /// Writes `value` in one statement, when the quota allows it whatever
    /// it replaces, and returns whether it did.
    async fn put_if_it_fits_as_new(
        &mut self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        quota: &KvQuota,
    ) -> KvResult<bool> {
        let usage = self.usage(&ns.tenant).await?;
        // Replacing a value takes no more than adding the key afresh.
        if usage_after_write(usage, key, None, value, quota).is_err() {
            return Ok(false);
        }
        let replaced: Option<i64> = keyed(UPSERT_RETURNING_REPLACED, ns, key)
            .bind(value)
            .fetch_one(&mut self.conn)
            .await?
            .get(0);
        let replaced = replaced.map(|len| usize::try_from(len).unwrap_or(0));
        self.usage.insert(
            ns.tenant.to_string(),
            usage.after_write(key, replaced, value.len()),
        );
        Ok(true)
    }
}

#[async_trait::async_trait]
impl KvBackend for SqliteKv {
    async fn get(&self, ns: &Namespace, key: &str) -> KvResult<Option<Vec<u8>>> {
        let open = self.open().await?;
        let row = keyed(SELECT_VALUE, ns, key)
            .fetch_optional(&open.readers)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8], quota: &KvQuota) -> KvResult<()> {
        check_entry(key, Some(value), quota)?;
        let mut writer = self.open().await?.writer.lock().await;
        if writer.put_if_it_fits_as_new(ns, key, value, quota).await? {
            return Ok(());
        }
        // Near the quota, whether the write fits depends on what it replaces.
        let old = writer.current(ns, key).await?;
        writer.put(ns, key, old.as_deref(), value, quota).await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> KvResult<()> {
        let mut writer = self.open().await?.writer.lock().await;
        let usage = writer.usage(&ns.tenant).await?;
        let removed = keyed(
            "DELETE FROM kv WHERE tenant = ? AND service = ? AND bucket = ? AND key = ?
             RETURNING length(CAST(key AS BLOB)) + length(value)",
            ns,
            key,
        )
        .fetch_optional(&mut writer.conn)
        .await?;
        if let Some(row) = removed {
            let bytes = u64::try_from(row.get::<i64, _>(0)).unwrap_or(0);
            writer.usage.insert(
                ns.tenant.to_string(),
                Usage {
                    keys: usage.keys.saturating_sub(1),
                    bytes: usage.bytes.saturating_sub(bytes),
                },
            );
        }
        Ok(())
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> KvResult<bool> {
        let open = self.open().await?;
        let row = keyed(
            "SELECT 1 FROM kv WHERE tenant = ? AND service = ? AND bucket = ? AND key = ?",
            ns,
            key,
        )
        .fetch_optional(&open.readers)
        .await?;
        Ok(row.is_some())
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> KvResult<Vec<String>> {
        let open = self.open().await?;
        let rows = sqlx::query(
            "SELECT key FROM kv WHERE tenant = ? AND service = ? AND bucket = ? AND key > ?
             ORDER BY key LIMIT ?",
        )
        .bind(&*ns.tenant)
        .bind(&*ns.service)
        .bind(&*ns.bucket)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&open.readers)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> KvResult<i64> {
        check_entry(key, None, quota)?;
        let mut writer = self.open().await?.writer.lock().await;
        let old = writer.current(ns, key).await?;
        let sum = incremented(old.as_deref(), delta)?;
        writer
            .put(ns, key, old.as_deref(), sum.to_string().as_bytes(), quota)
            .await?;
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
        let mut writer = self.open().await?.writer.lock().await;
        let old = writer.current(ns, key).await?;
        if old.as_deref() != expected {
            return Ok(Err(old));
        }
        writer.put(ns, key, old.as_deref(), value, quota).await?;
        Ok(Ok(()))
    }

    async fn delete_scope(&self, tenant: &str, service: Option<&str>) -> KvResult<()> {
        let mut writer = self.open().await?.writer.lock().await;
        match service {
            Some(service) => {
                sqlx::query("DELETE FROM kv WHERE tenant = ? AND service = ?")
                    .bind(tenant)
                    .bind(service)
                    .execute(&mut writer.conn)
                    .await?
            }
            None => {
                sqlx::query("DELETE FROM kv WHERE tenant = ?")
                    .bind(tenant)
                    .execute(&mut writer.conn)
                    .await?
            }
        };
        // Counted again from the data at the tenant's next write.
        writer.usage.remove(tenant);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ns(tenant: &str, service: &str) -> Namespace {
        Namespace {
            tenant: Arc::from(tenant),
            service: Arc::from(service),
            bucket: Arc::from("default"),
        }
    }

    #[tokio::test]
    async fn quotas_count_keys_and_bytes_per_tenant() -> Result<(), KvError> {
        let dir = tempfile::tempdir().map_err(|e| KvError::Backend(e.to_string()))?;
        let kv = SqliteKv::new(&dir.path().join("kv.db"));
        let quota = KvQuota {
            keys: 2,
            value_bytes: 10,
            total_bytes: 14,
        };
        let a = ns("acme", "cart");
        kv.set(&a, "k1", b"12345", &quota).await?;
        assert!(matches!(
            kv.set(&a, "k2", b"01234567890", &quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        assert!(matches!(
            kv.set(&a, "k2", b"123456", &quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        kv.set(&a, "k2", b"1", &quota).await?;
        // Overwriting an existing key does not count as a new key.
        kv.set(&a, "k2", b"2", &quota).await?;
        assert!(matches!(
            kv.set(&a, "k3", b"", &quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        // Another tenant has its own usage.
        kv.set(&ns("other", "cart"), "k3", b"x", &quota).await?;
        kv.delete(&a, "k1").await?;
        kv.set(&a, "k3", b"abc", &quota).await?;
        assert_eq!(kv.get(&a, "k3").await?, Some(b"abc".to_vec()));
        assert_eq!(kv.get(&ns("acme", "catalog"), "k3").await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn one_statement_writes_keep_usage_exact_across_restarts() -> Result<(), KvError> {
        let dir = tempfile::tempdir().map_err(|e| KvError::Backend(e.to_string()))?;
        let path = dir.path().join("kv.db");
        // A file from before `replaced_length`, holding one 12-byte entry.
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let mut conn = SqliteConnection::connect_with(&options).await?;
            sqlx::raw_sql(
                "CREATE TABLE kv (tenant TEXT NOT NULL, service TEXT NOT NULL,
                 bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
                 PRIMARY KEY (tenant, service, bucket, key)) WITHOUT ROWID;
                 INSERT INTO kv VALUES ('acme', 'cart', 'default', 'k1', x'31323334353637383930');",
            )
            .execute(&mut conn)
            .await?;
        }
        let quota = KvQuota {
            keys: 3,
            value_bytes: 12,
            total_bytes: 22,
        };
        let a = ns("acme", "cart");
        let kv = SqliteKv::new(&path);
        // Far from the quota: written in one statement, which reports the
        // replaced 10 bytes, so the tenant now stores 2 + 5.
        kv.set(&a, "k1", b"12345", &quota).await?;
        // 7 + 3 + 12 = 22 fits only if the replaced bytes were given back; a
        // non-ASCII key counts its UTF-8 bytes (`ké` is 3).
        kv.set(&a, "ké", b"123456789012", &quota).await?;
        assert!(matches!(
            kv.set(&a, "k3", b"", &quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        // Counted afresh from the file after a restart: the same 22 bytes,
        // so even a 1-byte entry does not fit.
        drop(kv);
        let kv = SqliteKv::new(&path);
        assert!(matches!(
            kv.set(&a, "x", b"", &quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        kv.set(&a, "k1", b"1", &quota).await?;
        kv.set(&a, "k3", b"", &quota).await?;
        assert!(matches!(
            kv.set(&a, "k4", b"", &quota).await,
            Err(KvError::QuotaExceeded(_))
        ));
        assert_eq!(kv.get(&a, "ké").await?, Some(b"123456789012".to_vec()));
        Ok(())
    }

    #[tokio::test]
    async fn increments_and_swaps_are_atomic() -> Result<(), KvError> {
        let dir = tempfile::tempdir().map_err(|e| KvError::Backend(e.to_string()))?;
        let kv = Arc::new(SqliteKv::new(&dir.path().join("kv.db")));
        let quota = KvQuota::default();
        let a = ns("acme", "counter");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (kv, a) = (Arc::clone(&kv), a.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    kv.increment(&a, "n", 1, &quota).await?;
                }
                Ok::<_, KvError>(())
            }));
        }
        for task in tasks {
            task.await.map_err(|e| KvError::Backend(e.to_string()))??;
        }
        assert_eq!(kv.increment(&a, "n", 0, &quota).await?, 200);
        assert_eq!(
            kv.swap(&a, "n", Some(b"199"), b"x", &quota).await?,
            Err(Some(b"200".to_vec()))
        );
        assert_eq!(kv.swap(&a, "n", Some(b"200"), b"x", &quota).await?, Ok(()));
        assert!(matches!(
            kv.increment(&a, "n", 1, &quota).await,
            Err(KvError::Invalid(_))
        ));
        Ok(())
    }
}
