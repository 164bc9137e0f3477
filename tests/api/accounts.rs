//! Accounts and authentication: every flow, and every way a credential can be wrong.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use dashboard::auth::Role;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    PASSWORD, TEST_AUDIENCE, TEST_ISSUER, TEST_JWT_KID, TEST_JWT_SECRET, TestApp, error_code,
    spawn_app,
};

const VIEWER: &str = "{ viewer { id email role } }";

/// Sends `{ viewer }` with a bearer token and returns the HTTP status and body.
async fn viewer_with(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.graphql_url())
        .bearer_auth(token)
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .expect("send");
    (
        response.status().as_u16(),
        response.json().await.expect("json"),
    )
}

async fn assert_rejected(app: &TestApp, token: &str, what: &str) {
    let (status, body) = viewer_with(app, token).await;
    assert_eq!(status, 401, "{what}: {body}");
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{what}: {body}");
}

fn claims(sub: &str, overrides: Value) -> Value {
    let now = Utc::now().timestamp();
    let mut claims = json!({
        "sub": sub, "role": "ADMIN", "iss": TEST_ISSUER, "aud": TEST_AUDIENCE,
        "exp": now + 600, "nbf": now - 1, "iat": now - 1,
        "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
    });
    if let (Some(target), Some(extra)) = (claims.as_object_mut(), overrides.as_object()) {
        for (key, value) in extra {
            if value.is_null() {
                target.remove(key);
            } else {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    claims
}

fn sign(algorithm: Algorithm, kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("encode")
}

/// The raw user id inside a global ID.
fn user_uuid(global_id: &str) -> String {
    let decoded = URL_SAFE_NO_PAD.decode(global_id).expect("base64");
    String::from_utf8(decoded)
        .expect("utf8")
        .trim_start_matches("User:")
        .to_owned()
}

#[tokio::test]
async fn sign_up_log_in_and_viewer_work_end_to_end() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let body = app
        .graphql(Some(&user.access_token), VIEWER, json!({}))
        .await;
    assert_eq!(body["data"]["viewer"]["email"], json!(user.email));
    assert_eq!(body["data"]["viewer"]["role"], json!("SUBMITTER"));

    let again = app.log_in(&user.email.to_uppercase()).await;
    assert_eq!(
        again.id, user.id,
        "log-in is case-insensitive in the address"
    );

    let anonymous = app.graphql(None, VIEWER, json!({})).await;
    assert_eq!(anonymous["data"]["viewer"], Value::Null);
}

#[tokio::test]
async fn sign_up_refuses_weak_passwords_taken_addresses_and_bad_addresses() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let mutation = "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken userErrors { field code } } }";
    for (email, password, field, code) in [
        ("new@contoso.com", "short", "password", "PASSWORD_TOO_SHORT"),
        (
            "new@contoso.com",
            "password1234",
            "password",
            "PASSWORD_TOO_COMMON",
        ),
        (user.email.as_str(), PASSWORD, "email", "EMAIL_TAKEN"),
        ("not an address", PASSWORD, "email", "EMAIL_INVALID"),
        (
            "a@b.com\r\nBcc: x@y.com",
            PASSWORD,
            "email",
            "CONTROL_CHARACTER",
        ),
    ] {
        let body = app
            .graphql(
                None,
                mutation,
                json!({ "input": { "email": email, "password": password } }),
            )
            .await;
        let payload = &body["data"]["signUp"];
        assert_eq!(payload["accessToken"], Value::Null, "{body}");
        assert_eq!(payload["userErrors"][0]["field"], json!([field]), "{body}");
        assert!(
            payload["userErrors"][0]["code"]
                .as_str()
                .is_some_and(|c| c.starts_with(code)),
            "{email}/{password}: {body}"
        );
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_account_get_the_same_answer() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let mutation = "mutation($input: LogInInput!) { logIn(input: $input) { accessToken userErrors { field code message } } }";
    let wrong = app
        .graphql(
            None,
            mutation,
            json!({ "input": { "email": user.email, "password": "not the password at all" } }),
        )
        .await;
    let unknown = app
        .graphql(
            None,
            mutation,
            json!({ "input": { "email": "nobody@contoso.com", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(
        wrong["data"]["logIn"]["userErrors"][0]["code"],
        json!("INVALID_CREDENTIALS")
    );
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let refresh = "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { accessToken refreshToken } }";

    let first = app
        .graphql(None, refresh, json!({ "t": user.refresh_token }))
        .await;
    let next_refresh = first["data"]["refreshSession"]["refreshToken"]
        .as_str()
        .expect("rotated")
        .to_owned();
    let next_access = first["data"]["refreshSession"]["accessToken"]
        .as_str()
        .expect("access")
        .to_owned();
    assert_ne!(next_refresh, user.refresh_token);
    assert_eq!(viewer_with(&app, &next_access).await.0, 200);

    // The old token again: reuse. The whole family dies, including the newest tokens.
    let reuse = app
        .graphql(None, refresh, json!({ "t": user.refresh_token }))
        .await;
    assert_eq!(error_code(&reuse), Some("UNAUTHENTICATED"), "{reuse}");
    let after = app
        .graphql(None, refresh, json!({ "t": next_refresh }))
        .await;
    assert_eq!(error_code(&after), Some("UNAUTHENTICATED"), "{after}");
    assert_rejected(&app, &next_access, "access token of a revoked family").await;
    assert_rejected(
        &app,
        &user.access_token,
        "first access token of a revoked family",
    )
    .await;

    // Another login of the same user is a different family and still works.
    let other = app.log_in(&user.email).await;
    assert_eq!(viewer_with(&app, &other.access_token).await.0, 200);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_yield_at_most_one_winner() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let refresh =
        "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { refreshToken } }";
    let attempts = (0..6).map(|_| app.graphql(None, refresh, json!({ "t": user.refresh_token })));
    let results = futures_util::future::join_all(attempts).await;
    let winners = results
        .iter()
        .filter(|b| b["data"]["refreshSession"]["refreshToken"].is_string())
        .count();
    assert!(winners <= 1, "{results:?}");
}

#[tokio::test]
async fn log_out_ends_the_session_at_once() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let body = app
        .graphql(
            Some(&user.access_token),
            "mutation { logOut(input: {}) { loggedOut } }",
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["logOut"]["loggedOut"], json!(true), "{body}");
    assert_rejected(&app, &user.access_token, "access token after log-out").await;
    let refresh =
        "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { accessToken } }";
    let body = app
        .graphql(None, refresh, json!({ "t": user.refresh_token }))
        .await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn forged_and_misused_tokens_are_rejected() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let sub = user_uuid(&user.id);
    let now = Utc::now().timestamp();

    // A token signed exactly as the server would, as a control: it must work.
    let valid = sign(
        Algorithm::HS256,
        Some(TEST_JWT_KID),
        TEST_JWT_SECRET,
        &claims(&sub, json!({})),
    );
    assert_eq!(
        viewer_with(&app, &valid).await.0,
        200,
        "control token must be accepted"
    );

    let mut tampered = valid.clone();
    tampered.replace_range(tampered.len() - 3.., "AAA");
    let payload = URL_SAFE_NO_PAD.encode(claims(&sub, json!({})).to_string());
    let none_header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"none","typ":"JWT","kid":"{TEST_JWT_KID}"}}"#
    ));
    let rs_header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"RS256","typ":"JWT","kid":"{TEST_JWT_KID}"}}"#
    ));
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(
                    &sub,
                    json!({"exp": now - 60, "iat": now - 900, "nbf": now - 900}),
                ),
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(&sub, json!({"nbf": now + 600})),
            ),
        ),
        (
            "no exp",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(&sub, json!({"exp": null})),
            ),
        ),
        (
            "no nbf",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(&sub, json!({"nbf": null})),
            ),
        ),
        ("tampered signature", tampered),
        (
            "wrong audience",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(&sub, json!({"aud": "another-api"})),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(&sub, json!({"iss": "evil"})),
            ),
        ),
        ("alg none", format!("{none_header}.{payload}.")),
        (
            "RS256 header with an HMAC signature",
            format!(
                "{rs_header}.{payload}.{}",
                valid.rsplit('.').next().unwrap_or_default()
            ),
        ),
        (
            "HS512 with the right secret",
            sign(
                Algorithm::HS512,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(&sub, json!({})),
            ),
        ),
        (
            "unknown kid",
            sign(
                Algorithm::HS256,
                Some("other-key"),
                TEST_JWT_SECRET,
                &claims(&sub, json!({})),
            ),
        ),
        (
            "no kid",
            sign(
                Algorithm::HS256,
                None,
                TEST_JWT_SECRET,
                &claims(&sub, json!({})),
            ),
        ),
        (
            "wrong secret",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                b"another secret that is long enough!!",
                &claims(&sub, json!({})),
            ),
        ),
        (
            "unknown user",
            sign(
                Algorithm::HS256,
                Some(TEST_JWT_KID),
                TEST_JWT_SECRET,
                &claims(&Uuid::new_v4().to_string(), json!({})),
            ),
        ),
        ("refresh token as access token", user.refresh_token.clone()),
        ("garbage", "abc.def.ghi".into()),
        ("unknown API token", "amk_doesnotexist".into()),
    ];
    for (what, token) in cases {
        assert_rejected(&app, &token, what).await;
    }

    let response = app
        .client
        .post(app.graphql_url())
        .header("authorization", "Basic dXNlcjpwYXNz")
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().get("www-authenticate").is_some());
}

#[tokio::test]
async fn api_tokens_are_shown_once_work_as_bearer_and_can_be_revoked() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let create = "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) {
        token apiToken { id name prefix } userErrors { field code } } }";
    let body = app
        .graphql(
            Some(&user.access_token),
            create,
            json!({ "input": { "name": "queue exporter" } }),
        )
        .await;
    let payload = &body["data"]["createApiToken"];
    let token = payload["token"]
        .as_str()
        .expect("token shown once")
        .to_owned();
    assert!(token.starts_with(payload["apiToken"]["prefix"].as_str().expect("prefix")));
    let token_id = payload["apiToken"]["id"].as_str().expect("id").to_owned();

    let (status, viewer) = viewer_with(&app, &token).await;
    assert_eq!(
        (status, &viewer["data"]["viewer"]["email"]),
        (200, &json!(user.email))
    );
    let listed = app
        .graphql(
            Some(&token),
            "{ myApiTokens { name lastUsedAt } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"]["myApiTokens"][0]["name"],
        json!("queue exporter")
    );
    assert!(
        listed["data"]["myApiTokens"][0]["lastUsedAt"].is_string(),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains(&token),
        "the secret is never shown again"
    );

    // Nobody else can revoke it: it looks missing.
    let other = app.sign_up().await;
    let revoke =
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { apiToken { revokedAt } } }";
    let body = app
        .graphql(Some(&other.access_token), revoke, json!({ "id": token_id }))
        .await;
    assert_eq!(error_code(&body), Some("NOT_FOUND"), "{body}");

    let body = app
        .graphql(Some(&user.access_token), revoke, json!({ "id": token_id }))
        .await;
    assert!(
        body["data"]["revokeApiToken"]["apiToken"]["revokedAt"].is_string(),
        "{body}"
    );
    assert_rejected(&app, &token, "revoked API token").await;

    let body = app
        .graphql(
            Some(&user.access_token),
            create,
            json!({ "input": { "name": "old", "expiresAt": "2020-01-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(
        body["data"]["createApiToken"]["userErrors"][0]["code"],
        json!("EXPIRY_IN_PAST")
    );
    let body = app
        .graphql(
            Some(&user.access_token),
            create,
            json!({ "input": { "name": "  " } }),
        )
        .await;
    assert_eq!(
        body["data"]["createApiToken"]["userErrors"][0]["code"],
        json!("TOKEN_NAME_INVALID")
    );
}

#[tokio::test]
async fn only_admins_create_users_and_reviewers_can_then_log_in() {
    let app = spawn_app().await;
    let admin = app.user_with_role(Role::Admin).await;
    let submitter = app.sign_up().await;
    let reviewer_role = app.user_with_role(Role::Reviewer).await;
    let create = "mutation($input: CreateUserInput!) { createUser(input: $input) { user { email role } userErrors { code } } }";
    let input = json!({ "input": { "email": "reviewer@contoso.com", "password": PASSWORD, "role": "REVIEWER" } });

    let body = app.graphql(None, create, input.clone()).await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    let body = app
        .graphql(Some(&submitter.access_token), create, input.clone())
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let body = app
        .graphql(Some(&reviewer_role.access_token), create, input.clone())
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");

    let body = app.graphql(Some(&admin.access_token), create, input).await;
    assert_eq!(
        body["data"]["createUser"]["user"]["role"],
        json!("REVIEWER"),
        "{body}"
    );
    let reviewer = app.log_in("reviewer@contoso.com").await;
    let body = app
        .graphql(Some(&reviewer.access_token), VIEWER, json!({}))
        .await;
    assert_eq!(body["data"]["viewer"]["role"], json!("REVIEWER"));
}

#[tokio::test]
async fn disabled_users_lose_access_at_once_by_every_credential() {
    let app = spawn_app().await;
    let admin = app.user_with_role(Role::Admin).await;
    let user = app.sign_up().await;
    let created = app
        .graphql(
            Some(&user.access_token),
            "mutation { createApiToken(input: {name: \"ci\"}) { token } }",
            json!({}),
        )
        .await;
    let api_token = created["data"]["createApiToken"]["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let disable = "mutation($id: ID!, $d: Boolean!) { setUserDisabled(input: {userId: $id, disabled: $d}) { user { disabled } userErrors { code } } }";
    let body = app
        .graphql(
            Some(&user.access_token),
            disable,
            json!({ "id": user.id, "d": true }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        Some("FORBIDDEN"),
        "a submitter cannot disable anyone: {body}"
    );
    let body = app
        .graphql(
            Some(&admin.access_token),
            disable,
            json!({ "id": admin.id, "d": true }),
        )
        .await;
    assert_eq!(
        body["data"]["setUserDisabled"]["userErrors"][0]["code"],
        json!("CANNOT_DISABLE_SELF")
    );

    let body = app
        .graphql(
            Some(&admin.access_token),
            disable,
            json!({ "id": user.id, "d": true }),
        )
        .await;
    assert_eq!(
        body["data"]["setUserDisabled"]["user"]["disabled"],
        json!(true),
        "{body}"
    );
    assert_rejected(&app, &user.access_token, "access token of a disabled user").await;
    assert_rejected(&app, &api_token, "API token of a disabled user").await;
    let refresh =
        "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { accessToken } }";
    let body = app
        .graphql(None, refresh, json!({ "t": user.refresh_token }))
        .await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"));
    let login = "mutation($input: LogInInput!) { logIn(input: $input) { userErrors { code } } }";
    let body = app
        .graphql(
            None,
            login,
            json!({ "input": { "email": user.email, "password": PASSWORD } }),
        )
        .await;
    assert_eq!(
        body["data"]["logIn"]["userErrors"][0]["code"],
        json!("INVALID_CREDENTIALS")
    );

    // Re-enabled: nothing revoked by disabling comes back, neither the API token nor the
    // session; the user signs in again.
    app.graphql(
        Some(&admin.access_token),
        disable,
        json!({ "id": user.id, "d": false }),
    )
    .await;
    assert_rejected(&app, &api_token, "API token revoked by disabling").await;
    assert_rejected(&app, &user.access_token, "session ended while disabled").await;
    let body = app
        .graphql(None, refresh, json!({ "t": user.refresh_token }))
        .await;
    assert_eq!(error_code(&body), Some("UNAUTHENTICATED"), "{body}");
    let again = app.log_in(&user.email).await;
    assert_eq!(viewer_with(&app, &again.access_token).await.0, 200);
}

#[tokio::test]
async fn users_are_visible_through_node_only_to_themselves_and_admins() {
    let app = spawn_app().await;
    let admin = app.user_with_role(Role::Admin).await;
    let alice = app.sign_up().await;
    let bob = app.sign_up().await;
    let query = "query($id: ID!) { node(id: $id) { id ... on User { email } } }";
    let own = app
        .graphql(Some(&alice.access_token), query, json!({ "id": alice.id }))
        .await;
    assert_eq!(own["data"]["node"]["email"], json!(alice.email));
    let other = app
        .graphql(Some(&bob.access_token), query, json!({ "id": alice.id }))
        .await;
    let missing = app
        .graphql(
            Some(&bob.access_token),
            query,
            json!({ "id": "VXNlcjowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA" }),
        )
        .await;
    assert_eq!(
        other, missing,
        "another user's id looks exactly like a missing one"
    );
    assert_eq!(other["data"]["node"], Value::Null);
    let by_admin = app
        .graphql(Some(&admin.access_token), query, json!({ "id": alice.id }))
        .await;
    assert_eq!(by_admin["data"]["node"]["email"], json!(alice.email));
}
