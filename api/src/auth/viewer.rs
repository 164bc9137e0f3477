//! The viewer of a request, resolved from its `Authorization` header, and role checks.

use async_graphql::{Context, Enum, Guard};
use chrono::Utc;
use entity::{api_token, session, user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait, sea_query::Expr};
use uuid::Uuid;

use super::tokens::{API_TOKEN_PREFIX, hash_token};
use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
};

/// What an account may do. Each role includes the ones before it: an admin is a reviewer who
/// also manages accounts, and anyone may register providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Enum)]
pub enum Role {
    /// Registers providers and submits them for review.
    Submitter,
    /// Works the review queue.
    Reviewer,
    /// Manages accounts, and reviews.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitter => "SUBMITTER",
            Self::Reviewer => "REVIEWER",
            Self::Admin => "ADMIN",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_uppercase().as_str() {
            "SUBMITTER" => Some(Self::Submitter),
            "REVIEWER" => Some(Self::Reviewer),
            "ADMIN" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// How the viewer proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// An access token of a login session (refresh-token family).
    Session { family_id: Uuid },
    /// A long-lived API token.
    ApiToken { token_id: Uuid },
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    pub credential: Credential,
}

/// The caller of a request.
#[derive(Clone, Debug)]
pub enum Viewer {
    Anonymous,
    User(Principal),
}

impl Viewer {
    /// The one permission check: the viewer must be signed in with at least `role`.
    pub fn require(&self, role: Role) -> ApiResult<&Principal> {
        match self {
            Self::Anonymous => Err(ApiError::Unauthenticated),
            Self::User(principal) if principal.role >= role => Ok(principal),
            Self::User(_) => Err(ApiError::Forbidden),
        }
    }

    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Self::Anonymous => None,
            Self::User(principal) => Some(principal),
        }
    }

    /// The request's viewer, as the HTTP layer put it in the context.
    pub fn of<'a>(ctx: &'a Context<'_>) -> &'a Viewer {
        ctx.data_opt::<Viewer>().unwrap_or(&Viewer::Anonymous)
    }
}

/// Field guard: `#[graphql(guard = "RoleGuard(Role::Admin)")]`.
pub struct RoleGuard(pub Role);

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        Viewer::of(ctx)
            .require(self.0)
            .map(|_| ())
            .map_err(Into::into)
    }
}

/// Why the credentials of a request were refused (logged; the client only learns that they
/// were).
#[derive(Debug, thiserror::Error)]
pub enum AuthRejection {
    #[error("the Authorization header is not a Bearer token")]
    NotBearer,
    #[error("access token rejected: {0}")]
    AccessToken(#[from] super::jwt::TokenRejected),
    #[error("API token unknown, revoked or expired")]
    ApiToken,
    #[error("session revoked")]
    SessionRevoked,
    #[error("user unknown or disabled")]
    UserDisabled,
    #[error("storage error while authenticating")]
    Storage(#[from] sea_orm::DbErr),
}

/// Resolves the viewer from an `Authorization` header value.
pub async fn authenticate(
    state: &AppState,
    authorization: Option<&str>,
) -> Result<Viewer, AuthRejection> {
    let Some(header) = authorization else {
        return Ok(Viewer::Anonymous);
    };
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or(AuthRejection::NotBearer)?;

    let (user_id, credential) = if token.starts_with(API_TOKEN_PREFIX) {
        api_token_owner(state, token).await?
    } else {
        let claims = state.signer.verify(token)?;
        (
            claims.sub,
            Credential::Session {
                family_id: claims.sid,
            },
        )
    };

    // One statement: the account's standing and, for a session, whether its family was revoked.
    let family = match &credential {
        Credential::Session { family_id } => Some(*family_id),
        Credential::ApiToken { .. } => None,
    };
    let revoked_session = session::Entity::find()
        .select_only()
        .expr(Expr::val(1))
        .filter(session::Column::FamilyId.eq(family))
        .filter(session::Column::RevokedAt.is_not_null())
        .into_query();
    let standing = user::Entity::find_by_id(user_id)
        .select_only()
        .columns([user::Column::Disabled, user::Column::Role])
        .expr(Expr::exists(revoked_session))
        .into_tuple::<(bool, String, bool)>()
        .one(state.db.conn())
        .await?;
    let (disabled, role, session_revoked) = standing.ok_or(AuthRejection::UserDisabled)?;
    if disabled {
        return Err(AuthRejection::UserDisabled);
    }
    if session_revoked {
        return Err(AuthRejection::SessionRevoked);
    }
    let role = Role::parse(&role).ok_or(AuthRejection::UserDisabled)?;
    Ok(Viewer::User(Principal {
        user_id,
        role,
        credential,
    }))
}

/// How stale `last_used_at` may get before a use writes it again; saves a write per request.
const LAST_USED_GRANULARITY: chrono::Duration = chrono::Duration::minutes(1);

async fn api_token_owner(
    state: &AppState,
    token: &str,
) -> Result<(Uuid, Credential), AuthRejection> {
    let now = Utc::now();
    let found = api_token::Entity::find()
        .filter(api_token::Column::TokenHash.eq(hash_token(token)))
        .one(state.db.conn())
        .await?
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|at| at > now))
        .ok_or(AuthRejection::ApiToken)?;
    if found
        .last_used_at
        .is_none_or(|at| now - at > LAST_USED_GRANULARITY)
    {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Expr::value(now))
            .filter(api_token::Column::Id.eq(found.id))
            .exec(state.db.conn())
            .await?;
    }
    Ok((found.user_id, Credential::ApiToken { token_id: found.id }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> Viewer {
        Viewer::User(Principal {
            user_id: Uuid::new_v4(),
            role,
            credential: Credential::ApiToken {
                token_id: Uuid::new_v4(),
            },
        })
    }

    #[test]
    fn roles_include_the_ones_below_them() {
        let table = [
            (Role::Submitter, [true, false, false]),
            (Role::Reviewer, [true, true, false]),
            (Role::Admin, [true, true, true]),
        ];
        for (role, allowed) in table {
            for (required, expected) in [Role::Submitter, Role::Reviewer, Role::Admin]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(
                    user(role).require(required).is_ok(),
                    expected,
                    "{role:?} as {required:?}"
                );
            }
        }
        assert!(matches!(
            Viewer::Anonymous.require(Role::Submitter),
            Err(ApiError::Unauthenticated)
        ));
        assert!(matches!(
            user(Role::Submitter).require(Role::Admin),
            Err(ApiError::Forbidden)
        ));
    }
}
