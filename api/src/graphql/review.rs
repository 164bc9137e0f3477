//! Review in the schema: the queue, claims, decisions, revocation and comments.

use async_graphql::{
    Context, ID, InputObject, Object, SimpleObject,
    connection::{Connection, Edge},
};
use chrono::{DateTime, Utc};
use sea_orm::EntityTrait;

use super::{
    loaders::{self, Relations},
    node::GlobalId,
    payload,
    providers::{Submission, TimelineEvent, TotalCount, page_size, principal, timeline_event},
};
use crate::{
    auth::{Role, RoleGuard, Viewer},
    criteria::Criterion,
    error::UserError,
    registration::{Scope, SubmissionStatus},
    review::{self, Attestation, ClaimFilter, Decision, QueueCursor, QueueFilter, QueueOrder},
    state::AppState,
};

/// Which submissions the queue shows; every field narrows it.
#[derive(InputObject, Default)]
pub struct ReviewQueueFilter {
    /// Default: `SUBMITTED` and `IN_REVIEW`. Repeated values count once.
    pub statuses: Option<Vec<SubmissionStatus>>,
    /// Repeated values count once.
    pub scopes: Option<Vec<Scope>>,
    pub claimed_by: Option<ClaimFilter>,
    pub submitted_before: Option<DateTime<Utc>>,
    pub submitted_after: Option<DateTime<Utc>>,
    /// Case-insensitive text in the provider name or a sender domain.
    pub search: Option<String>,
}

/// Input of the claim and release mutations.
#[derive(InputObject)]
pub struct SubmissionRefInput {
    pub submission_id: ID,
}

/// A reviewer's attestation of a criterion that cannot be checked from one e-mail.
#[derive(InputObject)]
pub struct AttestationInput {
    /// `SENDING_VOLUME_HISTORY` or `SPAM_COMPLAINT_RATE`.
    pub criterion: Criterion,
    /// What the reviewer checked.
    pub note: String,
}

/// Input of `approveSubmission`.
#[derive(InputObject)]
pub struct ApproveSubmissionInput {
    pub submission_id: ID,
    /// Required for Global: one for each criterion checked by hand; at most 10 (`TOO_MANY`).
    #[graphql(default)]
    pub attestations: Vec<AttestationInput>,
}

/// Input of `rejectSubmission` and `revokeApproval`.
#[derive(InputObject)]
pub struct DecisionReasonInput {
    pub submission_id: ID,
    /// Shown to the submitter and e-mailed to the contact address.
    pub reason: String,
}

/// Input of `requestChanges`.
#[derive(InputObject)]
pub struct RequestChangesInput {
    pub submission_id: ID,
    /// What to change and why; shown to the submitter.
    pub reason: String,
    /// 1 to 50 paths of registration form fields to change, each once: a section
    /// (`publisherInfo`), a field of it (`contactInfo.email`, `providerDetails.targetUrls`) or one
    /// entry of a list (`providerDetails.targetUrls[0]`). Any other path is a user error
    /// `UNKNOWN_FIELD` (a repeated one `DUPLICATE`) and nothing changes.
    pub fields: Vec<String>,
}

/// Input of `addComment`.
#[derive(InputObject)]
pub struct AddCommentInput {
    pub submission_id: ID,
    pub body: String,
    /// Reviewers only: a note other reviewers see and the submitter never does.
    #[graphql(default)]
    pub internal: bool,
}

/// Result of the review mutations.
#[derive(SimpleObject, Default)]
pub struct SubmissionPayload {
    pub submission: Option<Submission>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject, Default)]
pub struct AddCommentPayload {
    pub comment: Option<TimelineEvent>,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct ReviewQuery;

#[Object]
impl ReviewQuery {
    /// The review queue, longest waiting first by default. Reviewers only.
    #[graphql(
        guard = "RoleGuard(Role::Reviewer)",
        complexity = "usize::try_from(first.unwrap_or(20)).unwrap_or(1).max(1) * child_complexity"
    )]
    async fn review_queue(
        &self,
        ctx: &Context<'_>,
        filter: Option<ReviewQueueFilter>,
        #[graphql(desc = "Default: TIME_IN_QUEUE (longest waiting first).")] order_by: Option<
            QueueOrder,
        >,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Submission, TotalCount>> {
        let reviewer = Viewer::of(ctx).require(Role::Reviewer)?;
        let state = ctx.data_unchecked::<AppState>();
        let order_by = order_by.unwrap_or_default();
        let limit = page_size(first, 20)?;
        let after = after.as_deref().map(QueueCursor::decode).transpose()?;
        let filter = filter.unwrap_or_default();
        let filter = QueueFilter {
            statuses: filter.statuses,
            scopes: filter.scopes,
            claimed_by: filter.claimed_by,
            submitted_before: filter.submitted_before,
            submitted_after: filter.submitted_after,
            search: filter.search,
        };
        let page =
            review::review_queue(state, reviewer, &filter, order_by, limit, after.as_ref()).await?;
        let node = ctx.look_ahead().field("edges").field("node");
        let wanted = Relations {
            providers: node.field("provider").exists(),
            claim_holders: node.field("claimHolder").exists(),
        };
        loaders::prefetch(ctx, &page.rows, wanted).await?;
        let mut connection = Connection::with_additional_fields(
            false,
            page.has_next_page,
            TotalCount {
                total_count: page.total_count,
            },
        );
        for row in page.rows {
            let cursor = QueueCursor::of(order_by, &row).encode();
            connection.edges.push(Edge::new(cursor, Submission(row)));
        }
        Ok(connection)
    }
}

#[derive(Default)]
pub struct ReviewMutation;

fn submission_payload(
    result: Result<entity::submission::Model, crate::error::PayloadError>,
) -> async_graphql::Result<SubmissionPayload> {
    payload(
        result,
        |s| SubmissionPayload {
            submission: Some(Submission(s)),
            user_errors: Vec::new(),
        },
        |p, e| p.user_errors = e,
    )
}

#[Object]
impl ReviewMutation {
    /// Takes an exclusive, expiring claim on a submission; only the holder can decide it.
    #[graphql(guard = "RoleGuard(Role::Reviewer)")]
    async fn claim_submission(
        &self,
        ctx: &Context<'_>,
        input: SubmissionRefInput,
    ) -> async_graphql::Result<SubmissionPayload> {
        let reviewer = Viewer::of(ctx).require(Role::Reviewer)?;
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        submission_payload(
            review::claim_submission(ctx.data_unchecked::<AppState>(), reviewer, id).await,
        )
    }

    /// Ends the viewer's claim early; the submission goes back to the queue.
    #[graphql(guard = "RoleGuard(Role::Reviewer)")]
    async fn release_submission(
        &self,
        ctx: &Context<'_>,
        input: SubmissionRefInput,
    ) -> async_graphql::Result<SubmissionPayload> {
        let reviewer = Viewer::of(ctx).require(Role::Reviewer)?;
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        submission_payload(
            review::release_submission(ctx.data_unchecked::<AppState>(), reviewer, id).await,
        )
    }

    /// Approves a claimed submission; it becomes the provider's active registration.
    #[graphql(guard = "RoleGuard(Role::Reviewer)")]
    async fn approve_submission(
        &self,
        ctx: &Context<'_>,
        input: ApproveSubmissionInput,
    ) -> async_graphql::Result<SubmissionPayload> {
        let reviewer = Viewer::of(ctx).require(Role::Reviewer)?;
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        let attestations = input
            .attestations
            .into_iter()
            .map(|a| Attestation {
                criterion: a.criterion,
                note: a.note,
            })
            .collect();
        let decision = Decision::Approve { attestations };
        submission_payload(
            review::decide(ctx.data_unchecked::<AppState>(), reviewer, id, decision).await,
        )
    }

    /// Rejects a claimed submission, with a reason.
    #[graphql(guard = "RoleGuard(Role::Reviewer)")]
    async fn reject_submission(
        &self,
        ctx: &Context<'_>,
        input: DecisionReasonInput,
    ) -> async_graphql::Result<SubmissionPayload> {
        let reviewer = Viewer::of(ctx).require(Role::Reviewer)?;
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        let decision = Decision::Reject {
            reason: input.reason,
        };
        submission_payload(
            review::decide(ctx.data_unchecked::<AppState>(), reviewer, id, decision).await,
        )
    }

    /// Asks the submitter to change named fields; their resubmission keeps its queue position
    /// and comes back to the viewer.
    #[graphql(guard = "RoleGuard(Role::Reviewer)")]
    async fn request_changes(
        &self,
        ctx: &Context<'_>,
        input: RequestChangesInput,
    ) -> async_graphql::Result<SubmissionPayload> {
        let reviewer = Viewer::of(ctx).require(Role::Reviewer)?;
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        let decision = Decision::RequestChanges {
            reason: input.reason,
            fields: input.fields,
        };
        submission_payload(
            review::decide(ctx.data_unchecked::<AppState>(), reviewer, id, decision).await,
        )
    }

    /// Takes back the approval of a provider's registration in force.
    #[graphql(guard = "RoleGuard(Role::Reviewer)")]
    async fn revoke_approval(
        &self,
        ctx: &Context<'_>,
        input: DecisionReasonInput,
    ) -> async_graphql::Result<SubmissionPayload> {
        let reviewer = Viewer::of(ctx).require(Role::Reviewer)?;
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        submission_payload(
            review::revoke_approval(
                ctx.data_unchecked::<AppState>(),
                reviewer,
                id,
                &input.reason,
            )
            .await,
        )
    }

    /// Adds a message to a submission's timeline: owners write to the reviewers; reviewers to
    /// the submitter, or internal notes for reviewers only.
    async fn add_comment(
        &self,
        ctx: &Context<'_>,
        input: AddCommentInput,
    ) -> async_graphql::Result<AddCommentPayload> {
        let author = principal(ctx)?;
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        let state = ctx.data_unchecked::<AppState>();
        let result = review::add_comment(state, author, id, &input.body, input.internal).await;
        let author_model = entity::user::Entity::find_by_id(author.user_id)
            .one(state.db.conn())
            .await
            .map_err(crate::error::ApiError::from)?;
        payload(
            result,
            |event| AddCommentPayload {
                comment: Some(timeline_event(event, author_model.as_ref(), author)),
                user_errors: Vec::new(),
            },
            |p, e| p.user_errors = e,
        )
    }
}
