//! Entry point: parse the command line, set up logging, run.

use clap::Parser;
use dashboard::{cli, config::LogFormat, telemetry};

/// mimalloc rather than the system allocator: serving GraphQL allocates many small, short-lived
/// values, and glibc's malloc spent about a fifth of the service's CPU on them and kept freed
/// memory of idle sockets resident (figures in bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    // The log format is needed before settings are read, so that their errors are logged too.
    let format = match std::env::var("LOG_FORMAT").ok().as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Pretty,
    };
    telemetry::init(format);
    cli::run(cli).await
}
