//! The core API of a Berth host: load services and route to them. The CLI,
//! the front door and the tests all go through [`Host`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};

use crate::admission::{TenantGate, default_cpu_slots};
use crate::capabilities::ServiceCapabilities;
use crate::capabilities::calls::ServiceDispatch;
use crate::config::ServiceSpec;
use crate::engine::{BerthEngine, CacheOutcome, EngineError, EngineSettings, LoadedComponent};
use crate::invoke::{
    GuestPre, InvokeContext, LinkError, LiveInstance, ServiceVersion, WorldLinker,
};
use crate::kv::paced::{PacedKv, WritePace};
use crate::kv::postgres::PostgresKv;
use crate::kv::sharded::TenantShardedKv;
use crate::kv::{KvBackend, KvQuota};
use crate::limits::ComponentLimits;
use crate::quotas::TenantQuotas;
use crate::registry::Registry;
use crate::reuse::{InstancePark, ReuseKey};
use crate::router::{Backends, Route, RoutingTable};
use crate::telemetry::book::TelemetryBook;
use std::time::Duration;
use tokio::sync::Semaphore;

pub use crate::router::DEFAULT_TENANT;

/// How long a request waits for a free instance slot before a 503.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// A service that could not be loaded, with where it was declared.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("{at}: service `{service}`: cannot read {path}: {source}")]
    ReadComponent {
        at: String,
        service: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{at}: service `{service}`: {source}")]
    Load {
        at: String,
        service: String,
        source: Box<HostError>,
    },
}

/// Settings fixed for the life of a host.
#[derive(Debug, Clone)]
pub struct HostSettings {
    pub data_dir: PathBuf,
    pub max_instances: u32,
    /// Instance slots one tenant may hold at once, service calls included.
    pub max_instances_per_tenant: u32,
    /// What one component instance may take of the pool.
    pub component: ComponentLimits,
    /// How deep a chain of service-to-service calls may go.
    pub max_call_depth: u32,
    /// Where guests' key-value data lives.
    pub kv: KvLocation,
    /// How fast one tenant may write key-value data.
    pub kv_write_pace: WritePace,
}

impl HostSettings {
    /// A host in `data_dir` with a small pool (64 instances, all of them
    /// open to one tenant) and every other setting at its default: for
    /// tests, benches and programs embedding one host.
    pub fn small(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            max_instances: 64,
            max_instances_per_tenant: 64,
            component: ComponentLimits::default(),
            max_call_depth: crate::capabilities::calls::DEFAULT_MAX_CALL_DEPTH,
            kv: KvLocation::DataDir,
            kv_write_pace: WritePace::default(),
        }
    }
}

/// Where guests' key-value data lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KvLocation {
    /// `kv/{tenant}.db` in the data directory: one host's own, a file per tenant.
    #[default]
    DataDir,
    /// A Postgres database every host of a fleet shares.
    Postgres(String),
}

/// What loading one service did.
#[derive(Debug, Clone)]
pub struct LoadedService {
    pub name: String,
    pub route: String,
    pub digest: String,
    pub cache: CacheOutcome,
}

pub struct Host {
    engine: BerthEngine,
    /// The data plane's and admin API's sockets, once bound: guests may
    /// never call them.
    own_listeners: OnceLock<Arc<[SocketAddr]>>,
    no_listeners: Arc<[SocketAddr]>,
    /// Where guests' events go (`http://events.internal`), once the control
    /// plane has set it; weak, so the two do not keep each other alive.
    event_ingress: OnceLock<std::sync::Weak<dyn crate::capabilities::calls::EventIngress>>,
    /// The gate of config-file services until the control plane gives them
    /// their tenant's.
    default_gate: Arc<TenantGate>,
    /// One permit per instance the pooling allocator can hold.
    slots: Arc<Semaphore>,
    /// Instances kept between requests, by services whose policy says so.
    park: Arc<InstancePark<LiveInstance>>,
    shared: Arc<crate::invoke::SharedInstances>,
    linker: WorldLinker,
    /// Berth's world on the quick engine, when there is one.
    quick_linker: Option<WorldLinker>,
    registry: Registry,
    /// Guests' key-value data.
    kv: Arc<dyn KvBackend>,
    /// The host itself, for service-to-service calls made by its guests.
    /// This host, as the capabilities reach it for service calls.
    me: Weak<dyn ServiceDispatch>,
    max_call_depth: u32,
    /// Every service's usage figures.
    telemetry: TelemetryBook,
    max_instances: usize,
    max_instances_per_tenant: u32,
    component: ComponentLimits,
}

impl Host {
    pub fn new(settings: &HostSettings) -> Result<Arc<Self>, HostError> {
        let engine = BerthEngine::new(&EngineSettings {
            cache_dir: settings.data_dir.join("compiled"),
            max_instances: settings.max_instances,
            component: settings.component,
        })?;
        let linker = WorldLinker::new(engine.engine())?;
        let quick_linker = engine.quick_engine().map(WorldLinker::new).transpose()?;
        let stored: Arc<dyn KvBackend> = match &settings.kv {
            KvLocation::DataDir => Arc::new(TenantShardedKv::new(&settings.data_dir)),
            KvLocation::Postgres(url) => Arc::new(PostgresKv::new(url)),
        };
        let kv: Arc<dyn KvBackend> = Arc::new(PacedKv::new(stored, settings.kv_write_pace));
        let park = Arc::new(InstancePark::default());
        sweep_idle_instances(Arc::downgrade(&park));
        Ok(Arc::new_cyclic(|me| Self {
            own_listeners: OnceLock::new(),
            no_listeners: Arc::from(Vec::new()),
            event_ingress: OnceLock::new(),
            default_gate: Arc::new(TenantGate::new(
                &TenantQuotas::default(),
                default_cpu_slots(),
                settings.max_instances_per_tenant,
            )),
            slots: Arc::new(Semaphore::new(settings.max_instances as usize)),
            park,
            shared: Arc::default(),
            engine,
            linker,
            quick_linker,
            registry: Registry::default(),
            kv,
            me: me.clone() as Weak<dyn ServiceDispatch>,
            max_call_depth: settings.max_call_depth,
            max_instances: settings.max_instances as usize,
            max_instances_per_tenant: settings.max_instances_per_tenant,
            component: settings.component,
            telemetry: TelemetryBook::default(),
        }))
    }

    /// Every service's usage figures.
    pub fn telemetry(&self) -> &TelemetryBook {
        &self.telemetry
    }

    /// Instance slots in use, and how many there are.
    pub fn instance_pool(&self) -> (usize, usize) {
        let available = self.slots.available_permits();
        (
            self.max_instances.saturating_sub(available),
            self.max_instances,
        )
    }

    /// Instances kept between requests now (each holds one pool slot).
    pub fn kept_instances(&self) -> usize {
        self.park.len()
    }

    /// Deletes compiled artifacts of components not in `keep`.
    pub fn remove_artifacts_except(
        &self,
        keep: &std::collections::HashSet<String>,
    ) -> std::io::Result<usize> {
        self.engine.remove_artifacts_except(keep)
    }

    /// Instance slots one tenant may hold at once.
    pub fn max_instances_per_tenant(&self) -> u32 {
        self.max_instances_per_tenant
    }

    /// Where guests' key-value data lives.
    pub fn kv(&self) -> &Arc<dyn KvBackend> {
        &self.kv
    }

    /// What [`invoke`](crate::invoke::invoke) needs for one request.
    pub fn invoke_context(&self) -> InvokeContext<'_> {
        InvokeContext {
            slots: &self.slots,
            park: &self.park,
            shared: &self.shared,
            queue_timeout: QUEUE_TIMEOUT,
            own_listeners: self.own_listeners.get().unwrap_or(&self.no_listeners),
            dispatch: &self.me,
            max_call_depth: self.max_call_depth,
            component: self.component,
        }
    }

    /// Records the host's own listening sockets; the first call wins.
    pub fn set_own_listeners(&self, listeners: Vec<SocketAddr>) {
        let _ = self.own_listeners.set(Arc::from(listeners));
    }

    /// Where guests' events go; the first call wins.
    pub fn set_event_ingress(
        &self,
        ingress: std::sync::Weak<dyn crate::capabilities::calls::EventIngress>,
    ) {
        let _ = self.event_ingress.set(ingress);
    }

    pub fn event_ingress(&self) -> Option<Arc<dyn crate::capabilities::calls::EventIngress>> {
        self.event_ingress.get().and_then(std::sync::Weak::upgrade)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Loads every service (from the compile cache where possible) and then
    /// swaps them all in at once; on any error nothing changes.
    pub fn load_services(&self, specs: &[ServiceSpec]) -> Result<Vec<LoadedService>, HostError> {
        let (routes, loaded) = self.prepare_services(specs)?;
        self.registry.replace(RoutingTable::new(routes));
        Ok(loaded)
    }

    /// Compiles a component with the quick engine and links it: code that
    /// serves at once, slower than [`compile`](Self::compile)'s. None when
    /// the host has no quick engine.
    pub fn compile_quick(&self, bytes: &[u8]) -> Option<Result<GuestPre, HostError>> {
        let linker = self.quick_linker.as_ref()?;
        let component = self.engine.compile_quick(bytes)?;
        Some(
            component
                .map_err(HostError::from)
                .and_then(|c| linker.prepare(&c).map_err(HostError::from)),
        )
    }

    /// Links a component Cranelift compiled before, from the compile
    /// cache; `None` when it is not there.
    pub fn link_cached(&self, bytes: &[u8]) -> Option<Result<GuestPre, HostError>> {
        match self.engine.load_cached(bytes) {
            Ok(None) => None,
            Ok(Some(loaded)) => Some(
                self.linker
                    .prepare(&loaded.component)
                    .map_err(HostError::from),
            ),
            Err(error) => Some(Err(error.into())),
        }
    }

    /// Compiles (or loads from the cache) and links a component.
    pub fn compile(&self, bytes: &[u8]) -> Result<(LoadedComponent, GuestPre), HostError> {
        let component = self.engine.load(bytes)?;
        let pre = self.linker.prepare(&component.component)?;
        Ok((component, pre))
    }

    /// The routes of config-file services, without installing them.
    pub fn prepare_services(
        &self,
        specs: &[ServiceSpec],
    ) -> Result<(Vec<Route>, Vec<LoadedService>), HostError> {
        let mut routes = Vec::with_capacity(specs.len());
        let mut loaded = Vec::with_capacity(specs.len());
        for spec in specs {
            let wrap = |source: HostError| HostError::Load {
                at: spec.declared_at.clone(),
                service: spec.name.clone(),
                source: Box::new(source),
            };
            let bytes =
                std::fs::read(&spec.component).map_err(|source| HostError::ReadComponent {
                    at: spec.declared_at.clone(),
                    service: spec.name.clone(),
                    path: spec.component.clone(),
                    source,
                })?;
            let component = self.engine.load(&bytes).map_err(|e| wrap(e.into()))?;
            let pre = self
                .linker
                .prepare(&component.component)
                .map_err(|e| wrap(e.into()))?;
            let digest = component.digest.to_string();
            let version = Arc::new(ServiceVersion {
                tenant: Arc::from(DEFAULT_TENANT),
                service: Arc::from(spec.name.as_str()),
                version: Arc::from(short_digest(&digest)),
                digest: digest.clone(),
                limits: spec.limits,
                outbound: Arc::new(spec.outbound.clone()),
                log: None,
                log_rate: Arc::default(),
                metrics: self
                    .telemetry
                    .version(DEFAULT_TENANT, &spec.name, &short_digest(&digest)),
                gate: Arc::clone(&self.default_gate),
                capabilities: Arc::new(ServiceCapabilities {
                    tenant: Arc::from(DEFAULT_TENANT),
                    service: Arc::from(spec.name.as_str()),
                    kv: Arc::clone(&self.kv),
                    buckets: ServiceCapabilities::buckets(&spec.buckets),
                    kv_quota: KvQuota::default(),
                    config: spec.config.clone(),
                    env: spec.env.clone().into_iter().collect(),
                    kv_ops: self.telemetry.kv(DEFAULT_TENANT, &spec.name),
                }),
                pre,
                reuse: spec.reuse,
                reuse_key: ReuseKey::next(),
            });
            routes.push(Route {
                prefix: spec.route.clone(),
                backends: Backends::single(version),
            });
            loaded.push(LoadedService {
                name: spec.name.clone(),
                route: spec.route.clone(),
                digest,
                cache: component.outcome,
            });
        }
        Ok((routes, loaded))
    }
}

/// Drops kept instances past their idle time, once a second, on a thread
/// of its own (it may run before any async runtime); it ends with the host.
fn sweep_idle_instances(park: std::sync::Weak<InstancePark<LiveInstance>>) {
    let spawned = std::thread::Builder::new()
        .name("berth-idle-sweep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Some(park) = park.upgrade() else { break };
                park.sweep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the idle-instance sweeper; kept instances expire only when met");
    }
}

/// Services loaded from files have no label; they are known by a short
/// digest, written as a valid version label (`sha256-` and 12 hex digits).
pub fn short_digest(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    format!("sha256-{}", &hex[..hex.len().min(12)])
}
