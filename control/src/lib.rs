//! The control plane's core API: tenants, tokens, versions, deployments.
//! The admin routes, the CLI (through the admin API) and the tests all call
//! it; every change is recorded in the [`Store`] first and then made live by
//! rebuilding the routing table and swapping it in one atomic step.

use berth_api::{TenantLimits, TenantName};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::secrets::{SealedSecret, SecretError, SecretScope, SecretsKey};
use crate::store::blobs::{BlobError, BlobStore};
use crate::store::{Store, StoreError, TenantRecord, TokenRecord, Usage, VersionRecord};
use berth_runtime::admission::TenantGate;
use berth_runtime::config::ServiceSpec;
use berth_runtime::host::{DEFAULT_TENANT, Host, LoadedService};
use berth_runtime::logbook::Logbook;
use berth_runtime::quotas::TenantQuotas;
use berth_runtime::router::Route;

pub mod actor;
mod collect;
mod compile;
mod declared;
mod deploys;
pub mod events;
mod fair;
mod reads;
mod reseal;
mod rules;
pub mod secrets;
pub mod store;
mod sync;
mod table;

use rules::{check_counts, validate_domain};

/// Why a control-plane operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upload(#[from] BlobError),
    #[error("{0}")]
    Unprocessable(String),
    #[error("the component did not compile within {0:?}")]
    CompileTimeout(Duration),
    #[error("{0}")]
    Conflict(String),
    /// A tenant quota on counts (services, versions) would be exceeded.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The tenant's storage quota would be exceeded.
    #[error("{0}")]
    StorageQuotaExceeded(String),
    /// A service asked for a limit above its tenant's.
    #[error("{0}")]
    LimitAboveTenant(String),
    /// The tenant has as much compiling or uploading in progress as it may:
    /// try again shortly (429 with `Retry-After`).
    #[error("{0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Settings of the control plane, fixed for the life of a host.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Tenants are reachable at `{tenant}.{base_domain}`.
    pub base_domain: String,
    /// Largest component upload; 413 past it.
    pub max_upload_bytes: u64,
    /// How long compiling one upload may take.
    pub compile_timeout: Duration,
    /// Seals secrets at rest; without it they are stored as they are.
    pub secrets_key: Option<SecretsKey>,
    /// How old an unreferenced blob in a shared store must be before it is
    /// collected: longer than any upload takes from putting its blob to
    /// recording its version, on any host of the fleet.
    pub shared_blob_grace: Duration,
    /// How this host delivers events and fires schedules.
    pub events: events::EventSettings,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            base_domain: "localhost".into(),
            max_upload_bytes: 100 * 1024 * 1024,
            compile_timeout: Duration::from_secs(120),
            secrets_key: None,
            shared_blob_grace: Duration::from_secs(3600),
            events: events::EventSettings::default(),
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub version: VersionRecord,
    /// False when the same bytes were already stored under the label.
    pub created: bool,
    pub compile_ms: u64,
}

pub struct ControlPlane {
    /// Itself, for work that outlives the call that started it.
    me: std::sync::Weak<ControlPlane>,
    host: Arc<Host>,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    settings: ControlSettings,
    logbook: Arc<Logbook>,
    /// Services from `berth.toml`, always part of the default tenant.
    static_routes: Vec<Route>,
    static_services: Vec<LoadedService>,
    /// Compiles uploads in turn across tenants and keeps what it linked.
    compiler: compile::Compiler,
    /// Digests of uploads in progress, with how many: their bytes are kept
    /// whatever a collection finds (`collect.rs`).
    pins: tokio::sync::Mutex<HashMap<String, usize>>,
    /// Uploads in progress, by tenant.
    uploading: Arc<Mutex<HashMap<String, usize>>>,
    /// Serialises rebuilds, so an older snapshot never replaces a newer one.
    applied: tokio::sync::Mutex<i64>,
    /// Each tenant's admission gate, kept across rebuilds while its quotas
    /// stay the same.
    gates: Mutex<HashMap<String, Arc<TenantGate>>>,
    /// Makes "check the quota, then store the version" one step, so two
    /// uploads cannot both take the last place.
    quota_check: tokio::sync::Mutex<()>,
    /// Whether the last contact with the store worked; see `sync`.
    store_reachable: std::sync::atomic::AtomicBool,
    /// Topics, subscriptions and schedules.
    events: Arc<events::Events>,
    /// Services from `berth.toml`, as the admin API shows them.
    declared: Vec<declared::DeclaredService>,
}

impl ControlPlane {
    /// Opens the control plane over `store`, restores every deployment from
    /// it (from the compile cache where possible) and makes it live.
    pub async fn open(
        host: Arc<Host>,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        settings: ControlSettings,
        logbook: Arc<Logbook>,
        config: &[ServiceSpec],
    ) -> Result<Arc<Self>, ControlError> {
        let (static_routes, static_services) = host
            .prepare_services(config)
            .map_err(|e| ControlError::InvalidInput(e.to_string()))?;
        store.ensure_tenant(DEFAULT_TENANT).await?;
        let compiler = compile::Compiler::new(Arc::clone(&host), settings.compile_timeout);
        let log: Arc<dyn store::events::EventLog> = Arc::clone(&store) as _;
        let target: Arc<dyn events::EventTarget> = Arc::clone(&host) as _;
        let events = events::Events::new(log, target, settings.events.clone());
        let ingress: std::sync::Weak<dyn berth_runtime::capabilities::calls::EventIngress> =
            Arc::downgrade(&events) as _;
        host.set_event_ingress(ingress);
        let declared = config
            .iter()
            .zip(&static_services)
            .map(|(spec, loaded)| {
                declared::DeclaredService::new(spec.clone(), loaded.digest.clone())
            })
            .collect();
        let control = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            host,
            store,
            blobs,
            settings,
            logbook,
            static_routes,
            static_services,
            compiler,
            pins: tokio::sync::Mutex::new(HashMap::new()),
            uploading: Arc::default(),
            applied: tokio::sync::Mutex::new(-1),
            gates: Mutex::new(HashMap::new()),
            quota_check: tokio::sync::Mutex::new(()),
            store_reachable: true.into(),
            events,
            declared,
        });
        control.apply().await?;
        control.events.start().await?;
        Ok(control)
    }

    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    pub fn logbook(&self) -> &Arc<Logbook> {
        &self.logbook
    }

    pub fn static_services(&self) -> &[LoadedService] {
        &self.static_services
    }

    pub fn events(&self) -> &Arc<events::Events> {
        &self.events
    }

    pub fn settings(&self) -> &ControlSettings {
        &self.settings
    }

    /// Creates a tenant and its first token in one step.
    pub async fn create_tenant(
        &self,
        tenant: &TenantName,
        first_token: &TokenRecord,
        hash: &str,
    ) -> Result<(), ControlError> {
        self.store.create_tenant(tenant, first_token, hash).await?;
        self.apply().await
    }

    pub async fn update_tenant(
        &self,
        tenant: &str,
        domains: Option<Vec<String>>,
        limits: Option<TenantLimits>,
    ) -> Result<TenantRecord, ControlError> {
        let domains = domains
            .map(|list| {
                list.iter()
                    .map(|d| validate_domain(d))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if let Some(limits) = &limits {
            TenantQuotas::from_limits(limits)
                .map_err(|e| ControlError::InvalidInput(e.to_string()))?;
        }
        let record = self.store.update_tenant(tenant, domains, limits).await?;
        self.apply().await?;
        Ok(record)
    }

    pub async fn delete_tenant(&self, tenant: &str) -> Result<(), ControlError> {
        if tenant == DEFAULT_TENANT {
            return Err(ControlError::Conflict(
                "the default tenant cannot be deleted".into(),
            ));
        }
        self.store.delete_tenant(tenant).await?;
        self.forget_data(tenant, None).await;
        self.apply_and_collect().await
    }

    /// After a deletion: serve what is left, then delete the stored bytes
    /// nothing names any more. The deletion already happened, so a failed
    /// collection is only logged (the next one picks its bytes up).
    async fn apply_and_collect(&self) -> Result<(), ControlError> {
        self.apply().await?;
        if let Err(error) = self.collect_garbage().await {
            tracing::warn!(%error, "cannot collect unreferenced stored bytes");
        }
        Ok(())
    }

    /// Removes the key-value data, stats and logs of a deleted tenant or
    /// service. The deletion itself already happened, so a failure here is
    /// logged.
    async fn forget_data(&self, tenant: &str, service: Option<&str>) {
        self.host.telemetry().forget(tenant, service);
        self.logbook.forget(tenant, service);
        if let Err(error) = self.host.kv().delete_scope(tenant, service).await {
            tracing::warn!(tenant, service, %error, "cannot delete key-value data");
        }
    }

    /// Seals a secret value for storing, bound to its tenant, service and
    /// key name.
    pub fn seal(&self, scope: SecretScope<'_>, value: &str) -> Result<SealedSecret, ControlError> {
        SealedSecret::seal(self.settings.secrets_key.as_ref(), scope, value).map_err(|e| match e {
            SecretError::NoKey => ControlError::Unprocessable(e.to_string()),
            other => ControlError::Internal(other.to_string()),
        })
    }

    /// The tenant's quotas as stored; the tenant must exist.
    pub async fn quotas(&self, tenant: &str) -> Result<TenantQuotas, ControlError> {
        let record = self.store.tenant(tenant).await?;
        TenantQuotas::from_limits(&record.limits).map_err(|e| ControlError::Internal(e.to_string()))
    }

    async fn usage(&self, tenant: &str) -> Result<Usage, ControlError> {
        Ok(self.store.usage(tenant).await?)
    }

    /// The tenant's usage, once it is clear that one more version of
    /// `service` fits its service and version quotas.
    async fn check_counts(
        &self,
        tenant: &str,
        service: &str,
        quotas: &TenantQuotas,
    ) -> Result<Usage, ControlError> {
        let usage = self.usage(tenant).await?;
        let exists = self.store.service(tenant, service).await.is_ok();
        check_counts(tenant, service, quotas, &usage, exists)?;
        Ok(usage)
    }

    fn check_static_route(&self, tenant: &str, route: &str) -> Result<(), ControlError> {
        if tenant == DEFAULT_TENANT && self.static_routes.iter().any(|r| r.prefix == route) {
            return Err(ControlError::Conflict(format!(
                "route `{route}` is taken by a service declared in the config file"
            )));
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
