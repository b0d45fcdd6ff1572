//! The `berth` command line.

use clap::{Parser, Subcommand};

mod commands;

/// glibc's malloc showed as about a tenth of the host's CPU time under load
/// (`perf`, `make bench`), and its heap consolidations slow every
/// allocation after a large one (a span batch, a drained histogram).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use berth_api::{ServiceName, VersionLabel};
use commands::client::{Client, ClientFlags, DeployArgs, TenantCommand, TokenCommand};

/// Berth: a multi-tenant WebAssembly microservice host.
#[derive(Parser)]
#[command(name = "berth", version, long_version = commands::about::long_version(), about)]
struct Cli {
    /// How the host writes its log to stderr: `text`, or `json` (one
    /// object per line, for log shippers).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "BERTH_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// The same as `--log-format json`.
    #[arg(long, global = true, hide = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    Serve(commands::serve::ServeCommand),
    Up(commands::up::UpCommand),
    New(commands::new::NewCommand),
    Build(commands::build::BuildCommand),
    /// Manage tenants (operator token).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Manage a tenant's tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Upload a component as a new version of a service and activate it.
    Deploy {
        #[command(flatten)]
        args: DeployArgs,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List the tenant's services.
    Services {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show one service: its versions, what serves, its route.
    Service {
        name: ServiceName,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Serve an earlier version again (by default the previous deployment).
    Rollback {
        name: ServiceName,
        /// The version to go back to.
        #[arg(long, value_name = "LABEL")]
        to: Option<VersionLabel>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Delete a service and all its versions.
    Delete {
        name: ServiceName,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show or change a service's config values, secrets and buckets.
    Config {
        #[command(flatten)]
        args: commands::config::ConfigArgs,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Show request rate, errors, latency, CPU time and memory over the
    /// last 1, 5 and 15 minutes, for one service or all of them.
    Stats {
        name: Option<ServiceName>,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Publish an event to a topic of the tenant.
    Publish {
        #[command(flatten)]
        args: commands::events::PublishArgs,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List the tenant's topics: backlog, oldest waiting event, dead
    /// letters, last delivery, subscribers.
    Topics {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List the tenant's subscriptions.
    Subscriptions {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List the tenant's schedules with their last and next ticks.
    Schedules {
        #[command(flatten)]
        client: ClientFlags,
    },
    /// List a topic's dead letters, or send them again with --redrive.
    DeadLetters {
        topic: String,
        /// Deliver them again, from the first attempt.
        #[arg(long)]
        redrive: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or
    /// PowerShell (e.g. `berth completions bash > /etc/bash_completion.d/berth`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a service's recent guest output.
    Logs {
        name: ServiceName,
        /// Keep printing new lines as they are written.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        client: ClientFlags,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Held to the end of main, so the log's last lines are written out.
    let _log = berth_runtime::telemetry::init(cli.log_json || cli.log_format == LogFormat::Json);
    let result = match cli.command {
        Command::Serve(cmd) => {
            berth_runtime::files::create_files_private();
            cmd.execute()
        }
        Command::Up(cmd) => {
            berth_runtime::files::create_files_private();
            cmd.execute()
        }
        Command::New(cmd) => cmd.execute(),
        Command::Build(cmd) => cmd.execute(),
        Command::Completions { shell } => {
            commands::about::completions::<Cli>(shell).map_err(|e| match e.kind() {
                // The reader stopped early (`| head`): nothing to report.
                std::io::ErrorKind::BrokenPipe => anyhow::anyhow!("output closed"),
                _ => anyhow::Error::new(e).context("cannot write the completion script"),
            })
        }
        other => run_client(other),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berth: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_client(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            Command::Tenant { command, client } => {
                Client::new(client)?.tenant_command(command).await
            }
            Command::Token { command, client } => Client::new(client)?.token_command(command).await,
            Command::Deploy { args, client } => Client::new(client)?.deploy(args).await,
            Command::Services { client } => Client::new(client)?.services().await,
            Command::Service { name, client } => Client::new(client)?.service(&name).await,
            Command::Rollback { name, to, client } => {
                Client::new(client)?.rollback(&name, to).await
            }
            Command::Delete { name, client } => Client::new(client)?.delete(&name).await,
            Command::Stats { name, client } => Client::new(client)?.stats(name.as_ref()).await,
            Command::Config { args, client } => Client::new(client)?.config(args).await,
            Command::Logs {
                name,
                follow,
                client,
            } => Client::new(client)?.logs(&name, follow).await,
            Command::Publish { args, client } => Client::new(client)?.publish(args).await,
            Command::Topics { client } => Client::new(client)?.topics().await,
            Command::Subscriptions { client } => Client::new(client)?.subscriptions().await,
            Command::Schedules { client } => Client::new(client)?.schedules().await,
            Command::DeadLetters {
                topic,
                redrive,
                client,
            } => Client::new(client)?.dead_letters(&topic, redrive).await,
            Command::Serve(_)
            | Command::Up(_)
            | Command::New(_)
            | Command::Build(_)
            | Command::Completions { .. } => Ok(()),
        }
    })
}
