//! The authorization matrix: every operation against every kind of caller. A change to any cell
//! fails the test and prints the whole table.

use dashboard::auth::Role;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, TestUser, spawn_app},
    registration::Registration,
};

/// The callers, in table column order.
const CALLERS: [&str; 6] = [
    "anonymous",
    "owner",
    "other",
    "reviewer",
    "admin",
    "disabled",
];

/// What a provider under test looks like.
struct Fixture {
    provider: String,
    submission: String,
}

struct Callers {
    owner: TestUser,
    other: TestUser,
    reviewer: TestUser,
    admin: TestUser,
    disabled: TestUser,
}

impl Callers {
    fn token(&self, caller: &str) -> Option<&str> {
        match caller {
            "owner" => Some(&self.owner.access_token),
            "other" => Some(&self.other.access_token),
            "reviewer" => Some(&self.reviewer.access_token),
            "admin" => Some(&self.admin.access_token),
            "disabled" => Some(&self.disabled.access_token),
            _ => None,
        }
    }
}

/// A fresh submitted (or approved) provider of the owner, so no cell sees another's effects.
async fn fixture(app: &TestApp, owner: &TestUser, scope: &str) -> Fixture {
    let mut provider = Registration::create(app, owner, "Matrix").await;
    provider
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    provider.scope(scope).await;
    provider.contact().await;
    let submitted = provider.submit().await;
    Fixture {
        provider: provider.id.clone(),
        submission: submitted["submission"]["id"]
            .as_str()
            .expect("submitted")
            .to_owned(),
    }
}

/// Reduces a response to one word: `ok`, `null`, an error code, or `user:<code>`.
fn outcome(body: &Value) -> String {
    if let Some(code) = body["errors"][0]["extensions"]["code"].as_str() {
        return code.to_owned();
    }
    let Some((_, payload)) = body["data"].as_object().and_then(|d| d.iter().next()) else {
        return "no data".into();
    };
    if let Some(code) = payload["userErrors"][0]["code"].as_str() {
        return format!("user:{code}");
    }
    if payload.is_null() {
        "null".into()
    } else {
        "ok".into()
    }
}

#[tokio::test]
async fn every_operation_for_every_caller() {
    let app = spawn_app().await;
    let admin = app.user_with_role(Role::Admin).await;
    let callers = Callers {
        owner: app.sign_up().await,
        other: app.sign_up().await,
        reviewer: app.user_with_role(Role::Reviewer).await,
        disabled: app.sign_up().await,
        admin,
    };
    let disable = "mutation($id: ID!) { setUserDisabled(input: {userId: $id, disabled: true}) { user { id } } }";
    app.graphql(
        Some(&callers.admin.access_token),
        disable,
        json!({ "id": callers.disabled.id }),
    )
    .await;

    // (operation, needs an approved submission, the caller claims first, query)
    let operations: Vec<(&str, bool, bool, &str)> = vec![
        ("viewer", false, false, "query { viewer { id } }"),
        (
            "myProviders",
            false,
            false,
            "query { myProviders { totalCount } }",
        ),
        (
            "provider",
            false,
            false,
            "query ($p: ID!) { provider(id: $p) { id } }",
        ),
        (
            "node(provider)",
            false,
            false,
            "query ($p: ID!) { node(id: $p) { id } }",
        ),
        (
            "submission",
            false,
            false,
            "query ($s: ID!) { submission(id: $s) { id } }",
        ),
        (
            "reviewQueue",
            false,
            false,
            "query { reviewQueue { totalCount } }",
        ),
        (
            "createProvider",
            false,
            false,
            "mutation { createProvider(input: {name: \"x\"}) { provider { id } userErrors { code } } }",
        ),
        (
            "setScope",
            false,
            false,
            "mutation ($p: ID!) { setScope(input: {providerId: $p, expectedVersion: 4, scope: GLOBAL}) { provider { id } userErrors { code } } }",
        ),
        (
            "submitForReview",
            false,
            false,
            "mutation ($p: ID!) { submitForReview(input: {providerId: $p, expectedVersion: 4}) { submission { id } userErrors { code } } }",
        ),
        (
            "withdrawSubmission",
            false,
            false,
            "mutation ($s: ID!) { withdrawSubmission(input: {submissionId: $s}) { submission { id } userErrors { code } } }",
        ),
        (
            "claimSubmission",
            false,
            false,
            "mutation ($s: ID!) { claimSubmission(input: {submissionId: $s}) { submission { id } userErrors { code } } }",
        ),
        (
            "releaseSubmission",
            false,
            true,
            "mutation ($s: ID!) { releaseSubmission(input: {submissionId: $s}) { submission { id } userErrors { code } } }",
        ),
        (
            "approveSubmission",
            false,
            true,
            "mutation ($s: ID!) { approveSubmission(input: {submissionId: $s}) { submission { id } userErrors { code } } }",
        ),
        (
            "rejectSubmission",
            false,
            true,
            "mutation ($s: ID!) { rejectSubmission(input: {submissionId: $s, reason: \"no\"}) { submission { id } userErrors { code } } }",
        ),
        (
            "requestChanges",
            false,
            true,
            "mutation ($s: ID!) { requestChanges(input: {submissionId: $s, reason: \"fix\", fields: [\"scope\"]}) { submission { id } userErrors { code } } }",
        ),
        (
            "revokeApproval",
            true,
            false,
            "mutation ($s: ID!) { revokeApproval(input: {submissionId: $s, reason: \"abuse\"}) { submission { id } userErrors { code } } }",
        ),
        (
            "addComment",
            false,
            false,
            "mutation ($s: ID!) { addComment(input: {submissionId: $s, body: \"hi\"}) { comment { kind } userErrors { code } } }",
        ),
        (
            "addComment(internal)",
            false,
            false,
            "mutation ($s: ID!) { addComment(input: {submissionId: $s, body: \"hi\", internal: true}) { comment { kind } userErrors { code } } }",
        ),
        (
            "createApiToken",
            false,
            false,
            "mutation { createApiToken(input: {name: \"ci\"}) { token } }",
        ),
        ("myApiTokens", false, false, "query { myApiTokens { id } }"),
        (
            "createUser",
            false,
            false,
            "mutation { createUser(input: {email: \"new@contoso.com\", password: \"a perfectly long password\", role: REVIEWER}) { user { id } userErrors { code } } }",
        ),
    ];

    let expected: Vec<(&str, [&str; 6])> = vec![
        //                        anonymous          owner                    other        reviewer                 admin                    disabled
        (
            "viewer",
            ["null", "ok", "ok", "ok", "ok", "UNAUTHENTICATED"],
        ),
        (
            "myProviders",
            ["UNAUTHENTICATED", "ok", "ok", "ok", "ok", "UNAUTHENTICATED"],
        ),
        (
            "provider",
            [
                "UNAUTHENTICATED",
                "ok",
                "null",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "node(provider)",
            [
                "UNAUTHENTICATED",
                "ok",
                "null",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "submission",
            [
                "UNAUTHENTICATED",
                "ok",
                "null",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "reviewQueue",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "createProvider",
            ["UNAUTHENTICATED", "ok", "ok", "ok", "ok", "UNAUTHENTICATED"],
        ),
        (
            "setScope",
            [
                "UNAUTHENTICATED",
                "ok",
                "NOT_FOUND",
                "FORBIDDEN",
                "FORBIDDEN",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "submitForReview",
            [
                "UNAUTHENTICATED",
                "user:OPEN_SUBMISSION_EXISTS",
                "NOT_FOUND",
                "FORBIDDEN",
                "FORBIDDEN",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "withdrawSubmission",
            [
                "UNAUTHENTICATED",
                "ok",
                "NOT_FOUND",
                "FORBIDDEN",
                "FORBIDDEN",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "claimSubmission",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "releaseSubmission",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "approveSubmission",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "rejectSubmission",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "requestChanges",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "revokeApproval",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "addComment",
            [
                "UNAUTHENTICATED",
                "ok",
                "NOT_FOUND",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "addComment(internal)",
            [
                "UNAUTHENTICATED",
                "user:FORBIDDEN",
                "NOT_FOUND",
                "ok",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
        (
            "createApiToken",
            ["UNAUTHENTICATED", "ok", "ok", "ok", "ok", "UNAUTHENTICATED"],
        ),
        (
            "myApiTokens",
            ["UNAUTHENTICATED", "ok", "ok", "ok", "ok", "UNAUTHENTICATED"],
        ),
        (
            "createUser",
            [
                "UNAUTHENTICATED",
                "FORBIDDEN",
                "FORBIDDEN",
                "FORBIDDEN",
                "ok",
                "UNAUTHENTICATED",
            ],
        ),
    ];

    let mut actual: Vec<(String, Vec<String>)> = Vec::new();
    let claim =
        "mutation($s: ID!) { claimSubmission(input: {submissionId: $s}) { submission { id } } }";
    for (name, approved, claims_first, query) in &operations {
        let mut row = Vec::new();
        for caller in CALLERS {
            let scope = if *approved {
                "MY_MAILBOX"
            } else {
                "ORGANIZATION"
            };
            let fixture = fixture(&app, &callers.owner, scope).await;
            let mut vars = json!({});
            if query.contains("$p:") {
                vars["p"] = json!(fixture.provider);
            }
            if query.contains("$s:") {
                vars["s"] = json!(fixture.submission);
            }
            if *claims_first {
                // A reviewer or admin acts on their own claim; anyone else on the reviewer's.
                let holder = if matches!(caller, "reviewer" | "admin") {
                    caller
                } else {
                    "reviewer"
                };
                app.graphql(
                    callers.token(holder),
                    claim,
                    json!({ "s": fixture.submission }),
                )
                .await;
            }
            let body = app.graphql(callers.token(caller), query, vars).await;
            row.push(outcome(&body));
        }
        actual.push(((*name).to_owned(), row));
    }

    let render = |rows: &[(String, Vec<String>)]| -> String {
        rows.iter()
            .map(|(name, cells)| format!("{name:<22} {}", cells.join(" | ")))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let expected: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(name, cells)| {
            (
                name.to_owned(),
                cells.iter().map(|c| (*c).to_owned()).collect(),
            )
        })
        .collect();
    assert!(
        actual == expected,
        "authorization matrix changed\ncolumns: {}\n--- expected\n{}\n--- actual\n{}",
        CALLERS.join(" | "),
        render(&expected),
        render(&actual)
    );
}
