//! `rqctl`: the operations CLI of ratequeue (docs/rqctl.md).
//!
//! Owns: argument parsing and dispatch. Each subcommand lives in `cli/`; a new one is a
//! variant of `Command` plus one arm in `dispatch` (the `bench` subcommand will be
//! `src/bench.rs`, declared here as `mod bench;`). Talks to the cluster only through
//! `ratequeue_client::Client`; defines no wire type.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cli::{key, members, resource, run, status, Failure, Global};

#[derive(Parser)]
#[command(
    name = "rqctl",
    version,
    about = "Operate a ratequeue cluster, and run commands under its limits",
    after_help = "Node URLs and the API key come from --url/--api-key, else RATEQUEUE_URL \
                  (comma-separated) and RATEQUEUE_API_KEY. Add --json after a subcommand \
                  for machine-readable output."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the cluster: members, roles, leader, replication lag.
    Status(status::Args),
    /// Create, show, list and delete resources.
    #[command(subcommand)]
    Resource(resource::Cmd),
    /// Create, list and delete API keys (admin).
    #[command(subcommand)]
    Key(key::Cmd),
    /// Add or remove cluster members (admin).
    #[command(subcommand)]
    Members(members::Cmd),
    /// Hold a slot of RESOURCE while COMMAND runs; exit with its status.
    Run(run::Args),
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let client = cli.global.client()?;
    match cli.command {
        Command::Status(a) => status::main(&client, a).await,
        Command::Resource(c) => resource::main(&client, c).await,
        Command::Key(c) => key::main(&client, c).await,
        Command::Members(c) => members::main(&client, c).await,
        Command::Run(a) => run::main(&client, a).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rqctl: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(f) => f.report(),
    };
    ExitCode::from(code)
}
