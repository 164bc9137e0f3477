//! The `login-flood` benchmark: a query's p99 latency under a flood of `logIn` mutations,
//! against its p99 without the flood in the same run, and the flood's login rate against the
//! argon2id ceiling of this machine.

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow, bail, ensure};
use argon2::Argon2;
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::{
    graphql::{Api, LogInOutcome},
    load::{self, Flood, QueryLoad, QueryStats},
    service::{self, Service, ServiceOptions},
};

/// The password of both seeded accounts (passes the service's password policy).
const PASSWORD: &str = "bench-login-flood-correct-horse";
/// The wrong password half of the flood sends.
pub(crate) const WRONG_PASSWORD: &str = "bench-login-flood-wrong-battery";
/// Timed argon2id hashes for the in-process single-hash time (after one warm-up).
const HASH_SAMPLES: usize = 7;

/// Options of `bench login-flood`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds each measured phase (baseline, flood) lasts.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of unrecorded query load before the baseline (connections, caches).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds the flood runs before the flood phase starts recording.
    #[arg(long, default_value_t = 1.0)]
    ramp: f64,
    /// Concurrent query workers.
    #[arg(long, default_value_t = 8)]
    query_workers: usize,
    /// Queries per second, across all query workers.
    #[arg(long, default_value_t = 200.0)]
    query_rate: f64,
    /// Most queries sent in one phase.
    #[arg(long, default_value_t = 100_000)]
    max_queries: u64,
    /// Concurrent `logIn` workers in the flood; every other one sends a wrong password.
    #[arg(long, default_value_t = 16)]
    login_workers: usize,
    /// Most `logIn` requests the flood sends.
    #[arg(long, default_value_t = 100_000)]
    max_logins: u64,
    /// Largest acceptable flood p99 / baseline p99.
    #[arg(long, default_value_t = 2.0)]
    target_ratio: f64,
    /// An existing (ideally empty) PostgreSQL database on this machine, e.g.
    /// postgres://postgres@127.0.0.1:5432/amdash_bench; default: a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// PASSWORD_HASH_CONCURRENCY for the service; default: the service's own (CPU count - 1,
    /// at least 1).
    #[arg(long)]
    password_hash_concurrency: Option<usize>,
    /// The service binary; default: <target dir>/release/dashboard, built first.
    #[arg(long)]
    service_bin: Option<PathBuf>,
    /// Do not run `cargo build --release --bin dashboard` before starting.
    #[arg(long)]
    no_build: bool,
    /// Seconds before a single request is given up.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
}

/// A positive number of seconds as a duration, naming the option when it is not.
pub(crate) fn seconds(option: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{option} must be a positive number of seconds, got {value}"))
}

/// Refuses database URLs that point anywhere but this machine: the benchmark sends load only
/// to loopback.
pub(crate) fn check_database_url(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        bail!("--database-url must be a postgres:// URL");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let is_local = |host: &str| {
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    // An empty host means a Unix socket, unless a `host=` parameter names another.
    let socket_host = rest
        .split_once('?')
        .map(|(_, query)| query)
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("host="));
    let loopback = if host.is_empty() {
        socket_host.is_none_or(|h| h.starts_with('/') || is_local(h))
    } else {
        is_local(host)
    };
    ensure!(
        loopback,
        "--database-url must name a database on this machine (localhost, 127.0.0.1 or ::1), \
         got host `{host}`"
    );
    Ok(())
}

/// Runs the benchmark and prints its table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let phase = seconds("duration", args.duration)?;
    let warmup = seconds("warmup", args.warmup)?;
    let ramp = seconds("ramp", args.ramp)?;
    let timeout = seconds("request-timeout", args.request_timeout)?;
    ensure!(
        args.query_rate > 0.0 && args.query_rate.is_finite(),
        "--query-rate must be positive"
    );
    ensure!(args.query_workers > 0, "--query-workers must be at least 1");
    ensure!(args.login_workers > 0, "--login-workers must be at least 1");
    if let Some(url) = &args.database_url {
        check_database_url(url)?;
    }

    let binary = match &args.service_bin {
        Some(path) => path.clone(),
        None => {
            if !args.no_build {
                service::build_release().await?;
            }
            service::default_binary()
        }
    };
    let options = ServiceOptions {
        database_url: args.database_url.clone(),
        password_hash_concurrency: args.password_hash_concurrency,
        extra_env: Vec::new(),
        jwt_keys: None,
    };
    eprintln!("starting {}", binary.display());
    let service = Service::start(&binary, &options).await?;
    let measured = measure(&service, &args, phase, warmup, ramp, timeout).await;
    let log_errors = service.log_error_lines();
    let log_tail = service.log_tail();
    service.stop().await;
    let report = measured.with_context(|| format!("the service's log ends:\n{log_tail}"))?;
    report.print(&args, log_errors);
    Ok(())
}

/// What one run measured.
struct Report {
    cpus: usize,
    single_hash: Duration,
    baseline: QueryStats,
    flood: QueryStats,
    logins: Histogram<u64>,
    logins_per_second: f64,
    logins_unexpected: u64,
    login_first_error: Option<String>,
}

async fn measure(
    service: &Service,
    args: &Args,
    phase: Duration,
    warmup: Duration,
    ramp: Duration,
    timeout: Duration,
) -> anyhow::Result<Report> {
    // Separate clients, so that queries never wait for a pooled connection held by a login.
    let queries = Api::new(service.base_url(), timeout)?;
    let logins = Api::new(service.base_url(), timeout)?;

    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let viewer_email = format!("bench-viewer-{run_id}@contoso.com");
    let flood_email = format!("bench-flood-{run_id}@contoso.com");
    let token = queries.sign_up(&viewer_email, PASSWORD).await?;
    logins.sign_up(&flood_email, PASSWORD).await?;
    ensure!(
        logins.log_in(&flood_email, PASSWORD).await? == LogInOutcome::SignedIn,
        "the seeded account cannot log in"
    );
    ensure!(
        logins.log_in(&flood_email, WRONG_PASSWORD).await? == LogInOutcome::Refused,
        "a wrong password was not refused"
    );

    eprintln!("timing argon2id in-process ({HASH_SAMPLES} hashes)");
    let single_hash = tokio::task::spawn_blocking(single_hash_time)
        .await
        .context("the hashing task panicked")??;

    let load = |duration| QueryLoad {
        workers: args.query_workers,
        rate: args.query_rate,
        duration,
        max_requests: args.max_queries,
    };
    eprintln!("warm-up: {:.1} s of queries", warmup.as_secs_f64());
    load::run_queries(&queries, &token, load(warmup)).await?;
    eprintln!("phase A: {:.1} s of queries", phase.as_secs_f64());
    let baseline = load::run_queries(&queries, &token, load(phase)).await?;

    eprintln!(
        "phase B: {} logIn workers, then {:.1} s of queries",
        args.login_workers,
        phase.as_secs_f64()
    );
    let (stop, stopped) = watch::channel(false);
    let flood = Flood {
        workers: args.login_workers,
        email: flood_email,
        password: PASSWORD.to_owned(),
        wrong_password: WRONG_PASSWORD.to_owned(),
        deadline: Instant::now() + ramp + phase + timeout,
        max_requests: args.max_logins,
    };
    let flood_tasks = load::start_flood(&logins, &flood, &stopped);
    tokio::time::sleep(ramp).await;
    let window_start = Instant::now();
    let under_flood = load::run_queries(&queries, &token, load(phase)).await;
    let window_end = Instant::now();
    stop.send_replace(true);
    let samples = load::join_flood(flood_tasks).await?;
    let under_flood = under_flood?;

    let mut login_latencies = load::new_histogram()?;
    let mut in_window = 0u64;
    let mut unexpected = 0u64;
    for sample in samples
        .samples
        .iter()
        .filter(|s| s.finished >= window_start && s.finished <= window_end)
    {
        in_window += 1;
        if !sample.as_expected {
            unexpected += 1;
        }
        login_latencies
            .record(load::micros(sample.latency))
            .map_err(|e| anyhow!("recording a login latency: {e}"))?;
    }

    Ok(Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        single_hash,
        baseline,
        flood: under_flood,
        logins: login_latencies,
        logins_per_second: load::per_second(in_window, window_end - window_start),
        logins_unexpected: unexpected,
        login_first_error: samples.first_error,
    })
}

/// Median time of one argon2id hash with `Argon2::default()` (m=19456 KiB, t=2, p=1, the
/// service's parameters), on this thread.
pub(crate) fn single_hash_time() -> anyhow::Result<Duration> {
    let argon2 = Argon2::default();
    let mut output = [0u8; 32];
    let mut hash = || {
        argon2
            .hash_password_into(PASSWORD.as_bytes(), b"bench-salt-16byt", &mut output)
            .map_err(|e| anyhow!("argon2: {e}"))
    };
    hash()?;
    let mut times = Vec::with_capacity(HASH_SAMPLES);
    for _ in 0..HASH_SAMPLES {
        let start = Instant::now();
        hash()?;
        times.push(start.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Report {
    fn print(&self, args: &Args, log_errors: usize) {
        let database = if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let permits = args.password_hash_concurrency.map_or_else(
            || format!("default ({})", self.cpus.saturating_sub(1).max(1)),
            |n| n.to_string(),
        );
        println!();
        println!(
            "login-flood: {} CPUs, {database}, PASSWORD_HASH_CONCURRENCY={permits}",
            self.cpus
        );
        println!(
            "queries: {{ viewer {{ id email }} }} from {} workers at {} req/s, {:.1} s per \
             phase; flood: {} logIn workers ({} with a wrong password)",
            args.query_workers,
            args.query_rate,
            args.duration,
            args.login_workers,
            args.login_workers / 2
        );
        println!();
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "query phase", "answered", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
        );
        for (name, stats) in [
            ("A baseline", &self.baseline),
            ("B under login flood", &self.flood),
        ] {
            let h = &stats.latencies;
            println!(
                "{:<22} {:>8} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
                name,
                stats.ok,
                stats.throughput(),
                ms(h.value_at_quantile(0.50)),
                ms(h.value_at_quantile(0.90)),
                ms(h.value_at_quantile(0.99)),
                ms(h.max()),
                stats.errors
            );
        }
        let base_p99 = self.baseline.latencies.value_at_quantile(0.99);
        let flood_p99 = self.flood.latencies.value_at_quantile(0.99);
        let ratio = flood_p99 as f64 / base_p99.max(1) as f64;
        let verdict = if ratio <= args.target_ratio {
            "MET"
        } else {
            "NOT MET"
        };
        println!(
            "p99 ratio B / A: {ratio:.2}x (p50 ratio {:.2}x)   target <= {:.2}x   {verdict}",
            self.flood.latencies.value_at_quantile(0.50) as f64
                / self.baseline.latencies.value_at_quantile(0.50).max(1) as f64,
            args.target_ratio
        );
        println!();
        println!(
            "{:<22} {:>8} {:>8} {:>8} {:>8} {:>10}",
            "logIn flood (B)", "answered", "per s", "p50 ms", "p99 ms", "unexpected"
        );
        println!(
            "{:<22} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>10}",
            "",
            self.logins.len(),
            self.logins_per_second,
            ms(self.logins.value_at_quantile(0.50)),
            ms(self.logins.value_at_quantile(0.99)),
            self.logins_unexpected
        );
        let hash_ms = self.single_hash.as_secs_f64() * 1000.0;
        let ceiling = self.cpus as f64 / self.single_hash.as_secs_f64();
        println!(
            "argon2id ceiling: {} CPUs / {hash_ms:.1} ms per hash (in-process, m=19456 t=2 p=1) \
             = {ceiling:.1} logins/s; achieved / ceiling = {:.2}",
            self.cpus,
            self.logins_per_second / ceiling
        );

        for (what, error) in [
            ("query (A)", &self.baseline.first_error),
            ("query (B)", &self.flood.first_error),
            ("logIn", &self.login_first_error),
        ] {
            if let Some(error) = error {
                println!("first {what} failure: {error}");
            }
        }
        if log_errors > 0 {
            println!("the service logged {log_errors} ERROR lines");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_databases_are_accepted() {
        for ok in [
            "postgres://postgres@127.0.0.1:5432/db",
            "postgresql://u:p@localhost/db",
            "postgres://[::1]:5432/db",
            "postgres:///db?host=/var/run/postgresql",
        ] {
            assert!(check_database_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "postgres://u@db.example.com/db",
            "postgres://10.0.0.5/db",
            "mysql://127.0.0.1/db",
            "postgres:///db?host=db.example.com",
        ] {
            assert!(check_database_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn seconds_must_be_positive() {
        assert!(seconds("duration", 0.0).is_err());
        assert!(seconds("duration", -1.0).is_err());
        assert!(seconds("duration", f64::NAN).is_err());
        assert_eq!(
            seconds("duration", 1.5).ok(),
            Some(Duration::from_millis(1500))
        );
    }
}
