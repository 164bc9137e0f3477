//! `bench suite`: every benchmark in one command on PostgreSQL and Redis, with a seeded data
//! set, ending in one table of ratios measured side by side and the quality bars met or not.
//!
//! Steps: build the release binary once; create a fresh PostgreSQL database (dropped at the
//! end, also on failure); the queue benchmark seeds thousands of providers and submissions
//! and compares the queue page with a plain handler; a trivial query is compared with a static
//! response; log-ins are compared with the argon2 ceiling of this machine; the statements per
//! operation come from the service's own metrics; the queue page's p99 is compared with itself
//! during a flood of log-ins; thousands of subscribed sockets measure the
//! memory per connection, the fan-out of one event and the Redis hop between two instances.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, ensure};
use clap::Parser;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    fanout,
    graphql::Api,
    load::{self, ClosedLoad, Flood, QueryLoad},
    login_flood::{self, seconds},
    queue,
    service::{self, Service, ServiceOptions},
};

/// Options of `bench suite`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A PostgreSQL server URL whose user may create databases; the suite works in a fresh
    /// database of its own and drops it at the end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres_url: String,
    /// The Redis the service instances use.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Providers seeded (each by its own submitter, each submitted for review).
    #[arg(long, default_value_t = 2_000)]
    providers: usize,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 8.0)]
    duration: f64,
    /// Subscribed WebSocket connections held open in the fan-out step.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Do not build the release binary first.
    #[arg(long)]
    no_build: bool,
}

/// One row of the final table.
struct Row {
    measure: String,
    figure: String,
    target: String,
    verdict: Verdict,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    NotMet,
    /// A figure without a bar of its own.
    Info,
}

impl Verdict {
    fn of(met: bool) -> Self {
        if met { Self::Met } else { Self::NotMet }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Met => "MET",
            Self::NotMet => "NOT MET",
            Self::Info => "-",
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let phase = seconds("duration", args.duration)?;
    ensure!(args.providers > 0, "--providers must be at least 1");
    login_flood::check_database_url(&args.postgres_url)?;
    if !args.no_build {
        service::build_release().await?;
    }
    let database = ScratchDatabase::create(&args.postgres_url).await?;
    let result = run_steps(&args, &database.url, phase).await;
    database.drop_it().await;
    let rows = result?;
    print_table(&rows);
    Ok(())
}

async fn run_steps(args: &Args, database_url: &str, phase: Duration) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();

    eprintln!("\n== 1/6 queue page: GraphQL against a plain actix handler (seeding first)");
    let duration = args.duration.to_string();
    let providers = args.providers.to_string();
    let queue_args = QueueCli::try_parse_from([
        "queue",
        "--no-build",
        "--database-url",
        database_url,
        "--redis-url",
        &args.redis_url,
        "--providers",
        &providers,
        "--duration",
        &duration,
        "--rounds",
        "2",
    ])
    .context("building the queue benchmark's options")?
    .args;
    let queue = queue::run_for_summary(queue_args).await?;
    rows.push(Row {
        measure: format!(
            "queue page of 20 with sections, GraphQL / plain actix ({} in queue)",
            queue.queue_length
        ),
        figure: format!("{:.2}x", queue.ratio),
        target: format!(">= {:.2}x", queue.target_ratio),
        verdict: Verdict::of(queue.ratio >= queue.target_ratio),
    });
    let probes: Vec<String> = queue
        .statements
        .iter()
        .map(|(first, statements)| format!("{statements} at first={first}"))
        .collect();
    rows.push(Row {
        measure: "queue: SQL statements per request by page size".into(),
        figure: probes.join(", "),
        target: format!("constant, <= {}", queue.max_statements),
        verdict: Verdict::of(queue.statements_met),
    });
    for (operation, mean) in &queue.statements_by_operation {
        rows.push(Row {
            measure: format!("SQL statements per {operation} (mean over the run)"),
            figure: format!("{mean:.1}"),
            target: String::new(),
            verdict: Verdict::Info,
        });
    }

    let service = start_service(database_url, &args.redis_url).await?;
    let measured = async {
        eprintln!("\n== 2/6 a trivial query against a static response");
        rows.push(trivial_query(&service, phase).await?);
        eprintln!("\n== 3/6 log-in throughput against the argon2 ceiling");
        rows.push(log_in_throughput(&service, phase).await?);
        eprintln!("\n== 4/6 the queue page's p99 without and during a log-in flood");
        rows.push(queue_p99_under_login_flood(&service, phase).await?);
        anyhow::Ok(())
    }
    .await;
    let log_tail = service.log_tail();
    service.stop().await;
    measured.with_context(|| format!("the service's log ends:\n{log_tail}"))?;

    eprintln!(
        "\n== 5/6 subscription fan-out: {} subscribers, memory per connection, the Redis hop",
        args.subscribers
    );
    let subscribers = args.subscribers.to_string();
    let common = [
        "--database-url",
        database_url,
        "--subscribers",
        &subscribers,
    ];
    rows.extend(run_fanout(&common, &["--redis-url", &args.redis_url]).await?);

    eprintln!(
        "\n== 6/6 subscription fan-out, every socket with a document of its own (no sharing)"
    );
    rows.extend(run_fanout(&common, &["--distinct"]).await?);
    Ok(rows)
}

/// Runs the fanout benchmark with `--no-build` and these options, as its command line would.
async fn run_fanout(common: &[&str], extra: &[&str]) -> anyhow::Result<Vec<Row>> {
    let command_line = ["fanout", "--no-build"]
        .iter()
        .chain(common)
        .chain(extra)
        .copied();
    let args = FanoutCli::try_parse_from(command_line)
        .context("building the fanout benchmark's options")?
        .args;
    Ok(fanout_rows(&fanout::run_for_summary(args).await?))
}

fn fanout_rows(fanout: &fanout::Summary) -> Vec<Row> {
    let sharing = if fanout.distinct {
        ", each document distinct"
    } else {
        ""
    };
    let mut rows = vec![
        Row {
            measure: format!(
                "memory per idle subscribed connection ({} subscribers{})",
                fanout.subscribers, sharing
            ),
            figure: format!("{:.1} KiB", fanout.memory_per_connection_kib),
            target: format!("<= {:.0} KiB", fanout.target_memory_kib),
            verdict: Verdict::of(fanout.memory_per_connection_kib <= fanout.target_memory_kib),
        },
        Row {
            measure: format!(
                "one event to all {} subscribers{}, p99 from the mutation{}",
                fanout.subscribers,
                sharing,
                if fanout.fanout_clean {
                    ""
                } else {
                    " (some missed or failed)"
                }
            ),
            figure: format!("{:.1} ms", fanout.fanout_p99_ms),
            target: format!("<= {:.0} ms", fanout.target_p99_ms),
            verdict: Verdict::of(
                fanout.fanout_clean && fanout.fanout_p99_ms <= fanout.target_p99_ms,
            ),
        },
    ];
    if let Some((added, clean)) = fanout.hop_added_ms {
        rows.push(Row {
            measure: "p50 added by the Redis hop between two instances".into(),
            figure: format!("{added:.2} ms"),
            target: format!("<= {:.0} ms", fanout.target_hop_ms),
            verdict: Verdict::of(clean && added <= fanout.target_hop_ms),
        });
    }
    rows
}

/// The fanout benchmark's options, parsed as its command line would be.
#[derive(Debug, Parser)]
struct FanoutCli {
    #[command(flatten)]
    args: fanout::Args,
}

/// The queue benchmark's options, parsed as its command line would be, so its defaults hold.
#[derive(Debug, Parser)]
struct QueueCli {
    #[command(flatten)]
    args: queue::Args,
}

async fn start_service(database_url: &str, redis_url: &str) -> anyhow::Result<Service> {
    let options = ServiceOptions {
        database_url: Some(database_url.to_owned()),
        password_hash_concurrency: None,
        extra_env: vec![
            ("REDIS_URL".into(), redis_url.to_owned()),
            (
                "REDIS_PREFIX".into(),
                format!("bench-suite-{}", std::process::id()),
            ),
        ],
        jwt_keys: None,
    };
    Service::start(&service::default_binary(), &options).await
}

/// `{ __typename }` through the service (authenticated, rate-limited, executed) against an
/// actix handler in this process answering the same bytes.
async fn trivial_query(service: &Service, phase: Duration) -> anyhow::Result<Row> {
    const QUERY: &str = r#"{"query":"{ __typename }"}"#;
    let api = Api::new(service.base_url(), Duration::from_secs(30))?;
    let token = api
        .sign_up(&format!("bench-trivial-{}@contoso.com", run_id()), PASSWORD)
        .await?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let graphql_url = format!("{}/graphql", service.base_url());
    let answer: Value = client
        .post(&graphql_url)
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(QUERY)
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        answer == json!({ "data": { "__typename": "QueryRoot" } }),
        "unexpected answer {answer}"
    );
    let body = serde_json::to_vec(&answer)?;
    let server = HttpServer::new(move || {
        let body = body.clone();
        App::new().route(
            "/graphql",
            web::post().to(move || {
                let body = body.clone();
                async move {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body)
                }
            }),
        )
    })
    .disable_signals()
    .bind(("127.0.0.1", 0))?;
    let address = *server.addrs().first().context("no address")?;
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    let static_url = format!("http://{address}/graphql");

    let send = |url: String, authorization: Option<String>| {
        let client = client.clone();
        move || {
            let (client, url, authorization) = (client.clone(), url.clone(), authorization.clone());
            async move {
                let mut request = client
                    .post(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(QUERY);
                if let Some(value) = authorization {
                    request = request.header(AUTHORIZATION, value);
                }
                let response = request.send().await?;
                ensure!(response.status().is_success(), "HTTP {}", response.status());
                let answer: Value = response.json().await?;
                ensure!(answer["data"]["__typename"] == "QueryRoot", "{answer}");
                Ok(())
            }
        }
    };
    let load = |duration| ClosedLoad {
        workers: 16,
        duration,
        max_requests: 10_000_000,
    };
    let graphql = send(graphql_url, Some(format!("Bearer {token}")));
    let fixed = send(static_url, None);
    load::run_closed_loop(load(Duration::from_secs(2)), fixed.clone()).await?;
    load::run_closed_loop(load(Duration::from_secs(2)), graphql.clone()).await?;
    let fixed_stats = load::run_closed_loop(load(phase), fixed).await?;
    let graphql_stats = load::run_closed_loop(load(phase), graphql).await?;
    handle.stop(true).await;
    task.await.ok();
    ensure!(
        graphql_stats.errors == 0 && fixed_stats.errors == 0,
        "failures: GraphQL {:?}, static {:?}",
        graphql_stats.first_error,
        fixed_stats.first_error
    );
    let ratio = graphql_stats.throughput() / fixed_stats.throughput().max(f64::MIN_POSITIVE);
    Ok(Row {
        measure: format!(
            "trivial query / static response ({:.0} vs {:.0} req/s)",
            graphql_stats.throughput(),
            fixed_stats.throughput()
        ),
        figure: format!("{ratio:.2}x"),
        target: String::new(),
        verdict: Verdict::Info,
    })
}

const PASSWORD: &str = "bench-suite-correct-horse-battery";

fn run_id() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Successful log-ins per second against the most this machine can hash: the service's permits
/// (its default, one per core but one) divided by one hash's time measured here.
/// The log-in flood bar on the reviewer queue page: the page's p99 at a steady 100 requests/s
/// (8 workers), first alone, then while 16 workers log in as fast as they are answered (half of
/// them with a wrong password), after a 1 s ramp. Both phases in one run, on the seeded data.
async fn queue_p99_under_login_flood(service: &Service, phase: Duration) -> anyhow::Result<Row> {
    const TARGET: f64 = 2.0;
    let run = run_id();
    let queries = Api::new(service.base_url(), Duration::from_secs(30))?;
    let logins = Api::new(service.base_url(), Duration::from_secs(60))?;
    let reviewer_email = format!("bench-flood-reviewer-{run}@contoso.com");
    service
        .cli(
            &[
                "user",
                "create",
                "--email",
                &reviewer_email,
                "--role",
                "reviewer",
            ],
            &format!("{PASSWORD}\n"),
        )
        .await?;
    let reviewer: Arc<str> = queries
        .log_in_token(&reviewer_email, PASSWORD)
        .await?
        .into();
    let flood_email = format!("bench-flood-{run}@contoso.com");
    logins.sign_up(&flood_email, PASSWORD).await?;

    let page = move || {
        let (api, token) = (queries.clone(), Arc::clone(&reviewer));
        async move {
            let data = api
                .post(queue::QUEUE_PAGE, json!({ "first": 20 }), Some(&token))
                .await?;
            let items = data["reviewQueue"]["edges"].as_array().map_or(0, Vec::len);
            ensure!(items == 20, "the queue page had {items} items");
            Ok(())
        }
    };
    let steady = |duration| QueryLoad {
        workers: 8,
        rate: 100.0,
        duration,
        max_requests: 1_000_000,
    };
    load::run_open_loop(steady(Duration::from_secs(2)), page.clone()).await?;
    let alone = load::run_open_loop(steady(phase), page.clone()).await?;

    let ramp = Duration::from_secs(1);
    let (stop, stopped) = watch::channel(false);
    let flood = Flood {
        workers: 16,
        email: flood_email,
        password: PASSWORD.to_owned(),
        wrong_password: login_flood::WRONG_PASSWORD.to_owned(),
        deadline: Instant::now() + ramp + phase + Duration::from_secs(60),
        max_requests: 1_000_000,
    };
    let flooding = load::start_flood(&logins, &flood, &stopped);
    tokio::time::sleep(ramp).await;
    let flooded = load::run_open_loop(steady(phase), page).await;
    stop.send_replace(true);
    let logged_in = load::join_flood(flooding).await?;
    let flooded = flooded?;

    let p99 = |stats: &load::QueryStats| stats.latencies.value_at_quantile(0.99) as f64 / 1_000.0;
    let (before, during) = (p99(&alone), p99(&flooded));
    let ratio = during / before.max(0.001);
    let clean = alone.errors == 0 && flooded.errors == 0;
    eprintln!(
        "queue page p99: {before:.2} ms alone, {during:.2} ms during the flood ({} log-ins \
         answered); errors {} and {}{}",
        logged_in.samples.len(),
        alone.errors,
        flooded.errors,
        alone
            .first_error
            .as_ref()
            .or(flooded.first_error.as_ref())
            .map_or(String::new(), |e| format!(" (first: {e})"))
    );
    Ok(Row {
        measure: format!(
            "queue page p99 during a log-in flood / alone ({during:.1} vs {before:.1} ms{})",
            if clean { "" } else { ", with errors" }
        ),
        figure: format!("{ratio:.2}x"),
        target: format!("<= {TARGET:.2}x"),
        verdict: Verdict::of(clean && ratio <= TARGET),
    })
}

async fn log_in_throughput(service: &Service, phase: Duration) -> anyhow::Result<Row> {
    let api = Api::new(service.base_url(), Duration::from_secs(60))?;
    let email = format!("bench-login-{}@contoso.com", run_id());
    api.sign_up(&email, PASSWORD).await?;
    let hash = tokio::task::spawn_blocking(login_flood::single_hash_time)
        .await
        .context("timing a hash")??;
    let permits =
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
    let ceiling = permits as f64 / hash.as_secs_f64();
    let api = Arc::new(api);
    let email: Arc<str> = email.into();
    let log_in = move || {
        let (api, email) = (Arc::clone(&api), Arc::clone(&email));
        async move {
            let token = api.log_in_token(&email, PASSWORD).await?;
            ensure!(!token.is_empty(), "no token");
            Ok(())
        }
    };
    let stats = load::run_closed_loop(
        ClosedLoad {
            workers: 8,
            duration: phase,
            max_requests: 1_000_000,
        },
        log_in,
    )
    .await?;
    ensure!(
        stats.errors == 0,
        "log-in failures: {:?}",
        stats.first_error
    );
    let ratio = stats.throughput() / ceiling;
    Ok(Row {
        measure: format!(
            "log-ins per second / argon2 ceiling ({:.1}/s vs {permits} permit(s) / {:.1} ms)",
            stats.throughput(),
            hash.as_secs_f64() * 1_000.0
        ),
        figure: format!("{ratio:.2}x"),
        target: String::new(),
        verdict: Verdict::Info,
    })
}

fn print_table(rows: &[Row]) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "bench suite: PostgreSQL + Redis, {cpus} CPUs; ratios measured side by side in this run"
    );
    // A Markdown table, aligned for the terminal, so it can be pasted into bench/README.md.
    let cells: Vec<[&str; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.measure.as_str(),
                r.figure.as_str(),
                r.target.as_str(),
                r.verdict.as_str(),
            ]
        })
        .collect();
    let header = ["measure", "figure", "target", "bar"];
    let widths: Vec<usize> = (0..4)
        .map(|column| {
            cells
                .iter()
                .chain(std::iter::once(&header))
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[&str; 4]| {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(&header);
    let rule: Vec<String> = widths.iter().map(|&width| "-".repeat(width)).collect();
    println!("|-{}-|", rule.join("-|-"));
    for row in &cells {
        line(row);
    }
}

/// A database of the suite's own on the PostgreSQL server.
struct ScratchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        let name = format!(
            "amdash_bench_{}_{}",
            std::process::id(),
            run_id() % 1_000_000
        );
        let admin = Database::connect(admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url}"))?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .context("creating the suite's database")?;
        admin.close().await.ok();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url, |(base, _)| base);
        eprintln!("using a fresh database {name}");
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    async fn drop_it(self) {
        let dropped = async {
            let admin = Database::connect(&self.admin_url).await?;
            admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .await?;
            admin.close().await
        }
        .await;
        if let Err(error) = dropped {
            eprintln!(
                "warning: could not drop the database {}: {error}",
                self.name
            );
        }
    }
}
