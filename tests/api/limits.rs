//! The document limits, one case each, through HTTP: every refusal carries a code and runs no
//! resolver and no SQL statement of the operation; and every connection caps `first` at 100.

use dashboard::auth::Role;
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, error_code, spawn_app_with},
    registration::Registration,
};

/// POSTs `query` and returns the status and the body.
async fn post(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.graphql_url())
        .bearer_auth(token)
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// `levels` nested selections through provider and submission, each level a real field.
fn deep_selection(levels: usize) -> String {
    let mut query = String::from("query($id: ID!) { provider(id: $id) { ");
    for level in 0..levels {
        query.push_str(if level % 2 == 0 {
            "activeSubmission { "
        } else {
            "provider { "
        });
    }
    query.push_str("id");
    query.push_str(&" }".repeat(levels + 2));
    query
}

#[tokio::test]
async fn each_document_limit_refuses_with_a_code_and_no_statement() {
    let app = spawn_app_with(&[("EXPOSE_SQL_STATEMENT_COUNT", "true")]).await;
    let reviewer = app.user_with_role(Role::Reviewer).await;

    let aliases: String = (0..31).map(|i| format!("a{i}: id ")).collect();
    let roots = "viewer { id } ".repeat(21);
    let mut fan_out = String::from("query { viewer { ...F0 } }\n");
    for level in 0..12 {
        fan_out.push_str(&format!(
            "fragment F{level} on User {{ ...F{n} ...F{n} }}\n",
            n = level + 1
        ));
    }
    fan_out.push_str("fragment F12 on User { id }\n");
    let directives = format!("{{ viewer {{ id {} }} }}", "@include(if: true) ".repeat(11));
    let recursion = format!("{{ {} id {} }}", "viewer { ".repeat(33), "}".repeat(33));
    let complex = "{ reviewQueue(first: 100) { edges { node { id number status scope \
        queueEnteredAt submittedAt ageInQueueSeconds claimExpiresAt decidedAt decisionReason \
        requestedFields provider { id name version } claimHolder { id email } \
        criteriaReport { overall } } } } }";
    // 16 tokens around the list, one per value: 4,001 in all.
    let scopes = |n: usize| {
        format!(
            "{{ reviewQueue(filter: {{scopes: [{}]}}) {{ totalCount }} }}",
            "GLOBAL ".repeat(n)
        )
    };
    let tokens = scopes(3_985);
    let large = format!("{{ viewer {{ id }} }} # {}", "x".repeat(33 * 1024));

    // (case, document, status, code, message fragment); refusals before execution are 400
    // with `application/graphql-response+json`, an oversized document 413.
    // Plain lists are priced by their `first` too, so a cycle through them cannot fan out.
    let cycle = "{ myProviders(first: 1) { nodes { submissions { provider { submissions { \
        provider { submissions { number } } } } } } } }";
    let cases: [(&str, &str, u16, &str, &str); 11] = [
        (
            "depth",
            &deep_selection(16),
            400,
            "GRAPHQL_VALIDATION_FAILED",
            "nested too deep",
        ),
        (
            "complexity of a list, by its `first`",
            complex,
            400,
            "GRAPHQL_VALIDATION_FAILED",
            "too complex",
        ),
        (
            "complexity of a cycle through a plain list",
            cycle,
            400,
            "GRAPHQL_VALIDATION_FAILED",
            "too complex",
        ),
        (
            "aliases",
            &format!("{{ viewer {{ {aliases} }} }}"),
            400,
            "TOO_MANY_ALIASES",
            "aliases",
        ),
        (
            "root fields",
            &format!("{{ {roots} }}"),
            400,
            "TOO_MANY_ROOT_FIELDS",
            "root fields",
        ),
        (
            "fields after fragment expansion",
            &fan_out,
            400,
            "TOO_MANY_FIELDS",
            "fragments",
        ),
        (
            "directives",
            &directives,
            400,
            "GRAPHQL_VALIDATION_FAILED",
            "directives",
        ),
        (
            "recursion",
            &recursion,
            400,
            "GRAPHQL_VALIDATION_FAILED",
            "recursion",
        ),
        ("tokens", &tokens, 400, "TOO_MANY_TOKENS", "tokens"),
        ("document size", &large, 413, "QUERY_TOO_LARGE", "bytes"),
        (
            "nesting",
            &format!(
                "{{ node(id: {}1{}) {{ id }} }}",
                "[".repeat(70),
                "]".repeat(70)
            ),
            400,
            "NESTING_TOO_DEEP",
            "nest deeper",
        ),
    ];
    for (case, document, status, code, fragment) in cases {
        let (got_status, body) = post(&app, &reviewer.access_token, document).await;
        assert_eq!(got_status, status, "{case}: {body}");
        assert_eq!(error_code(&body), Some(code), "{case}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.to_lowercase().contains(fragment),
            "{case}: {message}"
        );
        assert!(body["data"].is_null(), "{case}: {body}");
        // Refusals that reach the schema say how many statements the operation ran: none.
        if let Some(statements) = body["extensions"].get("sqlStatements") {
            assert_eq!(statements, &json!(0), "{case}: {body}");
        }
    }

    // Just inside each limit, the same shapes are served.
    let provider = Registration::create(&app, &reviewer, "Limits").await;
    let inside = [
        deep_selection(13),
        scopes(3_984),
        "{ viewer { id @include(if: true) @skip(if: false) } }".to_owned(),
    ];
    for document in inside {
        let body = app
            .graphql(
                Some(&reviewer.access_token),
                &document,
                json!({ "id": provider.id }),
            )
            .await;
        assert!(body.get("errors").is_none(), "{document}: {body}");
    }
}

#[tokio::test]
async fn every_connection_and_list_takes_first_from_1_to_100() {
    let app = spawn_app_with(&[]).await;
    let reviewer = app.user_with_role(Role::Reviewer).await;
    let provider = Registration::create(&app, &reviewer, "Pages").await;
    let token = Some(reviewer.access_token.as_str());
    let connections = [
        (
            "reviewQueue",
            "query($f: Int) { reviewQueue(first: $f) { totalCount } }",
        ),
        (
            "myProviders",
            "query($f: Int) { myProviders(first: $f) { totalCount } }",
        ),
        (
            "provider.timeline",
            "query($f: Int, $id: ID!) { provider(id: $id) { timeline(first: $f) { totalCount } } }",
        ),
        (
            "provider.submissions",
            "query($f: Int, $id: ID!) { provider(id: $id) { submissions(first: $f) { number } } }",
        ),
    ];
    for (name, query) in connections {
        for refused in [0, -1, 101, 1_000] {
            let body = app
                .graphql(token, query, json!({ "f": refused, "id": provider.id }))
                .await;
            assert_eq!(
                error_code(&body),
                Some("BAD_USER_INPUT"),
                "{name} first={refused}: {body}"
            );
            let message = body["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(message.contains("between 1 and 100"), "{name}: {message}");
        }
        for served in [1, 100] {
            let body = app
                .graphql(token, query, json!({ "f": served, "id": provider.id }))
                .await;
            assert!(
                body.get("errors").is_none(),
                "{name} first={served}: {body}"
            );
        }
    }
}
