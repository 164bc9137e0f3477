//! Load generators: a steady-rate query load recorded in an HDR histogram, a closed-loop load
//! (each connection sends its next request when the last is answered), and a login flood that
//! sends `logIn` as fast as its workers get answers. Every loop ends by a deadline, a request
//! cap, or a stop signal, whichever comes first.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use hdrhistogram::Histogram;
use tokio::{sync::watch, task::JoinSet, time::MissedTickBehavior};

use crate::graphql::{Api, LogInOutcome};

/// Largest latency the histograms hold, in microseconds (one minute; requests time out sooner).
const MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds with three significant digits.
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).map_err(|e| anyhow!("creating a histogram: {e}"))
}

/// A duration in whole microseconds, within the histograms' bounds.
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

/// Shape of a steady query load.
#[derive(Debug, Clone, Copy)]
pub struct QueryLoad {
    /// Concurrent workers, each sending one request at a time on its own schedule.
    pub workers: usize,
    /// Requests per second across all workers.
    pub rate: f64,
    /// How long to send for.
    pub duration: Duration,
    /// Most requests to send in total.
    pub max_requests: u64,
}

/// What a query load measured.
#[derive(Debug)]
pub struct QueryStats {
    /// Latencies of successful requests, corrected for coordinated omission.
    pub latencies: Histogram<u64>,
    /// Requests answered as expected.
    pub ok: u64,
    /// Requests that failed or answered something unexpected.
    pub errors: u64,
    /// The first failure, to show.
    pub first_error: Option<String>,
    /// From the first scheduled request to the last answer.
    pub elapsed: Duration,
}

impl QueryStats {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        per_second(self.ok, self.elapsed)
    }

    /// Adds another measurement's latencies and counts (keeping the first error seen).
    pub fn merge(
        &mut self,
        latencies: &Histogram<u64>,
        ok: u64,
        errors: u64,
        first_error: Option<String>,
    ) -> anyhow::Result<()> {
        self.latencies
            .add(latencies)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
        self.ok += ok;
        self.errors += errors;
        if self.first_error.is_none() {
            self.first_error = first_error;
        }
        Ok(())
    }
}

/// Count per second over `elapsed`.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Sends `{ viewer { id email } }` as `token` with [`run_open_loop`].
pub async fn run_queries(api: &Api, token: &str, load: QueryLoad) -> anyhow::Result<QueryStats> {
    let (api, token): (Api, Arc<str>) = (api.clone(), token.into());
    run_open_loop(load, move || {
        let (api, token) = (api.clone(), Arc::clone(&token));
        async move { api.viewer(&token).await }
    })
    .await
}

/// Sends `request` at `load.rate` per second, spread evenly over `load.workers` workers whose
/// schedules are staggered, until `load.duration` has passed or `load.max_requests` were sent.
/// `request` resolves to `Ok` when the answer was the expected one.
///
/// A worker measures from the moment it sends. When an answer takes longer than the worker's
/// interval, the requests it could not send meanwhile are recorded as the HDR histogram's
/// coordinated-omission correction prescribes (`record_correct`), so a stall is not hidden by
/// the worker waiting it out.
pub async fn run_open_loop<F, Fut>(load: QueryLoad, request: F) -> anyhow::Result<QueryStats>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let workers = load.workers.max(1);
    let worker_rate = load.rate / workers as f64;
    let period = Duration::from_secs_f64(1.0 / worker_rate);
    let cap = load.max_requests.div_ceil(workers as u64);
    let start = Instant::now();
    let deadline = start + load.duration;
    let request = Arc::new(request);

    let mut tasks = JoinSet::new();
    for index in 0..workers {
        let request = Arc::clone(&request);
        let offset = period.mul_f64(index as f64 / workers as f64);
        tasks.spawn(async move {
            let mut latencies = new_histogram()?;
            let mut ticker = tokio::time::interval_at((start + offset).into(), period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            while ok + errors < cap {
                let scheduled = ticker.tick().await.into_std();
                if scheduled >= deadline {
                    break;
                }
                let sent = Instant::now();
                match request().await {
                    Ok(()) => {
                        ok += 1;
                        latencies
                            .record_correct(micros(sent.elapsed()), micros(period))
                            .map_err(|e| anyhow!("recording a latency: {e}"))?;
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
            }
            anyhow::Ok((latencies, ok, errors, first_error))
        });
    }

    let mut stats = QueryStats {
        latencies: new_histogram()?,
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let (latencies, ok, errors, first_error) = joined.context("a query worker panicked")??;
        stats
            .latencies
            .add(&latencies)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
        stats.ok += ok;
        stats.errors += errors;
        if stats.first_error.is_none() {
            stats.first_error = first_error;
        }
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

/// Shape of a closed-loop load.
#[derive(Debug, Clone, Copy)]
pub struct ClosedLoad {
    /// Concurrent workers, each with one request in flight at a time.
    pub workers: usize,
    /// How long to send for; requests in flight at the deadline are waited for and counted.
    pub duration: Duration,
    /// Most requests to send in total.
    pub max_requests: u64,
}

/// Runs `request` from `load.workers` workers, each sending the next one as soon as the last is
/// answered, until `load.duration` has passed or `load.max_requests` were sent. `request`
/// resolves to `Ok` when the answer was the expected one.
///
/// This is a closed loop: the offered load adapts to the server's speed, so the histogram needs
/// no coordinated-omission correction and `throughput()` is the server's capacity at this
/// concurrency.
pub async fn run_closed_loop<F, Fut>(load: ClosedLoad, request: F) -> anyhow::Result<QueryStats>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let workers = load.workers.max(1);
    let cap = load.max_requests.div_ceil(workers as u64);
    let request = Arc::new(request);
    let start = Instant::now();
    let deadline = start + load.duration;

    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let request = Arc::clone(&request);
        tasks.spawn(async move {
            let mut latencies = new_histogram()?;
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            while ok + errors < cap && Instant::now() < deadline {
                let sent = Instant::now();
                match request().await {
                    Ok(()) => {
                        ok += 1;
                        latencies
                            .record(micros(sent.elapsed()))
                            .map_err(|e| anyhow!("recording a latency: {e}"))?;
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
            }
            anyhow::Ok((latencies, ok, errors, first_error))
        });
    }

    let mut stats = QueryStats {
        latencies: new_histogram()?,
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(joined) = tasks.join_next().await {
        let (latencies, ok, errors, first_error) = joined.context("a load worker panicked")??;
        stats.merge(&latencies, ok, errors, first_error)?;
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

/// Credentials and shape of a login flood.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Concurrent workers, each sending the next `logIn` as soon as the last one is answered.
    pub workers: usize,
    /// The account every worker logs in to.
    pub email: String,
    /// Its password, sent by the even-numbered workers.
    pub password: String,
    /// A wrong password, sent by the odd-numbered workers.
    pub wrong_password: String,
    /// Hard end of the flood, even when nobody signals a stop.
    pub deadline: Instant,
    /// Most requests to send in total.
    pub max_requests: u64,
}

/// One answered (or failed) `logIn`.
#[derive(Debug, Clone, Copy)]
pub struct LoginSample {
    /// When the answer arrived.
    pub finished: Instant,
    /// From sending to the answer.
    pub latency: Duration,
    /// Whether the answer matched the password sent (signed in with the right one, refused
    /// with the wrong one).
    pub as_expected: bool,
}

/// Everything a flood sent, for the caller to cut to its measurement window.
#[derive(Debug, Default)]
pub struct FloodSamples {
    /// One entry per request, in no particular order.
    pub samples: Vec<LoginSample>,
    /// The first failure or unexpected answer, to show.
    pub first_error: Option<String>,
}

/// Starts the flood's workers; they stop when `stop` turns true, at `flood.deadline`, or after
/// `flood.max_requests`, finishing the request they are waiting for.
pub fn start_flood(
    api: &Api,
    flood: &Flood,
    stop: &watch::Receiver<bool>,
) -> JoinSet<anyhow::Result<FloodSamples>> {
    let workers = flood.workers.max(1);
    let cap = flood.max_requests.div_ceil(workers as u64);
    let mut tasks = JoinSet::new();
    for index in 0..workers {
        let api = api.clone();
        let stop = stop.clone();
        let email = flood.email.clone();
        let wrong = index % 2 == 1;
        let password = if wrong {
            flood.wrong_password.clone()
        } else {
            flood.password.clone()
        };
        let expected = if wrong {
            LogInOutcome::Refused
        } else {
            LogInOutcome::SignedIn
        };
        let deadline = flood.deadline;
        tasks.spawn(async move {
            let mut out = FloodSamples::default();
            while (out.samples.len() as u64) < cap && !*stop.borrow() && Instant::now() < deadline {
                let sent = Instant::now();
                let result = api.log_in(&email, &password).await;
                let finished = Instant::now();
                let as_expected = match result {
                    Ok(outcome) if outcome == expected => true,
                    Ok(outcome) => {
                        out.first_error.get_or_insert_with(|| {
                            format!("expected {expected:?}, got {outcome:?}")
                        });
                        false
                    }
                    Err(error) => {
                        out.first_error.get_or_insert_with(|| format!("{error:#}"));
                        false
                    }
                };
                out.samples.push(LoginSample {
                    finished,
                    latency: finished - sent,
                    as_expected,
                });
            }
            Ok(out)
        });
    }
    tasks
}

/// Waits for every flood worker and gathers their samples.
pub async fn join_flood(
    mut tasks: JoinSet<anyhow::Result<FloodSamples>>,
) -> anyhow::Result<FloodSamples> {
    let mut all = FloodSamples::default();
    while let Some(joined) = tasks.join_next().await {
        let part = joined.context("a login worker panicked")??;
        all.samples.extend(part.samples);
        if all.first_error.is_none() {
            all.first_error = part.first_error;
        }
    }
    Ok(all)
}
