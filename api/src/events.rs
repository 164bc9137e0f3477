//! The append-only event log: every status change, section edit, claim and message of a provider.

use async_graphql::Enum;
use chrono::Utc;
use entity::event;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DbBackend, DbErr, NotSet};
use uuid::Uuid;

use crate::registration::SubmissionStatus;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum EventKind {
    ProviderCreated,
    /// A dashboard section was saved; `fields` lists what changed.
    SectionUpdated,
    /// The sample e-mail was checked against the registration criteria.
    CriteriaChecked,
    Submitted,
    Withdrawn,
    Claimed,
    Released,
    Approved,
    Rejected,
    ChangesRequested,
    Revoked,
    Superseded,
    Resubmitted,
    Comment,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderCreated => "PROVIDER_CREATED",
            Self::SectionUpdated => "SECTION_UPDATED",
            Self::CriteriaChecked => "CRITERIA_CHECKED",
            Self::Submitted => "SUBMITTED",
            Self::Withdrawn => "WITHDRAWN",
            Self::Claimed => "CLAIMED",
            Self::Released => "RELEASED",
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::ChangesRequested => "CHANGES_REQUESTED",
            Self::Revoked => "REVOKED",
            Self::Superseded => "SUPERSEDED",
            Self::Resubmitted => "RESUBMITTED",
            Self::Comment => "COMMENT",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        use EventKind::*;
        [
            ProviderCreated,
            SectionUpdated,
            CriteriaChecked,
            Submitted,
            Withdrawn,
            Claimed,
            Released,
            Approved,
            Rejected,
            ChangesRequested,
            Revoked,
            Superseded,
            Resubmitted,
            Comment,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// An event about to be written.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub provider_id: Uuid,
    pub submission_id: Option<Uuid>,
    /// `None` when the system acted.
    pub actor_id: Option<Uuid>,
    pub kind: EventKind,
    pub from_status: Option<SubmissionStatus>,
    pub to_status: Option<SubmissionStatus>,
    pub reason: Option<String>,
    pub fields: Vec<String>,
    /// Reviewer-only.
    pub internal: bool,
}

impl NewEvent {
    pub fn new(provider_id: Uuid, actor_id: Option<Uuid>, kind: EventKind) -> Self {
        Self {
            provider_id,
            submission_id: None,
            actor_id,
            kind,
            from_status: None,
            to_status: None,
            reason: None,
            fields: Vec::new(),
            internal: false,
        }
    }

    pub fn submission(mut self, id: Uuid) -> Self {
        self.submission_id = Some(id);
        self
    }

    pub fn transition(mut self, from: Option<SubmissionStatus>, to: SubmissionStatus) -> Self {
        self.from_status = from;
        self.to_status = Some(to);
        self
    }

    pub fn fields(mut self, fields: Vec<String>) -> Self {
        self.fields = fields;
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// The PostgreSQL advisory lock that orders event ids by commit (an arbitrary constant: the
/// bytes of "amdash" and 1).
const EVENT_ORDER_LOCK: i64 = 0x616d_6461_7368_0001;

/// Appends an event in the caller's transaction, so it commits (or not) with the change.
///
/// Event ids are the cursors subscribers resume from (`id > cursor`), so an id must never become
/// visible after a higher one. SQLite guarantees it (one writer at a time). On PostgreSQL ids
/// come from a sequence and transactions may commit in another order than they drew them, so
/// the first event of a transaction takes a transaction-scoped advisory lock, held until commit
/// or rollback, before drawing its id: transactions that record events then commit in id order.
///
/// The cost is that such transactions serialise from their first event to their commit. To keep
/// that window short, and free of deadlocks with row locks, record events after the rows the
/// transaction changes (a transaction that holds this lock and then waits for a row lock held by
/// another transaction waiting for this lock is a deadlock, which PostgreSQL breaks by failing
/// one of them). Always call it inside a transaction: outside one the lock would be released at
/// once.
///
/// TODO: if event-writing throughput ever matters more than this serialisation allows, replace
/// the lock with a commit-ordered position (the writing transaction's id, read back against
/// `pg_snapshot_xmin`), which needs a column and a cursor change.
pub async fn record(conn: &impl ConnectionTrait, event: NewEvent) -> Result<event::Model, DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({EVENT_ORDER_LOCK})"))
            .await?;
    }
    event::ActiveModel {
        id: NotSet,
        provider_id: Set(event.provider_id),
        submission_id: Set(event.submission_id),
        actor_id: Set(event.actor_id),
        kind: Set(event.kind.as_str().to_owned()),
        from_status: Set(event.from_status.map(|s| s.as_str().to_owned())),
        to_status: Set(event.to_status.map(|s| s.as_str().to_owned())),
        reason: Set(event.reason),
        fields: Set(serde_json::json!(event.fields)),
        internal: Set(event.internal),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await
}
