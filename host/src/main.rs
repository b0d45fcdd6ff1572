//! The `berth` command line.

use clap::{Parser, Subcommand};

mod commands;

/// Berth: a multi-tenant WebAssembly microservice host.
#[derive(Parser)]
#[command(name = "berth", version, about)]
struct Cli {
    /// Log one JSON object per line instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Serve(commands::serve::ServeCommand),
    Up(commands::up::UpCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    berth::telemetry::init(cli.log_json);
    let result = match cli.command {
        Command::Serve(cmd) => cmd.execute(),
        Command::Up(cmd) => cmd.execute(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("berth: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
