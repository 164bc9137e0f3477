//! Account services: sign-up, log-in, session refresh and log-out, API tokens, and the admin's
//! user management.

use chrono::{DateTime, Utc};
use entity::{api_token, session, user};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    SqlErr, sea_query::Expr,
};
use secrecy::{ExposeSecret, SecretString};
use tracing::instrument;
use uuid::Uuid;

use super::{
    password::check_password_policy,
    tokens::{API_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, generate_token, hash_token},
    viewer::{Credential, Principal, Role},
};
use crate::{
    domain::EmailAddress,
    error::{ApiError, ApiResult, PayloadError, UserError},
    state::AppState,
};

/// A signed-in session: the user, a short-lived access token and a refresh token.
pub struct IssuedSession {
    pub user: user::Model,
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
}

/// A new API token; `token` is shown once and never stored.
pub struct IssuedApiToken {
    pub record: api_token::Model,
    pub token: String,
}

/// An expected failure of an account operation is a user error in the payload.
pub type AccountError = PayloadError;

fn user_error(field: &'static str, code: &str, message: impl Into<String>) -> AccountError {
    PayloadError::field(field, code, message)
}

/// Parses a login address into its stored form (lower-case, IDNA domain).
fn parse_login_email(input: &str) -> Result<String, AccountError> {
    EmailAddress::parse(input)
        .map(|email| email.normalized().to_owned())
        .map_err(|error| user_error("email", error.code.as_str(), error.message))
}

/// Creates an account with `role` and a hashed password; the caller decides who may.
async fn insert_user(
    state: &AppState,
    email: &str,
    password: SecretString,
    role: Role,
) -> Result<user::Model, AccountError> {
    let email = parse_login_email(email)?;
    if let Err(error) = check_password_policy(password.expose_secret(), &email) {
        return Err(user_error("password", error.code(), error.message()));
    }
    let password_hash = state.hasher.hash(password).await?;
    let now = Utc::now();
    let record = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(email),
        password_hash: Set(password_hash),
        role: Set(role.as_str().to_owned()),
        disabled: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    };
    match record.insert(state.db.conn()).await {
        Ok(model) => Ok(model),
        Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            Err(user_error(
                "email",
                "EMAIL_TAKEN",
                "an account with this e-mail address exists",
            ))
        }
        Err(error) => Err(error.into()),
    }
}

/// Registers a submitter and signs them in.
#[instrument(skip_all)]
pub async fn sign_up(
    state: &AppState,
    email: &str,
    password: SecretString,
) -> Result<IssuedSession, AccountError> {
    let account = insert_user(state, email, password, Role::Submitter).await?;
    tracing::info!(user.id = %account.id, "account created by sign-up");
    Ok(start_session(state, account).await?)
}

/// An admin creates a reviewer, an admin or a submitter.
#[instrument(skip_all, fields(role = role.as_str()))]
pub async fn create_user(
    state: &AppState,
    email: &str,
    password: SecretString,
    role: Role,
) -> Result<user::Model, AccountError> {
    let account = insert_user(state, email, password, role).await?;
    tracing::info!(user.id = %account.id, "account created");
    Ok(account)
}

/// Checks credentials. Unknown accounts, wrong passwords and disabled accounts get the same
/// answer after the same work (one argon2 verification).
#[instrument(skip_all)]
pub async fn log_in(
    state: &AppState,
    email: &str,
    password: SecretString,
) -> Result<IssuedSession, AccountError> {
    let invalid = || {
        user_error(
            "email",
            "INVALID_CREDENTIALS",
            "the e-mail address or password is wrong",
        )
    };
    let normalized = EmailAddress::parse(email)
        .ok()
        .map(|e| e.normalized().to_owned());
    let account = match &normalized {
        Some(email) => {
            user::Entity::find()
                .filter(user::Column::Email.eq(email))
                .one(state.db.conn())
                .await?
        }
        None => None,
    };
    let stored = account.as_ref().map(|a| a.password_hash.clone());
    let matches = state.hasher.verify(password, stored).await?;
    match account {
        Some(account) if matches && !account.disabled => Ok(start_session(state, account).await?),
        _ => {
            tracing::warn!("log-in refused");
            Err(invalid())
        }
    }
}

/// Starts a new refresh-token family for `account` and issues the first token pair.
async fn start_session(state: &AppState, account: user::Model) -> ApiResult<IssuedSession> {
    let family_id = Uuid::now_v7();
    let (refresh_token, refresh_expires) =
        insert_refresh_token(state, state.db.conn(), account.id, family_id).await?;
    let (access_token, access_expires) =
        state.signer.issue(account.id, &account.role, family_id)?;
    Ok(IssuedSession {
        user: account,
        access_token,
        access_token_expires_at: access_expires,
        refresh_token,
        refresh_token_expires_at: refresh_expires,
    })
}

async fn insert_refresh_token(
    state: &AppState,
    conn: &impl ConnectionTrait,
    user_id: Uuid,
    family_id: Uuid,
) -> ApiResult<(String, DateTime<Utc>)> {
    let token = generate_token(REFRESH_TOKEN_PREFIX);
    let now = Utc::now();
    let expires_at = now
        + chrono::Duration::from_std(state.settings.jwt.refresh_token_ttl)
            .map_err(ApiError::internal)?;
    session::ActiveModel {
        id: Set(Uuid::now_v7()),
        family_id: Set(family_id),
        user_id: Set(user_id),
        token_hash: Set(hash_token(&token)),
        created_at: Set(now),
        expires_at: Set(expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok((token, expires_at))
}

/// Revokes every token of a login session.
async fn revoke_family(conn: &impl ConnectionTrait, family_id: Uuid) -> Result<(), sea_orm::DbErr> {
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(session::Column::FamilyId.eq(family_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Exchanges a refresh token for a new pair. Each token works once: presenting one that was
/// already exchanged means it leaked (or a client raced itself), and the whole session is revoked.
#[instrument(skip_all)]
pub async fn refresh_session(state: &AppState, refresh_token: &str) -> ApiResult<IssuedSession> {
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let Some(current) = session::Entity::find()
        .filter(session::Column::TokenHash.eq(hash_token(refresh_token)))
        .one(&txn)
        .await?
    else {
        return Err(ApiError::Unauthenticated);
    };
    if current.revoked_at.is_some() || current.expires_at <= now {
        return Err(ApiError::Unauthenticated);
    }

    // Conditional on "not yet rotated", so of two concurrent uses exactly one wins.
    let rotated = session::Entity::update_many()
        .col_expr(session::Column::RotatedAt, Expr::value(now))
        .filter(session::Column::Id.eq(current.id))
        .filter(session::Column::RotatedAt.is_null())
        .filter(session::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if rotated.rows_affected == 0 {
        revoke_family(&txn, current.family_id).await?;
        txn.commit().await?;
        tracing::warn!(session.family = %current.family_id, "refresh token reused; session revoked");
        return Err(ApiError::Unauthenticated);
    }

    let account = user::Entity::find_by_id(current.user_id).one(&txn).await?;
    let Some(account) = account.filter(|a| !a.disabled) else {
        return Err(ApiError::Unauthenticated);
    };
    let (refresh_token, refresh_expires) =
        insert_refresh_token(state, &txn, account.id, current.family_id).await?;
    txn.commit().await?;

    let (access_token, access_expires) =
        state
            .signer
            .issue(account.id, &account.role, current.family_id)?;
    Ok(IssuedSession {
        user: account,
        access_token,
        access_token_expires_at: access_expires,
        refresh_token,
        refresh_token_expires_at: refresh_expires,
    })
}

/// Ends a session: the one of the given refresh token, or else the viewer's current one. Access
/// tokens of the session stop working at once.
#[instrument(skip_all)]
pub async fn log_out(
    state: &AppState,
    viewer: Option<&Principal>,
    refresh_token: Option<&str>,
) -> ApiResult<bool> {
    let family = match refresh_token {
        Some(token) => session::Entity::find()
            .filter(session::Column::TokenHash.eq(hash_token(token)))
            .one(state.db.conn())
            .await?
            .map(|s| s.family_id),
        None => match viewer.map(|v| v.credential) {
            Some(Credential::Session { family_id }) => Some(family_id),
            _ => None,
        },
    };
    let Some(family_id) = family else {
        return Ok(false);
    };
    revoke_family(state.db.conn(), family_id).await?;
    Ok(true)
}

/// Longest accepted API token name.
const MAX_TOKEN_NAME_CHARS: usize = 100;

/// Issues an API token for the viewer, who must be signed in with a password session: a
/// request authenticated by an API token gets the user error `SESSION_REQUIRED`.
///
/// Why API tokens may not create API tokens at all, rather than only tokens that expire no
/// later than themselves: the answer to a leaked token is to revoke it, and that must be the
/// end of it. A token that can mint a sibling lets whoever holds it keep access after the
/// revocation (the sibling is a separate row with its own hash), and with non-expiring tokens,
/// the common case for scripts, an expiry cap bounds nothing. Scripts read the queue and decide
/// submissions; making credentials is account management, and it takes the password (or a
/// session that started with it), like changing the account itself.
#[instrument(skip_all, fields(user.id = %owner.user_id))]
pub async fn create_api_token(
    state: &AppState,
    owner: &Principal,
    name: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<IssuedApiToken, AccountError> {
    if let Credential::ApiToken { .. } = owner.credential {
        tracing::warn!("API token creation refused: the request used an API token");
        return Err(PayloadError::User(vec![UserError::new(
            [],
            "SESSION_REQUIRED",
            "an API token cannot create API tokens; sign in with your password and create the \
             token from that session",
        )]));
    }
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_TOKEN_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(user_error(
            "name",
            "TOKEN_NAME_INVALID",
            format!("give the token a name of 1 to {MAX_TOKEN_NAME_CHARS} printable characters"),
        ));
    }
    let now = Utc::now();
    if expires_at.is_some_and(|at| at <= now) {
        return Err(user_error(
            "expiresAt",
            "EXPIRY_IN_PAST",
            "the expiry must be in the future",
        ));
    }
    let token = generate_token(API_TOKEN_PREFIX);
    let record = api_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(owner.user_id),
        name: Set(name.to_owned()),
        prefix: Set(token.chars().take(API_TOKEN_PREFIX.len() + 6).collect()),
        token_hash: Set(hash_token(&token)),
        created_at: Set(now),
        expires_at: Set(expires_at),
        revoked_at: Set(None),
        last_used_at: Set(None),
    }
    .insert(state.db.conn())
    .await?;
    tracing::info!(api_token.id = %record.id, "API token created");
    Ok(IssuedApiToken { record, token })
}

/// Revokes an API token of the viewer (admins may revoke anybody's). Another user's token looks
/// missing to a non-admin.
#[instrument(skip_all, fields(api_token.id = %token_id))]
pub async fn revoke_api_token(
    state: &AppState,
    viewer: &Principal,
    token_id: Uuid,
) -> ApiResult<api_token::Model> {
    let token = api_token::Entity::find_by_id(token_id)
        .one(state.db.conn())
        .await?
        .filter(|t| t.user_id == viewer.user_id || viewer.role == Role::Admin)
        .ok_or(ApiError::NotFound)?;
    if token.revoked_at.is_some() {
        return Ok(token);
    }
    let mut active: api_token::ActiveModel = token.into();
    active.revoked_at = Set(Some(Utc::now()));
    Ok(active.update(state.db.conn()).await?)
}

/// An admin disables or re-enables an account. Disabling revokes, for good, every login
/// session and every API token of the account in the same transaction, so re-enabling it later
/// revives none of them: the user signs in again and creates new tokens. (A disabled account is
/// also refused on every request while it stays disabled.) Re-enabling changes only the flag.
#[instrument(skip_all, fields(user.id = %user_id, disabled))]
pub async fn set_user_disabled(
    state: &AppState,
    admin: &Principal,
    user_id: Uuid,
    disabled: bool,
) -> Result<user::Model, AccountError> {
    if admin.user_id == user_id && disabled {
        return Err(user_error(
            "userId",
            "CANNOT_DISABLE_SELF",
            "you cannot disable your own account",
        ));
    }
    let txn = state.db.begin_write().await?;
    let account = user::Entity::find_by_id(user_id)
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut active: user::ActiveModel = account.into();
    active.disabled = Set(disabled);
    active.updated_at = Set(Utc::now());
    let account = active.update(&txn).await?;
    if disabled {
        let now = Utc::now();
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .filter(session::Column::UserId.eq(user_id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Expr::value(now))
            .filter(api_token::Column::UserId.eq(user_id))
            .filter(api_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    tracing::info!("account disabled flag changed");
    Ok(account)
}
