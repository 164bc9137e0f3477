//! Accounts in the schema: sign-up, log-in, sessions, API tokens and the admin's user management.

use std::net::IpAddr;

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{api_token, user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{node::GlobalId, payload};
use crate::{
    auth::{self, IssuedSession, Role, RoleGuard, Viewer},
    domain::EmailAddress,
    error::{ApiError, UserError},
    http::ClientAddress,
    rate_limit::{Bucket, Subject},
    state::AppState,
};

/// An account.
pub struct User(pub user::Model);

#[Object]
impl User {
    /// The user's global ID.
    pub async fn id(&self) -> ID {
        GlobalId::encode("User", self.0.id)
    }
    /// Login address, lower-case.
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> Role {
        Role::parse(&self.0.role).unwrap_or(Role::Submitter)
    }
    /// A disabled user cannot sign in and their tokens are refused.
    async fn disabled(&self) -> bool {
        self.0.disabled
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A long-lived token for scripts. The secret itself is only shown once, at creation.
pub struct ApiToken(pub api_token::Model);

#[Object]
impl ApiToken {
    async fn id(&self) -> ID {
        GlobalId::encode("ApiToken", self.0.id)
    }
    /// The owner's label.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The token's first characters, to recognise it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// When the token was last used, to the minute.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
}

/// Result of `signUp`, `logIn` and `refreshSession`: the tokens of a new session, or the errors
/// that prevented it.
#[derive(SimpleObject, Default)]
pub struct AuthPayload {
    pub user: Option<User>,
    /// Send as `Authorization: Bearer <accessToken>`.
    pub access_token: Option<String>,
    pub access_token_expires_at: Option<DateTime<Utc>>,
    /// Exchange with `refreshSession` for a new pair; each works once.
    pub refresh_token: Option<String>,
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    pub user_errors: Vec<UserError>,
}

impl From<IssuedSession> for AuthPayload {
    fn from(session: IssuedSession) -> Self {
        Self {
            user: Some(User(session.user)),
            access_token: Some(session.access_token),
            access_token_expires_at: Some(session.access_token_expires_at),
            refresh_token: Some(session.refresh_token),
            refresh_token_expires_at: Some(session.refresh_token_expires_at),
            user_errors: Vec::new(),
        }
    }
}

/// Input of `signUp`.
#[derive(InputObject)]
pub struct SignUpInput {
    pub email: String,
    /// 12 to 128 characters, any characters, not a common password; 12 must remain once
    /// every occurrence of the e-mail address and of its local part is taken out
    /// (`PASSWORD_CONTAINS_EMAIL`).
    pub password: String,
}

/// Input of `logIn`.
#[derive(InputObject)]
pub struct LogInInput {
    pub email: String,
    pub password: String,
}

/// Input of `refreshSession`.
#[derive(InputObject)]
pub struct RefreshSessionInput {
    pub refresh_token: String,
}

/// Input of `logOut`.
#[derive(InputObject)]
pub struct LogOutInput {
    /// The session to end; when omitted, the session of the access token used.
    pub refresh_token: Option<String>,
}

#[derive(SimpleObject, Default)]
pub struct LogOutPayload {
    /// Whether a session was ended.
    pub logged_out: bool,
    pub user_errors: Vec<UserError>,
}

/// Input of `createApiToken`.
#[derive(InputObject)]
pub struct CreateApiTokenInput {
    /// A label to recognise the token by, e.g. "queue exporter".
    pub name: String,
    /// When the token stops working; never when omitted.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject, Default)]
pub struct CreateApiTokenPayload {
    pub api_token: Option<ApiToken>,
    /// The secret, shown this once: send it as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub user_errors: Vec<UserError>,
}

/// Input of `revokeApiToken`.
#[derive(InputObject)]
pub struct RevokeApiTokenInput {
    pub id: ID,
}

#[derive(SimpleObject, Default)]
pub struct RevokeApiTokenPayload {
    pub api_token: Option<ApiToken>,
    pub user_errors: Vec<UserError>,
}

/// Input of `createUser`.
#[derive(InputObject)]
pub struct CreateUserInput {
    pub email: String,
    pub password: String,
    pub role: Role,
}

#[derive(SimpleObject, Default)]
pub struct CreateUserPayload {
    pub user: Option<User>,
    pub user_errors: Vec<UserError>,
}

/// Input of `setUserDisabled`.
#[derive(InputObject)]
pub struct SetUserDisabledInput {
    pub user_id: ID,
    pub disabled: bool,
}

#[derive(SimpleObject, Default)]
pub struct SetUserDisabledPayload {
    pub user: Option<User>,
    pub user_errors: Vec<UserError>,
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user; `null` for anonymous requests.
    async fn viewer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let Some(principal) = Viewer::of(ctx).principal() else {
            return Ok(None);
        };
        let state = ctx.data_unchecked::<AppState>();
        let found = user::Entity::find_by_id(principal.user_id)
            .one(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(found.map(User))
    }

    /// The viewer's API tokens, newest first, revoked ones included.
    #[graphql(guard = "RoleGuard(Role::Submitter)")]
    async fn my_api_tokens(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiToken>> {
        let principal = Viewer::of(ctx).require(Role::Submitter)?;
        let state = ctx.data_unchecked::<AppState>();
        let tokens = api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(principal.user_id))
            .order_by_desc(api_token::Column::CreatedAt)
            .all(state.db.conn())
            .await
            .map_err(ApiError::from)?;
        Ok(tokens.into_iter().map(ApiToken).collect())
    }
}

#[derive(Default)]
pub struct AccountMutation;

/// The client's address as the transport saw it (unspecified when the request did not come
/// through a transport, as in unit tests).
fn client_address(ctx: &Context<'_>) -> IpAddr {
    ctx.data_opt::<ClientAddress>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |client| client.0)
}

/// Charges one attempt to a log-in or sign-up budget; `RATE_LIMITED` when it is spent.
async fn charge(ctx: &Context<'_>, bucket: Bucket, subject: Subject) -> Result<(), ApiError> {
    let state = ctx.data_unchecked::<AppState>();
    match state.rate_limiter.charge(bucket, &subject, 1).await {
        Some(decision) if !decision.allowed => Err(ApiError::RateLimited {
            retry_after_seconds: decision.retry_after_seconds(),
        }),
        _ => Ok(()),
    }
}

#[Object]
impl AccountMutation {
    /// Creates a submitter account and signs it in.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        input: SignUpInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        charge(
            ctx,
            Bucket::SignUpPerAddress,
            Subject::Address(client_address(ctx)),
        )
        .await?;
        let result = auth::sign_up(state, &input.email, input.password.into()).await;
        payload(result, AuthPayload::from, |p, e| p.user_errors = e)
    }

    /// Signs in with e-mail address and password.
    async fn log_in(
        &self,
        ctx: &Context<'_>,
        input: LogInInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        // The address first: a flood from one client then never reaches the account budgets
        // of the accounts it names.
        charge(
            ctx,
            Bucket::LogInPerAddress,
            Subject::Address(client_address(ctx)),
        )
        .await?;
        if let Ok(email) = EmailAddress::parse(&input.email) {
            let account = Subject::Account(email.normalized().to_owned());
            charge(ctx, Bucket::LogInPerAccount, account).await?;
        }
        let result = auth::log_in(state, &input.email, input.password.into()).await;
        payload(result, AuthPayload::from, |p, e| p.user_errors = e)
    }

    /// Exchanges a refresh token for a new access token and refresh token. A refresh token works
    /// once; presenting a used one ends the whole session (`UNAUTHENTICATED`).
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        input: RefreshSessionInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.data_unchecked::<AppState>();
        Ok(auth::refresh_session(state, &input.refresh_token)
            .await?
            .into())
    }

    /// Ends a session; its access tokens stop working at once.
    async fn log_out(
        &self,
        ctx: &Context<'_>,
        input: LogOutInput,
    ) -> async_graphql::Result<LogOutPayload> {
        let state = ctx.data_unchecked::<AppState>();
        let viewer = Viewer::of(ctx).principal();
        if viewer.is_none() && input.refresh_token.is_none() {
            return Err(ApiError::Unauthenticated.into());
        }
        let logged_out = auth::log_out(state, viewer, input.refresh_token.as_deref()).await?;
        Ok(LogOutPayload {
            logged_out,
            user_errors: Vec::new(),
        })
    }

    /// Creates an API token for scripts; the secret is in the payload, once. Needs a session
    /// signed in with the password: from a request made with an API token it is the user error
    /// `SESSION_REQUIRED`, so a leaked token cannot mint others that outlive its revocation.
    #[graphql(guard = "RoleGuard(Role::Submitter)")]
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        input: CreateApiTokenInput,
    ) -> async_graphql::Result<CreateApiTokenPayload> {
        let state = ctx.data_unchecked::<AppState>();
        let principal = Viewer::of(ctx).require(Role::Submitter)?;
        let result = auth::create_api_token(state, principal, &input.name, input.expires_at).await;
        payload(
            result,
            |issued| CreateApiTokenPayload {
                api_token: Some(ApiToken(issued.record)),
                token: Some(issued.token),
                user_errors: Vec::new(),
            },
            |p, e| p.user_errors = e,
        )
    }

    /// Revokes one of the viewer's API tokens (admins: anyone's).
    #[graphql(guard = "RoleGuard(Role::Submitter)")]
    async fn revoke_api_token(
        &self,
        ctx: &Context<'_>,
        input: RevokeApiTokenInput,
    ) -> async_graphql::Result<RevokeApiTokenPayload> {
        let state = ctx.data_unchecked::<AppState>();
        let principal = Viewer::of(ctx).require(Role::Submitter)?;
        let id = GlobalId::expect(&input.id, "ApiToken")?;
        let token = auth::revoke_api_token(state, principal, id).await?;
        Ok(RevokeApiTokenPayload {
            api_token: Some(ApiToken(token)),
            user_errors: Vec::new(),
        })
    }

    /// Admin only: creates an account with any role (reviewers, admins).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> async_graphql::Result<CreateUserPayload> {
        let state = ctx.data_unchecked::<AppState>();
        Viewer::of(ctx).require(Role::Admin)?;
        let result =
            auth::create_user(state, &input.email, input.password.into(), input.role).await;
        payload(
            result,
            |user| CreateUserPayload {
                user: Some(User(user)),
                user_errors: Vec::new(),
            },
            |p, e| p.user_errors = e,
        )
    }

    /// Admin only: disables or re-enables an account. A disabled account loses access at once:
    /// its sessions end and its API tokens are revoked for good, so re-enabling it revives
    /// neither (the user signs in again and creates new tokens).
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn set_user_disabled(
        &self,
        ctx: &Context<'_>,
        input: SetUserDisabledInput,
    ) -> async_graphql::Result<SetUserDisabledPayload> {
        let state = ctx.data_unchecked::<AppState>();
        let admin = Viewer::of(ctx).require(Role::Admin)?;
        let user_id = GlobalId::expect(&input.user_id, "User")?;
        let result = auth::set_user_disabled(state, admin, user_id, input.disabled).await;
        payload(
            result,
            |user| SetUserDisabledPayload {
                user: Some(User(user)),
                user_errors: Vec::new(),
            },
            |p, e| p.user_errors = e,
        )
    }
}
