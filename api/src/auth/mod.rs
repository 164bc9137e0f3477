//! Who is calling: passwords, access tokens, refresh-token sessions, API tokens and roles.
//!
//! Every permission check goes through [`Viewer::require`], whether called from a resolver or
//! from the [`RoleGuard`] on a field.

mod accounts;
mod jwt;
mod password;
mod tokens;
mod viewer;

pub use accounts::{
    AccountError, IssuedApiToken, IssuedSession, create_api_token, create_user, log_in, log_out,
    refresh_session, revoke_api_token, set_user_disabled, sign_up,
};
pub use jwt::{AccessClaims, TokenSigner};
pub use password::{PasswordHasher, PasswordPolicyError, check_password_policy};
pub use tokens::{API_TOKEN_PREFIX, REFRESH_TOKEN_PREFIX, hash_token};
pub use viewer::{AuthRejection, Credential, Principal, Role, RoleGuard, Viewer, authenticate};
