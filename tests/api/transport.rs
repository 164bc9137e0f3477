//! GraphQL over HTTP: methods, media types and status codes; health, metrics; the committed
//! schema.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code, spawn_app, spawn_app_with};

struct Exchange {
    status: u16,
    content_type: String,
    allow: Option<String>,
    body: String,
}

async fn send(
    app: &TestApp,
    method: Method,
    query: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: &str,
) -> Exchange {
    let mut url = reqwest::Url::parse(&app.graphql_url()).expect("url");
    if !query.is_empty() {
        url.set_query(Some(query));
    }
    let mut request = app.client.request(method, url);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.body(body.to_owned()).send().await.expect("send");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Exchange {
        status: response.status().as_u16(),
        content_type: header("content-type").unwrap_or_default(),
        allow: header("allow"),
        body: response.text().await.expect("body"),
    }
}

fn get_query(query: &str) -> String {
    serde_urlencoded::to_string([("query", query)]).expect("encode")
}

/// (what, method, query string, content type, accept, body, status, response media type)
type Case<'a> = (
    &'a str,
    Method,
    String,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    u16,
    &'a str,
);

const GQL: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

#[tokio::test]
async fn graphql_over_http_status_and_media_type_table() {
    let app = spawn_app().await;
    let ok_post = r#"{"query":"{ viewer { id } }"}"#;
    let invalid_doc = r#"{"query":"{ viewer { id "}"#;
    let unknown_field = r#"{"query":"{ nope }"}"#;
    let mutation_get = get_query("mutation { logOut(input: {}) { loggedOut } }");
    // A single named operation runs without `operationName`: it must be classified all the same.
    let named_mutation_get = get_query("mutation M { logOut(input: {}) { loggedOut } }");
    let named_subscription = r#"{"query":"subscription S { reviewQueueChanged { cursor } }"}"#;
    let query_get = get_query("{ viewer { id } }");

    // (what, method, query string, content type, accept, body, status, response media type)
    let table: Vec<Case> = vec![
        (
            "POST json, no Accept",
            Method::POST,
            String::new(),
            Some(JSON),
            None,
            ok_post,
            200,
            JSON,
        ),
        (
            "POST json, Accept gql",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(GQL),
            ok_post,
            200,
            GQL,
        ),
        (
            "POST json, Accept */*",
            Method::POST,
            String::new(),
            Some(JSON),
            Some("*/*"),
            ok_post,
            200,
            JSON,
        ),
        (
            "POST json charset",
            Method::POST,
            String::new(),
            Some("application/json; charset=utf-8"),
            Some(GQL),
            ok_post,
            200,
            GQL,
        ),
        (
            "POST text/plain",
            Method::POST,
            String::new(),
            Some("text/plain"),
            None,
            ok_post,
            415,
            JSON,
        ),
        (
            "POST form",
            Method::POST,
            String::new(),
            Some("application/x-www-form-urlencoded"),
            None,
            "query=%7Bviewer%7Bid%7D%7D",
            415,
            JSON,
        ),
        (
            "POST no content type",
            Method::POST,
            String::new(),
            None,
            None,
            ok_post,
            415,
            JSON,
        ),
        (
            "POST latin1 charset",
            Method::POST,
            String::new(),
            Some("application/json; charset=latin1"),
            None,
            ok_post,
            415,
            JSON,
        ),
        (
            "POST malformed JSON",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(GQL),
            "{\"query\":",
            400,
            GQL,
        ),
        (
            "POST no query",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(GQL),
            "{}",
            400,
            GQL,
        ),
        (
            "POST batch",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(GQL),
            "[{\"query\":\"{viewer{id}}\"}]",
            400,
            GQL,
        ),
        (
            "POST variables not an object",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(GQL),
            r#"{"query":"{viewer{id}}","variables":[1]}"#,
            400,
            GQL,
        ),
        (
            "POST parse error, gql",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(GQL),
            invalid_doc,
            400,
            GQL,
        ),
        (
            "POST parse error, json",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(JSON),
            invalid_doc,
            200,
            JSON,
        ),
        (
            "POST validation error, gql",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(GQL),
            unknown_field,
            400,
            GQL,
        ),
        (
            "POST validation error, json",
            Method::POST,
            String::new(),
            Some(JSON),
            Some(JSON),
            unknown_field,
            200,
            JSON,
        ),
        (
            "POST Accept html only",
            Method::POST,
            String::new(),
            Some(JSON),
            Some("text/html"),
            ok_post,
            406,
            "text/plain",
        ),
        (
            "GET query",
            Method::GET,
            query_get.clone(),
            None,
            Some(GQL),
            "",
            200,
            GQL,
        ),
        (
            "GET mutation",
            Method::GET,
            mutation_get,
            None,
            Some(GQL),
            "",
            405,
            GQL,
        ),
        (
            "GET named mutation",
            Method::GET,
            named_mutation_get,
            None,
            Some(GQL),
            "",
            405,
            GQL,
        ),
        (
            "POST named subscription",
            Method::POST,
            String::new(),
            Some(JSON),
            None,
            named_subscription,
            400,
            JSON,
        ),
        (
            "GET no query",
            Method::GET,
            String::new(),
            None,
            None,
            "",
            400,
            JSON,
        ),
        (
            "GET bad variables",
            Method::GET,
            format!("{query_get}&variables=%7Bnot"),
            None,
            None,
            "",
            400,
            JSON,
        ),
        (
            "PUT",
            Method::PUT,
            String::new(),
            Some(JSON),
            None,
            ok_post,
            405,
            "",
        ),
    ];
    for (what, method, query, content_type, accept, body, status, media) in table {
        let exchange = send(&app, method, &query, content_type, accept, body).await;
        assert_eq!(exchange.status, status, "{what}: {}", exchange.body);
        assert!(
            exchange.content_type.starts_with(media),
            "{what}: content type {}",
            exchange.content_type
        );
        if status == 405 && what.starts_with("GET") {
            assert_eq!(exchange.allow.as_deref(), Some("POST"), "{what}");
        }
        if (400..500).contains(&status) && media != "text/plain" && !media.is_empty() {
            let parsed: Value = serde_json::from_str(&exchange.body).expect("JSON error body");
            assert!(
                parsed["errors"][0]["message"].is_string(),
                "{what}: {parsed}"
            );
        }
    }
}

/// Two `Authorization` headers are refused, whichever of them is valid.
#[tokio::test]
async fn two_authorization_headers_are_a_bad_request() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    for order in [
        [
            format!("Bearer {}", user.access_token),
            "Bearer forged".to_owned(),
        ],
        [
            "Bearer forged".to_owned(),
            format!("Bearer {}", user.access_token),
        ],
    ] {
        let response = app
            .client
            .post(app.graphql_url())
            .header("content-type", JSON)
            .header("authorization", &order[0])
            .header("authorization", &order[1])
            .body(r#"{"query":"{ viewer { id } }"}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 400);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(error_code(&body), Some("BAD_REQUEST"), "{body}");
    }
}

/// A named mutation sent with GET is refused before it runs: the account it would have created
/// does not exist afterwards.
#[tokio::test]
async fn a_named_mutation_over_get_creates_nothing() {
    let app = spawn_app().await;
    let sign_up = get_query(
        "mutation M { signUp(input: {email: \"via-get@contoso.com\", password: \"a long passphrase via GET\"}) { accessToken } }",
    );
    let exchange = send(&app, Method::GET, &sign_up, None, None, "").await;
    assert_eq!(exchange.status, 405, "{}", exchange.body);
    let body = app
        .graphql(
            None,
            "mutation($input: LogInInput!) { logIn(input: $input) { accessToken userErrors { code } } }",
            serde_json::json!({ "input": { "email": "via-get@contoso.com", "password": "a long passphrase via GET" } }),
        )
        .await;
    assert!(body["data"]["logIn"]["accessToken"].is_null(), "{body}");
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_parsing() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let body = format!(
        r#"{{"query":"{{ viewer {{ id }} }}","variables":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let exchange = send(&app, Method::POST, "", Some(JSON), None, &body).await;
    assert_eq!(exchange.status, 413, "{}", exchange.body);
}

#[tokio::test]
async fn errors_never_reveal_internals_and_always_carry_a_code() {
    let app = spawn_app().await;
    let body = app.graphql(None, "mutation { createUser(input: {email: \"a@b.co\", password: \"x\", role: ADMIN}) { user { id } } }", json!({})).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        json!("UNAUTHENTICATED"),
        "{body}"
    );
    for (document, code) in [
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ viewer { id ", "GRAPHQL_PARSE_FAILED"),
        (
            "query($n: Int!) { reviewQueue(first: $n) { totalCount } }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ] {
        let body = app.graphql(None, document, json!({})).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            json!(code),
            "{document}: {body}"
        );
    }
    let body = app
        .graphql(None, "{ node(id: \"garbage\") { id } }", json!({}))
        .await;
    assert_eq!(body["data"]["node"], Value::Null, "{body}");
}

#[tokio::test]
async fn health_and_metrics_endpoints_answer() {
    let app = spawn_app().await;
    let live = app
        .client
        .get(format!("{}/livez", app.address))
        .send()
        .await
        .expect("livez");
    assert_eq!(live.status().as_u16(), 200);
    let ready: Value = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["ready"], json!(true), "{ready}");
    assert_eq!(ready["database"], json!("ok"));
    let expected_redis = if std::env::var("TEST_REDIS_URL").is_ok_and(|v| !v.is_empty()) {
        "ok"
    } else {
        "not configured"
    };
    assert_eq!(ready["redis"], json!(expected_redis));

    app.graphql(None, "{ viewer { id } }", json!({})).await;
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "amdash_http_requests_total{method=\"POST\",route=\"/graphql\",status=\"200\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("amdash_graphql_operations_total{operation_type=\"query\",outcome=\"ok\",root_field=\"viewer\"}"), "{metrics}");
    assert!(metrics.contains("amdash_http_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn graphiql_is_served_only_when_enabled() {
    let on = spawn_app_with(&[("GRAPHIQL", "true")]).await;
    let response = on
        .client
        .get(format!("{}/graphiql", on.address))
        .send()
        .await
        .expect("graphiql");
    assert_eq!(response.status().as_u16(), 200);
    let off = spawn_app_with(&[("GRAPHIQL", "false")]).await;
    let response = off
        .client
        .get(format!("{}/graphiql", off.address))
        .send()
        .await
        .expect("graphiql");
    assert_eq!(response.status().as_u16(), 404);
}

#[test]
fn committed_schema_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == dashboard::graphql::sdl(),
        "schema.graphql is out of date: run `cargo run -- schema export` and commit the result"
    );
}

/// `dashboard migrate status` prints each migration's state on standard output whatever the
/// log level: all pending on a new database, all applied after `migrate up`.
#[tokio::test]
async fn migrate_status_prints_every_migration_before_and_after_up() {
    let dir = std::env::temp_dir().join(format!("amdash-migrate-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("data dir");
    let run = |action: &'static str| {
        let dir = dir.clone();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_dashboard"))
                .args(["migrate", action])
                .env_clear()
                .env("DATA_DIR", &dir)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .expect("run the CLI");
            assert!(output.status.success(), "migrate {action}: {output:?}");
            String::from_utf8(output.stdout).expect("UTF-8")
        }
    };
    let states = |printed: &str| -> Vec<String> {
        printed
            .lines()
            .map(|line| {
                line.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let before = run("status").await;
    assert!(!before.is_empty(), "nothing printed");
    assert!(states(&before).iter().all(|s| s == "pending"), "{before}");
    run("up").await;
    let after = run("status").await;
    assert_eq!(after.lines().count(), before.lines().count(), "{after}");
    assert!(states(&after).iter().all(|s| s == "applied"), "{after}");
    let _ = std::fs::remove_dir_all(&dir);
}
