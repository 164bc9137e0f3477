//! The review workflow: the queue, claims, decisions, resubmission, comments and races.

use dashboard::auth::Role;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, TestUser, error_code, spawn_app, spawn_app_with},
    registration::Registration,
};

const QUEUE: &str =
    "query($filter: ReviewQueueFilter, $first: Int, $after: String, $order: QueueOrder) {
    reviewQueue(filter: $filter, first: $first, after: $after, orderBy: $order) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { cursor node { id number status scope queueEnteredAt ageInQueueSeconds
            claimHolder { id email } claimExpiresAt criteriaReport { overall }
            provider { id name } sections { providerDetails { senderEmails } scope } } } } }";

/// A provider of `owner` filled for `scope` and submitted; returns its submission id.
async fn submitted<'a>(
    app: &'a TestApp,
    owner: &'a TestUser,
    name: &str,
    scope: &str,
) -> (Registration<'a>, String) {
    let mut provider = Registration::create(app, owner, name).await;
    provider
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    provider.scope(scope).await;
    provider.contact().await;
    let submission = provider.submit().await;
    let id = submission["submission"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("submitted: {submission}"))
        .to_owned();
    (provider, id)
}

async fn act(app: &TestApp, user: &TestUser, mutation: &str, input: Value) -> Value {
    let query = format!(
        "mutation($input: {}!) {{ {mutation}(input: $input) {{ submission {{ id status claimHolder {{ email }} decisionReason requestedFields }} userErrors {{ field code message }} }} }}",
        input_type(mutation)
    );
    let body = app
        .graphql(Some(&user.access_token), &query, json!({ "input": input }))
        .await;
    if body["data"][mutation].is_null() {
        body
    } else {
        body["data"][mutation].clone()
    }
}

fn input_type(mutation: &str) -> &'static str {
    match mutation {
        "claimSubmission" | "releaseSubmission" => "SubmissionRefInput",
        "approveSubmission" => "ApproveSubmissionInput",
        "rejectSubmission" | "revokeApproval" => "DecisionReasonInput",
        "requestChanges" => "RequestChangesInput",
        _ => panic!("unknown mutation {mutation}"),
    }
}

#[tokio::test]
async fn a_submission_goes_from_queue_to_changes_to_resubmission_to_approval() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let (mut provider, first_id) = submitted(&app, &owner, "Seed example", "ORGANIZATION").await;

    // The reviewer finds it in the queue, with its frozen sections.
    let queue = app
        .graphql(Some(&reviewer.access_token), QUEUE, json!({}))
        .await;
    let item = &queue["data"]["reviewQueue"]["edges"][0]["node"];
    assert_eq!(item["id"], json!(first_id), "{queue}");
    assert_eq!(item["provider"]["name"], json!("Seed example"));
    assert_eq!(
        item["sections"]["providerDetails"]["senderEmails"],
        json!(["myservice@contoso.com"])
    );
    let entered = item["queueEnteredAt"].clone();

    let claimed = act(
        &app,
        &reviewer,
        "claimSubmission",
        json!({ "submissionId": first_id }),
    )
    .await;
    assert_eq!(
        claimed["submission"]["status"],
        json!("IN_REVIEW"),
        "{claimed}"
    );
    assert_eq!(
        claimed["submission"]["claimHolder"]["email"],
        json!(reviewer.email)
    );

    let asked = act(
        &app,
        &reviewer,
        "requestChanges",
        json!({ "submissionId": first_id, "reason": "Use your production sender.", "fields": ["providerDetails.senderEmails"] }),
    )
    .await;
    assert_eq!(
        asked["submission"]["status"],
        json!("CHANGES_REQUESTED"),
        "{asked}"
    );
    assert_eq!(
        asked["submission"]["requestedFields"],
        json!(["providerDetails.senderEmails"])
    );

    // The submitter sees the request, fixes the field and resubmits.
    let seen = provider
        .read("openSubmission { status decisionReason requestedFields }")
        .await;
    assert_eq!(
        seen["openSubmission"]["decisionReason"],
        json!("Use your production sender.")
    );
    provider
        .provider_details(
            &["notifications@myservice.com"],
            &["https://api.myservice.com"],
        )
        .await;
    let resubmitted = provider.submit().await;
    let second_id = resubmitted["submission"]["id"]
        .as_str()
        .expect("resubmitted")
        .to_owned();
    assert_eq!(
        resubmitted["submission"]["status"],
        json!("IN_REVIEW"),
        "it goes back to the reviewer: {resubmitted}"
    );

    let mine = app
        .graphql(
            Some(&reviewer.access_token),
            QUEUE,
            json!({ "filter": { "claimedBy": "ME" } }),
        )
        .await;
    let item = &mine["data"]["reviewQueue"]["edges"][0]["node"];
    assert_eq!(item["id"], json!(second_id), "{mine}");
    assert_eq!(
        item["queueEnteredAt"], entered,
        "the resubmission keeps its queue position"
    );
    assert_eq!(item["claimHolder"]["email"], json!(reviewer.email));

    let approved = act(
        &app,
        &reviewer,
        "approveSubmission",
        json!({ "submissionId": second_id }),
    )
    .await;
    assert_eq!(
        approved["submission"]["status"],
        json!("APPROVED"),
        "{approved}"
    );

    let timeline = provider
        .read("activeSubmission { number } submissions { number status } timeline(first: 100) { edges { node { kind toStatus actor { role email } reason } } }")
        .await;
    assert_eq!(timeline["activeSubmission"]["number"], json!(2));
    let steps: Vec<(String, Option<String>)> = timeline["timeline"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter(|e| e["node"]["toStatus"].is_string())
        .map(|e| {
            (
                e["node"]["kind"].as_str().unwrap_or("").to_owned(),
                e["node"]["actor"]["role"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let expected: Vec<(String, Option<String>)> = vec![
        ("SUBMITTED".into(), Some("SUBMITTER".into())),
        ("CLAIMED".into(), Some("REVIEWER".into())),
        ("CHANGES_REQUESTED".into(), Some("REVIEWER".into())),
        ("RESUBMITTED".into(), Some("SUBMITTER".into())),
        ("SUBMITTED".into(), Some("SUBMITTER".into())),
        ("CLAIMED".into(), None),
        ("APPROVED".into(), Some("REVIEWER".into())),
    ];
    assert_eq!(steps, expected, "{timeline}");
    // The submitter does not learn the reviewer's address.
    assert!(
        !timeline.to_string().contains(&reviewer.email),
        "{timeline}"
    );
}

#[tokio::test]
async fn only_the_claim_holder_decides_and_nobody_reviews_their_own_provider() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let other = app.user_with_role(Role::Reviewer).await;
    let (_, id) = submitted(&app, &owner, "Claims", "ORGANIZATION").await;

    let unclaimed = act(
        &app,
        &reviewer,
        "approveSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    assert_eq!(
        unclaimed["userErrors"][0]["code"],
        json!("NOT_CLAIM_HOLDER"),
        "{unclaimed}"
    );
    act(
        &app,
        &reviewer,
        "claimSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    let stolen = act(
        &app,
        &other,
        "claimSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    assert_eq!(error_code(&stolen), Some("CONFLICT"), "{stolen}");
    let by_other = act(
        &app,
        &other,
        "rejectSubmission",
        json!({ "submissionId": id, "reason": "no" }),
    )
    .await;
    assert_eq!(by_other["userErrors"][0]["code"], json!("NOT_CLAIM_HOLDER"));
    let no_reason = act(
        &app,
        &reviewer,
        "rejectSubmission",
        json!({ "submissionId": id, "reason": "  " }),
    )
    .await;
    assert_eq!(no_reason["userErrors"][0]["code"], json!("REQUIRED"));
    let no_fields = act(
        &app,
        &reviewer,
        "requestChanges",
        json!({ "submissionId": id, "reason": "x", "fields": [] }),
    )
    .await;
    assert_eq!(no_fields["userErrors"][0]["code"], json!("FIELDS_REQUIRED"));

    let released = act(
        &app,
        &reviewer,
        "releaseSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    assert_eq!(
        released["submission"]["status"],
        json!("SUBMITTED"),
        "{released}"
    );
    act(
        &app,
        &other,
        "claimSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    let rejected = act(
        &app,
        &other,
        "rejectSubmission",
        json!({ "submissionId": id, "reason": "Not an actionable scenario." }),
    )
    .await;
    assert_eq!(
        rejected["submission"]["status"],
        json!("REJECTED"),
        "{rejected}"
    );

    // A reviewer's own provider.
    let (_, own) = submitted(&app, &reviewer, "Reviewer's own", "ORGANIZATION").await;
    let self_claim = act(
        &app,
        &reviewer,
        "claimSubmission",
        json!({ "submissionId": own }),
    )
    .await;
    assert_eq!(
        self_claim["userErrors"][0]["code"],
        json!("SELF_REVIEW"),
        "{self_claim}"
    );

    // Submitters cannot use review mutations or the queue at all.
    let body = act(
        &app,
        &owner,
        "claimSubmission",
        json!({ "submissionId": own }),
    )
    .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
    let body = app
        .graphql(Some(&owner.access_token), QUEUE, json!({}))
        .await;
    assert_eq!(error_code(&body), Some("FORBIDDEN"), "{body}");
}

#[tokio::test]
async fn parallel_claims_and_decisions_have_exactly_one_winner() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut reviewers = Vec::new();
    for _ in 0..6 {
        reviewers.push(app.user_with_role(Role::Reviewer).await);
    }
    let (provider, id) = submitted(&app, &owner, "Race", "ORGANIZATION").await;

    let claims = reviewers
        .iter()
        .map(|r| act(&app, r, "claimSubmission", json!({ "submissionId": id })));
    let results = futures_util::future::join_all(claims).await;
    let winners: Vec<&Value> = results
        .iter()
        .filter(|r| r["submission"]["status"] == json!("IN_REVIEW"))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r["submission"].is_null())
            .all(|r| error_code(r) == Some("CONFLICT")),
        "{results:?}"
    );
    let winner_email = winners[0]["submission"]["claimHolder"]["email"]
        .as_str()
        .expect("holder")
        .to_owned();
    let holder = reviewers
        .iter()
        .find(|r| r.email == winner_email)
        .expect("the winner");

    // The holder fires several decisions at once: one applies.
    let decisions = (0..5).map(|i| {
        if i % 2 == 0 {
            act(
                &app,
                holder,
                "approveSubmission",
                json!({ "submissionId": id }),
            )
        } else {
            act(
                &app,
                holder,
                "rejectSubmission",
                json!({ "submissionId": id, "reason": "race" }),
            )
        }
    });
    let results = futures_util::future::join_all(decisions).await;
    let decided = results
        .iter()
        .filter(|r| r["submission"]["status"].is_string())
        .count();
    assert_eq!(decided, 1, "{results:?}");
    // The others lost the race or came after it: either way a decided submission says so.
    let again = act(
        &app,
        holder,
        "rejectSubmission",
        json!({ "submissionId": id, "reason": "too late" }),
    )
    .await;
    assert_eq!(
        again["userErrors"][0]["code"],
        json!("NOT_IN_QUEUE"),
        "{again}"
    );

    let timeline = provider
        .read("timeline(first: 100) { edges { node { kind } } }")
        .await;
    let kinds: Vec<&str> = timeline["timeline"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "CLAIMED").count(),
        1,
        "{kinds:?}"
    );
    let decisions = kinds
        .iter()
        .filter(|k| matches!(**k, "APPROVED" | "REJECTED"))
        .count();
    assert_eq!(decisions, 1, "{kinds:?}");
}

#[tokio::test]
async fn the_queue_filters_orders_and_pages_with_a_constant_number_of_statements() {
    let app = spawn_app_with(&[("EXPOSE_SQL_STATEMENT_COUNT", "true")]).await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let owner = app.sign_up().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let scope = if i % 3 == 0 { "GLOBAL" } else { "ORGANIZATION" };
        let name = format!("Provider {i:02}");
        if scope == "GLOBAL" {
            // Global needs the extra sections; keep these Organization-only for speed.
            let (_, id) = submitted(&app, &owner, &name, "ORGANIZATION").await;
            ids.push(id);
        } else {
            let (_, id) = submitted(&app, &owner, &name, scope).await;
            ids.push(id);
        }
    }
    for id in ids.iter().take(3) {
        act(
            &app,
            &reviewer,
            "claimSubmission",
            json!({ "submissionId": id }),
        )
        .await;
    }

    let page = |vars: Value| {
        let app = &app;
        let token = reviewer.access_token.clone();
        async move { app.graphql(Some(&token), QUEUE, vars).await }
    };
    let all = page(json!({ "first": 5 })).await;
    let queue = &all["data"]["reviewQueue"];
    assert_eq!(queue["totalCount"], json!(12), "{all}");
    let names: Vec<&str> = queue["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["provider"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "Provider 00",
            "Provider 01",
            "Provider 02",
            "Provider 03",
            "Provider 04"
        ],
        "oldest first"
    );
    let next = page(json!({ "first": 5, "after": queue["pageInfo"]["endCursor"] })).await;
    let names: Vec<&str> = next["data"]["reviewQueue"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["provider"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec![
            "Provider 05",
            "Provider 06",
            "Provider 07",
            "Provider 08",
            "Provider 09"
        ]
    );

    let mine = page(json!({ "filter": { "claimedBy": "ME" } })).await;
    assert_eq!(mine["data"]["reviewQueue"]["totalCount"], json!(3));
    let nobody =
        page(json!({ "filter": { "claimedBy": "NOBODY", "statuses": ["SUBMITTED"] } })).await;
    assert_eq!(nobody["data"]["reviewQueue"]["totalCount"], json!(9));
    let search = page(json!({ "filter": { "search": "provider 1" } })).await;
    assert_eq!(
        search["data"]["reviewQueue"]["totalCount"],
        json!(2),
        "{search}"
    );
    let by_domain = page(json!({ "filter": { "search": "CONTOSO.com" } })).await;
    assert_eq!(by_domain["data"]["reviewQueue"]["totalCount"], json!(12));
    let wildcard = page(json!({ "filter": { "search": "%" } })).await;
    assert_eq!(
        wildcard["data"]["reviewQueue"]["totalCount"],
        json!(0),
        "LIKE wildcards are literal"
    );
    let recent = page(json!({ "order": "LAST_UPDATE", "first": 1 })).await;
    assert_eq!(
        recent["data"]["reviewQueue"]["edges"][0]["node"]["claimHolder"]["email"],
        json!(reviewer.email)
    );
    let mixed =
        page(json!({ "order": "LAST_UPDATE", "after": queue["pageInfo"]["endCursor"] })).await;
    assert_eq!(error_code(&mixed), Some("BAD_USER_INPUT"));
    for bad in [0, 101] {
        let body = app
            .graphql(
                Some(&reviewer.access_token),
                "query($first: Int) { reviewQueue(first: $first) { totalCount } }",
                json!({ "first": bad }),
            )
            .await;
        assert_eq!(
            error_code(&body),
            Some("BAD_USER_INPUT"),
            "first = {bad}: {body}"
        );
    }

    // Statements: count + page + providers + claim holders, whatever the page size.
    let small = page(json!({ "first": 5 })).await;
    let large = page(json!({ "first": 50 })).await;
    let statements = |body: &Value| {
        body["extensions"]["sqlStatements"]
            .as_u64()
            .expect("statement count")
    };
    assert_eq!(statements(&small), statements(&large), "{small} {large}");
    assert!(statements(&large) <= 4, "{}", statements(&large));
    assert_eq!(
        large["data"]["reviewQueue"]["edges"]
            .as_array()
            .map(Vec::len),
        Some(12)
    );
}

#[tokio::test]
async fn internal_notes_never_reach_the_submitter_and_approval_can_be_revoked() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let (provider, id) = submitted(&app, &owner, "Notes", "ORGANIZATION").await;
    let comment = "mutation($input: AddCommentInput!) { addComment(input: $input) { comment { kind internal reason } userErrors { code } } }";
    let note = app.graphql(Some(&reviewer.access_token), comment, json!({ "input": { "submissionId": id, "body": "Sender domain looks new; check volume.", "internal": true } })).await;
    assert_eq!(
        note["data"]["addComment"]["comment"]["internal"],
        json!(true),
        "{note}"
    );
    app.graphql(
        Some(&reviewer.access_token),
        comment,
        json!({ "input": { "submissionId": id, "body": "Thanks, looking at it now." } }),
    )
    .await;
    let sneaky = app
        .graphql(
            Some(&owner.access_token),
            comment,
            json!({ "input": { "submissionId": id, "body": "x", "internal": true } }),
        )
        .await;
    assert_eq!(
        sneaky["data"]["addComment"]["userErrors"][0]["code"],
        json!("FORBIDDEN")
    );
    app.graphql(
        Some(&owner.access_token),
        comment,
        json!({ "input": { "submissionId": id, "body": "Happy to help." } }),
    )
    .await;

    let fields = "timeline(first: 100) { totalCount edges { node { kind internal reason } } }";
    let as_owner = provider.read(fields).await;
    assert!(!as_owner.to_string().contains("check volume"), "{as_owner}");
    assert!(as_owner.to_string().contains("looking at it now"));
    let as_reviewer = app
        .graphql(
            Some(&reviewer.access_token),
            &format!("query($id: ID!) {{ provider(id: $id) {{ {fields} }} }}"),
            json!({ "id": provider.id }),
        )
        .await;
    assert!(
        as_reviewer.to_string().contains("check volume"),
        "{as_reviewer}"
    );
    assert_eq!(
        as_reviewer["data"]["provider"]["timeline"]["totalCount"]
            .as_u64()
            .expect("count"),
        as_owner["timeline"]["totalCount"].as_u64().expect("count") + 1
    );

    act(
        &app,
        &reviewer,
        "claimSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    act(
        &app,
        &reviewer,
        "approveSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    let revoked = act(
        &app,
        &reviewer,
        "revokeApproval",
        json!({ "submissionId": id, "reason": "Complaints from recipients." }),
    )
    .await;
    assert_eq!(
        revoked["submission"]["status"],
        json!("REVOKED"),
        "{revoked}"
    );
    let state = provider.read("activeSubmission { id }").await;
    assert_eq!(state["activeSubmission"], Value::Null);
}

#[tokio::test]
async fn a_global_submission_shows_its_report_and_needs_attestations_to_be_approved() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let mut provider = Registration::create(&app, &owner, "Expenses").await;
    provider
        .provider_details(
            &["expense@contoso.com"],
            &["https://api.contoso.com", "https://expenses.contoso.com"],
        )
        .await;
    provider.scope("GLOBAL").await;
    provider.contact().await;
    let payload = provider
        .global_sections("01-good-global-dkim-adaptive.eml")
        .await;
    let report = &payload["provider"]["criteriaReport"];
    assert_eq!(report["overall"], json!("PASS"), "{payload}");
    let manual: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["verdict"] == json!("MANUAL"))
        .filter_map(|c| c["criterion"].as_str())
        .collect();
    assert_eq!(
        manual,
        vec!["SENDING_VOLUME_HISTORY", "SPAM_COMPLAINT_RATE"]
    );
    let submission = provider.submit().await;
    let id = submission["submission"]["id"]
        .as_str()
        .expect("submitted")
        .to_owned();

    let queue = app
        .graphql(
            Some(&reviewer.access_token),
            QUEUE,
            json!({ "filter": { "scopes": ["GLOBAL"] } }),
        )
        .await;
    assert_eq!(
        queue["data"]["reviewQueue"]["edges"][0]["node"]["criteriaReport"]["overall"],
        json!("PASS"),
        "{queue}"
    );
    act(
        &app,
        &reviewer,
        "claimSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    let missing = act(
        &app,
        &reviewer,
        "approveSubmission",
        json!({ "submissionId": id }),
    )
    .await;
    let codes: Vec<&str> = missing["userErrors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["code"].as_str())
        .collect();
    assert_eq!(
        codes,
        vec!["ATTESTATION_REQUIRED", "ATTESTATION_REQUIRED"],
        "{missing}"
    );
    let approved = act(
        &app,
        &reviewer,
        "approveSubmission",
        json!({ "submissionId": id, "attestations": [
            { "criterion": "SENDING_VOLUME_HISTORY", "note": "Postmaster data: ~800/day for 10 weeks" },
            { "criterion": "SPAM_COMPLAINT_RATE", "note": "0.01% over 30 days" } ] }),
    )
    .await;
    assert_eq!(
        approved["submission"]["status"],
        json!("APPROVED"),
        "{approved}"
    );
    let stored = provider
        .read("activeSubmission { attestations { criterion note } }")
        .await;
    assert_eq!(
        stored["activeSubmission"]["attestations"][1]["note"],
        json!("0.01% over 30 days")
    );
}
