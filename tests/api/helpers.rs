//! `spawn_app` and the small client the tests speak GraphQL with.

use std::collections::HashMap;

use dashboard::{
    auth::{self, Role},
    config::Settings,
    startup::Application,
    state::AppState,
};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use uuid::Uuid;

/// The signing keys every test server uses, so tests can forge tokens with and without them.
pub const TEST_JWT_KID: &str = "test-key";
pub const TEST_JWT_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
pub const TEST_AUDIENCE: &str = "actionable-dashboard-api";
pub const TEST_ISSUER: &str = "actionable-dashboard";
pub const PASSWORD: &str = "a perfectly long password";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
}

/// A signed-in test user.
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

/// Where this test's data goes: a new PostgreSQL database per test when `TEST_DATABASE_URL`
/// names a server, else a SQLite file of its own.
pub async fn fresh_database_url() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(server_url) if !server_url.is_empty() => {
            let name = format!("amdash_test_{}", Uuid::new_v4().simple());
            let admin = Database::connect(&server_url)
                .await
                .expect("connect to TEST_DATABASE_URL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create the test database");
            admin.close().await.ok();
            let base = server_url
                .rsplit_once('/')
                .map_or(server_url.as_str(), |(base, _)| base);
            format!("{base}/{name}")
        }
        _ => {
            let dir = std::env::temp_dir().join(format!("amdash-test-{}", Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("create the test directory");
            format!("sqlite://{}?mode=rwc", dir.join("test.sqlite").display())
        }
    }
}

/// Settings for a test server; `overrides` replace or add variables (a `DATABASE_URL` among
/// them joins that database instead of making a fresh one).
pub async fn test_settings(overrides: &[(&str, &str)]) -> Settings {
    let data_dir = std::env::temp_dir().join(format!("amdash-data-{}", Uuid::new_v4().simple()));
    let database_url = match overrides.iter().find(|(name, _)| *name == "DATABASE_URL") {
        Some((_, url)) => (*url).to_owned(),
        None => fresh_database_url().await,
    };
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url),
        ("DATA_DIR".into(), data_dir.display().to_string()),
        ("PORT".into(), "0".into()),
        ("PASSWORD_HASH_CONCURRENCY".into(), "2".into()),
        // DKIM keys of the sample e-mails come from their fixture, never from DNS.
        (
            "DKIM_DNS_FIXTURE".into(),
            format!("{}/dns.json", samples_dir()),
        ),
        (
            "JWT_KEYS".into(),
            format!("{TEST_JWT_KID}:{}", base64_encode(TEST_JWT_SECRET)),
        ),
        // Every test signs up and logs in from 127.0.0.1; the budget tests set their own.
        ("RATE_LIMIT_SIGN_UP_PER_ADDRESS".into(), "100000/1h".into()),
        ("RATE_LIMIT_LOG_IN_PER_ADDRESS".into(), "100000/1h".into()),
    ]);
    if let Ok(redis) = std::env::var("TEST_REDIS_URL")
        && !redis.is_empty()
    {
        vars.insert("REDIS_URL".into(), redis);
        vars.insert(
            "REDIS_PREFIX".into(),
            format!("test-{}", Uuid::new_v4().simple()),
        );
    }
    for (name, value) in overrides {
        vars.insert((*name).into(), (*value).into());
    }
    Settings::from_lookup(|name| vars.get(name).cloned()).expect("test settings are valid")
}

/// The sample e-mails and their expected verdicts.
pub fn samples_dir() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/samples").to_owned()
}

/// The raw text of a sample e-mail.
pub fn sample(file: &str) -> String {
    std::fs::read_to_string(format!("{}/{file}", samples_dir())).expect("read the sample e-mail")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Starts the service on a free port with a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let settings = test_settings(overrides).await;
    let application = Application::build(settings)
        .await
        .expect("build the application");
    let address = format!("http://127.0.0.1:{}", application.port());
    let state = application.state().clone();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
    }
}

/// Starts a second instance of `first`'s deployment: same database, same Redis server and
/// prefix (so they share events), its own port.
pub async fn spawn_app_joining(first: &TestApp, overrides: &[(&str, &str)]) -> TestApp {
    use secrecy::ExposeSecret;
    let settings = &first.state.settings;
    let database_url = settings.database_url.expose_secret().to_owned();
    let redis_url = settings
        .redis_url
        .as_ref()
        .map(|url| url.expose_secret().to_owned());
    let mut shared: Vec<(&str, &str)> = vec![
        ("DATABASE_URL", &database_url),
        ("REDIS_PREFIX", &settings.redis_prefix),
    ];
    if let Some(url) = &redis_url {
        shared.push(("REDIS_URL", url));
    }
    shared.extend_from_slice(overrides);
    spawn_app_with(&shared).await
}

impl TestApp {
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.address)
    }

    /// The WebSocket address of `/graphql`.
    pub fn graphql_ws_url(&self) -> String {
        format!("{}/graphql", self.address.replacen("http://", "ws://", 1))
    }

    /// POSTs a GraphQL request and returns the JSON body, whatever the status.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .client
            .post(self.graphql_url())
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("JSON body")
    }

    /// Signs up a new submitter with a unique address.
    pub async fn sign_up(&self) -> TestUser {
        let email = format!("dev-{}@contoso.com", Uuid::new_v4().simple());
        let body = self
            .graphql(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) {
                    user { id email } accessToken refreshToken userErrors { code } } }",
                json!({ "input": { "email": email, "password": PASSWORD } }),
            )
            .await;
        let payload = &body["data"]["signUp"];
        assert_eq!(payload["userErrors"], json!([]), "{body}");
        test_user(payload)
    }

    /// Creates a user with `role` directly through the service (as the CLI does) and logs in.
    pub async fn user_with_role(&self, role: Role) -> TestUser {
        let email = format!(
            "{}-{}@contoso.com",
            role.as_str().to_lowercase(),
            Uuid::new_v4().simple()
        );
        if auth::create_user(&self.state, &email, PASSWORD.to_owned().into(), role)
            .await
            .is_err()
        {
            panic!("could not create a {role:?}");
        }
        self.log_in(&email).await
    }

    pub async fn log_in(&self, email: &str) -> TestUser {
        let body = self
            .graphql(
                None,
                "mutation($input: LogInInput!) { logIn(input: $input) {
                    user { id email } accessToken refreshToken userErrors { code } } }",
                json!({ "input": { "email": email, "password": PASSWORD } }),
            )
            .await;
        let payload = &body["data"]["logIn"];
        assert_eq!(payload["userErrors"], json!([]), "{body}");
        test_user(payload)
    }
}

fn test_user(payload: &Value) -> TestUser {
    let text = |v: &Value| v.as_str().expect("a string").to_owned();
    TestUser {
        id: text(&payload["user"]["id"]),
        email: text(&payload["user"]["email"]),
        access_token: text(&payload["accessToken"]),
        refresh_token: text(&payload["refreshToken"]),
    }
}

/// The `extensions.code` of the first top-level error.
pub fn error_code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}
