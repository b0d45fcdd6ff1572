//! One module per subcommand, plus what they share.

pub mod about;
pub mod build;
pub mod client;
pub mod config;
pub mod events;
pub mod new;
pub mod serve;
pub mod stats;
pub mod up;
pub mod watch;

use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::body_rate::MinBodyRate;
use berth_runtime::host::{Host, HostSettings, KvLocation, LoadedService};
use berth_runtime::kv::paced::WritePace;
use berth_runtime::limits::ComponentLimits;
use berth_runtime::server::FrontDoor;
use berth_runtime::units::{ByteSize, DurationSpec};

/// Flags every serving command shares.
#[derive(clap::Args, Clone)]
pub struct HostFlags {
    /// Directory for Berth's state and its compile cache.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./berth-data",
        env = "BERTH_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Most instances alive at once across all services (the pooling
    /// allocator's size); requests past it are answered with 503.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_instances: u32,
    /// Most instances one tenant may hold at once, service calls included
    /// (its share of the pool); past it its requests wait in its queue and
    /// then get 503. Default: a quarter of --max-instances.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_instances_per_tenant: Option<u32>,
    /// Linear memories one component may hold, nested components' included;
    /// a component with more is refused at upload. Each instance slot of
    /// the pool reserves address space for this many.
    #[arg(long, value_name = "N", default_value_t = ComponentLimits::default().memories, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_memories_per_component: u32,
    /// Tables one component may hold, nested components' included.
    #[arg(long, value_name = "N", default_value_t = ComponentLimits::default().tables, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_tables_per_component: u32,
    /// Core instances one component may create, nested components' included.
    #[arg(long, value_name = "N", default_value_t = ComponentLimits::default().core_instances, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_core_instances_per_component: u32,
    /// Time a client has to send its request head (slowloris protection).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub header_read_timeout: DurationSpec,
    /// Time open connections get to finish on shutdown.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub drain_timeout: DurationSpec,
    /// Time a request body may stall before the minimum rate applies.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub body_grace: DurationSpec,
    /// Slowest request body accepted after the grace time (slow POST
    /// protection); slower ones are answered 408.
    #[arg(long, value_name = "BYTES_PER_SECOND", default_value = "1KiB")]
    pub body_min_rate: ByteSize,
    /// Connections one client address may hold open at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_client: u32,
    /// Deepest chain of service-to-service calls; a call past it is
    /// answered 508 (Loop Detected).
    #[arg(long, value_name = "N", default_value_t = berth_runtime::capabilities::calls::DEFAULT_MAX_CALL_DEPTH, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_call_depth: u32,
    /// Key-value bytes one tenant may write per second, on average; writes
    /// past it wait (bursts of --kv-write-burst go at once).
    #[arg(long, value_name = "SIZE", default_value = "4MiB")]
    pub kv_write_rate: ByteSize,
    /// Key-value bytes one tenant may write at once after a quiet spell.
    #[arg(long, value_name = "SIZE", default_value = "8MiB")]
    pub kv_write_burst: ByteSize,
}

impl HostFlags {
    /// A host whose key-value data lives in the data directory.
    pub fn host(&self) -> anyhow::Result<Arc<Host>> {
        let settings = self.host_settings(KvLocation::DataDir)?;
        berth_runtime::files::create_private_dir(&self.data_dir)
            .with_context(|| format!("cannot create data directory {}", self.data_dir.display()))?;
        Ok(Host::new(&settings)?)
    }

    /// The runtime's settings these flags make, checked.
    pub fn host_settings(&self, kv: KvLocation) -> anyhow::Result<HostSettings> {
        anyhow::ensure!(
            self.kv_write_rate.0 >= 1024,
            "--kv-write-rate must be at least 1KiB (per second)"
        );
        Ok(HostSettings {
            data_dir: self.data_dir.clone(),
            max_instances: self.max_instances,
            max_instances_per_tenant: self
                .max_instances_per_tenant
                .unwrap_or((self.max_instances / 4).max(1)),
            component: ComponentLimits {
                memories: self.max_memories_per_component,
                tables: self.max_tables_per_component,
                core_instances: self.max_core_instances_per_component,
            },
            max_call_depth: self.max_call_depth,
            kv,
            kv_write_pace: WritePace {
                bytes_per_second: self.kv_write_rate.0,
                burst_bytes: self.kv_write_burst.0,
            },
        })
    }

    pub fn front_door(&self) -> FrontDoor {
        FrontDoor {
            header_read_timeout: self.header_read_timeout.0,
            body_rate: MinBodyRate {
                grace: self.body_grace.0,
                bytes_per_second: self.body_min_rate.0,
            },
            max_connections_per_client: self.max_connections_per_client as usize,
            ..FrontDoor::default()
        }
    }
}

/// Binds, prints the addresses, and serves until Ctrl-C or SIGTERM.
pub fn run_data_plane(
    host: Arc<Host>,
    listen: SocketAddr,
    flags: &HostFlags,
    services: &[LoadedService],
) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let front = flags.front_door();
    let drain = flags.drain_timeout.0;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        host.set_own_listeners(vec![addr]);
        tracing::info!(%addr, "data plane listening");
        print_addresses(addr, services);
        berth_runtime::server::serve(listener, host, front, shutdown_signal(), drain).await;
        Ok::<_, anyhow::Error>(())
    })?;
    // Guest tasks still streaming are cut off here rather than holding the
    // process open.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth-worker")
        .build()
        .context("cannot start the async runtime")
}

fn print_addresses(addr: SocketAddr, services: &[LoadedService]) {
    // The listening line comes last, so a script (or a test) that waits for
    // it has seen the whole list.
    let mut out = std::io::stdout().lock();
    for service in services {
        let _ = writeln!(
            out,
            "service {:<16} http://{addr}{}  ({})",
            service.name, service.route, service.digest
        );
    }
    let _ = writeln!(out, "berth data plane listening on http://{addr}");
    let _ = out.flush();
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// `NAME=VALUE` on the command line, split at the first `=`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("`{text}` is not NAME=VALUE")),
    }
}
