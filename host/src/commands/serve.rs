//! `berth serve`: run the host with the services a config file declares.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::HostFlags;

/// Run the host, serving the services declared in a config file.
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
    /// A berth.toml declaring the services to run.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    host: HostFlags,
}

impl ServeCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        // Everything that can be wrong with the input is found before a
        // socket is bound.
        let specs = match &self.config {
            Some(path) => berth::config::load(path)?,
            None => Vec::new(),
        };
        let host = self.host.host()?;
        let loaded = host.load_services(&specs)?;
        super::run_data_plane(host, self.listen, &self.host, &loaded)
    }
}
