//! The event bus: committed events, fanned out to live subscribers in log order, across instances.
//!
//! Services publish the events of a transaction only after it commits, so subscribers never see
//! a change that was rolled back. The event log in the database stays the source of truth: the
//! bus is only a fast path, and everything it might lose is recovered from the log.
//!
//! How an event reaches the subscribers of every instance:
//!
//! ```text
//!  publish() ──┬──────────────────────────────► sequencer ──► broadcast ──► feeds (subscriptions)
//!              └─► Redis PUBLISH <prefix>:events    ▲    ▲
//!  other instances ─► Redis SUBSCRIBE ──────────────┘    └── catch-up from the log (gaps, ticks,
//!                                                            Redis reconnects)
//! ```
//!
//! - **The sequencer** (one task per instance) is the only writer of the broadcast channel. It
//!   passes on each event id once and in increasing order: an id at or below the last one passed
//!   on is a duplicate and is dropped; an id above the next expected one reveals a gap (an event
//!   still on its way, or lost with a Redis message), which it fills from the log before passing
//!   the newer event on. So subscribers see a gap-free, duplicate-free, ordered stream and can
//!   resume from a cursor with a plain `id > cursor`.
//! - **Why filling a gap from the log is exact**: event ids follow commit order. SQLite has one
//!   writer at a time; on PostgreSQL [`crate::events::record`] takes a transaction-scoped
//!   advisory lock before drawing an id from the sequence, so a transaction that drew a lower id
//!   has committed (or rolled back) before any later id is drawn. Once an event is committed,
//!   every lower id is final, and a query for the ids below it returns all of them.
//! - **Redis, when configured**: each instance delivers its own events locally at once *and*
//!   publishes them to Redis; when its own event comes back from Redis, the sequencer drops it as a
//!   duplicate by id. We chose this over "publish only to Redis and deliver from the
//!   subscription" because local subscribers keep working (and stay fast) while Redis is down,
//!   and over "skip our own instance id" because dedupe by event id also covers every other
//!   way a duplicate can arise (a catch-up that raced a message). Exactly once per instance
//!   follows from the sequencer, whatever the path.
//! - **Reconnects**: the Redis connection manager does not cover pub/sub, so the subscriber
//!   reconnects and resubscribes itself with exponential backoff, and catches up from the log
//!   after every (re)subscription: pub/sub keeps nothing for an absent subscriber. While it is
//!   reconnecting, the sequencer polls the log every second, so events still arrive, late.
//! - **Ticks**: every few seconds the sequencer also asks the log for anything newer than what
//!   it has passed on, which covers an instance that crashed between its commit and its publish.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::event;
use futures_util::{Stream, StreamExt};
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::db::Db;

/// How many events a slow subscriber may fall behind before it is told it lagged (it then
/// catches up from the log).
const CHANNEL_CAPACITY: usize = 4096;
/// Events waiting for the sequencer; beyond this a publish is dropped and caught up from the log.
const INPUT_CAPACITY: usize = 4096;
/// Events waiting to be published to Redis; beyond this they reach other instances by catch-up.
const REDIS_OUT_CAPACITY: usize = 4096;
/// Rows per query when catching up from the log.
const PAGE_SIZE: u64 = 500;
/// How often the sequencer looks at the log for events no message announced.
const TICK: Duration = Duration::from_secs(1);
/// Ticks between two catch-ups while Redis (or the in-process bus) is healthy.
const TICKS_PER_CATCH_UP: u32 = 5;
/// How often a silent Redis subscription is pinged, and how long the answer may take.
const REDIS_PING_EVERY: Duration = Duration::from_secs(15);
const REDIS_PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect delays: doubling from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How events travel between instances, for `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusStatus {
    /// No Redis: one instance, events stay in the process.
    InProcess,
    /// Subscribed to the Redis channel.
    RedisConnected,
    /// The Redis subscription is down; the instance reconnects and meanwhile polls the log.
    RedisReconnecting,
}

impl BusStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProcess => "in-process",
            Self::RedisConnected => "redis-connected",
            Self::RedisReconnecting => "redis-reconnecting",
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::RedisConnected,
            2 => Self::RedisReconnecting,
            _ => Self::InProcess,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::InProcess => 0,
            Self::RedisConnected => 1,
            Self::RedisReconnecting => 2,
        }
    }
}

/// What the bus needs to fan events out through Redis.
pub struct RedisBus {
    /// Opens the dedicated pub/sub connection (and reopens it after a failure).
    pub client: redis::Client,
    /// Publishes; reconnects by itself.
    pub publisher: redis::aio::ConnectionManager,
    /// `<REDIS_PREFIX>:events`.
    pub channel: String,
}

/// Work for the sequencer.
enum Input {
    /// Committed events, from this instance or from Redis.
    Events(Vec<Arc<event::Model>>),
    /// Read the log for anything newer than what was passed on.
    CatchUp,
}

/// What the bus's handles and tasks share.
struct Shared {
    /// Sequenced events: each id once, in increasing order.
    output: broadcast::Sender<Arc<event::Model>>,
    /// The highest id passed on so far.
    high_water: AtomicI64,
    status: AtomicU8,
    /// A publish found the sequencer's queue full; the next tick catches up.
    overflowed: AtomicBool,
}

impl Shared {
    fn status(&self) -> BusStatus {
        BusStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    fn set_status(&self, status: BusStatus) {
        self.status.store(status.as_u8(), Ordering::Relaxed);
    }
}

/// Fans committed events out to this instance's subscribers (and, with Redis, to every
/// instance's). Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    shared: Arc<Shared>,
    input: mpsc::Sender<Input>,
    redis_out: Option<mpsc::Sender<Arc<event::Model>>>,
    db: Db,
}

impl EventBus {
    /// Starts the sequencer (and, with `redis`, the Redis subscriber and publisher) on the
    /// current runtime. Passing on starts after the newest event already in the log.
    pub async fn start(db: Db, redis: Option<RedisBus>) -> anyhow::Result<Self> {
        Self::start_with_capacity(db, redis, CHANNEL_CAPACITY).await
    }

    async fn start_with_capacity(
        db: Db,
        redis: Option<RedisBus>,
        capacity: usize,
    ) -> anyhow::Result<Self> {
        let newest = newest_event_id(&db).await?;
        let (output, _) = broadcast::channel(capacity);
        let shared = Arc::new(Shared {
            output,
            high_water: AtomicI64::new(newest),
            status: AtomicU8::new(BusStatus::InProcess.as_u8()),
            overflowed: AtomicBool::new(false),
        });
        let (input, input_rx) = mpsc::channel(INPUT_CAPACITY);

        let redis_out = match redis {
            None => None,
            Some(redis) => {
                shared.set_status(BusStatus::RedisReconnecting);
                // The first subscription is made before the service takes requests, so that an
                // instance is connected when it starts answering; later ones happen in the
                // background.
                let first = match subscribe(&redis.client, &redis.channel).await {
                    Ok(subscription) => Some(subscription),
                    Err(error) => {
                        tracing::warn!(error = %error, "event bus: cannot subscribe to Redis yet; retrying in the background");
                        None
                    }
                };
                tokio::spawn(listen(
                    redis.client,
                    redis.channel.clone(),
                    first,
                    input.clone(),
                    shared.clone(),
                ));
                let (out, out_rx) = mpsc::channel(REDIS_OUT_CAPACITY);
                tokio::spawn(forward(redis.publisher, redis.channel, out_rx));
                Some(out)
            }
        };
        tokio::spawn(sequence(input_rx, shared.clone(), db.clone(), newest));
        Ok(Self {
            shared,
            input,
            redis_out,
            db,
        })
    }

    /// Publishes events that have been committed, in log order.
    pub fn publish(&self, events: Vec<event::Model>) {
        if events.is_empty() {
            return;
        }
        let events: Vec<Arc<event::Model>> = events.into_iter().map(Arc::new).collect();
        if let Some(redis_out) = &self.redis_out {
            for event in &events {
                if redis_out.try_send(event.clone()).is_err() {
                    tracing::warn!(
                        event.id = event.id,
                        "event bus: Redis publish queue full; other instances will catch up from the log"
                    );
                }
            }
        }
        if self.input.try_send(Input::Events(events)).is_err() {
            // Nothing is lost: the event is in the log, and the next tick reads it from there.
            self.shared.overflowed.store(true, Ordering::Relaxed);
            tracing::warn!("event bus: sequencer queue full; catching up from the log");
        }
    }

    /// A live feed of the events passed on from now on: each once, in increasing id order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<event::Model>> {
        self.shared.output.subscribe()
    }

    /// How events reach this instance now.
    pub fn status(&self) -> BusStatus {
        self.shared.status()
    }

    /// The newest event id passed on to subscribers.
    pub fn high_water(&self) -> i64 {
        self.shared.high_water.load(Ordering::Acquire)
    }

    /// The events matching `filter` with an id above `after`, read from the log, then live, with
    /// no gap and no duplicate at the seam; without `after`, the events from now on.
    ///
    /// The live subscription is taken *before* the log is read: events committed meanwhile are
    /// both buffered and possibly in the log, and those at or below the last id read are
    /// dropped. A subscriber that lags behind the broadcast buffer catches up from the log the
    /// same way instead of losing events. The stream ends after a storage error (reported as
    /// its last item): the client resumes from its last cursor.
    pub fn feed(
        &self,
        filter: EventFilter,
        after: Option<i64>,
    ) -> impl Stream<Item = Result<Arc<event::Model>, DbErr>> + Send + 'static {
        // Read the high-water mark before subscribing: an event passed on in between is then
        // both in the log above the mark and, possibly, in the receiver, and dropped once.
        let from = after.unwrap_or_else(|| self.high_water());
        let feed = Feed {
            receiver: self.subscribe(),
            db: self.db.clone(),
            filter,
            last: from,
            pending: VecDeque::new(),
            reading_log: true,
            failed: false,
        };
        futures_util::stream::unfold(feed, |mut feed| async move {
            let item = feed.next().await?;
            Some((item, feed))
        })
    }
}

/// Which events a subscriber wants.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this provider's.
    pub provider_id: Option<Uuid>,
    /// Only these kinds (their stored names).
    pub kinds: Option<Vec<&'static str>>,
    /// Only events that set a submission's status.
    pub status_changes_only: bool,
    /// Reviewer-only events too.
    pub include_internal: bool,
}

impl EventFilter {
    /// Whether a live event passes.
    pub fn matches(&self, event: &event::Model) -> bool {
        self.provider_id.is_none_or(|id| id == event.provider_id)
            && self
                .kinds
                .as_ref()
                .is_none_or(|kinds| kinds.contains(&event.kind.as_str()))
            && (!self.status_changes_only || event.to_status.is_some())
            && (self.include_internal || !event.internal)
    }

    /// The same test, as a query on the log.
    fn apply(&self, mut select: Select<event::Entity>) -> Select<event::Entity> {
        if let Some(id) = self.provider_id {
            select = select.filter(event::Column::ProviderId.eq(id));
        }
        if let Some(kinds) = &self.kinds {
            select = select.filter(event::Column::Kind.is_in(kinds.iter().copied()));
        }
        if self.status_changes_only {
            select = select.filter(event::Column::ToStatus.is_not_null());
        }
        if !self.include_internal {
            select = select.filter(event::Column::Internal.eq(false));
        }
        select
    }
}

/// One subscriber's position: replaying the log, then following the broadcast.
struct Feed {
    receiver: broadcast::Receiver<Arc<event::Model>>,
    db: Db,
    filter: EventFilter,
    /// The highest id read from the log or the broadcast; everything at or below it was
    /// delivered or did not match.
    last: i64,
    /// Read from the log, not yet delivered.
    pending: VecDeque<Arc<event::Model>>,
    reading_log: bool,
    failed: bool,
}

impl Feed {
    async fn next(&mut self) -> Option<Result<Arc<event::Model>, DbErr>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.failed {
                return None;
            }
            if self.reading_log {
                // Boxed: a query's future is large, and inline it would stay part of every
                // idle subscriber's state.
                if let Err(error) = Box::pin(self.read_log_page()).await {
                    self.failed = true;
                    return Some(Err(error));
                }
                continue;
            }
            match self.receiver.recv().await {
                Ok(event) if event.id <= self.last => {}
                Ok(event) => {
                    self.last = event.id;
                    if self.filter.matches(&event) {
                        return Some(Ok(event));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(
                        events.skipped = skipped,
                        after.id = self.last,
                        "subscriber lagged behind the event bus; catching up from the log"
                    );
                    self.reading_log = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    async fn read_log_page(&mut self) -> Result<(), DbErr> {
        let rows = self
            .filter
            .apply(event::Entity::find())
            .filter(event::Column::Id.gt(self.last))
            .order_by_asc(event::Column::Id)
            .limit(PAGE_SIZE)
            .all(self.db.conn())
            .await?;
        if (rows.len() as u64) < PAGE_SIZE {
            self.reading_log = false;
        }
        for row in rows {
            self.last = self.last.max(row.id);
            self.pending.push_back(Arc::new(row));
        }
        Ok(())
    }
}

async fn newest_event_id(db: &Db) -> anyhow::Result<i64> {
    let newest: Option<Option<i64>> = event::Entity::find()
        .select_only()
        .column_as(event::Column::Id.max(), "max")
        .into_tuple()
        .one(db.conn())
        .await
        .map_err(|error| anyhow::anyhow!(error).context("reading the newest event id"))?;
    Ok(newest.flatten().unwrap_or(0))
}

/// The sequencer: the one task that passes events on, each id once, in increasing order.
async fn sequence(mut input: mpsc::Receiver<Input>, shared: Arc<Shared>, db: Db, newest: i64) {
    let mut sequencer = Sequencer {
        shared,
        db,
        last: newest,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u32 = 0;
    loop {
        let work = tokio::select! {
            work = input.recv() => match work {
                Some(work) => work,
                None => return,
            },
            _ = tick.tick() => {
                ticks = ticks.wrapping_add(1);
                let due = ticks.is_multiple_of(TICKS_PER_CATCH_UP)
                    || sequencer.shared.status() == BusStatus::RedisReconnecting
                    || sequencer.shared.overflowed.swap(false, Ordering::Relaxed);
                if !due {
                    continue;
                }
                Input::CatchUp
            }
        };
        match work {
            Input::Events(events) => {
                for event in events {
                    sequencer.accept(event).await;
                }
            }
            Input::CatchUp => {
                if let Err(error) = sequencer.read_log(None).await {
                    tracing::warn!(error = %error, "event bus: catching up from the log failed; retrying at the next tick");
                }
            }
        }
    }
}

struct Sequencer {
    shared: Arc<Shared>,
    db: Db,
    /// The highest id passed on.
    last: i64,
}

impl Sequencer {
    async fn accept(&mut self, event: Arc<event::Model>) {
        if event.id <= self.last {
            return;
        }
        if event.id > self.last + 1 {
            // A gap: fill it from the log before passing the newer event on. Since `event` is
            // committed, every lower id is final (see the module comment), so this read is
            // complete; the storage must answer, so it is retried until it does.
            let mut backoff = Backoff::new();
            while let Err(error) = self.read_log(Some(event.id)).await {
                let delay = backoff.next_delay();
                tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "event bus: filling a gap from the log failed");
                tokio::time::sleep(delay).await;
            }
        }
        self.pass_on(event);
    }

    /// Passes on the logged events above the last one passed on (and below `before`).
    async fn read_log(&mut self, before: Option<i64>) -> Result<(), DbErr> {
        loop {
            let mut query = event::Entity::find()
                .filter(event::Column::Id.gt(self.last))
                .order_by_asc(event::Column::Id)
                .limit(PAGE_SIZE);
            if let Some(before) = before {
                query = query.filter(event::Column::Id.lt(before));
            }
            let rows = query.all(self.db.conn()).await?;
            let complete = (rows.len() as u64) < PAGE_SIZE;
            for row in rows {
                self.pass_on(Arc::new(row));
            }
            if complete {
                return Ok(());
            }
        }
    }

    fn pass_on(&mut self, event: Arc<event::Model>) {
        if event.id <= self.last {
            return;
        }
        self.last = event.id;
        // The mark rises before any feed can see the event: a socket that joins a running
        // subscription reads the mark to know where its share starts (see `ws::fanout`), so
        // an event already handed to a feed must be at or below what it reads.
        self.shared.high_water.store(event.id, Ordering::Release);
        // No subscriber is not an error: the event is in the log.
        let _ = self.shared.output.send(event);
    }
}

/// Exponential backoff with a little jitter, so that instances do not reconnect in step.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_FIRST,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        let jitter = rand::random::<f64>() * 0.2 * delay.as_secs_f64();
        delay + Duration::from_secs_f64(jitter)
    }
}

/// An event as it travels through Redis.
#[derive(Serialize, Deserialize)]
struct WireEvent {
    id: i64,
    provider_id: Uuid,
    submission_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    kind: String,
    from_status: Option<String>,
    to_status: Option<String>,
    reason: Option<String>,
    fields: serde_json::Value,
    internal: bool,
    created_at: DateTime<Utc>,
}

impl From<&event::Model> for WireEvent {
    fn from(event: &event::Model) -> Self {
        Self {
            id: event.id,
            provider_id: event.provider_id,
            submission_id: event.submission_id,
            actor_id: event.actor_id,
            kind: event.kind.clone(),
            from_status: event.from_status.clone(),
            to_status: event.to_status.clone(),
            reason: event.reason.clone(),
            fields: event.fields.clone(),
            internal: event.internal,
            created_at: event.created_at,
        }
    }
}

impl From<WireEvent> for event::Model {
    fn from(wire: WireEvent) -> Self {
        Self {
            id: wire.id,
            provider_id: wire.provider_id,
            submission_id: wire.submission_id,
            actor_id: wire.actor_id,
            kind: wire.kind,
            from_status: wire.from_status,
            to_status: wire.to_status,
            reason: wire.reason,
            fields: wire.fields,
            internal: wire.internal,
            created_at: wire.created_at,
        }
    }
}

/// Publishes this instance's events to Redis.
async fn forward(
    mut publisher: redis::aio::ConnectionManager,
    channel: String,
    mut events: mpsc::Receiver<Arc<event::Model>>,
) {
    while let Some(event) = events.recv().await {
        let payload = match serde_json::to_string(&WireEvent::from(event.as_ref())) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(error = %error, event.id = event.id, "event bus: cannot encode an event");
                continue;
            }
        };
        // While Redis is down the connection manager retries for seconds; later events must not
        // queue behind that, since other instances fill any gap from the log anyway.
        let mut command = redis::cmd("PUBLISH");
        command.arg(&channel).arg(payload);
        let publish = command.query_async::<i64>(&mut publisher);
        match tokio::time::timeout(REDIS_PING_TIMEOUT, publish).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, event.id = event.id, "event bus: publishing to Redis failed");
            }
            Err(_) => {
                tracing::warn!(
                    event.id = event.id,
                    "event bus: publishing to Redis timed out"
                );
            }
        }
    }
}

type Subscription = (redis::aio::PubSubSink, redis::aio::PubSubStream);

async fn subscribe(client: &redis::Client, channel: &str) -> redis::RedisResult<Subscription> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub.split())
    };
    match tokio::time::timeout(REDIS_PING_TIMEOUT, connect).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "timed out subscribing to the Redis channel",
        ))),
    }
}

/// Receives other instances' events from Redis, for as long as the process runs: reconnects and
/// resubscribes with backoff, and catches up from the log after each subscription.
async fn listen(
    client: redis::Client,
    channel: String,
    mut subscription: Option<Subscription>,
    input: mpsc::Sender<Input>,
    shared: Arc<Shared>,
) {
    let mut backoff = Backoff::new();
    loop {
        if let Some((mut sink, mut messages)) = subscription.take() {
            shared.set_status(BusStatus::RedisConnected);
            tracing::info!(channel = %channel, "event bus: subscribed to Redis");
            // Whatever was published while nobody listened is only in the log.
            if input.send(Input::CatchUp).await.is_err() {
                return;
            }
            let mut last_heard = tokio::time::Instant::now();
            let mut ping = tokio::time::interval(REDIS_PING_EVERY);
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        last_heard = tokio::time::Instant::now();
                        backoff = Backoff::new();
                        let decoded = message
                            .get_payload::<String>()
                            .map_err(|e| e.to_string())
                            .and_then(|text| serde_json::from_str::<WireEvent>(&text).map_err(|e| e.to_string()));
                        match decoded {
                            Ok(wire) => {
                                let event = Arc::new(event::Model::from(wire));
                                if input.send(Input::Events(vec![event])).await.is_err() {
                                    return;
                                }
                            }
                            Err(error) => tracing::warn!(error = %error, "event bus: ignoring a malformed Redis message"),
                        }
                    }
                    _ = ping.tick() => {
                        if last_heard.elapsed() < REDIS_PING_EVERY {
                            continue;
                        }
                        match tokio::time::timeout(REDIS_PING_TIMEOUT, sink.ping::<String>()).await {
                            Ok(Ok(_)) => last_heard = tokio::time::Instant::now(),
                            Ok(Err(error)) => {
                                tracing::warn!(error = %error, "event bus: Redis ping failed");
                                break;
                            }
                            Err(_) => {
                                tracing::warn!("event bus: Redis did not answer a ping");
                                break;
                            }
                        }
                    }
                }
            }
            tracing::warn!(channel = %channel, "event bus: Redis subscription lost; reconnecting");
        }
        shared.set_status(BusStatus::RedisReconnecting);
        tokio::time::sleep(backoff.next_delay()).await;
        match subscribe(&client, &channel).await {
            Ok(fresh) => subscription = Some(fresh),
            Err(error) => {
                tracing::warn!(error = %error, "event bus: reconnecting to Redis failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectOptions, Database, NotSet};

    use super::*;

    async fn memory_db() -> Db {
        let mut options = ConnectOptions::new("sqlite::memory:");
        options.max_connections(1).sqlx_logging(false);
        let conn = Database::connect(options).await.expect("in-memory SQLite");
        let db = Db::from_connection(conn);
        db.migrate().await.expect("migrate");
        sea_orm::ConnectionTrait::execute_unprepared(db.conn(), "PRAGMA foreign_keys = OFF")
            .await
            .expect("foreign keys off");
        db
    }

    async fn log_event(db: &Db, provider_id: Uuid, kind: &str) -> event::Model {
        event::ActiveModel {
            id: NotSet,
            provider_id: Set(provider_id),
            submission_id: Set(None),
            actor_id: Set(None),
            kind: Set(kind.to_owned()),
            from_status: Set(None),
            to_status: Set(None),
            reason: Set(None),
            fields: Set(serde_json::json!([])),
            internal: Set(false),
            created_at: Set(Utc::now()),
        }
        .insert(db.conn())
        .await
        .expect("insert an event")
    }

    async fn wait_for_high_water(bus: &EventBus, id: i64) {
        for _ in 0..200 {
            if bus.high_water() >= id {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the bus never passed event {id} on");
    }

    #[tokio::test]
    async fn out_of_order_and_repeated_publishes_come_out_once_in_order() {
        let db = memory_db().await;
        let bus = EventBus::start(db.clone(), None).await.expect("bus");
        let mut receiver = bus.subscribe();
        let provider = Uuid::new_v4();
        let mut events = Vec::new();
        for _ in 0..5 {
            events.push(log_event(&db, provider, "COMMENT").await);
        }

        // Event 3 first: 1 and 2 are read from the log; then duplicates are dropped.
        bus.publish(vec![events[2].clone()]);
        bus.publish(vec![events[0].clone(), events[1].clone()]);
        bus.publish(vec![events[2].clone(), events[4].clone()]);
        bus.publish(vec![events[3].clone()]);
        wait_for_high_water(&bus, events[4].id).await;

        let mut seen = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            seen.push(event.id);
        }
        assert_eq!(seen, events.iter().map(|e| e.id).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_lagging_feed_catches_up_from_the_log_without_loss_or_duplicate() {
        let db = memory_db().await;
        let bus = EventBus::start_with_capacity(db.clone(), None, 4)
            .await
            .expect("bus");
        let provider = Uuid::new_v4();
        let other = Uuid::new_v4();
        let feed = bus.feed(
            EventFilter {
                provider_id: Some(provider),
                ..EventFilter::default()
            },
            None,
        );
        let mut feed = Box::pin(feed);

        let mut expected = Vec::new();
        for index in 0..20 {
            let owner = if index % 3 == 0 { other } else { provider };
            let event = log_event(&db, owner, "COMMENT").await;
            if owner == provider {
                expected.push(event.id);
            }
            bus.publish(vec![event]);
        }
        let newest = bus.high_water();
        wait_for_high_water(&bus, newest).await;

        let mut seen = Vec::new();
        while seen.len() < expected.len() {
            let next = tokio::time::timeout(Duration::from_secs(5), feed.next())
                .await
                .expect("an event in time")
                .expect("the feed goes on")
                .expect("no storage error");
            seen.push(next.id);
        }
        assert_eq!(seen, expected);

        // Nothing more is pending; the next live event follows directly.
        let live = log_event(&db, provider, "COMMENT").await;
        bus.publish(vec![live.clone()]);
        let next = tokio::time::timeout(Duration::from_secs(5), feed.next())
            .await
            .expect("the live event in time")
            .expect("the feed goes on")
            .expect("no storage error");
        assert_eq!(next.id, live.id);
    }

    #[tokio::test]
    async fn a_feed_replays_after_its_cursor_then_goes_live() {
        let db = memory_db().await;
        let provider = Uuid::new_v4();
        let first = log_event(&db, provider, "COMMENT").await;
        let second = log_event(&db, provider, "COMMENT").await;
        let bus = EventBus::start(db.clone(), None).await.expect("bus");
        let mut feed = Box::pin(bus.feed(EventFilter::default(), Some(first.id)));
        let replayed = feed.next().await.expect("an item").expect("no error");
        assert_eq!(replayed.id, second.id);

        let third = log_event(&db, provider, "COMMENT").await;
        // Published twice (say, locally and back from Redis): delivered once.
        bus.publish(vec![third.clone()]);
        bus.publish(vec![third.clone()]);
        let fourth = log_event(&db, provider, "COMMENT").await;
        bus.publish(vec![fourth.clone()]);
        let live: Vec<i64> = vec![
            feed.next().await.expect("an item").expect("no error").id,
            feed.next().await.expect("an item").expect("no error").id,
        ];
        assert_eq!(live, vec![third.id, fourth.id]);
    }

    #[test]
    fn wire_events_round_trip() {
        let event = event::Model {
            id: 42,
            provider_id: Uuid::new_v4(),
            submission_id: Some(Uuid::new_v4()),
            actor_id: None,
            kind: "SUBMITTED".into(),
            from_status: None,
            to_status: Some("SUBMITTED".into()),
            reason: Some("why".into()),
            fields: serde_json::json!(["a.b"]),
            internal: true,
            created_at: Utc::now(),
        };
        let text = serde_json::to_string(&WireEvent::from(&event)).expect("encode");
        let back: event::Model = serde_json::from_str::<WireEvent>(&text)
            .expect("decode")
            .into();
        assert_eq!(back, event);
    }
}
