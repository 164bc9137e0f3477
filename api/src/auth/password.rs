//! Password hashing (argon2id, OWASP parameters) off the async workers, and the password policy.

use std::sync::Arc;

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordVerifier, Version,
    password_hash::{PasswordHasher as _, SaltString, rand_core::OsRng},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// argon2id with 19 MiB of memory, 2 passes and 1 lane: the OWASP recommendation.
fn argon2() -> Argon2<'static> {
    // These constants are valid by construction; `Params::new` only rejects out-of-range values.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes and verifies passwords on the blocking pool, a bounded number at a time, so a login
/// flood queues here instead of starving the async workers or exhausting memory.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified when the account does not exist so that
    /// unknown accounts take as long as wrong passwords.
    decoy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let salt = SaltString::generate(&mut OsRng);
        let decoy = uuid::Uuid::new_v4().to_string();
        let decoy_hash = argon2()
            .hash_password(decoy.as_bytes(), &salt)
            .map_err(|error| anyhow::anyhow!("{error}"))
            .context("hashing the decoy password")?
            .to_string();
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            decoy_hash: decoy_hash.into(),
        })
    }

    /// Hashes a new password into a PHC string.
    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        self.run_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))
        })
        .await
    }

    /// Checks a password against a stored hash; with no stored hash it checks against the decoy
    /// and answers `false`, taking the same time.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> anyhow::Result<bool> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy_hash.to_string());
        let matches = self
            .run_blocking(move || {
                let parsed = PasswordHash::new(&hash).map_err(|error| {
                    anyhow::anyhow!("stored password hash is malformed: {error}")
                })?;
                Ok(argon2()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(known && matches)
    }

    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password hasher is shut down")?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .instrument(tracing::debug_span!("argon2"))
            .await
            .context("password hashing task panicked")?
    }
}

/// Shortest accepted password, in characters. Length, not composition, is what makes a password
/// hard to guess (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password, in characters; bounds the hashing input.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Passwords long enough to pass the length rule that attackers try first.
const BLOCKLIST: &[&str] = &[
    "password1234",
    "password12345",
    "password123456",
    "passwordpassword",
    "123456789012",
    "1234567890123",
    "12345678901234",
    "qwertyuiop12",
    "qwertyuiopasdf",
    "iloveyou1234",
    "letmein12345",
    "welcome12345",
    "administrator",
    "changeme1234",
    "abcdefghijkl",
    "aaaaaaaaaaaa",
    "111111111111",
    "000000000000",
    "qwerty123456",
    "1q2w3e4r5t6y",
    "dashboard123",
    "actionable123",
    "correcthorsebatterystaple",
    "trustno112345",
];

/// Why a new password was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordPolicyError {
    TooShort,
    TooLong,
    Common,
    ContainsEmail,
}

impl PasswordPolicyError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort => "PASSWORD_TOO_SHORT",
            Self::TooLong => "PASSWORD_TOO_LONG",
            Self::Common => "PASSWORD_TOO_COMMON",
            Self::ContainsEmail => "PASSWORD_CONTAINS_EMAIL",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::TooShort => format!("use at least {MIN_PASSWORD_CHARS} characters"),
            Self::TooLong => format!("use at most {MAX_PASSWORD_CHARS} characters"),
            Self::Common => "this password is too common; choose another".into(),
            Self::ContainsEmail => format!(
                "the password must not be built on your e-mail address: without the address \
                 and its local part, at least {MIN_PASSWORD_CHARS} characters must remain"
            ),
        }
    }
}

/// Checks a new password: length bounds, a blocklist, and not built on the account's own
/// address.
///
/// The address rule: the address is the first thing anyone guessing a password for the
/// account knows (NIST SP 800-63B lists the user name among the context-specific words to
/// refuse), so it must not supply the password's length. Every occurrence of the whole address
/// and then of its local part is removed, case-insensitively, and at least
/// [`MIN_PASSWORD_CHARS`] characters must remain: `al@contoso.com` may not use
/// `al@contoso.com!!` or `al1234567890`, nor `developer@contoso.com` use
/// `my-name-is-developer`, while any password with twelve characters of its own passes,
/// whatever it also contains. The rule holds for local parts of every length; a plain "does not
/// contain" test would have to exempt short local parts (a one-letter local part would forbid
/// that letter everywhere), and exempting them let `al1234567890` through.
pub fn check_password_policy(password: &str, email: &str) -> Result<(), PasswordPolicyError> {
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooShort);
    }
    if length > MAX_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooLong);
    }
    let lowered = password.to_lowercase();
    let mut distinct = lowered.chars().collect::<Vec<_>>();
    distinct.sort_unstable();
    distinct.dedup();
    if BLOCKLIST.contains(&lowered.as_str()) || distinct.len() < 3 {
        return Err(PasswordPolicyError::Common);
    }
    let email = email.trim().to_lowercase();
    let local_part = email
        .rsplit_once('@')
        .map_or(email.as_str(), |(local, _)| local);
    let mut rest = lowered;
    for word in [email.as_str(), local_part] {
        if !word.is_empty() {
            rest = rest.replace(word, "");
        }
    }
    if rest.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordPolicyError::ContainsEmail);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_checks_length_not_composition() {
        let email = "dev@contoso.com";
        assert_eq!(
            check_password_policy("short", email),
            Err(PasswordPolicyError::TooShort)
        );
        assert_eq!(
            check_password_policy(&"x".repeat(129), email),
            Err(PasswordPolicyError::TooLong)
        );
        assert_eq!(
            check_password_policy("Password1234", email),
            Err(PasswordPolicyError::Common)
        );
        assert_eq!(
            check_password_policy("abababababab", email),
            Err(PasswordPolicyError::Common)
        );
        assert_eq!(
            check_password_policy("my-name-is-developer", "developer@contoso.com"),
            Err(PasswordPolicyError::ContainsEmail)
        );
        assert_eq!(
            check_password_policy("all lower case words here", email),
            Ok(())
        );
        // Twelve characters counted as characters, not bytes.
        assert_eq!(check_password_policy("ünïcödé-pässwörd", email), Ok(()));
    }

    #[test]
    fn the_address_never_supplies_the_length_whatever_the_local_part() {
        let refused: &[(&str, &str)] = &[
            // Short local parts are not exempt.
            ("al1234567890", "al@contoso.com"),
            ("al@contoso.com!!", "al@contoso.com"),
            ("AL@CONTOSO.COM-2024", "al@contoso.com"),
            ("dev@contoso.com1", "dev@contoso.com"),
            ("dev-dev-dev-dev!", "dev@contoso.com"),
            ("x12345678901", "x@contoso.com"),
            ("Bob.Smith2024!", "bob.smith@contoso.com"),
            ("developer1234", "developer@contoso.com"),
            ("my-name-is-developer", "developer@contoso.com"),
            ("first.last+tag@contoso.com", "first.last+tag@contoso.com"),
            // Unicode local parts are compared case-insensitively too.
            ("JÖRG-jörg-jörg!", "jörg@contoso.com"),
        ];
        for (password, email) in refused {
            assert_eq!(
                check_password_policy(password, email),
                Err(PasswordPolicyError::ContainsEmail),
                "{password:?} for {email}"
            );
        }
        let accepted: &[(&str, &str)] = &[
            ("totally ordinary phrase", "al@contoso.com"),
            ("a long passphrase here", "a@contoso.com"),
            ("developer relations at contoso", "developer@contoso.com"),
            ("dev@contoso.com plus twelve!", "dev@contoso.com"),
            ("correct horse battery", "x@contoso.com"),
        ];
        for (password, email) in accepted {
            assert_eq!(
                check_password_policy(password, email),
                Ok(()),
                "{password:?} for {email}"
            );
        }
        // Length and the blocklist are still checked first.
        assert_eq!(
            check_password_policy("al", "al@contoso.com"),
            Err(PasswordPolicyError::TooShort)
        );
        assert_eq!(
            check_password_policy("password1234", "al@contoso.com"),
            Err(PasswordPolicyError::Common)
        );
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_match() {
        let hasher = PasswordHasher::new(2).expect("hasher");
        let hash = hasher
            .hash("a long enough password".to_owned().into())
            .await
            .expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify(
                    "a long enough password".to_owned().into(),
                    Some(hash.clone())
                )
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("wrong password here".to_owned().into(), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !hasher
                .verify("a long enough password".to_owned().into(), None)
                .await
                .expect("verify")
        );
    }
}
