//! The control plane's core API: tenants, tokens, versions, deployments.
//! The admin routes, the CLI (through the admin API) and the tests all call
//! it; every change is recorded in the [`Store`] first and then made live by
//! rebuilding the routing table and swapping it in one atomic step.

use bytes::Bytes;
use futures::Stream;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::admission::TenantGate;
use crate::config::{ServiceSpec, normalize_route};
use crate::host::{DEFAULT_TENANT, Host, LoadedService};
use crate::invoke::HostState;
use crate::logbook::Logbook;
use crate::quotas::TenantQuotas;
use crate::router::Route;
use crate::secrets::{SealedSecret, SecretError, SecretScope, SecretsKey};
use crate::store::blobs::{BlobError, BlobStore};
use crate::store::{
    DeployEvent, Deployment, PutVersion, ServiceRecord, ServiceUpdate, Store, StoreError,
    TenantRecord, TokenRecord, Usage, VersionRecord, now, now_millis,
};
use crate::telemetry::metrics;

mod collect;
mod compile;
mod fair;
mod rules;
mod secrets;
mod sync;
mod table;

use compile::Tier;

pub use rules::validate_label;
use rules::{
    check_capabilities, check_counts, limits_spec, name, resolve_settings, storage_exceeded,
    validate_domain,
};

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
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            base_domain: "localhost".into(),
            max_upload_bytes: 100 * 1024 * 1024,
            compile_timeout: Duration::from_secs(120),
            secrets_key: None,
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
    /// Linked components by digest, shared by every version that uses them.
    compiled: Mutex<HashMap<String, ProxyPre<HostState>>>,
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
    /// One compile at a time: compiling a component takes every core it can
    /// get and memory outside any guest's limit.
    compiling: Arc<fair::FairSlots>,
    /// One quick (Winch) compile at a time, apart from `compiling`.
    quick_compiling: Arc<fair::FairSlots>,
    /// Makes "check the quota, then store the version" one step, so two
    /// uploads cannot both take the last place.
    quota_check: tokio::sync::Mutex<()>,
    /// Whether the last contact with the store worked; see `sync`.
    store_reachable: std::sync::atomic::AtomicBool,
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
        let control = Arc::new_cyclic(|me| Self {
            me: me.clone(),
            host,
            store,
            blobs,
            settings,
            logbook,
            static_routes,
            static_services,
            compiled: Mutex::new(HashMap::new()),
            pins: tokio::sync::Mutex::new(HashMap::new()),
            uploading: Arc::default(),
            applied: tokio::sync::Mutex::new(-1),
            gates: Mutex::new(HashMap::new()),
            quota_check: tokio::sync::Mutex::new(()),
            compiling: fair::FairSlots::new(1, fair::QUEUE_PER_TENANT),
            quick_compiling: fair::FairSlots::new(1, fair::QUEUE_PER_TENANT),
            store_reachable: true.into(),
        });
        control.apply().await?;
        Ok(control)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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

    pub fn settings(&self) -> &ControlSettings {
        &self.settings
    }

    /// Creates a tenant and its first token in one step.
    pub async fn create_tenant(
        &self,
        tenant: &str,
        first_token: &TokenRecord,
        hash: &str,
    ) -> Result<(), ControlError> {
        name("tenant name", tenant)?;
        self.store.create_tenant(tenant, first_token, hash).await?;
        self.apply().await
    }

    pub async fn update_tenant(
        &self,
        tenant: &str,
        domains: Option<Vec<String>>,
        limits: Option<serde_json::Value>,
    ) -> Result<TenantRecord, ControlError> {
        let domains = domains
            .map(|list| {
                list.iter()
                    .map(|d| validate_domain(d))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        if let Some(limits) = &limits {
            TenantQuotas::from_json(limits)
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

    /// Streams, checks, compiles and stores one version. Nothing is stored
    /// unless every step succeeds.
    pub async fn upload_version<S, E>(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
        body: S,
    ) -> Result<Uploaded, ControlError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let started = Instant::now();
        let outcome = self.upload(tenant, service, label, body).await;
        metrics::deploy_finished(tenant, "upload", outcome.is_ok(), started.elapsed());
        if let Ok(uploaded) = &outcome
            && uploaded.created
        {
            let detail = format!("{label} ({})", uploaded.version.digest);
            self.remember(tenant, service, "upload", detail).await;
        }
        outcome
    }

    async fn upload<S, E>(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
        body: S,
    ) -> Result<Uploaded, ControlError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        name("service name", service)?;
        validate_label(label).map_err(ControlError::InvalidInput)?;
        let _uploading = fair::UploadSlot::take(&self.uploading, tenant)?;
        let quotas = self.quotas(tenant).await?;
        let usage = self.check_counts(tenant, service, &quotas).await?;
        let storage_left = quotas.storage_bytes.saturating_sub(usage.bytes);
        let limit = self.settings.max_upload_bytes.min(storage_left);
        let received = match self.blobs.receive(body, limit).await {
            Err(BlobError::TooLarge { .. }) if limit < self.settings.max_upload_bytes => {
                return Err(storage_exceeded(tenant, &quotas, &usage));
            }
            other => other?,
        };
        let pin = self.pin(&received.digest).await;
        let stored = self
            .store_received(tenant, service, label, &quotas, received)
            .await;
        self.unpin(pin).await;
        stored
    }

    /// Checks, compiles and records a complete upload.
    async fn store_received(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
        quotas: &TenantQuotas,
        received: crate::store::blobs::Received,
    ) -> Result<Uploaded, ControlError> {
        if let Ok(existing) = self.store.service(tenant, service).await
            && let Some(version) = existing.version(label)
        {
            if version.digest == received.digest {
                return Ok(Uploaded {
                    version: version.clone(),
                    created: false,
                    compile_ms: 0,
                });
            }
            return Err(ControlError::Conflict(format!(
                "version `{label}` of service `{service}` already holds {}; versions are immutable, upload under a new label",
                version.digest
            )));
        }

        let started = Instant::now();
        let mut optimise_later = None;
        let linked = lock(&self.compiled).get(&received.digest).cloned();
        let pre = match linked {
            // The same bytes are already checked, compiled and linked here.
            Some(pre) => {
                metrics::compile_cache_hit("memory");
                pre
            }
            None => {
                let bytes = tokio::fs::read(received.path()).await.map_err(|e| {
                    ControlError::Internal(format!("cannot read the upload back: {e}"))
                })?;
                match self.compile_tiered(tenant, bytes).await? {
                    Tier::Full(pre) => pre,
                    Tier::Quick(pre, bytes) => {
                        optimise_later = Some(bytes);
                        pre
                    }
                }
            }
        };
        let compile_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let digest = received.digest.clone();
        let size = received.size;
        let blobs = self.blobs.clone();
        let path = tokio::task::spawn_blocking(move || blobs.persist(received))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))??;
        if self.store.holds_blobs() {
            // Before any version names the digest, so every host that sees
            // the version can fetch its bytes.
            let bytes = tokio::fs::read(&path).await.map_err(BlobError::Io)?;
            self.store.put_blob(&digest, &bytes).await?;
        }
        lock(&self.compiled).insert(digest.clone(), pre);

        let version = VersionRecord {
            label: label.to_string(),
            digest,
            size,
            created_at: now(),
        };
        let outcome = {
            let _one_at_a_time = self.quota_check.lock().await;
            let usage = self.check_counts(tenant, service, quotas).await?;
            if usage.bytes.saturating_add(size) > quotas.storage_bytes {
                return Err(storage_exceeded(tenant, quotas, &usage));
            }
            self.store.put_version(tenant, service, &version).await?
        };
        tracing::info!(tenant, service, version = label, digest = %version.digest, compile_ms, "version stored");
        if let Some(bytes) = optimise_later {
            self.optimise_in_background(tenant, version.digest.clone(), bytes);
        }
        Ok(Uploaded {
            version,
            created: outcome == PutVersion::Created,
            compile_ms,
        })
    }

    /// Sets a service's route, deployment and settings in one change.
    pub async fn configure(
        &self,
        tenant: &str,
        service: &str,
        update: ServiceUpdate,
    ) -> Result<ServiceRecord, ControlError> {
        let started = Instant::now();
        let action = if update.deployment.is_some() {
            "deploy"
        } else {
            "configure"
        };
        let mut changed = Vec::new();
        if let Some(route) = &update.route {
            changed.push(format!("route {route}"));
        }
        if update.settings.is_some() {
            changed.push("settings".to_string());
        }
        let outcome = self.reconfigure(tenant, service, update).await;
        metrics::deploy_finished(tenant, action, outcome.is_ok(), started.elapsed());
        if let Ok(record) = &outcome {
            if action == "deploy"
                && let Some(deployment) = &record.deployment
            {
                changed.insert(0, deployment.describe());
            }
            self.remember(tenant, service, action, changed.join("; "))
                .await;
        }
        outcome
    }

    async fn reconfigure(
        &self,
        tenant: &str,
        service: &str,
        mut update: ServiceUpdate,
    ) -> Result<ServiceRecord, ControlError> {
        if let Some(route) = &update.route {
            update.route = Some(normalize_route(route).map_err(ControlError::InvalidInput)?);
        }
        // The route the service will have, checked before anything is stored.
        let current = self.store.service(tenant, service).await?;
        let route = update
            .route
            .clone()
            .or(current.route)
            .unwrap_or_else(|| format!("/{service}"));
        self.check_static_route(tenant, &route)?;
        if let Some(deployment) = &update.deployment {
            if deployment.0.is_empty() || deployment.0.values().all(|w| *w == 0) {
                return Err(ControlError::InvalidInput(
                    "a split needs at least one version with a weight above 0".into(),
                ));
            }
            for label in deployment.labels() {
                validate_label(label).map_err(ControlError::InvalidInput)?;
            }
        }
        if let Some(change) = &update.settings {
            // Checked as they would be now; the store applies the change to
            // the record it reads inside its revision retry.
            let settings = &change.applied(&current.settings);
            check_capabilities(settings)?;
            let quotas = self.quotas(tenant).await?;
            resolve_settings(settings, &quotas)?;
            let asked = limits_spec(settings)?.apply_to(quotas.instance);
            if let Some(why) = asked.first_looser_than(&quotas.instance) {
                return Err(ControlError::LimitAboveTenant(format!(
                    "limits: {why}; a service may tighten its tenant's limits, never loosen them"
                )));
            }
        }
        let record = self.store.update_service(tenant, service, update).await?;
        self.apply().await?;
        Ok(record)
    }

    pub async fn rollback(
        &self,
        tenant: &str,
        service: &str,
        to: Option<&str>,
    ) -> Result<ServiceRecord, ControlError> {
        let started = Instant::now();
        let outcome = self.roll_back(tenant, service, to).await;
        metrics::deploy_finished(tenant, "rollback", outcome.is_ok(), started.elapsed());
        if let Ok(record) = &outcome {
            let to = record
                .deployment
                .as_ref()
                .map_or_else(|| "nothing".to_string(), Deployment::describe);
            self.remember(tenant, service, "rollback", format!("to {to}"))
                .await;
        }
        outcome
    }

    async fn roll_back(
        &self,
        tenant: &str,
        service: &str,
        to: Option<&str>,
    ) -> Result<ServiceRecord, ControlError> {
        let current = self.store.service(tenant, service).await?;
        let route = current.route.unwrap_or_else(|| format!("/{service}"));
        self.check_static_route(tenant, &route)?;
        let record = self.store.rollback(tenant, service, to).await?;
        self.apply().await?;
        Ok(record)
    }

    pub async fn delete_service(&self, tenant: &str, service: &str) -> Result<(), ControlError> {
        let started = Instant::now();
        let outcome = async {
            self.store.delete_service(tenant, service).await?;
            self.forget_data(tenant, Some(service)).await;
            self.apply_and_collect().await
        }
        .await;
        metrics::deploy_finished(tenant, "delete", outcome.is_ok(), started.elapsed());
        outcome
    }

    /// A service's deploy history, oldest first.
    pub async fn history(
        &self,
        tenant: &str,
        service: &str,
        limit: u32,
    ) -> Result<Vec<DeployEvent>, ControlError> {
        self.store.service(tenant, service).await?;
        Ok(self.store.history(tenant, service, limit).await?)
    }

    /// Appends to a service's deploy history. The change it records is
    /// already made; a failure here loses only the history line.
    async fn remember(&self, tenant: &str, service: &str, action: &str, detail: String) {
        let event = DeployEvent {
            tenant: tenant.to_string(),
            service: service.to_string(),
            at: now_millis(),
            action: action.to_string(),
            detail,
        };
        if let Err(error) = self.store.record_event(&event).await {
            tracing::warn!(tenant, service, %error, "cannot record a deploy event");
        }
    }

    pub async fn delete_version(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
    ) -> Result<(), ControlError> {
        self.store.delete_version(tenant, service, label).await?;
        self.apply_and_collect().await
    }

    /// The tenant's quotas as stored; the tenant must exist.
    pub async fn quotas(&self, tenant: &str) -> Result<TenantQuotas, ControlError> {
        let record = self.store.tenant(tenant).await?;
        TenantQuotas::from_json(&record.limits).map_err(|e| ControlError::Internal(e.to_string()))
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
