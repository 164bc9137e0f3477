//! Rate limits: log-in and sign-up budgets per account and client address, the per-caller
//! query-cost budget with its headers, 429 with `Retry-After`, budgets shared through Redis,
//! the in-memory fallback when Redis goes away; and the other per-environment switches of the
//! public API (introspection, field suggestions, CORS).

use dashboard::{graphql::budget::CostBudget, rate_limit::Subject};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    helpers::{PASSWORD, TestApp, error_code, spawn_app_joining, spawn_app_with},
    realtime::{PrivateRedis, on_path},
};

const LOG_IN: &str = "mutation($input: LogInInput!) { logIn(input: $input) {
    accessToken userErrors { code } } }";
const SIGN_UP: &str = "mutation($input: SignUpInput!) { signUp(input: $input) {
    accessToken userErrors { code } } }";
const VIEWER: &str = "{ viewer { id } }";

/// Sends one GraphQL request as a client at `address` (through the `X-Forwarded-For` header
/// the test servers trust) and returns the status, headers and body.
async fn send_from(
    app: &TestApp,
    address: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (StatusCode, header::HeaderMap, Value) {
    let mut request = app
        .client
        .post(app.graphql_url())
        .header("x-forwarded-for", address)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("JSON body"))
}

fn log_in_input(email: &str, password: &str) -> Value {
    json!({ "input": { "email": email, "password": password } })
}

fn retry_after(headers: &header::HeaderMap) -> u64 {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in seconds")
}

fn header_number(headers: &header::HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a numeric {name} header in {headers:?}"))
}

async fn rate_limited_app(overrides: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("CLIENT_IP_HEADER", "X-Forwarded-For")];
    settings.extend_from_slice(overrides);
    spawn_app_with(&settings).await
}

#[tokio::test]
async fn log_ins_to_one_account_stop_after_its_budget_even_with_the_right_password() {
    let app = rate_limited_app(&[("RATE_LIMIT_LOG_IN_PER_ACCOUNT", "3/1h")]).await;
    let victim = app.sign_up().await;
    let bystander = app.sign_up().await;
    for attempt in 0..3 {
        // Each guess from another address: the account budget, not the address one, stops them.
        let address = format!("198.51.100.{attempt}");
        let (status, _, body) = send_from(
            &app,
            &address,
            None,
            LOG_IN,
            log_in_input(&victim.email, "not the password at all"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["data"]["logIn"]["userErrors"][0]["code"],
            json!("INVALID_CREDENTIALS")
        );
    }
    let (status, headers, body) = send_from(
        &app,
        "198.51.100.9",
        None,
        LOG_IN,
        log_in_input(&victim.email, PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    assert!(
        body["data"]["logIn"].is_null(),
        "no session is issued: {body}"
    );
    let retry = retry_after(&headers);
    assert!((1..=3_600).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        body["errors"][0]["extensions"]["retryAfterSeconds"],
        json!(retry)
    );
    // The address form of the same account shares the budget.
    let shouted = victim.email.to_uppercase();
    let (status, _, _) = send_from(
        &app,
        "198.51.100.10",
        None,
        LOG_IN,
        log_in_input(&shouted, PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Another account is not affected.
    let (status, _, body) = send_from(
        &app,
        "198.51.100.9",
        None,
        LOG_IN,
        log_in_input(&bystander.email, PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["data"]["logIn"]["accessToken"].is_string(), "{body}");
}

#[tokio::test]
async fn log_ins_from_one_address_stop_after_its_budget_and_a_forged_hop_does_not_help() {
    let app = rate_limited_app(&[("RATE_LIMIT_LOG_IN_PER_ADDRESS", "2/1h")]).await;
    let user = app.sign_up().await;
    for _ in 0..2 {
        let (status, _, body) = send_from(
            &app,
            "203.0.113.7",
            None,
            LOG_IN,
            log_in_input(
                &format!("nobody-{}@contoso.com", Uuid::new_v4()),
                "whatever it is",
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // A client that prepends its own X-Forwarded-For entry is still the address the proxy
    // appended last.
    let (status, headers, body) = send_from(
        &app,
        "10.9.8.7, 203.0.113.7",
        None,
        LOG_IN,
        log_in_input(&user.email, PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), Some("RATE_LIMITED"));
    assert!(retry_after(&headers) >= 1);
    let (status, _, body) = send_from(
        &app,
        "203.0.113.8",
        None,
        LOG_IN,
        log_in_input(&user.email, PASSWORD),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "another address logs in: {body}");
}

#[tokio::test]
async fn sign_ups_from_one_address_stop_after_its_budget_and_create_nothing() {
    let app = rate_limited_app(&[("RATE_LIMIT_SIGN_UP_PER_ADDRESS", "2/1h")]).await;
    let sign_up = |email: String| json!({ "input": { "email": email, "password": PASSWORD } });
    for _ in 0..2 {
        let email = format!("new-{}@contoso.com", Uuid::new_v4().simple());
        let (status, _, body) = send_from(&app, "192.0.2.44", None, SIGN_UP, sign_up(email)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["data"]["signUp"]["accessToken"].is_string(), "{body}");
    }
    let refused = format!("refused-{}@contoso.com", Uuid::new_v4().simple());
    let (status, _, body) =
        send_from(&app, "192.0.2.44", None, SIGN_UP, sign_up(refused.clone())).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(error_code(&body), Some("RATE_LIMITED"));
    // The refused sign-up left no account behind: from another address the same e-mail is free.
    let (status, _, body) = send_from(&app, "192.0.2.45", None, SIGN_UP, sign_up(refused)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["signUp"]["userErrors"], json!([]), "{body}");
}

#[tokio::test]
async fn the_query_cost_budget_is_reported_charged_by_complexity_and_refused_before_any_work() {
    let app = rate_limited_app(&[("RATE_LIMIT_QUERY_COST", "2000/1h")]).await;
    let user = app.sign_up().await;
    let token = Some(user.access_token.as_str());

    let (status, headers, body) = send_from(&app, "192.0.2.1", token, VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(header_number(&headers, "ratelimit-limit"), 2000);
    let after_one = header_number(&headers, "ratelimit-remaining");
    assert!((1990..2000).contains(&after_one), "{after_one}");
    assert!(header_number(&headers, "ratelimit-reset") >= 1);
    assert_eq!(
        headers
            .get("ratelimit-policy")
            .and_then(|v| v.to_str().ok()),
        Some("2000;w=3600")
    );

    // A list of 100 costs about 100 times its item: the budget shrinks by far more.
    let list = "{ myProviders(first: 100) { edges { node { id name } } } }";
    let (status, headers, body) = send_from(&app, "192.0.2.1", token, list, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after_list = header_number(&headers, "ratelimit-remaining");
    assert!(after_one - after_list >= 100, "{after_one} -> {after_list}");

    // Spend the rest; then a mutation is refused before it runs.
    let mut refused = None;
    for _ in 0..40 {
        let (status, headers, body) = send_from(&app, "192.0.2.1", token, list, json!({})).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((headers, body));
            break;
        }
    }
    let (headers, body) = refused.expect("the budget runs out");
    assert_eq!(error_code(&body), Some("RATE_LIMITED"), "{body}");
    assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    assert_eq!(header_number(&headers, "ratelimit-remaining"), 0);
    assert!(retry_after(&headers) >= 1);
    // What is left is less than a list costs; cheap queries spend it down to nothing.
    let mut spent = false;
    for _ in 0..1_000 {
        let (status, _, _) = send_from(&app, "192.0.2.1", token, VIEWER, json!({})).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            spent = true;
            break;
        }
    }
    assert!(spent, "cheap queries run out too");

    let create = "mutation($input: CreateProviderInput!) { createProvider(input: $input) {
        provider { id } userErrors { code } } }";
    let (status, _, body) = send_from(
        &app,
        "192.0.2.1",
        token,
        create,
        json!({ "input": { "name": "Never created" } }),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let other = app.sign_up().await;
    let count = "{ myProviders(first: 5) { totalCount } }";
    let (_, _, mine) = send_from(
        &app,
        "192.0.2.2",
        Some(&other.access_token),
        count,
        json!({}),
    )
    .await;
    assert_eq!(
        mine["data"]["myProviders"]["totalCount"],
        json!(0),
        "another user has a budget of their own: {mine}"
    );
    // The refused user created nothing either (checked in the database directly).
    use sea_orm::{EntityTrait, PaginatorTrait};
    let providers = entity::provider::Entity::find()
        .count(app.state.db.conn())
        .await
        .expect("count providers");
    assert_eq!(providers, 0);
}

/// Each instance keeps the documents and prices of operations it has seen; a repeated
/// operation must still be charged in full every time, and a cached text must not carry a
/// verdict over to variables or documents it was not given for.
#[tokio::test]
async fn repeated_operations_are_charged_every_time_and_validated_for_their_own_variables() {
    let app = rate_limited_app(&[("RATE_LIMIT_QUERY_COST", "2000/1h")]).await;
    let user = app.sign_up().await;
    let token = Some(user.access_token.as_str());
    let list = "query($n: Int) { myProviders(first: $n) { edges { node { id name } } } }";

    let mut remaining = Vec::new();
    for _ in 0..4 {
        let (status, headers, body) =
            send_from(&app, "192.0.2.9", token, list, json!({ "n": 50 })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("errors").is_none(), "{body}");
        remaining.push(header_number(&headers, "ratelimit-remaining"));
    }
    // The budget refills by about one unit every two seconds, hence the tolerance.
    let first_cost = remaining[0].abs_diff(remaining[1]);
    assert!(
        first_cost >= 50,
        "a list of 50 costs at least 50: {remaining:?}"
    );
    for pair in remaining.windows(2).skip(1) {
        assert!(
            (pair[0] - pair[1]).abs_diff(first_cost) <= 2,
            "every repetition costs the same: {remaining:?}"
        );
    }

    // The same text with other variables is priced for them.
    let (_, headers, body) = send_from(&app, "192.0.2.9", token, list, json!({ "n": 5 })).await;
    assert!(body.get("errors").is_none(), "{body}");
    let small_cost = remaining[3] - header_number(&headers, "ratelimit-remaining");
    assert!(
        small_cost < first_cost / 2,
        "{small_cost} against {first_cost}"
    );

    // ... and with variables of the wrong type it fails validation, each time, before any work.
    for _ in 0..2 {
        let (status, _, body) =
            send_from(&app, "192.0.2.9", token, list, json!({ "n": "fifty" })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["data"].is_null(), "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("n")),
            "{body}"
        );
    }

    // A document that fails validation keeps failing: nothing about it is kept.
    let unknown = "{ viewer { id favouriteColour } }";
    for _ in 0..2 {
        let (_, _, body) = send_from(&app, "192.0.2.9", token, unknown, json!({})).await;
        assert!(body["data"].is_null(), "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("favouriteColour")),
            "{body}"
        );
    }
}

/// Only documents of operations that passed validation are kept, so text that parses but means
/// nothing (never charged to a budget) cannot fill the cache; and a kept document is found
/// again without parsing.
#[tokio::test]
async fn only_documents_of_valid_operations_are_kept() {
    let app = rate_limited_app(&[("RATE_LIMIT_QUERY_COST", "2000/1h")]).await;
    let schema = dashboard::graphql::build_schema(app.state.clone());
    let budget = CostBudget::new(Subject::Address("192.0.2.10".parse().expect("an address")));
    let none = async_graphql::Variables::default();

    for (query, valid) in [
        ("{ nonsense { at all } }", false),
        ("query($unused: Int) { __typename }", false),
        ("{ __typename }", true),
    ] {
        let first = schema.check_query(query).expect("within the limits");
        assert!(!first.was_known(), "{query}");
        let priced = schema.price(query, &first, None, &none, &budget).await;
        assert_eq!(priced.is_ok(), valid, "{query}: {priced:?}");
        let again = schema.check_query(query).expect("within the limits");
        assert_eq!(again.was_known(), valid, "{query}");
    }
    let (kept, weight) = schema.documents_kept();
    assert_eq!(kept, 1);
    assert!(weight > 0);

    // Validation covers the whole document, so naming its one valid operation does not get a
    // document with an invalid one kept.
    let two = "query Bad { viewer { id favouriteColour } } query Good { __typename }";
    for name in ["Good", "Bad"] {
        let checked = schema.check_query(two).expect("within the limits");
        assert!(!checked.was_known());
        let priced = schema
            .price(two, &checked, Some(name), &none, &budget)
            .await;
        assert!(priced.is_err(), "{name}");
    }
    assert_eq!(schema.documents_kept().0, 1);
}

#[tokio::test]
async fn anonymous_callers_are_charged_per_address() {
    let app = rate_limited_app(&[("RATE_LIMIT_QUERY_COST", "2000/1h")]).await;
    let expensive = "{ myProviders(first: 100) { edges { node { id name } } } }";
    let mut refused = false;
    for _ in 0..20 {
        let (status, _, _) = send_from(&app, "192.0.2.77", None, expensive, json!({})).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = true;
            break;
        }
    }
    assert!(refused, "an anonymous address runs out of budget");
    let (status, headers, _) = send_from(&app, "192.0.2.78", None, VIEWER, json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(header_number(&headers, "ratelimit-remaining") > 1_900);
}

fn redis_configured() -> bool {
    std::env::var("TEST_REDIS_URL").is_ok_and(|v| !v.is_empty())
}

#[tokio::test]
async fn instances_sharing_redis_share_budgets() {
    if !redis_configured() {
        eprintln!("skipped: set TEST_REDIS_URL to share budgets through Redis");
        return;
    }
    let overrides = [
        ("CLIENT_IP_HEADER", "X-Forwarded-For"),
        ("RATE_LIMIT_LOG_IN_PER_ADDRESS", "3/1h"),
    ];
    let a = spawn_app_with(&overrides).await;
    let b = spawn_app_joining(&a, &overrides).await;
    let guess = |n: usize| log_in_input(&format!("who-{n}@contoso.com"), "some guess here");
    for n in 0..3 {
        let app = if n % 2 == 0 { &a } else { &b };
        let (status, _, body) = send_from(app, "192.0.2.99", None, LOG_IN, guess(n)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for app in [&a, &b] {
        let (status, _, body) = send_from(app, "192.0.2.99", None, LOG_IN, guess(9)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
}

#[tokio::test]
async fn limits_hold_in_memory_while_redis_is_away_and_the_fallback_is_counted() {
    if !on_path("redis-server") {
        eprintln!("skipped: redis-server is not on PATH");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let Some(redis) = PrivateRedis::start(port).await else {
        eprintln!("skipped: could not start a private redis-server");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let app = rate_limited_app(&[
        ("REDIS_URL", &url),
        ("REDIS_PREFIX", "limits"),
        ("RATE_LIMIT_LOG_IN_PER_ADDRESS", "2/1h"),
    ])
    .await;
    let guess = || log_in_input("who@contoso.com", "some guess here");
    let (status, _, _) = send_from(&app, "192.0.2.5", None, LOG_IN, guess()).await;
    assert_eq!(status, StatusCode::OK);

    redis.stop().await;
    // Redis is gone: the instance decides alone, and still refuses the third attempt.
    let (status, _, body) = send_from(&app, "192.0.2.5", None, LOG_IN, guess()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = send_from(&app, "192.0.2.5", None, LOG_IN, guess()).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the local bucket starts empty: a second chance"
    );
    let (status, _, body) = send_from(&app, "192.0.2.5", None, LOG_IN, guess()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let fallbacks = metrics
        .lines()
        .find_map(|line| line.strip_prefix("amdash_rate_limit_fallbacks_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .expect("the fallback counter");
    assert!(fallbacks >= 1.0, "{fallbacks}");
    assert!(
        metrics.contains(
            r#"amdash_rate_limit_decisions_total{bucket="log_in_address",outcome="limited"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn introspection_and_suggestions_follow_their_switches() {
    let introspect = "{ __schema { queryType { name } } }";
    let typo = "{ viewr { id } }";

    let open = spawn_app_with(&[]).await;
    let body = open.graphql(None, introspect, json!({})).await;
    assert_eq!(
        body["data"]["__schema"]["queryType"]["name"],
        json!("QueryRoot"),
        "{body}"
    );
    let body = open.graphql(None, typo, json!({})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Did you mean")),
        "{body}"
    );

    let closed = spawn_app_with(&[
        ("GRAPHQL_INTROSPECTION", "false"),
        ("GRAPHQL_SUGGESTIONS", "false"),
    ])
    .await;
    // Introspection fields answer null: nothing about the schema leaks.
    let body = closed.graphql(None, introspect, json!({})).await;
    assert_eq!(body["data"]["__schema"], Value::Null, "{body}");
    let body = closed
        .graphql(None, "{ __type(name: \"QueryRoot\") { name } }", json!({}))
        .await;
    assert_eq!(body["data"]["__type"], Value::Null, "{body}");
    let body = closed.graphql(None, typo, json!({})).await;
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(!message.contains("Did you mean"), "{body}");
    assert_eq!(
        error_code(&body),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{body}"
    );
}

#[tokio::test]
async fn the_spa_origin_may_call_the_api_across_origins_and_read_the_rate_limit_headers() {
    let spa = "https://dashboard.contoso.com";
    let app = spawn_app_with(&[("ALLOWED_ORIGINS", spa)]).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.graphql_url())
        .header(header::ORIGIN, spa)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let allow = |name| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(allow(header::ACCESS_CONTROL_ALLOW_ORIGIN), spa);
    assert!(allow(header::ACCESS_CONTROL_ALLOW_METHODS).contains("post"));
    assert!(allow(header::ACCESS_CONTROL_ALLOW_HEADERS).contains("authorization"));
    assert!(
        preflight
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_CREDENTIALS)
            .is_none(),
        "bearer tokens, never cookies"
    );

    let response = app
        .client
        .post(app.graphql_url())
        .header(header::ORIGIN, spa)
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .expect("cross-origin POST");
    assert_eq!(response.status(), StatusCode::OK);
    let exposed = response
        .headers()
        .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("ratelimit-remaining"), "{exposed}");
    assert!(exposed.contains("retry-after"), "{exposed}");

    // Another site gets no CORS grant, so browsers keep its pages from reading answers.
    let response = app
        .client
        .post(app.graphql_url())
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .expect("foreign POST");
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    // A page served by the service itself (GraphiQL) is same-origin.
    let own = app.address.clone();
    let response = app
        .client
        .post(app.graphql_url())
        .header(header::ORIGIN, &own)
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .expect("same-origin POST");
    assert_eq!(response.status(), StatusCode::OK);
}
