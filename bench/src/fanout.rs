//! The `fanout` benchmark: thousands of idle GraphQL subscriptions on one instance, what they
//! cost in memory, how fast one event reaches all of them, and (with PostgreSQL and Redis) what
//! the Redis hop between two instances adds.

use std::{
    collections::HashSet,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::{net::TcpStream, sync::mpsc, task::JoinSet};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::HeaderValue,
        protocol::{CloseFrame, WebSocketConfig},
    },
};

use crate::{
    graphql::Api,
    load::{micros, new_histogram},
    login_flood::{check_database_url, seconds},
    queue::{CLAIM, CREATE_USER, PASSWORD, no_user_errors, seed_submitted_provider},
    service::{self, Service, ServiceOptions},
};

/// What the queue subscribers ask for: the change and the submission as it is now.
const QUEUE_SUBSCRIPTION: &str = "subscription { reviewQueueChanged { cursor change kind \
    providerId toStatus actor { email } submission { id status } } }";
/// What the provider's followers ask for.
const STATUS_SUBSCRIPTION: &str = "subscription($providerId: ID!) { \
    submissionStatusChanged(providerId: $providerId) { cursor kind fromStatus toStatus \
    actor { email } submission { number status } } }";
const RELEASE: &str = "mutation($input: SubmissionRefInput!) { releaseSubmission(input: $input) \
    { submission { status } userErrors { field code message } } }";

/// How long one connection may take to open, initialise and subscribe.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// File descriptors kept free for everything but the subscribers' sockets.
const SPARE_FDS: u64 = 512;
/// Each client socket's read buffer (tungstenite allocates 128 KiB per socket by default).
const CLIENT_READ_BUFFER: usize = 4096;

/// The reviewer account whose token subscriber `index` uses, or `None` for the owner's sockets.
/// Reviewers take turns over the reviewers' sockets only, so each holds an even share whatever
/// their number.
fn reviewer_of(index: usize, reviewers: usize) -> Option<usize> {
    if Follows::of(index) == Follows::StatusAsOwner {
        return None;
    }
    // Three of every four sockets are reviewers'; number them without the owner's.
    let reviewer_socket = index / 4 * 3 + index % 4;
    Some(reviewer_socket % reviewers.max(1))
}

/// Options of `bench fanout`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscribed WebSocket connections held open on one instance.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// Measured events (alternately releasing and claiming one submission).
    #[arg(long, default_value_t = 10)]
    events: usize,
    /// Reviewer accounts that hold the reviewers' sockets (a quarter of the sockets belong to
    /// the provider's owner, a submitter).
    #[arg(long, default_value_t = 8)]
    reviewers: usize,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 250)]
    batch: usize,
    /// Seconds to wait after the last subscription before reading the idle memory.
    #[arg(long, default_value_t = 5.0)]
    settle: f64,
    /// Seconds between two events.
    #[arg(long, default_value_t = 1.0)]
    gap: f64,
    /// Seconds an event may take to reach every subscriber before the rest count as missing.
    #[arg(long, default_value_t = 30.0)]
    event_timeout: f64,
    /// Subscribers on instance A during the Redis hop measurement.
    #[arg(long, default_value_t = 20)]
    hop_subscribers: usize,
    /// Events through each instance during the Redis hop measurement.
    #[arg(long, default_value_t = 20)]
    hop_events: usize,
    /// Largest acceptable service memory per idle subscribed connection, in KiB.
    #[arg(long, default_value_t = 16.0)]
    target_memory_kib: f64,
    /// Largest acceptable p99 from the mutation to a subscriber's `next`, in ms.
    #[arg(long, default_value_t = 250.0)]
    target_p99_ms: f64,
    /// Largest acceptable p50 added by the Redis hop, in ms.
    #[arg(long, default_value_t = 5.0)]
    target_hop_ms: f64,
    /// An existing PostgreSQL database on this machine, e.g.
    /// postgres://postgres@127.0.0.1:5432/amdash_bench; default: a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Redis on this machine, e.g. redis://127.0.0.1:6379; with --database-url, also measures
    /// the Redis hop between two instances.
    #[arg(long)]
    redis_url: Option<String>,
    /// The service binary; default: <target dir>/release/dashboard, built first.
    #[arg(long)]
    service_bin: Option<PathBuf>,
    /// Do not run `cargo build --release --bin dashboard` before starting.
    #[arg(long)]
    no_build: bool,
    /// Seconds before a single HTTP request is given up.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Give every subscription a document of its own (a distinct operation name), so that no
    /// two sockets share an execution: the service's worst case, as if every subscriber were a
    /// different user.
    #[arg(long)]
    distinct: bool,
}

/// What a subscriber follows, and as whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Follows {
    /// `reviewQueueChanged`, as a reviewer.
    Queue,
    /// `submissionStatusChanged`, as a reviewer.
    StatusAsReviewer,
    /// `submissionStatusChanged`, as the provider's owner (who may not see reviewers' e-mails).
    StatusAsOwner,
}

impl Follows {
    /// Half the sockets follow the queue; a quarter the provider as a reviewer, a quarter as
    /// its owner.
    fn of(index: usize) -> Self {
        match index % 4 {
            0 | 1 => Self::Queue,
            2 => Self::StatusAsReviewer,
            _ => Self::StatusAsOwner,
        }
    }

    fn field(self) -> &'static str {
        match self {
            Self::Queue => "reviewQueueChanged",
            _ => "submissionStatusChanged",
        }
    }
}

/// One subscriber's `next` message (or its end), time-stamped on arrival.
struct Receipt {
    subscriber: usize,
    at: Instant,
    outcome: Result<Delivered, String>,
}

/// What a `next` message said.
struct Delivered {
    cursor: String,
    to_status: String,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The benchmark's connections and the channel their messages arrive on.
struct Subscribers {
    readers: JoinSet<()>,
    receipts: mpsc::UnboundedReceiver<Receipt>,
    count: usize,
    /// The service's memory once every socket was acknowledged, before any subscribed.
    rss_connected_kib: Option<u64>,
}

impl Subscribers {
    /// Closes every socket (by dropping it) and waits for the readers to end.
    async fn close(mut self) {
        self.readers.abort_all();
        while self.readers.join_next().await.is_some() {}
    }
}

/// Who the subscribers are and what the events change.
struct Seeded {
    /// Tokens of the reviewer accounts, the first of which triggers the events.
    reviewers: Vec<String>,
    owner_token: String,
    provider_id: String,
    submission_id: String,
}

/// Runs the benchmark and prints its table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    run_for_summary(args).await.map(drop)
}

/// Runs the benchmark, prints its table and returns its bars.
pub async fn run_for_summary(args: Args) -> anyhow::Result<Summary> {
    let timing = Timing {
        settle: seconds("settle", args.settle)?,
        gap: seconds("gap", args.gap)?,
        event_timeout: seconds("event-timeout", args.event_timeout)?,
        request_timeout: seconds("request-timeout", args.request_timeout)?,
    };
    ensure!(args.subscribers >= 4, "--subscribers must be at least 4");
    ensure!(args.events > 0, "--events must be at least 1");
    ensure!(args.reviewers > 0, "--reviewers must be at least 1");
    ensure!(args.batch > 0, "--batch must be at least 1");
    ensure!(
        args.hop_subscribers > 0 && args.hop_events > 0,
        "--hop-subscribers and --hop-events must be at least 1"
    );
    if let Some(url) = &args.database_url {
        check_database_url(url)?;
    }
    if let Some(url) = &args.redis_url {
        check_redis_url(url)?;
        ensure!(
            args.database_url.is_some(),
            "--redis-url needs --database-url: instances share events through one database"
        );
    }
    let fd_limit = raise_fd_limit(args.subscribers.max(args.hop_subscribers) as u64 + SPARE_FDS)?;

    // The most sockets one account holds, counted the way the sockets are handed out.
    let mut per_account = vec![0_usize; args.reviewers + 1];
    for index in 0..args.subscribers {
        let account = reviewer_of(index, args.reviewers).unwrap_or(args.reviewers);
        per_account[account] += 1;
    }
    let per_user = per_account
        .into_iter()
        .max()
        .unwrap_or(0)
        .max(args.hop_subscribers);
    ensure!(
        per_user <= 10_000,
        "{per_user} sockets per account is over the service's WS_MAX_CONNECTIONS_PER_USER \
         bound (10000): raise --reviewers"
    );

    let binary = match &args.service_bin {
        Some(path) => path.clone(),
        None => {
            if !args.no_build {
                service::build_release().await?;
            }
            service::default_binary()
        }
    };
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // The instance's socket cap leaves room for every subscriber, whatever --subscribers says.
    let sockets = args.subscribers.max(args.hop_subscribers) + 64;
    let mut extra_env = vec![
        (
            "WS_MAX_CONNECTIONS_PER_USER".to_owned(),
            per_user.to_string(),
        ),
        ("WS_MAX_CONNECTIONS".to_owned(), sockets.to_string()),
    ];
    if let Some(url) = &args.redis_url {
        extra_env.push(("REDIS_URL".into(), url.clone()));
        extra_env.push(("REDIS_PREFIX".into(), format!("bench-fanout-{run_id}")));
    }
    let options = ServiceOptions {
        database_url: args.database_url.clone(),
        password_hash_concurrency: None,
        extra_env,
        jwt_keys: None,
    };
    eprintln!(
        "starting {} (file descriptors: {fd_limit} per process)",
        binary.display()
    );
    let service = Service::start(&binary, &options).await?;
    let measured = measure(&service, &binary, &options, &args, timing, run_id).await;
    let log_errors = service.log_error_lines();
    let log_tail = service.log_tail();
    service.stop().await;
    let report = measured.with_context(|| format!("the service's log ends:\n{log_tail}"))?;
    Ok(report.print(&args, per_user, log_errors))
}

/// The bars of one run, for `bench suite`'s table.
pub struct Summary {
    pub subscribers: usize,
    pub memory_per_connection_kib: f64,
    pub target_memory_kib: f64,
    pub fanout_p99_ms: f64,
    pub target_p99_ms: f64,
    /// No event missed a subscriber and no payload was an error.
    pub fanout_clean: bool,
    /// The p50 the Redis hop adds, when two instances were measured, and whether every hop
    /// event reached every subscriber.
    pub hop_added_ms: Option<(f64, bool)>,
    pub target_hop_ms: f64,
    /// Every socket had a document of its own (`--distinct`).
    pub distinct: bool,
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    settle: Duration,
    gap: Duration,
    event_timeout: Duration,
    request_timeout: Duration,
}

/// What one run measured.
struct Report {
    cpus: usize,
    ramp: Duration,
    rss_before_kib: u64,
    rss_connected_kib: u64,
    rss_idle_kib: u64,
    rss_after_kib: u64,
    fanout: Deliveries,
    /// The time from each event's mutation to its last receiver.
    last_receiver: Histogram<u64>,
    hop: Option<Hop>,
}

/// Deliveries of a series of events to a set of subscribers.
struct Deliveries {
    /// From sending the mutation to each subscriber's `next`, µs.
    latencies: Histogram<u64>,
    /// The mutation's own round trip, µs.
    mutations: Histogram<u64>,
    received: u64,
    missing: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Deliveries {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latencies: new_histogram()?,
            mutations: new_histogram()?,
            received: 0,
            missing: 0,
            errors: 0,
            first_error: None,
        })
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }
}

/// The Redis hop: events made on A (delivered locally) and on B (reaching A through Redis).
struct Hop {
    local: Deliveries,
    remote: Deliveries,
}

async fn measure(
    service: &Service,
    binary: &std::path::Path,
    options: &ServiceOptions,
    args: &Args,
    timing: Timing,
    run_id: u128,
) -> anyhow::Result<Report> {
    let pid = service.pid().context("the service has no process id")?;
    let api = Api::new(service.base_url(), timing.request_timeout)?;
    let seeded = seed(service, &api, args, run_id).await?;
    // Let start-up and seeding allocations settle before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = rss_kib(pid)?;

    eprintln!(
        "ramping up {} subscribers in batches of {}",
        args.subscribers, args.batch
    );
    let started = Instant::now();
    let plan: Vec<(String, Follows)> = (0..args.subscribers)
        .map(|index| {
            let follows = Follows::of(index);
            let token = match follows {
                Follows::StatusAsOwner => seeded.owner_token.clone(),
                _ => {
                    let reviewer = reviewer_of(index, seeded.reviewers.len()).unwrap_or(0);
                    seeded.reviewers[reviewer].clone()
                }
            };
            (token, follows)
        })
        .collect();
    let mut subscribers = open_subscribers(
        service.base_url(),
        &plan,
        &seeded,
        args.batch,
        args.distinct,
        Some(pid),
    )
    .await?;
    let rss_connected_kib = subscribers.rss_connected_kib.unwrap_or_default();
    let ramp = started.elapsed();
    eprintln!(
        "{} subscribed in {:.1} s; settling for {:.1} s",
        subscribers.count,
        ramp.as_secs_f64(),
        timing.settle.as_secs_f64()
    );
    tokio::time::sleep(timing.settle).await;
    let rss_idle_kib = rss_kib(pid)?;

    // One unrecorded event first: it proves that every subscription is live.
    let reviewer = &seeded.reviewers[0];
    let mut warmup = Deliveries::new()?;
    let mut claimed = false;
    event(
        &api,
        reviewer,
        &seeded.submission_id,
        &mut claimed,
        &mut subscribers,
        timing.event_timeout,
        &mut warmup,
    )
    .await?;
    if warmup.missing > 0 || warmup.errors > 0 {
        bail!(
            "the warm-up event reached {} of {} subscribers ({} errors; first: {})",
            warmup.received,
            subscribers.count,
            warmup.errors,
            warmup.first_error.as_deref().unwrap_or("none")
        );
    }

    let mut fanout = Deliveries::new()?;
    let mut last_receiver = new_histogram()?;
    for index in 0..args.events {
        tokio::time::sleep(timing.gap).await;
        let slowest = event(
            &api,
            reviewer,
            &seeded.submission_id,
            &mut claimed,
            &mut subscribers,
            timing.event_timeout,
            &mut fanout,
        )
        .await?;
        if let Some(slowest) = slowest {
            last_receiver
                .record(micros(slowest))
                .context("recording a latency")?;
        }
        eprintln!(
            "event {}/{}: last receiver after {:.1} ms",
            index + 1,
            args.events,
            slowest.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
        );
    }
    tokio::time::sleep(timing.settle).await;
    let rss_after_kib = rss_kib(pid)?;
    subscribers.close().await;

    let hop = if args.redis_url.is_some() {
        Some(measure_hop(service, binary, options, args, timing, &seeded, claimed).await?)
    } else {
        None
    };
    Ok(Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ramp,
        rss_before_kib,
        rss_connected_kib,
        rss_idle_kib,
        rss_after_kib,
        fanout,
        last_receiver,
        hop,
    })
}

/// Starts instance B on A's database, Redis channel and signing keys, holds subscribers on A,
/// and makes events alternately through A (delivered locally) and B (through Redis).
async fn measure_hop(
    service: &Service,
    binary: &std::path::Path,
    options: &ServiceOptions,
    args: &Args,
    timing: Timing,
    seeded: &Seeded,
    mut claimed: bool,
) -> anyhow::Result<Hop> {
    eprintln!("starting instance B on the same database and Redis channel");
    let options_b = ServiceOptions {
        jwt_keys: Some(service.jwt_keys().to_owned()),
        ..options.clone()
    };
    let service_b = Service::start(binary, &options_b).await?;
    let result = async {
        let api_a = Api::new(service.base_url(), timing.request_timeout)?;
        let api_b = Api::new(service_b.base_url(), timing.request_timeout)?;
        let plan: Vec<(String, Follows)> = (0..args.hop_subscribers)
            .map(|_| (seeded.reviewers[0].clone(), Follows::Queue))
            .collect();
        let mut subscribers = open_subscribers(
            service.base_url(),
            &plan,
            seeded,
            args.batch,
            args.distinct,
            None,
        )
        .await?;
        tokio::time::sleep(timing.settle).await;

        let reviewer = &seeded.reviewers[0];
        let mut warmup = Deliveries::new()?;
        for api in [&api_a, &api_b] {
            event(
                api,
                reviewer,
                &seeded.submission_id,
                &mut claimed,
                &mut subscribers,
                timing.event_timeout,
                &mut warmup,
            )
            .await?;
        }
        if warmup.missing > 0 || warmup.errors > 0 {
            bail!(
                "the hop warm-up events reached {} of {} subscribers ({} errors; first: {})",
                warmup.received,
                2 * subscribers.count,
                warmup.errors,
                warmup.first_error.as_deref().unwrap_or("none")
            );
        }
        let mut hop = Hop {
            local: Deliveries::new()?,
            remote: Deliveries::new()?,
        };
        eprintln!(
            "Redis hop: {} events through each instance, {} subscribers on A",
            args.hop_events, args.hop_subscribers
        );
        // A, B, B, A, …: claims and releases both go through each instance equally often.
        for index in 0..2 * args.hop_events {
            tokio::time::sleep(timing.gap / 4).await;
            let through_b = matches!(index % 4, 1 | 2);
            let (api, deliveries) = if through_b {
                (&api_b, &mut hop.remote)
            } else {
                (&api_a, &mut hop.local)
            };
            event(
                api,
                reviewer,
                &seeded.submission_id,
                &mut claimed,
                &mut subscribers,
                timing.event_timeout,
                deliveries,
            )
            .await?;
        }
        subscribers.close().await;
        anyhow::Ok(hop)
    }
    .await;
    let tail = service_b.log_tail();
    service_b.stop().await;
    result.with_context(|| format!("instance B's log ends:\n{tail}"))
}

/// Creates an admin with the service's CLI, `args.reviewers` reviewers through `createUser`,
/// and one submitter whose provider is submitted for review.
async fn seed(service: &Service, api: &Api, args: &Args, run_id: u128) -> anyhow::Result<Seeded> {
    let admin_email = format!("bench-fanout-admin-{run_id}@contoso.com");
    eprintln!(
        "seeding: admin, {} reviewers, one submission",
        args.reviewers
    );
    service
        .cli(
            &["user", "create", "--email", &admin_email, "--role", "admin"],
            &format!("{PASSWORD}\n"),
        )
        .await?;
    let admin = api.log_in_token(&admin_email, PASSWORD).await?;
    let mut reviewers = Vec::with_capacity(args.reviewers);
    for index in 0..args.reviewers {
        let email = format!("bench-fanout-reviewer-{index}-{run_id}@contoso.com");
        let data = api
            .post(
                CREATE_USER,
                json!({ "input": { "email": email, "password": PASSWORD, "role": "REVIEWER" } }),
                Some(&admin),
            )
            .await
            .context("createUser")?;
        no_user_errors(&data["createUser"], "createUser")?;
        reviewers.push(api.log_in_token(&email, PASSWORD).await?);
    }
    let provider = seed_submitted_provider(api, 0, run_id).await?;
    Ok(Seeded {
        reviewers,
        owner_token: provider.owner_token,
        provider_id: provider.provider_id,
        submission_id: provider.submission_id,
    })
}

/// Opens one socket per entry of `plan` (token, what it follows), `batch` at a time, and
/// initialises it; then, with every socket acknowledged, reads the service's memory (when `pid`
/// is given), subscribes each and starts a reader for each.
async fn open_subscribers(
    base_url: &str,
    plan: &[(String, Follows)],
    seeded: &Seeded,
    batch: usize,
    distinct: bool,
    pid: Option<u32>,
) -> anyhow::Result<Subscribers> {
    let ws_url = format!("{}/graphql", base_url.replacen("http://", "ws://", 1));
    let mut sockets: Vec<Option<Socket>> = (0..plan.len()).map(|_| None).collect();
    for (chunk_index, chunk) in plan.chunks(batch).enumerate() {
        let mut opening = JoinSet::new();
        for (offset, (token, _)) in chunk.iter().enumerate() {
            let index = chunk_index * batch + offset;
            let (url, token) = (ws_url.clone(), token.clone());
            opening.spawn(async move {
                let socket = tokio::time::timeout(SETUP_TIMEOUT, open_one(&url, &token))
                    .await
                    .map_err(|_| anyhow::anyhow!("timed out"))
                    .and_then(|result| result)
                    .with_context(|| format!("subscriber {index}"))?;
                anyhow::Ok((index, socket))
            });
        }
        while let Some(joined) = opening.join_next().await {
            let (index, socket) = joined.context("a connecting task panicked")??;
            sockets[index] = Some(socket);
        }
        let done = (chunk_index + 1) * batch;
        if done.is_multiple_of(2_000) || done >= plan.len() {
            eprintln!("  {} / {} connected", done.min(plan.len()), plan.len());
        }
    }
    let rss_connected_kib = match pid {
        Some(pid) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some(rss_kib(pid)?)
        }
        None => None,
    };

    let (sender, receipts) = mpsc::unbounded_channel();
    let mut readers = JoinSet::new();
    let mut sockets = sockets.into_iter().enumerate();
    loop {
        let mut subscribing = JoinSet::new();
        for (index, socket) in sockets.by_ref().take(batch) {
            let mut socket = socket.context("a socket was not opened")?;
            let follows = plan[index].1;
            let provider_id = seeded.provider_id.clone();
            subscribing.spawn(async move {
                let name = distinct.then(|| format!("Subscriber{index}"));
                subscribe(&mut socket, follows, &provider_id, name.as_deref())
                    .await
                    .with_context(|| format!("subscriber {index}"))?;
                anyhow::Ok((index, follows, socket))
            });
        }
        if subscribing.is_empty() {
            break;
        }
        while let Some(joined) = subscribing.join_next().await {
            let (index, follows, socket) = joined.context("a subscribing task panicked")??;
            readers.spawn(read(index, follows, socket, sender.clone()));
        }
    }
    Ok(Subscribers {
        readers,
        receipts,
        count: plan.len(),
        rss_connected_kib,
    })
}

/// Connects and initialises with `token`.
async fn open_one(url: &str, token: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request().context("the WebSocket URL")?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let (mut socket, _) = connect_async_with_config(request, Some(config), true)
        .await
        .context("opening the WebSocket")?;
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    socket
        .send(Message::text(init.to_string()))
        .await
        .context("sending connection_init")?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(text.as_str())
                    .with_context(|| format!("an unreadable message: {text}"))?;
                ensure!(
                    message["type"] == "connection_ack",
                    "expected connection_ack, got {message}"
                );
                return Ok(socket);
            }
            Some(Ok(Message::Close(frame))) => bail!("closed before the ack: {}", describe(frame)),
            Some(Ok(_)) => {}
            Some(Err(error)) => bail!("before the ack: {error}"),
            None => bail!("the socket ended before the ack"),
        }
    }
}

/// Sends the `subscribe` message of what the socket follows.
/// With `name`, the operation is named so, which makes its document unlike any other socket's.
async fn subscribe(
    socket: &mut Socket,
    follows: Follows,
    provider_id: &str,
    name: Option<&str>,
) -> anyhow::Result<()> {
    let named = |query: &str| match name {
        Some(name) => query.replacen("subscription", &format!("subscription {name}"), 1),
        None => query.to_owned(),
    };
    let subscribe = match follows {
        Follows::Queue => json!({ "id": "s", "type": "subscribe", "payload": {
            "query": named(QUEUE_SUBSCRIPTION) } }),
        _ => json!({ "id": "s", "type": "subscribe", "payload": {
            "query": named(STATUS_SUBSCRIPTION), "variables": { "providerId": provider_id } } }),
    };
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .context("sending subscribe")
}

/// Reads one socket until it ends, time-stamping each message before decoding it.
async fn read(
    subscriber: usize,
    follows: Follows,
    mut socket: Socket,
    receipts: mpsc::UnboundedSender<Receipt>,
) {
    while let Some(message) = socket.next().await {
        let at = Instant::now();
        let outcome = match message {
            Ok(Message::Text(text)) => decode(text.as_str(), follows.field()),
            Ok(Message::Close(frame)) => Err(format!("closed: {}", describe(frame))),
            Ok(_) => continue,
            Err(error) => Err(format!("socket error: {error}")),
        };
        let ended = outcome
            .as_ref()
            .is_err_and(|e| e.starts_with("closed") || e.starts_with("socket"));
        if receipts
            .send(Receipt {
                subscriber,
                at,
                outcome,
            })
            .is_err()
            || ended
        {
            return;
        }
    }
    let _ = receipts.send(Receipt {
        subscriber,
        at: Instant::now(),
        outcome: Err("the socket ended without a close frame".into()),
    });
}

fn describe(frame: Option<CloseFrame>) -> String {
    frame.map_or_else(
        || "no close frame".into(),
        |f| format!("{} {}", u16::from(f.code), f.reason.as_str()),
    )
}

/// A `next` message of operation `s` without errors: its cursor and new status.
fn decode(text: &str, field: &str) -> Result<Delivered, String> {
    let message: Value =
        serde_json::from_str(text).map_err(|e| format!("unreadable message ({e}): {text}"))?;
    if message["type"] != "next" || message["id"] != "s" {
        return Err(format!("unexpected message: {text}"));
    }
    if message["payload"].get("errors").is_some() {
        return Err(format!("errors in the payload: {text}"));
    }
    let change = &message["payload"]["data"][field];
    match (change["cursor"].as_str(), change["toStatus"].as_str()) {
        (Some(cursor), Some(to_status)) => Ok(Delivered {
            cursor: cursor.to_owned(),
            to_status: to_status.to_owned(),
        }),
        _ => Err(format!("no cursor or toStatus: {text}")),
    }
}

/// Claims the submission (or releases it when `claimed`) and waits until every subscriber got
/// the change or `timeout` passed. Records each receiver's time from sending the mutation into
/// `deliveries`; returns the time of the last one.
async fn event(
    api: &Api,
    reviewer: &str,
    submission_id: &str,
    claimed: &mut bool,
    subscribers: &mut Subscribers,
    timeout: Duration,
    deliveries: &mut Deliveries,
) -> anyhow::Result<Option<Duration>> {
    // Anything that arrived between events is unexpected.
    while let Ok(stray) = subscribers.receipts.try_recv() {
        deliveries.error(format!(
            "subscriber {} between events: {}",
            stray.subscriber,
            stray
                .outcome
                .err()
                .unwrap_or_else(|| "an unexpected change".into())
        ));
    }
    let (mutation, field, expected) = if *claimed {
        (RELEASE, "releaseSubmission", "SUBMITTED")
    } else {
        (CLAIM, "claimSubmission", "IN_REVIEW")
    };
    let sent = Instant::now();
    let data = api
        .post(
            mutation,
            json!({ "input": { "submissionId": submission_id } }),
            Some(reviewer),
        )
        .await
        .with_context(|| field.to_owned())?;
    let round_trip = sent.elapsed();
    no_user_errors(&data[field], field)?;
    ensure!(
        data[field]["submission"]["status"] == expected,
        "{field} did not leave the submission {expected}: {data}"
    );
    *claimed = !*claimed;
    deliveries
        .mutations
        .record(micros(round_trip))
        .context("recording a latency")?;

    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = vec![false; subscribers.count];
    let mut cursors = HashSet::new();
    let mut received = 0;
    let mut slowest = None;
    while received < subscribers.count {
        let receipt = match tokio::time::timeout_at(deadline, subscribers.receipts.recv()).await {
            Ok(Some(receipt)) => receipt,
            Ok(None) => bail!("every subscriber's reader ended"),
            Err(_) => break,
        };
        match receipt.outcome {
            Ok(delivered) if delivered.to_status == expected => {
                if std::mem::replace(&mut seen[receipt.subscriber], true) {
                    deliveries.error(format!(
                        "subscriber {} got the change twice",
                        receipt.subscriber
                    ));
                    continue;
                }
                received += 1;
                let latency = receipt.at.saturating_duration_since(sent);
                slowest = Some(latency);
                cursors.insert(delivered.cursor);
                deliveries
                    .latencies
                    .record(micros(latency))
                    .context("recording a latency")?;
            }
            Ok(delivered) => deliveries.error(format!(
                "subscriber {} got toStatus {} instead of {expected}",
                receipt.subscriber, delivered.to_status
            )),
            Err(error) => deliveries.error(format!("subscriber {}: {error}", receipt.subscriber)),
        }
    }
    if cursors.len() > 1 {
        deliveries.error(format!(
            "one event arrived with {} different cursors",
            cursors.len()
        ));
    }
    deliveries.received += received as u64;
    deliveries.missing += (subscribers.count - received) as u64;
    Ok(slowest)
}

/// The resident memory of a process, from `/proc/<pid>/status` (`VmRSS`), in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Raises this process's soft limit of open files to its hard limit, which the service started
/// from here inherits; fails when even the hard limit is below `needed`.
fn raise_fd_limit(needed: u64) -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if hard < needed {
        bail!(
            "the hard limit of open files is {hard}, and {needed} are needed: raise it (e.g. \
             `ulimit -Hn {needed}` as root, or LimitNOFILE in a systemd unit) or pass fewer \
             --subscribers"
        );
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    }
    Ok(hard)
}

/// Refuses Redis URLs that point anywhere but this machine.
fn check_redis_url(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("redis://") else {
        bail!("--redis-url must be a redis:// URL");
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    ensure!(
        local,
        "--redis-url must point to this machine (localhost or a loopback address), got {host}"
    );
    Ok(())
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met { "MET" } else { "NOT MET" }
}

impl Report {
    fn print(&self, args: &Args, per_user: usize, log_errors: usize) -> Summary {
        let database = match (&args.database_url, &args.redis_url) {
            (Some(_), Some(_)) => "PostgreSQL + Redis",
            (Some(_), None) => "PostgreSQL",
            _ => "SQLite",
        };
        let n = args.subscribers;
        let owners = (0..n)
            .filter(|&i| Follows::of(i) == Follows::StatusAsOwner)
            .count();
        let queue = (0..n).filter(|&i| Follows::of(i) == Follows::Queue).count();
        println!();
        println!("fanout: {} CPUs, {database}", self.cpus);
        println!(
            "{n} subscribers: {queue} reviewQueueChanged (reviewers), {} \
             submissionStatusChanged ({} as reviewers, {owners} as the owner); {} reviewer \
             accounts, WS_MAX_CONNECTIONS_PER_USER={per_user}",
            n - queue,
            n - queue - owners,
            args.reviewers
        );
        println!(
            "documents: {}",
            if args.distinct {
                "one per socket (--distinct): no two sockets share an execution"
            } else {
                "the same per viewer and subscription: sockets share executions"
            }
        );
        println!(
            "ramp: {n} connections in batches of {} in {:.1} s",
            args.batch,
            self.ramp.as_secs_f64()
        );
        println!();

        let idle_per = (self.rss_idle_kib as f64 - self.rss_before_kib as f64) / n as f64;
        let connected_per = (self.rss_connected_kib as f64 - self.rss_before_kib as f64) / n as f64;
        let after_per = (self.rss_after_kib as f64 - self.rss_before_kib as f64) / n as f64;
        println!(
            "service VmRSS: before {:.1} MiB, {n} acknowledged {:.1} MiB, {n} idle subscribed \
             {:.1} MiB, after the events {:.1} MiB",
            self.rss_before_kib as f64 / 1024.0,
            self.rss_connected_kib as f64 / 1024.0,
            self.rss_idle_kib as f64 / 1024.0,
            self.rss_after_kib as f64 / 1024.0
        );
        println!(
            "per connection: acknowledged (no subscription) {connected_per:.1} KiB, idle \
             subscribed {idle_per:.1} KiB, after the events {after_per:.1} KiB"
        );
        println!();

        let f = &self.fanout;
        println!(
            "fan-out: {} events (claim/release), each to {n} subscribers; latency from sending \
             the mutation to each subscriber's `next`",
            args.events
        );
        println!(
            "{:<26} {:>9} {:>7} {:>6} {:>8} {:>8} {:>8} {:>8}",
            "", "received", "missing", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let h = &f.latencies;
        println!(
            "{:<26} {:>9} {:>7} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            "all receivers",
            f.received,
            f.missing,
            f.errors,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
        let l = &self.last_receiver;
        println!(
            "{:<26} {:>9} {:>7} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            "last receiver of an event",
            l.len(),
            "",
            "",
            ms(l.value_at_quantile(0.50)),
            ms(l.value_at_quantile(0.90)),
            ms(l.value_at_quantile(0.99)),
            ms(l.max())
        );
        let m = &f.mutations;
        println!(
            "{:<26} {:>9} {:>7} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            "the mutation's round trip",
            m.len(),
            "",
            "",
            ms(m.value_at_quantile(0.50)),
            ms(m.value_at_quantile(0.90)),
            ms(m.value_at_quantile(0.99)),
            ms(m.max())
        );
        if let Some(error) = &f.first_error {
            println!("first error: {error}");
        }

        let hop_added = self.hop.as_ref().map(|hop| {
            println!();
            println!(
                "Redis hop: {} subscribers on A; {} events made through A (local), {} through \
                 B (delivered to A through Redis)",
                args.hop_subscribers, args.hop_events, args.hop_events
            );
            println!(
                "{:<26} {:>9} {:>7} {:>6} {:>8} {:>8} {:>8} {:>12}",
                "path",
                "received",
                "missing",
                "errors",
                "p50 ms",
                "p99 ms",
                "max ms",
                "mutation p50"
            );
            for (name, d) in [("A (local)", &hop.local), ("B (via Redis)", &hop.remote)] {
                let h = &d.latencies;
                println!(
                    "{:<26} {:>9} {:>7} {:>6} {:>8.2} {:>8.2} {:>8.2} {:>12.2}",
                    name,
                    d.received,
                    d.missing,
                    d.errors,
                    ms(h.value_at_quantile(0.50)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max()),
                    ms(d.mutations.value_at_quantile(0.50))
                );
                if let Some(error) = &d.first_error {
                    println!("first error ({name}): {error}");
                }
            }
            ms(hop.remote.latencies.value_at_quantile(0.50))
                - ms(hop.local.latencies.value_at_quantile(0.50))
        });

        println!();
        println!("{:<48} {:>12} {:>12}  verdict", "bar", "figure", "target");
        let clean = f.missing == 0 && f.errors == 0;
        println!(
            "{:<48} {:>9.1} KiB {:>8.1} KiB  {}",
            "memory per idle subscribed connection",
            idle_per,
            args.target_memory_kib,
            verdict(idle_per <= args.target_memory_kib)
        );
        let p99 = ms(f.latencies.value_at_quantile(0.99));
        println!(
            "{:<48} {:>10.1} ms {:>9.1} ms  {}",
            "fan-out p99 (every receiver of every event)",
            p99,
            args.target_p99_ms,
            verdict(clean && p99 <= args.target_p99_ms)
        );
        let mut hop_summary = None;
        match (hop_added, &self.hop) {
            (Some(added), Some(hop)) => {
                let clean = [&hop.local, &hop.remote]
                    .iter()
                    .all(|d| d.missing == 0 && d.errors == 0);
                hop_summary = Some((added, clean));
                println!(
                    "{:<48} {:>10.2} ms {:>9.1} ms  {}",
                    "p50 added by the Redis hop",
                    added,
                    args.target_hop_ms,
                    verdict(clean && added <= args.target_hop_ms)
                );
            }
            _ => println!(
                "{:<48} {:>12} {:>9.1} ms  not measured (needs --database-url and --redis-url)",
                "p50 added by the Redis hop", "-", args.target_hop_ms
            ),
        }
        if !clean {
            println!(
                "(the fan-out bar counts as not met when an event missed a subscriber or an error occurred)"
            );
        }
        if log_errors > 0 {
            println!("the service logged {log_errors} ERROR lines during the run");
        }
        Summary {
            subscribers: n,
            memory_per_connection_kib: idle_per,
            target_memory_kib: args.target_memory_kib,
            fanout_p99_ms: p99,
            target_p99_ms: args.target_p99_ms,
            fanout_clean: clean,
            hop_added_ms: hop_summary,
            target_hop_ms: args.target_hop_ms,
            distinct: args.distinct,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewers_hold_even_shares_of_the_reviewers_sockets() {
        for reviewers in 1..=9 {
            let mut counts = vec![0_usize; reviewers];
            for index in 0..10_000 {
                if let Some(reviewer) = reviewer_of(index, reviewers) {
                    counts[reviewer] += 1;
                }
            }
            let (least, most) = (counts.iter().min(), counts.iter().max());
            assert!(
                most.zip(least).is_some_and(|(m, l)| m - l <= 1),
                "{reviewers} reviewers: {counts:?}"
            );
            assert_eq!(counts.iter().sum::<usize>(), 7_500);
        }
    }

    #[test]
    fn redis_urls_must_be_local() {
        assert!(check_redis_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_redis_url("redis://localhost/2").is_ok());
        assert!(check_redis_url("redis://:secret@[::1]:6379").is_ok());
        assert!(check_redis_url("redis://cache.example.com:6379").is_err());
        assert!(check_redis_url("rediss://127.0.0.1").is_err());
    }

    #[test]
    fn a_quarter_of_the_sockets_follow_as_the_owner() {
        let owners = (0..400)
            .filter(|&i| Follows::of(i) == Follows::StatusAsOwner)
            .count();
        let queue = (0..400)
            .filter(|&i| Follows::of(i) == Follows::Queue)
            .count();
        assert_eq!((owners, queue), (100, 200));
    }

    #[test]
    fn next_messages_are_decoded_and_anything_else_is_an_error() {
        let ok = r#"{"id":"s","type":"next","payload":{"data":{"reviewQueueChanged":{"cursor":"c1","toStatus":"IN_REVIEW"}}}}"#;
        let delivered = decode(ok, "reviewQueueChanged").expect("a change");
        assert_eq!(
            (delivered.cursor.as_str(), delivered.to_status.as_str()),
            ("c1", "IN_REVIEW")
        );
        let with_errors =
            r#"{"id":"s","type":"next","payload":{"data":null,"errors":[{"message":"x"}]}}"#;
        assert!(decode(with_errors, "reviewQueueChanged").is_err());
        assert!(decode(r#"{"type":"ping"}"#, "reviewQueueChanged").is_err());
        assert!(decode("not json", "reviewQueueChanged").is_err());
    }
}
