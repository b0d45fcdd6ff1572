//! Key-value data for services: what `wasi:keyvalue` reads and writes.
//!
//! Every key lives in a [`Namespace`] of tenant, service and bucket, so one
//! service can never name another's data. Writes are held to the tenant's
//! [`KvQuota`]. [`sqlite::SqliteKv`] keeps the data in a file of the data
//! directory; a backend for a fleet (Postgres, Redis) implements
//! [`KvBackend`] the same way.

pub mod paced;
pub mod postgres;
pub mod sharded;
pub mod sqlite;

use std::sync::Arc;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Keys returned by one `list-keys` page.
pub const LIST_PAGE: u32 = 1000;

/// Where a key lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub tenant: Arc<str>,
    pub service: Arc<str>,
    pub bucket: Arc<str>,
}

/// What a tenant may store, over all its services and buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvQuota {
    pub keys: u64,
    /// Largest single value.
    pub value_bytes: u64,
    /// Keys and values together.
    pub total_bytes: u64,
}

impl Default for KvQuota {
    fn default() -> Self {
        Self {
            keys: 100_000,
            value_bytes: 1024 * 1024,
            total_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Why a key-value operation failed; the guest sees the message.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("{0}")]
    Invalid(String),
    #[error("key-value store failed: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for KvError {
    fn from(error: sqlx::Error) -> Self {
        Self::Backend(error.to_string())
    }
}

pub type KvResult<T> = Result<T, KvError>;

/// Stored data, by namespace. Implementations make each method atomic;
/// `increment` and `swap` are atomic with respect to every other write.
#[async_trait::async_trait]
pub trait KvBackend: Send + Sync {
    async fn get(&self, ns: &Namespace, key: &str) -> KvResult<Option<Vec<u8>>>;
    async fn set(&self, ns: &Namespace, key: &str, value: &[u8], quota: &KvQuota) -> KvResult<()>;
    async fn delete(&self, ns: &Namespace, key: &str) -> KvResult<()>;
    async fn exists(&self, ns: &Namespace, key: &str) -> KvResult<bool>;
    /// Up to `limit` keys after `after`, in order.
    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> KvResult<Vec<String>>;
    /// Adds `delta` to the decimal integer stored at `key` (absent counts as
    /// 0) and returns the sum.
    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> KvResult<i64>;
    /// Stores `value` if the key still holds `expected` (`None`: absent);
    /// otherwise returns what it holds now.
    async fn swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
        quota: &KvQuota,
    ) -> KvResult<Result<(), Option<Vec<u8>>>>;
    /// Removes every key of a tenant, or of one of its services.
    async fn delete_scope(&self, tenant: &str, service: Option<&str>) -> KvResult<()>;
}

/// Checks a key and a value against the fixed and per-tenant limits.
pub fn check_entry(key: &str, value: Option<&[u8]>, quota: &KvQuota) -> KvResult<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::Invalid(format!(
            "a key must be 1 to {MAX_KEY_BYTES} bytes long"
        )));
    }
    if let Some(value) = value
        && value.len() as u64 > quota.value_bytes
    {
        return Err(KvError::QuotaExceeded(format!(
            "value of {} bytes is above the tenant's limit of {} bytes",
            value.len(),
            quota.value_bytes
        )));
    }
    Ok(())
}

/// What the counter stored as `old` (absent counts as 0) becomes after
/// adding `delta`.
pub fn incremented(old: Option<&[u8]>, delta: i64) -> KvResult<i64> {
    let base = old.map(parse_counter).transpose()?.unwrap_or(0);
    base.checked_add(delta)
        .ok_or_else(|| KvError::Invalid("the counter would overflow".into()))
}

/// The counter a value holds: decimal text, which also reads as a JSON number.
pub fn parse_counter(value: &[u8]) -> KvResult<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| KvError::Invalid("the value is not a decimal integer".into()))
}

/// What a tenant stores now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub keys: u64,
    /// Keys and values together.
    pub bytes: u64,
}

impl Usage {
    /// What the tenant stores once a value of `new_len` bytes replaces one
    /// of `old_len` bytes (`None`: the key was absent) at `key`.
    pub fn after_write(self, key: &str, old_len: Option<usize>, new_len: usize) -> Usage {
        Usage {
            keys: self.keys + u64::from(old_len.is_none()),
            bytes: (self.bytes + entry_bytes(key, new_len))
                .saturating_sub(old_len.map_or(0, |len| entry_bytes(key, len))),
        }
    }
}

/// What one entry counts against the byte quota: its key and value.
fn entry_bytes(key: &str, value_len: usize) -> u64 {
    (key.len() + value_len) as u64
}

/// What the tenant stores once `value` replaces a value of `old_len` bytes
/// (`None`: the key was absent) at `key`, if its quota allows that.
pub fn usage_after_write(
    usage: Usage,
    key: &str,
    old_len: Option<usize>,
    value: &[u8],
    quota: &KvQuota,
) -> KvResult<Usage> {
    check_entry(key, Some(value), quota)?;
    let next = usage.after_write(key, old_len, value.len());
    if old_len.is_none() && next.keys > quota.keys {
        return Err(KvError::QuotaExceeded(format!(
            "the tenant stores {} keys, its limit",
            usage.keys
        )));
    }
    // A write that shrinks what the tenant stores is always allowed.
    if next.bytes > usage.bytes && next.bytes > quota.total_bytes {
        return Err(KvError::QuotaExceeded(format!(
            "the tenant stores {} of its {} bytes of key-value data; this write does not fit",
            usage.bytes, quota.total_bytes
        )));
    }
    Ok(next)
}
