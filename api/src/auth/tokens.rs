//! Opaque random tokens (refresh tokens, API tokens) and the hashes they are stored as.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Refresh tokens start with this, so a leaked one is recognisable in logs and scanners.
pub const REFRESH_TOKEN_PREFIX: &str = "amr_";
/// API tokens start with this; the authenticator uses it to tell them from JWTs.
pub const API_TOKEN_PREFIX: &str = "amk_";

/// A new token: the prefix and 256 random bits, base64url.
pub fn generate_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Hex SHA-256 of a token. The tokens carry 256 random bits, so a fast hash is enough: there is
/// nothing to brute-force, unlike a password.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_hash_stably() {
        let first = generate_token(API_TOKEN_PREFIX);
        let second = generate_token(API_TOKEN_PREFIX);
        assert_ne!(first, second);
        assert!(first.starts_with(API_TOKEN_PREFIX));
        assert_eq!(first.len(), API_TOKEN_PREFIX.len() + 43);
        assert_eq!(hash_token(&first), hash_token(&first));
        assert_eq!(hash_token(&first).len(), 64);
    }
}
