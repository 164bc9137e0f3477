//! Password hashing (argon2id, OWASP parameters) off the async workers, and the password policy.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError, mpsc},
};

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

/// Hashes and verifies passwords on threads of their own, a bounded number at a time and at a
/// lower CPU priority than the rest of the service, so a login flood queues here and takes the
/// CPU that requests leave, instead of starving the async workers or exhausting memory.
#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    threads: Arc<HashingThreads>,
    /// A real hash of a random password, verified when the account does not exist so that
    /// unknown accounts take as long as wrong passwords.
    decoy_hash: Arc<str>,
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> anyhow::Result<Self> {
        let threads = HashingThreads::start(concurrency)?;
        let salt = SaltString::generate(&mut OsRng);
        let decoy = uuid::Uuid::new_v4().to_string();
        let decoy_hash = argon2()
            .hash_password(decoy.as_bytes(), &salt)
            .map_err(|error| anyhow::anyhow!("{error}"))
            .context("hashing the decoy password")?
            .to_string();
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            threads: Arc::new(threads),
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
        self.threads
            .run(move || span.in_scope(work))
            .instrument(tracing::debug_span!("argon2"))
            .await?
    }
}

/// The niceness of the hashing threads: under contention a thread of nice 10 gets about a
/// tenth of the CPU time of one at the default 0, and all of it when nothing else runs.
pub const HASHING_NICENESS: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads, at [`HASHING_NICENESS`] and `SCHED_BATCH`, running hashing jobs in
/// turn. They stop when the last [`PasswordHasher`] holding them is dropped.
struct HashingThreads {
    jobs: mpsc::Sender<Job>,
}

impl HashingThreads {
    fn start(count: usize) -> anyhow::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for index in 0..count {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    lower_own_priority();
                    loop {
                        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = next else {
                            break;
                        };
                        // A panicking job drops its answer channel, which its caller reports;
                        // the thread goes on with the next job.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .context("starting a password-hashing thread")?;
        }
        Ok(Self { jobs })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                // The caller may have gone away meanwhile.
                let _ = answer.send(work());
            }))
            .map_err(|_| anyhow::anyhow!("the password-hashing threads have stopped"))?;
        answered
            .await
            .context("password hashing panicked before it answered")
    }
}

/// Sets the calling thread to `SCHED_BATCH` at [`HASHING_NICENESS`]; any process may lower its
/// own threads' priority. Where that fails the thread runs at normal priority, and says so.
fn lower_own_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    // The crate maps 0..=99 onto niceness 19..=-20: 22 is niceness 10.
    let result = ThreadPriorityValue::try_from(22u8)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .and_then(|value| {
            set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Crossplatform(value),
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
            )
            .map_err(|error| anyhow::anyhow!("{error:?}"))
        });
    if let Err(error) = result {
        tracing::warn!(
            error = %error,
            niceness = HASHING_NICENESS,
            "could not lower the priority of a password-hashing thread; it runs at normal priority"
        );
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

    /// The niceness and scheduling policy of the calling thread, from `/proc/thread-self/stat`
    /// (fields 19 and 41; the command name in field 2 may contain spaces, so count after it).
    #[cfg(target_os = "linux")]
    fn own_niceness_and_policy() -> (i32, u32) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        let after_name = &stat[stat.rfind(')').expect("name") + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        (
            fields[19 - 3].parse().expect("nice"),
            fields[41 - 3].parse().expect("policy"),
        )
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashes_run_on_threads_of_lower_priority_than_the_caller() {
        const SCHED_BATCH: u32 = 3;
        let (caller_nice, _) = own_niceness_and_policy();
        let threads = HashingThreads::start(1).expect("threads");
        let (nice, policy) = threads.run(own_niceness_and_policy).await.expect("ran");
        assert_eq!(policy, SCHED_BATCH);
        assert!(
            nice >= HASHING_NICENESS,
            "nice {nice}, the caller's {caller_nice}"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_thread_goes_on() {
        let threads = HashingThreads::start(1).expect("threads");
        let panicked = threads
            .run(|| -> u8 { panic!("a hashing job panics") })
            .await;
        assert!(panicked.is_err());
        assert_eq!(threads.run(|| 7u8).await.expect("the same thread"), 7);
    }

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
