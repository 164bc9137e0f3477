//! Regression tests for abuse found by probing the running service.

use dashboard::auth::Role;
use serde_json::json;

use crate::{
    helpers::{error_code, sample, spawn_app},
    registration::Registration,
};

#[tokio::test]
async fn many_copies_of_a_large_sample_in_one_query_exceed_the_complexity_limit() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Big").await;
    provider
        .edit(
            "updateVerificationDetails",
            "UpdateVerificationDetailsInput",
            json!({ "reviewerInstructions": "steps", "sampleEmail": sample("01-good-global-dkim-adaptive.eml") }),
        )
        .await;
    let one = app
        .graphql(Some(&owner.access_token), "query($id: ID!) { provider(id: $id) { draft { verificationDetails { sampleEmail } } } }", json!({ "id": provider.id }))
        .await;
    assert!(
        one["data"]["provider"]["draft"]["verificationDetails"]["sampleEmail"].is_string(),
        "{one}"
    );
    let ids: Vec<&str> = std::iter::repeat_n(provider.id.as_str(), 11).collect();
    let many = app
        .graphql(
            Some(&owner.access_token),
            "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Provider { draft { verificationDetails { sampleEmail } } criteriaReport { facts } } } }",
            json!({ "ids": ids }),
        )
        .await;
    assert_eq!(
        error_code(&many),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{many}"
    );
}

#[tokio::test]
async fn internal_notes_stay_hidden_from_an_owner_who_is_also_a_reviewer() {
    let app = spawn_app().await;
    let owner = app.user_with_role(Role::Reviewer).await;
    let colleague = app.user_with_role(Role::Reviewer).await;
    let mut provider = Registration::create(&app, &owner, "Reviewer's own").await;
    provider
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    provider.scope("ORGANIZATION").await;
    provider.contact().await;
    let submitted = provider.submit().await;
    let id = submitted["submission"]["id"]
        .as_str()
        .expect("submitted")
        .to_owned();
    let comment = "mutation($input: AddCommentInput!) { addComment(input: $input) { comment { internal } userErrors { code } } }";
    let note = app
        .graphql(Some(&colleague.access_token), comment, json!({ "input": { "submissionId": id, "body": "Owner is a colleague; double-check.", "internal": true } }))
        .await;
    assert_eq!(
        note["data"]["addComment"]["comment"]["internal"],
        json!(true),
        "{note}"
    );
    let own = app
        .graphql(
            Some(&owner.access_token),
            comment,
            json!({ "input": { "submissionId": id, "body": "x", "internal": true } }),
        )
        .await;
    assert_eq!(
        own["data"]["addComment"]["userErrors"][0]["code"],
        json!("FORBIDDEN"),
        "{own}"
    );
    let timeline = provider
        .read("timeline { edges { node { reason internal } } }")
        .await;
    assert!(!timeline.to_string().contains("double-check"), "{timeline}");
}

#[tokio::test]
async fn unknown_http_methods_do_not_create_metric_series() {
    let app = spawn_app().await;
    for i in 0..5 {
        let method = reqwest::Method::from_bytes(format!("M{i}X").as_bytes()).expect("method");
        app.client
            .request(method, format!("{}/livez", app.address))
            .send()
            .await
            .expect("send");
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(!metrics.contains("M0X"), "{metrics}");
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
}
