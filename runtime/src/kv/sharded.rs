//! Guests' key-value data on one host: one SQLite file per tenant under
//! `DATA_DIR/kv/`, each with its own writer and readers. A tenant writing
//! large values at full speed holds only its own file's write lock, so other
//! tenants' reads and writes never queue behind it (they share the disk and
//! the CPU, not a lock). Files are opened on a tenant's first use.
//!
//! What they share (the disk, the cores) is paced in front of this, by
//! [`PacedKv`](super::paced::PacedKv).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::sqlite::SqliteKv;
use super::{KvBackend, KvQuota, KvResult, Namespace};

pub struct TenantShardedKv {
    dir: PathBuf,
    /// `kv.db`, where an older Berth kept every tenant's data: each
    /// tenant's file takes its rows from there when it is first made.
    legacy: PathBuf,
    shards: Mutex<HashMap<String, Arc<SqliteKv>>>,
}

impl TenantShardedKv {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("kv"),
            legacy: data_dir.join("kv.db"),
            shards: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, tenant: &str) -> KvResult<Arc<SqliteKv>> {
        let mut shards = self
            .shards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(shard) = shards.get(tenant) {
            return Ok(Arc::clone(shard));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            super::KvError::Backend(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        // Tenant names are `[a-z0-9][a-z0-9-]*`: safe as file names.
        let shard = Arc::new(SqliteKv::for_tenant(
            &self.dir.join(format!("{tenant}.db")),
            &self.legacy,
            tenant,
        ));
        shards.insert(tenant.to_string(), Arc::clone(&shard));
        Ok(shard)
    }
}

#[async_trait::async_trait]
impl KvBackend for TenantShardedKv {
    async fn get(&self, ns: &Namespace, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.shard(&ns.tenant)?.get(ns, key).await
    }

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8], quota: &KvQuota) -> KvResult<()> {
        self.shard(&ns.tenant)?.set(ns, key, value, quota).await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> KvResult<()> {
        self.shard(&ns.tenant)?.delete(ns, key).await
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> KvResult<bool> {
        self.shard(&ns.tenant)?.exists(ns, key).await
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> KvResult<Vec<String>> {
        self.shard(&ns.tenant)?.list_keys(ns, after, limit).await
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> KvResult<i64> {
        self.shard(&ns.tenant)?
            .increment(ns, key, delta, quota)
            .await
    }

    async fn swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        quota: &KvQuota,
    ) -> KvResult<Result<(), Option<Vec<u8>>>> {
        self.shard(&ns.tenant)?
            .swap(ns, key, expected, value, quota)
            .await
    }

    async fn delete_scope(&self, tenant: &str, service: Option<&str>) -> KvResult<()> {
        self.shard(tenant)?.delete_scope(tenant, service).await?;
        if service.is_none() && self.legacy.is_file() {
            // Nothing of a deleted tenant may come back from the old file
            // when a tenant of the same name first uses key-value data.
            SqliteKv::new(&self.legacy)
                .delete_scope(tenant, None)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvError;

    fn ns(tenant: &str) -> Namespace {
        Namespace {
            tenant: Arc::from(tenant),
            service: Arc::from("svc"),
            bucket: Arc::from("default"),
        }
    }

    #[tokio::test]
    async fn tenants_get_files_of_their_own_and_take_their_old_rows() -> Result<(), KvError> {
        let dir = tempfile::tempdir().map_err(|e| KvError::Backend(e.to_string()))?;
        let quota = KvQuota::default();
        // An older Berth's one file, with two tenants' data.
        let legacy = SqliteKv::new(&dir.path().join("kv.db"));
        legacy.set(&ns("acme"), "k", b"acme's", &quota).await?;
        legacy.set(&ns("globex"), "k", b"globex's", &quota).await?;
        drop(legacy);

        let kv = TenantShardedKv::new(dir.path());
        assert_eq!(kv.get(&ns("acme"), "k").await?, Some(b"acme's".to_vec()));
        kv.set(&ns("acme"), "new", b"1", &quota).await?;
        assert!(dir.path().join("kv/acme.db").is_file());
        assert!(!dir.path().join("kv/globex.db").exists());
        // A deleted tenant's rows leave the old file too: a tenant made
        // again under its name starts empty.
        kv.delete_scope("globex", None).await?;
        let again = TenantShardedKv::new(dir.path());
        std::fs::remove_file(dir.path().join("kv/globex.db"))
            .map_err(|e| KvError::Backend(e.to_string()))?;
        assert_eq!(again.get(&ns("globex"), "k").await?, None);
        assert_eq!(again.get(&ns("acme"), "new").await?, Some(b"1".to_vec()));
        Ok(())
    }
}
