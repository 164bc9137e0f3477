//! Errors at the GraphQL boundary.
//!
//! Which error belongs where:
//! - start-up and CLI code uses `anyhow` with context naming the operation;
//! - services and resolvers return [`ApiError`], whose every variant maps to one stable
//!   `extensions.code`; internal causes are logged once, here, and never shown to clients;
//! - a mutation's expected failures (bad input, a taken e-mail address) are not errors at all
//!   but [`UserError`]s in its payload, with the path of the offending field.

use std::sync::Arc;

use async_graphql::{ErrorExtensions, SimpleObject};
use sea_orm::DbErr;

/// The codes a client can switch on in `errors[].extensions.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    RateLimited,
    InternalServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::NotFound => "NOT_FOUND",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::Conflict => "CONFLICT",
            Self::RateLimited => "RATE_LIMITED",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }
}

/// A top-level GraphQL error.
///
/// It deliberately does not implement `Display`: async-graphql converts any `Display` type into
/// an error without a code, and this type must only ever reach a client through the conversion
/// below, which adds one.
#[derive(Clone, Debug)]
pub enum ApiError {
    /// No valid credentials were presented.
    Unauthenticated,
    /// The viewer is known but may not do this.
    Forbidden,
    /// The object does not exist, or the viewer may not know it exists.
    NotFound,
    /// The request is well-formed GraphQL but its arguments make no sense.
    BadUserInput(String),
    /// The object changed since the client read it, or another actor won a race.
    Conflict(String),
    /// Too many requests; try again after this many seconds.
    RateLimited { retry_after_seconds: u64 },
    /// Anything the client cannot fix; the cause is logged, not returned.
    Internal(Arc<anyhow::Error>),
}

/// Results of services and resolvers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::NotFound => ErrorCode::NotFound,
            Self::BadUserInput(_) => ErrorCode::BadUserInput,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Internal(_) => ErrorCode::InternalServerError,
        }
    }

    /// The text a client sees.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unauthenticated => "authentication is required".into(),
            Self::Forbidden => "you are not allowed to do this".into(),
            Self::NotFound => "no such object".into(),
            Self::BadUserInput(message) | Self::Conflict(message) => message.clone(),
            Self::RateLimited {
                retry_after_seconds,
            } => {
                format!("too many requests; retry in {retry_after_seconds} s")
            }
            Self::Internal(_) => "internal server error".into(),
        }
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(error.into()))
    }
}

impl From<DbErr> for ApiError {
    fn from(error: DbErr) -> Self {
        Self::internal(anyhow::Error::new(error).context("database operation"))
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        Self::internal(error)
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        match &error {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed with an internal error");
            }
            ApiError::Unauthenticated | ApiError::Forbidden => {
                tracing::warn!(code = error.code().as_str(), "request refused");
            }
            _ => {}
        }
        let code = error.code().as_str();
        let retry_after = match &error {
            ApiError::RateLimited {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            _ => None,
        };
        async_graphql::Error::new(error.public_message()).extend_with(|_, extensions| {
            extensions.set("code", code);
            if let Some(seconds) = retry_after {
                extensions.set("retryAfterSeconds", seconds);
            }
        })
    }
}

/// The failure of a mutation whose payload has `userErrors`: either expected errors the user can
/// fix (returned in the payload) or a top-level [`ApiError`].
#[derive(Debug)]
pub enum PayloadError {
    User(Vec<UserError>),
    Api(ApiError),
}

impl PayloadError {
    /// One user error on one input field.
    pub fn field(field: &'static str, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::User(vec![UserError::new(
            [PathSegment::Field(field)],
            code,
            message,
        )])
    }
}

impl<E: Into<ApiError>> From<E> for PayloadError {
    fn from(error: E) -> Self {
        Self::Api(error.into())
    }
}

/// One element of a field path: an input field name or a list index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSegment {
    Field(&'static str),
    Index(usize),
}

impl From<&'static str> for PathSegment {
    fn from(name: &'static str) -> Self {
        Self::Field(name)
    }
}

impl From<usize> for PathSegment {
    fn from(index: usize) -> Self {
        Self::Index(index)
    }
}

/// Most user errors a payload lists. An input with more problems (a list of 20,000 invalid
/// addresses) gets the first ones and one final `TOO_MANY_ERRORS` with an empty field path,
/// so that an answer stays small and a client can still show every error it gets.
pub const MAX_USER_ERRORS: usize = 20;

/// Caps `errors` at [`MAX_USER_ERRORS`], adding one `TOO_MANY_ERRORS` when any were dropped.
pub fn cap_user_errors(mut errors: Vec<UserError>) -> Vec<UserError> {
    if errors.len() <= MAX_USER_ERRORS {
        return errors;
    }
    errors.truncate(MAX_USER_ERRORS);
    errors.push(UserError::new(
        [],
        "TOO_MANY_ERRORS",
        format!(
            "the input has more problems than the {MAX_USER_ERRORS} listed; fix these and send \
             it again to see the rest"
        ),
    ));
    errors
}

/// An expected failure of a mutation, tied to the input field that caused it. A payload lists
/// at most 20; when an input has more problems, a final `TOO_MANY_ERRORS` (empty `field`) says
/// so.
#[derive(Clone, Debug, PartialEq, Eq, SimpleObject)]
pub struct UserError {
    /// Path to the offending input field, e.g. `["senderEmails", "2"]`; empty when the error
    /// concerns the input as a whole.
    pub field: Vec<String>,
    /// Stable machine-readable code, e.g. `URL_NOT_HTTPS`.
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
}

impl UserError {
    pub fn new(
        path: impl IntoIterator<Item = PathSegment>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let field = path
            .into_iter()
            .map(|segment| match segment {
                PathSegment::Field(name) => name.to_owned(),
                PathSegment::Index(index) => index.to_string(),
            })
            .collect();
        Self {
            field,
            code: code.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let error: async_graphql::Error =
            ApiError::internal(anyhow::anyhow!("relation \"users\" does not exist")).into();
        assert_eq!(error.message, "internal server error");
        let extensions = format!("{:?}", error.extensions);
        assert!(extensions.contains("INTERNAL_SERVER_ERROR"), "{extensions}");
        assert!(!extensions.contains("relation"), "{extensions}");
    }

    #[test]
    fn every_error_carries_its_code() {
        for (error, code) in [
            (ApiError::Unauthenticated, "UNAUTHENTICATED"),
            (ApiError::Forbidden, "FORBIDDEN"),
            (ApiError::NotFound, "NOT_FOUND"),
            (ApiError::BadUserInput("x".into()), "BAD_USER_INPUT"),
            (ApiError::Conflict("x".into()), "CONFLICT"),
            (
                ApiError::RateLimited {
                    retry_after_seconds: 3,
                },
                "RATE_LIMITED",
            ),
        ] {
            let graphql: async_graphql::Error = error.into();
            let extensions = format!("{:?}", graphql.extensions);
            assert!(extensions.contains(code), "{extensions}");
        }
    }

    #[test]
    fn user_errors_are_capped_with_one_final_too_many_errors() {
        let errors = |n: usize| -> Vec<UserError> {
            (0..n)
                .map(|i| {
                    UserError::new([PathSegment::from("x"), PathSegment::from(i)], "BAD", "bad")
                })
                .collect()
        };
        assert_eq!(cap_user_errors(errors(0)), Vec::new());
        assert_eq!(
            cap_user_errors(errors(MAX_USER_ERRORS)),
            errors(MAX_USER_ERRORS)
        );
        let capped = cap_user_errors(errors(20_000));
        assert_eq!(capped.len(), MAX_USER_ERRORS + 1);
        assert_eq!(capped[..MAX_USER_ERRORS], errors(MAX_USER_ERRORS)[..]);
        let last = capped.last().expect("last");
        assert_eq!(last.code, "TOO_MANY_ERRORS");
        assert!(last.field.is_empty());
        assert_eq!(
            cap_user_errors(errors(MAX_USER_ERRORS + 1)).len(),
            MAX_USER_ERRORS + 1
        );
    }

    #[test]
    fn user_error_paths_mix_names_and_indexes() {
        let error = UserError::new(
            [PathSegment::from("senderEmails"), PathSegment::from(2)],
            "EMAIL_INVALID",
            "not an address",
        );
        assert_eq!(error.field, vec!["senderEmails".to_owned(), "2".to_owned()]);
    }
}
