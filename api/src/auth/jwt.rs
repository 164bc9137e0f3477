//! Short-lived access tokens: HS256 JWTs whose `kid` selects one of the configured keys.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::JwtSettings;

/// The one algorithm we sign with and accept. Pinning it rules out `none` and the HS/RS
/// confusion attack, whatever a token's header claims.
const ALGORITHM: Algorithm = Algorithm::HS256;

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    /// The role when the token was issued (the database's current role is what is enforced).
    pub role: String,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: Uuid,
    /// The refresh-token family (the login session) this token belongs to.
    pub sid: Uuid,
}

/// Signs access tokens with the active key and verifies them with any configured key.
pub struct TokenSigner {
    active_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: chrono::Duration,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("active_kid", &self.active_kid)
            .field("kids", &self.decoding.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a presented access token was refused. Details are for logs only.
#[derive(Debug, thiserror::Error)]
pub enum TokenRejected {
    #[error("token header is malformed")]
    MalformedHeader,
    #[error("token uses algorithm {0:?}")]
    WrongAlgorithm(Algorithm),
    #[error("token has no kid or an unknown kid")]
    UnknownKey,
    #[error("token failed validation: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
}

impl TokenSigner {
    pub fn new(settings: &JwtSettings) -> anyhow::Result<Self> {
        let active = settings
            .keys
            .first()
            .ok_or_else(|| anyhow::anyhow!("no JWT key configured"))?;
        let decoding = settings
            .keys
            .iter()
            .map(|key| {
                (
                    key.kid.clone(),
                    DecodingKey::from_secret(key.secret.expose_secret()),
                )
            })
            .collect();

        let mut validation = Validation::new(ALGORITHM);
        validation.leeway = settings.leeway_seconds;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[&settings.audience]);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);

        Ok(Self {
            active_kid: active.kid.clone(),
            encoding: EncodingKey::from_secret(active.secret.expose_secret()),
            decoding,
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            ttl: chrono::Duration::from_std(settings.access_token_ttl)?,
        })
    }

    /// Issues an access token; returns it with its expiry.
    pub fn issue(
        &self,
        user_id: Uuid,
        role: &str,
        session_family: Uuid,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let now = Utc::now();
        let expires_at = now + self.ttl;
        let claims = AccessClaims {
            sub: user_id,
            role: role.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: expires_at.timestamp(),
            nbf: now.timestamp(),
            iat: now.timestamp(),
            jti: Uuid::new_v4(),
            sid: session_family,
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.active_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)?;
        Ok((token, expires_at))
    }

    /// Verifies signature, algorithm, key, issuer, audience and time claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenRejected> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| TokenRejected::MalformedHeader)?;
        if header.alg != ALGORITHM {
            return Err(TokenRejected::WrongAlgorithm(header.alg));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenRejected::UnknownKey)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(TokenRejected::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    use super::*;
    use crate::config::{KeySource, parse_jwt_keys};

    fn settings(keys: &str) -> JwtSettings {
        JwtSettings {
            keys: parse_jwt_keys(keys).expect("test keys"),
            key_source: KeySource::Configured,
            issuer: "iss".into(),
            audience: "aud".into(),
            access_token_ttl: Duration::from_secs(60),
            refresh_token_ttl: Duration::from_secs(600),
            leeway_seconds: 5,
        }
    }

    const OLD: &str = "old:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj";
    const NEW: &str = "new:ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZm";

    #[test]
    fn rotation_keeps_tokens_signed_with_the_previous_key_valid() {
        let before = TokenSigner::new(&settings(OLD)).expect("signer");
        let (token, _) = before
            .issue(Uuid::new_v4(), "SUBMITTER", Uuid::new_v4())
            .expect("issue");
        let after = TokenSigner::new(&settings(&format!("{NEW},{OLD}"))).expect("signer");
        assert!(after.verify(&token).is_ok());
        let dropped = TokenSigner::new(&settings(NEW)).expect("signer");
        assert!(matches!(
            dropped.verify(&token),
            Err(TokenRejected::UnknownKey)
        ));
    }

    #[test]
    fn unsigned_tokens_are_rejected() {
        let signer = TokenSigner::new(&settings(OLD)).expect("signer");
        let (token, _) = signer
            .issue(Uuid::new_v4(), "ADMIN", Uuid::new_v4())
            .expect("issue");
        let payload = token.split('.').nth(1).expect("payload");
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"old"}"#);
        assert!(signer.verify(&format!("{header}.{payload}.")).is_err());
    }
}
