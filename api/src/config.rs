//! Typed settings read from the environment (and `.env` in development), validated at start-up.
//!
//! Every variable is documented in `.env.example`. A bad value stops the process with a message
//! that names the variable; missing values fall back to development defaults unless
//! `APP_ENV=production`, where keys and the database URL must be given explicitly.

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    str::FromStr,
    time::Duration,
};

use anyhow::{Context, bail};
use base64::{Engine, engine::general_purpose::STANDARD};
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Shortest accepted HMAC signing key, in bytes (HS256 wants at least the hash size).
const MIN_JWT_KEY_BYTES: usize = 32;

/// Where the service runs: development tolerates missing configuration, production does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "production" | "prod" => Ok(Self::Production),
            other => Err(format!(
                "expected `development` or `production`, got `{other}`"
            )),
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            other => Err(format!("expected `pretty` or `json`, got `{other}`")),
        }
    }
}

/// One HMAC key that signs or verifies access tokens, named by its `kid`.
pub struct JwtKey {
    pub kid: String,
    pub secret: SecretBox<Vec<u8>>,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Clone for JwtKey {
    fn clone(&self) -> Self {
        Self {
            kid: self.kid.clone(),
            secret: SecretBox::new(Box::new(self.secret.expose_secret().clone())),
        }
    }
}

/// Where the signing keys came from, so start-up can warn about generated ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    /// Generated on first start in development and kept in this file.
    GeneratedFile(PathBuf),
}

/// Access-token settings.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// The first key signs; every key verifies (rotation keeps old keys here until their tokens
    /// have expired).
    pub keys: Vec<JwtKey>,
    pub key_source: KeySource,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub leeway_seconds: u64,
}

/// Everything the service reads from its environment.
#[derive(Clone, Debug)]
pub struct Settings {
    pub environment: Environment,
    pub host: IpAddr,
    pub port: u16,
    pub database_url: SecretString,
    pub run_migrations: bool,
    pub redis_url: Option<SecretString>,
    /// Prefix for every Redis key and channel, so several deployments (or tests) can share one
    /// server.
    pub redis_prefix: String,
    pub jwt: JwtSettings,
    /// How many password hashes may run at once (each holds 19 MiB).
    pub password_hash_concurrency: usize,
    pub graphiql: bool,
    pub log_format: LogFormat,
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Approve `MY_MAILBOX` submissions automatically when no automated check fails.
    pub auto_approve_my_mailbox: bool,
    /// Answer DKIM key lookups from this JSON file instead of DNS (development and tests).
    pub dkim_dns_fixture: Option<PathBuf>,
    /// GraphQL subscriptions over WebSocket: origins, limits, timeouts.
    pub realtime: RealtimeSettings,
}

impl Settings {
    /// Reads settings from the process environment, after loading `.env` if present.
    pub fn from_env() -> anyhow::Result<Self> {
        // A missing .env is normal; a malformed one is worth stopping for.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(error) if error.not_found() => {}
            Err(error) => return Err(error).context("reading the .env file"),
        }
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads settings from any source of variables; tests pass a map.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Vars(&lookup);
        let environment: Environment = env.parse("APP_ENV")?.unwrap_or(Environment::Development);
        let production = environment == Environment::Production;

        let data_dir = PathBuf::from(env.string("DATA_DIR").unwrap_or_else(|| "data".into()));
        let database_url = match env.string("DATABASE_URL") {
            Some(url) => {
                if !(url.starts_with("sqlite:") || url.starts_with("postgres")) {
                    bail!(
                        "DATABASE_URL must start with `sqlite:` or `postgres://`, got a URL \
                         with another scheme"
                    );
                }
                url
            }
            None if production => bail!("DATABASE_URL is required when APP_ENV=production"),
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("dashboard.sqlite").display()
            ),
        };

        let keys = match env.string("JWT_KEYS") {
            Some(spec) => (
                parse_jwt_keys(&spec).context("JWT_KEYS is invalid")?,
                KeySource::Configured,
            ),
            None if production => bail!(
                "JWT_KEYS is required when APP_ENV=production (generate one with \
                 `dashboard keys generate`)"
            ),
            None => {
                let path = data_dir.join("jwt-dev-key");
                (
                    load_or_create_dev_key(&path)?,
                    KeySource::GeneratedFile(path),
                )
            }
        };

        let access_ttl: u64 = env.parse("ACCESS_TOKEN_TTL_SECONDS")?.unwrap_or(900);
        if !(30..=86_400).contains(&access_ttl) {
            bail!("ACCESS_TOKEN_TTL_SECONDS must be between 30 and 86400, got {access_ttl}");
        }
        let refresh_days: u64 = env.parse("REFRESH_TOKEN_TTL_DAYS")?.unwrap_or(30);
        if !(1..=365).contains(&refresh_days) {
            bail!("REFRESH_TOKEN_TTL_DAYS must be between 1 and 365, got {refresh_days}");
        }
        let concurrency: usize = env
            .parse("PASSWORD_HASH_CONCURRENCY")?
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        if concurrency == 0 {
            bail!("PASSWORD_HASH_CONCURRENCY must be at least 1");
        }
        let max_body_bytes: usize = env.parse("MAX_BODY_BYTES")?.unwrap_or(4 * 1024 * 1024);
        if max_body_bytes < 1024 {
            bail!("MAX_BODY_BYTES must be at least 1024, got {max_body_bytes}");
        }

        Ok(Self {
            environment,
            host: env.parse("HOST")?.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            port: env.parse("PORT")?.unwrap_or(8080),
            database_url: database_url.into(),
            run_migrations: env.parse_bool("RUN_MIGRATIONS")?.unwrap_or(true),
            redis_url: env.string("REDIS_URL").map(Into::into),
            redis_prefix: env
                .string("REDIS_PREFIX")
                .unwrap_or_else(|| "amdash".into()),
            jwt: JwtSettings {
                keys: keys.0,
                key_source: keys.1,
                issuer: env
                    .string("JWT_ISSUER")
                    .unwrap_or_else(|| "actionable-dashboard".into()),
                audience: env
                    .string("JWT_AUDIENCE")
                    .unwrap_or_else(|| "actionable-dashboard-api".into()),
                access_token_ttl: Duration::from_secs(access_ttl),
                refresh_token_ttl: Duration::from_secs(refresh_days * 86_400),
                leeway_seconds: 5,
            },
            password_hash_concurrency: concurrency,
            graphiql: env.parse_bool("GRAPHIQL")?.unwrap_or(!production),
            log_format: env.parse("LOG_FORMAT")?.unwrap_or(LogFormat::Pretty),
            max_body_bytes,
            auto_approve_my_mailbox: env.parse_bool("AUTO_APPROVE_MY_MAILBOX")?.unwrap_or(true),
            dkim_dns_fixture: env.string("DKIM_DNS_FIXTURE").map(PathBuf::from),
            realtime: realtime_settings(&env)?,
        })
    }

    /// Whether the database is the embedded SQLite file.
    pub fn uses_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

/// Variable lookups that name the variable in every error.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// A non-empty value, trimmed.
    fn string(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T>(&self, name: &str) -> anyhow::Result<Option<T>>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.string(name)
            .map(|raw| {
                raw.parse::<T>().map_err(|error| {
                    anyhow::anyhow!("{name} has an invalid value `{raw}`: {error}")
                })
            })
            .transpose()
    }

    fn parse_bool(&self, name: &str) -> anyhow::Result<Option<bool>> {
        self.string(name)
            .map(|raw| match raw.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(anyhow::anyhow!("{name} must be true or false, got `{raw}`")),
            })
            .transpose()
    }
}

/// Which browser pages may open a WebSocket (`ALLOWED_ORIGINS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// `*`: any origin (development only; browsers then need no CORS-like check).
    Any,
    /// Exact `scheme://host[:port]` origins, lower-cased, plus the service's own origin.
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a browser page at `origin` may connect. A request whose `Origin` names the host it
    /// was sent to (`host`, the `Host` header) is same-origin and always allowed.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        let same_origin = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host.trim()))
        });
        match self {
            Self::Any => true,
            Self::List(list) => same_origin || list.contains(&origin),
        }
    }
}

/// Limits and timeouts of GraphQL subscriptions over WebSocket (`graphql-transport-ws`).
#[derive(Clone, Debug)]
pub struct RealtimeSettings {
    /// Browser origins allowed to open a socket; requests without `Origin` (non-browser clients)
    /// are always allowed, since they are not subject to cross-site attacks.
    pub allowed_origins: AllowedOrigins,
    /// Largest accepted WebSocket message; a larger one closes the socket (1009).
    pub max_message_bytes: usize,
    /// Most operations running at once on one socket.
    pub max_subscriptions_per_connection: usize,
    /// Most sockets one user may hold open on one instance.
    pub max_connections_per_user: usize,
    /// How long a socket may stay open without `connection_init` (then 4408).
    pub init_timeout: Duration,
    /// How often the credentials behind a socket are checked again (revoked token, disabled
    /// user, changed role); an access token's expiry closes the socket at the expiry itself.
    pub auth_recheck_interval: Duration,
}

fn realtime_settings(env: &Vars<'_>) -> anyhow::Result<RealtimeSettings> {
    let allowed_origins = match env.string("ALLOWED_ORIGINS") {
        Some(spec) if spec.trim() == "*" => AllowedOrigins::Any,
        Some(spec) => {
            let mut origins = Vec::new();
            for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let parsed = url::Url::parse(entry).ok().filter(|url| {
                    matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some()
                        && url.path() == "/"
                        && url.query().is_none()
                        && url.fragment().is_none()
                        && url.username().is_empty()
                });
                let Some(url) = parsed else {
                    bail!(
                        "ALLOWED_ORIGINS has `{entry}`, which is not an origin such as \
                         `https://dashboard.contoso.com` (scheme, host and optional port only)"
                    );
                };
                origins.push(url.origin().ascii_serialization().to_ascii_lowercase());
            }
            AllowedOrigins::List(origins)
        }
        None => AllowedOrigins::List(Vec::new()),
    };
    let max_message_bytes: usize = env.parse("WS_MAX_MESSAGE_BYTES")?.unwrap_or(64 * 1024);
    if !(1024..=16 * 1024 * 1024).contains(&max_message_bytes) {
        bail!("WS_MAX_MESSAGE_BYTES must be between 1024 and 16777216, got {max_message_bytes}");
    }
    let max_subscriptions: usize = env
        .parse("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION")?
        .unwrap_or(50);
    if !(1..=10_000).contains(&max_subscriptions) {
        bail!(
            "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION must be between 1 and 10000, got \
             {max_subscriptions}"
        );
    }
    let max_connections: usize = env.parse("WS_MAX_CONNECTIONS_PER_USER")?.unwrap_or(16);
    if !(1..=10_000).contains(&max_connections) {
        bail!("WS_MAX_CONNECTIONS_PER_USER must be between 1 and 10000, got {max_connections}");
    }
    let init_timeout: u64 = env.parse("WS_INIT_TIMEOUT_SECONDS")?.unwrap_or(10);
    if !(1..=300).contains(&init_timeout) {
        bail!("WS_INIT_TIMEOUT_SECONDS must be between 1 and 300, got {init_timeout}");
    }
    let recheck: u64 = env.parse("WS_AUTH_RECHECK_SECONDS")?.unwrap_or(30);
    if !(1..=3600).contains(&recheck) {
        bail!("WS_AUTH_RECHECK_SECONDS must be between 1 and 3600, got {recheck}");
    }
    Ok(RealtimeSettings {
        allowed_origins,
        max_message_bytes,
        max_subscriptions_per_connection: max_subscriptions,
        max_connections_per_user: max_connections,
        init_timeout: Duration::from_secs(init_timeout),
        auth_recheck_interval: Duration::from_secs(recheck),
    })
}

/// Parses `kid:base64secret[,kid:base64secret...]`.
pub fn parse_jwt_keys(spec: &str) -> anyhow::Result<Vec<JwtKey>> {
    let mut keys: Vec<JwtKey> = Vec::new();
    for (index, entry) in spec
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let Some((kid, secret)) = entry.split_once(':') else {
            bail!("entry {} is not of the form `kid:base64secret`", index + 1);
        };
        let kid = kid.trim();
        if kid.is_empty()
            || kid.len() > 64
            || !kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!(
                "entry {} has an invalid kid (1-64 characters of A-Z a-z 0-9 - _ .)",
                index + 1
            );
        }
        if keys.iter().any(|k| k.kid == kid) {
            bail!("kid `{kid}` appears twice");
        }
        let secret = STANDARD
            .decode(secret.trim())
            .with_context(|| format!("the secret of kid `{kid}` is not valid base64"))?;
        if secret.len() < MIN_JWT_KEY_BYTES {
            bail!(
                "the secret of kid `{kid}` has {} bytes; at least {MIN_JWT_KEY_BYTES} are required",
                secret.len()
            );
        }
        keys.push(JwtKey {
            kid: kid.to_owned(),
            secret: SecretBox::new(Box::new(secret)),
        });
    }
    if keys.is_empty() {
        bail!("no key given");
    }
    Ok(keys)
}

/// A fresh `kid:secret` entry for `JWT_KEYS`.
pub fn generate_jwt_key_entry() -> String {
    use rand::RngCore;
    let mut secret = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let kid = format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    format!("{kid}:{}", STANDARD.encode(secret))
}

/// Development only: the signing key is generated once and kept beside the SQLite file, so
/// restarts do not log everybody out.
fn load_or_create_dev_key(path: &Path) -> anyhow::Result<Vec<JwtKey>> {
    if path.exists() {
        let spec = std::fs::read_to_string(path)
            .with_context(|| format!("reading the development signing key {}", path.display()))?;
        return parse_jwt_keys(&spec)
            .with_context(|| format!("the development signing key {} is invalid", path.display()));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the data directory {}", parent.display()))?;
    }
    let entry = generate_jwt_key_entry();
    write_private_file(path, &entry)
        .with_context(|| format!("writing the development signing key {}", path.display()))?;
    parse_jwt_keys(&entry)
}

fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        match settings(pairs) {
            Ok(_) => panic!("expected a configuration error for {pairs:?}"),
            Err(error) => format!("{error:#}"),
        }
    }

    const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj";

    #[test]
    fn a_bad_port_names_the_variable() {
        let message = error_of(&[("PORT", "eighty"), ("JWT_KEYS", KEY)]);
        assert!(message.contains("PORT"), "{message}");
    }

    #[test]
    fn production_requires_a_database_url_and_keys() {
        let message = error_of(&[("APP_ENV", "production"), ("JWT_KEYS", KEY)]);
        assert!(message.contains("DATABASE_URL"), "{message}");
        let message = error_of(&[
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://x@localhost/db"),
        ]);
        assert!(message.contains("JWT_KEYS"), "{message}");
    }

    #[test]
    fn production_with_keys_and_database_starts_without_graphiql() {
        let settings = settings(&[
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("JWT_KEYS", KEY),
        ])
        .expect("valid production settings");
        assert!(!settings.graphiql);
        assert_eq!(settings.jwt.key_source, KeySource::Configured);
    }

    #[test]
    fn short_or_malformed_jwt_keys_are_rejected() {
        for (spec, needle) in [
            ("k1:c2hvcnQ=", "at least 32"),
            ("k1", "kid:base64secret"),
            ("k1:!!!notbase64", "base64"),
            (&format!("{KEY},{KEY}"), "twice"),
            (
                "bad kid:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj",
                "invalid kid",
            ),
        ] {
            let message = error_of(&[("JWT_KEYS", spec)]);
            assert!(message.contains("JWT_KEYS"), "{message}");
            assert!(message.contains(needle), "{spec}: {message}");
        }
    }

    #[test]
    fn unknown_scheme_and_bad_booleans_are_rejected() {
        let message = error_of(&[("DATABASE_URL", "mysql://x"), ("JWT_KEYS", KEY)]);
        assert!(message.contains("DATABASE_URL"), "{message}");
        let message = error_of(&[("RUN_MIGRATIONS", "maybe"), ("JWT_KEYS", KEY)]);
        assert!(message.contains("RUN_MIGRATIONS"), "{message}");
        let message = error_of(&[("ACCESS_TOKEN_TTL_SECONDS", "5"), ("JWT_KEYS", KEY)]);
        assert!(message.contains("ACCESS_TOKEN_TTL_SECONDS"), "{message}");
    }

    #[test]
    fn allowed_origins_are_exact_and_same_origin_is_always_allowed() {
        let settings = settings(&[
            ("JWT_KEYS", KEY),
            (
                "ALLOWED_ORIGINS",
                "https://Dashboard.contoso.com, http://localhost:3000/",
            ),
        ])
        .expect("valid origins");
        let origins = &settings.realtime.allowed_origins;
        assert!(origins.allows("https://dashboard.contoso.com", None));
        assert!(origins.allows("http://localhost:3000", None));
        assert!(!origins.allows("https://dashboard.contoso.com.evil.example", None));
        assert!(!origins.allows("http://localhost:3001", None));
        assert!(!origins.allows("null", None));
        assert!(origins.allows("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(!origins.allows("http://evil.example", Some("127.0.0.1:8080")));

        let message = error_of(&[("JWT_KEYS", KEY), ("ALLOWED_ORIGINS", "contoso.com")]);
        assert!(message.contains("ALLOWED_ORIGINS"), "{message}");
        let message = error_of(&[
            ("JWT_KEYS", KEY),
            ("ALLOWED_ORIGINS", "https://contoso.com/app"),
        ]);
        assert!(message.contains("ALLOWED_ORIGINS"), "{message}");
        let message = error_of(&[("JWT_KEYS", KEY), ("WS_MAX_MESSAGE_BYTES", "10")]);
        assert!(message.contains("WS_MAX_MESSAGE_BYTES"), "{message}");
    }

    #[test]
    fn development_generates_a_signing_key_once_and_reuses_it() {
        let dir = std::env::temp_dir().join(format!("amdash-config-{}", uuid::Uuid::new_v4()));
        let dir_str = dir.to_string_lossy().into_owned();
        let first = settings(&[("DATA_DIR", &dir_str)]).expect("development defaults");
        let second = settings(&[("DATA_DIR", &dir_str)]).expect("development defaults");
        assert!(matches!(first.jwt.key_source, KeySource::GeneratedFile(_)));
        assert_eq!(
            first.jwt.keys[0].secret.expose_secret(),
            second.jwt.keys[0].secret.expose_secret()
        );
        assert!(first.database_url.expose_secret().starts_with("sqlite://"));
        std::fs::remove_dir_all(dir).ok();
    }
}
