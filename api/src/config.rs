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

pub use crate::rate_limit::{Limit, RateLimitSettings};

/// Shortest accepted HMAC signing key, in bytes (HS256 wants at least the hash size).
const MIN_JWT_KEY_BYTES: usize = 32;

/// The sender of outgoing e-mail in development when `MAIL_FROM` is not set.
pub const DEV_MAIL_FROM: &str = "Actionable dashboard <no-reply@localhost>";

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

/// Which way outgoing e-mail leaves the service (`MAIL_TRANSPORT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailTransportKind {
    Log,
    File,
    Smtp,
}

impl FromStr for MailTransportKind {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.to_ascii_lowercase().as_str() {
            "log" => Ok(Self::Log),
            "file" => Ok(Self::File),
            "smtp" => Ok(Self::Smtp),
            other => Err(format!("expected `log`, `file` or `smtp`, got `{other}`")),
        }
    }
}

/// Where outgoing e-mail goes.
#[derive(Clone, Debug)]
pub enum MailTransportSettings {
    /// Into the service's log (development): metadata at info, the message at debug.
    Log,
    /// One `.eml` file per message in this folder (development).
    File { dir: PathBuf },
    /// To an SMTP server. The URL may hold the server's password, hence secret.
    Smtp { url: SecretString },
}

/// Outgoing e-mail: the transport, the sender, and the timing of the delivery worker.
#[derive(Clone, Debug)]
pub struct MailSettings {
    pub transport: MailTransportSettings,
    /// The `From` of every message.
    pub from: lettre::message::Mailbox,
    /// How often the worker looks for due messages.
    pub poll_interval: Duration,
    /// Delay before the first retry of a failed delivery; each further failure doubles it.
    pub retry_base: Duration,
    /// Longest delay between two attempts.
    pub retry_max: Duration,
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
    /// How long reading a request body may take in all (408 after that), so a client that
    /// announces a body and stops sending cannot hold a connection forever.
    pub body_read_timeout: Duration,
    /// Approve `MY_MAILBOX` submissions automatically when no automated check fails.
    pub auto_approve_my_mailbox: bool,
    /// Answer DKIM key lookups from this JSON file instead of DNS (development and tests).
    pub dkim_dns_fixture: Option<PathBuf>,
    /// How long a reviewer's claim on a submission lasts unless renewed.
    pub claim_lease: Duration,
    /// Diagnostics: report the SQL statements of each operation in `extensions.sqlStatements`.
    pub expose_sql_statement_count: bool,
    /// Decision e-mails.
    pub mail: MailSettings,
    /// GraphQL subscriptions over WebSocket: origins, limits, timeouts.
    pub realtime: RealtimeSettings,
    /// Budgets per user, account and client address (`RATE_LIMIT_*`).
    pub rate_limits: RateLimitSettings,
    /// The header a trusted reverse proxy puts the client's address in (`CLIENT_IP_HEADER`);
    /// without it, the peer address of the TCP connection is the client's.
    pub client_ip_header: Option<actix_web::http::header::HeaderName>,
    /// Whether `__schema` and `__type` are answered (`GRAPHQL_INTROSPECTION`).
    pub introspection: bool,
    /// Whether validation errors suggest similar field names (`GRAPHQL_SUGGESTIONS`).
    pub field_suggestions: bool,
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
            // One core is left to the async workers: with every core hashing, a login flood
            // starves other requests of CPU even though no worker is blocked (bench/README.md).
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
            });
        if !(1..=256).contains(&concurrency) {
            bail!("PASSWORD_HASH_CONCURRENCY must be between 1 and 256, got {concurrency}");
        }
        let max_body_bytes: usize = env.parse("MAX_BODY_BYTES")?.unwrap_or(4 * 1024 * 1024);
        if max_body_bytes < 1024 {
            bail!("MAX_BODY_BYTES must be at least 1024, got {max_body_bytes}");
        }
        let body_read_timeout: u64 = env.parse("BODY_READ_TIMEOUT_SECONDS")?.unwrap_or(30);
        if !(1..=600).contains(&body_read_timeout) {
            bail!("BODY_READ_TIMEOUT_SECONDS must be between 1 and 600, got {body_read_timeout}");
        }
        let mail = mail_settings(&env, production, &data_dir)?;

        let claim_lease_seconds: u64 = env.parse("CLAIM_LEASE_SECONDS")?.unwrap_or(1800);
        if !(1..=7 * 86_400).contains(&claim_lease_seconds) {
            bail!("CLAIM_LEASE_SECONDS must be between 1 and 604800, got {claim_lease_seconds}");
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
            body_read_timeout: Duration::from_secs(body_read_timeout),
            auto_approve_my_mailbox: env.parse_bool("AUTO_APPROVE_MY_MAILBOX")?.unwrap_or(true),
            dkim_dns_fixture: env.string("DKIM_DNS_FIXTURE").map(PathBuf::from),
            claim_lease: Duration::from_secs(claim_lease_seconds),
            expose_sql_statement_count: env
                .parse_bool("EXPOSE_SQL_STATEMENT_COUNT")?
                .unwrap_or(false),
            mail,
            realtime: realtime_settings(&env)?,
            rate_limits: rate_limit_settings(&env)?,
            client_ip_header: match env.string("CLIENT_IP_HEADER") {
                None => None,
                Some(name) => Some(
                    actix_web::http::header::HeaderName::from_bytes(name.as_bytes()).map_err(
                        |_| anyhow::anyhow!("CLIENT_IP_HEADER is not a header name: `{name}`"),
                    )?,
                ),
            },
            introspection: env
                .parse_bool("GRAPHQL_INTROSPECTION")?
                .unwrap_or(!production),
            field_suggestions: env
                .parse_bool("GRAPHQL_SUGGESTIONS")?
                .unwrap_or(!production),
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

    /// A number that must lie within `range`.
    fn parse_in(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> anyhow::Result<Option<u64>> {
        let value: Option<u64> = self.parse(name)?;
        match value {
            Some(value) if !range.contains(&value) => bail!(
                "{name} must be between {} and {}, got {value}",
                range.start(),
                range.end()
            ),
            _ => Ok(value),
        }
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

/// Reads the `MAIL_*` and `SMTP_URL` variables.
///
/// Production sends over SMTP unless told otherwise: a service that promises to e-mail its
/// decisions must not fall back to writing them into a log unnoticed.
fn mail_settings(env: &Vars, production: bool, data_dir: &Path) -> anyhow::Result<MailSettings> {
    let kind = env.parse("MAIL_TRANSPORT")?.unwrap_or(if production {
        MailTransportKind::Smtp
    } else {
        MailTransportKind::Log
    });
    let transport = match kind {
        MailTransportKind::Log => MailTransportSettings::Log,
        MailTransportKind::File => MailTransportSettings::File {
            dir: env
                .string("MAIL_FILE_DIR")
                .map_or_else(|| data_dir.join("mail"), PathBuf::from),
        },
        MailTransportKind::Smtp => {
            let Some(url) = env.string("SMTP_URL") else {
                bail!(
                    "SMTP_URL is required when MAIL_TRANSPORT=smtp (the default when \
                     APP_ENV=production), e.g. smtps://USER:PASSWORD@HOST:465"
                );
            };
            check_smtp_url(&url).map_err(|reason| anyhow::anyhow!("SMTP_URL {reason}"))?;
            MailTransportSettings::Smtp { url: url.into() }
        }
    };

    let from = match env.string("MAIL_FROM") {
        Some(raw) => raw.parse::<lettre::message::Mailbox>().map_err(|error| {
            anyhow::anyhow!(
                "MAIL_FROM has an invalid value `{raw}`: {error} (expected \
                 `Name <address@domain>` or `address@domain`)"
            )
        })?,
        None if production && kind == MailTransportKind::Smtp => bail!(
            "MAIL_FROM is required when APP_ENV=production and MAIL_TRANSPORT=smtp, \
             e.g. `Actionable dashboard <no-reply@example.com>`"
        ),
        None => DEV_MAIL_FROM
            .parse()
            .context("the development default of MAIL_FROM")?,
    };

    let poll_ms = env
        .parse_in("MAIL_POLL_INTERVAL_MS", 10..=600_000)?
        .unwrap_or(1_000);
    let base_ms = env
        .parse_in("MAIL_RETRY_BASE_MS", 10..=3_600_000)?
        .unwrap_or(5_000);
    let max_ms = env
        .parse_in("MAIL_RETRY_MAX_MS", 10..=86_400_000)?
        .unwrap_or(900_000);
    if max_ms < base_ms {
        bail!("MAIL_RETRY_MAX_MS ({max_ms}) must not be less than MAIL_RETRY_BASE_MS ({base_ms})");
    }

    Ok(MailSettings {
        transport,
        from,
        poll_interval: Duration::from_millis(poll_ms),
        retry_base: Duration::from_millis(base_ms),
        retry_max: Duration::from_millis(max_ms),
    })
}

/// Checks an SMTP URL the way lettre will read it, and refuses what lettre would silently get
/// wrong. The error never repeats the URL, which may hold a password.
///
/// lettre 0.11 ignores query parameters other than `tls` (so `?tsl=required` would quietly mean
/// "no TLS"), and ignores a user name given without a password (no authentication at all).
fn check_smtp_url(raw: &str) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, Tokio1Executor};

    let url = url::Url::parse(raw).map_err(|error| format!("is not a valid URL: {error}"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("has no host")?;
    let mut tls = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "tls" if tls.is_none() => tls = Some(value.into_owned()),
            "tls" => return Err("gives `tls` twice".into()),
            other => {
                return Err(format!(
                    "has an unknown parameter `{other}` (only `tls` is understood)"
                ));
            }
        }
    }
    let encrypted = match (url.scheme(), tls.as_deref()) {
        ("smtps", None) => true,
        ("smtps", Some(_)) => {
            return Err("must not set `tls` with smtps:// (TLS from the first byte)".into());
        }
        ("smtp", None) => false,
        ("smtp", Some("required")) => true,
        ("smtp", Some("opportunistic")) => false,
        ("smtp", Some(other)) => {
            return Err(format!(
                "has `tls={other}`; expected `tls=required` or `tls=opportunistic`"
            ));
        }
        (other, _) => {
            return Err(format!(
                "must start with smtp:// or smtps://, not {other}://"
            ));
        }
    };
    let has_password = url.password().is_some_and(|p| !p.is_empty());
    if !url.username().is_empty() && !has_password {
        return Err("has a user name but no password (write smtp://USER:PASSWORD@HOST)".into());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if has_password && !encrypted && !loopback {
        return Err(format!(
            "would send the password to {host} without guaranteed encryption: use smtps:// \
             or ?tls=required"
        ));
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(raw)
        .map(|_| ())
        .map_err(|error| format!("is not accepted by the mail library: {error}"))
}

/// Reads the `RATE_LIMIT_*` budgets: `BUDGET/WINDOW` (such as `10/15m`) or `off`.
fn rate_limit_settings(env: &Vars<'_>) -> anyhow::Result<RateLimitSettings> {
    let defaults = RateLimitSettings::default();
    let read = |name: &str, default: Option<Limit>| -> anyhow::Result<Option<Limit>> {
        match env.string(name) {
            None => Ok(default),
            Some(raw) if raw.eq_ignore_ascii_case("off") => Ok(None),
            Some(raw) => raw
                .parse::<Limit>()
                .map(Some)
                .map_err(|error| anyhow::anyhow!("{name} has an invalid value `{raw}`: {error}")),
        }
    };
    let query_cost = read("RATE_LIMIT_QUERY_COST", defaults.query_cost)?;
    if let Some(limit) = query_cost
        && (limit.budget.get() as usize) < crate::graphql::MAX_COMPLEXITY
    {
        bail!(
            "RATE_LIMIT_QUERY_COST must allow at least one operation of the highest accepted \
             cost ({}), got {limit}",
            crate::graphql::MAX_COMPLEXITY
        );
    }
    Ok(RateLimitSettings {
        query_cost,
        log_in_per_account: read("RATE_LIMIT_LOG_IN_PER_ACCOUNT", defaults.log_in_per_account)?,
        log_in_per_address: read("RATE_LIMIT_LOG_IN_PER_ADDRESS", defaults.log_in_per_address)?,
        sign_up_per_address: read(
            "RATE_LIMIT_SIGN_UP_PER_ADDRESS",
            defaults.sign_up_per_address,
        )?,
    })
}

/// Which browser pages may call the API: CORS for HTTP and the `Origin` check of WebSocket
/// upgrades (`ALLOWED_ORIGINS`).
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
    /// Most sockets open on one instance, authenticated or not; an upgrade beyond it gets 503.
    pub max_connections: usize,
    /// How long a socket may stay open without `connection_init` (then 4408).
    pub init_timeout: Duration,
    /// How often the credentials behind a socket are checked again (revoked token, disabled
    /// user, changed role); an access token's expiry closes the socket at the expiry itself.
    pub auth_recheck_interval: Duration,
    /// Inbound messages one socket may send per second, sustained (a token bucket refilled at
    /// this rate); beyond its burst the socket is closed with 4429.
    pub max_messages_per_second: u32,
    /// How many messages a socket may send at once before the rate applies (the bucket's size).
    pub message_burst: u32,
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
    let max_sockets: usize = env.parse("WS_MAX_CONNECTIONS")?.unwrap_or(20_000);
    if !(1..=1_000_000).contains(&max_sockets) {
        bail!("WS_MAX_CONNECTIONS must be between 1 and 1000000, got {max_sockets}");
    }
    let init_timeout: u64 = env.parse("WS_INIT_TIMEOUT_SECONDS")?.unwrap_or(10);
    if !(1..=300).contains(&init_timeout) {
        bail!("WS_INIT_TIMEOUT_SECONDS must be between 1 and 300, got {init_timeout}");
    }
    let recheck: u64 = env.parse("WS_AUTH_RECHECK_SECONDS")?.unwrap_or(30);
    if !(1..=3600).contains(&recheck) {
        bail!("WS_AUTH_RECHECK_SECONDS must be between 1 and 3600, got {recheck}");
    }
    let max_messages_per_second: u32 = env.parse("WS_MAX_MESSAGES_PER_SECOND")?.unwrap_or(10);
    if !(1..=10_000).contains(&max_messages_per_second) {
        bail!(
            "WS_MAX_MESSAGES_PER_SECOND must be between 1 and 10000, got \
             {max_messages_per_second}"
        );
    }
    let message_burst: u32 = env.parse("WS_MESSAGE_BURST")?.unwrap_or(100);
    if !(1..=100_000).contains(&message_burst) {
        bail!("WS_MESSAGE_BURST must be between 1 and 100000, got {message_burst}");
    }
    Ok(RealtimeSettings {
        allowed_origins,
        max_message_bytes,
        max_subscriptions_per_connection: max_subscriptions,
        max_connections_per_user: max_connections,
        max_connections: max_sockets,
        init_timeout: Duration::from_secs(init_timeout),
        auth_recheck_interval: Duration::from_secs(recheck),
        max_messages_per_second,
        message_burst,
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
    fn rate_limits_have_defaults_can_be_turned_off_and_name_bad_values() {
        let defaults = settings(&[("JWT_KEYS", KEY)]).expect("defaults");
        assert_eq!(defaults.rate_limits, RateLimitSettings::default());
        assert!(defaults.client_ip_header.is_none());
        let tuned = settings(&[
            ("JWT_KEYS", KEY),
            ("RATE_LIMIT_LOG_IN_PER_ACCOUNT", "off"),
            ("RATE_LIMIT_SIGN_UP_PER_ADDRESS", "5/1d"),
            ("CLIENT_IP_HEADER", "X-Real-IP"),
        ])
        .expect("tuned");
        assert_eq!(tuned.rate_limits.log_in_per_account, None);
        assert_eq!(
            tuned.rate_limits.sign_up_per_address.map(|l| l.window),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            tuned.client_ip_header.map(|h| h.as_str().to_owned()),
            Some("x-real-ip".to_owned())
        );
        for (name, value) in [
            ("RATE_LIMIT_LOG_IN_PER_ADDRESS", "ten per minute"),
            ("RATE_LIMIT_QUERY_COST", "1999/1m"),
            ("RATE_LIMIT_SIGN_UP_PER_ADDRESS", "0/1h"),
            ("CLIENT_IP_HEADER", "not a header"),
        ] {
            let message = error_of(&[("JWT_KEYS", KEY), (name, value)]);
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn production_turns_introspection_and_suggestions_off_unless_asked() {
        let production = [
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("JWT_KEYS", KEY),
            ("MAIL_TRANSPORT", "log"),
        ];
        let closed = settings(&production).expect("production");
        assert!(!closed.introspection && !closed.field_suggestions);
        let mut asked = production.to_vec();
        asked.push(("GRAPHQL_INTROSPECTION", "true"));
        assert!(settings(&asked).expect("production").introspection);
        let open = settings(&[("JWT_KEYS", KEY)]).expect("development");
        assert!(open.introspection && open.field_suggestions);
    }

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
            ("SMTP_URL", "smtps://mailer:secret@smtp.example.com"),
            ("MAIL_FROM", "Dashboard <no-reply@example.com>"),
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
    fn development_logs_mail_from_a_default_sender() {
        let defaults = settings(&[("JWT_KEYS", KEY)]).expect("development defaults");
        assert!(matches!(
            defaults.mail.transport,
            MailTransportSettings::Log
        ));
        assert_eq!(defaults.mail.from.email.to_string(), "no-reply@localhost");
        assert_eq!(defaults.mail.poll_interval, Duration::from_secs(1));
        assert_eq!(defaults.mail.retry_base, Duration::from_secs(5));
        assert_eq!(defaults.mail.retry_max, Duration::from_secs(900));

        let file =
            settings(&[("JWT_KEYS", KEY), ("MAIL_TRANSPORT", "file")]).expect("file transport");
        let MailTransportSettings::File { dir } = file.mail.transport else {
            panic!("expected the file transport");
        };
        assert!(dir.ends_with("mail"), "{}", dir.display());
    }

    #[test]
    fn production_sends_mail_over_smtp_and_needs_a_url_and_a_sender() {
        let production = [
            ("APP_ENV", "production"),
            ("DATABASE_URL", "postgres://x@localhost/db"),
            ("JWT_KEYS", KEY),
        ];
        let message = error_of(&production);
        assert!(message.contains("SMTP_URL"), "{message}");

        let mut with_url = production.to_vec();
        with_url.push(("SMTP_URL", "smtp://smtp.example.com:587?tls=required"));
        let message = error_of(&with_url);
        assert!(message.contains("MAIL_FROM"), "{message}");

        let mut logged = production.to_vec();
        logged.push(("MAIL_TRANSPORT", "log"));
        let settings = settings(&logged).expect("production may log mail when told to");
        assert!(matches!(
            settings.mail.transport,
            MailTransportSettings::Log
        ));
    }

    #[test]
    fn bad_mail_settings_name_the_variable() {
        for (pairs, variable, needle) in [
            (
                vec![("MAIL_TRANSPORT", "pigeon")],
                "MAIL_TRANSPORT",
                "pigeon",
            ),
            (vec![("MAIL_TRANSPORT", "smtp")], "SMTP_URL", "required"),
            (
                vec![("MAIL_FROM", "not an address")],
                "MAIL_FROM",
                "invalid",
            ),
            (
                vec![("MAIL_POLL_INTERVAL_MS", "0")],
                "MAIL_POLL_INTERVAL_MS",
                "between",
            ),
            (
                vec![("MAIL_POLL_INTERVAL_MS", "soon")],
                "MAIL_POLL_INTERVAL_MS",
                "soon",
            ),
            (
                vec![("MAIL_RETRY_BASE_MS", "-5")],
                "MAIL_RETRY_BASE_MS",
                "invalid",
            ),
            (
                vec![
                    ("MAIL_RETRY_BASE_MS", "60000"),
                    ("MAIL_RETRY_MAX_MS", "1000"),
                ],
                "MAIL_RETRY_MAX_MS",
                "less than",
            ),
        ] {
            let mut pairs = pairs;
            pairs.push(("JWT_KEYS", KEY));
            let message = error_of(&pairs);
            assert!(message.contains(variable), "{pairs:?}: {message}");
            assert!(message.contains(needle), "{pairs:?}: {message}");
        }
    }

    #[test]
    fn smtp_urls_that_lettre_would_misread_are_refused_without_echoing_the_password() {
        for (url, needle) in [
            ("http://smtp.example.com", "smtp://"),
            ("smtp://", "host"),
            (
                "smtp://smtp.example.com?tsl=required",
                "unknown parameter `tsl`",
            ),
            ("smtp://smtp.example.com?tls=always", "tls=always"),
            ("smtps://smtp.example.com?tls=required", "smtps://"),
            ("smtp://mailer@smtp.example.com?tls=required", "no password"),
            (
                "smtp://mailer:hunter2@smtp.example.com:25",
                "without guaranteed encryption",
            ),
            (
                "smtp://mailer:hunter2@smtp.example.com?tls=opportunistic",
                "without guaranteed encryption",
            ),
        ] {
            let message = error_of(&[
                ("JWT_KEYS", KEY),
                ("MAIL_TRANSPORT", "smtp"),
                ("SMTP_URL", url),
            ]);
            assert!(message.contains("SMTP_URL"), "{url}: {message}");
            assert!(message.contains(needle), "{url}: {message}");
            assert!(!message.contains("hunter2"), "{url}: {message}");
        }
    }

    #[test]
    fn smtp_urls_lettre_understands_are_accepted() {
        for url in [
            "smtps://mailer:s%40cret@smtp.example.com",
            "smtp://mailer:secret@smtp.example.com:587?tls=required",
            "smtp://smtp.example.com:25?tls=opportunistic",
            "smtp://127.0.0.1:2525",
            "smtp://relay:secret@localhost:25",
            "smtp://smtp.example.com:587/mail.example.com?tls=required",
        ] {
            let settings = settings(&[
                ("JWT_KEYS", KEY),
                ("MAIL_TRANSPORT", "smtp"),
                ("SMTP_URL", url),
            ])
            .unwrap_or_else(|error| panic!("{url}: {error:#}"));
            assert!(matches!(
                settings.mail.transport,
                MailTransportSettings::Smtp { .. }
            ));
            assert!(!format!("{settings:?}").contains("secret"), "{url}");
        }
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
    fn the_inbound_message_rate_has_defaults_and_bounds() {
        let realtime = settings(&[("JWT_KEYS", KEY)]).expect("defaults").realtime;
        assert_eq!(
            (realtime.max_messages_per_second, realtime.message_burst),
            (10, 100)
        );
        let realtime = settings(&[
            ("JWT_KEYS", KEY),
            ("WS_MAX_MESSAGES_PER_SECOND", "3"),
            ("WS_MESSAGE_BURST", "7"),
        ])
        .expect("valid limits")
        .realtime;
        assert_eq!(
            (realtime.max_messages_per_second, realtime.message_burst),
            (3, 7)
        );
        for (name, value) in [
            ("WS_MAX_MESSAGES_PER_SECOND", "0"),
            ("WS_MAX_MESSAGES_PER_SECOND", "fast"),
            ("WS_MESSAGE_BURST", "0"),
        ] {
            let message = error_of(&[("JWT_KEYS", KEY), (name, value)]);
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn the_instance_socket_cap_has_a_default_and_bounds() {
        let realtime = settings(&[("JWT_KEYS", KEY)]).expect("defaults").realtime;
        assert_eq!(realtime.max_connections, 20_000);
        let realtime = settings(&[("JWT_KEYS", KEY), ("WS_MAX_CONNECTIONS", "5")])
            .expect("a valid cap")
            .realtime;
        assert_eq!(realtime.max_connections, 5);
        for value in ["0", "1000001", "many"] {
            let message = error_of(&[("JWT_KEYS", KEY), ("WS_MAX_CONNECTIONS", value)]);
            assert!(message.contains("WS_MAX_CONNECTIONS"), "{value}: {message}");
        }
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
