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

use crate::config::{ServiceSpec, normalize_route, validate_name};
use crate::engine::EngineError;
use crate::host::{DEFAULT_TENANT, Host, HostError, LoadedService};
use crate::invoke::{HostState, ServiceVersion};
use crate::limits::{Limits, LimitsSpec};
use crate::logbook::Logbook;
use crate::outbound::{AllowedHost, OutboundPolicy};
use crate::router::{Backends, Route, RoutingTableBuilder};
use crate::store::blobs::{BlobError, BlobStore};
use crate::store::{
    Deployment, PutVersion, ServiceRecord, ServiceSettings, ServiceUpdate, Snapshot, Store,
    StoreError, TenantRecord, VersionRecord, now,
};
use crate::telemetry::RequestCounters;

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
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            base_domain: "localhost".into(),
            max_upload_bytes: 100 * 1024 * 1024,
            compile_timeout: Duration::from_secs(120),
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

/// Version labels: what authors write (`1.4.2`, `2026-11-27.1`, `canary`).
pub fn validate_label(label: &str) -> Result<(), String> {
    let mut chars = label.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if first_ok && rest_ok && label.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "invalid version label `{}`: use 1 to 64 letters, digits, `.`, `-`, `_` or `+`, starting with a letter or digit",
            label.chars().take(80).collect::<String>()
        ))
    }
}

fn name(kind: &str, value: &str) -> Result<(), ControlError> {
    validate_name(value).map_err(|m| {
        ControlError::InvalidInput(format!(
            "{kind}: {}",
            m.chars().take(200).collect::<String>()
        ))
    })
}

pub struct ControlPlane {
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
    /// Serialises rebuilds, so an older snapshot never replaces a newer one.
    applied: tokio::sync::Mutex<i64>,
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
        let control = Arc::new(Self {
            host,
            store,
            blobs,
            settings,
            logbook,
            static_routes,
            static_services,
            compiled: Mutex::new(HashMap::new()),
            applied: tokio::sync::Mutex::new(-1),
        });
        control.apply().await?;
        Ok(control)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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

    pub async fn create_tenant(&self, tenant: &str) -> Result<(), ControlError> {
        name("tenant name", tenant)?;
        self.store.create_tenant(tenant).await?;
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
        self.apply().await
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
        name("service name", service)?;
        validate_label(label).map_err(ControlError::InvalidInput)?;
        self.store.tenant(tenant).await?;
        let received = self
            .blobs
            .receive(body, self.settings.max_upload_bytes)
            .await?;
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
        let linked = lock(&self.compiled).get(&received.digest).cloned();
        let pre = match linked {
            // The same bytes are already checked, compiled and linked here.
            Some(pre) => pre,
            None => {
                let bytes = tokio::fs::read(received.path()).await.map_err(|e| {
                    ControlError::Internal(format!("cannot read the upload back: {e}"))
                })?;
                self.compile_off_request_path(bytes).await?
            }
        };
        let compile_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let digest = received.digest.clone();
        let size = received.size;
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.persist(received))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))??;
        lock(&self.compiled).insert(digest.clone(), pre);

        let version = VersionRecord {
            label: label.to_string(),
            digest,
            size,
            created_at: now(),
        };
        let outcome = self.store.put_version(tenant, service, &version).await?;
        tracing::info!(tenant, service, version = label, digest = %version.digest, compile_ms, "version stored");
        Ok(Uploaded {
            version,
            created: outcome == PutVersion::Created,
            compile_ms,
        })
    }

    async fn compile_off_request_path(
        &self,
        bytes: Vec<u8>,
    ) -> Result<ProxyPre<HostState>, ControlError> {
        let host = Arc::clone(&self.host);
        let job = tokio::task::spawn_blocking(move || host.compile(&bytes));
        let limit = self.settings.compile_timeout;
        match tokio::time::timeout(limit, job).await {
            Err(_) => Err(ControlError::CompileTimeout(limit)),
            Ok(Err(join)) => Err(ControlError::Internal(format!(
                "compile task failed: {join}"
            ))),
            Ok(Ok(Err(error))) => Err(compile_error(error)),
            Ok(Ok(Ok((_, pre)))) => Ok(pre),
        }
    }

    /// Sets a service's route, deployment and settings in one change.
    pub async fn configure(
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
        if let Some(settings) = &update.settings {
            resolve_settings(settings)?;
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
        let current = self.store.service(tenant, service).await?;
        let route = current.route.unwrap_or_else(|| format!("/{service}"));
        self.check_static_route(tenant, &route)?;
        let record = self.store.rollback(tenant, service, to).await?;
        self.apply().await?;
        Ok(record)
    }

    pub async fn delete_service(&self, tenant: &str, service: &str) -> Result<(), ControlError> {
        self.store.delete_service(tenant, service).await?;
        self.apply().await
    }

    pub async fn delete_version(
        &self,
        tenant: &str,
        service: &str,
        label: &str,
    ) -> Result<(), ControlError> {
        self.store.delete_version(tenant, service, label).await?;
        self.apply().await
    }

    fn check_static_route(&self, tenant: &str, route: &str) -> Result<(), ControlError> {
        if tenant == DEFAULT_TENANT && self.static_routes.iter().any(|r| r.prefix == route) {
            return Err(ControlError::Conflict(format!(
                "route `{route}` is taken by a service declared in the config file"
            )));
        }
        Ok(())
    }

    /// Rebuilds the routing table from the store and swaps it in. Versions
    /// not yet linked in this process are loaded from their blobs (and the
    /// compile cache).
    pub async fn apply(&self) -> Result<(), ControlError> {
        let mut applied = self.applied.lock().await;
        let snapshot = self.store.snapshot().await?;
        if snapshot.generation <= *applied && *applied >= 0 {
            return Ok(());
        }
        self.link_missing(&snapshot).await?;
        let table = self.build_table(&snapshot);
        self.host.registry().replace(table);
        *applied = snapshot.generation;
        Ok(())
    }

    async fn link_missing(&self, snapshot: &Snapshot) -> Result<(), ControlError> {
        let mut missing: Vec<String> = Vec::new();
        {
            let compiled = lock(&self.compiled);
            for service in &snapshot.services {
                for label in service.deployment.iter().flat_map(Deployment::labels) {
                    if let Some(v) = service.version(label)
                        && !compiled.contains_key(&v.digest)
                        && !missing.contains(&v.digest)
                    {
                        missing.push(v.digest.clone());
                    }
                }
            }
        }
        for digest in missing {
            let host = Arc::clone(&self.host);
            let blobs = self.blobs.clone();
            let wanted = digest.clone();
            let pre = tokio::task::spawn_blocking(move || {
                let bytes = blobs.read(&wanted)?;
                host.compile(&bytes)
                    .map(|(_, pre)| pre)
                    .map_err(|e| ControlError::Internal(format!("stored component {wanted}: {e}")))
            })
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
            match pre {
                Ok(pre) => {
                    lock(&self.compiled).insert(digest, pre);
                }
                // One broken blob must not keep every other service down.
                Err(error) => tracing::error!(%digest, %error, "cannot load a deployed version"),
            }
        }
        Ok(())
    }

    fn build_table(&self, snapshot: &Snapshot) -> crate::router::RoutingTable {
        let compiled = lock(&self.compiled);
        let mut builder = RoutingTableBuilder::new(&self.settings.base_domain, DEFAULT_TENANT);
        for tenant in &snapshot.tenants {
            builder.tenant(&tenant.name, &tenant.domains);
        }
        for route in &self.static_routes {
            builder.route(DEFAULT_TENANT, route.clone());
        }
        for service in &snapshot.services {
            let (Some(route), Some(deployment)) = (&service.route, &service.deployment) else {
                continue;
            };
            let Ok((limits, outbound)) = resolve_settings(&service.settings) else {
                tracing::error!(tenant = %service.tenant, service = %service.name, "stored settings are invalid; not serving");
                continue;
            };
            let outbound = Arc::new(outbound);
            let tenant: Arc<str> = Arc::from(service.tenant.as_str());
            let name: Arc<str> = Arc::from(service.name.as_str());
            let log = self.logbook.service(&service.tenant, &service.name);
            let requests = RequestCounters::new(&service.tenant, &service.name);
            let mut versions = Vec::new();
            for (label, weight) in &deployment.0 {
                let Some(pre) = service
                    .version(label)
                    .and_then(|v| compiled.get(&v.digest).map(|pre| (v, pre)))
                else {
                    continue;
                };
                versions.push((
                    *weight,
                    Arc::new(ServiceVersion {
                        tenant: Arc::clone(&tenant),
                        service: Arc::clone(&name),
                        version: Arc::from(label.as_str()),
                        digest: pre.0.digest.clone(),
                        limits,
                        outbound: Arc::clone(&outbound),
                        log: Some(Arc::clone(&log)),
                        requests: requests.clone(),
                        pre: pre.1.clone(),
                    }),
                ));
            }
            if let Some(backends) = Backends::weighted(versions) {
                builder.route(
                    &service.tenant,
                    Route {
                        prefix: route.clone(),
                        backends,
                    },
                );
            }
        }
        builder.build()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Turns stored settings into what an instance runs under.
fn resolve_settings(settings: &ServiceSettings) -> Result<(Limits, OutboundPolicy), ControlError> {
    let spec: LimitsSpec =
        serde_json::from_value(serde_json::Value::Object(settings.limits.clone()))
            .map_err(|e| ControlError::InvalidInput(format!("limits: {e}")))?;
    let allowed = settings
        .allowed_outbound_hosts
        .iter()
        .map(|h| {
            h.parse::<AllowedHost>()
                .map_err(|e| ControlError::InvalidInput(format!("allowed_outbound_hosts: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        spec.apply_to(Limits::default()),
        OutboundPolicy::new(allowed),
    ))
}

fn validate_domain(domain: &str) -> Result<String, ControlError> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(domain)
    } else {
        Err(ControlError::InvalidInput(format!(
            "invalid domain `{}`",
            domain.chars().take(80).collect::<String>()
        )))
    }
}

/// Why a component was refused: what the author must change.
fn compile_error(error: HostError) -> ControlError {
    match error {
        HostError::Engine(EngineError::NotAComponent(why)) => {
            ControlError::Unprocessable(why.to_string())
        }
        HostError::Engine(EngineError::Compile(why)) => {
            ControlError::Unprocessable(format!("component failed to compile: {why}"))
        }
        HostError::Link(link) => ControlError::Unprocessable(link.to_string()),
        other => ControlError::Internal(other.to_string()),
    }
}
