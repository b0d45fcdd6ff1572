//! Per-tenant pacing of key-value writes, in front of any backend.
//!
//! Tenants share the disk, the cores and (in a fleet) the database under
//! their key-value data. Each may write [`WritePace::bytes_per_second`] on
//! average, in bursts of up to [`WritePace::burst_bytes`]; a write past that
//! waits its turn before it reaches the backend, so one tenant streaming
//! large values cannot take the disk and the cores from everyone else's
//! small writes. A wait counts against the guest's wall-clock time, not its
//! CPU. Reads are not paced: they hold no lock another tenant needs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

use super::{KvBackend, KvQuota, KvResult, Namespace};

/// How fast one tenant may write key-value data.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WritePace {
    /// Bytes (keys and values) per second, on average.
    pub bytes_per_second: u64,
    /// Bytes a tenant may write at once after a quiet spell.
    pub burst_bytes: u64,
}

impl Default for WritePace {
    fn default() -> Self {
        Self {
            bytes_per_second: 4 * 1024 * 1024,
            burst_bytes: 8 * 1024 * 1024,
        }
    }
}

impl WritePace {
    fn time_for(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / self.bytes_per_second.max(1) as f64)
    }
}

/// A backend whose writes are paced per tenant.
pub struct PacedKv {
    inner: Arc<dyn KvBackend>,
    pace: WritePace,
    /// Per tenant, the instant its allowance is back to a full burst (a
    /// "virtual finish time").
    full_at: Mutex<HashMap<Arc<str>, Instant>>,
}

impl PacedKv {
    pub fn new(inner: Arc<dyn KvBackend>, pace: WritePace) -> Self {
        Self {
            inner,
            pace,
            full_at: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until `tenant` may write `bytes` more.
    async fn pace(&self, tenant: &Arc<str>, bytes: usize) {
        let wait = {
            let mut full_at = self
                .full_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let at = full_at.entry(Arc::clone(tenant)).or_insert(now);
            // Each byte pushes the time the bucket is full again further
            // out; past a burst's worth ahead of now, the writer waits.
            *at = (*at).max(now) + self.pace.time_for(bytes as u64);
            at.saturating_duration_since(now + self.pace.time_for(self.pace.burst_bytes))
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[async_trait::async_trait]
impl KvBackend for PacedKv {
    async fn get(&self, ns: &Namespace, key: &str) -> KvResult<Option<Vec<u8>>> {
        self.inner.get(ns, key).await
    }

    async fn set(&self, ns: &Namespace, key: &str, value: &[u8], quota: &KvQuota) -> KvResult<()> {
        self.pace(&ns.tenant, key.len() + value.len()).await;
        self.inner.set(ns, key, value, quota).await
    }

    async fn delete(&self, ns: &Namespace, key: &str) -> KvResult<()> {
        self.pace(&ns.tenant, key.len()).await;
        self.inner.delete(ns, key).await
    }

    async fn exists(&self, ns: &Namespace, key: &str) -> KvResult<bool> {
        self.inner.exists(ns, key).await
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> KvResult<Vec<String>> {
        self.inner.list_keys(ns, after, limit).await
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> KvResult<i64> {
        // The stored counter is at most 20 digits.
        self.pace(&ns.tenant, key.len() + 20).await;
        self.inner.increment(ns, key, delta, quota).await
    }

    async fn swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        quota: &KvQuota,
    ) -> KvResult<Result<(), Option<Vec<u8>>>> {
        self.pace(&ns.tenant, key.len() + value.len()).await;
        self.inner.swap(ns, key, expected, value, quota).await
    }

    async fn delete_scope(&self, tenant: &str, service: Option<&str>) -> KvResult<()> {
        self.inner.delete_scope(tenant, service).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::sharded::TenantShardedKv;

    #[tokio::test(start_paused = true)]
    async fn a_tenant_past_its_write_rate_waits_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pace = WritePace {
            bytes_per_second: 8 << 20,
            burst_bytes: 16 << 20,
        };
        let kv = PacedKv::new(Arc::new(TenantShardedKv::new(dir.path())), pace);
        let (bulk, small) = (Arc::from("bulk"), Arc::from("small"));
        let started = Instant::now();
        // A burst goes at once; 8 MiB more waits about a second.
        kv.pace(&bulk, 16 << 20).await;
        assert!(started.elapsed() < Duration::from_millis(1));
        kv.pace(&bulk, 8 << 20).await;
        let waited = started.elapsed();
        assert!((900..1100).contains(&waited.as_millis()), "{waited:?}");
        let other = Instant::now();
        kv.pace(&small, 100).await;
        assert!(other.elapsed() < Duration::from_millis(1));
    }
}
