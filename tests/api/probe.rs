//! Regression tests for the findings of a security probe of the API: ambiguous target URLs,
//! special-use and look-alike domains, group syntax in a sample's From, arbitrary field paths
//! in change requests, API tokens minting tokens, revived credentials, and error floods.

use dashboard::auth::Role;
use serde_json::{Value, json};

use crate::{
    helpers::{sample, spawn_app},
    registration::Registration,
};

/// `(field path, code)` of every user error in a payload.
fn codes(payload: &Value) -> Vec<(Value, String)> {
    payload["userErrors"]
        .as_array()
        .unwrap_or_else(|| panic!("no userErrors in {payload}"))
        .iter()
        .map(|e| {
            (
                e["field"].clone(),
                e["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The check of one criterion in a provider's criteria report.
fn criterion<'v>(provider: &'v Value, name: &str) -> &'v Value {
    provider["criteriaReport"]["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["criterion"] == json!(name)))
        .unwrap_or_else(|| panic!("no {name} check in {provider}"))
}

#[tokio::test]
async fn target_urls_with_ports_backslashes_or_ambiguous_hosts_are_refused() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Ambiguous").await;
    let cases: &[(&str, &str)] = &[
        ("https://api.myservice.com:8443", "URL_PORT_NOT_ALLOWED"),
        ("https://api.myservice.com:80/hook", "URL_PORT_NOT_ALLOWED"),
        ("https://api.myservice.com\\@evil.com", "URL_INVALID"),
        ("https://evil.com\\@api.myservice.com", "URL_INVALID"),
        ("https://api.myservice.com@evil.com", "URL_HAS_USERINFO"),
        ("https://api.myservice.com%2eevil.com", "URL_HOST_AMBIGUOUS"),
    ];
    for (target, code) in cases {
        let payload = provider
            .provider_details(&["myservice@contoso.com"], &[target])
            .await;
        assert_eq!(
            codes(&payload),
            vec![(json!(["targetUrls", "0"]), (*code).to_owned())],
            "{target}: {payload}"
        );
    }
    let stored = provider
        .read("version draft { providerDetails { targetUrls } }")
        .await;
    assert_eq!(stored["draft"]["providerDetails"], Value::Null, "{stored}");
}

#[tokio::test]
async fn action_urls_on_other_ports_or_behind_backslashes_fail_the_targets_check() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Card").await;
    provider
        .provider_details(
            &["expense@contoso.com"],
            &["https://api.contoso.com", "https://expenses.contoso.com"],
        )
        .await;
    // The approve and reject buttons of the good sample, moved to another port and behind a
    // backslash that browsers read as "/" (host api.contoso.com) and others as user info
    // (host evil.com).
    let good = sample("01-good-global-dkim-adaptive.eml");
    let tampered = good
        .replacen(
            "https://api.contoso.com/expense/v1/reports/ER=",
            "https://api.contoso.com:8443/expense/v1/reports/ER=",
            1,
        )
        .replacen(
            "https://api.contoso.com/expense/v1/repo=",
            "https://api.contoso.com\\\\@evil.com/expense/v1/repo=",
            1,
        );
    assert_ne!(tampered, good, "the sample's action URLs moved");
    let payload = provider
        .edit(
            "updateVerificationDetails",
            "UpdateVerificationDetailsInput",
            json!({ "reviewerInstructions": "steps", "sampleEmail": tampered }),
        )
        .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    let check = criterion(&payload["provider"], "ACTIONS_WITHIN_TARGETS");
    assert_eq!(check["verdict"], json!("FAIL"), "{check}");
    let evidence = check["evidence"].to_string();
    assert!(evidence.contains("port 8443"), "{evidence}");
    assert!(evidence.contains("backslash"), "{evidence}");
}

#[tokio::test]
async fn special_use_ip_and_look_alike_domains_are_refused_everywhere() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Domains").await;
    let senders: &[(&str, &str)] = &[
        ("alerts@contoso.test", "EMAIL_DOMAIN_SPECIAL_USE"),
        ("alerts@mail.local", "EMAIL_DOMAIN_SPECIAL_USE"),
        ("alerts@svc.internal", "EMAIL_DOMAIN_SPECIAL_USE"),
        ("alerts@nas.home.arpa", "EMAIL_DOMAIN_SPECIAL_USE"),
        ("alerts@x.onion", "EMAIL_DOMAIN_SPECIAL_USE"),
        ("alerts@[192.0.2.1]", "EMAIL_DOMAIN_IP_LITERAL"),
        ("alerts@p\u{0430}ypal.com", "EMAIL_DOMAIN_MIXED_SCRIPT"),
        ("alerts@xn--pypal-4ve.com", "EMAIL_DOMAIN_MIXED_SCRIPT"),
    ];
    for (sender, code) in senders {
        let payload = provider
            .provider_details(&[sender], &["https://api.myservice.com"])
            .await;
        assert_eq!(
            codes(&payload),
            vec![(json!(["senderEmails", "0"]), (*code).to_owned())],
            "{sender}: {payload}"
        );
    }
    let targets: &[(&str, &str)] = &[
        ("https://api.myservice.test", "URL_HOST_SPECIAL_USE"),
        ("https://api.example", "URL_HOST_SPECIAL_USE"),
        ("https://x.alt/hook", "URL_HOST_SPECIAL_USE"),
        ("https://192.0.2.1", "URL_IP_LITERAL"),
        ("https://0xc0.0xa8.0.1", "URL_IP_LITERAL"),
        (
            "https://login.micr\u{043E}soft.com",
            "URL_HOST_MIXED_SCRIPT",
        ),
    ];
    for (target, code) in targets {
        let payload = provider
            .provider_details(&["alerts@contoso.com"], &[target])
            .await;
        assert_eq!(
            codes(&payload),
            vec![(json!(["targetUrls", "0"]), (*code).to_owned())],
            "{target}: {payload}"
        );
    }
    let payload = provider
        .edit(
            "updatePublisherInfo",
            "UpdatePublisherInfoInput",
            json!({ "publisherName": "Contoso", "websiteUrl": "https://www.contoso.invalid",
                    "supportUrl": "https://supp\u{043E}rt.contoso.com", "description": "d" }),
        )
        .await;
    assert_eq!(
        codes(&payload),
        vec![
            (json!(["websiteUrl"]), "URL_HOST_SPECIAL_USE".to_owned()),
            (json!(["supportUrl"]), "URL_HOST_MIXED_SCRIPT".to_owned())
        ],
        "{payload}"
    );
    let stored = provider
        .read("draft { providerDetails { senderEmails } } version")
        .await;
    assert_eq!(stored["version"], json!(1), "{stored}");
}

#[tokio::test]
async fn a_sample_whose_from_is_a_group_fails_the_sender_check() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Group").await;
    provider
        .provider_details(
            &["expense@contoso.com"],
            &["https://api.contoso.com", "https://expenses.contoso.com"],
        )
        .await;
    let good = sample("01-good-global-dkim-adaptive.eml");
    for (from, why) in [
        (
            "From: Contoso Expenses: expense@contoso.com;",
            "group syntax",
        ),
        ("From: undisclosed:;", "group syntax"),
        (
            "From: expense@contoso.com\r\nFrom: expense@contoso.com",
            "2 From: fields",
        ),
    ] {
        let tampered = good.replacen("From: Contoso Expenses <expense@contoso.com>", from, 1);
        assert_ne!(tampered, good);
        let payload = provider
            .edit(
                "updateVerificationDetails",
                "UpdateVerificationDetailsInput",
                json!({ "reviewerInstructions": "steps", "sampleEmail": tampered }),
            )
            .await;
        assert_eq!(payload["userErrors"], json!([]), "{from}: {payload}");
        let check = criterion(&payload["provider"], "SENDER_REGISTERED");
        assert_eq!(check["verdict"], json!("FAIL"), "{from}: {check}");
        assert!(
            check["evidence"].to_string().contains(why),
            "{from}: {check}"
        );
    }
}

#[tokio::test]
async fn change_requests_name_only_fields_of_the_registration_form() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let mut provider = Registration::create(&app, &owner, "Fields").await;
    provider
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    provider.scope("ORGANIZATION").await;
    provider.contact().await;
    let submitted = provider.submit().await;
    let id = submitted["submission"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("submitted: {submitted}"))
        .to_owned();
    let claim = app
        .graphql(
            Some(&reviewer.access_token),
            "mutation($id: ID!) { claimSubmission(input: {submissionId: $id}) { submission { status } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        claim["data"]["claimSubmission"]["submission"]["status"],
        json!("IN_REVIEW"),
        "{claim}"
    );
    let ask = "mutation($id: ID!, $fields: [String!]!) { requestChanges(input: {submissionId: $id, reason: \"Fix these.\", fields: $fields}) { submission { status requestedFields } userErrors { field code } } }";
    let body = app
        .graphql(
            Some(&reviewer.access_token),
            ask,
            json!({ "id": id, "fields": ["contactInfo.email", "contact.email", "targets[0]", "<img src=x onerror=alert(1)>", "contactInfo.email"] }),
        )
        .await;
    let payload = &body["data"]["requestChanges"];
    assert_eq!(payload["submission"], Value::Null, "{body}");
    assert_eq!(
        codes(payload),
        vec![
            (json!(["fields", "1"]), "UNKNOWN_FIELD".to_owned()),
            (json!(["fields", "2"]), "UNKNOWN_FIELD".to_owned()),
            (json!(["fields", "3"]), "UNKNOWN_FIELD".to_owned()),
            (json!(["fields", "4"]), "DUPLICATE".to_owned()),
        ]
    );
    // Nothing changed: still in review, no requested fields.
    let seen = provider
        .read(
            "activeSubmission { status requestedFields } openSubmission { status requestedFields }",
        )
        .await;
    assert_eq!(
        seen["openSubmission"]["status"],
        json!("IN_REVIEW"),
        "{seen}"
    );
    assert_eq!(
        seen["openSubmission"]["requestedFields"],
        json!([]),
        "{seen}"
    );

    // Entries the submission does not have: one sender and one target URL were submitted.
    let body = app
        .graphql(
            Some(&reviewer.access_token),
            ask,
            json!({ "id": id, "fields": ["providerDetails.senderEmails[0]", "providerDetails.senderEmails[19]", "providerDetails.targetUrls[1]"] }),
        )
        .await;
    let payload = &body["data"]["requestChanges"];
    assert_eq!(payload["submission"], Value::Null, "{body}");
    assert_eq!(
        codes(payload),
        vec![
            (json!(["fields", "1"]), "NO_SUCH_ENTRY".to_owned()),
            (json!(["fields", "2"]), "NO_SUCH_ENTRY".to_owned()),
        ]
    );

    let body = app
        .graphql(
            Some(&reviewer.access_token),
            ask,
            json!({ "id": id, "fields": ["contactInfo.email", "providerDetails.targetUrls[0]", "publisherInfo"] }),
        )
        .await;
    let payload = &body["data"]["requestChanges"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    assert_eq!(
        payload["submission"]["requestedFields"],
        json!([
            "contactInfo.email",
            "providerDetails.targetUrls[0]",
            "publisherInfo"
        ])
    );
}

const CREATE_TOKEN: &str = "mutation($input: CreateApiTokenInput!) { createApiToken(input: $input) { token apiToken { id expiresAt } userErrors { field code message } } }";
const VIEWER: &str = "{ viewer { id } }";
const SET_DISABLED: &str = "mutation($id: ID!, $d: Boolean!) { setUserDisabled(input: {userId: $id, disabled: $d}) { user { disabled } userErrors { code } } }";

/// The HTTP status of `{ viewer { id } }` with `token`.
async fn viewer_status(app: &crate::helpers::TestApp, token: &str) -> u16 {
    app.client
        .post(app.graphql_url())
        .bearer_auth(token)
        .json(&json!({ "query": VIEWER }))
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_api_token_cannot_create_api_tokens() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let body = app
        .graphql(
            Some(&user.access_token),
            CREATE_TOKEN,
            json!({ "input": { "name": "ci", "expiresAt": "2999-01-01T00:00:00Z" } }),
        )
        .await;
    let parent = body["data"]["createApiToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a session creates a token: {body}"))
        .to_owned();

    for input in [
        json!({ "name": "forever" }),
        json!({ "name": "shorter", "expiresAt": "2998-01-01T00:00:00Z" }),
        json!({ "name": "longer", "expiresAt": "3999-01-01T00:00:00Z" }),
    ] {
        let body = app
            .graphql(Some(&parent), CREATE_TOKEN, json!({ "input": input }))
            .await;
        let payload = &body["data"]["createApiToken"];
        assert_eq!(payload["token"], Value::Null, "{body}");
        assert_eq!(
            payload["userErrors"][0]["code"],
            json!("SESSION_REQUIRED"),
            "{body}"
        );
    }
    let listed = app
        .graphql(
            Some(&user.access_token),
            "{ myApiTokens { name } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["data"]["myApiTokens"],
        json!([{ "name": "ci" }]),
        "only the session's token exists: {listed}"
    );
    // The token still does what scripts need.
    assert_eq!(viewer_status(&app, &parent).await, 200);
}

#[tokio::test]
async fn re_enabling_a_user_revives_neither_tokens_nor_sessions() {
    let app = spawn_app().await;
    let admin = app.user_with_role(Role::Admin).await;
    let user = app.sign_up().await;
    let body = app
        .graphql(
            Some(&user.access_token),
            CREATE_TOKEN,
            json!({ "input": { "name": "ci" } }),
        )
        .await;
    let api_token = body["data"]["createApiToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("token: {body}"))
        .to_owned();
    assert_eq!(viewer_status(&app, &api_token).await, 200);

    for disabled in [true, false] {
        let body = app
            .graphql(
                Some(&admin.access_token),
                SET_DISABLED,
                json!({ "id": user.id, "d": disabled }),
            )
            .await;
        assert_eq!(
            body["data"]["setUserDisabled"]["user"]["disabled"],
            json!(disabled),
            "{body}"
        );
    }

    assert_eq!(viewer_status(&app, &api_token).await, 401, "old API token");
    assert_eq!(
        viewer_status(&app, &user.access_token).await,
        401,
        "old access token"
    );
    let refreshed = app
        .graphql(
            None,
            "mutation($t: String!) { refreshSession(input: {refreshToken: $t}) { accessToken } }",
            json!({ "t": user.refresh_token }),
        )
        .await;
    assert_eq!(
        crate::helpers::error_code(&refreshed),
        Some("UNAUTHENTICATED"),
        "old refresh token: {refreshed}"
    );

    // Signing in again works, and the revoked token is listed as revoked.
    let again = app.log_in(&user.email).await;
    assert_eq!(viewer_status(&app, &again.access_token).await, 200);
    let listed = app
        .graphql(
            Some(&again.access_token),
            "{ myApiTokens { name revokedAt } }",
            json!({}),
        )
        .await;
    assert!(
        listed["data"]["myApiTokens"][0]["revokedAt"].is_string(),
        "{listed}"
    );
}

#[tokio::test]
async fn short_local_parts_do_not_exempt_a_password_from_the_address_rule() {
    let app = spawn_app().await;
    let sign_up = "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken userErrors { field code message } } }";
    for password in ["al1234567890", "al@contoso.com!!", "AL-al-AL-al-AL-al!"] {
        let body = app
            .graphql(
                None,
                sign_up,
                json!({ "input": { "email": "al@contoso.com", "password": password } }),
            )
            .await;
        let payload = &body["data"]["signUp"];
        assert_eq!(payload["accessToken"], Value::Null, "{password}: {body}");
        assert_eq!(
            codes(payload),
            vec![(json!(["password"]), "PASSWORD_CONTAINS_EMAIL".to_owned())],
            "{password}: {body}"
        );
    }
    let body = app
        .graphql(
            None,
            sign_up,
            json!({ "input": { "email": "al@contoso.com", "password": "totally ordinary phrase" } }),
        )
        .await;
    assert_eq!(body["data"]["signUp"]["userErrors"], json!([]), "{body}");
    assert!(body["data"]["signUp"]["accessToken"].is_string(), "{body}");
}

#[tokio::test]
async fn twenty_thousand_invalid_senders_give_a_bounded_list_of_errors() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Flood").await;
    let senders: Vec<String> = (0..20_000).map(|i| format!("not-an-address-{i}")).collect();
    let senders: Vec<&str> = senders.iter().map(String::as_str).collect();
    let payload = provider
        .provider_details(&senders, &["https://api.myservice.com"])
        .await;
    let errors = codes(&payload);
    assert_eq!(errors.len(), 21, "{payload}");
    assert_eq!(
        errors[0],
        (json!(["senderEmails"]), "TOO_MANY".to_owned()),
        "the list maximum comes first"
    );
    assert!(
        payload["userErrors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("At most 20") && m.contains("20000 were given")),
        "{}",
        payload["userErrors"][0]
    );
    assert_eq!(
        errors[1],
        (json!(["senderEmails", "0"]), "EMAIL_INVALID".to_owned())
    );
    assert_eq!(errors[20], (json!([]), "TOO_MANY_ERRORS".to_owned()));

    // Twenty errors exactly are all listed, without TOO_MANY_ERRORS.
    let twenty: Vec<String> = (0..20).map(|i| format!("bad-{i}")).collect();
    let twenty: Vec<&str> = twenty.iter().map(String::as_str).collect();
    let payload = provider
        .provider_details(&twenty, &["https://api.myservice.com"])
        .await;
    let errors = codes(&payload);
    assert_eq!(errors.len(), 20, "{payload}");
    assert!(errors.iter().all(|e| e.1 == "EMAIL_INVALID"), "{payload}");

    // 21 errors over two lists: 20 listed, then TOO_MANY_ERRORS.
    let targets: Vec<&str> = vec!["http://api.myservice.com"];
    let payload = provider.provider_details(&twenty, &targets).await;
    let errors = codes(&payload);
    assert_eq!(errors.len(), 21, "{payload}");
    assert_eq!(errors[20].1, "TOO_MANY_ERRORS");
    let stored = provider.read("version").await;
    assert_eq!(stored["version"], json!(1), "nothing was saved");
}

#[tokio::test]
async fn queue_filters_with_huge_enum_lists_still_answer() {
    let app = spawn_app().await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let scopes: Vec<&str> = std::iter::repeat_n("GLOBAL", 70_000).collect();
    let statuses: Vec<&str> = std::iter::repeat_n("SUBMITTED", 70_000).collect();
    let body = app
        .graphql(
            Some(&reviewer.access_token),
            "query($f: ReviewQueueFilter) { reviewQueue(filter: $f) { totalCount } }",
            json!({ "f": { "scopes": scopes, "statuses": statuses } }),
        )
        .await;
    assert_eq!(
        body["data"]["reviewQueue"]["totalCount"],
        json!(0),
        "{body}"
    );
}
