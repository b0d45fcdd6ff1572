//! The host's durable state: tenants, token hashes, services, versions and
//! deployments behind [`Store`], and component bytes in [`blobs`].
//!
//! Every change that must be seen whole happens in one transaction inside the
//! store, so a host killed at any moment restarts with the state before or
//! after a change, never half of it. [`sql::SqlStore`] keeps it in SQLite
//! for a single host or in Postgres for a fleet.

pub mod blobs;
pub mod events;
mod listen;
pub mod sql;

use berth_api::events::{ScheduleSpec, SubscriptionSpec};
use berth_api::limits::{ServiceLimits, TenantLimits};
use berth_api::reuse::InstanceReuse;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a store operation can fail with; the admin API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the state database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the state database could not be migrated: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
    /// The record changed since it was read; the store reads it again.
    #[error("changed concurrently")]
    Stale,
    /// A tenant's events would take more than its quota.
    #[error("{0}")]
    EventQuota(events::QuotaHit),
}

impl StoreError {
    /// The state database cannot be reached now: the host serves on from
    /// what it last synced, but cannot change anything.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::Protocol(_)
            )
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRecord {
    pub name: String,
    pub domains: Vec<String>,
    /// The operator's limits for the tenant; unset ones take defaults.
    pub limits: TenantLimits,
    pub created_at: i64,
}

/// A token as it is stored: never its secret, only its hash (kept apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub tenant: String,
    pub description: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub label: String,
    pub digest: String,
    pub size: u64,
    pub created_at: i64,
}

/// Which versions serve a service, by label, with their weights. One entry
/// is a plain activation; several are a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment(pub BTreeMap<String, u32>);

impl Deployment {
    pub fn single(label: &str) -> Self {
        Self(BTreeMap::from([(label.to_string(), 100)]))
    }

    /// The label when exactly one version serves.
    pub fn active(&self) -> Option<&str> {
        match self.0.len() {
            1 => self.0.keys().next().map(String::as_str),
            _ => None,
        }
    }

    pub fn uses(&self, label: &str) -> bool {
        self.0.get(label).is_some_and(|w| *w > 0)
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// A service's settings other than its code: what `PUT .../services/{s}`
/// may set besides the route and the deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSettings {
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: ServiceLimits,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Key-value buckets besides `default`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<String>,
    /// Secret configuration values, sealed; the guest reads them like
    /// `config`, the admin API lists only their names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, crate::secrets::SealedSecret>,
    /// Environment variables the guest reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How instances are reused; empty is a fresh instance per request.
    #[serde(default, skip_serializing_if = "InstanceReuse::is_default")]
    pub reuse: InstanceReuse,
    /// Paths of the service called on a clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleSpec>,
    /// Topics of its tenant whose events the service receives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionSpec>,
    /// The schedules and subscriptions that went with the previous
    /// deployment: a rollback brings them back with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_events: Option<ServiceEvents>,
}

/// A service's schedules and subscriptions, kept together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvents {
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSpec>,
}

impl ServiceSettings {
    pub fn events(&self) -> ServiceEvents {
        ServiceEvents {
            schedules: self.schedules.clone(),
            subscriptions: self.subscriptions.clone(),
        }
    }

    /// Puts the events of the previous deployment back, keeping the ones
    /// replaced as the new previous (a second rollback undoes the first).
    pub fn roll_back_events(&mut self) {
        if let Some(previous) = self.previous_events.take() {
            self.previous_events = Some(self.events());
            self.schedules = previous.schedules;
            self.subscriptions = previous.subscriptions;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    pub tenant: String,
    pub name: String,
    pub route: Option<String>,
    pub deployment: Option<Deployment>,
    /// What served before the last change, the default rollback target.
    pub previous: Option<Deployment>,
    pub settings: ServiceSettings,
    pub versions: Vec<VersionRecord>,
    pub updated_at: i64,
    /// Bumped by every write of the service, which is made only over the
    /// revision it was read at.
    pub revision: i64,
}

impl ServiceRecord {
    pub fn version(&self, label: &str) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.label == label)
    }
}

/// A change to a service; `None` leaves that part as it is.
#[derive(Debug, Clone, Default)]
pub struct ServiceUpdate {
    pub route: Option<String>,
    pub deployment: Option<Deployment>,
    pub settings: Option<SettingsChange>,
}

/// A change to a service's settings. The store applies it to the record it
/// reads inside its revision retry, so concurrent changes to different
/// parts (two secrets, say) both land.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    /// Replaces the whole set.
    pub config: Option<BTreeMap<String, String>>,
    /// Replaces the whole set.
    pub limits: Option<ServiceLimits>,
    /// Replaces the whole list.
    pub allowed_outbound_hosts: Option<Vec<String>>,
    /// Replaces the whole list.
    pub buckets: Option<Vec<String>>,
    /// Each key given is set to its sealed value, or removed (`None`);
    /// other secrets stay.
    pub secrets: BTreeMap<String, Option<crate::secrets::SealedSecret>>,
    /// Replaces the whole set.
    pub env: Option<BTreeMap<String, String>>,
    /// Replaces the policy.
    pub reuse: Option<InstanceReuse>,
    /// Replaces the whole list.
    pub schedules: Option<Vec<ScheduleSpec>>,
    /// Replaces the whole list.
    pub subscriptions: Option<Vec<SubscriptionSpec>>,
}

impl SettingsChange {
    pub fn apply_to(&self, settings: &mut ServiceSettings) {
        if let Some(config) = &self.config {
            settings.config = config.clone();
        }
        if let Some(limits) = &self.limits {
            settings.limits = limits.clone();
        }
        if let Some(hosts) = &self.allowed_outbound_hosts {
            settings.allowed_outbound_hosts = hosts.clone();
        }
        if let Some(buckets) = &self.buckets {
            settings.buckets = buckets.clone();
        }
        if let Some(env) = &self.env {
            settings.env = env.clone();
        }
        if let Some(reuse) = &self.reuse {
            settings.reuse = reuse.clone();
        }
        if let Some(schedules) = &self.schedules {
            settings.schedules = schedules.clone();
        }
        if let Some(subscriptions) = &self.subscriptions {
            settings.subscriptions = subscriptions.clone();
        }
        for (key, value) in &self.secrets {
            match value {
                Some(sealed) => {
                    settings.secrets.insert(key.clone(), sealed.clone());
                }
                None => {
                    settings.secrets.remove(key);
                }
            }
        }
    }

    /// `settings` with this change applied.
    pub fn applied(&self, settings: &ServiceSettings) -> ServiceSettings {
        let mut next = settings.clone();
        self.apply_to(&mut next);
        next
    }
}

/// What storing a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutVersion {
    Created,
    /// The same bytes were already stored under this label.
    Unchanged,
}

/// What a tenant's services and versions take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub services: u32,
    pub versions: u32,
    /// Component bytes over all versions.
    pub bytes: u64,
}

/// One change to a service, for its deploy history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployEvent {
    pub tenant: String,
    pub service: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// `upload`, `deploy`, `configure` or `rollback`.
    pub action: String,
    /// What changed: the version uploaded, or the split now serving.
    pub detail: String,
    /// Who changed it: `operator`, or `token {id}`; empty when unknown.
    pub actor: String,
}

impl Deployment {
    /// `v2` for a single version, `v1=90, v2=10` for a split.
    pub fn describe(&self) -> String {
        match self.active() {
            Some(label) => label.to_string(),
            None => self
                .0
                .iter()
                .map(|(label, weight)| format!("{label}={weight}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Everything needed to rebuild the routing table.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generation: i64,
    pub tenants: Vec<TenantRecord>,
    pub services: Vec<ServiceRecord>,
}

/// The control plane's metadata, and its event log. Implementations make
/// each method atomic.
#[async_trait::async_trait]
pub trait Store: events::EventLog + Send + Sync {
    /// Creates a tenant together with its first token, in one step: a
    /// tenant never exists without a way in.
    async fn create_tenant(
        &self,
        name: &str,
        first_token: &TokenRecord,
        hash: &str,
    ) -> StoreResult<()>;
    /// Creates the tenant unless it exists; for the built-in `default` tenant.
    async fn ensure_tenant(&self, name: &str) -> StoreResult<()>;
    async fn tenant(&self, name: &str) -> StoreResult<TenantRecord>;
    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>>;
    async fn update_tenant(
        &self,
        name: &str,
        domains: Option<Vec<String>>,
        limits: Option<TenantLimits>,
    ) -> StoreResult<TenantRecord>;
    async fn delete_tenant(&self, name: &str) -> StoreResult<()>;

    async fn create_token(&self, token: &TokenRecord, hash: &str) -> StoreResult<()>;
    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>>;
    async fn revoke_token(&self, tenant: &str, id: &str) -> StoreResult<()>;
    /// The token whose secret hashes to `hash`, with that stored hash.
    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<(TokenRecord, String)>>;

    /// Records a version, creating the service on its first version. Other
    /// bytes under an existing label are a conflict.
    async fn put_version(
        &self,
        tenant: &str,
        service: &str,
        version: &VersionRecord,
    ) -> StoreResult<PutVersion>;
    /// Refused while the version serves.
    async fn delete_version(&self, tenant: &str, service: &str, label: &str) -> StoreResult<()>;

    async fn service(&self, tenant: &str, service: &str) -> StoreResult<ServiceRecord>;
    async fn list_services(&self, tenant: &str) -> StoreResult<Vec<ServiceRecord>>;
    async fn update_service(
        &self,
        tenant: &str,
        service: &str,
        update: ServiceUpdate,
    ) -> StoreResult<ServiceRecord>;
    /// Back to `to`, or to the previous deployment.
    async fn rollback(
        &self,
        tenant: &str,
        service: &str,
        to: Option<&str>,
    ) -> StoreResult<ServiceRecord>;
    async fn delete_service(&self, tenant: &str, service: &str) -> StoreResult<()>;

    /// Appends to a service's deploy history.
    async fn record_event(&self, event: &DeployEvent) -> StoreResult<()>;
    /// A service's latest `limit` events, oldest first.
    async fn history(
        &self,
        tenant: &str,
        service: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeployEvent>>;

    /// What the tenant's services and versions take, for its quotas; one
    /// counting query, so checking a quota does not grow with the tenant.
    async fn usage(&self, tenant: &str) -> StoreResult<Usage>;

    async fn snapshot(&self) -> StoreResult<Snapshot>;
    /// Every digest any version refers to, so unreferenced blobs can go.
    async fn digests(&self) -> StoreResult<Vec<String>>;

    /// Bumped by every change: a host whose view is of this generation is
    /// current.
    async fn generation(&self) -> StoreResult<i64>;

    /// Whether component bytes are kept here too, for other hosts to fetch;
    /// a single host keeps them only in its data directory.
    fn holds_blobs(&self) -> bool {
        false
    }
    /// Keeps a component's bytes under their digest; called before any
    /// version names the digest, so a host that sees the version can fetch
    /// them.
    async fn put_blob(&self, digest: &str, bytes: &[u8]) -> StoreResult<()>;
    /// The bytes stored under `digest`, unverified: the caller checks them.
    async fn blob(&self, digest: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Deletes the shared blobs no version names that were put before
    /// `put_before` (Unix milliseconds); returns how many went.
    async fn delete_unreferenced_blobs(&self, put_before: i64) -> StoreResult<u64>;

    /// Makes values overwritten so far unreadable from the store's files
    /// (a single host's SQLite keeps old pages until a checkpoint): used
    /// after secrets stored in plain text are sealed.
    async fn purge_overwritten(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Returns when another host may have changed something, or after
    /// `at_most`; a store no other host writes to just waits.
    async fn wait_for_change(&self, at_most: std::time::Duration);
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
