//! The few GraphQL operations the benchmarks send, each checked for the answer it expects.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

const SIGN_UP: &str =
    "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken userErrors { code } } }";
const LOG_IN: &str =
    "mutation($input: LogInInput!) { logIn(input: $input) { accessToken userErrors { code } } }";
const VIEWER: &str = "{ viewer { id email } }";

/// What a `logIn` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogInOutcome {
    /// A session was issued (an access token came back).
    SignedIn,
    /// The user error `INVALID_CREDENTIALS`.
    Refused,
}

/// A client of one service's `/graphql` endpoint.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    url: String,
}

impl Api {
    /// A client with its own connection pool that never uses a proxy (the service is on
    /// loopback) and gives up on a request after `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            url: format!("{base_url}/graphql"),
        })
    }

    /// POSTs one operation and returns the whole response body, failing on a non-200 status
    /// or `errors`.
    pub async fn execute(
        &self,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .client
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.context("sending the request")?;
        let status = response.status();
        let body: Value = response.json().await.context("reading the response")?;
        if !status.is_success() {
            bail!("HTTP {status}: {body}");
        }
        if let Some(errors) = body.get("errors") {
            bail!("GraphQL errors: {errors}");
        }
        Ok(body)
    }

    /// POSTs one operation and returns its `data`, failing on a non-200 status or `errors`.
    pub async fn post(
        &self,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> anyhow::Result<Value> {
        let body = self.execute(query, variables, bearer).await?;
        body.get("data")
            .cloned()
            .with_context(|| format!("no data in {body}"))
    }

    /// Logs in and returns the access token; fails when the credentials are refused.
    pub async fn log_in_token(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let data = self
            .post(
                LOG_IN,
                json!({ "input": { "email": email, "password": password } }),
                None,
            )
            .await
            .context("logIn")?;
        let payload = &data["logIn"];
        match payload["accessToken"].as_str() {
            Some(token) => Ok(token.to_owned()),
            None => bail!("logIn as {email} was refused: {}", payload["userErrors"]),
        }
    }

    /// Signs up a submitter and returns its access token.
    pub async fn sign_up(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let data = self
            .post(
                SIGN_UP,
                json!({ "input": { "email": email, "password": password } }),
                None,
            )
            .await
            .context("signUp")?;
        let payload = &data["signUp"];
        match payload["accessToken"].as_str() {
            Some(token) => Ok(token.to_owned()),
            None => bail!("signUp of {email} was refused: {}", payload["userErrors"]),
        }
    }

    /// Logs in; a refusal for bad credentials is an outcome, anything else an error.
    pub async fn log_in(&self, email: &str, password: &str) -> anyhow::Result<LogInOutcome> {
        let data = self
            .post(
                LOG_IN,
                json!({ "input": { "email": email, "password": password } }),
                None,
            )
            .await
            .context("logIn")?;
        let payload = &data["logIn"];
        if payload["accessToken"].is_string() {
            return Ok(LogInOutcome::SignedIn);
        }
        let refused = payload["userErrors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["code"] == "INVALID_CREDENTIALS"));
        if refused {
            Ok(LogInOutcome::Refused)
        } else {
            bail!("logIn answered neither a token nor INVALID_CREDENTIALS: {payload}")
        }
    }

    /// `{ viewer { id email } }` as the holder of `token`; fails unless the viewer is there.
    pub async fn viewer(&self, token: &str) -> anyhow::Result<()> {
        let data = self
            .post(VIEWER, json!({}), Some(token))
            .await
            .context("viewer")?;
        if data["viewer"]["id"].is_string() {
            Ok(())
        } else {
            bail!("viewer query answered no viewer: {data}")
        }
    }
}
