//! `berth serve`: run the host: the data plane, the admin API, and the
//! services of an optional config file.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use berth::StoreLocation;
use berth_admin::auth::OperatorTokenSource;
use berth_control::ControlSettings;
use berth_control::events::EventSettings;
use berth_control::events::nats::NatsBinding;
use berth_control::secrets::SecretsKey;
use berth_runtime::host::KvLocation;
use berth_runtime::units::{ByteSize, DurationSpec};

use super::HostFlags;

/// Run the host: the data plane, the admin API, and the services of an
/// optional config file (they belong to the `default` tenant).
#[derive(clap::Args)]
pub struct ServeCommand {
    /// Address of the data plane; port 0 picks a free port and prints it.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "BERTH_LISTEN"
    )]
    listen: SocketAddr,
    /// Address of the admin API; port 0 picks a free port and prints it.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8081",
        env = "BERTH_ADMIN_LISTEN"
    )]
    admin_listen: SocketAddr,
    /// A berth.toml declaring services of the default tenant.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Tenants answer at `{tenant}.{base-domain}`.
    #[arg(long, value_name = "DOMAIN", default_value = "localhost")]
    base_domain: String,
    /// Largest component upload accepted.
    #[arg(long, value_name = "SIZE", default_value = "100MiB")]
    max_upload: ByteSize,
    /// How long compiling one uploaded component may take.
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    compile_timeout: DurationSpec,
    /// Export a span per request over OTLP/HTTP to this collector
    /// (e.g. `http://127.0.0.1:4318`); without it no spans are exported.
    #[arg(long, value_name = "URL", env = "BERTH_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Where the host's state lives: `sqlite` (the default: a database in
    /// the data directory) or a `postgres://` URL that a fleet of hosts
    /// shares, with their components and key-value data.
    #[arg(long, value_name = "URL", default_value = "sqlite", env = "BERTH_STORE", value_parser = parse_store)]
    store: StoreLocation,
    /// How often the host checks the shared store for changes other hosts
    /// made (Postgres also wakes it at once).
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    sync_interval: DurationSpec,
    /// How old a component in the shared store must be, with no version
    /// naming it, before it is deleted (Postgres only): longer than any
    /// upload takes from storing its bytes to recording its version.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    shared_blob_grace: DurationSpec,
    /// A NATS server to bridge topics to (`nats://host:4222`).
    #[arg(long, value_name = "URL")]
    nats_url: Option<String>,
    /// Binds a tenant's topic to a NATS subject, both ways by default:
    /// `TENANT/TOPIC=SUBJECT[:in|out|both]`. Repeatable; needs --nats-url.
    #[arg(long = "nats-bind", value_name = "BINDING")]
    nats_bindings: Vec<NatsBinding>,
    /// Record no Prometheus metrics (for measuring what they cost).
    #[arg(long, hide = true)]
    no_metrics: bool,
    #[command(flatten)]
    host: HostFlags,
}

fn parse_store(text: &str) -> Result<StoreLocation, String> {
    if text == "sqlite" {
        Ok(StoreLocation::Sqlite)
    } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        Ok(StoreLocation::Postgres(text.to_string()))
    } else {
        Err("expected `sqlite` or a `postgres://user:password@host/database` URL".into())
    }
}

impl ServeCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        // Everything that can be wrong with the input is found before a
        // socket is bound.
        let options = self.options()?;
        let otlp = self
            .otlp_endpoint
            .as_deref()
            .map(berth_runtime::telemetry::otlp::traces_url)
            .transpose()?;
        let shared = matches!(self.store, StoreLocation::Postgres(_));
        let runtime = super::runtime()?;
        runtime.block_on(async move {
            if let Some(url) = otlp {
                tracing::info!(%url, "exporting spans over OTLP");
                berth_runtime::telemetry::otlp::start(url)?;
            }
            if let Some(handle) = options.metrics.clone() {
                // Histograms buffer samples until drained; a host nobody
                // scrapes must not grow.
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        every.tick().await;
                        handle.run_upkeep();
                    }
                });
            }
            let fleet_without_key = shared && options.control.secrets_key.is_none();
            let running = berth::start(options).await?;
            if fleet_without_key {
                tracing::warn!(
                    "BERTH_SECRETS_KEY is not set: this fleet host refuses service secrets \
                     until every host has the same key"
                );
            }
            if let OperatorTokenSource::Generated(path) = &running.operator_token {
                println!("operator token written to {}", path.display());
                if shared {
                    tracing::warn!(
                        "each host of a fleet generated its own operator token; \
                         set the same BERTH_OPERATOR_TOKEN on every host"
                    );
                }
            }
            let admin_addr = running.admin_addr;
            println!("berth admin API listening on http://{admin_addr}");
            println!("berth dashboard at http://{admin_addr}/ui/ (sign in with a token)");
            super::print_addresses(running.data_addr, running.control.static_services());
            super::shutdown_signal().await;
            running.shutdown().await;
            Ok::<_, anyhow::Error>(())
        })?;
        runtime.shutdown_timeout(Duration::from_secs(1));
        Ok(())
    }

    /// The host these flags, the environment and the config file describe.
    fn options(&self) -> anyhow::Result<berth::Options> {
        let services = match &self.config {
            Some(path) => berth_runtime::config::load(path)?,
            None => Vec::new(),
        };
        if self.base_domain.is_empty() || self.base_domain.contains(['/', ':', ' ']) {
            anyhow::bail!("--base-domain `{}` is not a domain name", self.base_domain);
        }
        if !self.nats_bindings.is_empty() && self.nats_url.is_none() {
            anyhow::bail!("--nats-bind needs --nats-url");
        }
        let host = self.host.host_settings(match &self.store {
            StoreLocation::Sqlite => KvLocation::DataDir,
            StoreLocation::Postgres(url) => KvLocation::Postgres(url.clone()),
        })?;
        let data_dir = self.host.data_dir.clone();
        berth_runtime::files::create_private_dir(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        // Read from the environment only: a flag would show in `ps`. A
        // single host without one makes its own; a fleet's hosts must share
        // one, so they get none and refuse secrets until it is set.
        let secrets_key = match (std::env::var("BERTH_SECRETS_KEY"), &self.store) {
            (Ok(text), _) => Some(SecretsKey::from_hex(&text)?),
            (Err(_), StoreLocation::Sqlite) => {
                Some(SecretsKey::load_or_create(&data_dir).context("cannot make the secrets key")?)
            }
            (Err(_), StoreLocation::Postgres(_)) => None,
        };
        Ok(berth::Options {
            listen: self.listen,
            admin_listen: self.admin_listen,
            host,
            front: self.host.front_door(),
            drain: self.host.drain_timeout.0,
            control: ControlSettings {
                base_domain: self.base_domain.to_ascii_lowercase(),
                max_upload_bytes: self.max_upload.0,
                compile_timeout: self.compile_timeout.0,
                secrets_key,
                shared_blob_grace: self.shared_blob_grace.0,
                events: EventSettings {
                    nats_url: self.nats_url.clone(),
                    nats_bindings: self.nats_bindings.clone(),
                    ..EventSettings::default()
                },
            },
            services,
            store: self.store.clone(),
            sync_interval: self.sync_interval.0,
            operator_token: std::env::var("BERTH_OPERATOR_TOKEN").ok(),
            metrics: if self.no_metrics {
                None
            } else {
                berth_runtime::telemetry::metrics::install()
            },
        })
    }
}
