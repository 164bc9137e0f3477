//! The review queue: filters, orders and keyset pagination over submissions.

use async_graphql::Enum;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use entity::submission;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
};
use uuid::Uuid;

use crate::{
    auth::Principal,
    error::{ApiError, ApiResult},
    registration::{Scope, SubmissionStatus},
    state::AppState,
};

/// Whose claims to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum ClaimFilter {
    /// Claimed by the viewer.
    Me,
    /// Claimed by any reviewer.
    Anyone,
    /// Not claimed.
    Nobody,
}

/// The queue's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum, Default)]
pub enum QueueOrder {
    /// Longest waiting first: the order reviewers should work in. A resubmission keeps the
    /// place of the submission it answers.
    #[default]
    TimeInQueue,
    /// Most recently changed first.
    LastUpdate,
}

/// What to show; every criterion narrows the queue.
#[derive(Clone, Debug, Default)]
pub struct QueueFilter {
    /// Default: SUBMITTED and IN_REVIEW.
    pub statuses: Option<Vec<SubmissionStatus>>,
    pub scopes: Option<Vec<Scope>>,
    pub claimed_by: Option<ClaimFilter>,
    pub submitted_before: Option<DateTime<Utc>>,
    pub submitted_after: Option<DateTime<Utc>>,
    /// Case-insensitive text in the provider name or a sender domain.
    pub search: Option<String>,
}

/// A position in the queue: the sort key of the last item seen, and its id to break ties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueCursor {
    pub order: QueueOrder,
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl QueueCursor {
    pub fn of(order: QueueOrder, row: &submission::Model) -> Self {
        let at = match order {
            QueueOrder::TimeInQueue => row.queue_entered_at,
            QueueOrder::LastUpdate => row.updated_at,
        };
        Self {
            order,
            at,
            id: row.id,
        }
    }

    pub fn encode(&self) -> String {
        let tag = match self.order {
            QueueOrder::TimeInQueue => "q",
            QueueOrder::LastUpdate => "u",
        };
        let at = self.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        URL_SAFE_NO_PAD.encode(format!("{tag}|{at}|{}", self.id))
    }

    pub fn decode(cursor: &str) -> ApiResult<Self> {
        let invalid =
            || ApiError::BadUserInput("`after` is not a cursor of the review queue".into());
        let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.split('|');
        let order = match parts.next() {
            Some("q") => QueueOrder::TimeInQueue,
            Some("u") => QueueOrder::LastUpdate,
            _ => return Err(invalid()),
        };
        let at = parts
            .next()
            .and_then(|a| DateTime::parse_from_rfc3339(a).ok())
            .ok_or_else(invalid)?;
        let id = parts
            .next()
            .and_then(|i| Uuid::parse_str(i).ok())
            .ok_or_else(invalid)?;
        Ok(Self {
            order,
            at: at.with_timezone(&Utc),
            id,
        })
    }
}

/// One page of the queue.
pub struct QueuePage {
    pub rows: Vec<submission::Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
fn like_pattern(search: &str) -> String {
    let mut escaped = String::with_capacity(search.len() + 2);
    escaped.push('%');
    for c in search.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

/// The values of `items` in first-seen order, each once.
fn distinct<T: Copy + PartialEq>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for &item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Reads a page of the queue in two statements: the count and the page.
pub async fn review_queue(
    state: &AppState,
    reviewer: &Principal,
    filter: &QueueFilter,
    order: QueueOrder,
    limit: u64,
    after: Option<&QueueCursor>,
) -> ApiResult<QueuePage> {
    // Repeated enum values are dropped, so however long the client's list, the SQL `IN` holds
    // at most one parameter per status or scope (a list of 500,000 would otherwise exceed
    // PostgreSQL's 65,535 bind parameters and fail as an internal error).
    let statuses = distinct(
        filter
            .statuses
            .as_deref()
            .unwrap_or(&[SubmissionStatus::Submitted, SubmissionStatus::InReview]),
    );
    let mut condition =
        Condition::all().add(submission::Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
    if let Some(scopes) = &filter.scopes {
        let scopes = distinct(scopes);
        condition =
            condition.add(submission::Column::Scope.is_in(scopes.iter().map(|s| s.as_str())));
    }
    match filter.claimed_by {
        Some(ClaimFilter::Me) => {
            condition = condition.add(submission::Column::ClaimedBy.eq(reviewer.user_id))
        }
        Some(ClaimFilter::Anyone) => {
            condition = condition.add(submission::Column::ClaimedBy.is_not_null())
        }
        Some(ClaimFilter::Nobody) => {
            condition = condition.add(submission::Column::ClaimedBy.is_null())
        }
        None => {}
    }
    if let Some(before) = filter.submitted_before {
        condition = condition.add(submission::Column::SubmittedAt.lt(before));
    }
    if let Some(after) = filter.submitted_after {
        condition = condition.add(submission::Column::SubmittedAt.gt(after));
    }
    if let Some(search) = filter
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if search.chars().count() > 200 {
            return Err(ApiError::BadUserInput(
                "search for at most 200 characters".into(),
            ));
        }
        let pattern = like_pattern(search);
        let name = Expr::expr(Func::lower(Expr::col(submission::Column::ProviderName)));
        let domains = Expr::expr(Func::lower(Expr::col(submission::Column::SenderDomains)));
        condition = condition.add(
            Condition::any()
                .add(name.like(sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\')))
                .add(domains.like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\'))),
        );
    }

    let total_count = submission::Entity::find()
        .filter(condition.clone())
        .count(state.db.conn())
        .await?;

    let (key, ascending) = match order {
        QueueOrder::TimeInQueue => (submission::Column::QueueEnteredAt, true),
        QueueOrder::LastUpdate => (submission::Column::UpdatedAt, false),
    };
    let mut page = submission::Entity::find().filter(condition);
    if let Some(cursor) = after {
        if cursor.order != order {
            return Err(ApiError::BadUserInput(
                "`after` belongs to another order of the queue".into(),
            ));
        }
        let beyond = if ascending {
            Condition::any().add(key.gt(cursor.at)).add(
                Condition::all()
                    .add(key.eq(cursor.at))
                    .add(submission::Column::Id.gt(cursor.id)),
            )
        } else {
            Condition::any().add(key.lt(cursor.at)).add(
                Condition::all()
                    .add(key.eq(cursor.at))
                    .add(submission::Column::Id.lt(cursor.id)),
            )
        };
        page = page.filter(beyond);
    }
    page = if ascending {
        page.order_by_asc(key).order_by_asc(submission::Column::Id)
    } else {
        page.order_by_desc(key)
            .order_by_desc(submission::Column::Id)
    };
    let mut rows = page.limit(limit + 1).all(state.db.conn()).await?;
    let has_next_page = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(QueuePage {
        rows,
        has_next_page,
        total_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_to_the_nanosecond() {
        let cursor = QueueCursor {
            order: QueueOrder::TimeInQueue,
            at: DateTime::parse_from_rfc3339("2026-12-03T17:00:00.123456789Z")
                .expect("time")
                .with_timezone(&Utc),
            id: Uuid::new_v4(),
        };
        assert_eq!(
            QueueCursor::decode(&cursor.encode()).expect("decodes"),
            cursor
        );
        assert!(QueueCursor::decode("garbage").is_err());
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_Off\\"), "%50\\%\\_off\\\\%");
    }
}
