//! Realtime status: GraphQL subscriptions over WebSocket (`graphql-transport-ws`), resuming by
//! cursor, authentication and limits of the socket, and events across instances.

use std::{path::Path, process::Stdio, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use dashboard::bus::BusStatus;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};
use uuid::Uuid;

use crate::helpers::{
    TEST_AUDIENCE, TEST_ISSUER, TEST_JWT_KID, TEST_JWT_SECRET, TestApp, TestUser, spawn_app,
    spawn_app_joining, spawn_app_with,
};

const STATUS_CHANGES: &str = "subscription($providerId: ID!, $after: String) {
    submissionStatusChanged(providerId: $providerId, after: $after) {
        cursor kind fromStatus toStatus reason createdAt
        actor { id role email }
        submission { id number status }
        event { cursor kind internal }
    } }";

const QUEUE_CHANGES: &str = "subscription($after: String) {
    reviewQueueChanged(after: $after) {
        cursor change kind providerId fromStatus toStatus
        actor { id email }
        submission { id status }
    } }";

/// How long a test waits for a message that should come.
const WAIT: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A `graphql-transport-ws` client over a real socket.
struct Ws {
    socket: Socket,
}

/// How a socket ended: the close code and reason.
#[derive(Debug)]
struct Closed {
    code: u16,
    reason: String,
}

impl Ws {
    async fn connect(app: &TestApp) -> Self {
        Self::connect_with(app, &[])
            .await
            .expect("the WebSocket upgrade succeeds")
    }

    /// Connects with the subprotocol and extra headers; the upgrade's error otherwise.
    async fn connect_with(
        app: &TestApp,
        headers: &[(&'static str, &str)],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut request = app
            .graphql_ws_url()
            .into_client_request()
            .expect("a valid request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        for (name, value) in headers {
            request
                .headers_mut()
                .insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        let (socket, response) = connect_async(request).await?;
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some("graphql-transport-ws")
        );
        Ok(Self { socket })
    }

    /// Connects and initialises with `token`, expecting the acknowledgement.
    async fn ready(app: &TestApp, token: &str) -> Self {
        let mut ws = Self::connect(app).await;
        ws.init(token).await;
        ws
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send a message");
    }

    async fn init(&mut self, token: &str) {
        self.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } }))
            .await;
        let ack = self.next().await.expect("connection_ack, not a close");
        assert_eq!(ack, json!({ "type": "connection_ack" }));
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next protocol message, or how the socket closed.
    async fn next(&mut self) -> Result<Value, Closed> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a message in time");
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(text.as_str()).expect("JSON message"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(
                        Closed {
                            code: 1005,
                            reason: String::new(),
                        },
                        |f| Closed {
                            code: u16::from(f.code),
                            reason: f.reason.as_str().to_owned(),
                        },
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("socket error: {error}"),
                None => panic!("the socket ended without a close frame"),
            }
        }
    }

    /// The payload of the next `next` message of operation `id`.
    async fn next_payload(&mut self, id: &str) -> Value {
        let message = self.next().await.expect("a message, not a close");
        assert_eq!(message["type"], json!("next"), "{message}");
        assert_eq!(message["id"], json!(id), "{message}");
        message["payload"].clone()
    }

    /// The data of the next event of a subscription, checking that it has no error.
    async fn next_event(&mut self, id: &str, field: &str) -> Value {
        let payload = self.next_payload(id).await;
        assert!(payload.get("errors").is_none(), "{payload}");
        payload["data"][field].clone()
    }

    async fn expect_close(&mut self) -> Closed {
        match self.next().await {
            Err(closed) => closed,
            Ok(message) => panic!("expected a close, got {message}"),
        }
    }

    /// Asserts that nothing arrives for `duration` (protocol pings aside).
    async fn expect_silence(&mut self, duration: Duration) {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Text(text)))) => panic!("unexpected message: {text}"),
                Ok(Some(Ok(Message::Close(frame)))) => panic!("unexpected close: {frame:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("unexpected end: {other:?}"),
            }
        }
    }
}

/// Creates a provider with everything its `scope` needs to be submitted; returns its ID.
async fn ready_provider(app: &TestApp, user: &TestUser, scope: &str) -> String {
    let token = Some(user.access_token.as_str());
    let body = app
        .graphql(
            token,
            "mutation { createProvider(input: {name: \"Expense approvals\"}) { provider { id version } } }",
            json!({}),
        )
        .await;
    let provider = &body["data"]["createProvider"]["provider"];
    let id = provider["id"].as_str().expect("provider id").to_owned();
    let mut version = provider["version"].as_i64().expect("version");
    for (mutation, input_type, input) in [
        (
            "updateProviderDetails",
            "UpdateProviderDetailsInput",
            json!({ "senderEmails": ["myservice@contoso.com"], "targetUrls": ["https://api.myservice.com"] }),
        ),
        ("setScope", "SetScopeInput", json!({ "scope": scope })),
        (
            "updateContactInfo",
            "UpdateContactInfoInput",
            json!({ "name": "Dana Developer", "email": "dana@contoso.com", "phone": "+1 425 555 0100" }),
        ),
    ] {
        let mut input = input;
        input["providerId"] = json!(id);
        input["expectedVersion"] = json!(version);
        let body = app
            .graphql(
                token,
                &format!("mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ provider {{ version }} userErrors {{ code }} }} }}"),
                json!({ "input": input }),
            )
            .await;
        assert_eq!(
            body["data"][mutation]["userErrors"],
            json!([]),
            "{mutation}: {body}"
        );
        version = body["data"][mutation]["provider"]["version"]
            .as_i64()
            .expect("new version");
    }
    id
}

/// Submits the provider's draft; returns the submission.
async fn submit(app: &TestApp, user: &TestUser, provider_id: &str) -> Value {
    let token = Some(user.access_token.as_str());
    let body = app
        .graphql(
            token,
            "query($id: ID!) { provider(id: $id) { version } }",
            json!({ "id": provider_id }),
        )
        .await;
    let version = body["data"]["provider"]["version"]
        .as_i64()
        .expect("version");
    let body = app
        .graphql(
            token,
            "mutation($input: SubmitForReviewInput!) { submitForReview(input: $input) {
                submission { id number status } userErrors { field code message } } }",
            json!({ "input": { "providerId": provider_id, "expectedVersion": version } }),
        )
        .await;
    assert_eq!(
        body["data"]["submitForReview"]["userErrors"],
        json!([]),
        "{body}"
    );
    body["data"]["submitForReview"]["submission"].clone()
}

async fn withdraw(app: &TestApp, user: &TestUser, submission_id: &str) -> Value {
    let body = app
        .graphql(
            Some(&user.access_token),
            "mutation($id: ID!) { withdrawSubmission(input: {submissionId: $id}) {
                submission { id status } userErrors { code } } }",
            json!({ "id": submission_id }),
        )
        .await;
    assert_eq!(
        body["data"]["withdrawSubmission"]["userErrors"],
        json!([]),
        "{body}"
    );
    body["data"]["withdrawSubmission"]["submission"].clone()
}

/// The cursor of the provider's newest timeline entry.
async fn newest_cursor(app: &TestApp, user: &TestUser, provider_id: &str) -> String {
    let body = app
        .graphql(
            Some(&user.access_token),
            "query($id: ID!) { provider(id: $id) { timeline(first: 100) { edges { cursor } } } }",
            json!({ "id": provider_id }),
        )
        .await;
    let edges = body["data"]["provider"]["timeline"]["edges"]
        .as_array()
        .expect("timeline edges");
    edges
        .last()
        .and_then(|e| e["cursor"].as_str())
        .expect("a cursor")
        .to_owned()
}

/// The event id inside a cursor, to compare their order.
fn cursor_id(cursor: &Value) -> i64 {
    let text = URL_SAFE_NO_PAD
        .decode(cursor.as_str().expect("a cursor string"))
        .expect("base64 cursor");
    String::from_utf8(text)
        .expect("utf8")
        .trim_start_matches("event:")
        .parse()
        .expect("an event id")
}

fn user_uuid(global_id: &str) -> String {
    let decoded = URL_SAFE_NO_PAD.decode(global_id).expect("base64");
    String::from_utf8(decoded)
        .expect("utf8")
        .trim_start_matches("User:")
        .to_owned()
}

/// An access token signed with the test key for `user`, expiring in `seconds`.
fn access_token_expiring_in(user: &TestUser, seconds: i64) -> String {
    let now = Utc::now().timestamp();
    let claims = json!({
        "sub": user_uuid(&user.id), "role": "SUBMITTER", "iss": TEST_ISSUER, "aud": TEST_AUDIENCE,
        "exp": now + seconds, "nbf": now - 1, "iat": now - 1,
        "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
    });
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(TEST_JWT_KID.to_owned());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(TEST_JWT_SECRET))
        .expect("sign a token")
}

fn redis_configured() -> bool {
    std::env::var("TEST_REDIS_URL").is_ok_and(|v| !v.is_empty())
}

/// The UUID behind a provider's global ID.
fn provider_uuid(provider_id: &str) -> Uuid {
    dashboard::graphql::GlobalId::decode(provider_id)
        .filter(|id| id.type_name == "Provider")
        .expect("a provider's global ID")
        .id
}

/// Logs and publishes, like any other event, an internal status event of the provider (as a
/// reviewer-only note of a status change would be), with the reason "reviewer-only note".
async fn publish_reviewer_note(app: &TestApp, provider_id: &str) {
    let mut internal = dashboard::events::NewEvent::new(
        provider_uuid(provider_id),
        None,
        dashboard::events::EventKind::Comment,
    )
    .transition(None, dashboard::registration::SubmissionStatus::InReview)
    .reason("reviewer-only note");
    internal.internal = true;
    let txn = app.state.db.begin_write().await.expect("begin");
    let recorded = dashboard::events::record(&txn, internal)
        .await
        .expect("record");
    txn.commit().await.expect("commit");
    app.state.bus.publish(vec![recorded]);
}

async fn readyz(app: &TestApp) -> Value {
    app.client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test]
async fn status_changes_arrive_over_websocket_with_their_fields() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let mut ws = Ws::ready(&app, &owner.access_token).await;
    ws.subscribe("s1", STATUS_CHANGES, json!({ "providerId": provider_id }))
        .await;
    // The subscription is registered before the first change.
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.expect("pong"), json!({ "type": "pong" }));

    let submission = submit(&app, &owner, &provider_id).await;
    let submitted = ws.next_event("s1", "submissionStatusChanged").await;
    assert_eq!(submitted["kind"], json!("SUBMITTED"));
    assert_eq!(submitted["fromStatus"], Value::Null);
    assert_eq!(submitted["toStatus"], json!("SUBMITTED"));
    assert_eq!(
        submitted["reason"],
        json!("submitted for the ORGANIZATION scope")
    );
    assert_eq!(
        submitted["actor"],
        json!({ "id": owner.id, "role": "SUBMITTER", "email": owner.email })
    );
    assert_eq!(submitted["submission"]["id"], submission["id"]);
    assert_eq!(submitted["submission"]["number"], json!(1));
    assert_eq!(
        submitted["event"],
        json!({ "cursor": submitted["cursor"], "kind": "SUBMITTED", "internal": false })
    );
    assert!(submitted["createdAt"].is_string());

    withdraw(&app, &owner, submission["id"].as_str().expect("id")).await;
    let withdrawn = ws.next_event("s1", "submissionStatusChanged").await;
    assert_eq!(withdrawn["kind"], json!("WITHDRAWN"));
    assert_eq!(withdrawn["fromStatus"], json!("SUBMITTED"));
    assert_eq!(withdrawn["toStatus"], json!("WITHDRAWN"));
    assert_eq!(withdrawn["submission"]["status"], json!("WITHDRAWN"));
    assert!(cursor_id(&withdrawn["cursor"]) > cursor_id(&submitted["cursor"]));

    // The cursors are the timeline's: the newest entry is the withdrawal.
    assert_eq!(
        json!(newest_cursor(&app, &owner, &provider_id).await),
        withdrawn["cursor"]
    );

    // Completing stops the stream: no more events, and no `complete` echo.
    ws.send(json!({ "id": "s1", "type": "complete" })).await;
    let second = submit(&app, &owner, &provider_id).await;
    assert_eq!(second["status"], json!("SUBMITTED"));
    ws.expect_silence(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn an_automatic_approval_arrives_as_a_change_by_the_system() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let provider_id = ready_provider(&app, &owner, "MY_MAILBOX").await;
    let mut ws = Ws::ready(&app, &owner.access_token).await;
    let after = newest_cursor(&app, &owner, &provider_id).await;
    ws.subscribe(
        "s",
        STATUS_CHANGES,
        json!({ "providerId": provider_id, "after": after }),
    )
    .await;
    let submission = submit(&app, &owner, &provider_id).await;
    assert_eq!(submission["status"], json!("APPROVED"));

    let submitted = ws.next_event("s", "submissionStatusChanged").await;
    let approved = ws.next_event("s", "submissionStatusChanged").await;
    assert_eq!(
        (
            &submitted["toStatus"],
            &approved["fromStatus"],
            &approved["toStatus"]
        ),
        (&json!("SUBMITTED"), &json!("SUBMITTED"), &json!("APPROVED"))
    );
    assert_eq!(approved["actor"], Value::Null, "the system approved it");
}

#[tokio::test]
async fn reviewers_follow_the_review_queue_and_submitters_may_not() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(dashboard::auth::Role::Reviewer).await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;

    let mut queue = Ws::ready(&app, &reviewer.access_token).await;
    queue.subscribe("q", QUEUE_CHANGES, json!({})).await;
    queue.send(json!({ "type": "ping" })).await;
    assert_eq!(queue.next().await.expect("pong")["type"], json!("pong"));

    let submission = submit(&app, &owner, &provider_id).await;
    let entered = queue.next_event("q", "reviewQueueChanged").await;
    assert_eq!(entered["change"], json!("ENTERED"));
    assert_eq!(entered["kind"], json!("SUBMITTED"));
    assert_eq!(entered["providerId"], json!(provider_id));
    assert_eq!(entered["submission"]["id"], submission["id"]);
    assert_eq!(
        entered["actor"]["email"],
        json!(owner.email),
        "reviewers see who acted"
    );
    withdraw(&app, &owner, submission["id"].as_str().expect("id")).await;
    let withdrawn = queue.next_event("q", "reviewQueueChanged").await;
    assert_eq!(withdrawn["change"], json!("WITHDRAWN"));

    // A reviewer may follow any provider's status too, and sees the owner's address.
    let after = newest_cursor(&app, &owner, &provider_id).await;
    queue
        .subscribe(
            "p",
            STATUS_CHANGES,
            json!({ "providerId": provider_id, "after": after }),
        )
        .await;
    submit(&app, &owner, &provider_id).await;
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let message = queue.next().await.expect("a message");
        kinds.push((message["id"].clone(), message["type"].clone()));
    }
    kinds.sort_by_key(|k| k.0.to_string());
    assert_eq!(
        kinds,
        vec![(json!("p"), json!("next")), (json!("q"), json!("next"))]
    );

    // A submitter is refused the queue: an error result, then completion.
    let mut mine = Ws::ready(&app, &owner.access_token).await;
    mine.subscribe("q", QUEUE_CHANGES, json!({})).await;
    let refused = mine.next_payload("q").await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        json!("FORBIDDEN"),
        "{refused}"
    );
    assert_eq!(
        mine.next().await.expect("complete"),
        json!({ "id": "q", "type": "complete" })
    );
}

#[tokio::test]
async fn payloads_resolve_the_submissions_provider_and_claim_holder() {
    // Regression: these fields read through the request's DataLoaders, which a socket's
    // operations do not have; resolving them over WebSocket panicked.
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(dashboard::auth::Role::Reviewer).await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let mut queue = Ws::ready(&app, &reviewer.access_token).await;
    queue
        .subscribe(
            "q",
            "subscription { reviewQueueChanged { change submission {
                provider { id name } claimHolder { email } decidedBy { email } } } }",
            json!({}),
        )
        .await;
    queue.send(json!({ "type": "ping" })).await;
    assert_eq!(queue.next().await.expect("pong")["type"], json!("pong"));

    let submission = submit(&app, &owner, &provider_id).await;
    let entered = queue.next_event("q", "reviewQueueChanged").await;
    assert_eq!(
        entered["submission"]["provider"],
        json!({ "id": provider_id, "name": "Expense approvals" })
    );
    assert_eq!(entered["submission"]["claimHolder"], Value::Null);

    let claimed = app
        .graphql(
            Some(&reviewer.access_token),
            "mutation($id: ID!) { claimSubmission(input: {submissionId: $id}) { userErrors { code } } }",
            json!({ "id": submission["id"] }),
        )
        .await;
    assert_eq!(
        claimed["data"]["claimSubmission"]["userErrors"],
        json!([]),
        "{claimed}"
    );
    let claim = queue.next_event("q", "reviewQueueChanged").await;
    assert_eq!(claim["change"], json!("CLAIMED"));
    assert_eq!(
        claim["submission"]["claimHolder"],
        json!({ "email": reviewer.email })
    );
    assert_eq!(
        claim["submission"]["provider"]["id"],
        json!(provider_id),
        "{claim}"
    );
}

#[tokio::test]
async fn another_owners_provider_is_refused_like_a_missing_one() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let stranger = app.sign_up().await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let missing = URL_SAFE_NO_PAD.encode(format!("Provider:{}", Uuid::now_v7()));

    let mut ws = Ws::ready(&app, &stranger.access_token).await;
    let mut errors = Vec::new();
    for (id, provider) in [("foreign", &provider_id), ("missing", &missing)] {
        ws.subscribe(id, STATUS_CHANGES, json!({ "providerId": provider }))
            .await;
        let payload = ws.next_payload(id).await;
        assert_eq!(payload["data"], Value::Null, "{payload}");
        let mut error = payload["errors"][0].clone();
        assert_eq!(error["extensions"]["code"], json!("NOT_FOUND"), "{payload}");
        error["locations"] = Value::Null;
        errors.push(error);
        assert_eq!(
            ws.next().await.expect("complete"),
            json!({ "id": id, "type": "complete" })
        );
    }
    assert_eq!(errors[0], errors[1], "nothing tells the two apart");

    // Nothing of the owner's provider reaches the stranger.
    submit(&app, &owner, &provider_id).await;
    ws.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn submitters_never_receive_internal_events() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(dashboard::auth::Role::Reviewer).await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let after = newest_cursor(&app, &owner, &provider_id).await;
    publish_reviewer_note(&app, &provider_id).await;

    let mut mine = Ws::ready(&app, &owner.access_token).await;
    let mut theirs = Ws::ready(&app, &reviewer.access_token).await;
    let variables = json!({ "providerId": provider_id, "after": after });
    mine.subscribe("s", STATUS_CHANGES, variables.clone()).await;
    theirs.subscribe("s", STATUS_CHANGES, variables).await;

    let note = theirs.next_event("s", "submissionStatusChanged").await;
    assert_eq!(note["reason"], json!("reviewer-only note"));
    assert_eq!(note["event"]["internal"], json!(true));

    submit(&app, &owner, &provider_id).await;
    let first = mine.next_event("s", "submissionStatusChanged").await;
    assert_eq!(
        first["kind"],
        json!("SUBMITTED"),
        "the internal event was skipped"
    );
    let reviewer_next = theirs.next_event("s", "submissionStatusChanged").await;
    assert_eq!(reviewer_next["cursor"], first["cursor"]);
}

#[tokio::test]
async fn events_missed_while_disconnected_arrive_once_on_resume() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let start = newest_cursor(&app, &owner, &provider_id).await;

    let mut ws = Ws::ready(&app, &owner.access_token).await;
    ws.subscribe(
        "s",
        STATUS_CHANGES,
        json!({ "providerId": provider_id, "after": start }),
    )
    .await;
    let first = submit(&app, &owner, &provider_id).await;
    let seen = ws.next_event("s", "submissionStatusChanged").await;
    assert_eq!(seen["toStatus"], json!("SUBMITTED"));
    let last_cursor = seen["cursor"].clone();
    drop(ws); // the network drops

    // Changes while nobody listens.
    withdraw(&app, &owner, first["id"].as_str().expect("id")).await;
    let second = submit(&app, &owner, &provider_id).await;
    withdraw(&app, &owner, second["id"].as_str().expect("id")).await;

    let mut ws = Ws::ready(&app, &owner.access_token).await;
    ws.subscribe(
        "s",
        STATUS_CHANGES,
        json!({ "providerId": provider_id, "after": last_cursor }),
    )
    .await;
    let mut caught_up = Vec::new();
    for _ in 0..3 {
        caught_up.push(ws.next_event("s", "submissionStatusChanged").await);
    }
    let statuses: Vec<&Value> = caught_up.iter().map(|e| &e["toStatus"]).collect();
    assert_eq!(
        statuses,
        vec![
            &json!("WITHDRAWN"),
            &json!("SUBMITTED"),
            &json!("WITHDRAWN")
        ]
    );
    let ids: Vec<i64> = caught_up.iter().map(|e| cursor_id(&e["cursor"])).collect();
    assert!(ids[0] > cursor_id(&last_cursor) && ids.windows(2).all(|w| w[0] < w[1]));

    // Then live, with nothing repeated at the seam.
    ws.expect_silence(Duration::from_millis(300)).await;
    let third = submit(&app, &owner, &provider_id).await;
    let live = ws.next_event("s", "submissionStatusChanged").await;
    assert_eq!(live["submission"]["id"], third["id"]);
    ws.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn event_ids_are_assigned_in_commit_order() {
    // Two transactions that record events: the second cannot draw an id (on PostgreSQL) or even
    // start writing (on SQLite) until the first has committed, so a resuming `id > cursor`
    // never skips a late commit.
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let provider_uuid = provider_uuid(&provider_id);
    let note = |text: &str| {
        dashboard::events::NewEvent::new(provider_uuid, None, dashboard::events::EventKind::Comment)
            .reason(text)
    };

    let first_txn = app.state.db.begin_write().await.expect("begin the first");
    let first = dashboard::events::record(&first_txn, note("first"))
        .await
        .expect("record the first");

    let db = app.state.db.clone();
    let second_note = note("second");
    let second = tokio::spawn(async move {
        let txn = db.begin_write().await.expect("begin the second");
        let second = dashboard::events::record(&txn, second_note)
            .await
            .expect("record the second");
        txn.commit().await.expect("commit the second");
        second
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "the second transaction waits for the first"
    );
    first_txn.commit().await.expect("commit the first");
    let second = second.await.expect("the second finishes");
    assert!(second.id > first.id);
}

#[tokio::test]
async fn subscribing_before_the_acknowledgement_closes_with_4401() {
    let app = spawn_app().await;
    let mut ws = Ws::connect(&app).await;
    ws.subscribe("s", QUEUE_CHANGES, json!({})).await;
    assert_eq!(ws.expect_close().await.code, 4401);
}

#[tokio::test]
async fn bad_or_missing_credentials_close_with_4403() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let forged = {
        let mut token = access_token_expiring_in(&user, 600);
        token.push('x');
        token
    };
    for payload in [
        json!({ "authorization": format!("Bearer {forged}") }),
        json!({ "authorization": "Bearer amd_not-a-real-api-token" }),
        json!({ "authorization": "Basic dXNlcjpwYXNz" }),
        json!({}),
        Value::Null,
    ] {
        let mut ws = Ws::connect(&app).await;
        ws.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        let closed = ws.expect_close().await;
        assert_eq!(closed.code, 4403, "{payload}: {closed:?}");
    }
}

#[tokio::test]
async fn an_expiring_access_token_closes_the_socket_at_its_expiry() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let token = access_token_expiring_in(&user, 2);
    let mut ws = Ws::ready(&app, &token).await;
    let opened = tokio::time::Instant::now();
    let closed = ws.expect_close().await;
    assert_eq!(closed.code, 4403, "{closed:?}");
    assert!(closed.reason.contains("expired"), "{closed:?}");
    assert!(opened.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_revoked_api_token_or_a_disabled_user_closes_the_socket() {
    let app = spawn_app_with(&[("WS_AUTH_RECHECK_SECONDS", "1")]).await;
    let user = app.sign_up().await;
    let body = app
        .graphql(
            Some(&user.access_token),
            "mutation { createApiToken(input: {name: \"dashboard tv\"}) { token apiToken { id } } }",
            json!({}),
        )
        .await;
    let token = body["data"]["createApiToken"]["token"]
        .as_str()
        .expect("an API token")
        .to_owned();
    let token_id = body["data"]["createApiToken"]["apiToken"]["id"].clone();
    let mut ws = Ws::ready(&app, &token).await;
    ws.expect_silence(Duration::from_millis(1500)).await;
    app.graphql(
        Some(&user.access_token),
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { apiToken { revokedAt } } }",
        json!({ "id": token_id }),
    )
    .await;
    assert_eq!(ws.expect_close().await.code, 4403);

    let admin = app.user_with_role(dashboard::auth::Role::Admin).await;
    let mut ws = Ws::ready(&app, &user.access_token).await;
    let body = app
        .graphql(
            Some(&admin.access_token),
            "mutation($id: ID!) { setUserDisabled(input: {userId: $id, disabled: true}) { user { disabled } } }",
            json!({ "id": user.id }),
        )
        .await;
    assert_eq!(
        body["data"]["setUserDisabled"]["user"]["disabled"],
        json!(true),
        "{body}"
    );
    assert_eq!(ws.expect_close().await.code, 4403);
}

#[tokio::test]
async fn no_connection_init_in_time_closes_with_4408() {
    let app = spawn_app_with(&[("WS_INIT_TIMEOUT_SECONDS", "1")]).await;
    let mut ws = Ws::connect(&app).await;
    let closed = ws.expect_close().await;
    assert_eq!(closed.code, 4408, "{closed:?}");
}

#[tokio::test]
async fn protocol_violations_close_with_their_codes() {
    let app = spawn_app_with(&[("WS_MAX_MESSAGE_BYTES", "1024")]).await;
    let user = app.sign_up().await;

    let mut ws = Ws::ready(&app, &user.access_token).await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", user.access_token) } }))
        .await;
    assert_eq!(ws.expect_close().await.code, 4429, "a second init");

    let mut ws = Ws::ready(&app, &user.access_token).await;
    ws.subscribe(
        "same",
        QUEUE_CHANGES.replace("reviewQueueChanged", "x").as_str(),
        json!({}),
    )
    .await;
    // A document that fails validation gets an `error` message, and the id is free again.
    let error = ws.next().await.expect("an error message");
    assert_eq!(error["type"], json!("error"), "{error}");
    assert_eq!(error["id"], json!("same"));
    let provider_id = ready_provider(&app, &user, "ORGANIZATION").await;
    ws.subscribe("same", STATUS_CHANGES, json!({ "providerId": provider_id }))
        .await;
    ws.subscribe("same", STATUS_CHANGES, json!({ "providerId": provider_id }))
        .await;
    assert_eq!(ws.expect_close().await.code, 4409, "a running id again");

    let mut ws = Ws::ready(&app, &user.access_token).await;
    ws.socket
        .send(Message::text("{\"type\": \"no such type\"}"))
        .await
        .expect("send");
    assert_eq!(ws.expect_close().await.code, 4400);

    let mut ws = Ws::ready(&app, &user.access_token).await;
    ws.socket
        .send(Message::text("not JSON"))
        .await
        .expect("send");
    assert_eq!(ws.expect_close().await.code, 4400);

    let mut ws = Ws::ready(&app, &user.access_token).await;
    let oversize =
        json!({ "id": "big", "type": "subscribe", "payload": { "query": "x".repeat(2000) } });
    ws.socket
        .send(Message::text(oversize.to_string()))
        .await
        .expect("send");
    let closed = ws.expect_close().await;
    assert_eq!(closed.code, 1009, "{closed:?}");
}

#[tokio::test]
async fn sockets_and_subscriptions_are_capped() {
    let app = spawn_app_with(&[
        ("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", "1"),
        ("WS_MAX_CONNECTIONS_PER_USER", "1"),
    ])
    .await;
    let user = app.sign_up().await;
    let provider_id = ready_provider(&app, &user, "ORGANIZATION").await;
    let mut ws = Ws::ready(&app, &user.access_token).await;
    ws.subscribe("a", STATUS_CHANGES, json!({ "providerId": provider_id }))
        .await;
    ws.subscribe("b", STATUS_CHANGES, json!({ "providerId": provider_id }))
        .await;
    let refused = ws.next().await.expect("an error message");
    assert_eq!(refused["type"], json!("error"));
    assert_eq!(refused["id"], json!("b"));
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        json!("RATE_LIMITED")
    );

    let mut second = Ws::connect(&app).await;
    second
        .send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", user.access_token) } }))
        .await;
    assert_eq!(second.expect_close().await.code, 1013);

    // The slot is given back when the first socket closes.
    ws.socket.close(None).await.expect("close");
    drop(ws);
    let mut third = None;
    for _ in 0..50 {
        let mut ws = Ws::connect(&app).await;
        ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", user.access_token) } }))
            .await;
        match ws.next().await {
            Ok(ack) => {
                assert_eq!(ack["type"], json!("connection_ack"));
                third = Some(ws);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(third.is_some(), "a slot was freed");
}

#[tokio::test]
async fn a_socket_over_its_message_rate_is_closed_with_4429() {
    let app = spawn_app_with(&[
        ("WS_MAX_MESSAGES_PER_SECOND", "1"),
        ("WS_MESSAGE_BURST", "5"),
    ])
    .await;
    let user = app.sign_up().await;

    // The burst: connection_init and four pings, all answered however slowly they are sent.
    let mut ws = Ws::ready(&app, &user.access_token).await;
    for _ in 0..4 {
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.expect("a pong"), json!({ "type": "pong" }));
    }
    // Past the burst, pings sent back to back outrun the refill of one per second: one of
    // them closes the socket (the client sends nothing after it, so the close is read cleanly).
    let mut closed = None;
    for _ in 0..50 {
        ws.send(json!({ "type": "ping" })).await;
        match ws.next().await {
            Ok(pong) => assert_eq!(pong, json!({ "type": "pong" })),
            Err(close) => {
                closed = Some(close);
                break;
            }
        }
    }
    let closed = closed.expect("the flood was cut off");
    assert_eq!(closed.code, 4429, "{closed:?}");
    assert_eq!(closed.reason, "Too many messages");

    // The budget is per socket: another socket of the same user starts with a full burst.
    let mut other = Ws::ready(&app, &user.access_token).await;
    other.send(json!({ "type": "ping" })).await;
    assert_eq!(
        other.next().await.expect("a pong"),
        json!({ "type": "pong" })
    );
}

#[tokio::test]
async fn unsolicited_pongs_spend_the_message_budget_but_heartbeat_pongs_do_not() {
    let app = spawn_app_with(&[
        ("WS_MAX_MESSAGES_PER_SECOND", "1"),
        ("WS_MESSAGE_BURST", "5"),
    ])
    .await;
    let user = app.sign_up().await;

    // The server pings at once; the client library answers that ping with a pong while
    // reading, and that pong is free: init and four pings still fit the burst of five.
    let mut ws = Ws::ready(&app, &user.access_token).await;
    for _ in 0..4 {
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.expect("a pong"), json!({ "type": "pong" }));
    }

    // Pong frames nobody asked for count like any other frame.
    let mut fresh = Ws::ready(&app, &user.access_token).await;
    for _ in 0..20 {
        if fresh
            .socket
            .send(Message::Pong(Vec::new().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = fresh.expect_close().await;
    assert_eq!(closed.code, 4429, "{closed:?}");
    assert_eq!(closed.reason, "Too many messages");
}

#[tokio::test]
async fn origins_are_checked_against_the_allow_list() {
    let app = spawn_app_with(&[("ALLOWED_ORIGINS", "https://dashboard.contoso.com")]).await;
    let refused = Ws::connect_with(&app, &[("Origin", "https://evil.example")]).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403);
        }
        Err(other) => panic!("expected 403, got {other}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    assert!(
        Ws::connect_with(&app, &[("Origin", "https://dashboard.contoso.com")])
            .await
            .is_ok()
    );
    let own = app.address.clone();
    assert!(
        Ws::connect_with(&app, &[("Origin", &own)]).await.is_ok(),
        "same origin"
    );
    assert!(Ws::connect_with(&app, &[]).await.is_ok(), "no origin");
}

#[tokio::test]
async fn http_never_serves_subscriptions_and_plain_gets_still_work() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    // Asking for a multipart stream is not acceptable; a plain subscription request is refused.
    for (accept, status) in [
        ("multipart/mixed", 406),
        ("multipart/mixed, application/json", 400),
        ("application/graphql-response+json", 400),
    ] {
        let response = app
            .client
            .post(app.graphql_url())
            .bearer_auth(&user.access_token)
            .header("accept", accept)
            .json(&json!({ "query": QUEUE_CHANGES }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status().as_u16(), status, "{accept}");
        let body = response.text().await.expect("a body");
        assert!(
            !body.contains("reviewQueueChanged\":"),
            "nothing streamed: {body}"
        );
    }
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", "{ viewer { id } }")])
        .bearer_auth(&user.access_token)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);

    let ready = readyz(&app).await;
    let expected = if redis_configured() {
        "redis-connected"
    } else {
        "in-process"
    };
    assert_eq!(ready["bus"], json!(expected), "{ready}");
}

#[tokio::test]
async fn a_subscriber_on_one_instance_sees_changes_made_through_another() {
    if !redis_configured() {
        eprintln!("skipped: set TEST_REDIS_URL to run the two-instance test through Redis");
        return;
    }
    let a = spawn_app().await;
    let b = spawn_app_joining(&a, &[]).await;
    assert_eq!(readyz(&a).await["bus"], json!("redis-connected"));
    assert_eq!(readyz(&b).await["bus"], json!("redis-connected"));
    let owner = a.sign_up().await;
    let provider_id = ready_provider(&b, &owner, "ORGANIZATION").await;

    let mut ws = Ws::ready(&a, &owner.access_token).await;
    ws.subscribe("s", STATUS_CHANGES, json!({ "providerId": provider_id }))
        .await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.expect("pong")["type"], json!("pong"));

    let submission = submit(&b, &owner, &provider_id).await;
    let started = tokio::time::Instant::now();
    let submitted = ws.next_event("s", "submissionStatusChanged").await;
    assert_eq!(submitted["toStatus"], json!("SUBMITTED"));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "delivered through Redis, not by the once-a-while catch-up"
    );
    withdraw(&b, &owner, submission["id"].as_str().expect("id")).await;
    let withdrawn = ws.next_event("s", "submissionStatusChanged").await;
    assert_eq!(withdrawn["toStatus"], json!("WITHDRAWN"));
    // Each event once, although A also hears its own events back from Redis.
    ws.expect_silence(Duration::from_millis(500)).await;
}

/// A private Redis server on a port of its own, to stop and start in a test.
pub struct PrivateRedis {
    port: u16,
    child: tokio::process::Child,
}

impl PrivateRedis {
    pub async fn start(port: u16) -> Option<Self> {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(Self { port, child });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub async fn stop(mut self) -> u16 {
        self.child.kill().await.ok();
        self.child.wait().await.ok();
        self.port
    }
}

/// Waits (up to 30 s, more than the longest reconnect backoff) for the instance's bus status.
async fn wait_for_bus(app: &TestApp, status: BusStatus) -> bool {
    for _ in 0..600 {
        if app.state.bus.status() == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[tokio::test]
async fn a_redis_restart_loses_and_repeats_nothing() {
    if !on_path("redis-server") {
        eprintln!("skipped: redis-server is not on PATH");
        return;
    }
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("address").port()
    };
    let Some(redis) = PrivateRedis::start(port).await else {
        eprintln!("skipped: could not start a private redis-server");
        return;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = format!("test-{}", Uuid::new_v4().simple());
    let a = spawn_app_with(&[("REDIS_URL", &url), ("REDIS_PREFIX", &prefix)]).await;
    let b = spawn_app_joining(&a, &[]).await;
    let owner = a.sign_up().await;
    let provider_id = ready_provider(&b, &owner, "ORGANIZATION").await;
    let mut ws = Ws::ready(&a, &owner.access_token).await;
    ws.subscribe("s", STATUS_CHANGES, json!({ "providerId": provider_id }))
        .await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.expect("pong")["type"], json!("pong"));

    let first = submit(&b, &owner, &provider_id).await;
    assert_eq!(
        ws.next_event("s", "submissionStatusChanged").await["toStatus"],
        json!("SUBMITTED")
    );

    // Redis goes away: B's publish fails, A still gets the change from the log.
    let port = redis.stop().await;
    assert!(
        wait_for_bus(&a, BusStatus::RedisReconnecting).await,
        "A noticed the lost subscription"
    );
    let ready = readyz(&a).await;
    assert_eq!(ready["bus"], json!("redis-reconnecting"), "{ready}");
    withdraw(&b, &owner, first["id"].as_str().expect("id")).await;
    assert_eq!(
        ws.next_event("s", "submissionStatusChanged").await["toStatus"],
        json!("WITHDRAWN")
    );

    // Redis comes back on the same port: both reconnect and events flow through it again.
    let _redis = PrivateRedis::start(port)
        .await
        .expect("restart redis-server");
    assert!(
        wait_for_bus(&a, BusStatus::RedisConnected).await
            && wait_for_bus(&b, BusStatus::RedisConnected).await,
        "both instances resubscribed"
    );
    assert_eq!(readyz(&a).await["bus"], json!("redis-connected"));
    let second = submit(&b, &owner, &provider_id).await;
    let live = ws.next_event("s", "submissionStatusChanged").await;
    assert_eq!(live["submission"]["id"], second["id"]);
    ws.expect_silence(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn the_graphql_ws_client_completes_a_subscription() {
    if !on_path("node") || !on_path("npm") {
        eprintln!("skipped: node and npm are needed for the graphql-ws client test");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/graphql-ws-client");
    if !dir.join("node_modules/graphql-ws").exists() {
        let installed = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .await
            .expect("run npm ci");
        assert!(
            installed.success(),
            "npm ci failed in tests/graphql-ws-client"
        );
    }

    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let after = newest_cursor(&app, &owner, &provider_id).await;
    let submission = submit(&app, &owner, &provider_id).await;

    let client = tokio::process::Command::new("node")
        .arg("client.mjs")
        .args([
            &app.graphql_ws_url(),
            &owner.access_token,
            &provider_id,
            &after,
            "2",
        ])
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    // One change replayed from the log, one live.
    tokio::time::sleep(Duration::from_millis(500)).await;
    withdraw(&app, &owner, submission["id"].as_str().expect("id")).await;
    let output = tokio::time::timeout(Duration::from_secs(60), client.wait_with_output())
        .await
        .expect("the client finishes in time")
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect();
    let statuses: Vec<&Value> = events.iter().map(|e| &e["toStatus"]).collect();
    assert_eq!(statuses, vec![&json!("SUBMITTED"), &json!("WITHDRAWN")]);
}

/// A subscription is priced like a query: once the user's query-cost budget is spent, a
/// `subscribe` gets an `error` message with `RATE_LIMITED` and nothing starts (the id stays
/// free), and a document that fails validation still gets its validation error first.
#[tokio::test]
async fn a_subscription_over_the_query_cost_budget_is_refused_and_never_starts() {
    let app = spawn_app_with(&[("RATE_LIMIT_QUERY_COST", "2000/1h")]).await;
    let user = app.sign_up().await;
    let provider_id = ready_provider(&app, &user, "ORGANIZATION").await;
    let token = Some(user.access_token.as_str());

    // Spend the budget: pages of 100 first, then the cheapest query, until both are refused.
    for query in [
        "{ myProviders(first: 100) { edges { node { id name } } } }",
        "{ viewer { id } }",
    ] {
        let mut refused = false;
        for _ in 0..2_000 {
            let body = app.graphql(token, query, json!({})).await;
            if crate::helpers::error_code(&body) == Some("RATE_LIMITED") {
                refused = true;
                break;
            }
        }
        assert!(refused, "the budget runs out for {query}");
    }

    let mut ws = Ws::ready(&app, &user.access_token).await;
    ws.subscribe(
        "bad",
        STATUS_CHANGES
            .replace("cursor kind", "cursor noSuchField")
            .as_str(),
        json!({ "providerId": provider_id }),
    )
    .await;
    let invalid = ws.next().await.expect("an error message");
    assert_eq!(invalid["type"], json!("error"), "{invalid}");
    assert_eq!(invalid["id"], json!("bad"));
    assert_ne!(
        invalid["payload"][0]["extensions"]["code"],
        json!("RATE_LIMITED"),
        "validation comes before the charge: {invalid}"
    );

    for _ in 0..2 {
        // The same id twice: a started operation would make the second a 4409 close.
        ws.subscribe(
            "priced",
            STATUS_CHANGES,
            json!({ "providerId": provider_id }),
        )
        .await;
        let refused = ws.next().await.expect("an error message");
        assert_eq!(refused["type"], json!("error"), "{refused}");
        assert_eq!(refused["id"], json!("priced"));
        assert_eq!(
            refused["payload"][0]["extensions"]["code"],
            json!("RATE_LIMITED"),
            "{refused}"
        );
    }
}

/// The live subscriptions of the sharing tests: no `after`, so that sockets with the same viewer
/// share one execution.
const LIVE_QUEUE: &str = "subscription { reviewQueueChanged { cursor change toStatus } }";
const LIVE_STATUS: &str = "subscription($providerId: ID!) {
    submissionStatusChanged(providerId: $providerId) { cursor kind toStatus reason event { internal } } }";

#[tokio::test]
async fn sockets_sharing_a_subscription_each_start_at_their_own_subscribe() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(dashboard::auth::Role::Reviewer).await;
    let other_reviewer = app.user_with_role(dashboard::auth::Role::Reviewer).await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;

    let mut early = Ws::ready(&app, &reviewer.access_token).await;
    early.subscribe("first", LIVE_QUEUE, json!({})).await;
    early.send(json!({ "type": "ping" })).await;
    assert_eq!(early.next().await.expect("pong")["type"], json!("pong"));
    let submission = submit(&app, &owner, &provider_id).await;
    let entered = early.next_event("first", "reviewQueueChanged").await;
    assert_eq!(entered["change"], json!("ENTERED"));

    // Same viewer, same document: the late socket joins the running execution, under its own
    // operation id, and gets nothing from before its subscribe.
    let mut late = Ws::ready(&app, &reviewer.access_token).await;
    late.subscribe("mine", LIVE_QUEUE, json!({})).await;
    let mut apart = Ws::ready(&app, &other_reviewer.access_token).await;
    apart.subscribe("x", LIVE_QUEUE, json!({})).await;
    // A ping answered proves both subscribes were handled before the next change.
    for socket in [&mut late, &mut apart] {
        socket.send(json!({ "type": "ping" })).await;
        assert_eq!(socket.next().await.expect("pong")["type"], json!("pong"));
    }
    withdraw(&app, &owner, submission["id"].as_str().expect("id")).await;
    let seen_early = early.next_event("first", "reviewQueueChanged").await;
    let seen_late = late.next_event("mine", "reviewQueueChanged").await;
    let seen_apart = apart.next_event("x", "reviewQueueChanged").await;
    assert_eq!(seen_early["change"], json!("WITHDRAWN"));
    assert_eq!(seen_late, seen_early, "one event, the same payload");
    assert_eq!(seen_apart, seen_early);
    for socket in [&mut early, &mut late, &mut apart] {
        socket.expect_silence(Duration::from_millis(300)).await;
    }

    // Completing one member's operation leaves the others running.
    early
        .send(json!({ "id": "first", "type": "complete" }))
        .await;
    let again = submit(&app, &owner, &provider_id).await;
    assert_eq!(
        late.next_event("mine", "reviewQueueChanged").await["change"],
        json!("ENTERED")
    );
    early.expect_silence(Duration::from_millis(300)).await;
    drop(late);

    // A new socket after every member left starts a fresh execution at its subscribe.
    let mut fresh = Ws::ready(&app, &reviewer.access_token).await;
    fresh.subscribe("f", LIVE_QUEUE, json!({})).await;
    fresh.send(json!({ "type": "ping" })).await;
    assert_eq!(fresh.next().await.expect("pong")["type"], json!("pong"));
    withdraw(&app, &owner, again["id"].as_str().expect("id")).await;
    assert_eq!(
        fresh.next_event("f", "reviewQueueChanged").await["change"],
        json!("WITHDRAWN")
    );
    fresh.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn an_owner_and_a_reviewer_with_the_same_document_see_what_each_may() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let reviewer = app.user_with_role(dashboard::auth::Role::Reviewer).await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let variables = json!({ "providerId": provider_id });
    let mut sockets = Vec::new();
    for token in [
        &owner.access_token,
        &owner.access_token,
        &reviewer.access_token,
    ] {
        let mut ws = Ws::ready(&app, token).await;
        ws.subscribe("s", LIVE_STATUS, variables.clone()).await;
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.expect("pong")["type"], json!("pong"));
        sockets.push(ws);
    }
    publish_reviewer_note(&app, &provider_id).await;

    let note = sockets[2].next_event("s", "submissionStatusChanged").await;
    assert_eq!(note["reason"], json!("reviewer-only note"));
    submit(&app, &owner, &provider_id).await;
    let submitted = sockets[2].next_event("s", "submissionStatusChanged").await;
    for owner_socket in &mut sockets[..2] {
        let first = owner_socket
            .next_event("s", "submissionStatusChanged")
            .await;
        assert_eq!(
            first["kind"],
            json!("SUBMITTED"),
            "the internal note never arrives"
        );
        assert_eq!(first["cursor"], submitted["cursor"]);
        owner_socket
            .expect_silence(Duration::from_millis(300))
            .await;
    }
}

#[tokio::test]
async fn upgrades_are_answered_only_on_the_graphql_path() {
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    for (request, status) in [
        (
            format!(
                "GET /livez HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
            "404",
        ),
        (
            format!(
                "GET /graphql HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            ),
            "400",
        ),
        (
            format!("CONNECT {address} HTTP/1.1\r\nHost: {address}\r\n\r\n"),
            "404",
        ),
    ] {
        let mut stream = TcpStream::connect(&address).await.expect("connect");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .expect("write");
        let mut answer = Vec::new();
        tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
        )
        .await
        .expect("the server answers and closes")
        .expect("read");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?} got {answer}"
        );
    }
    // The service still serves plain requests afterwards.
    let response = app
        .client
        .get(format!("{}/livez", app.address))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn one_users_credentials_share_a_subscription_and_are_revoked_apart() {
    let app = spawn_app_with(&[("WS_AUTH_RECHECK_SECONDS", "1")]).await;
    let owner = app.sign_up().await;
    let provider_id = ready_provider(&app, &owner, "ORGANIZATION").await;
    let body = app
        .graphql(
            Some(&owner.access_token),
            "mutation { createApiToken(input: {name: \"status board\"}) { token apiToken { id } } }",
            json!({}),
        )
        .await;
    let api_token = body["data"]["createApiToken"]["token"]
        .as_str()
        .expect("an API token")
        .to_owned();
    let token_id = body["data"]["createApiToken"]["apiToken"]["id"].clone();
    let variables = json!({ "providerId": provider_id });
    let mut by_session = Ws::ready(&app, &owner.access_token).await;
    let mut by_token = Ws::ready(&app, &api_token).await;
    // The API token's socket subscribes first, so the execution both share starts with it.
    for ws in [&mut by_token, &mut by_session] {
        ws.subscribe("s", LIVE_STATUS, variables.clone()).await;
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next().await.expect("pong")["type"], json!("pong"));
    }
    let submission = submit(&app, &owner, &provider_id).await;
    for ws in [&mut by_session, &mut by_token] {
        let change = ws.next_event("s", "submissionStatusChanged").await;
        assert_eq!(change["toStatus"], json!("SUBMITTED"));
    }

    app.graphql(
        Some(&owner.access_token),
        "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { apiToken { revokedAt } } }",
        json!({ "id": token_id }),
    )
    .await;
    assert_eq!(by_token.expect_close().await.code, 4403);
    withdraw(&app, &owner, submission["id"].as_str().expect("id")).await;
    let change = by_session.next_event("s", "submissionStatusChanged").await;
    assert_eq!(
        change["toStatus"],
        json!("WITHDRAWN"),
        "the session's socket goes on"
    );
}

#[tokio::test]
async fn operations_on_a_socket_are_budgeted_by_the_sockets_own_address() {
    let app = spawn_app_with(&[
        ("CLIENT_IP_HEADER", "X-Forwarded-For"),
        ("RATE_LIMIT_LOG_IN_PER_ADDRESS", "2/1h"),
    ])
    .await;
    let user = app.sign_up().await;
    let log_in = "mutation($input: LogInInput!) { logIn(input: $input) { accessToken userErrors { code } } }";
    let attempt = json!({ "input": { "email": "nobody@contoso.com", "password": "not the one" } });
    let mut first = Ws::connect_with(&app, &[("X-Forwarded-For", "203.0.113.7")])
        .await
        .expect("upgrade");
    first.init(&user.access_token).await;
    for round in 0..3 {
        let id = format!("login-{round}");
        first.subscribe(&id, log_in, attempt.clone()).await;
        let payload = first.next_payload(&id).await;
        let code = &payload["errors"][0]["extensions"]["code"];
        if round < 2 {
            assert!(payload.get("errors").is_none(), "{payload}");
        } else {
            assert_eq!(code, &json!("RATE_LIMITED"), "{payload}");
        }
        assert_eq!(
            first.next().await.expect("complete")["type"],
            json!("complete")
        );
    }
    // Another address has a budget of its own (before, every socket shared 0.0.0.0's).
    let mut second = Ws::connect_with(&app, &[("X-Forwarded-For", "203.0.113.8")])
        .await
        .expect("upgrade");
    second.init(&user.access_token).await;
    second.subscribe("login", log_in, attempt).await;
    let payload = second.next_payload("login").await;
    assert!(payload.get("errors").is_none(), "{payload}");
}

#[tokio::test]
async fn errors_over_the_socket_carry_a_code_like_over_http() {
    let app = spawn_app().await;
    let user = app.sign_up().await;
    let mut ws = Ws::ready(&app, &user.access_token).await;
    for (id, query) in [
        ("unknown-field", "{ nope }"),
        (
            "missing-variable",
            "mutation($i: SignUpInput!) { signUp(input: $i) { accessToken } }",
        ),
        ("unparsable", "subscription {"),
    ] {
        ws.subscribe(id, query, json!({})).await;
        let message = ws.next().await.expect("an answer");
        let errors = if message["type"] == json!("error") {
            message["payload"].clone()
        } else {
            message["payload"]["errors"].clone()
        };
        let errors = errors.as_array().cloned().unwrap_or_default();
        assert!(!errors.is_empty(), "{id}: {message}");
        for error in &errors {
            assert!(
                error["extensions"]["code"].is_string(),
                "{id}: an error without a code: {message}"
            );
        }
        // Drain a `complete` that may follow a `next`.
        if message["type"] == json!("next") {
            assert_eq!(
                ws.next().await.expect("complete")["type"],
                json!("complete")
            );
        }
    }
}

#[tokio::test]
async fn an_instance_holds_at_most_its_socket_cap_and_frees_places_as_sockets_end() {
    let app = spawn_app_with(&[("WS_MAX_CONNECTIONS", "2")]).await;
    let user = app.sign_up().await;
    // One socket authenticated, one still waiting for `connection_init`: both count.
    let first = Ws::ready(&app, &user.access_token).await;
    let _second = Ws::connect(&app).await;
    match Ws::connect_with(&app, &[]).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            assert!(response.headers().contains_key("retry-after"));
        }
        Err(other) => panic!("expected 503, got {other}"),
        Ok(_) => panic!("a third socket was let in"),
    }
    // Plain HTTP is not affected.
    let body = app
        .graphql(Some(&user.access_token), "{ viewer { id } }", json!({}))
        .await;
    assert_eq!(body["data"]["viewer"]["id"], json!(user.id), "{body}");

    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Ws::connect_with(&app, &[]).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the place of a closed socket was never freed: {error}"),
        }
    }
}
