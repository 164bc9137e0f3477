//! Providers and submissions in the schema: the dashboard sections, submitting, the timeline.

use std::collections::HashMap;

use async_graphql::{
    Context, ID, InputObject, Object, SimpleObject,
    connection::{Connection, Edge},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use entity::{event, provider, submission, user};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::{loaders, node::GlobalId, payload, sections::StoredDraft};
use crate::{
    auth::{Principal, Role, RoleGuard, Viewer},
    criteria::{CriteriaReport, Criterion},
    domain::{
        BoundedText, EmailAddress, FieldError, HttpsUrl, ListErrors, PhoneNumber, RsaPublicKey,
        check_range, parse_sender_list, parse_target_url_list,
    },
    error::{ApiError, ApiResult, PathSegment, UserError},
    events::EventKind,
    registration::{
        self, MailType, ProviderDraft, Scope, SectionEdit, SubmissionStatus,
        diff::{FieldChange as DraftChange, changes},
        draft::{
            ContactInfo, ProviderDetails, PublisherInfo, ScenarioDetails, VerificationDetails,
        },
        submit_blockers,
    },
    review::Attestation,
    state::AppState,
};

/// Largest page of any connection.
pub const MAX_PAGE_SIZE: i32 = 100;

/// A page size argument checked against 1..=100.
pub fn page_size(first: Option<i32>, default: i32) -> ApiResult<u64> {
    let first = first.unwrap_or(default);
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(ApiError::BadUserInput(format!(
            "`first` must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    Ok(u64::try_from(first).unwrap_or(1))
}

pub(crate) fn principal<'a>(ctx: &'a Context<'_>) -> ApiResult<&'a Principal> {
    Viewer::of(ctx).require(Role::Submitter)
}

fn decode_report(value: Option<&serde_json::Value>) -> Option<CriteriaReport> {
    CriteriaReport::from_stored(value)
}

fn parse_draft(value: &serde_json::Value) -> ApiResult<ProviderDraft> {
    ProviderDraft::from_json(value).map_err(ApiError::from)
}

/// The count shown beside every connection.
#[derive(SimpleObject)]
pub struct TotalCount {
    /// How many items the connection has in all pages.
    pub total_count: u64,
}

/// A service that sends actionable messages, registered by its owner.
pub struct Provider(pub provider::Model);

#[Object]
impl Provider {
    pub async fn id(&self) -> ID {
        GlobalId::encode("Provider", self.0.id)
    }
    /// The friendly name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The identifier a card from this provider carries (its `originator`).
    async fn originator_id(&self) -> String {
        self.0.originator_id.to_string()
    }
    /// Pass as `expectedVersion` with the next edit.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The dashboard sections being edited.
    async fn draft(&self) -> ApiResult<StoredDraft<'_>> {
        StoredDraft::of(&self.0.draft)
    }
    /// The draft's sample e-mail checked against the registration criteria.
    async fn criteria_report(&self) -> Option<CriteriaReport> {
        decode_report(self.0.draft_report.as_ref())
    }
    /// Everything that stops a submit for the chosen scope, with the path of the field to fix.
    async fn submit_blockers(&self) -> ApiResult<Vec<UserError>> {
        let draft = parse_draft(&self.0.draft)?;
        Ok(submit_blockers(
            &draft,
            decode_report(self.0.draft_report.as_ref()).as_ref(),
        ))
    }
    /// The newest `first` submissions, newest first (the timeline has the whole history). Each
    /// costs its selection toward the query complexity, like the items of a connection.
    #[graphql(
        complexity = "usize::try_from(first.unwrap_or(20)).unwrap_or(1).max(1) * child_complexity"
    )]
    async fn submissions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "1 to 100; default 20.")] first: Option<i32>,
    ) -> ApiResult<Vec<Submission>> {
        let limit = page_size(first, 20)?;
        let state = ctx.data_unchecked::<AppState>();
        let rows = submission::Entity::find()
            .filter(submission::Column::ProviderId.eq(self.0.id))
            .order_by_desc(submission::Column::Number)
            .limit(limit)
            .all(state.db.conn())
            .await?;
        Ok(rows.into_iter().map(Submission).collect())
    }
    /// The approved submission in force: the provider's active registration.
    async fn active_submission(&self, ctx: &Context<'_>) -> ApiResult<Option<Submission>> {
        let Some(id) = self.0.active_submission_id else {
            return Ok(None);
        };
        let state = ctx.data_unchecked::<AppState>();
        Ok(submission::Entity::find_by_id(id)
            .one(state.db.conn())
            .await?
            .map(Submission))
    }
    /// The submission in review or awaiting changes, if any.
    async fn open_submission(&self, ctx: &Context<'_>) -> ApiResult<Option<Submission>> {
        let state = ctx.data_unchecked::<AppState>();
        let open = submission::Entity::find()
            .filter(submission::Column::ProviderId.eq(self.0.id))
            .filter(submission::Column::Status.is_in(SubmissionStatus::OPEN.map(|s| s.as_str())))
            .one(state.db.conn())
            .await?;
        Ok(open.map(Submission))
    }
    /// What happened to this provider, oldest first: edits, submissions, decisions, messages.
    /// Pass `after` the last cursor to continue.
    #[graphql(
        complexity = "usize::try_from(first.unwrap_or(50)).unwrap_or(1).max(1) * child_complexity"
    )]
    async fn timeline(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> ApiResult<Connection<String, TimelineEvent, TotalCount>> {
        timeline(ctx, self.0.id, self.0.owner_id, first, after).await
    }
}

/// A frozen, numbered snapshot of a provider's draft for one scope, and its review status.
pub struct Submission(pub submission::Model);

#[Object]
impl Submission {
    pub async fn id(&self) -> ID {
        GlobalId::encode("Submission", self.0.id)
    }
    /// 1, 2, 3… per provider.
    async fn number(&self) -> i32 {
        self.0.number
    }
    async fn scope(&self) -> Option<Scope> {
        Scope::parse(&self.0.scope)
    }
    async fn status(&self) -> Option<SubmissionStatus> {
        SubmissionStatus::parse(&self.0.status)
    }
    async fn provider(&self, ctx: &Context<'_>) -> ApiResult<Provider> {
        loaders::provider(ctx, self.0.provider_id)
            .await?
            .map(Provider)
            .ok_or(ApiError::NotFound)
    }
    /// The reviewer holding the claim, while the submission is in review.
    async fn claim_holder(&self, ctx: &Context<'_>) -> ApiResult<Option<Actor>> {
        let Some(id) = self.0.claimed_by else {
            return Ok(None);
        };
        let viewer = principal(ctx)?;
        Ok(loaders::user(ctx, id)
            .await?
            .map(|u| Actor::shown_to(&u, viewer)))
    }
    /// When the claim lapses unless renewed.
    async fn claim_expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.claim_expires_at
    }
    /// Seconds since the submission (or the one it answers) entered the queue.
    async fn age_in_queue_seconds(&self) -> i64 {
        (Utc::now() - self.0.queue_entered_at).num_seconds().max(0)
    }
    /// The reviewer who decided, when one did (`null` for automatic decisions).
    async fn decided_by(&self, ctx: &Context<'_>) -> ApiResult<Option<Actor>> {
        let Some(id) = self.0.decided_by else {
            return Ok(None);
        };
        let viewer = principal(ctx)?;
        Ok(loaders::user(ctx, id)
            .await?
            .map(|u| Actor::shown_to(&u, viewer)))
    }
    /// The reviewer's attestations of the criteria checked by hand (Global approvals).
    async fn attestations(&self) -> Vec<AttestationRecord> {
        self.0
            .attestations
            .as_ref()
            .and_then(|v| serde_json::from_value::<Vec<Attestation>>(v.clone()).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|a| AttestationRecord {
                criterion: a.criterion,
                note: a.note,
            })
            .collect()
    }
    /// The sections as they were when submitted.
    async fn sections(&self) -> ApiResult<StoredDraft<'_>> {
        StoredDraft::of(&self.0.snapshot)
    }
    /// The criteria report frozen with the submission.
    async fn criteria_report(&self) -> Option<CriteriaReport> {
        decode_report(self.0.report.as_ref())
    }
    async fn submitted_at(&self) -> DateTime<Utc> {
        self.0.submitted_at
    }
    /// When the submission (or the one it answers) entered the queue; the queue's order.
    async fn queue_entered_at(&self) -> DateTime<Utc> {
        self.0.queue_entered_at
    }
    async fn decided_at(&self) -> Option<DateTime<Utc>> {
        self.0.decided_at
    }
    /// The reviewer's reason for the decision or request for changes.
    async fn decision_reason(&self) -> Option<&str> {
        self.0.decision_reason.as_deref()
    }
    /// Field paths the reviewer asked to change.
    async fn requested_fields(&self) -> Vec<String> {
        self.0
            .requested_fields
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
    /// What changed against the previous submission and against the active registration.
    async fn diff(&self, ctx: &Context<'_>) -> ApiResult<SubmissionDiff> {
        let state = ctx.data_unchecked::<AppState>();
        let conn = state.db.conn();
        let previous = submission::Entity::find()
            .filter(submission::Column::ProviderId.eq(self.0.provider_id))
            .filter(submission::Column::Number.lt(self.0.number))
            .order_by_desc(submission::Column::Number)
            .one(conn)
            .await?;
        let provider = provider::Entity::find_by_id(self.0.provider_id)
            .one(conn)
            .await?;
        let active_id = provider
            .and_then(|p| p.active_submission_id)
            .filter(|id| *id != self.0.id);
        let active = match active_id {
            Some(id) => submission::Entity::find_by_id(id).one(conn).await?,
            None => None,
        };
        let against = |other: &Option<submission::Model>| -> Vec<FieldChange> {
            other
                .as_ref()
                .map(|o| {
                    changes(&o.snapshot, &self.0.snapshot)
                        .into_iter()
                        .map(FieldChange::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(SubmissionDiff {
            changes_from_previous: against(&previous),
            changes_from_active: against(&active),
            previous: previous.map(Submission),
            active: active.map(Submission),
        })
    }
}

/// How a submission differs from the ones before it.
#[derive(SimpleObject)]
pub struct SubmissionDiff {
    /// The submission numbered just before this one.
    pub previous: Option<Submission>,
    pub changes_from_previous: Vec<FieldChange>,
    /// The provider's active registration, when it is another submission.
    pub active: Option<Submission>,
    pub changes_from_active: Vec<FieldChange>,
}

/// One field whose value differs, with both values as JSON (null where absent).
#[derive(SimpleObject)]
pub struct FieldChange {
    /// Dotted path, e.g. `providerDetails.senderEmails`.
    pub path: String,
    pub before: Option<async_graphql::Json<serde_json::Value>>,
    pub after: Option<async_graphql::Json<serde_json::Value>>,
}

impl From<DraftChange> for FieldChange {
    fn from(change: DraftChange) -> Self {
        Self {
            path: change.path,
            before: change.before.map(async_graphql::Json),
            after: change.after.map(async_graphql::Json),
        }
    }
}

/// A reviewer's attestation of a criterion that cannot be checked from one e-mail.
#[derive(SimpleObject)]
pub struct AttestationRecord {
    pub criterion: Criterion,
    pub note: String,
}

/// Who acted in a timeline event.
#[derive(SimpleObject, Clone)]
pub struct Actor {
    /// The user's global ID.
    pub id: ID,
    pub role: Role,
    /// Shown to reviewers, and to the actor themselves.
    pub email: Option<String>,
}

impl Actor {
    /// The actor as `viewer` may see them: the address only for reviewers and the actor.
    pub(crate) fn shown_to(user: &user::Model, viewer: &Principal) -> Self {
        Self {
            id: GlobalId::encode("User", user.id),
            role: Role::parse(&user.role).unwrap_or(Role::Submitter),
            email: (viewer.role >= Role::Reviewer || user.id == viewer.user_id)
                .then(|| user.email.clone()),
        }
    }
}

/// One entry of a provider's timeline.
#[derive(SimpleObject)]
pub struct TimelineEvent {
    /// Resume after this cursor (timeline pagination and subscriptions).
    pub cursor: String,
    pub kind: EventKind,
    pub submission_id: Option<ID>,
    /// `null` when the system acted (automatic approval, expired claims).
    pub actor: Option<Actor>,
    pub from_status: Option<SubmissionStatus>,
    pub to_status: Option<SubmissionStatus>,
    pub reason: Option<String>,
    /// Field paths concerned: edited fields, or fields to change.
    pub fields: Vec<String>,
    /// Reviewer-only note; never shown to submitters.
    pub internal: bool,
    pub created_at: DateTime<Utc>,
}

impl TimelineEvent {
    /// The entry of a logged event, with its actor as the viewer may see them.
    pub(crate) fn from_event(row: event::Model, actor: Option<Actor>) -> Self {
        Self {
            cursor: encode_cursor(row.id),
            kind: EventKind::parse(&row.kind).unwrap_or(EventKind::Comment),
            submission_id: row
                .submission_id
                .map(|id| GlobalId::encode("Submission", id)),
            actor,
            from_status: row.from_status.as_deref().and_then(SubmissionStatus::parse),
            to_status: row.to_status.as_deref().and_then(SubmissionStatus::parse),
            reason: row.reason,
            fields: serde_json::from_value(row.fields).unwrap_or_default(),
            internal: row.internal,
            created_at: row.created_at,
        }
    }
}

/// An event as the viewer may see it: actor e-mails only for reviewers and the actor themselves.
pub(crate) fn timeline_event(
    row: event::Model,
    actor: Option<&user::Model>,
    viewer: &Principal,
) -> TimelineEvent {
    TimelineEvent::from_event(row, actor.map(|u| Actor::shown_to(u, viewer)))
}

pub(crate) fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("event:{id}"))
}

pub(crate) fn decode_event_cursor(cursor: &str) -> ApiResult<i64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("event:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| ApiError::BadUserInput("`after` is not a cursor of this timeline".into()))
}

async fn timeline(
    ctx: &Context<'_>,
    provider_id: Uuid,
    owner_id: Uuid,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<Connection<String, TimelineEvent, TotalCount>> {
    let state = ctx.data_unchecked::<AppState>();
    let viewer = principal(ctx)?;
    let limit = page_size(first, 50)?;
    // Internal notes are for the provider's reviewers, never its owner, whatever their role.
    let reviewer = viewer.role >= Role::Reviewer && viewer.user_id != owner_id;

    let mut visible = event::Entity::find().filter(event::Column::ProviderId.eq(provider_id));
    if !reviewer {
        visible = visible.filter(event::Column::Internal.eq(false));
    }
    let total_count = visible.clone().count(state.db.conn()).await?;
    let mut page = visible.order_by_asc(event::Column::Id).limit(limit + 1);
    if let Some(after) = after {
        page = page.filter(event::Column::Id.gt(decode_event_cursor(&after)?));
    }
    let mut rows = page.all(state.db.conn()).await?;
    let has_next = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));

    let actor_ids: Vec<Uuid> = rows.iter().filter_map(|e| e.actor_id).collect();
    let actors: HashMap<Uuid, user::Model> = if actor_ids.is_empty() {
        HashMap::new()
    } else {
        user::Entity::find()
            .filter(user::Column::Id.is_in(actor_ids))
            .all(state.db.conn())
            .await?
            .into_iter()
            .map(|u| (u.id, u))
            .collect()
    };

    let mut connection =
        Connection::with_additional_fields(false, has_next, TotalCount { total_count });
    for row in rows {
        let actor = row
            .actor_id
            .and_then(|id| actors.get(&id))
            .map(|u| Actor::shown_to(u, viewer));
        let entry = TimelineEvent::from_event(row, actor);
        connection
            .edges
            .push(Edge::new(entry.cursor.clone(), entry));
    }
    Ok(connection)
}

// ----- inputs -----

/// Input of `createProvider`.
#[derive(InputObject)]
pub struct CreateProviderInput {
    /// A friendly name for the service, up to 200 characters.
    pub name: String,
}

/// Input of `updateProviderDetails`.
#[derive(InputObject)]
pub struct UpdateProviderDetailsInput {
    pub provider_id: ID,
    /// The provider's `version` the edit was made against.
    pub expected_version: i32,
    /// 1 to 20 static sender addresses, e.g. `myservice@contoso.com`; a longer list is
    /// `TOO_MANY` at `["senderEmails"]`.
    pub sender_emails: Vec<String>,
    /// 1 to 20 https URLs that process the actions, e.g. `https://api.myservice.com`; a longer
    /// list is `TOO_MANY` at `["targetUrls"]`.
    pub target_urls: Vec<String>,
    /// Optional PEM of an RSA (>= 2048 bits) public key for signed cards.
    pub public_key: Option<String>,
}

/// Input of `setScope`.
#[derive(InputObject)]
pub struct SetScopeInput {
    pub provider_id: ID,
    pub expected_version: i32,
    pub scope: Scope,
}

/// Input of `updateContactInfo`.
#[derive(InputObject)]
pub struct UpdateContactInfoInput {
    pub provider_id: ID,
    pub expected_version: i32,
    pub name: String,
    /// Decisions are e-mailed here.
    pub email: String,
    /// E.164, e.g. `+14255550100`; spaces and dashes are ignored.
    pub phone: Option<String>,
}

/// Input of `updatePublisherInfo`.
#[derive(InputObject)]
pub struct UpdatePublisherInfoInput {
    pub provider_id: ID,
    pub expected_version: i32,
    pub publisher_name: String,
    pub website_url: String,
    pub support_url: String,
    pub description: String,
}

/// Input of `updateScenarioDetails`.
#[derive(InputObject)]
pub struct UpdateScenarioDetailsInput {
    pub provider_id: ID,
    pub expected_version: i32,
    /// The scenario in which recipients get actionable messages.
    pub description: String,
    /// How recipients use the actions.
    pub action_usage: String,
    /// Expected e-mails per day (1 to 100,000,000).
    pub expected_daily_volume: i64,
    pub mail_type: MailType,
    /// Weeks of sending history from the domain (0 to 520).
    pub sending_history_weeks: i32,
}

/// Input of `updateVerificationDetails`.
#[derive(InputObject)]
pub struct UpdateVerificationDetailsInput {
    pub provider_id: ID,
    pub expected_version: i32,
    /// How a reviewer can try the actions: test account, steps.
    pub reviewer_instructions: String,
    /// The raw sample e-mail (RFC 5322, as received, headers included), up to 2 MiB.
    pub sample_email: Option<String>,
}

/// Input of `submitForReview`.
#[derive(InputObject)]
pub struct SubmitForReviewInput {
    pub provider_id: ID,
    pub expected_version: i32,
}

/// Input of `withdrawSubmission`.
#[derive(InputObject)]
pub struct WithdrawSubmissionInput {
    pub submission_id: ID,
}

/// Result of every section edit and of `createProvider`.
#[derive(SimpleObject, Default)]
pub struct ProviderPayload {
    /// The provider after the change (unchanged when there are user errors).
    pub provider: Option<Provider>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject, Default)]
pub struct SubmitForReviewPayload {
    pub submission: Option<Submission>,
    pub user_errors: Vec<UserError>,
}

#[derive(SimpleObject, Default)]
pub struct WithdrawSubmissionPayload {
    pub submission: Option<Submission>,
    pub user_errors: Vec<UserError>,
}

// ----- parsing inputs into sections -----

/// Collects field errors while parsing one input.
#[derive(Default)]
struct Errors(Vec<UserError>);

impl Errors {
    fn field<T>(&mut self, name: &'static str, result: Result<T, FieldError>) -> Option<T> {
        result
            .map_err(|e| {
                self.0.push(UserError::new(
                    [PathSegment::Field(name)],
                    e.code.as_str(),
                    e.message,
                ))
            })
            .ok()
    }

    fn list<T>(
        &mut self,
        name: &'static str,
        result: Result<Vec<T>, ListErrors>,
    ) -> Option<Vec<T>> {
        match result {
            Ok(values) => Some(values),
            Err(errors) => {
                for (index, error) in errors {
                    let mut path = vec![PathSegment::Field(name)];
                    path.extend(index.map(PathSegment::Index));
                    self.0
                        .push(UserError::new(path, error.code.as_str(), error.message));
                }
                None
            }
        }
    }

    fn optional<T>(
        &mut self,
        name: &'static str,
        input: Option<&str>,
        parse: impl Fn(&str) -> Result<T, FieldError>,
    ) -> Option<Option<T>> {
        match input.map(str::trim).filter(|s| !s.is_empty()) {
            None => Some(None),
            Some(value) => self.field(name, parse(value)).map(Some),
        }
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, Vec<UserError>> {
        match value {
            Some(value) if self.0.is_empty() => Ok(value),
            _ => Err(self.0),
        }
    }
}

fn text(max: usize, multiline: bool) -> impl Fn(&str) -> Result<BoundedText, FieldError> {
    move |input| BoundedText::parse(input, max, multiline)
}

fn parse_provider_details(
    input: &UpdateProviderDetailsInput,
) -> Result<ProviderDetails, Vec<UserError>> {
    let mut errors = Errors::default();
    let sender_emails = errors.list("senderEmails", parse_sender_list(&input.sender_emails));
    let target_urls = errors.list("targetUrls", parse_target_url_list(&input.target_urls));
    let public_key = errors.optional(
        "publicKey",
        input.public_key.as_deref(),
        RsaPublicKey::parse,
    );
    let details = (|| {
        Some(ProviderDetails {
            sender_emails: sender_emails?,
            target_urls: target_urls?,
            public_key: public_key?,
        })
    })();
    errors.finish(details)
}

fn parse_contact_info(input: &UpdateContactInfoInput) -> Result<ContactInfo, Vec<UserError>> {
    let mut errors = Errors::default();
    let name = errors.field("name", text(200, false)(&input.name));
    let email = errors.field("email", EmailAddress::parse(&input.email));
    let phone = errors.optional("phone", input.phone.as_deref(), PhoneNumber::parse);
    let contact = (|| {
        Some(ContactInfo {
            name: name?,
            email: email?,
            phone: phone?,
        })
    })();
    errors.finish(contact)
}

fn parse_publisher_info(input: &UpdatePublisherInfoInput) -> Result<PublisherInfo, Vec<UserError>> {
    let mut errors = Errors::default();
    let publisher_name = errors.field("publisherName", text(200, false)(&input.publisher_name));
    let website_url = errors.field("websiteUrl", HttpsUrl::parse(&input.website_url));
    let support_url = errors.field("supportUrl", HttpsUrl::parse(&input.support_url));
    let description = errors.field("description", text(2000, true)(&input.description));
    let publisher = (|| {
        Some(PublisherInfo {
            publisher_name: publisher_name?,
            website_url: website_url?,
            support_url: support_url?,
            description: description?,
        })
    })();
    errors.finish(publisher)
}

fn parse_scenario_details(
    input: &UpdateScenarioDetailsInput,
) -> Result<ScenarioDetails, Vec<UserError>> {
    let mut errors = Errors::default();
    let description = errors.field("description", text(4000, true)(&input.description));
    let action_usage = errors.field("actionUsage", text(4000, true)(&input.action_usage));
    let volume = errors.field(
        "expectedDailyVolume",
        check_range(input.expected_daily_volume, 1..=100_000_000),
    );
    let weeks = errors.field(
        "sendingHistoryWeeks",
        check_range(input.sending_history_weeks, 0..=520),
    );
    let scenario = (|| {
        Some(ScenarioDetails {
            description: description?,
            action_usage: action_usage?,
            expected_daily_volume: u32::try_from(volume?).ok()?,
            mail_type: input.mail_type,
            sending_history_weeks: u32::try_from(weeks?).ok()?,
        })
    })();
    errors.finish(scenario)
}

fn parse_verification_details(
    input: &UpdateVerificationDetailsInput,
) -> Result<VerificationDetails, Vec<UserError>> {
    let mut errors = Errors::default();
    let instructions = errors.field(
        "reviewerInstructions",
        text(8000, true)(&input.reviewer_instructions),
    );
    let sample_email = input.sample_email.clone().filter(|s| !s.trim().is_empty());
    let details = instructions.map(|reviewer_instructions| VerificationDetails {
        reviewer_instructions,
        sample_email,
    });
    errors.finish(details)
}

// ----- resolvers -----

#[derive(Default)]
pub struct ProviderQuery;

#[Object]
impl ProviderQuery {
    /// A provider: the viewer's own, or any for reviewers; `null` otherwise.
    async fn provider(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Provider>> {
        let viewer = principal(ctx)?;
        let Ok(id) = GlobalId::expect(&id, "Provider") else {
            return Ok(None);
        };
        let state = ctx.data_unchecked::<AppState>();
        match registration::visible_provider(state.db.conn(), viewer, id).await {
            Ok(found) => Ok(Some(Provider(found))),
            Err(ApiError::NotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// A submission of a provider the viewer may see; `null` otherwise.
    async fn submission(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Submission>> {
        let viewer = principal(ctx)?;
        let Ok(id) = GlobalId::expect(&id, "Submission") else {
            return Ok(None);
        };
        let state = ctx.data_unchecked::<AppState>();
        match registration::visible_submission(state.db.conn(), viewer, id).await {
            Ok((found, _)) => Ok(Some(Submission(found))),
            Err(ApiError::NotFound) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// The viewer's providers, newest first.
    #[graphql(
        guard = "RoleGuard(Role::Submitter)",
        complexity = "usize::try_from(first.unwrap_or(20)).unwrap_or(1).max(1) * child_complexity"
    )]
    async fn my_providers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, Provider, TotalCount>> {
        let viewer = principal(ctx)?;
        let state = ctx.data_unchecked::<AppState>();
        let limit = page_size(first, 20)?;
        let owned = provider::Entity::find().filter(provider::Column::OwnerId.eq(viewer.user_id));
        let total_count = owned
            .clone()
            .count(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        let mut page = owned.order_by_desc(provider::Column::Id).limit(limit + 1);
        if let Some(after) = after {
            let cursor = GlobalId::expect(&ID(after), "Provider").map_err(|_| {
                ApiError::BadUserInput("`after` is not a cursor of this list".into())
            })?;
            page = page.filter(provider::Column::Id.lt(cursor));
        }
        let mut rows = page.all(state.db.conn()).await.map_err(ApiError::from)?;
        let has_next = rows.len() as u64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut connection =
            Connection::with_additional_fields(false, has_next, TotalCount { total_count });
        for row in rows {
            connection.edges.push(Edge::new(
                GlobalId::encode("Provider", row.id).0,
                Provider(row),
            ));
        }
        Ok(connection)
    }
}

#[derive(Default)]
pub struct ProviderMutation;

/// Runs a section edit: parse, then save against the expected version.
async fn edit_section(
    ctx: &Context<'_>,
    provider_id: &ID,
    expected_version: i32,
    parsed: Result<SectionEdit, Vec<UserError>>,
) -> async_graphql::Result<ProviderPayload> {
    let viewer = principal(ctx)?;
    let state = ctx.data_unchecked::<AppState>();
    let id = GlobalId::expect(provider_id, "Provider")?;
    let result = match parsed {
        Ok(edit) => registration::update_draft(state, viewer, id, expected_version, edit).await,
        Err(errors) => {
            // Still refuse unknown or foreign providers the same way as a valid edit would.
            registration::owned_provider(state.db.conn(), viewer, id).await?;
            Err(crate::error::PayloadError::User(errors))
        }
    };
    payload(
        result,
        |p| ProviderPayload {
            provider: Some(Provider(p)),
            user_errors: Vec::new(),
        },
        |p, e| p.user_errors = e,
    )
}

#[Object]
impl ProviderMutation {
    /// Registers a new provider with an empty draft and a fresh originator ID.
    #[graphql(guard = "RoleGuard(Role::Submitter)")]
    async fn create_provider(
        &self,
        ctx: &Context<'_>,
        input: CreateProviderInput,
    ) -> async_graphql::Result<ProviderPayload> {
        let viewer = principal(ctx)?;
        let state = ctx.data_unchecked::<AppState>();
        let result = registration::create_provider(state, viewer, &input.name).await;
        payload(
            result,
            |p| ProviderPayload {
                provider: Some(Provider(p)),
                user_errors: Vec::new(),
            },
            |p, e| p.user_errors = e,
        )
    }

    /// Saves "Details of your provider": sender addresses, target URLs, optional public key.
    async fn update_provider_details(
        &self,
        ctx: &Context<'_>,
        input: UpdateProviderDetailsInput,
    ) -> async_graphql::Result<ProviderPayload> {
        let parsed = parse_provider_details(&input).map(SectionEdit::ProviderDetails);
        edit_section(ctx, &input.provider_id, input.expected_version, parsed).await
    }

    /// Chooses the one scope of the next submission.
    async fn set_scope(
        &self,
        ctx: &Context<'_>,
        input: SetScopeInput,
    ) -> async_graphql::Result<ProviderPayload> {
        edit_section(
            ctx,
            &input.provider_id,
            input.expected_version,
            Ok(SectionEdit::Scope(input.scope)),
        )
        .await
    }

    /// Saves "Contact info".
    async fn update_contact_info(
        &self,
        ctx: &Context<'_>,
        input: UpdateContactInfoInput,
    ) -> async_graphql::Result<ProviderPayload> {
        let parsed = parse_contact_info(&input).map(SectionEdit::ContactInfo);
        edit_section(ctx, &input.provider_id, input.expected_version, parsed).await
    }

    /// Saves "Publisher information" (needed for Global).
    async fn update_publisher_info(
        &self,
        ctx: &Context<'_>,
        input: UpdatePublisherInfoInput,
    ) -> async_graphql::Result<ProviderPayload> {
        let parsed = parse_publisher_info(&input).map(SectionEdit::PublisherInfo);
        edit_section(ctx, &input.provider_id, input.expected_version, parsed).await
    }

    /// Saves "Scenario details" (needed for Global).
    async fn update_scenario_details(
        &self,
        ctx: &Context<'_>,
        input: UpdateScenarioDetailsInput,
    ) -> async_graphql::Result<ProviderPayload> {
        let parsed = parse_scenario_details(&input).map(SectionEdit::ScenarioDetails);
        edit_section(ctx, &input.provider_id, input.expected_version, parsed).await
    }

    /// Saves "Verification details" (needed for Global); the sample e-mail is checked against
    /// the registration criteria at once.
    async fn update_verification_details(
        &self,
        ctx: &Context<'_>,
        input: UpdateVerificationDetailsInput,
    ) -> async_graphql::Result<ProviderPayload> {
        let parsed = parse_verification_details(&input).map(SectionEdit::VerificationDetails);
        edit_section(ctx, &input.provider_id, input.expected_version, parsed).await
    }

    /// Freezes the draft into a numbered submission for its scope. Refused while
    /// `submitBlockers` is not empty or another submission is open.
    async fn submit_for_review(
        &self,
        ctx: &Context<'_>,
        input: SubmitForReviewInput,
    ) -> async_graphql::Result<SubmitForReviewPayload> {
        let viewer = principal(ctx)?;
        let state = ctx.data_unchecked::<AppState>();
        let id = GlobalId::expect(&input.provider_id, "Provider")?;
        let result =
            registration::submit_for_review(state, viewer, id, input.expected_version).await;
        payload(
            result,
            |s| SubmitForReviewPayload {
                submission: Some(Submission(s)),
                user_errors: Vec::new(),
            },
            |p, e| p.user_errors = e,
        )
    }

    /// The owner withdraws a submission before a decision.
    async fn withdraw_submission(
        &self,
        ctx: &Context<'_>,
        input: WithdrawSubmissionInput,
    ) -> async_graphql::Result<WithdrawSubmissionPayload> {
        let viewer = principal(ctx)?;
        let state = ctx.data_unchecked::<AppState>();
        let id = GlobalId::expect(&input.submission_id, "Submission")?;
        let result = registration::withdraw_submission(state, viewer, id).await;
        payload(
            result,
            |s| WithdrawSubmissionPayload {
                submission: Some(Submission(s)),
                user_errors: Vec::new(),
            },
            |p, e| p.user_errors = e,
        )
    }
}
