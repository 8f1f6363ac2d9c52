//! `rqctl`: the operations CLI of ratequeue (docs/rqctl.md).
//!
//! Owns: argument parsing and dispatch. Each subcommand lives in `cli/`; a new one is a
//! variant of `Command` plus one arm in `dispatch`. Talks to the cluster through
//! `ratequeue_client::Client`, except `bench` (`src/bench.rs`), which drives raw HTTP
//! so that it measures the server and not the client's retry logic; no wire type is
//! defined here.

mod bench;
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
                  (comma-separated) and RATEQUEUE_API_KEY. For https:// URLs, --ca-file \
                  (RATEQUEUE_CA_FILE) names the CA bundle to trust and --client-cert/--client-key \
                  (RATEQUEUE_CLIENT_CERT/RATEQUEUE_CLIENT_KEY) a client certificate. Add --json \
                  after a subcommand for machine-readable output."
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
    /// Drive N concurrent clients against the cluster and report throughput and latency.
    Bench(bench::Args),
}

async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let global = &cli.global;
    match cli.command {
        Command::Status(a) => status::main(&global.client()?, a).await,
        Command::Resource(c) => resource::main(&global.client()?, c).await,
        Command::Key(c) => key::main(&global.client()?, c).await,
        Command::Members(c) => members::main(&global.client()?, c).await,
        Command::Run(a) => run::main(&global.client()?, a).await,
        // Measures the raw HTTP path itself, without the library's retries.
        Command::Bench(a) => bench::main(global, a).await,
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
