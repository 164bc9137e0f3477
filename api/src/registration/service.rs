//! Registration services: create a provider, save a section, submit, withdraw.

use chrono::Utc;
use entity::{provider, submission, user};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, SqlErr,
    sea_query::{Expr, ExprTrait},
};
use tracing::instrument;
use uuid::Uuid;

use super::{
    blockers::submit_blockers,
    draft::{MailType, ProviderDraft, Scope, SectionEdit},
    status::SubmissionStatus,
};
use crate::{
    auth::{Principal, Role},
    criteria::{self, CriteriaReport, DeclaredMailType, RegistrationFacts, Verdict},
    domain::BoundedText,
    error::{ApiError, ApiResult, PathSegment, PayloadError, UserError},
    events::{self, EventKind, NewEvent},
    notifications::{Decision as NotifiedDecision, Notification, decision_message},
    state::AppState,
};

/// Longest provider name, in characters.
pub const MAX_PROVIDER_NAME_CHARS: usize = 200;

/// Owners see their providers; reviewers and admins see every provider.
pub fn can_see_provider(viewer: &Principal, provider: &provider::Model) -> bool {
    provider.owner_id == viewer.user_id || viewer.role >= Role::Reviewer
}

/// A provider the viewer may see. Anyone else's looks exactly like a missing one.
pub async fn visible_provider(
    conn: &impl ConnectionTrait,
    viewer: &Principal,
    id: Uuid,
) -> ApiResult<provider::Model> {
    provider::Entity::find_by_id(id)
        .one(conn)
        .await?
        .filter(|p| can_see_provider(viewer, p))
        .ok_or(ApiError::NotFound)
}

/// A provider the viewer owns. A reviewer who can see it but does not own it is refused;
/// anybody else is told it does not exist.
pub async fn owned_provider(
    conn: &impl ConnectionTrait,
    viewer: &Principal,
    id: Uuid,
) -> ApiResult<provider::Model> {
    let provider = visible_provider(conn, viewer, id).await?;
    if provider.owner_id != viewer.user_id {
        return Err(ApiError::Forbidden);
    }
    Ok(provider)
}

/// A submission the viewer may see (through its provider).
pub async fn visible_submission(
    conn: &impl ConnectionTrait,
    viewer: &Principal,
    id: Uuid,
) -> ApiResult<(submission::Model, provider::Model)> {
    let submission = submission::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(ApiError::NotFound)?;
    let provider = visible_provider(conn, viewer, submission.provider_id).await?;
    Ok((submission, provider))
}

/// Creates a provider with an empty draft and a fresh originator ID.
#[instrument(skip_all, fields(user.id = %owner.user_id))]
pub async fn create_provider(
    state: &AppState,
    owner: &Principal,
    name: &str,
) -> Result<provider::Model, PayloadError> {
    let name = BoundedText::parse(name, MAX_PROVIDER_NAME_CHARS, false)
        .map_err(|error| PayloadError::field("name", error.code.as_str(), error.message))?;
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let created = provider::ActiveModel {
        id: Set(Uuid::now_v7()),
        owner_id: Set(owner.user_id),
        name: Set(name.into_string()),
        originator_id: Set(Uuid::new_v4()),
        draft: Set(ProviderDraft::default().to_json()),
        draft_report: Set(None),
        version: Set(1),
        active_submission_id: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let recorded = events::record(
        &txn,
        NewEvent::new(created.id, Some(owner.user_id), EventKind::ProviderCreated),
    )
    .await?;
    txn.commit().await?;
    state.bus.publish(vec![recorded]);
    tracing::info!(provider.id = %created.id, "provider created");
    Ok(created)
}

/// What the criteria checker needs to know of a draft.
pub fn registration_facts(draft: &ProviderDraft) -> RegistrationFacts {
    let (senders, target_urls) = match &draft.provider_details {
        Some(details) => (
            details
                .sender_emails
                .iter()
                .map(|s| s.normalized().to_owned())
                .collect(),
            details
                .target_urls
                .iter()
                .map(|t| t.url().clone())
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    RegistrationFacts {
        senders,
        target_urls,
        declared_mail_type: draft.scenario_details.as_ref().map(|s| match s.mail_type {
            MailType::Transactional => DeclaredMailType::Transactional,
            MailType::Promotional => DeclaredMailType::Promotional,
        }),
    }
}

/// Checks the draft's sample e-mail, if it has one.
async fn criteria_report(
    state: &AppState,
    draft: &ProviderDraft,
) -> Result<Option<CriteriaReport>, PayloadError> {
    let Some(sample) = draft
        .verification_details
        .as_ref()
        .and_then(|v| v.sample_email.as_deref())
    else {
        return Ok(None);
    };
    let facts = registration_facts(draft);
    match criteria::check_sample(sample.as_bytes(), &facts, state.dns.as_ref()).await {
        Ok(report) => Ok(Some(report)),
        Err(error) => Err(PayloadError::User(vec![UserError::new(
            [PathSegment::Field("sampleEmail")],
            error.code(),
            error.to_string(),
        )])),
    }
}

/// Saves one dashboard section of a provider's draft, made against `expected_version`.
///
/// Optimistic: the draft is read, changed and checked without holding a lock (the criteria
/// check may look up DKIM keys in DNS), then written only if the version is still the one the
/// client saw; otherwise `CONFLICT` and nothing changes. An edit that changes no value is not
/// recorded and does not bump the version.
#[instrument(skip_all, fields(provider.id = %provider_id, section = edit.section_name()))]
pub async fn update_draft(
    state: &AppState,
    viewer: &Principal,
    provider_id: Uuid,
    expected_version: i32,
    edit: SectionEdit,
) -> Result<provider::Model, PayloadError> {
    let current = owned_provider(state.db.conn(), viewer, provider_id).await?;
    if current.version != expected_version {
        return Err(stale(current.version).into());
    }
    let mut draft = ProviderDraft::from_json(&current.draft)?;
    let recheck = edit.affects_criteria();
    let changed = draft.apply(edit);
    if changed.is_empty() {
        return Ok(current);
    }
    let report = if recheck {
        criteria_report(state, &draft).await?
    } else {
        CriteriaReport::from_stored(current.draft_report.as_ref())
    };

    let txn = state.db.begin_write().await?;
    let written = provider::Entity::update_many()
        .col_expr(provider::Column::Draft, Expr::value(draft.to_json()))
        .col_expr(
            provider::Column::DraftReport,
            Expr::value(report.as_ref().map(report_json)),
        )
        .col_expr(provider::Column::Version, Expr::value(expected_version + 1))
        .col_expr(provider::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(provider::Column::Id.eq(provider_id))
        .filter(provider::Column::Version.eq(expected_version))
        .exec(&txn)
        .await?;
    if written.rows_affected == 0 {
        return Err(ApiError::Conflict(
            "the draft changed since you loaded it; reload and try again".into(),
        )
        .into());
    }
    let mut recorded = vec![
        events::record(
            &txn,
            NewEvent::new(provider_id, Some(viewer.user_id), EventKind::SectionUpdated)
                .fields(changed),
        )
        .await?,
    ];
    if recheck && let Some(report) = &report {
        let checked = events::record(
            &txn,
            NewEvent::new(
                provider_id,
                Some(viewer.user_id),
                EventKind::CriteriaChecked,
            )
            .reason(format!(
                "sample e-mail checked: {}",
                verdict_word(report.overall)
            )),
        )
        .await?;
        recorded.push(checked);
    }
    let updated = provider::Entity::find_by_id(provider_id)
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    txn.commit().await?;
    state.bus.publish(recorded);
    Ok(updated)
}

fn stale(current: i32) -> ApiError {
    ApiError::Conflict(format!(
        "the draft is at version {current}; reload it and apply your change again"
    ))
}

fn report_json(report: &CriteriaReport) -> serde_json::Value {
    serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "all required criteria pass",
        Verdict::Warn => "passes with warnings",
        Verdict::Fail => "some criteria fail",
        Verdict::Manual => "needs a reviewer's attestation",
    }
}

/// Freezes the draft into a new numbered submission for its scope.
///
/// Refused while blockers remain or another submission of the provider is open. A submission
/// answering a request for changes keeps the original place in the queue and goes back to the
/// reviewer who asked, while that reviewer is still active. `MY_MAILBOX` submissions are approved
/// at once when the auto-approval policy is on and no automated check fails.
#[instrument(skip_all, fields(provider.id = %provider_id))]
pub async fn submit_for_review(
    state: &AppState,
    viewer: &Principal,
    provider_id: Uuid,
    expected_version: i32,
) -> Result<submission::Model, PayloadError> {
    let txn = state.db.begin_write().await?;
    let provider = owned_provider(&txn, viewer, provider_id).await?;
    if provider.version != expected_version {
        return Err(stale(provider.version).into());
    }
    let draft = ProviderDraft::from_json(&provider.draft)?;
    let report: Option<CriteriaReport> =
        CriteriaReport::from_stored(provider.draft_report.as_ref());
    let blockers = submit_blockers(&draft, report.as_ref());
    if !blockers.is_empty() {
        return Err(PayloadError::User(blockers));
    }
    let Some(scope) = draft.scope else {
        return Err(PayloadError::field(
            "scope",
            "SECTION_REQUIRED",
            "choose a scope",
        ));
    };

    let now = Utc::now();
    let mut recorded = Vec::new();
    let open = submission::Entity::find()
        .filter(submission::Column::ProviderId.eq(provider_id))
        .filter(submission::Column::Status.is_in(SubmissionStatus::OPEN.map(|s| s.as_str())))
        .one(&txn)
        .await?;
    let (queue_entered_at, resubmission_of, preferred_reviewer) = match open {
        Some(previous) if previous.status == SubmissionStatus::ChangesRequested.as_str() => {
            close_answered_request(&txn, viewer, &previous, &mut recorded).await?;
            let reviewer = match previous.decided_by {
                Some(id) => still_active_reviewer(&txn, id).await?,
                None => None,
            };
            (previous.queue_entered_at, Some(previous.id), reviewer)
        }
        Some(_) => {
            return Err(PayloadError::field(
                "providerId",
                "OPEN_SUBMISSION_EXISTS",
                "this provider already has a submission in review; withdraw it or wait for the decision",
            ));
        }
        None => (now, None, None),
    };

    let last_number: Option<i32> = submission::Entity::find()
        .select_only()
        .column_as(submission::Column::Number.max(), "max")
        .filter(submission::Column::ProviderId.eq(provider_id))
        .into_tuple::<Option<i32>>()
        .one(&txn)
        .await?
        .flatten();
    let sender_domains = sender_domains(&draft);
    // A resubmission goes straight back to the reviewer who asked for the changes, under a
    // fresh claim; if they let it lapse it returns to the queue like any claim.
    let preferred_reviewer = preferred_reviewer.filter(|_| scope != Scope::MyMailbox);
    let lease =
        chrono::Duration::from_std(state.settings.claim_lease).map_err(ApiError::internal)?;
    let initial_status = if preferred_reviewer.is_some() {
        SubmissionStatus::InReview
    } else {
        SubmissionStatus::Submitted
    };
    let inserted = submission::ActiveModel {
        id: Set(Uuid::now_v7()),
        provider_id: Set(provider_id),
        number: Set(last_number.unwrap_or(0) + 1),
        scope: Set(scope.as_str().to_owned()),
        status: Set(initial_status.as_str().to_owned()),
        snapshot: Set(draft.to_json()),
        report: Set(report.as_ref().map(report_json)),
        provider_name: Set(provider.name.clone()),
        sender_domains: Set(sender_domains),
        submitted_by: Set(viewer.user_id),
        submitted_at: Set(now),
        queue_entered_at: Set(queue_entered_at),
        resubmission_of: Set(resubmission_of),
        preferred_reviewer_id: Set(preferred_reviewer),
        claimed_by: Set(preferred_reviewer),
        claim_expires_at: Set(preferred_reviewer.map(|_| now + lease)),
        decided_by: Set(None),
        decided_at: Set(None),
        decision_reason: Set(None),
        requested_fields: Set(None),
        attestations: Set(None),
        version: Set(1),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await;
    let mut created = match inserted {
        Ok(created) => created,
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            return Err(ApiError::Conflict(
                "another submission of this provider was just made".into(),
            )
            .into());
        }
        Err(error) => return Err(error.into()),
    };
    let submitted = events::record(
        &txn,
        NewEvent::new(provider_id, Some(viewer.user_id), EventKind::Submitted)
            .submission(created.id)
            .transition(None, SubmissionStatus::Submitted)
            .reason(format!("submitted for the {} scope", scope.as_str())),
    )
    .await?;
    recorded.push(submitted);
    if preferred_reviewer.is_some() {
        let returned = events::record(
            &txn,
            NewEvent::new(provider_id, None, EventKind::Claimed)
                .submission(created.id)
                .transition(
                    Some(SubmissionStatus::Submitted),
                    SubmissionStatus::InReview,
                )
                .reason("returned to the reviewer who asked for the changes"),
        )
        .await?;
        recorded.push(returned);
    }

    let checks_pass = report.as_ref().is_none_or(|r| r.overall != Verdict::Fail);
    if scope == Scope::MyMailbox && state.settings.auto_approve_my_mailbox && checks_pass {
        created = activate_submission(
            &txn,
            &provider,
            created,
            None,
            "approved automatically: My mailbox scope with no failing automated check",
            &mut recorded,
        )
        .await?;
    }
    txn.commit().await?;
    state.bus.publish(recorded);
    tracing::info!(submission.id = %created.id, submission.number = created.number, "submitted for review");
    Ok(created)
}

/// Makes `submission` the provider's active registration: it becomes APPROVED and the one in
/// force before it SUPERSEDED. `actor` is `None` for the system.
pub async fn activate_submission(
    txn: &impl ConnectionTrait,
    provider: &provider::Model,
    submission: submission::Model,
    actor: Option<Uuid>,
    reason: &str,
    recorded: &mut Vec<entity::event::Model>,
) -> ApiResult<submission::Model> {
    let now = Utc::now();
    let from = SubmissionStatus::parse(&submission.status);
    let approved = submission::Entity::update_many()
        .col_expr(
            submission::Column::Status,
            Expr::value(SubmissionStatus::Approved.as_str()),
        )
        .col_expr(submission::Column::DecidedBy, Expr::value(actor))
        .col_expr(submission::Column::DecidedAt, Expr::value(now))
        .col_expr(submission::Column::DecisionReason, Expr::value(reason))
        .col_expr(
            submission::Column::ClaimedBy,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            submission::Column::ClaimExpiresAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(
            submission::Column::Version,
            Expr::value(submission.version + 1),
        )
        .col_expr(submission::Column::UpdatedAt, Expr::value(now))
        .filter(submission::Column::Id.eq(submission.id))
        .filter(submission::Column::Version.eq(submission.version))
        .exec(txn)
        .await?;
    if approved.rows_affected == 0 {
        return Err(ApiError::Conflict(
            "the submission changed meanwhile; reload it".into(),
        ));
    }

    let superseded_id = provider
        .active_submission_id
        .filter(|id| *id != submission.id);
    if let Some(previous_id) = superseded_id {
        submission::Entity::update_many()
            .col_expr(
                submission::Column::Status,
                Expr::value(SubmissionStatus::Superseded.as_str()),
            )
            .col_expr(
                submission::Column::Version,
                Expr::col(submission::Column::Version).add(1),
            )
            .col_expr(submission::Column::UpdatedAt, Expr::value(now))
            .filter(submission::Column::Id.eq(previous_id))
            .filter(submission::Column::Status.eq(SubmissionStatus::Approved.as_str()))
            .exec(txn)
            .await?;
    }
    provider::Entity::update_many()
        .col_expr(
            provider::Column::ActiveSubmissionId,
            Expr::value(submission.id),
        )
        .col_expr(provider::Column::UpdatedAt, Expr::value(now))
        .filter(provider::Column::Id.eq(provider.id))
        .exec(txn)
        .await?;
    // Events last: recording one takes the event-log lock, which must not be held while
    // waiting for row locks (see events::record).
    let approved_event = events::record(
        txn,
        NewEvent::new(provider.id, actor, EventKind::Approved)
            .submission(submission.id)
            .transition(from, SubmissionStatus::Approved)
            .reason(reason),
    )
    .await?;
    recorded.push(approved_event);
    if let Some(previous_id) = superseded_id {
        let superseded = events::record(
            txn,
            NewEvent::new(provider.id, actor, EventKind::Superseded)
                .submission(previous_id)
                .transition(
                    Some(SubmissionStatus::Approved),
                    SubmissionStatus::Superseded,
                )
                .reason(format!(
                    "superseded by an approved newer submission #{}",
                    submission.number
                )),
        )
        .await?;
        recorded.push(superseded);
    }
    crate::notifications::enqueue(
        txn,
        decision_notification(
            provider,
            &submission,
            NotifiedDecision::Approved,
            Some(reason),
            &[],
        ),
    )
    .await?;
    submission::Entity::find_by_id(submission.id)
        .one(txn)
        .await?
        .ok_or(ApiError::NotFound)
}

/// The e-mail telling the contact address of a submission about a decision.
pub fn decision_notification(
    provider: &provider::Model,
    submission: &submission::Model,
    decision: NotifiedDecision,
    reason: Option<&str>,
    fields: &[String],
) -> Notification {
    let recipient = ProviderDraft::from_json(&submission.snapshot)
        .ok()
        .and_then(|draft| draft.contact_info)
        .map(|contact| contact.email.as_str().to_owned())
        .unwrap_or_default();
    let (subject, body) = decision_message(
        decision,
        &provider.name,
        submission.number,
        &submission.scope,
        reason,
        fields,
    );
    Notification {
        recipient,
        subject,
        body,
        kind: decision.kind(),
        provider_id: Some(provider.id),
        submission_id: Some(submission.id),
    }
}

/// A submission in CHANGES_REQUESTED is closed by the resubmission that answers it.
async fn close_answered_request(
    txn: &impl ConnectionTrait,
    viewer: &Principal,
    previous: &submission::Model,
    recorded: &mut Vec<entity::event::Model>,
) -> ApiResult<()> {
    let closed = submission::Entity::update_many()
        .col_expr(
            submission::Column::Status,
            Expr::value(SubmissionStatus::Resubmitted.as_str()),
        )
        .col_expr(
            submission::Column::Version,
            Expr::value(previous.version + 1),
        )
        .col_expr(submission::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(submission::Column::Id.eq(previous.id))
        .filter(submission::Column::Version.eq(previous.version))
        .exec(txn)
        .await?;
    if closed.rows_affected == 0 {
        return Err(ApiError::Conflict(
            "the previous submission changed meanwhile; reload it".into(),
        ));
    }
    let resubmitted = events::record(
        txn,
        NewEvent::new(
            previous.provider_id,
            Some(viewer.user_id),
            EventKind::Resubmitted,
        )
        .submission(previous.id)
        .transition(
            Some(SubmissionStatus::ChangesRequested),
            SubmissionStatus::Resubmitted,
        ),
    )
    .await?;
    recorded.push(resubmitted);
    Ok(())
}

async fn still_active_reviewer(conn: &impl ConnectionTrait, id: Uuid) -> ApiResult<Option<Uuid>> {
    let reviewer = user::Entity::find_by_id(id).one(conn).await?;
    Ok(reviewer
        .filter(|u| !u.disabled && Role::parse(&u.role).is_some_and(|r| r >= Role::Reviewer))
        .map(|u| u.id))
}

/// Sender domains and their registrable domains, space-separated, for the queue's search.
fn sender_domains(draft: &ProviderDraft) -> String {
    let mut domains: Vec<String> = Vec::new();
    for sender in draft
        .provider_details
        .iter()
        .flat_map(|d| d.sender_emails.iter())
    {
        domains.push(sender.domain().as_str().to_owned());
        if let Some(registrable) = sender.domain().registrable() {
            domains.push(registrable.as_str().to_owned());
        }
    }
    domains.sort();
    domains.dedup();
    domains.join(" ")
}

/// The owner withdraws a submission before a decision.
#[instrument(skip_all, fields(submission.id = %submission_id))]
pub async fn withdraw_submission(
    state: &AppState,
    viewer: &Principal,
    submission_id: Uuid,
) -> Result<submission::Model, PayloadError> {
    let txn = state.db.begin_write().await?;
    let (submission, provider) = visible_submission(&txn, viewer, submission_id).await?;
    if provider.owner_id != viewer.user_id {
        return Err(ApiError::Forbidden.into());
    }
    let status = SubmissionStatus::parse(&submission.status);
    if !status.is_some_and(SubmissionStatus::is_open) {
        return Err(PayloadError::field(
            "submissionId",
            "SUBMISSION_DECIDED",
            format!(
                "the submission is {} and can no longer be withdrawn",
                submission.status
            ),
        ));
    }
    let withdrawn = submission::Entity::update_many()
        .col_expr(
            submission::Column::Status,
            Expr::value(SubmissionStatus::Withdrawn.as_str()),
        )
        .col_expr(
            submission::Column::ClaimedBy,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            submission::Column::ClaimExpiresAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(
            submission::Column::Version,
            Expr::value(submission.version + 1),
        )
        .col_expr(submission::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(submission::Column::Id.eq(submission.id))
        .filter(submission::Column::Version.eq(submission.version))
        .exec(&txn)
        .await?;
    if withdrawn.rows_affected == 0 {
        return Err(
            ApiError::Conflict("the submission changed meanwhile; reload it".into()).into(),
        );
    }
    let withdrawn_event = events::record(
        &txn,
        NewEvent::new(provider.id, Some(viewer.user_id), EventKind::Withdrawn)
            .submission(submission.id)
            .transition(status, SubmissionStatus::Withdrawn),
    )
    .await?;
    let updated = submission::Entity::find_by_id(submission.id)
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    txn.commit().await?;
    state.bus.publish(vec![withdrawn_event]);
    Ok(updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SenderAddress;
    use crate::registration::draft::ProviderDetails;

    #[test]
    fn sender_domains_list_full_and_registrable_domains_once() {
        let draft = ProviderDraft {
            provider_details: Some(ProviderDetails {
                sender_emails: vec![
                    SenderAddress::parse("alerts@mail.contoso.com").expect("valid"),
                    SenderAddress::parse("expense@contoso.com").expect("valid"),
                ],
                target_urls: vec![],
                public_key: None,
            }),
            ..ProviderDraft::default()
        };
        assert_eq!(sender_domains(&draft), "contoso.com mail.contoso.com");
    }
}
