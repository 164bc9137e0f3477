//! Registering a provider: the dashboard sections, validation, scopes, submitting, access.

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, error_code, sample, spawn_app};

const PROVIDER_FIELDS: &str = "id version name originatorId
    draft { scope providerDetails { senderEmails targetUrls domains { role domain registrableDomain } }
            contactInfo { name email phone } }
    submitBlockers { field code message }
    criteriaReport { overall checks { criterion verdict evidence } }";

/// A small client for one user's provider.
pub struct Registration<'a> {
    app: &'a TestApp,
    user: &'a TestUser,
    pub id: String,
    pub version: i64,
}

impl<'a> Registration<'a> {
    pub async fn create(app: &'a TestApp, user: &'a TestUser, name: &str) -> Self {
        let body = app
            .graphql(
                Some(&user.access_token),
                &format!("mutation($name: String!) {{ createProvider(input: {{name: $name}}) {{ provider {{ {PROVIDER_FIELDS} }} userErrors {{ code }} }} }}"),
                json!({ "name": name }),
            )
            .await;
        let provider = &body["data"]["createProvider"]["provider"];
        Self {
            app,
            user,
            id: provider["id"].as_str().expect("provider id").to_owned(),
            version: provider["version"].as_i64().expect("version"),
        }
    }

    /// Runs a section mutation with the current id and version merged into `input`; on success
    /// remembers the new version. Returns the payload.
    pub async fn edit(&mut self, mutation: &str, input_type: &str, mut input: Value) -> Value {
        input["providerId"] = json!(self.id);
        if input.get("expectedVersion").is_none() {
            input["expectedVersion"] = json!(self.version);
        }
        let query = format!(
            "mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ provider {{ {PROVIDER_FIELDS} }} userErrors {{ field code message }} }} }}"
        );
        let body = self
            .app
            .graphql(
                Some(&self.user.access_token),
                &query,
                json!({ "input": input }),
            )
            .await;
        let payload = body["data"][mutation].clone();
        if let Some(version) = payload["provider"]["version"].as_i64() {
            self.version = version;
        }
        if payload.is_null() { body } else { payload }
    }

    pub async fn provider_details(&mut self, senders: &[&str], targets: &[&str]) -> Value {
        self.edit(
            "updateProviderDetails",
            "UpdateProviderDetailsInput",
            json!({ "senderEmails": senders, "targetUrls": targets }),
        )
        .await
    }

    pub async fn scope(&mut self, scope: &str) -> Value {
        self.edit("setScope", "SetScopeInput", json!({ "scope": scope }))
            .await
    }

    pub async fn contact(&mut self) -> Value {
        self.edit(
            "updateContactInfo",
            "UpdateContactInfoInput",
            json!({ "name": "Dana Developer", "email": "dana@contoso.com", "phone": "+1 425 555 0100" }),
        )
        .await
    }

    pub async fn global_sections(&mut self, sample_file: &str) -> Value {
        self.edit(
            "updatePublisherInfo",
            "UpdatePublisherInfoInput",
            json!({ "publisherName": "Contoso", "websiteUrl": "https://www.contoso.com",
                    "supportUrl": "https://support.contoso.com/help", "description": "Expense approvals" }),
        )
        .await;
        self.edit(
            "updateScenarioDetails",
            "UpdateScenarioDetailsInput",
            json!({ "description": "Managers approve expense reports from the e-mail.",
                    "actionUsage": "Approve or reject with one click.", "expectedDailyVolume": 500,
                    "mailType": "TRANSACTIONAL", "sendingHistoryWeeks": 12 }),
        )
        .await;
        self.edit(
            "updateVerificationDetails",
            "UpdateVerificationDetailsInput",
            json!({ "reviewerInstructions": "Log in as test@contoso.com / see vault.", "sampleEmail": sample(sample_file) }),
        )
        .await
    }

    pub async fn submit(&self) -> Value {
        let body = self
            .app
            .graphql(
                Some(&self.user.access_token),
                "mutation($input: SubmitForReviewInput!) { submitForReview(input: $input) {
                    submission { id number scope status sections { scope } criteriaReport { overall } }
                    userErrors { field code message } } }",
                json!({ "input": { "providerId": self.id, "expectedVersion": self.version } }),
            )
            .await;
        if body["data"]["submitForReview"].is_null() {
            body
        } else {
            body["data"]["submitForReview"].clone()
        }
    }

    pub async fn read(&self, fields: &str) -> Value {
        let body = self
            .app
            .graphql(
                Some(&self.user.access_token),
                &format!("query($id: ID!) {{ provider(id: $id) {{ {fields} }} }}"),
                json!({ "id": self.id }),
            )
            .await;
        body["data"]["provider"].clone()
    }
}

fn codes(payload: &Value) -> Vec<(Value, String)> {
    payload["userErrors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].clone(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_seed_example_walks_through_every_scope() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;

    // My mailbox: approved automatically, since no automated check fails.
    let mut mine = Registration::create(&app, &owner, "My Service").await;
    let details = mine
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    assert_eq!(details["userErrors"], json!([]), "{details}");
    assert_eq!(
        details["provider"]["draft"]["providerDetails"]["domains"][1]["registrableDomain"],
        json!("myservice.com")
    );
    let blockers: Vec<String> = details["provider"]["submitBlockers"]
        .as_array()
        .expect("blockers")
        .iter()
        .map(|b| b["field"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(blockers, vec!["scope", "contactInfo"]);
    mine.scope("MY_MAILBOX").await;
    let after_contact = mine.contact().await;
    assert_eq!(
        after_contact["provider"]["submitBlockers"],
        json!([]),
        "{after_contact}"
    );
    assert_eq!(
        after_contact["provider"]["draft"]["contactInfo"]["phone"],
        json!("+14255550100")
    );
    let submitted = mine.submit().await;
    assert_eq!(
        submitted["submission"]["status"],
        json!("APPROVED"),
        "{submitted}"
    );
    assert_eq!(submitted["submission"]["number"], json!(1));
    let active = mine
        .read("activeSubmission { number status } openSubmission { id }")
        .await;
    assert_eq!(active["activeSubmission"]["status"], json!("APPROVED"));
    assert_eq!(active["openSubmission"], Value::Null);

    // My organization: goes to the queue.
    let mut org = Registration::create(&app, &owner, "My Service (org)").await;
    org.provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    org.scope("ORGANIZATION").await;
    org.contact().await;
    let submitted = org.submit().await;
    assert_eq!(
        submitted["submission"]["status"],
        json!("SUBMITTED"),
        "{submitted}"
    );
    assert_eq!(submitted["submission"]["scope"], json!("ORGANIZATION"));

    // Global: needs the three extra sections and a sample e-mail that passes the criteria.
    let mut global = Registration::create(&app, &owner, "My Service (global)").await;
    global
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    global.scope("GLOBAL").await;
    let payload = global.contact().await;
    let fields: Vec<&str> = payload["provider"]["submitBlockers"]
        .as_array()
        .expect("blockers")
        .iter()
        .filter_map(|b| b["field"][0].as_str())
        .collect();
    assert_eq!(
        fields,
        vec!["publisherInfo", "scenarioDetails", "verificationDetails"]
    );
    let refused = global.submit().await;
    assert_eq!(refused["submission"], Value::Null);
    assert_eq!(
        refused["userErrors"].as_array().map(Vec::len),
        Some(3),
        "{refused}"
    );

    // The sample comes from expense@contoso.com, which is not a registered sender here.
    let payload = global
        .global_sections("01-good-global-dkim-adaptive.eml")
        .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    let blocker_codes: Vec<&str> = payload["provider"]["submitBlockers"]
        .as_array()
        .expect("b")
        .iter()
        .filter_map(|b| b["code"].as_str())
        .collect();
    assert!(
        blocker_codes.contains(&"CRITERION_FAILED_SENDER_REGISTERED"),
        "{payload}"
    );
    assert!(
        blocker_codes.contains(&"CRITERION_FAILED_ACTIONS_WITHIN_TARGETS"),
        "{payload}"
    );

    // Registering the sample's real sender and targets makes every check pass.
    let payload = global
        .provider_details(
            &["myservice@contoso.com", "expense@contoso.com"],
            &[
                "https://api.myservice.com",
                "https://api.contoso.com",
                "https://expenses.contoso.com",
            ],
        )
        .await;
    assert_eq!(
        payload["provider"]["submitBlockers"],
        json!([]),
        "{payload}"
    );
    assert_eq!(
        payload["provider"]["criteriaReport"]["overall"],
        json!("PASS"),
        "{payload}"
    );
    let submitted = global.submit().await;
    assert_eq!(
        submitted["submission"]["status"],
        json!("SUBMITTED"),
        "{submitted}"
    );
    assert_eq!(
        submitted["submission"]["criteriaReport"]["overall"],
        json!("PASS")
    );

    let listed = app.graphql(Some(&owner.access_token), "{ myProviders(first: 2) { totalCount edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }", json!({})).await;
    let page = &listed["data"]["myProviders"];
    assert_eq!(page["totalCount"], json!(3));
    assert_eq!(
        page["edges"][0]["node"]["name"],
        json!("My Service (global)")
    );
    assert_eq!(page["pageInfo"]["hasNextPage"], json!(true));
    let next = app.graphql(Some(&owner.access_token), "query($after: String!) { myProviders(first: 2, after: $after) { edges { node { name } } pageInfo { hasNextPage } } }", json!({ "after": page["pageInfo"]["endCursor"] })).await;
    assert_eq!(
        next["data"]["myProviders"]["edges"][0]["node"]["name"],
        json!("My Service")
    );
    assert_eq!(
        next["data"]["myProviders"]["pageInfo"]["hasNextPage"],
        json!(false)
    );
}

#[tokio::test]
async fn provider_detail_validators_give_field_specific_codes() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Validation").await;
    let good_sender = "myservice@contoso.com";
    let good_target = "https://api.myservice.com";

    let sender_cases: &[(&str, &str)] = &[
        ("a@contoso.com.", "EMAIL_DOMAIN_TRAILING_DOT"),
        ("a@[192.0.2.1]", "EMAIL_DOMAIN_IP_LITERAL"),
        ("a@localhost", "EMAIL_DOMAIN_"),
        ("a@co.uk", "EMAIL_DOMAIN_PUBLIC_SUFFIX"),
        ("a@b.com\r\nBcc: x@y.com", "CONTROL_CHARACTER"),
        ("bounce+4f3a9c1d2e7b@contoso.com", "SENDER_NOT_STATIC"),
        ("", "REQUIRED"),
        ("not-an-address", "EMAIL_INVALID"),
    ];
    for (sender, code) in sender_cases {
        let payload = provider
            .provider_details(&[good_sender, sender], &[good_target])
            .await;
        let errors = codes(&payload);
        assert_eq!(errors.len(), 1, "{sender:?}: {payload}");
        assert_eq!(errors[0].0, json!(["senderEmails", "1"]), "{sender:?}");
        assert!(errors[0].1.starts_with(code), "{sender:?}: {}", errors[0].1);
    }
    let long_local = format!("{}@contoso.com", "a".repeat(65));
    let payload = provider
        .provider_details(&[&long_local], &[good_target])
        .await;
    assert_eq!(codes(&payload)[0].1, "EMAIL_LOCAL_PART_TOO_LONG");

    let target_cases: &[(&str, &str)] = &[
        ("http://api.myservice.com", "URL_NOT_HTTPS"),
        ("https://a@b.example", "URL_HAS_USERINFO"),
        ("https://192.0.2.1", "URL_IP_LITERAL"),
        ("https://[2001:db8::1]", "URL_IP_LITERAL"),
        ("https://localhost", "URL_LOCALHOST"),
        ("https://api.myservice.com:8443", "URL_PORT_NOT_ALLOWED"),
        ("https://co.uk", "URL_HOST_PUBLIC_SUFFIX"),
        ("https://api.myservice.com..", "URL_"),
    ];
    for (target, code) in target_cases {
        let payload = provider
            .provider_details(&[good_sender], &[good_target, target])
            .await;
        let errors = codes(&payload);
        assert_eq!(errors.len(), 1, "{target}: {payload}");
        assert_eq!(errors[0].0, json!(["targetUrls", "1"]), "{target}");
        assert!(errors[0].1.starts_with(code), "{target}: {}", errors[0].1);
    }

    // Duplicates after normalisation: case, IDN spelling, trailing dot and default port.
    let payload = provider
        .provider_details(
            &[
                "A@Contoso.COM",
                "a@contoso.com",
                "x@bücher.de",
                "x@xn--bcher-kva.de",
            ],
            &[good_target],
        )
        .await;
    let errors = codes(&payload);
    assert_eq!(
        errors,
        vec![
            (json!(["senderEmails", "1"]), "DUPLICATE".to_owned()),
            (json!(["senderEmails", "3"]), "DUPLICATE".to_owned())
        ],
        "{payload}"
    );
    let payload = provider
        .provider_details(
            &[good_sender],
            &[
                "https://bücher.de",
                "https://xn--bcher-kva.de.",
                "https://API.myservice.com:443",
                good_target,
            ],
        )
        .await;
    let errors = codes(&payload);
    assert_eq!(
        errors.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        vec![json!(["targetUrls", "1"]), json!(["targetUrls", "3"])],
        "{payload}"
    );

    let too_many: Vec<String> = (0..21).map(|i| format!("s{i}@contoso.com")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let payload = provider.provider_details(&too_many, &[good_target]).await;
    assert_eq!(
        codes(&payload),
        vec![(json!(["senderEmails"]), "TOO_MANY".to_owned())]
    );
    let payload = provider.provider_details(&[], &[good_target]).await;
    assert_eq!(
        codes(&payload),
        vec![(json!(["senderEmails"]), "TOO_FEW".to_owned())]
    );

    // Every rejected edit left the draft untouched.
    let stored = provider
        .read("version draft { providerDetails { senderEmails } }")
        .await;
    assert_eq!(stored["draft"]["providerDetails"], Value::Null, "{stored}");
    assert_eq!(stored["version"], json!(provider.version));

    // The accepted spellings are stored normalised.
    let payload = provider
        .provider_details(
            &["Bestellung@BÜCHER.de"],
            &["https://Shop.Bücher.de.:443/orders"],
        )
        .await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    let details = &payload["provider"]["draft"]["providerDetails"];
    assert_eq!(
        details["senderEmails"],
        json!(["Bestellung@xn--bcher-kva.de"])
    );
    assert_eq!(
        details["targetUrls"],
        json!(["https://shop.xn--bcher-kva.de/orders"])
    );
}

#[tokio::test]
async fn other_sections_validate_their_fields() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Sections").await;
    let payload = provider
        .edit(
            "updateContactInfo",
            "UpdateContactInfoInput",
            json!({ "name": " ", "email": "dana@contoso", "phone": "555-0100" }),
        )
        .await;
    let fields: Vec<Value> = codes(&payload).into_iter().map(|e| e.0).collect();
    assert_eq!(
        fields,
        vec![json!(["name"]), json!(["email"]), json!(["phone"])],
        "{payload}"
    );
    let payload = provider
        .edit(
            "updatePublisherInfo",
            "UpdatePublisherInfoInput",
            json!({ "publisherName": "C", "websiteUrl": "http://contoso.com", "supportUrl": "https://user@contoso.com", "description": "x\u{202E}y" }),
        )
        .await;
    let codes_only: Vec<String> = codes(&payload).into_iter().map(|e| e.1).collect();
    assert_eq!(
        codes_only,
        vec!["URL_NOT_HTTPS", "URL_HAS_USERINFO", "CONTROL_CHARACTER"],
        "{payload}"
    );
    let payload = provider
        .edit(
            "updateScenarioDetails",
            "UpdateScenarioDetailsInput",
            json!({ "description": "d", "actionUsage": "u", "expectedDailyVolume": 0, "mailType": "PROMOTIONAL", "sendingHistoryWeeks": -1 }),
        )
        .await;
    let fields: Vec<Value> = codes(&payload).into_iter().map(|e| e.0).collect();
    assert_eq!(
        fields,
        vec![
            json!(["expectedDailyVolume"]),
            json!(["sendingHistoryWeeks"])
        ],
        "{payload}"
    );
    let payload = provider
        .edit(
            "updateVerificationDetails",
            "UpdateVerificationDetailsInput",
            json!({ "reviewerInstructions": "steps", "sampleEmail": "this is not an e-mail message at all" }),
        )
        .await;
    assert_eq!(
        codes(&payload),
        vec![(json!(["sampleEmail"]), "SAMPLE_NOT_A_MESSAGE".to_owned())],
        "{payload}"
    );

    // A promotional scenario blocks every scope.
    let payload = provider
        .edit(
            "updateScenarioDetails",
            "UpdateScenarioDetailsInput",
            json!({ "description": "Weekly deals", "actionUsage": "Buy", "expectedDailyVolume": 10000, "mailType": "PROMOTIONAL", "sendingHistoryWeeks": 4 }),
        )
        .await;
    let blockers: Vec<&str> = payload["provider"]["submitBlockers"]
        .as_array()
        .expect("b")
        .iter()
        .filter_map(|b| b["code"].as_str())
        .collect();
    assert!(blockers.contains(&"PROMOTIONAL_MAIL"), "{payload}");
}

#[tokio::test]
async fn a_stale_expected_version_conflicts_and_changes_nothing() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Versions").await;
    let first = provider
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    let version = first["provider"]["version"].as_i64().expect("version");
    let stale = provider
        .edit(
            "updateProviderDetails",
            "UpdateProviderDetailsInput",
            json!({ "expectedVersion": version - 1, "senderEmails": ["other@contoso.com"], "targetUrls": ["https://api.myservice.com"] }),
        )
        .await;
    assert_eq!(error_code(&stale), Some("CONFLICT"), "{stale}");
    let stored = provider
        .read("version draft { providerDetails { senderEmails } }")
        .await;
    assert_eq!(stored["version"], json!(version));
    assert_eq!(
        stored["draft"]["providerDetails"]["senderEmails"],
        json!(["myservice@contoso.com"])
    );

    // The same edit twice in parallel against one version: exactly one wins.
    let attempt = |sender: &'static str| {
        let app = &app;
        let token = owner.access_token.clone();
        let id = provider.id.clone();
        async move {
            app.graphql(
                Some(&token),
                "mutation($input: UpdateProviderDetailsInput!) { updateProviderDetails(input: $input) { provider { version } } }",
                json!({ "input": { "providerId": id, "expectedVersion": version, "senderEmails": [sender], "targetUrls": ["https://api.myservice.com"] } }),
            )
            .await
        }
    };
    let (a, b) = tokio::join!(attempt("a@contoso.com"), attempt("b@contoso.com"));
    let wins = [&a, &b]
        .iter()
        .filter(|r| r["data"]["updateProviderDetails"]["provider"]["version"] == json!(version + 1))
        .count();
    let conflicts = [&a, &b]
        .iter()
        .filter(|r| error_code(r) == Some("CONFLICT"))
        .count();
    assert_eq!((wins, conflicts), (1, 1), "{a} {b}");
}

#[tokio::test]
async fn a_submitter_cannot_reach_another_submitters_provider_by_any_path() {
    let app = spawn_app().await;
    let alice = app.sign_up().await;
    let mallory = app.sign_up().await;
    let mut provider = Registration::create(&app, &alice, "Alice's service").await;
    provider
        .provider_details(&["alice@contoso.com"], &["https://api.contoso.com"])
        .await;
    provider.scope("ORGANIZATION").await;
    provider.contact().await;
    let submission = provider.submit().await;
    let submission_id = submission["submission"]["id"]
        .as_str()
        .expect("submission")
        .to_owned();
    let missing_provider = "UHJvdmlkZXI6MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw";
    let missing_submission = "U3VibWlzc2lvbjowMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA";

    let reads = [
        (
            "query($id: ID!) { provider(id: $id) { name } }",
            &provider.id,
            missing_provider,
        ),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            &provider.id,
            missing_provider,
        ),
        (
            "query($id: ID!) { nodes(ids: [$id]) { id } }",
            &provider.id,
            missing_provider,
        ),
        (
            "query($id: ID!) { submission(id: $id) { status } }",
            &submission_id,
            missing_submission,
        ),
        (
            "query($id: ID!) { node(id: $id) { id } }",
            &submission_id,
            missing_submission,
        ),
    ];
    for (query, real, missing) in reads {
        let probe = app
            .graphql(Some(&mallory.access_token), query, json!({ "id": real }))
            .await;
        let absent = app
            .graphql(Some(&mallory.access_token), query, json!({ "id": missing }))
            .await;
        assert_eq!(probe, absent, "{query}");
        assert!(!probe.to_string().contains("Alice"), "{probe}");
    }
    let listed = app
        .graphql(
            Some(&mallory.access_token),
            "{ myProviders { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["data"]["myProviders"]["totalCount"], json!(0));

    let writes = [
        (
            "mutation($id: ID!) { setScope(input: {providerId: $id, expectedVersion: 1, scope: GLOBAL}) { provider { id } } }",
            &provider.id,
            missing_provider,
        ),
        (
            "mutation($id: ID!) { updateProviderDetails(input: {providerId: $id, expectedVersion: 1, senderEmails: [\"x@evil.com\"], targetUrls: [\"https://evil.com\"]}) { provider { id } } }",
            &provider.id,
            missing_provider,
        ),
        (
            "mutation($id: ID!) { updateProviderDetails(input: {providerId: $id, expectedVersion: 1, senderEmails: [\"bad\"], targetUrls: []}) { provider { id } userErrors { code } } }",
            &provider.id,
            missing_provider,
        ),
        (
            "mutation($id: ID!) { submitForReview(input: {providerId: $id, expectedVersion: 1}) { submission { id } } }",
            &provider.id,
            missing_provider,
        ),
        (
            "mutation($id: ID!) { withdrawSubmission(input: {submissionId: $id}) { submission { id } } }",
            &submission_id,
            missing_submission,
        ),
    ];
    for (mutation, real, missing) in writes {
        let probe = app
            .graphql(Some(&mallory.access_token), mutation, json!({ "id": real }))
            .await;
        let absent = app
            .graphql(
                Some(&mallory.access_token),
                mutation,
                json!({ "id": missing }),
            )
            .await;
        assert_eq!(error_code(&probe), Some("NOT_FOUND"), "{mutation}: {probe}");
        assert_eq!(probe, absent, "{mutation}");
    }
    let unchanged = provider
        .read("version draft { scope } openSubmission { status }")
        .await;
    assert_eq!(unchanged["draft"]["scope"], json!("ORGANIZATION"));
    assert_eq!(unchanged["openSubmission"]["status"], json!("SUBMITTED"));

    let anonymous = app
        .graphql(
            None,
            "query($id: ID!) { provider(id: $id) { name } }",
            json!({ "id": provider.id }),
        )
        .await;
    assert_eq!(error_code(&anonymous), Some("UNAUTHENTICATED"));
}

#[tokio::test]
async fn one_open_submission_withdrawal_and_an_approved_registration_stays_in_force() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Lifecycle").await;
    provider
        .provider_details(&["myservice@contoso.com"], &["https://api.myservice.com"])
        .await;
    provider.scope("ORGANIZATION").await;
    provider.contact().await;

    // Two submits at once: one submission, one refusal.
    let (a, b) = tokio::join!(provider.submit(), provider.submit());
    let created = [&a, &b]
        .iter()
        .filter(|r| r["submission"]["id"].is_string())
        .count();
    assert_eq!(created, 1, "{a} {b}");
    let again = provider.submit().await;
    assert_eq!(
        codes(&again),
        vec![(json!(["providerId"]), "OPEN_SUBMISSION_EXISTS".to_owned())]
    );

    let open = provider.read("openSubmission { id }").await;
    let open_id = open["openSubmission"]["id"]
        .as_str()
        .expect("open")
        .to_owned();
    let withdraw = "mutation($id: ID!) { withdrawSubmission(input: {submissionId: $id}) { submission { status } userErrors { code } } }";
    let body = app
        .graphql(
            Some(&owner.access_token),
            withdraw,
            json!({ "id": open_id }),
        )
        .await;
    assert_eq!(
        body["data"]["withdrawSubmission"]["submission"]["status"],
        json!("WITHDRAWN"),
        "{body}"
    );
    let body = app
        .graphql(
            Some(&owner.access_token),
            withdraw,
            json!({ "id": open_id }),
        )
        .await;
    assert_eq!(
        body["data"]["withdrawSubmission"]["userErrors"][0]["code"],
        json!("SUBMISSION_DECIDED")
    );

    // My mailbox is approved at once; editing the draft afterwards leaves it in force.
    provider.scope("MY_MAILBOX").await;
    let approved = provider.submit().await;
    assert_eq!(
        approved["submission"]["status"],
        json!("APPROVED"),
        "{approved}"
    );
    assert_eq!(approved["submission"]["number"], json!(2));
    provider
        .provider_details(&["renamed@contoso.com"], &["https://api.myservice.com"])
        .await;
    let state = provider.read("activeSubmission { number sections { providerDetails { senderEmails } } } draft { providerDetails { senderEmails } }").await;
    assert_eq!(
        state["activeSubmission"]["sections"]["providerDetails"]["senderEmails"],
        json!(["myservice@contoso.com"])
    );
    assert_eq!(
        state["draft"]["providerDetails"]["senderEmails"],
        json!(["renamed@contoso.com"])
    );

    // A newer approval supersedes it, and the diff names what changed.
    let newer = provider.submit().await;
    assert_eq!(newer["submission"]["number"], json!(3), "{newer}");
    let history = provider
        .read("submissions { number status } activeSubmission { number diff { previous { number } changesFromPrevious { path before after } } }")
        .await;
    let statuses: Vec<(i64, String)> = history["submissions"]
        .as_array()
        .expect("list")
        .iter()
        .map(|s| {
            (
                s["number"].as_i64().unwrap_or(0),
                s["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            (3, "APPROVED".into()),
            (2, "SUPERSEDED".into()),
            (1, "WITHDRAWN".into())
        ]
    );
    let diff = &history["activeSubmission"]["diff"];
    assert_eq!(diff["previous"]["number"], json!(2));
    assert_eq!(
        diff["changesFromPrevious"],
        json!([{ "path": "providerDetails.senderEmails", "before": ["myservice@contoso.com"], "after": ["renamed@contoso.com"] }])
    );

    let timeline = provider.read("timeline(first: 100) { totalCount edges { node { kind toStatus fields actor { role email } } } }").await;
    let kinds: Vec<&str> = timeline["timeline"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["kind"].as_str())
        .collect();
    for expected in [
        "PROVIDER_CREATED",
        "SECTION_UPDATED",
        "SUBMITTED",
        "WITHDRAWN",
        "APPROVED",
        "SUPERSEDED",
    ] {
        assert!(
            kinds.contains(&expected),
            "{expected} missing from {kinds:?}"
        );
    }
    let auto = timeline["timeline"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["node"]["kind"] == json!("APPROVED"))
        .expect("approval");
    assert_eq!(auto["node"]["actor"], Value::Null, "the system approved it");
}

#[tokio::test]
async fn malformed_and_oversized_samples_get_clear_errors_and_change_nothing() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Samples").await;
    provider
        .provider_details(&["expense@contoso.com"], &["https://api.contoso.com"])
        .await;
    let good = sample("01-good-global-dkim-adaptive.eml");
    let truncated = good[..good.len() / 2].to_owned();
    let nested = format!(
        "From: a@contoso.com\r\nSubject: deep\r\n{}\r\nbody\r\n",
        (0..200)
            .map(|i| format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"))
            .collect::<String>()
    );
    let huge = format!(
        "From: a@contoso.com\r\nSubject: big\r\n\r\n{}",
        "A".repeat(3 * 1024 * 1024)
    );
    for (what, raw, code) in [
        (
            "not a message",
            "hello there".to_owned(),
            Some("SAMPLE_NOT_A_MESSAGE"),
        ),
        ("3 MiB", huge, Some("SAMPLE_TOO_LARGE")),
        (
            "200 nested multiparts",
            nested,
            Some("SAMPLE_TOO_DEEPLY_NESTED"),
        ),
        ("truncated MIME", truncated, None),
    ] {
        let payload = provider
            .edit(
                "updateVerificationDetails",
                "UpdateVerificationDetailsInput",
                json!({ "reviewerInstructions": "steps", "sampleEmail": raw }),
            )
            .await;
        match code {
            Some(code) => {
                assert_eq!(
                    codes(&payload),
                    vec![(json!(["sampleEmail"]), code.to_owned())],
                    "{what}: {payload}"
                );
                let stored = provider
                    .read("draft { verificationDetails { reviewerInstructions } }")
                    .await;
                assert_eq!(
                    stored["draft"]["verificationDetails"],
                    Value::Null,
                    "{what}"
                );
            }
            // A cut-off message still parses; the report says what is missing.
            None => assert_eq!(
                payload["provider"]["criteriaReport"]["overall"],
                json!("FAIL"),
                "{what}: {payload}"
            ),
        }
    }

    // Past the request size limit the whole request is refused before it is read.
    let twenty_mb = "A".repeat(20 * 1024 * 1024);
    let response = app
        .client
        .post(app.graphql_url())
        .bearer_auth(&owner.access_token)
        .json(&json!({ "query": "mutation($s: String) { updateVerificationDetails(input: {providerId: \"x\", expectedVersion: 1, reviewerInstructions: \"x\", sampleEmail: $s}) { userErrors { code } } }", "variables": { "s": twenty_mb } }))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 413);
}
