//! Command line of the load benchmarks: parses the arguments, runs one benchmark, and stops it
//! (and the service it started) on Ctrl-C.

mod cpu;
mod fanout;
mod graphql;
mod load;
mod login_flood;
mod plain;
mod queue;
mod service;
mod suite;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The service's allocator, so that the plain baselines served from this process allocate the
/// same way the service does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load benchmarks of the dashboard service. Each one starts the release build of the service
/// on a loopback port and reports against a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// p99 of a cheap authenticated query with and without a flood of `logIn` mutations.
    LoginFlood(login_flood::Args),
    /// Throughput of the reviewer queue page through GraphQL against a plain actix handler
    /// returning the same rows, and the SQL statements per GraphQL request.
    Queue(queue::Args),
    /// Every benchmark on PostgreSQL and Redis with a seeded data set, ending in one table of
    /// ratios and the quality bars met or not.
    Suite(suite::Args),
    /// Thousands of idle subscribed WebSockets on one instance: memory per connection, the
    /// time from a mutation to every subscriber's `next`, and the Redis hop between instances.
    Fanout(fanout::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let work = async {
        match cli.command {
            Command::LoginFlood(args) => login_flood::run(args).await,
            Command::Queue(args) => queue::run(args).await,
            Command::Suite(args) => suite::run(args).await,
            Command::Fanout(args) => fanout::run(args).await,
        }
    };
    // Dropping `work` drops the running service, which kills the child process.
    tokio::select! {
        result = work => result,
        signal = tokio::signal::ctrl_c() => {
            signal.context("listening for Ctrl-C")?;
            anyhow::bail!("interrupted; the service was stopped")
        }
    }
}
