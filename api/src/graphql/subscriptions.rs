//! Subscriptions: live submission status changes and review-queue changes, resumable by cursor.
//!
//! Both replay the event log after `after` (a timeline or subscription cursor) and then follow
//! the event bus, without gap or duplicate at the seam (see [`crate::bus::EventBus::feed`]).
//! Payloads pass the same checks as queries: a submitter never receives internal events, and
//! another owner's provider is refused exactly like a missing one.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicI64, Ordering},
    },
};

use async_graphql::{Context, Enum, ID, Object, Subscription};
use chrono::{DateTime, Utc};
use entity::{event, submission, user};
use futures_util::{Stream, StreamExt};
use sea_orm::EntityTrait;
use tokio::sync::OnceCell;

use super::{
    node::GlobalId,
    providers::{Actor, Submission, TimelineEvent, decode_event_cursor, encode_cursor},
};
use crate::{
    auth::{Principal, Role, Viewer},
    bus::EventFilter,
    error::{ApiError, ApiResult},
    events::EventKind,
    registration::{self, SubmissionStatus},
    state::AppState,
};

/// Event kinds that change the review queue.
const QUEUE_KINDS: [EventKind; 8] = [
    EventKind::Submitted,
    EventKind::Claimed,
    EventKind::Released,
    EventKind::Approved,
    EventKind::Rejected,
    EventKind::ChangesRequested,
    EventKind::Revoked,
    EventKind::Withdrawn,
];

/// Every subscription (served over WebSocket, `graphql-transport-ws`).
#[derive(Default)]
pub struct SubscriptionRoot;

/// Request data set by the transport: the event bus's high-water mark when the `subscribe`
/// message arrived. A subscription without `after` starts there, so "from now on" means from the
/// message, not from whenever the resolver happens to run: a change made after the client saw
/// anything the server sent after the `subscribe` message is always delivered.
#[derive(Clone, Copy, Debug)]
pub struct SubscribedAt(pub i64);

/// Request data set by the transport: where the stream records the id of the event whose
/// payload it is about to resolve (`i64::MAX` after a storage error), so that one execution can
/// serve many sockets that each started at a different event (see `ws::fanout`).
#[derive(Clone, Debug)]
pub struct EventProgress(pub Arc<AtomicI64>);

impl EventProgress {
    fn of(ctx: &Context<'_>) -> Option<Self> {
        ctx.data_opt::<Self>().cloned()
    }

    fn record<T>(progress: Option<&Self>, item: &Result<Arc<event::Model>, T>) {
        if let Some(progress) = progress {
            let id = item.as_ref().map_or(i64::MAX, |event| event.id);
            progress.0.store(id, Ordering::Release);
        }
    }
}

/// The event id to replay after: the client's cursor, else the transport's mark.
fn start_after(ctx: &Context<'_>, after: Option<&str>) -> ApiResult<Option<i64>> {
    match after {
        Some(cursor) => decode_event_cursor(cursor).map(Some),
        None => Ok(ctx.data_opt::<SubscribedAt>().map(|mark| mark.0)),
    }
}

/// Live changes, served over WebSocket with the `graphql-transport-ws` protocol.
#[Subscription]
impl SubscriptionRoot {
    /// Every change of status of the provider's submissions: submitted, claimed, released,
    /// approved, rejected, changes requested, withdrawn, superseded, revoked. For the provider's
    /// owner and for reviewers.
    ///
    /// With `after` (a cursor of this subscription or of the provider's `timeline`), the changes
    /// after it are replayed from the log first, then live ones follow: reconnect with the last
    /// cursor received and nothing is missed or repeated.
    async fn submission_status_changed(
        &self,
        ctx: &Context<'_>,
        provider_id: ID,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<SubmissionStatusChange>>>
    {
        let viewer = Viewer::of(ctx).require(Role::Submitter)?.clone();
        let state = ctx.data_unchecked::<AppState>();
        let id = GlobalId::expect(&provider_id, "Provider").map_err(|_| ApiError::NotFound)?;
        // Boxed, so that the query's future is not part of the subscription's state for as long
        // as it runs.
        Box::pin(registration::visible_provider(state.db.conn(), &viewer, id)).await?;
        let after = start_after(ctx, after.as_deref())?;

        let filter = EventFilter {
            provider_id: Some(id),
            kinds: None,
            status_changes_only: true,
            include_internal: viewer.role >= Role::Reviewer,
        };
        let shared = SharedRows::of(ctx);
        let progress = EventProgress::of(ctx);
        Ok(state.bus.feed(filter, after).map(move |item| {
            EventProgress::record(progress.as_ref(), &item);
            item.map(|event| {
                let rows = shared.rows(event.id);
                SubmissionStatusChange(Change::new(event, viewer.clone(), rows))
            })
            .map_err(|error| ApiError::from(error).into())
        }))
    }

    /// Every change of the review queue: a submission entered it, was claimed or released, was
    /// decided (approved, rejected, changes requested, revoked) or was withdrawn. Reviewers only.
    ///
    /// With `after`, the changes after that cursor are replayed from the log first.
    async fn review_queue_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<ReviewQueueChange>>> {
        let viewer = Viewer::of(ctx).require(Role::Reviewer)?.clone();
        let state = ctx.data_unchecked::<AppState>();
        let after = start_after(ctx, after.as_deref())?;

        let filter = EventFilter {
            provider_id: None,
            kinds: Some(QUEUE_KINDS.iter().map(|k| k.as_str()).collect()),
            status_changes_only: false,
            include_internal: true,
        };
        let shared = SharedRows::of(ctx);
        let progress = EventProgress::of(ctx);
        Ok(state.bus.feed(filter, after).map(move |item| {
            EventProgress::record(progress.as_ref(), &item);
            item.map(|event| {
                let rows = shared.rows(event.id);
                ReviewQueueChange(Change::new(event, viewer.clone(), rows))
            })
            .map_err(|error| ApiError::from(error).into())
        }))
    }
}

/// The rows a change's payload reads that do not depend on who reads it: loaded once for every
/// subscriber an event is being delivered to, instead of once per subscriber. What each viewer
/// may see of them (an actor's address) is still decided per viewer.
#[derive(Default)]
struct EventRows {
    actor: OnceCell<Option<user::Model>>,
    submission: OnceCell<Option<submission::Model>>,
}

/// The [`EventRows`] of the events being delivered right now, by event id; schema data.
///
/// An entry lives only while some payload of its event is being resolved (the map holds weak
/// references): a live event fanned out to many subscribers at once loads its rows once, and
/// a later delivery of the same event (a resume from the log) reads them afresh, so "the
/// submission as it is now" stays true.
#[derive(Default)]
pub struct SharedRows {
    by_event: Mutex<HashMap<i64, Weak<EventRows>>>,
}

/// Entries of [`SharedRows`] above which dead ones are swept on the next insert.
const SHARED_ROWS_SWEEP_AT: usize = 256;

impl SharedRows {
    /// The schema's instance; a private one when the schema has none (each subscription then
    /// loads its own rows).
    fn of(ctx: &Context<'_>) -> Arc<Self> {
        ctx.data_opt::<Arc<Self>>().cloned().unwrap_or_default()
    }

    fn rows(&self, event_id: i64) -> Arc<EventRows> {
        let mut by_event = self.by_event.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rows) = by_event.get(&event_id).and_then(Weak::upgrade) {
            return rows;
        }
        if by_event.len() >= SHARED_ROWS_SWEEP_AT {
            by_event.retain(|_, rows| rows.strong_count() > 0);
        }
        let rows = Arc::new(EventRows::default());
        by_event.insert(event_id, Arc::downgrade(&rows));
        rows
    }
}

/// What both payloads share: the event, for whom, and what was loaded for it.
struct Change {
    event: Arc<event::Model>,
    viewer: Principal,
    rows: Arc<EventRows>,
}

impl Change {
    fn new(event: Arc<event::Model>, viewer: Principal, rows: Arc<EventRows>) -> Self {
        Self {
            event,
            viewer,
            rows,
        }
    }

    fn cursor(&self) -> String {
        encode_cursor(self.event.id)
    }

    fn kind(&self) -> EventKind {
        EventKind::parse(&self.event.kind).unwrap_or(EventKind::Comment)
    }

    fn status_before(&self) -> Option<SubmissionStatus> {
        self.event
            .from_status
            .as_deref()
            .and_then(SubmissionStatus::parse)
    }

    fn status_after(&self) -> Option<SubmissionStatus> {
        self.event
            .to_status
            .as_deref()
            .and_then(SubmissionStatus::parse)
    }

    /// Loaded once per event being delivered, and only when a field asks for it.
    async fn actor(&self, ctx: &Context<'_>) -> ApiResult<Option<Actor>> {
        let Some(actor_id) = self.event.actor_id else {
            return Ok(None);
        };
        let state = ctx.data_unchecked::<AppState>();
        let user = self
            .rows
            .actor
            .get_or_try_init(|| async {
                user::Entity::find_by_id(actor_id)
                    .one(state.db.conn())
                    .await
            })
            .await?;
        Ok(user.as_ref().map(|u| Actor::shown_to(u, &self.viewer)))
    }

    /// The submission as it is now (read once per event being delivered); its status may
    /// have moved on since this change.
    async fn submission(&self, ctx: &Context<'_>) -> ApiResult<Option<Submission>> {
        let Some(id) = self.event.submission_id else {
            return Ok(None);
        };
        let state = ctx.data_unchecked::<AppState>();
        let row = self
            .rows
            .submission
            .get_or_try_init(|| async {
                submission::Entity::find_by_id(id)
                    .one(state.db.conn())
                    .await
            })
            .await?;
        Ok(row.clone().map(Submission))
    }

    async fn timeline_event(&self, ctx: &Context<'_>) -> ApiResult<TimelineEvent> {
        let actor = self.actor(ctx).await?;
        Ok(TimelineEvent::from_event(
            self.event.as_ref().clone(),
            actor,
        ))
    }
}

/// A submission of the provider changed status.
pub struct SubmissionStatusChange(Change);

/// A submission of the provider changed status.
#[Object]
impl SubmissionStatusChange {
    /// Pass as `after` to resume after this change.
    async fn cursor(&self) -> String {
        self.0.cursor()
    }
    /// What happened.
    async fn kind(&self) -> EventKind {
        self.0.kind()
    }
    /// The submission, as it is now.
    async fn submission(&self, ctx: &Context<'_>) -> ApiResult<Option<Submission>> {
        self.0.submission(ctx).await
    }
    /// `null` when the submission was just created.
    async fn from_status(&self) -> Option<SubmissionStatus> {
        self.0.status_before()
    }
    /// The status it has since this change.
    async fn to_status(&self) -> Option<SubmissionStatus> {
        self.0.status_after()
    }
    /// Who changed it; `null` when the system did (automatic approval, expired claims).
    async fn actor(&self, ctx: &Context<'_>) -> ApiResult<Option<Actor>> {
        self.0.actor(ctx).await
    }
    /// Why: the reviewer's reason, or what the system did.
    async fn reason(&self) -> Option<&str> {
        self.0.event.reason.as_deref()
    }
    /// When it happened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.event.created_at
    }
    /// The same change as an entry of the provider's timeline.
    async fn event(&self, ctx: &Context<'_>) -> ApiResult<TimelineEvent> {
        self.0.timeline_event(ctx).await
    }
}

/// How a change moved the review queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum ReviewQueueChangeKind {
    /// A submission entered the queue (submitted, or resubmitted after changes were requested).
    Entered,
    /// A reviewer claimed a submission.
    Claimed,
    /// A claim was released, by the reviewer or because it expired.
    Released,
    /// A decision: approved, rejected, changes requested, or an approval revoked.
    Decided,
    /// The owner withdrew a submission.
    Withdrawn,
}

impl ReviewQueueChangeKind {
    fn of(kind: EventKind) -> Self {
        match kind {
            EventKind::Submitted => Self::Entered,
            EventKind::Claimed => Self::Claimed,
            EventKind::Released => Self::Released,
            EventKind::Withdrawn => Self::Withdrawn,
            _ => Self::Decided,
        }
    }
}

/// The review queue changed.
pub struct ReviewQueueChange(Change);

/// The review queue changed.
#[Object]
impl ReviewQueueChange {
    /// Pass as `after` to resume after this change.
    async fn cursor(&self) -> String {
        self.0.cursor()
    }
    /// How the queue moved.
    async fn change(&self) -> ReviewQueueChangeKind {
        ReviewQueueChangeKind::of(self.0.kind())
    }
    /// The event behind it.
    async fn kind(&self) -> EventKind {
        self.0.kind()
    }
    /// The provider whose submission it is.
    async fn provider_id(&self) -> ID {
        GlobalId::encode("Provider", self.0.event.provider_id)
    }
    /// The submission, as it is now.
    async fn submission(&self, ctx: &Context<'_>) -> ApiResult<Option<Submission>> {
        self.0.submission(ctx).await
    }
    /// `null` when the submission was just created.
    async fn from_status(&self) -> Option<SubmissionStatus> {
        self.0.status_before()
    }
    /// The status it has since this change.
    async fn to_status(&self) -> Option<SubmissionStatus> {
        self.0.status_after()
    }
    /// Who changed it; `null` when the system did.
    async fn actor(&self, ctx: &Context<'_>) -> ApiResult<Option<Actor>> {
        self.0.actor(ctx).await
    }
    /// Why: the reviewer's reason, or what the system did.
    async fn reason(&self) -> Option<&str> {
        self.0.event.reason.as_deref()
    }
    /// When it happened.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.event.created_at
    }
    /// The same change as an entry of the provider's timeline.
    async fn event(&self, ctx: &Context<'_>) -> ApiResult<TimelineEvent> {
        self.0.timeline_event(ctx).await
    }
}
