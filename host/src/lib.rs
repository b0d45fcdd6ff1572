//! A whole Berth host in one value: the data plane, the admin API and the
//! control plane over its store, started in this process on the listeners
//! asked for, and stopped by [`Running::shutdown`]. `berth serve` is this
//! plus flags, signals and printing; a program or a test can start one
//! directly:
//!
//! ```no_run
//! # async fn example() -> Result<(), berth::StartError> {
//! let options = berth::Options::local("./berth-data".into());
//! let running = berth::start(options).await?;
//! println!("serving on http://{}", running.data_addr);
//! running.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_admin::AdminState;
use berth_admin::auth::{OperatorTokenSource, load_operator_token};
use berth_control::store::blobs::BlobStore;
use berth_control::store::sql::SqlStore;
use berth_control::store::{Store, StoreError};
use berth_control::{ControlError, ControlPlane, ControlSettings};
use berth_runtime::config::ServiceSpec;
use berth_runtime::host::{Host, HostError, HostSettings};
use berth_runtime::logbook::Logbook;
use berth_runtime::server::FrontDoor;

/// Where the host keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `berth.db` in the data directory: one host's own.
    Sqlite,
    /// A Postgres database a fleet of hosts shares (`postgres://...`).
    Postgres(String),
}

/// Everything a host is started with.
pub struct Options {
    /// Where the data plane listens; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where the admin API listens; port 0 picks a free one.
    pub admin_listen: SocketAddr,
    /// The engine, the pool and the data directory.
    pub host: HostSettings,
    /// Protocol limits and timeouts of the data plane.
    pub front: FrontDoor,
    /// How long requests in flight get to finish on shutdown.
    pub drain: Duration,
    pub control: ControlSettings,
    /// Services of the default tenant, from a `berth.toml`.
    pub services: Vec<ServiceSpec>,
    pub store: StoreLocation,
    /// How often a host of a fleet checks the shared store for changes.
    pub sync_interval: Duration,
    /// The operator's token; without one the host reads or makes
    /// `DATA_DIR/operator-token`.
    pub operator_token: Option<String>,
    /// Renders `/metrics`, when a recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Options {
    /// A single host in `data_dir` on free loopback ports, with a small
    /// pool ([`HostSettings::small`]), SQLite, and every other setting at
    /// its default.
    pub fn local(data_dir: PathBuf) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: loopback,
            admin_listen: loopback,
            host: HostSettings::small(data_dir),
            front: FrontDoor::default(),
            drain: Duration::from_secs(10),
            control: ControlSettings::default(),
            services: Vec::new(),
            store: StoreLocation::Sqlite,
            sync_interval: Duration::from_secs(2),
            operator_token: None,
            metrics: None,
        }
    }
}

/// Why a host did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot open the state store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot open the component store: {0}")]
    Blobs(std::io::Error),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("cannot read or create the operator token: {0}")]
    OperatorToken(std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started host.
pub struct Running {
    /// Where the data plane answers.
    pub data_addr: SocketAddr,
    /// Where the admin API answers.
    pub admin_addr: SocketAddr,
    /// Where the operator token came from (a generated one is in a file).
    pub operator_token: OperatorTokenSource,
    pub control: Arc<ControlPlane>,
    state: Arc<AdminState>,
    stop: tokio::sync::watch::Sender<bool>,
    data_task: tokio::task::JoinHandle<()>,
    admin_task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Opens the store, restores every deployment, binds both listeners and
/// starts serving; returns once the host answers on both.
pub async fn start(options: Options) -> Result<Running, StartError> {
    let data_dir = options.host.data_dir.clone();
    berth_runtime::files::create_private_dir(&data_dir).map_err(|source| StartError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let host = Host::new(&options.host)?;
    let (operator, operator_source) = load_operator_token(options.operator_token, &data_dir)
        .map_err(StartError::OperatorToken)?;
    let store: Arc<dyn Store> = match &options.store {
        StoreLocation::Sqlite => Arc::new(SqlStore::open_sqlite(&data_dir.join("berth.db")).await?),
        StoreLocation::Postgres(url) => Arc::new(SqlStore::open_postgres(url).await?),
    };
    let blobs = BlobStore::open(data_dir.join("blobs")).map_err(StartError::Blobs)?;
    let mut control_settings = options.control;
    // Claims an earlier run left are given up at once only where no other
    // host can hold them.
    control_settings.events.single_host = matches!(options.store, StoreLocation::Sqlite);
    let control = ControlPlane::open(
        Arc::clone(&host),
        store,
        blobs,
        control_settings,
        Arc::new(Logbook::default()),
        &options.services,
    )
    .await?;
    if let Err(error) = control.collect_garbage().await {
        tracing::warn!(%error, "cannot collect unreferenced stored bytes");
    }
    let resealed = control.reseal_legacy_secrets().await?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            "secrets an older Berth stored unsealed or unbound are sealed again"
        );
    }
    if matches!(options.store, StoreLocation::Postgres(_)) {
        // Other hosts change the state too; this host follows.
        control.spawn_sync(options.sync_interval);
    }

    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let data = bind(options.listen).await?;
    let admin = bind(options.admin_listen).await?;
    let local = |listener: &tokio::net::TcpListener, addr| {
        listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })
    };
    let data_addr = local(&data, options.listen)?;
    let admin_addr = local(&admin, options.admin_listen)?;
    host.set_own_listeners(vec![data_addr, admin_addr]);
    let state = Arc::new(AdminState {
        control: Arc::clone(&control),
        operator,
        metrics: options.metrics,
        data_plane: data_addr.to_string(),
        ready: true.into(),
    });

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let admin_task = tokio::spawn(berth_admin::serve(admin, Arc::clone(&state), stopped()));
    tracing::info!(addr = %admin_addr, "admin API listening");
    let data_task = tokio::spawn(berth_runtime::server::serve(
        data,
        host,
        options.front,
        stopped(),
        options.drain,
    ));
    tracing::info!(addr = %data_addr, "data plane listening");
    Ok(Running {
        data_addr,
        admin_addr,
        operator_token: operator_source,
        control,
        state,
        stop,
        data_task,
        admin_task,
    })
}

impl Running {
    /// Stops taking connections, lets requests in flight finish (within the
    /// drain time) and returns when both listeners are closed.
    pub async fn shutdown(self) {
        self.state.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        if self.data_task.await.is_err() {
            tracing::warn!("the data plane stopped abnormally");
        }
        if tokio::time::timeout(Duration::from_secs(5), self.admin_task)
            .await
            .is_err()
        {
            tracing::warn!("admin API did not stop in time");
        }
    }
}
