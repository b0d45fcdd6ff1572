//! `berth up`: serve one component at `/`, for development.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;

use berth_api::reuse::{InstanceReuse, check_env};
use berth_api::units::DurationSpec;
use berth_runtime::config::{ServiceSpec, WrittenSettings, validate_config};
use berth_runtime::limits::Limits;
use berth_runtime::outbound::{AllowedHost, OutboundPolicy};
use berth_runtime::reuse::ReusePolicy;
use std::collections::BTreeMap;

use super::HostFlags;

/// Serve one component at `/` (development mode).
#[derive(clap::Args)]
pub struct UpCommand {
    /// The component to serve (built for wasm32-wasip2).
    #[arg(value_name = "COMPONENT.wasm")]
    component: PathBuf,
    /// Address to listen on; port 0 picks a free port and prints it.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "BERTH_LISTEN"
    )]
    listen: SocketAddr,
    /// A destination the component may call (host, host:port or *.domain);
    /// repeat for more. Outbound HTTP is denied otherwise.
    #[arg(long = "allow-outbound", value_name = "HOST")]
    allow_outbound: Vec<AllowedHost>,
    /// An environment variable for the component (`wasi:cli/environment`);
    /// repeat for more.
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE", value_parser = super::key_value)]
    env: Vec<(String, String)>,
    /// A configuration value for the component (`wasi:config/store`);
    /// repeat for more.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = super::key_value)]
    config: Vec<(String, String)>,
    /// Requests one instance serves before it is discarded; 1 (the default)
    /// is a fresh instance per request.
    #[arg(long = "max-instance-reuse", value_name = "N", default_value_t = 1)]
    max_instance_reuse: u32,
    /// How long an idle instance is kept, when instances are reused.
    #[arg(
        long = "idle-instance-timeout",
        value_name = "DURATION",
        default_value = "10s"
    )]
    idle_instance_timeout: DurationSpec,
    #[command(flatten)]
    host: HostFlags,
}

impl UpCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        if !self.component.is_file() {
            anyhow::bail!("{} is not a file", self.component.display());
        }
        let name = self
            .component
            .file_stem()
            .and_then(|s| s.to_str())
            .map(service_name)
            .context("the component's file name is not valid UTF-8")?;
        let env: BTreeMap<String, String> = self.env.iter().cloned().collect();
        check_env(&env).map_err(|m| anyhow::anyhow!("--env: {m}"))?;
        let config: BTreeMap<String, String> = self.config.iter().cloned().collect();
        validate_config(&config).map_err(|m| anyhow::anyhow!("--config: {m}"))?;
        let reuse = InstanceReuse {
            max_requests: Some(self.max_instance_reuse),
            idle_timeout: Some(self.idle_instance_timeout),
        };
        reuse.check().map_err(|m| anyhow::anyhow!("{m}"))?;
        let spec = ServiceSpec {
            name,
            component: self.component.clone(),
            route: "/".into(),
            limits: Limits::default(),
            // Development mode: whoever runs `berth up` owns the machine, so the
            // hosts they allow may be local ones.
            outbound: OutboundPolicy::new(self.allow_outbound.clone()).allowing_private(true),
            buckets: Vec::new(),
            config,
            env,
            reuse: ReusePolicy::from_spec(&reuse),
            schedules: Vec::new(),
            subscriptions: Vec::new(),
            declared_at: self.component.display().to_string(),
            written: WrittenSettings {
                reuse,
                ..WrittenSettings::default()
            },
        };
        let host = self.host.host()?;
        let loaded = host.load_services(&[spec])?;
        super::run_data_plane(host, self.listen, &self.host, &loaded)
    }
}

/// A service name from a file name: lowercase, other characters as dashes.
fn service_name(stem: &str) -> String {
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() { "app".into() } else { name }
}
