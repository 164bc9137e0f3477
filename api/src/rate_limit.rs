//! Rate limits: how much each caller may ask of the service per time window.
//!
//! Four budgets, each a generic cell rate (GCRA: a bucket of `budget` units that refills
//! evenly over `window`):
//! - **query cost** per user (per client address when anonymous): every GraphQL operation costs
//!   its validated complexity, so a page of 100 costs more than a page of 5;
//! - **log-in attempts** per account and per client address, and **sign-ups** per client
//!   address, so nobody can guess passwords, flood the password hasher or mass-create accounts.
//!
//! With Redis configured the buckets live there (one Lua script per decision, timed by the
//! Redis server's clock), so every instance shares them. Without Redis, or while Redis fails,
//! each instance keeps its own buckets in memory (`governor`); falling back is logged once per
//! outage and counted in `amdash_rate_limit_fallbacks_total`. A fallback makes limits per
//! instance, never absent.

use std::{
    fmt,
    net::IpAddr,
    num::NonZeroU32,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter as Gcra, clock::Clock,
    middleware::StateInformationMiddleware, state::keyed::DefaultKeyedStateStore,
};

use crate::metrics::Metrics;

/// One budget: `budget` units per `window`, all of which may be spent at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub budget: NonZeroU32,
    pub window: Duration,
}

impl Limit {
    /// The time one unit takes to come back.
    fn emission_interval(self) -> Duration {
        self.window / self.budget.get()
    }
}

impl FromStr for Limit {
    type Err = String;

    /// `BUDGET/WINDOW` where the window is a number followed by `s`, `m`, `h` or `d`, for
    /// example `10/15m` or `100000/1m`.
    fn from_str(raw: &str) -> Result<Self, String> {
        let expected =
            "expected BUDGET/WINDOW such as `10/15m` (window units s, m, h, d), or `off`";
        let (budget, window) = raw.trim().split_once('/').ok_or(expected)?;
        let budget: u32 = budget.trim().parse().map_err(|_| expected.to_owned())?;
        let budget = NonZeroU32::new(budget).ok_or("the budget must be at least 1")?;
        let window = window.trim();
        let split = window.find(|c: char| !c.is_ascii_digit()).ok_or(expected)?;
        let (amount, unit) = window.split_at(split);
        let amount: u64 = amount.parse().map_err(|_| expected.to_owned())?;
        let seconds = match unit {
            "s" => amount,
            "m" => amount.saturating_mul(60),
            "h" => amount.saturating_mul(3_600),
            "d" => amount.saturating_mul(86_400),
            _ => return Err(expected.to_owned()),
        };
        if !(1..=7 * 86_400).contains(&seconds) {
            return Err("the window must be between 1 s and 7 d".to_owned());
        }
        if u64::from(budget.get()) > seconds.saturating_mul(1_000_000) {
            return Err("the budget refills faster than once per microsecond".to_owned());
        }
        Ok(Self {
            budget,
            window: Duration::from_secs(seconds),
        })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.budget, self.window.as_secs())
    }
}

/// The budgets; `None` turns one off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitSettings {
    pub query_cost: Option<Limit>,
    pub log_in_per_account: Option<Limit>,
    pub log_in_per_address: Option<Limit>,
    pub sign_up_per_address: Option<Limit>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let limit = |budget, seconds| {
            Some(Limit {
                budget: NonZeroU32::new(budget).unwrap_or(NonZeroU32::MIN),
                window: Duration::from_secs(seconds),
            })
        };
        Self {
            // A reviewer script paging the whole queue at 100 per page spends about 2,000 per
            // page: 50 pages a minute, far more than a person clicking.
            query_cost: limit(100_000, 60),
            log_in_per_account: limit(10, 15 * 60),
            log_in_per_address: limit(60, 60),
            sign_up_per_address: limit(20, 3_600),
        }
    }
}

/// Which budget a decision draws on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bucket {
    QueryCost,
    LogInPerAccount,
    LogInPerAddress,
    SignUpPerAddress,
}

impl Bucket {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueryCost => "query_cost",
            Self::LogInPerAccount => "log_in_account",
            Self::LogInPerAddress => "log_in_address",
            Self::SignUpPerAddress => "sign_up_address",
        }
    }

    fn limit(self, settings: &RateLimitSettings) -> Option<Limit> {
        match self {
            Self::QueryCost => settings.query_cost,
            Self::LogInPerAccount => settings.log_in_per_account,
            Self::LogInPerAddress => settings.log_in_per_address,
            Self::SignUpPerAddress => settings.sign_up_per_address,
        }
    }

    const ALL: [Self; 4] = [
        Self::QueryCost,
        Self::LogInPerAccount,
        Self::LogInPerAddress,
        Self::SignUpPerAddress,
    ];
}

/// Who is charged: a signed-in user, an account being logged in to, or a client address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    User(uuid::Uuid),
    Account(String),
    Address(IpAddr),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Account(email) => write!(f, "account:{email}"),
            Self::Address(address) => write!(f, "address:{address}"),
        }
    }
}

/// The outcome of one charge, in the terms of the `RateLimit-*` response headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The budget of the window.
    pub limit: u32,
    /// Units left after this charge.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset_after: Duration,
    /// When refused: until the same charge would pass.
    pub retry_after: Duration,
    /// The window, for `RateLimit-Policy`.
    pub window: Duration,
}

impl Decision {
    /// Whole seconds for a `Retry-After` header: rounded up, at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        ceil_seconds(self.retry_after).max(1)
    }

    pub fn reset_seconds(&self) -> u64 {
        ceil_seconds(self.reset_after)
    }
}

fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

type LocalLimiter = Gcra<
    String,
    DefaultKeyedStateStore<String>,
    governor::clock::DefaultClock,
    StateInformationMiddleware,
>;

/// The GCRA in Redis: the key holds the bucket's theoretical arrival time (TAT) in
/// microseconds on the Redis server's clock, so instances with skewed clocks agree.
/// ARGV: emission interval (µs), window (µs), cost. Returns allowed (0/1), remaining units,
/// retry after (µs), reset after (µs).
const GCRA_SCRIPT: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local emission = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + emission * cost
local allow_at = new_tat - window
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((window - (new_tat - now)) / emission), 0, new_tat - now}
";

/// How long a Redis decision may take before the instance decides alone.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// After a Redis failure, how long decisions stay local before Redis is tried again.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Charges budgets; cheap to clone.
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RateLimitSettings,
    redis: Option<(redis::aio::ConnectionManager, String)>,
    script: redis::Script,
    local: Vec<(Bucket, LocalLimiter)>,
    /// Microseconds since `started` before which Redis is not tried (0: use Redis).
    redis_paused_until: AtomicU64,
    started: Instant,
    metrics: Metrics,
}

impl RateLimiter {
    /// `redis`: the shared connection and the key prefix, when Redis is configured.
    pub fn new(
        settings: RateLimitSettings,
        redis: Option<(redis::aio::ConnectionManager, String)>,
        metrics: Metrics,
    ) -> Self {
        let local = Bucket::ALL
            .into_iter()
            .filter_map(|bucket| {
                let limit = bucket.limit(&settings)?;
                let quota =
                    Quota::with_period(limit.emission_interval())?.allow_burst(limit.budget);
                let limiter: DefaultKeyedRateLimiter<String> = Gcra::keyed(quota);
                Some((
                    bucket,
                    limiter.with_middleware::<StateInformationMiddleware>(),
                ))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                settings,
                redis,
                script: redis::Script::new(GCRA_SCRIPT),
                local,
                redis_paused_until: AtomicU64::new(0),
                started: Instant::now(),
                metrics,
            }),
        }
    }

    /// Charges `cost` units of `bucket` to `subject`. `None` when that budget is off. A cost
    /// above the whole budget is charged as the whole budget, so it passes on a full bucket.
    pub async fn charge(&self, bucket: Bucket, subject: &Subject, cost: u32) -> Option<Decision> {
        let limit = bucket.limit(&self.inner.settings)?;
        let cost = cost.clamp(1, limit.budget.get());
        let key = format!("{}:{subject}", bucket.as_str());
        let decision = match self.charge_in_redis(limit, &key, cost).await {
            Some(decision) => decision,
            None => self.charge_locally(bucket, limit, key, cost),
        };
        self.inner
            .metrics
            .observe_rate_limit(bucket.as_str(), decision.allowed);
        if !decision.allowed {
            tracing::warn!(
                bucket = bucket.as_str(),
                subject = %subject,
                retry_after_seconds = decision.retry_after_seconds(),
                "rate limit reached"
            );
        }
        Some(decision)
    }

    /// The decision from Redis, or `None` when Redis is absent, paused or failing.
    async fn charge_in_redis(&self, limit: Limit, key: &str, cost: u32) -> Option<Decision> {
        let (connection, prefix) = self.inner.redis.as_ref()?;
        let now = self.micros_since_start();
        if now < self.inner.redis_paused_until.load(Ordering::Relaxed) {
            return None;
        }
        let mut connection = connection.clone();
        let mut invocation = self.inner.script.key(format!("{prefix}:ratelimit:{key}"));
        invocation
            .arg(micros(limit.emission_interval()))
            .arg(micros(limit.window))
            .arg(cost);
        let outcome = tokio::time::timeout(
            REDIS_TIMEOUT,
            invocation.invoke_async::<(u8, i64, i64, i64)>(&mut connection),
        )
        .await;
        let failure = match outcome {
            Ok(Ok((allowed, remaining, retry_after, reset_after))) => {
                if self.inner.redis_paused_until.swap(0, Ordering::Relaxed) != 0 {
                    tracing::info!("rate limits: Redis answers again; buckets are shared again");
                }
                let non_negative = |value: i64| u64::try_from(value).unwrap_or(0);
                // A refusal reports nothing left, as the in-memory limiter does.
                let remaining = if allowed == 1 {
                    non_negative(remaining)
                } else {
                    0
                };
                return Some(Decision {
                    allowed: allowed == 1,
                    limit: limit.budget.get(),
                    remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                    reset_after: Duration::from_micros(non_negative(reset_after)),
                    retry_after: Duration::from_micros(non_negative(retry_after)),
                    window: limit.window,
                });
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", REDIS_TIMEOUT.as_millis()),
        };
        let paused_until = now + micros(REDIS_RETRY_AFTER);
        if self
            .inner
            .redis_paused_until
            .swap(paused_until, Ordering::Relaxed)
            == 0
        {
            tracing::warn!(
                error = %failure,
                "rate limits: Redis failed; this instance limits on its own until Redis answers"
            );
        }
        self.inner.metrics.observe_rate_limit_fallback();
        None
    }

    fn charge_locally(&self, bucket: Bucket, limit: Limit, key: String, cost: u32) -> Decision {
        let Some((_, limiter)) = self.inner.local.iter().find(|(b, _)| *b == bucket) else {
            // Every enabled bucket has a local limiter; refusing is the safe answer if not.
            return refused(limit, limit.window);
        };
        let cost = NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN);
        match limiter.check_key_n(&key, cost) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: limit.budget.get(),
                    remaining,
                    reset_after: limit.emission_interval() * (limit.budget.get() - remaining),
                    retry_after: Duration::ZERO,
                    window: limit.window,
                }
            }
            Ok(Err(not_until)) => refused(limit, not_until.wait_time_from(limiter.clock().now())),
            Err(_insufficient) => refused(limit, limit.window),
        }
    }

    /// Drops the in-memory state of buckets that are full again, so memory follows the callers
    /// of the last window rather than every caller ever seen.
    pub fn forget_idle(&self) {
        for (_, limiter) in &self.inner.local {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    fn micros_since_start(&self) -> u64 {
        micros(self.inner.started.elapsed()).max(1)
    }
}

fn refused(limit: Limit, retry_after: Duration) -> Decision {
    Decision {
        allowed: false,
        limit: limit.budget.get(),
        remaining: 0,
        reset_after: retry_after,
        retry_after,
        window: limit.window,
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(raw: &str) -> Limit {
        raw.parse().expect("a valid limit")
    }

    #[test]
    fn limits_parse_with_units_and_refuse_nonsense() {
        assert_eq!(limit("10/15m").window, Duration::from_secs(900));
        assert_eq!(limit(" 100000 / 1m ").budget.get(), 100_000);
        assert_eq!(limit("3/2h").window, Duration::from_secs(7_200));
        assert_eq!(limit("1/1d").window, Duration::from_secs(86_400));
        for bad in [
            "",
            "10",
            "0/1m",
            "-1/1m",
            "10/",
            "10/m",
            "10/5",
            "10/5y",
            "10/0s",
            "10/8d",
            "x/1m",
            "10/1m/2",
            "99999999999/1m",
            "2000000/1s",
        ] {
            assert!(bad.parse::<Limit>().is_err(), "{bad:?} was accepted");
        }
    }

    fn limiter(settings: RateLimitSettings) -> RateLimiter {
        RateLimiter::new(settings, None, Metrics::new().expect("metrics"))
    }

    fn only_query_cost(raw: &str) -> RateLimitSettings {
        RateLimitSettings {
            query_cost: Some(limit(raw)),
            log_in_per_account: None,
            log_in_per_address: None,
            sign_up_per_address: None,
        }
    }

    #[tokio::test]
    async fn a_budget_is_spent_then_refused_with_a_retry_time() {
        let limiter = limiter(only_query_cost("100/1h"));
        let alice = Subject::User(uuid::Uuid::now_v7());
        let first = limiter
            .charge(Bucket::QueryCost, &alice, 60)
            .await
            .expect("on");
        assert!(first.allowed);
        assert_eq!(first.remaining, 40);
        assert_eq!(first.limit, 100);
        let second = limiter
            .charge(Bucket::QueryCost, &alice, 60)
            .await
            .expect("on");
        assert!(!second.allowed, "60 more do not fit in the 40 left");
        assert_eq!(second.remaining, 0);
        // 20 units are missing; one unit comes back every 36 s.
        assert!(
            (700..=720).contains(&second.retry_after_seconds()),
            "{}",
            second.retry_after_seconds()
        );
        let small = limiter
            .charge(Bucket::QueryCost, &alice, 40)
            .await
            .expect("on");
        assert!(small.allowed, "a refused charge takes nothing");
        assert_eq!(small.remaining, 0);
    }

    #[tokio::test]
    async fn subjects_and_buckets_do_not_share_budgets() {
        let mut settings = only_query_cost("5/1h");
        settings.log_in_per_address = Some(limit("5/1h"));
        let limiter = limiter(settings);
        let alice = Subject::User(uuid::Uuid::now_v7());
        let bob = Subject::User(uuid::Uuid::now_v7());
        let address = Subject::Address(IpAddr::from([192, 0, 2, 1]));
        assert!(
            limiter
                .charge(Bucket::QueryCost, &alice, 5)
                .await
                .expect("on")
                .allowed
        );
        assert!(
            !limiter
                .charge(Bucket::QueryCost, &alice, 1)
                .await
                .expect("on")
                .allowed
        );
        assert!(
            limiter
                .charge(Bucket::QueryCost, &bob, 5)
                .await
                .expect("on")
                .allowed
        );
        assert!(
            limiter
                .charge(Bucket::LogInPerAddress, &address, 5)
                .await
                .expect("on")
                .allowed
        );
        assert!(
            limiter
                .charge(Bucket::SignUpPerAddress, &address, 1)
                .await
                .is_none(),
            "off"
        );
    }

    #[tokio::test]
    async fn a_cost_above_the_budget_is_charged_as_the_whole_budget() {
        let limiter = limiter(only_query_cost("10/1h"));
        let alice = Subject::User(uuid::Uuid::now_v7());
        let huge = limiter
            .charge(Bucket::QueryCost, &alice, 1_000)
            .await
            .expect("on");
        assert!(huge.allowed);
        assert_eq!(huge.remaining, 0);
        assert!(
            !limiter
                .charge(Bucket::QueryCost, &alice, 1)
                .await
                .expect("on")
                .allowed
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let decision = refused(limit("1/1m"), Duration::from_millis(1_001));
        assert_eq!(decision.retry_after_seconds(), 2);
        let decision = refused(limit("1/1m"), Duration::ZERO);
        assert_eq!(decision.retry_after_seconds(), 1);
    }
}
