//! Entry point: parse the command line, set up logging, run.

use clap::Parser;
use dashboard::{cli, config::LogFormat, telemetry};

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
