//! The `queue` benchmark: the reviewer queue page served through GraphQL against a plain actix
//! handler returning the same rows as JSON, side by side in one run, and the SQL statements per
//! GraphQL request at two page sizes.

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail, ensure};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::{
    cpu,
    graphql::Api,
    load::{self, ClosedLoad, QueryStats},
    login_flood::{check_database_url, seconds},
    plain::{self, Counters, PlainServer},
    service::{self, Service, ServiceOptions},
};

/// The password of every seeded account (passes the service's password policy).
pub(crate) const PASSWORD: &str = "bench-queue-correct-horse-battery";

/// The measured operation: one queue page with its nested sections.
pub(crate) const QUEUE_PAGE: &str = "query($first: Int) { reviewQueue(first: $first) { \
    totalCount pageInfo { hasNextPage endCursor } \
    edges { node { id number status scope queueEnteredAt ageInQueueSeconds \
    claimHolder { id email } provider { id name } \
    sections { scope providerDetails { senderEmails targetUrls } contactInfo { name email } } \
    } } } }";

/// The queue's order, for choosing which submissions to claim.
const QUEUE_IDS: &str = "query($after: String) { reviewQueue(first: 100, after: $after) { \
    pageInfo { hasNextPage endCursor } edges { node { id } } } }";
/// Most pages of 100 read while listing the queue.
const MAX_QUEUE_PAGES: usize = 1_000;

pub(crate) const CREATE_USER: &str = "mutation($input: CreateUserInput!) { createUser(input: $input) { \
    user { id } userErrors { field code message } } }";
const CREATE_PROVIDER: &str = "mutation($input: CreateProviderInput!) { createProvider(input: \
    $input) { provider { id version } userErrors { field code message } } }";
const SUBMIT: &str = "mutation($input: SubmitForReviewInput!) { submitForReview(input: $input) \
    { submission { id status } userErrors { field code message } } }";
pub(crate) const CLAIM: &str = "mutation($input: SubmissionRefInput!) { claimSubmission(input: $input) { \
    submission { status } userErrors { field code message } } }";

/// Page sizes at which the SQL statements per request are read.
const STATEMENT_PROBES: [u64; 2] = [5, 50];

/// Options of `bench queue`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Providers to register and submit, each by its own submitter.
    #[arg(long, default_value_t = 300)]
    providers: usize,
    /// The reviewer claims every N-th submission in queue order, starting with the oldest.
    #[arg(long, default_value_t = 10)]
    claim_every: usize,
    /// Concurrent tasks while seeding.
    #[arg(long, default_value_t = 8)]
    seed_concurrency: usize,
    /// Concurrent connections of the closed-loop load (each has one request in flight).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds each measured phase lasts.
    #[arg(long, default_value_t = 15.0)]
    duration: f64,
    /// Seconds of unrecorded load on each side before the first round.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Rounds of (plain handler, GraphQL) phases, run alternately.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Items per page (`first`), 1 to 100.
    #[arg(long, default_value_t = 20)]
    page_size: u64,
    /// Most requests sent in one phase.
    #[arg(long, default_value_t = 1_000_000)]
    max_requests: u64,
    /// Smallest acceptable GraphQL / plain throughput.
    #[arg(long, default_value_t = 0.8)]
    target_ratio: f64,
    /// Most SQL statements a GraphQL request may take.
    #[arg(long, default_value_t = 4)]
    max_statements: u64,
    /// An existing, empty PostgreSQL database on this machine, e.g.
    /// postgres://postgres@127.0.0.1:5432/amdash_bench; default: a fresh SQLite file.
    #[arg(long)]
    database_url: Option<String>,
    /// Redis for the service (`REDIS_URL`), e.g. redis://127.0.0.1:6379; default: none.
    #[arg(long)]
    redis_url: Option<String>,
    /// The service binary; default: <target dir>/release/dashboard, built first.
    #[arg(long)]
    service_bin: Option<PathBuf>,
    /// Do not run `cargo build --release --bin dashboard` before starting.
    #[arg(long)]
    no_build: bool,
    /// Seconds before a single request is given up.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Diagnostic: the plain handler also runs the service's authentication statement
    /// (account and session) for the reviewer, so the comparison no longer includes it.
    #[arg(long)]
    plain_auth: bool,
}

/// What the benchmark suite keeps of a run.
pub struct Summary {
    /// GraphQL throughput over the plain handler's, all rounds together.
    pub ratio: f64,
    pub target_ratio: f64,
    /// `extensions.sqlStatements` per page size probed.
    pub statements: Vec<(u64, u64)>,
    /// Statements constant in the page size and within the bound.
    pub statements_met: bool,
    pub max_statements: u64,
    /// Mean SQL statements per operation over the whole run (seeding included), by root
    /// field, from the service's `/metrics`.
    pub statements_by_operation: Vec<(String, f64)>,
    pub queue_length: u64,
}

/// Runs the benchmark and prints its table.
pub async fn run(args: Args) -> anyhow::Result<()> {
    run_for_summary(args).await.map(|_| ())
}

/// Runs the benchmark, prints its table and returns the figures.
pub async fn run_for_summary(args: Args) -> anyhow::Result<Summary> {
    let timing = Timing {
        phase: seconds("duration", args.duration)?,
        warmup: seconds("warmup", args.warmup)?,
        timeout: seconds("request-timeout", args.request_timeout)?,
    };
    ensure!(args.providers > 0, "--providers must be at least 1");
    ensure!(args.claim_every > 0, "--claim-every must be at least 1");
    ensure!(
        args.seed_concurrency > 0,
        "--seed-concurrency must be at least 1"
    );
    ensure!(args.connections > 0, "--connections must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(
        (1..=100).contains(&args.page_size),
        "--page-size must be between 1 and 100"
    );
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
    let mut extra_env = vec![
        ("EXPOSE_SQL_STATEMENT_COUNT".into(), "true".into()),
        ("AUTO_APPROVE_MY_MAILBOX".into(), "false".into()),
    ];
    if let Some(url) = &args.redis_url {
        extra_env.push(("REDIS_URL".into(), url.clone()));
        extra_env.push((
            "REDIS_PREFIX".into(),
            format!("bench-{}", std::process::id()),
        ));
    }
    let options = ServiceOptions {
        database_url: args.database_url.clone(),
        password_hash_concurrency: None,
        extra_env,
        jwt_keys: None,
    };
    eprintln!("starting {}", binary.display());
    let service = Service::start(&binary, &options).await?;
    let measured = measure(&service, &args, timing).await;
    let metrics = match measured {
        Ok(_) => scrape_metrics(service.base_url()).await,
        Err(_) => String::new(),
    };
    let log_errors = service.log_error_lines();
    let log_tail = service.log_tail();
    service.stop().await;
    let report = measured.with_context(|| format!("the service's log ends:\n{log_tail}"))?;
    report.print(&args, log_errors);
    Ok(report.summary(&args, statements_by_operation(&metrics)))
}

async fn scrape_metrics(base_url: &str) -> String {
    let response = reqwest::Client::new()
        .get(format!("{base_url}/metrics"))
        .send()
        .await;
    match response {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(error) => {
            eprintln!("warning: could not read /metrics: {error}");
            String::new()
        }
    }
}

/// Mean of the `amdash_graphql_sql_statements` histogram per root field, from the Prometheus
/// text format.
fn statements_by_operation(metrics: &str) -> Vec<(String, f64)> {
    let series = |suffix: &str| -> Vec<(String, f64)> {
        let prefix = format!("amdash_graphql_sql_statements_{suffix}{{root_field=\"");
        metrics
            .lines()
            .filter_map(|line| {
                let rest = line.strip_prefix(&prefix)?;
                let (field, value) = rest.split_once("\"} ")?;
                Some((field.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    };
    let counts = series("count");
    let mut means: Vec<(String, f64)> = series("sum")
        .into_iter()
        .filter_map(|(field, sum)| {
            let count = counts.iter().find(|(f, _)| *f == field)?.1;
            (count > 0.0 && field != "-").then(|| (field, sum / count))
        })
        .collect();
    means.sort_by(|a, b| a.0.cmp(&b.0));
    means
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    phase: Duration,
    warmup: Duration,
    timeout: Duration,
}

/// One measured phase and the CPU time the two processes used during it.
struct Phase {
    stats: QueryStats,
    service_cpu: Option<Duration>,
    bench_cpu: Option<Duration>,
}

/// What one run measured.
struct Report {
    cpus: usize,
    queue_length: u64,
    claimed: usize,
    plain_bytes: usize,
    graphql_bytes: usize,
    /// (plain, GraphQL) per round.
    rounds: Vec<(Phase, Phase)>,
    /// `extensions.sqlStatements` at each page size of `STATEMENT_PROBES`, then at the
    /// benchmark's page size.
    graphql_statements: Vec<(u64, u64)>,
    /// The baseline's statements at the same page sizes.
    plain_statements: Vec<(u64, u64)>,
    /// Smallest and largest `sqlStatements` seen during the measured GraphQL phases.
    statements_under_load: (u64, u64),
    /// Statements per request of the baseline over the measured phases.
    plain_statements_under_load: f64,
}

async fn measure(service: &Service, args: &Args, timing: Timing) -> anyhow::Result<Report> {
    let api = Api::new(service.base_url(), timing.timeout)?;
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seeded = seed(service, &api, args, run_id).await?;

    let counters = Arc::new(Counters::default());
    let db = plain::connect(service.database_url(), Arc::clone(&counters)).await?;
    let auth = if args.plain_auth {
        Some(plain::token_subject(&seeded.reviewer_token)?)
    } else {
        None
    };
    let server = PlainServer::start(db, Arc::clone(&counters), auth)?;
    let result = compare_and_load(service, &server, &counters, &seeded, args, timing).await;
    server.stop().await;
    result
}

/// The accounts and submissions the run created.
struct Seeded {
    reviewer_token: String,
    claimed: usize,
}

/// Creates an admin with the service's CLI, a reviewer through `createUser`, and
/// `args.providers` submitters who each register one provider and submit it (Organization
/// scope); the reviewer then claims every `args.claim_every`-th of them in queue order.
async fn seed(service: &Service, api: &Api, args: &Args, run_id: u128) -> anyhow::Result<Seeded> {
    let admin_email = format!("bench-admin-{run_id}@contoso.com");
    eprintln!("seeding: admin {admin_email} (dashboard user create)");
    service
        .cli(
            &["user", "create", "--email", &admin_email, "--role", "admin"],
            &format!("{PASSWORD}\n"),
        )
        .await?;
    let admin = api.log_in_token(&admin_email, PASSWORD).await?;
    let reviewer_email = format!("bench-reviewer-{run_id}@contoso.com");
    let data = api
        .post(
            CREATE_USER,
            json!({ "input": { "email": reviewer_email, "password": PASSWORD, "role": "REVIEWER" } }),
            Some(&admin),
        )
        .await
        .context("createUser")?;
    no_user_errors(&data["createUser"], "createUser")?;
    let reviewer = api.log_in_token(&reviewer_email, PASSWORD).await?;

    let total = args.providers;
    eprintln!(
        "seeding: {total} submitters, each registering and submitting one provider ({} tasks)",
        args.seed_concurrency
    );
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..args.seed_concurrency.min(total) {
        let (api, next, done) = (api.clone(), Arc::clone(&next), Arc::clone(&done));
        tasks.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let id = seed_provider(&api, index, run_id)
                    .await
                    .with_context(|| format!("seeding provider {index}"))?;
                ids.push(id);
                let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                if finished % 50 == 0 || finished == total {
                    eprintln!("seeding: {finished}/{total} submitted");
                }
            }
            anyhow::Ok(ids)
        });
    }
    let mut ours = HashSet::new();
    while let Some(joined) = tasks.join_next().await {
        ours.extend(joined.context("a seeding task panicked")??);
    }

    let order = queue_order(api, &reviewer, &ours).await?;
    let to_claim: Vec<&String> = order.iter().step_by(args.claim_every).collect();
    eprintln!(
        "seeding: the reviewer claims {} of {} submissions",
        to_claim.len(),
        order.len()
    );
    for id in &to_claim {
        let data = api
            .post(
                CLAIM,
                json!({ "input": { "submissionId": id } }),
                Some(&reviewer),
            )
            .await
            .context("claimSubmission")?;
        let payload = &data["claimSubmission"];
        no_user_errors(payload, "claimSubmission")?;
        ensure!(
            payload["submission"]["status"] == "IN_REVIEW",
            "a claimed submission is not IN_REVIEW: {payload}"
        );
    }
    // A fresh token, so that a long seeding cannot let it expire during the measurement.
    let reviewer_token = api.log_in_token(&reviewer_email, PASSWORD).await?;
    Ok(Seeded {
        reviewer_token,
        claimed: to_claim.len(),
    })
}

/// Signs up submitter `index`, registers its provider, fills the Organization sections and
/// submits it; returns the submission's id.
async fn seed_provider(api: &Api, index: usize, run_id: u128) -> anyhow::Result<String> {
    Ok(seed_submitted_provider(api, index, run_id)
        .await?
        .submission_id)
}

/// A provider registered and submitted by its own submitter.
pub(crate) struct SubmittedProvider {
    /// The submitter's access token.
    pub owner_token: String,
    pub provider_id: String,
    pub submission_id: String,
}

/// Signs up submitter `index`, registers its provider, fills the Organization sections and
/// submits it.
pub(crate) async fn seed_submitted_provider(
    api: &Api,
    index: usize,
    run_id: u128,
) -> anyhow::Result<SubmittedProvider> {
    let token = api
        .sign_up(
            &format!("bench-submitter-{index}-{run_id}@contoso{index}.com"),
            PASSWORD,
        )
        .await?;
    let data = api
        .post(
            CREATE_PROVIDER,
            json!({ "input": { "name": format!("Contoso {index:03} approvals") } }),
            Some(&token),
        )
        .await
        .context("createProvider")?;
    let payload = &data["createProvider"];
    no_user_errors(payload, "createProvider")?;
    let provider_id = payload["provider"]["id"]
        .as_str()
        .with_context(|| format!("createProvider answered no id: {payload}"))?
        .to_owned();
    let mut version = payload["provider"]["version"]
        .as_i64()
        .with_context(|| format!("createProvider answered no version: {payload}"))?;

    let sections = [
        (
            "updateProviderDetails",
            "UpdateProviderDetailsInput",
            json!({
                "senderEmails": [format!("svc{index}@contoso{index}.com")],
                "targetUrls": [format!("https://api.contoso{index}.com")],
            }),
        ),
        (
            "setScope",
            "SetScopeInput",
            json!({ "scope": "ORGANIZATION" }),
        ),
        (
            "updateContactInfo",
            "UpdateContactInfoInput",
            json!({
                "name": format!("Dana Developer {index}"),
                "email": format!("dana@contoso{index}.com"),
                "phone": "+1 425 555 0100",
            }),
        ),
    ];
    for (mutation, input_type, mut input) in sections {
        input["providerId"] = json!(provider_id);
        input["expectedVersion"] = json!(version);
        let query = format!(
            "mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ \
             provider {{ version }} userErrors {{ field code message }} }} }}"
        );
        let data = api
            .post(&query, json!({ "input": input }), Some(&token))
            .await
            .with_context(|| mutation.to_owned())?;
        let payload = &data[mutation];
        no_user_errors(payload, mutation)?;
        version = payload["provider"]["version"]
            .as_i64()
            .with_context(|| format!("{mutation} answered no version: {payload}"))?;
    }

    let data = api
        .post(
            SUBMIT,
            json!({ "input": { "providerId": provider_id, "expectedVersion": version } }),
            Some(&token),
        )
        .await
        .context("submitForReview")?;
    let payload = &data["submitForReview"];
    no_user_errors(payload, "submitForReview")?;
    ensure!(
        payload["submission"]["status"] == "SUBMITTED",
        "submitForReview did not leave the submission SUBMITTED: {payload}"
    );
    let submission_id = payload["submission"]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("submitForReview answered no id: {payload}"))?;
    Ok(SubmittedProvider {
        owner_token: token,
        provider_id,
        submission_id,
    })
}

/// Fails unless a mutation payload's `userErrors` is empty.
pub(crate) fn no_user_errors(payload: &Value, mutation: &str) -> anyhow::Result<()> {
    match payload["userErrors"].as_array() {
        Some(errors) if errors.is_empty() => Ok(()),
        _ => bail!("{mutation} was refused: {payload}"),
    }
}

/// The ids of `ours` in queue order (oldest first), read page by page.
async fn queue_order(
    api: &Api,
    reviewer: &str,
    ours: &HashSet<String>,
) -> anyhow::Result<Vec<String>> {
    let mut order = Vec::with_capacity(ours.len());
    let mut after = Value::Null;
    for _ in 0..MAX_QUEUE_PAGES {
        let data = api
            .post(QUEUE_IDS, json!({ "after": after }), Some(reviewer))
            .await
            .context("reading the queue's order")?;
        let queue = &data["reviewQueue"];
        for edge in queue["edges"].as_array().into_iter().flatten() {
            if let Some(id) = edge["node"]["id"].as_str()
                && ours.contains(id)
            {
                order.push(id.to_owned());
            }
        }
        if queue["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = queue["pageInfo"]["endCursor"].clone();
    }
    ensure!(
        order.len() == ours.len(),
        "found {} of the {} seeded submissions in the queue",
        order.len(),
        ours.len()
    );
    Ok(order)
}

/// A GET or POST client of one side, with its own connection pool.
fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .context("building the HTTP client")
}

/// The body of a GraphQL request for one page.
fn page_request(first: u64) -> anyhow::Result<Vec<u8>> {
    serde_json::to_vec(&json!({ "query": QUEUE_PAGE, "variables": { "first": first } }))
        .context("encoding the request")
}

/// Sends the GraphQL page request and returns the body's size and the parsed body, failing on
/// a non-200 status or `errors`.
async fn graphql_page(
    client: &reqwest::Client,
    url: &str,
    authorization: &str,
    body: Vec<u8>,
) -> anyhow::Result<(usize, Value)> {
    let response = client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, authorization)
        .body(body)
        .send()
        .await
        .context("sending the GraphQL request")?;
    let status = response.status();
    let bytes = response.bytes().await.context("reading the answer")?;
    let value: Value = serde_json::from_slice(&bytes).context("parsing the answer")?;
    ensure!(status.is_success(), "HTTP {status}: {value}");
    if let Some(errors) = value.get("errors") {
        bail!("GraphQL errors: {errors}");
    }
    Ok((bytes.len(), value))
}

/// Sends the baseline's page request and returns the body's size and the parsed body.
async fn plain_page(client: &reqwest::Client, url: &str) -> anyhow::Result<(usize, Value)> {
    let response = client
        .get(url)
        .send()
        .await
        .context("sending the request")?;
    let status = response.status();
    let bytes = response.bytes().await.context("reading the answer")?;
    let value: Value = serde_json::from_slice(&bytes).context("parsing the answer")?;
    ensure!(status.is_success(), "HTTP {status}: {value}");
    Ok((bytes.len(), value))
}

/// The page without `ageInQueueSeconds`, which moves with the clock.
fn comparable(page: &Value) -> Value {
    let mut page = page.clone();
    if let Some(edges) = page["edges"].as_array_mut() {
        for edge in edges {
            if let Some(node) = edge["node"].as_object_mut() {
                node.remove("ageInQueueSeconds");
            }
        }
    }
    page
}

fn edge_count(page: &Value) -> Option<usize> {
    page["edges"].as_array().map(Vec::len)
}

/// Checks that both sides answer the same page, reads the statement counts, then runs the
/// alternating closed-loop phases.
async fn compare_and_load(
    service: &Service,
    server: &PlainServer,
    counters: &Arc<Counters>,
    seeded: &Seeded,
    args: &Args,
    timing: Timing,
) -> anyhow::Result<Report> {
    let graphql_url: Arc<str> = format!("{}/graphql", service.base_url()).into();
    let plain_url: Arc<str> = server.url(args.page_size).into();
    let authorization: Arc<str> = format!("Bearer {}", seeded.reviewer_token).into();
    let graphql_client = http_client(timing.timeout)?;
    let plain_client = http_client(timing.timeout)?;

    // The same page on both sides, field for field.
    let (graphql_bytes, graphql_answer) = graphql_page(
        &graphql_client,
        &graphql_url,
        &authorization,
        page_request(args.page_size)?,
    )
    .await?;
    let (plain_bytes, plain_answer) = plain_page(&plain_client, &plain_url).await?;
    let graphql_queue = &graphql_answer["data"]["reviewQueue"];
    let expected_items = edge_count(graphql_queue).context("the GraphQL page has no edges")?;
    if comparable(graphql_queue) != comparable(&plain_answer) {
        bail!(
            "the two sides answer different pages:\nGraphQL: {graphql_queue}\nplain:   {plain_answer}"
        );
    }
    let queue_length = graphql_queue["totalCount"].as_u64().unwrap_or_default();
    eprintln!(
        "both sides answer the same page: {expected_items} items of {queue_length}, {graphql_bytes} \
         bytes (GraphQL) and {plain_bytes} bytes (plain)"
    );

    // Statements per request at several page sizes, on both sides.
    let mut graphql_statements = Vec::new();
    let mut plain_statements = Vec::new();
    for first in STATEMENT_PROBES.into_iter().chain([args.page_size]) {
        let (_, answer) = graphql_page(
            &graphql_client,
            &graphql_url,
            &authorization,
            page_request(first)?,
        )
        .await?;
        let statements = answer["extensions"]["sqlStatements"]
            .as_u64()
            .context("no extensions.sqlStatements: is EXPOSE_SQL_STATEMENT_COUNT on?")?;
        graphql_statements.push((first, statements));
        let before = counters.statements.load(Ordering::Relaxed);
        plain_page(&plain_client, &server.url(first)).await?;
        plain_statements.push((first, counters.statements.load(Ordering::Relaxed) - before));
    }

    // The load: the same closed loop on both sides.
    let low = Arc::new(AtomicU64::new(u64::MAX));
    let high = Arc::new(AtomicU64::new(0));
    let graphql_body = page_request(args.page_size)?;
    let graphql_request = {
        let (client, url, authorization) = (
            graphql_client.clone(),
            Arc::clone(&graphql_url),
            Arc::clone(&authorization),
        );
        let (low, high) = (Arc::clone(&low), Arc::clone(&high));
        move || {
            let (client, url, authorization) =
                (client.clone(), Arc::clone(&url), Arc::clone(&authorization));
            let (low, high, body) = (Arc::clone(&low), Arc::clone(&high), graphql_body.clone());
            async move {
                let (_, answer) = graphql_page(&client, &url, &authorization, body).await?;
                let items = edge_count(&answer["data"]["reviewQueue"]);
                ensure!(
                    items == Some(expected_items),
                    "expected {expected_items} items, got {items:?}"
                );
                let statements = answer["extensions"]["sqlStatements"]
                    .as_u64()
                    .context("no extensions.sqlStatements")?;
                low.fetch_min(statements, Ordering::Relaxed);
                high.fetch_max(statements, Ordering::Relaxed);
                Ok(())
            }
        }
    };
    let plain_request = {
        let (client, url) = (plain_client.clone(), Arc::clone(&plain_url));
        move || {
            let (client, url) = (client.clone(), Arc::clone(&url));
            async move {
                let (_, answer) = plain_page(&client, &url).await?;
                let items = edge_count(&answer);
                ensure!(
                    items == Some(expected_items),
                    "expected {expected_items} items, got {items:?}"
                );
                Ok(())
            }
        }
    };
    let graphql_request = Arc::new(graphql_request);
    let plain_request = Arc::new(plain_request);
    let load = |duration| ClosedLoad {
        workers: args.connections,
        duration,
        max_requests: args.max_requests,
    };

    eprintln!(
        "warm-up: {:.1} s of each side, {} connections",
        timing.warmup.as_secs_f64(),
        args.connections
    );
    {
        let request = Arc::clone(&plain_request);
        load::run_closed_loop(load(timing.warmup), move || request()).await?;
        let request = Arc::clone(&graphql_request);
        load::run_closed_loop(load(timing.warmup), move || request()).await?;
    }
    low.store(u64::MAX, Ordering::Relaxed);
    high.store(0, Ordering::Relaxed);
    let plain_statements_before = counters.statements.load(Ordering::Relaxed);
    let plain_requests_before = counters.requests.load(Ordering::Relaxed);

    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        eprintln!(
            "round {round}/{}: A plain handler, {:.1} s",
            args.rounds,
            timing.phase.as_secs_f64()
        );
        let request = Arc::clone(&plain_request);
        let plain = measured_phase(service, load(timing.phase), move || request()).await?;
        eprintln!(
            "round {round}/{}: B GraphQL, {:.1} s",
            args.rounds,
            timing.phase.as_secs_f64()
        );
        let request = Arc::clone(&graphql_request);
        let graphql = measured_phase(service, load(timing.phase), move || request()).await?;
        rounds.push((plain, graphql));
    }
    let plain_requests = counters.requests.load(Ordering::Relaxed) - plain_requests_before;
    let plain_statements_run =
        counters.statements.load(Ordering::Relaxed) - plain_statements_before;

    Ok(Report {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        queue_length,
        claimed: seeded.claimed,
        plain_bytes,
        graphql_bytes,
        rounds,
        graphql_statements,
        plain_statements,
        statements_under_load: (low.load(Ordering::Relaxed), high.load(Ordering::Relaxed)),
        plain_statements_under_load: plain_statements_run as f64 / plain_requests.max(1) as f64,
    })
}

/// Runs one closed-loop phase and reads the CPU time the service and this process used.
async fn measured_phase<F, Fut>(
    service: &Service,
    load: ClosedLoad,
    request: F,
) -> anyhow::Result<Phase>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let pid = service.pid();
    let service_before = pid.and_then(|pid| cpu::cpu_time(Some(pid)));
    let bench_before = cpu::cpu_time(None);
    let stats = load::run_closed_loop(load, request).await?;
    let service_after = pid.and_then(|pid| cpu::cpu_time(Some(pid)));
    let bench_after = cpu::cpu_time(None);
    let used = |before: Option<Duration>, after: Option<Duration>| {
        before
            .zip(after)
            .map(|(before, after)| after.saturating_sub(before))
    };
    Ok(Phase {
        stats,
        service_cpu: used(service_before, service_after),
        bench_cpu: used(bench_before, bench_after),
    })
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// CPU milliseconds per answered request.
fn cpu_per_request(cpu: Option<Duration>, requests: u64) -> Option<f64> {
    cpu.map(|cpu| cpu.as_secs_f64() * 1000.0 / requests.max(1) as f64)
}

/// Several phases of one side as one: merged latencies, summed counts and times.
fn combine<'a>(phases: impl Iterator<Item = &'a Phase>) -> anyhow::Result<Phase> {
    let mut all = Phase {
        stats: QueryStats {
            latencies: load::new_histogram()?,
            ok: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
        },
        service_cpu: Some(Duration::ZERO),
        bench_cpu: Some(Duration::ZERO),
    };
    for phase in phases {
        all.stats.merge(
            &phase.stats.latencies,
            phase.stats.ok,
            phase.stats.errors,
            phase.stats.first_error.clone(),
        )?;
        all.stats.elapsed += phase.stats.elapsed;
        all.service_cpu = all.service_cpu.zip(phase.service_cpu).map(|(a, b)| a + b);
        all.bench_cpu = all.bench_cpu.zip(phase.bench_cpu).map(|(a, b)| a + b);
    }
    Ok(all)
}

fn phase_row(name: &str, phase: &Phase) {
    let stats = &phase.stats;
    let h = &stats.latencies;
    println!(
        "{:<24} {:>8} {:>8.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7}",
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

fn optional_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
}

impl Report {
    fn print(&self, args: &Args, log_errors: usize) {
        let database = if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        let (plain_all, graphql_all) = match (
            combine(self.rounds.iter().map(|(plain, _)| plain)),
            combine(self.rounds.iter().map(|(_, graphql)| graphql)),
        ) {
            (Ok(plain), Ok(graphql)) => (plain, graphql),
            (Err(error), _) | (_, Err(error)) => {
                println!("could not combine the phases: {error:#}");
                return;
            }
        };
        println!();
        println!(
            "queue: {} CPUs, {database}, {} submissions in the queue ({} claimed), page of {}{}",
            self.cpus,
            self.queue_length,
            self.claimed,
            args.page_size,
            if args.plain_auth {
                "; --plain-auth"
            } else {
                ""
            }
        );
        println!(
            "closed loop: {} connections, {:.1} s per phase, {} rounds of A plain handler then \
             B GraphQL; answers {} bytes (plain) and {} bytes (GraphQL)",
            args.connections, args.duration, args.rounds, self.plain_bytes, self.graphql_bytes
        );
        println!();
        println!(
            "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7}",
            "phase", "answered", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
        );
        for (round, (plain, graphql)) in self.rounds.iter().enumerate() {
            phase_row(&format!("A{} plain handler", round + 1), plain);
            phase_row(&format!("B{} GraphQL", round + 1), graphql);
        }
        phase_row("A plain handler (all)", &plain_all);
        phase_row("B GraphQL (all)", &graphql_all);

        let ratio =
            graphql_all.stats.throughput() / plain_all.stats.throughput().max(f64::MIN_POSITIVE);
        let per_round: Vec<String> = self
            .rounds
            .iter()
            .map(|(plain, graphql)| {
                format!(
                    "{:.2}x",
                    graphql.stats.throughput() / plain.stats.throughput().max(f64::MIN_POSITIVE)
                )
            })
            .collect();
        let verdict = if ratio >= args.target_ratio {
            "MET"
        } else {
            "NOT MET"
        };
        println!(
            "throughput GraphQL / plain: {ratio:.2}x (rounds: {})   target >= {:.2}x   {verdict}",
            per_round.join(", "),
            args.target_ratio
        );

        println!();
        let probes: Vec<String> = self
            .graphql_statements
            .iter()
            .map(|(first, statements)| format!("first={first}: {statements}"))
            .collect();
        let (low, high) = self.statements_under_load;
        let small = self.graphql_statements.first().map(|(_, s)| *s);
        let large = self.graphql_statements.get(1).map(|(_, s)| *s);
        let constant = small.is_some() && small == large && (low == high || low == u64::MAX);
        let verdict = if constant && large.is_some_and(|s| s <= args.max_statements) {
            "MET"
        } else {
            "NOT MET"
        };
        let under_load = if low == u64::MAX {
            "none seen".to_owned()
        } else if low == high {
            format!("{low}")
        } else {
            format!("{low} to {high}")
        };
        println!(
            "SQL statements per GraphQL request: {}; under load: {under_load}   target \
             constant and <= {}   {verdict}",
            probes.join(", "),
            args.max_statements
        );
        let plain_probes: Vec<String> = self
            .plain_statements
            .iter()
            .map(|(first, statements)| format!("first={first}: {statements}"))
            .collect();
        println!(
            "SQL statements per plain request:   {}; under load: {:.2}",
            plain_probes.join(", "),
            self.plain_statements_under_load
        );
        if args.plain_auth {
            println!(
                "(--plain-auth: both sides run the authentication statement (account and session \
                 in one query); it is in the plain counts and not in sqlStatements)"
            );
        } else {
            println!(
                "(the GraphQL side also authenticates each request with one more statement, the \
                 account and its session, which sqlStatements does not count)"
            );
        }

        println!();
        let plain_bench = cpu_per_request(plain_all.bench_cpu, plain_all.stats.ok);
        let graphql_bench = cpu_per_request(graphql_all.bench_cpu, graphql_all.stats.ok);
        let graphql_service = cpu_per_request(graphql_all.service_cpu, graphql_all.stats.ok);
        let plain_service = cpu_per_request(plain_all.service_cpu, plain_all.stats.ok);
        // SQLite runs in the process that queries it; a PostgreSQL backend is a process of its
        // own, which neither figure includes.
        let db_threads = if args.database_url.is_some() {
            "PostgreSQL not included"
        } else {
            "with its SQLite threads"
        };
        println!("CPU ms per request (user + system from /proc):");
        println!(
            "  A plain:   bench process {} (load client + handler, {db_threads}), service {} \
             (idle)",
            optional_ms(plain_bench),
            optional_ms(plain_service)
        );
        println!(
            "  B GraphQL: service {} ({db_threads}), bench process {} (load client)",
            optional_ms(graphql_service),
            optional_ms(graphql_bench)
        );
        if let (Some(plain_bench), Some(client)) = (plain_bench, graphql_bench) {
            println!(
                "  server side, taking the client's cost from B: plain ~{:.2}, GraphQL {}",
                (plain_bench - client).max(0.0),
                optional_ms(graphql_service)
            );
        }

        for (name, phase) in [("plain", &plain_all), ("GraphQL", &graphql_all)] {
            if let Some(error) = &phase.stats.first_error {
                println!("first {name} failure: {error}");
            }
        }
        if log_errors > 0 {
            println!("the service logged {log_errors} ERROR lines");
        }
    }
}

impl Report {
    fn summary(&self, args: &Args, statements_by_operation: Vec<(String, f64)>) -> Summary {
        let throughput = |pick: fn(&(Phase, Phase)) -> &Phase| {
            combine(self.rounds.iter().map(pick)).map_or(0.0, |p| p.stats.throughput())
        };
        let plain = throughput(|(plain, _)| plain);
        let graphql = throughput(|(_, graphql)| graphql);
        let small = self.graphql_statements.first().map(|(_, s)| *s);
        let large = self.graphql_statements.get(1).map(|(_, s)| *s);
        let (low, high) = self.statements_under_load;
        let constant = small.is_some() && small == large && (low == high || low == u64::MAX);
        Summary {
            ratio: graphql / plain.max(f64::MIN_POSITIVE),
            target_ratio: args.target_ratio,
            statements: self.graphql_statements.clone(),
            statements_met: constant && large.is_some_and(|s| s <= args.max_statements),
            max_statements: args.max_statements,
            statements_by_operation,
            queue_length: self.queue_length,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_per_operation_are_read_from_the_histogram() {
        let metrics = "# HELP x\n\
            amdash_graphql_sql_statements_sum{root_field=\"reviewQueue\"} 40\n\
            amdash_graphql_sql_statements_count{root_field=\"reviewQueue\"} 10\n\
            amdash_graphql_sql_statements_sum{root_field=\"-\"} 0\n\
            amdash_graphql_sql_statements_count{root_field=\"-\"} 3\n\
            amdash_graphql_sql_statements_sum{root_field=\"logIn\"} 9\n\
            amdash_graphql_sql_statements_count{root_field=\"logIn\"} 3\n";
        assert_eq!(
            statements_by_operation(metrics),
            vec![("logIn".to_owned(), 3.0), ("reviewQueue".to_owned(), 4.0)]
        );
    }

    #[test]
    fn the_age_in_queue_is_left_out_of_the_comparison() {
        let a = json!({ "totalCount": 1, "edges": [{ "node": { "id": "x", "ageInQueueSeconds": 3 } }] });
        let b = json!({ "totalCount": 1, "edges": [{ "node": { "id": "x", "ageInQueueSeconds": 4 } }] });
        assert_eq!(comparable(&a), comparable(&b));
        let c = json!({ "totalCount": 1, "edges": [{ "node": { "id": "y", "ageInQueueSeconds": 4 } }] });
        assert_ne!(comparable(&a), comparable(&c));
    }

    #[test]
    fn the_page_request_names_the_page_size() -> anyhow::Result<()> {
        let body: Value = serde_json::from_slice(&page_request(20)?)?;
        assert_eq!(body["variables"]["first"], json!(20));
        assert!(
            body["query"]
                .as_str()
                .is_some_and(|q| q.contains("reviewQueue"))
        );
        Ok(())
    }
}
