//! Review services. Every change is a conditional update on the submission's status, claim and
//! version, so of two reviewers racing for the same submission exactly one wins and the other
//! gets `CONFLICT`, on SQLite and PostgreSQL alike.

use chrono::{DateTime, Utc};
use entity::{event, provider, submission};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::{Deserialize, Serialize};
use tracing::instrument;
use uuid::Uuid;

use crate::{
    auth::{Principal, Role},
    criteria::{CriteriaReport, Criterion, Verdict},
    error::{ApiError, ApiResult, PathSegment, PayloadError, UserError},
    events::{self, EventKind, NewEvent},
    notifications::{self, Decision as NotifiedDecision},
    registration::{
        FormPath, Scope, SubmissionStatus, activate_submission, decision_notification,
        is_form_path, parse_form_path, visible_submission,
    },
    state::AppState,
};

/// Longest reason or comment, in characters.
const MAX_REASON_CHARS: usize = 4000;

/// A reviewer's decision on a claimed submission.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Approve; `GLOBAL` submissions need an attestation for every manual criterion.
    Approve {
        attestations: Vec<Attestation>,
    },
    Reject {
        reason: String,
    },
    RequestChanges {
        reason: String,
        fields: Vec<String>,
    },
}

/// A reviewer's statement about a criterion that cannot be checked from one e-mail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attestation {
    pub criterion: Criterion,
    /// What the reviewer looked at, e.g. "Postmaster data: ~800/day for 10 weeks".
    pub note: String,
}

/// The criteria a reviewer attests by hand before approving a Global submission.
pub const MANUAL_CRITERIA: [Criterion; 2] = [
    Criterion::SendingVolumeHistory,
    Criterion::SpamComplaintRate,
];

/// Most field paths one change request may name.
pub const MAX_REQUESTED_FIELDS: usize = 50;

/// Checks the fields of a change request: 1 to [`MAX_REQUESTED_FIELDS`] paths of the
/// registration form ([`crate::registration::is_form_path`]: `contactInfo.email`,
/// `providerDetails.targetUrls[0]`, a whole section such as `publisherInfo`), each named once.
/// Surrounding whitespace is trimmed; every unknown or repeated path is a user error at its
/// index, so nothing is recorded, e-mailed or shown to the submitter that points nowhere.
fn requested_fields(fields: &[String]) -> Result<Vec<String>, PayloadError> {
    if fields.is_empty() || fields.len() > MAX_REQUESTED_FIELDS {
        return Err(PayloadError::field(
            "fields",
            "FIELDS_REQUIRED",
            format!("name 1 to {MAX_REQUESTED_FIELDS} fields to change"),
        ));
    }
    let mut errors = Vec::new();
    let mut accepted: Vec<String> = Vec::with_capacity(fields.len());
    for (index, raw) in fields.iter().enumerate() {
        let path = raw.trim();
        let at = [PathSegment::Field("fields"), PathSegment::Index(index)];
        if !is_form_path(path) {
            errors.push(UserError::new(
                at,
                "UNKNOWN_FIELD",
                format!(
                    "{} is not a field of the registration form; name a section, a field or a \
                     list entry, e.g. contactInfo.email, providerDetails.targetUrls[0] or \
                     publisherInfo",
                    crate::domain::quote(path)
                ),
            ));
        } else if accepted.iter().any(|earlier| earlier == path) {
            errors.push(UserError::new(
                at,
                "DUPLICATE",
                format!("{path} is named twice; name each field once"),
            ));
        } else {
            accepted.push(path.to_owned());
        }
    }
    if errors.is_empty() {
        Ok(accepted)
    } else {
        Err(PayloadError::User(errors))
    }
}

/// Refuses list entries the submitted sections do not have, such as
/// `providerDetails.senderEmails[3]` of a submission with two senders: the submitter would be
/// asked to fix something that is not there. Paths were checked against the form already.
fn missing_entries(snapshot: &serde_json::Value, fields: &[String]) -> Result<(), PayloadError> {
    let mut errors = Vec::new();
    for (index, path) in fields.iter().enumerate() {
        let Some(FormPath {
            section,
            field: Some(list),
            entry: Some(position),
        }) = parse_form_path(path)
        else {
            continue;
        };
        let entries = snapshot
            .get(section)
            .and_then(|section| section.get(list))
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        if position >= entries {
            errors.push(UserError::new(
                [PathSegment::Field("fields"), PathSegment::Index(index)],
                "NO_SUCH_ENTRY",
                format!(
                    "{path} does not exist: the submission has {entries} {section}.{list} \
                     entries (numbered from 0)"
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PayloadError::User(errors))
    }
}

fn reason_text(field: &'static str, reason: &str) -> Result<String, PayloadError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(PayloadError::field(
            field,
            "REQUIRED",
            "give a reason the submitter can act on",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS
        || reason
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(PayloadError::field(
            field,
            "INVALID_TEXT",
            format!("use at most {MAX_REASON_CHARS} characters, without control characters"),
        ));
    }
    Ok(reason.to_owned())
}

/// Loads a submission for a reviewer, refusing one of the reviewer's own providers.
async fn reviewable(
    conn: &impl ConnectionTrait,
    reviewer: &Principal,
    submission_id: Uuid,
) -> Result<(submission::Model, provider::Model), PayloadError> {
    let (submission, provider) = visible_submission(conn, reviewer, submission_id).await?;
    if provider.owner_id == reviewer.user_id {
        return Err(PayloadError::field(
            "submissionId",
            "SELF_REVIEW",
            "you cannot review a submission of a provider you own",
        ));
    }
    Ok((submission, provider))
}

fn lease(state: &AppState) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(state.settings.claim_lease.as_secs()).unwrap_or(1800))
}

fn conflict(message: &str) -> PayloadError {
    ApiError::Conflict(message.to_owned()).into()
}

/// Gives one reviewer an exclusive, expiring lease on a submission. Claiming one's own claim
/// again renews it; a claim whose lease expired can be taken by anybody.
#[instrument(skip_all, fields(submission.id = %submission_id, reviewer.id = %reviewer.user_id))]
pub async fn claim_submission(
    state: &AppState,
    reviewer: &Principal,
    submission_id: Uuid,
) -> Result<submission::Model, PayloadError> {
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let (current, provider) = reviewable(&txn, reviewer, submission_id).await?;
    let status = SubmissionStatus::parse(&current.status);
    let claimable = match status {
        Some(SubmissionStatus::Submitted) => true,
        Some(SubmissionStatus::InReview) => {
            current.claimed_by == Some(reviewer.user_id)
                || current.claim_expires_at.is_none_or(|at| at <= now)
        }
        _ => false,
    };
    if !claimable {
        return Err(if status == Some(SubmissionStatus::InReview) {
            conflict("another reviewer holds the claim on this submission")
        } else {
            PayloadError::field(
                "submissionId",
                "NOT_IN_QUEUE",
                format!("the submission is {} and cannot be claimed", current.status),
            )
        });
    }

    let expires_at = now + lease(state);
    let claimed = submission::Entity::update_many()
        .col_expr(
            submission::Column::Status,
            Expr::value(SubmissionStatus::InReview.as_str()),
        )
        .col_expr(submission::Column::ClaimedBy, Expr::value(reviewer.user_id))
        .col_expr(submission::Column::ClaimExpiresAt, Expr::value(expires_at))
        .col_expr(
            submission::Column::Version,
            Expr::value(current.version + 1),
        )
        .col_expr(submission::Column::UpdatedAt, Expr::value(now))
        .filter(submission::Column::Id.eq(current.id))
        .filter(submission::Column::Version.eq(current.version))
        .exec(&txn)
        .await?;
    if claimed.rows_affected == 0 {
        return Err(conflict("another reviewer claimed this submission first"));
    }
    let renewed =
        current.claimed_by == Some(reviewer.user_id) && status == Some(SubmissionStatus::InReview);
    let mut recorded = Vec::new();
    if !renewed {
        recorded.push(
            events::record(
                &txn,
                NewEvent::new(provider.id, Some(reviewer.user_id), EventKind::Claimed)
                    .submission(current.id)
                    .transition(status, SubmissionStatus::InReview),
            )
            .await?,
        );
    }
    let updated = reload(&txn, current.id).await?;
    txn.commit().await?;
    state.bus.publish(recorded);
    Ok(updated)
}

async fn reload(conn: &impl ConnectionTrait, id: Uuid) -> ApiResult<submission::Model> {
    submission::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Ends a claim early: the holder (or an admin) puts the submission back in the queue.
#[instrument(skip_all, fields(submission.id = %submission_id))]
pub async fn release_submission(
    state: &AppState,
    reviewer: &Principal,
    submission_id: Uuid,
) -> Result<submission::Model, PayloadError> {
    let txn = state.db.begin_write().await?;
    let (current, provider) = visible_submission(&txn, reviewer, submission_id).await?;
    let holder = current.claimed_by == Some(reviewer.user_id);
    if current.status != SubmissionStatus::InReview.as_str()
        || !(holder || reviewer.role == Role::Admin)
    {
        return Err(PayloadError::field(
            "submissionId",
            "NOT_CLAIM_HOLDER",
            "only the reviewer holding the claim can release it",
        ));
    }
    let released = put_back_in_queue(&txn, &current).await?;
    if !released {
        return Err(conflict("the submission changed meanwhile; reload it"));
    }
    let recorded = events::record(
        &txn,
        NewEvent::new(provider.id, Some(reviewer.user_id), EventKind::Released)
            .submission(current.id)
            .transition(
                Some(SubmissionStatus::InReview),
                SubmissionStatus::Submitted,
            ),
    )
    .await?;
    let updated = reload(&txn, current.id).await?;
    txn.commit().await?;
    state.bus.publish(vec![recorded]);
    Ok(updated)
}

async fn put_back_in_queue(
    conn: &impl ConnectionTrait,
    current: &submission::Model,
) -> ApiResult<bool> {
    let result = submission::Entity::update_many()
        .col_expr(
            submission::Column::Status,
            Expr::value(SubmissionStatus::Submitted.as_str()),
        )
        .col_expr(
            submission::Column::ClaimedBy,
            Expr::value(Option::<Uuid>::None),
        )
        .col_expr(
            submission::Column::ClaimExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            submission::Column::Version,
            Expr::value(current.version + 1),
        )
        .col_expr(submission::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(submission::Column::Id.eq(current.id))
        .filter(submission::Column::Version.eq(current.version))
        .filter(submission::Column::Status.eq(SubmissionStatus::InReview.as_str()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Returns submissions whose claim lease ran out to the queue, recording who lost it. Runs in
/// the background; safe to run on several instances at once.
pub async fn release_expired_claims(state: &AppState) -> ApiResult<usize> {
    let expired = submission::Entity::find()
        .filter(submission::Column::Status.eq(SubmissionStatus::InReview.as_str()))
        .filter(submission::Column::ClaimExpiresAt.lt(Utc::now()))
        .all(state.db.conn())
        .await?;
    let mut released = 0;
    for current in expired {
        let txn = state.db.begin_write().await?;
        if !put_back_in_queue(&txn, &current).await? {
            continue;
        }
        let recorded = events::record(
            &txn,
            NewEvent::new(current.provider_id, None, EventKind::Released)
                .submission(current.id)
                .transition(
                    Some(SubmissionStatus::InReview),
                    SubmissionStatus::Submitted,
                )
                .reason("the reviewer's claim expired"),
        )
        .await?;
        txn.commit().await?;
        state.bus.publish(vec![recorded]);
        released += 1;
    }
    Ok(released)
}

/// Most attestations one approval may carry: every manual criterion once, with room for a
/// client that repeats one; a longer list is refused before any entry is looked at.
pub const MAX_ATTESTATIONS: usize = 10;

/// Checks that a Global approval attests every manual criterion, with a note.
fn check_attestations(
    scope: Option<Scope>,
    attestations: &[Attestation],
) -> Result<(), PayloadError> {
    if attestations.len() > MAX_ATTESTATIONS {
        return Err(PayloadError::field(
            "attestations",
            "TOO_MANY",
            format!(
                "give at most {MAX_ATTESTATIONS} attestations, one per criterion checked by hand \
                 ({} were given)",
                attestations.len()
            ),
        ));
    }
    let mut errors = Vec::new();
    for (index, attestation) in attestations.iter().enumerate() {
        let repeated = attestations[..index]
            .iter()
            .any(|a| a.criterion == attestation.criterion);
        let problem = if !MANUAL_CRITERIA.contains(&attestation.criterion) {
            Some((
                "NOT_A_MANUAL_CRITERION",
                "only criteria checked by hand are attested",
            ))
        } else if repeated {
            Some(("DUPLICATE", "attest each criterion once"))
        } else if attestation.note.chars().count() > MAX_REASON_CHARS {
            Some(("TOO_LONG", "keep the note under 4000 characters"))
        } else {
            None
        };
        if let Some((code, message)) = problem {
            errors.push(UserError::new(
                [
                    PathSegment::Field("attestations"),
                    PathSegment::Index(index),
                ],
                code,
                message,
            ));
        }
    }
    let required: &[Criterion] = if scope == Some(Scope::Global) {
        &MANUAL_CRITERIA
    } else {
        &[]
    };
    for &criterion in required {
        let attested = attestations
            .iter()
            .any(|a| a.criterion == criterion && !a.note.trim().is_empty());
        if !attested {
            errors.push(UserError::new(
                [PathSegment::Field("attestations")],
                "ATTESTATION_REQUIRED",
                format!(
                    "attest {} with a note before approving a Global submission",
                    criterion.as_str()
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PayloadError::User(errors))
    }
}

/// Decides a submission the reviewer holds the claim on: approve (superseding the registration
/// in force), reject, or request changes. Notifies the contact address through the outbox in the
/// same transaction.
#[instrument(skip_all, fields(submission.id = %submission_id, reviewer.id = %reviewer.user_id))]
pub async fn decide(
    state: &AppState,
    reviewer: &Principal,
    submission_id: Uuid,
    decision: Decision,
) -> Result<submission::Model, PayloadError> {
    let decision = match decision {
        Decision::Reject { reason } => Decision::Reject {
            reason: reason_text("reason", &reason)?,
        },
        Decision::RequestChanges { reason, fields } => {
            let reason = reason_text("reason", &reason)?;
            let fields = requested_fields(&fields)?;
            Decision::RequestChanges { reason, fields }
        }
        approve => approve,
    };

    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let (current, provider) = reviewable(&txn, reviewer, submission_id).await?;
    let queued = matches!(
        SubmissionStatus::parse(&current.status),
        Some(SubmissionStatus::Submitted | SubmissionStatus::InReview)
    );
    if !queued {
        return Err(PayloadError::field(
            "submissionId",
            "NOT_IN_QUEUE",
            format!(
                "the submission is {} and cannot be decided; revokeApproval ends an approval",
                current.status
            ),
        ));
    }
    let holds_claim = current.status == SubmissionStatus::InReview.as_str()
        && current.claimed_by == Some(reviewer.user_id)
        && current.claim_expires_at.is_some_and(|at| at > now);
    if !holds_claim {
        return Err(PayloadError::field(
            "submissionId",
            "NOT_CLAIM_HOLDER",
            "claim the submission before deciding it (or your claim expired)",
        ));
    }

    if let Decision::RequestChanges { fields, .. } = &decision {
        missing_entries(&current.snapshot, fields)?;
    }

    let mut recorded: Vec<event::Model> = Vec::new();
    let decided = match &decision {
        Decision::Approve { attestations } => {
            check_attestations(Scope::parse(&current.scope), attestations)?;
            if decode_report(&current).is_some_and(|r| r.overall == Verdict::Fail) {
                return Err(PayloadError::field(
                    "submissionId",
                    "CRITERIA_FAILED",
                    "the frozen criteria report has failing checks; request changes instead",
                ));
            }
            let attested = serde_json::to_value(attestations).unwrap_or_default();
            submission::Entity::update_many()
                .col_expr(submission::Column::Attestations, Expr::value(attested))
                .filter(submission::Column::Id.eq(current.id))
                .exec(&txn)
                .await?;
            let reason = if attestations.is_empty() {
                "approved".to_owned()
            } else {
                let notes: Vec<String> = attestations
                    .iter()
                    .map(|a| format!("{}: {}", a.criterion.as_str(), a.note.trim()))
                    .collect();
                format!("approved; attested {}", notes.join("; "))
            };
            activate_submission(
                &txn,
                &provider,
                current.clone(),
                Some(reviewer.user_id),
                &reason,
                &mut recorded,
            )
            .await?
        }
        Decision::Reject { reason } | Decision::RequestChanges { reason, .. } => {
            let (to, kind, fields) = match &decision {
                Decision::RequestChanges { fields, .. } => (
                    SubmissionStatus::ChangesRequested,
                    EventKind::ChangesRequested,
                    Some(fields.clone()),
                ),
                _ => (SubmissionStatus::Rejected, EventKind::Rejected, None),
            };
            let written = submission::Entity::update_many()
                .col_expr(submission::Column::Status, Expr::value(to.as_str()))
                .col_expr(submission::Column::DecidedBy, Expr::value(reviewer.user_id))
                .col_expr(submission::Column::DecidedAt, Expr::value(now))
                .col_expr(
                    submission::Column::DecisionReason,
                    Expr::value(reason.clone()),
                )
                .col_expr(
                    submission::Column::RequestedFields,
                    Expr::value(fields.as_ref().map(|f| serde_json::json!(f))),
                )
                .col_expr(
                    submission::Column::ClaimedBy,
                    Expr::value(Option::<Uuid>::None),
                )
                .col_expr(
                    submission::Column::ClaimExpiresAt,
                    Expr::value(Option::<DateTime<Utc>>::None),
                )
                .col_expr(
                    submission::Column::Version,
                    Expr::value(current.version + 1),
                )
                .col_expr(submission::Column::UpdatedAt, Expr::value(now))
                .filter(submission::Column::Id.eq(current.id))
                .filter(submission::Column::Version.eq(current.version))
                .exec(&txn)
                .await?;
            if written.rows_affected == 0 {
                return Err(conflict("the submission changed meanwhile; reload it"));
            }
            recorded.push(
                events::record(
                    &txn,
                    NewEvent::new(provider.id, Some(reviewer.user_id), kind)
                        .submission(current.id)
                        .transition(Some(SubmissionStatus::InReview), to)
                        .reason(reason.clone())
                        .fields(fields.unwrap_or_default()),
                )
                .await?,
            );
            let notified = match to {
                SubmissionStatus::ChangesRequested => NotifiedDecision::ChangesRequested,
                _ => NotifiedDecision::Rejected,
            };
            let requested = match &decision {
                Decision::RequestChanges { fields, .. } => fields.clone(),
                _ => Vec::new(),
            };
            notifications::enqueue(
                &txn,
                decision_notification(&provider, &current, notified, Some(reason), &requested),
            )
            .await?;
            reload(&txn, current.id).await?
        }
    };
    txn.commit().await?;
    state.bus.publish(recorded);
    tracing::info!(status = %decided.status, "submission decided");
    Ok(decided)
}

fn decode_report(submission: &submission::Model) -> Option<CriteriaReport> {
    CriteriaReport::from_stored(submission.report.as_ref())
}

/// Takes back the approval of the registration in force; the provider has none afterwards.
#[instrument(skip_all, fields(submission.id = %submission_id))]
pub async fn revoke_approval(
    state: &AppState,
    reviewer: &Principal,
    submission_id: Uuid,
    reason: &str,
) -> Result<submission::Model, PayloadError> {
    let reason = reason_text("reason", reason)?;
    let txn = state.db.begin_write().await?;
    let (current, provider) = reviewable(&txn, reviewer, submission_id).await?;
    if current.status != SubmissionStatus::Approved.as_str() {
        return Err(PayloadError::field(
            "submissionId",
            "NOT_APPROVED",
            "only an approved submission can be revoked",
        ));
    }
    let now = Utc::now();
    let written = submission::Entity::update_many()
        .col_expr(
            submission::Column::Status,
            Expr::value(SubmissionStatus::Revoked.as_str()),
        )
        .col_expr(submission::Column::DecidedBy, Expr::value(reviewer.user_id))
        .col_expr(submission::Column::DecidedAt, Expr::value(now))
        .col_expr(
            submission::Column::DecisionReason,
            Expr::value(reason.clone()),
        )
        .col_expr(
            submission::Column::Version,
            Expr::value(current.version + 1),
        )
        .col_expr(submission::Column::UpdatedAt, Expr::value(now))
        .filter(submission::Column::Id.eq(current.id))
        .filter(submission::Column::Version.eq(current.version))
        .exec(&txn)
        .await?;
    if written.rows_affected == 0 {
        return Err(conflict("the submission changed meanwhile; reload it"));
    }
    provider::Entity::update_many()
        .col_expr(
            provider::Column::ActiveSubmissionId,
            Expr::value(Option::<Uuid>::None),
        )
        .filter(provider::Column::Id.eq(provider.id))
        .filter(provider::Column::ActiveSubmissionId.eq(current.id))
        .exec(&txn)
        .await?;
    let recorded = events::record(
        &txn,
        NewEvent::new(provider.id, Some(reviewer.user_id), EventKind::Revoked)
            .submission(current.id)
            .transition(Some(SubmissionStatus::Approved), SubmissionStatus::Revoked)
            .reason(reason.clone()),
    )
    .await?;
    notifications::enqueue(
        &txn,
        decision_notification(
            &provider,
            &current,
            NotifiedDecision::Revoked,
            Some(&reason),
            &[],
        ),
    )
    .await?;
    let updated = reload(&txn, current.id).await?;
    txn.commit().await?;
    state.bus.publish(vec![recorded]);
    Ok(updated)
}

/// Adds a message to a submission's timeline. Reviewers may make it internal (reviewers only);
/// owners always write to the reviewers.
#[instrument(skip_all, fields(submission.id = %submission_id))]
pub async fn add_comment(
    state: &AppState,
    author: &Principal,
    submission_id: Uuid,
    body: &str,
    internal: bool,
) -> Result<event::Model, PayloadError> {
    let body = reason_text("body", body)?;
    let txn = state.db.begin_write().await?;
    let (current, provider) = visible_submission(&txn, author, submission_id).await?;
    if internal && (author.role < Role::Reviewer || provider.owner_id == author.user_id) {
        return Err(PayloadError::field(
            "internal",
            "FORBIDDEN",
            "only reviewers can write internal notes",
        ));
    }
    let mut comment = NewEvent::new(provider.id, Some(author.user_id), EventKind::Comment)
        .submission(current.id)
        .reason(body);
    comment.internal = internal;
    let recorded = events::record(&txn, comment).await?;
    txn.commit().await?;
    state.bus.publish(vec![recorded.clone()]);
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn user_errors(result: Result<Vec<String>, PayloadError>) -> Vec<(Vec<String>, String)> {
        match result {
            Err(PayloadError::User(errors)) => errors
                .into_iter()
                .map(|error| (error.field, error.code))
                .collect(),
            other => panic!("expected user errors, got {other:?}"),
        }
    }

    #[test]
    fn requested_fields_are_form_paths_named_once() {
        assert_eq!(
            requested_fields(&strings(&[
                " contactInfo.email ",
                "providerDetails.targetUrls[0]",
                "publisherInfo"
            ]))
            .ok(),
            Some(strings(&[
                "contactInfo.email",
                "providerDetails.targetUrls[0]",
                "publisherInfo"
            ]))
        );
        let errors = user_errors(requested_fields(&strings(&[
            "contactInfo.email",
            "contact.email",
            "targets[0]",
            "contactInfo.email",
            "",
            "providerDetails.senderEmails[20]",
        ])));
        let at = |i: usize| vec!["fields".to_owned(), i.to_string()];
        assert_eq!(
            errors,
            vec![
                (at(1), "UNKNOWN_FIELD".to_owned()),
                (at(2), "UNKNOWN_FIELD".to_owned()),
                (at(3), "DUPLICATE".to_owned()),
                (at(4), "UNKNOWN_FIELD".to_owned()),
                (at(5), "UNKNOWN_FIELD".to_owned()),
            ]
        );
    }

    #[test]
    fn attestations_are_bounded_before_they_are_compared() {
        let many: Vec<Attestation> = (0..100_000)
            .map(|_| Attestation {
                criterion: Criterion::Authenticated,
                note: "x".to_owned(),
            })
            .collect();
        let Err(PayloadError::User(errors)) = check_attestations(Some(Scope::Global), &many) else {
            panic!("a flood of attestations must be refused");
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, vec!["attestations".to_owned()]);
        assert_eq!(errors[0].code, "TOO_MANY");
        let Err(PayloadError::User(errors)) =
            check_attestations(Some(Scope::Global), &many[..MAX_ATTESTATIONS])
        else {
            panic!("not manual criteria");
        };
        assert!(errors.iter().any(|e| e.code == "NOT_A_MANUAL_CRITERION"));
    }

    #[test]
    fn requested_fields_are_bounded() {
        let none = user_errors(requested_fields(&[]));
        assert_eq!(
            none,
            vec![(vec!["fields".to_owned()], "FIELDS_REQUIRED".to_owned())]
        );
        let many: Vec<String> = (0..=MAX_REQUESTED_FIELDS)
            .map(|_| "scope".to_owned())
            .collect();
        let too_many = user_errors(requested_fields(&many));
        assert_eq!(
            too_many,
            vec![(vec!["fields".to_owned()], "FIELDS_REQUIRED".to_owned())]
        );
    }
}
