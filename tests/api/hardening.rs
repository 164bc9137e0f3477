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

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = app
            .client
            .post(app.graphql_url())
            .header("authorization", format!("{scheme} {}", user.access_token))
            .json(&json!({ "query": "{ viewer { id } }" }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), 200, "{scheme}");
    }
}

#[tokio::test]
async fn attestations_name_manual_criteria_once_and_comments_show_their_author() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let mut provider = Registration::create(&app, &owner, "Attest").await;
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
    app.graphql(
        Some(&reviewer.access_token),
        "mutation($id: ID!) { claimSubmission(input: {submissionId: $id}) { submission { id } } }",
        json!({ "id": id }),
    )
    .await;
    let approve = "mutation($input: ApproveSubmissionInput!) { approveSubmission(input: $input) { submission { status } userErrors { field code } } }";
    let body = app
        .graphql(
            Some(&reviewer.access_token),
            approve,
            json!({ "input": { "submissionId": id, "attestations": [
                { "criterion": "AUTHENTICATED", "note": "x" },
                { "criterion": "SPAM_COMPLAINT_RATE", "note": "fine" },
                { "criterion": "SPAM_COMPLAINT_RATE", "note": "again" } ] } }),
        )
        .await;
    let codes: Vec<&str> = body["data"]["approveSubmission"]["userErrors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert_eq!(codes, vec!["NOT_A_MANUAL_CRITERION", "DUPLICATE"], "{body}");

    let comment = app
        .graphql(
            Some(&reviewer.access_token),
            "mutation($id: ID!) { addComment(input: {submissionId: $id, body: \"Looking now.\"}) { comment { actor { role email } } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        comment["data"]["addComment"]["comment"]["actor"]["email"],
        json!(reviewer.email),
        "{comment}"
    );
}
