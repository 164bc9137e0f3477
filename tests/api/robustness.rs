//! Robustness: abuse inputs get a clear error and change nothing, the process survives them;
//! database and Redis outages degrade and recover by themselves; a service killed in the middle
//! of a burst of writes restarts on a consistent database.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures_util::{SinkExt, StreamExt};
use sea_orm::{Database, EntityTrait};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{
        Message,
        client::IntoClientRequest,
        http::HeaderValue,
        protocol::frame::{
            Frame,
            coding::{Data, OpCode},
        },
    },
};
use uuid::Uuid;

use crate::{
    helpers::{
        PASSWORD, TEST_JWT_KID, TEST_JWT_SECRET, TestApp, error_code, fresh_database_url,
        spawn_app, spawn_app_with,
    },
    registration::Registration,
};

/// Upper bound for anything that must not hang; generous for slow CI machines.
const NO_HANG: Duration = Duration::from_secs(30);

const GQL: &str = "application/graphql-response+json";

/// POSTs raw bytes as `application/json`; returns the status and the JSON body (or Null).
async fn post_raw(app: &TestApp, accept: &str, body: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(app.graphql_url())
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(body)
        .timeout(NO_HANG)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// The service still serves: `/livez` and a GraphQL query.
async fn assert_still_answers(app: &TestApp) {
    let live = app
        .client
        .get(format!("{}/livez", app.address))
        .timeout(NO_HANG)
        .send()
        .await
        .expect("livez answers");
    assert_eq!(live.status().as_u16(), 200);
    let body = app.graphql(None, "{ viewer { id } }", json!({})).await;
    assert_eq!(body, json!({ "data": { "viewer": null } }));
}

/// Sends raw bytes on a new connection and returns everything the server sends back until it
/// closes the connection or `NO_HANG` passes (then the test fails: the server held on).
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    let address = app.address.trim_start_matches("http://");
    let mut socket = TcpStream::connect(address).await.expect("connect");
    // The server may answer and close before it has read everything (a head too large).
    let _ = socket.write_all(request).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(NO_HANG, async {
        let mut buffer = [0u8; 4096];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open: {}",
        String::from_utf8_lossy(&received)
    );
    String::from_utf8_lossy(&received).into_owned()
}

/// The status line's code of a raw response.
fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

#[tokio::test]
async fn malformed_bodies_and_numbers_get_400_or_a_coded_error() {
    let app = spawn_app().await;
    let int_query = "query($n: Int) { reviewQueue(first: $n) { totalCount } }";
    let with_n =
        |n: &str| format!(r#"{{"query":"{int_query}","variables":{{"n":{n}}}}}"#).into_bytes();
    let deep_arrays = format!(
        r#"{{"query":"{{ viewer {{ id }} }}","variables":{{"a":{}}}}}"#,
        nested("[", "", "]", 100_000)
    );
    let deep_objects = format!(
        r#"{{"query":"{{ viewer {{ id }} }}","variables":{{"a":{}}}}}"#,
        nested(r#"{"a":"#, "1", "}", 100_000)
    );
    // (what, body, status, code)
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("truncated", br#"{"query": "#.to_vec(), 400, "BAD_REQUEST"),
        (
            "not JSON",
            b"query { viewer { id } }".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        ("empty", Vec::new(), 400, "BAD_REQUEST"),
        (
            "a string",
            br#""{ viewer { id } }""#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "a batch",
            br#"[{"query":"{ viewer { id } }"}]"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "query not a string",
            br#"{"query": 3}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "variables not an object",
            br#"{"query":"{ viewer { id } }","variables":[1]}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        ("1e400", with_n("1e400"), 400, "BAD_REQUEST"),
        (
            "2^64 for an Int",
            with_n("18446744073709551616"),
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "2^31 for an Int",
            with_n("2147483648"),
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "-0 for an Int",
            with_n("-0"),
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "1.5 for an Int",
            with_n("1.5"),
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            "\"NaN\" for an Int",
            with_n(r#""NaN""#),
            400,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ("NaN bare", with_n("NaN"), 400, "BAD_REQUEST"),
        ("Infinity bare", with_n("Infinity"), 400, "BAD_REQUEST"),
        (
            "lone surrogate in the query",
            br#"{"query":"{ viewer { id } } # \ud800"}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "lone low surrogate in a variable",
            br#"{"query":"{ viewer { id } }","variables":{"s":"\udc00x"}}"#.to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "invalid UTF-8",
            b"{\"query\":\"{ viewer { id } }\xff\xfe\"}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "overlong UTF-8 NUL",
            b"{\"query\":\"{ viewer { id } }\xc0\x80\"}".to_vec(),
            400,
            "BAD_REQUEST",
        ),
        (
            "100k nested arrays",
            deep_arrays.into_bytes(),
            400,
            "BAD_REQUEST",
        ),
        (
            "100k nested objects",
            deep_objects.into_bytes(),
            400,
            "BAD_REQUEST",
        ),
    ];
    for (what, body, status, code) in cases {
        let (got_status, got) = post_raw(&app, GQL, body).await;
        assert_eq!(
            (got_status, error_code(&got)),
            (status, Some(code)),
            "{what}: {got}"
        );
    }
    assert_still_answers(&app).await;
}

#[tokio::test]
async fn deeply_nested_documents_are_refused_before_parsing() {
    // These took the process down: a few hundred nested list or object values in a document
    // overflowed a worker thread's stack while the document was turned into values.
    let app = spawn_app().await;
    let documents = [
        format!(
            "{{ nodes(ids: {}) {{ id }} }}",
            nested("[", "\"a\"", "]", 400)
        ),
        format!("{{ node(id: {}) {{ id }} }}", nested("{a:", "1", "}", 300)),
        format!("{{ {} }}", nested("viewer {", "id", "}", 100)),
    ];
    for document in &documents {
        let (status, body) = post_raw(
            &app,
            GQL,
            json!({ "query": document }).to_string().into_bytes(),
        )
        .await;
        assert_eq!(
            (status, error_code(&body)),
            (400, Some("NESTING_TOO_DEEP")),
            "{body}"
        );
        let response = app
            .client
            .get(app.graphql_url())
            .query(&[("query", document)])
            .timeout(NO_HANG)
            .send()
            .await
            .expect("GET answers");
        assert_eq!(response.status().as_u16(), 400);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(error_code(&body), Some("NESTING_TOO_DEEP"), "{body}");
    }
    // Brackets inside strings do not count; ordinary nesting passes.
    let body = app
        .graphql(
            None,
            &format!("{{ node(id: \"{}\") {{ id }} }}", "[".repeat(500)),
            json!({}),
        )
        .await;
    assert_eq!(body["data"]["node"], Value::Null, "{body}");
    assert_still_answers(&app).await;
}

#[tokio::test]
async fn refused_edits_leave_stored_data_untouched() {
    let app = spawn_app().await;
    let owner = app.sign_up().await;
    let mut provider = Registration::create(&app, &owner, "Untouched").await;
    provider.contact().await;
    let before = provider
        .read("version draft { contactInfo { name email phone } }")
        .await;
    let mutation = "mutation($input: UpdateContactInfoInput!) { updateContactInfo(input: $input) { provider { version } userErrors { code } } }";
    let input = |version: &str, name: &str| {
        format!(
            r#"{{"query":"{}","variables":{{"input":{{"providerId":"{}","expectedVersion":{version},"name":{name},"email":"x@contoso.com"}}}}}}"#,
            mutation.replace('"', "\\\""),
            provider.id
        )
    };
    for body in [
        input("18446744073709551616", r#""Mallory""#),
        input("1e400", r#""Mallory""#),
        input("-0", r#""Mallory""#),
        input(&provider.version.to_string(), r#""\ud800""#),
        input(&provider.version.to_string(), &nested("[", "1", "]", 200)),
        input(&provider.version.to_string(), r#""Mallory\u0000""#),
    ] {
        let response = app
            .client
            .post(app.graphql_url())
            .bearer_auth(&owner.access_token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        let body: Value = response.json().await.expect("a JSON answer");
        let refused = body["errors"].is_array()
            || body["data"]["updateContactInfo"]["userErrors"]
                .as_array()
                .is_some_and(|errors| !errors.is_empty());
        assert!(refused, "{body}");
    }
    let after = provider
        .read("version draft { contactInfo { name email phone } }")
        .await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn bad_bytes_and_extreme_heads_get_4xx_and_the_server_goes_on() {
    let app = spawn_app().await;
    let get = |target: &[u8], headers: &[u8]| {
        [
            b"GET ".as_slice(),
            target,
            b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n",
            headers,
            b"\r\n",
        ]
        .concat()
    };
    let viewer = b"%7B%20viewer%20%7B%20id%20%7D%20%7D";
    let big_header = [b"X-Big: ".as_slice(), &vec![b'a'; 200 * 1024], b"\r\n"].concat();
    let many_headers: Vec<u8> = (0..200)
        .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
        .collect();
    let many_params: Vec<u8> = (0..5_000)
        .flat_map(|i| format!("p{i}=1&").into_bytes())
        .chain(b"query=".iter().copied())
        .chain(viewer.iter().copied())
        .collect();
    // (what, request, status, a piece of the body)
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "raw invalid UTF-8 in the query string",
            get(
                &[b"/graphql?query=".as_slice(), viewer, b"\xff\xfe"].concat(),
                b"",
            ),
            400,
            "",
        ),
        (
            "percent-encoded invalid UTF-8 in the query",
            get(
                &[b"/graphql?query=".as_slice(), viewer, b"%FF%FE"].concat(),
                b"",
            ),
            200,
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "percent-encoded invalid UTF-8 in variables",
            get(
                &[b"/graphql?query=".as_slice(), viewer, b"&variables=%FF"].concat(),
                b"",
            ),
            400,
            "BAD_REQUEST",
        ),
        (
            "a lone surrogate escape in variables",
            get(
                &[
                    b"/graphql?query=".as_slice(),
                    viewer,
                    b"&variables=%7B%22a%22%3A%22%5Cud800%22%7D",
                ]
                .concat(),
                b"",
            ),
            400,
            "BAD_REQUEST",
        ),
        (
            "no query parameter",
            get(b"/graphql?variables=%7B%7D", b""),
            400,
            "BAD_REQUEST",
        ),
        (
            "a malformed query string",
            get(b"/graphql?query=%7B&&==&%%", b""),
            200,
            "GRAPHQL_PARSE_FAILED",
        ),
        (
            "a 100 KiB query string",
            get(
                &[b"/graphql?query=".as_slice(), &vec![b'a'; 100 * 1024]].concat(),
                b"",
            ),
            400,
            "",
        ),
        (
            "5,000 query parameters",
            get(&[b"/graphql?".as_slice(), &many_params].concat(), b""),
            200,
            "\"viewer\":null",
        ),
        ("a 200 KiB header", get(b"/livez", &big_header), 431, ""),
        ("200 headers", get(b"/livez", &many_headers), 431, ""),
        (
            "NUL in a header",
            get(b"/livez", b"X-A: a\x00b\r\n"),
            400,
            "",
        ),
        (
            "invalid UTF-8 in Authorization",
            get(
                &[b"/graphql?query=".as_slice(), viewer].concat(),
                b"Authorization: Bearer \xff\xfe\r\n",
            ),
            401,
            "UNAUTHENTICATED",
        ),
        (
            "a 100 KiB bearer token",
            get(
                &[b"/graphql?query=".as_slice(), viewer].concat(),
                &[
                    b"Authorization: Bearer ".as_slice(),
                    &vec![b'a'; 100 * 1024],
                    b"\r\n",
                ]
                .concat(),
            ),
            401,
            "UNAUTHENTICATED",
        ),
    ];
    for (what, request, status, piece) in cases {
        let response = raw_exchange(&app, &request).await;
        assert_eq!(status_of(&response), status, "{what}: {response:.300}");
        assert!(response.contains(piece), "{what}: {response:.600}");
    }
    assert_still_answers(&app).await;
}

#[tokio::test]
async fn stalled_bodies_and_heads_get_408_and_the_connection_is_closed() {
    let app = spawn_app_with(&[("BODY_READ_TIMEOUT_SECONDS", "1")]).await;
    // A body announced as 1000 bytes of which 10 arrive.
    let stalled_body = b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"query\":";
    let response = raw_exchange(&app, stalled_body).await;
    assert_eq!(status_of(&response), 408, "{response}");
    assert!(response.contains("REQUEST_TIMEOUT"), "{response}");
    // A POST that asks to upgrade is refused at once (an upgrade is a GET), instead of its body
    // being read as the rest of the connection.
    let upgrade_post = b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n{\"query\":\"{ viewer { id } }\"}";
    let response = raw_exchange(&app, upgrade_post).await;
    assert_eq!(status_of(&response), 405, "{response}");
    assert!(
        response.contains("a WebSocket upgrade is a GET"),
        "{response}"
    );
    // A head that never ends: actix's own request timeout.
    let stalled_head = b"GET /livez HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    let response = raw_exchange(&app, stalled_head).await;
    assert_eq!(status_of(&response), 408, "{response}");
    // A body that arrives slowly but in time is read.
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = TcpStream::connect(&address).await.expect("connect");
    let body = br#"{"query":"{ viewer { id } }"}"#;
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.expect("write");
    socket.write_all(&body[..10]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    socket.write_all(&body[10..]).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(NO_HANG, socket.read_to_string(&mut response))
        .await
        .expect("answered")
        .expect("read");
    assert_eq!(status_of(&response), 200, "{response}");
    assert_still_answers(&app).await;
}

#[tokio::test]
async fn oversized_body_is_413_with_a_code() {
    let app = spawn_app_with(&[("MAX_BODY_BYTES", "2048")]).await;
    let body = format!(
        r#"{{"query":"{{ viewer {{ id }} }}","pad":"{}"}}"#,
        "x".repeat(4096)
    );
    let (status, body) = post_raw(&app, GQL, body.into_bytes()).await;
    assert_eq!(
        (status, error_code(&body)),
        (413, Some("BODY_TOO_LARGE")),
        "{body}"
    );
    assert_still_answers(&app).await;
}

/// A `graphql-transport-ws` socket, acknowledged.
async fn ready_socket(
    app: &TestApp,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let mut request = app
        .graphql_ws_url()
        .into_client_request()
        .expect("a request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = connect_async(request).await.expect("upgrade");
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    socket
        .send(Message::text(init.to_string()))
        .await
        .expect("send");
    let ack = next_text(&mut socket).await;
    assert_eq!(ack["type"], json!("connection_ack"));
    socket
}

async fn next_text(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> Value {
    loop {
        let message = tokio::time::timeout(NO_HANG, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until the server closes; returns its close code.
async fn close_code(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> Option<u16> {
    tokio::time::timeout(NO_HANG, async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("the server closed the socket in time")
}

#[tokio::test]
async fn endless_and_oversized_websocket_messages_are_cut_off() {
    let app = spawn_app_with(&[("WS_MAX_MESSAGE_BYTES", "1024")]).await;
    let user = app.sign_up().await;

    // A fragmented message that is never finished: each fragment is small, but together they
    // pass the cap (4 x 256 + 256 > 1024), and the socket is closed before a final one.
    let mut socket = ready_socket(&app, &user.access_token).await;
    let chunk = vec![b' '; 256];
    socket
        .send(Message::Frame(Frame::message(
            chunk.clone(),
            OpCode::Data(Data::Text),
            false,
        )))
        .await
        .expect("first fragment");
    for _ in 0..4 {
        let frame = Frame::message(chunk.clone(), OpCode::Data(Data::Continue), false);
        socket
            .send(Message::Frame(frame))
            .await
            .expect("a fragment");
    }
    assert_eq!(close_code(&mut socket).await, Some(1009));

    // A text message that is not UTF-8: a protocol error, not a crash.
    let mut socket = ready_socket(&app, &user.access_token).await;
    socket
        .send(Message::Frame(Frame::message(
            vec![b'{', 0xff, 0xfe, b'}'],
            OpCode::Data(Data::Text),
            true,
        )))
        .await
        .expect("send");
    let code = close_code(&mut socket).await;
    assert_eq!(code, Some(1002));

    // A deeply nested subscription document gets an error message; the socket goes on.
    let mut socket = ready_socket(&app, &user.access_token).await;
    let document = format!(
        "subscription {{ reviewQueueChanged(after: {}) {{ cursor }} }}",
        nested("[", "\"a\"", "]", 300)
    );
    let subscribe = json!({ "id": "deep", "type": "subscribe", "payload": { "query": document } });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .expect("send");
    let error = next_text(&mut socket).await;
    assert_eq!(error["type"], json!("error"), "{error}");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        json!("NESTING_TOO_DEEP")
    );
    socket
        .send(Message::text(json!({ "type": "ping" }).to_string()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut socket).await["type"], json!("pong"));
    assert_still_answers(&app).await;
}

#[tokio::test]
async fn websocket_upgrades_missing_headers_get_400_and_a_wrong_version_426() {
    let app = spawn_app().await;
    let upgrade = |headers: &str| {
        format!("GET /graphql HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n{headers}\r\n")
            .into_bytes()
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let version = "Sec-WebSocket-Version: 13\r\n";
    let connection = "Connection: Upgrade\r\n";
    for (what, request, status) in [
        ("no key, no version", upgrade(connection), 400),
        ("no version", upgrade(&format!("{connection}{key}")), 400),
        ("no key", upgrade(&format!("{connection}{version}")), 400),
        (
            "no Connection: Upgrade",
            upgrade(&format!("{key}{version}")),
            400,
        ),
        (
            "an unsupported version",
            upgrade(&format!("{connection}{key}Sec-WebSocket-Version: 99\r\n")),
            426,
        ),
    ] {
        let response = raw_exchange(&app, &request).await;
        assert_eq!(status_of(&response), status, "{what}: {response}");
    }
    assert_still_answers(&app).await;
}

/// What the proxy does with traffic.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Forwards both ways.
    Up,
    /// Drops every open connection and closes new ones at once (a refused connection).
    Cut,
    /// Forwards nothing and closes nothing, old or new (a black hole: a dead route or a
    /// firewall that drops packets). Connections held are dropped when the link changes.
    Stalled,
}

/// A TCP forwarder between the service and a backing server, which the test can cut, stall and
/// restore.
struct Proxy {
    port: u16,
    link: watch::Sender<Link>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let (link, state) = watch::channel(Link::Up);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let mut state = state.clone();
                let now = *state.borrow_and_update();
                tokio::spawn(async move {
                    match now {
                        Link::Cut => return,
                        Link::Stalled => {
                            let _ = state.wait_for(|link| *link != Link::Stalled).await;
                            return;
                        }
                        Link::Up => {}
                    }
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        _ = state.wait_for(|link| *link != Link::Up) => {}
                    }
                    // Held open, silent, until the link changes again.
                    let stalled = *state.borrow() == Link::Stalled;
                    if stalled {
                        let _ = state.wait_for(|link| *link != Link::Stalled).await;
                    }
                });
            }
        });
        Self { port, link }
    }

    fn cut(&self) {
        self.link.send_replace(Link::Cut);
    }

    fn stall(&self) {
        self.link.send_replace(Link::Stalled);
    }

    fn restore(&self) {
        self.link.send_replace(Link::Up);
    }
}

/// The host and port of a URL, resolved.
async fn socket_address(url: &url::Url) -> SocketAddr {
    let host = url.host_str().expect("a host");
    let port = url.port_or_known_default().unwrap_or(6379);
    tokio::net::lookup_host((host, port))
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let response = app
        .client
        .get(format!("{}/readyz", app.address))
        .timeout(NO_HANG)
        .send()
        .await
        .expect("readyz answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// Polls `/readyz` (every 200 ms, up to 60 s) until `done` holds; returns the last answer.
async fn wait_for_readyz(app: &TestApp, done: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let mut last = readyz(app).await;
    for _ in 0..300 {
        if done(last.0, &last.1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = readyz(app).await;
    }
    last
}

/// Internal details that must never reach a client.
fn assert_no_internals(body: &Value) {
    let text = body.to_string().to_lowercase();
    for leak in [
        "sqlx",
        "postgres",
        "pool",
        "connection",
        "127.0.0.1",
        "tcp",
        "io error",
        "database",
        "redis",
        "timed out",
    ] {
        assert!(!text.contains(leak), "{leak:?} leaked: {body}");
    }
}

#[tokio::test]
async fn a_database_outage_fails_requests_cleanly_and_heals_by_itself() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        eprintln!("skipped: set TEST_DATABASE_URL to cut PostgreSQL off through a proxy");
        return;
    }
    let mut url = url::Url::parse(&fresh_database_url().await).expect("a database URL");
    let proxy = Proxy::start(socket_address(&url).await).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.port)).expect("port");
    let app = spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
    let user = app.sign_up().await;
    let viewer = |app: &TestApp| {
        app.client
            .post(app.graphql_url())
            .bearer_auth(&user.access_token)
            .json(&json!({ "query": "{ viewer { id } }" }))
            .timeout(NO_HANG)
            .send()
    };
    assert_eq!(viewer(&app).await.expect("send").status().as_u16(), 200);

    proxy.cut();
    let response = viewer(&app).await.expect("the service answers");
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(error_code(&body), Some("INTERNAL_SERVER_ERROR"), "{body}");
    assert_eq!(body["errors"][0]["message"], json!("internal server error"));
    assert_no_internals(&body);
    // A mutation that reaches the database in its resolver.
    let sign_up = app
        .graphql(
            None,
            "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken userErrors { code } } }",
            json!({ "input": { "email": "outage@contoso.com", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(
        error_code(&sign_up),
        Some("INTERNAL_SERVER_ERROR"),
        "{sign_up}"
    );
    assert_eq!(
        sign_up["errors"][0]["message"],
        json!("internal server error")
    );
    assert_no_internals(&sign_up["errors"]);
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["database"], json!("unavailable"));
    assert_eq!(ready["ready"], json!(false));
    let live = app
        .client
        .get(format!("{}/livez", app.address))
        .send()
        .await
        .expect("livez");
    assert_eq!(live.status().as_u16(), 200, "the process itself is fine");

    proxy.restore();
    let (status, ready) = wait_for_readyz(&app, |status, _| status == 200).await;
    assert_eq!(status, 200, "ready again by itself: {ready}");
    assert_eq!(ready["database"], json!("ok"));
    let body: Value = viewer(&app)
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["data"]["viewer"]["id"], json!(user.id), "{body}");
    // The refused sign-up left nothing behind: the address is still free.
    let again = app
        .graphql(
            None,
            "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken userErrors { code } } }",
            json!({ "input": { "email": "outage@contoso.com", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(again["data"]["signUp"]["userErrors"], json!([]), "{again}");

    // A black hole instead of a refusal: nothing answers and nothing is closed. The pool's
    // acquire timeout (10 s) still bounds the wait; nothing hangs.
    proxy.stall();
    let response = viewer(&app).await.expect("the service answers");
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(error_code(&body), Some("INTERNAL_SERVER_ERROR"), "{body}");
    assert_no_internals(&body);
    let (status, ready) = readyz(&app).await;
    assert_eq!(
        (status, &ready["database"]),
        (503, &json!("unavailable")),
        "{ready}"
    );
    proxy.restore();
    let (status, ready) = wait_for_readyz(&app, |status, _| status == 200).await;
    assert_eq!(status, 200, "ready again by itself: {ready}");
    let body: Value = viewer(&app)
        .await
        .expect("send")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["data"]["viewer"]["id"], json!(user.id), "{body}");
}

#[tokio::test]
async fn a_redis_outage_makes_the_instance_unready_but_writes_go_on_and_it_heals() {
    let Some(redis) = std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty())
    else {
        eprintln!("skipped: set TEST_REDIS_URL to cut Redis off through a proxy");
        return;
    };
    let mut url = url::Url::parse(&redis).expect("a Redis URL");
    let proxy = Proxy::start(socket_address(&url).await).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.port)).expect("port");
    let prefix = format!("test-{}", Uuid::new_v4().simple());
    let app = spawn_app_with(&[("REDIS_URL", url.as_str()), ("REDIS_PREFIX", &prefix)]).await;
    let owner = app.sign_up().await;
    let (status, ready) = readyz(&app).await;
    assert_eq!((status, &ready["redis"]), (200, &json!("ok")), "{ready}");

    proxy.cut();
    let (status, ready) = wait_for_readyz(&app, |status, _| status == 503).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["redis"], json!("unavailable"));
    assert_eq!(ready["database"], json!("ok"));
    // Writes do not depend on Redis: the change is committed, its event waits in the log.
    let mut provider = Registration::create(&app, &owner, "During the outage").await;
    let edited = provider.contact().await;
    assert_eq!(edited["userErrors"], json!([]), "{edited}");
    assert_eq!(
        provider.read("name").await["name"],
        json!("During the outage")
    );
    let (_, ready) =
        wait_for_readyz(&app, |_, ready| ready["bus"] == json!("redis-reconnecting")).await;
    assert_eq!(ready["bus"], json!("redis-reconnecting"), "{ready}");

    proxy.restore();
    let (status, ready) = wait_for_readyz(&app, |status, ready| {
        status == 200 && ready["bus"] == json!("redis-connected")
    })
    .await;
    assert_eq!(status, 200, "ready again by itself: {ready}");
    assert_eq!(ready["redis"], json!("ok"));
    assert_eq!(ready["bus"], json!("redis-connected"));
}

/// The service binary as a child process on a SQLite file.
struct ServiceProcess {
    child: tokio::process::Child,
    address: String,
}

impl ServiceProcess {
    async fn start(dir: &std::path::Path) -> Self {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("address").port()
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("service.log"))
            .expect("log file");
        let keys = format!(
            "{TEST_JWT_KID}:{}",
            base64::engine::general_purpose::STANDARD.encode(TEST_JWT_SECRET)
        );
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dashboard"))
            .current_dir(dir)
            .env_clear()
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.join("killed.sqlite").display()),
            )
            .env("DATA_DIR", dir)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("JWT_KEYS", keys)
            .env("PASSWORD_HASH_CONCURRENCY", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start the service binary");
        let service = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        for _ in 0..600 {
            let live = client
                .get(format!("{}/livez", service.address))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if live.is_ok_and(|r| r.status().is_success()) {
                return service;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the service did not start: {}",
            std::fs::read_to_string(dir.join("service.log")).unwrap_or_default()
        );
    }

    /// SIGKILL: no shutdown hook, no flush.
    async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}

async fn gql(
    client: &reqwest::Client,
    address: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Result<Value, reqwest::Error> {
    let mut request = client
        .post(format!("{address}/graphql"))
        .json(&json!({ "query": query, "variables": variables }))
        .timeout(NO_HANG);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await?.json().await
}

fn uuid_of(global_id: &str) -> Uuid {
    let decoded = URL_SAFE_NO_PAD.decode(global_id).expect("base64 id");
    let text = String::from_utf8(decoded).expect("utf8 id");
    text.split_once(':')
        .and_then(|(_, id)| id.parse().ok())
        .expect("a uuid")
}

/// What the service acknowledged before it was killed.
#[derive(Default)]
struct Acknowledged {
    /// (provider, version, contact name) of every acknowledged edit.
    edits: Vec<(Uuid, i64, String)>,
    /// Every acknowledged submission.
    submissions: Vec<Uuid>,
}

#[tokio::test]
async fn a_service_killed_mid_burst_restarts_with_every_acknowledged_write_and_no_half_change() {
    const PROVIDERS: usize = 4;
    const KILL_AFTER: usize = 40;
    let dir = std::env::temp_dir().join(format!("amdash-kill-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let service = ServiceProcess::start(&dir).await;
    let client = reqwest::Client::new();
    let address = service.address.clone();

    let signed_up = gql(
        &client,
        &address,
        None,
        "mutation($input: SignUpInput!) { signUp(input: $input) { accessToken userErrors { code } } }",
        json!({ "input": { "email": "burst@contoso.com", "password": PASSWORD } }),
    )
    .await
    .expect("sign up");
    let token = signed_up["data"]["signUp"]["accessToken"]
        .as_str()
        .expect("a token")
        .to_owned();
    let edit = "mutation($input: UpdateContactInfoInput!) { updateContactInfo(input: $input) { provider { version } userErrors { code } } }";
    let mut providers = Vec::new();
    for index in 0..PROVIDERS {
        let created = gql(
            &client,
            &address,
            Some(&token),
            "mutation($name: String!) { createProvider(input: {name: $name}) { provider { id version } } }",
            json!({ "name": format!("Burst {index}") }),
        )
        .await
        .expect("create");
        let id = created["data"]["createProvider"]["provider"]["id"]
            .as_str()
            .expect("an id")
            .to_owned();
        let mut version = 1;
        for (mutation, input_type, input) in [
            (
                "updateProviderDetails",
                "UpdateProviderDetailsInput",
                json!({ "senderEmails": ["myservice@contoso.com"], "targetUrls": ["https://api.myservice.com"] }),
            ),
            (
                "setScope",
                "SetScopeInput",
                json!({ "scope": "MY_MAILBOX" }),
            ),
        ] {
            let mut input = input;
            input["providerId"] = json!(id);
            input["expectedVersion"] = json!(version);
            let body = gql(
                &client,
                &address,
                Some(&token),
                &format!("mutation($input: {input_type}!) {{ {mutation}(input: $input) {{ provider {{ version }} userErrors {{ code }} }} }}"),
                json!({ "input": input }),
            )
            .await
            .expect("set up");
            version = body["data"][mutation]["provider"]["version"]
                .as_i64()
                .unwrap_or_else(|| panic!("{mutation}: {body}"));
        }
        providers.push((id, version));
    }

    // The burst: per provider, contact edits with a submission after every third, all
    // providers at once; SIGKILL once KILL_AFTER writes were acknowledged.
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let count = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for (id, mut version) in providers.clone() {
        let (client, address, token) = (client.clone(), address.clone(), token.clone());
        let (acknowledged, count) = (acknowledged.clone(), count.clone());
        workers.push(tokio::spawn(async move {
            for step in 0.. {
                let name = format!("Dana {step}");
                let input = json!({ "providerId": id, "expectedVersion": version, "name": name,
                                    "email": "dana@contoso.com" });
                let Ok(body) = gql(&client, &address, Some(&token), edit, json!({ "input": input })).await else {
                    return;
                };
                let payload = &body["data"]["updateContactInfo"];
                assert_eq!(payload["userErrors"], json!([]), "{body}");
                version = payload["provider"]["version"].as_i64().expect("a version");
                acknowledged.lock().expect("lock").edits.push((uuid_of(&id), version, name));
                count.fetch_add(1, Ordering::SeqCst);
                if step % 3 == 2 {
                    let Ok(body) = gql(
                        &client,
                        &address,
                        Some(&token),
                        "mutation($input: SubmitForReviewInput!) { submitForReview(input: $input) { submission { id status } userErrors { code } } }",
                        json!({ "input": { "providerId": id, "expectedVersion": version } }),
                    )
                    .await
                    else {
                        return;
                    };
                    let payload = &body["data"]["submitForReview"];
                    assert_eq!(payload["userErrors"], json!([]), "{body}");
                    assert_eq!(payload["submission"]["status"], json!("APPROVED"), "{body}");
                    let submission = uuid_of(payload["submission"]["id"].as_str().expect("an id"));
                    acknowledged.lock().expect("lock").submissions.push(submission);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(120), async {
        while count.load(Ordering::SeqCst) < KILL_AFTER {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the burst got going");
    service.kill().await;
    for worker in workers {
        worker
            .await
            .expect("a worker saw only successes, then the kill");
    }

    let restarted = ServiceProcess::start(&dir).await;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().expect("lock"));
    assert!(acknowledged.edits.len() + acknowledged.submissions.len() >= KILL_AFTER);

    // Every acknowledged edit is there: a provider is at or past its last acknowledged
    // version, and exactly at it, the draft holds that edit.
    for (id, _) in &providers {
        let uuid = uuid_of(id);
        let Some((_, version, name)) = acknowledged
            .edits
            .iter()
            .filter(|(provider, _, _)| *provider == uuid)
            .max_by_key(|(_, version, _)| *version)
        else {
            continue;
        };
        let body = gql(
            &client,
            &restarted.address,
            Some(&token),
            "query($id: ID!) { provider(id: $id) { version draft { contactInfo { name } } } }",
            json!({ "id": id }),
        )
        .await
        .expect("read after the restart");
        let stored = &body["data"]["provider"];
        let stored_version = stored["version"].as_i64().expect("a version");
        assert!(
            stored_version >= *version,
            "lost an acknowledged edit: {body}"
        );
        if stored_version == *version {
            assert_eq!(
                stored["draft"]["contactInfo"]["name"],
                json!(name),
                "{body}"
            );
        }
    }

    // No half-applied change, read straight from the file.
    let db = Database::connect(format!(
        "sqlite://{}?mode=ro",
        dir.join("killed.sqlite").display()
    ))
    .await
    .expect("open the file");
    let providers_rows = entity::provider::Entity::find()
        .all(&db)
        .await
        .expect("providers");
    let submissions = entity::submission::Entity::find()
        .all(&db)
        .await
        .expect("submissions");
    let events = entity::event::Entity::find()
        .all(&db)
        .await
        .expect("events");
    for id in &acknowledged.submissions {
        assert!(
            submissions.iter().any(|s| s.id == *id),
            "lost an acknowledged submission {id}"
        );
    }
    for provider in &providers_rows {
        let edits = events
            .iter()
            .filter(|e| e.provider_id == provider.id && e.kind == "SECTION_UPDATED")
            .count();
        assert_eq!(
            i64::from(provider.version),
            1 + i64::try_from(edits).expect("small"),
            "every version has its SECTION_UPDATED event, and no event lacks its version"
        );
        let mut own: Vec<_> = submissions
            .iter()
            .filter(|s| s.provider_id == provider.id)
            .collect();
        own.sort_by_key(|s| s.number);
        let numbers: Vec<i32> = own.iter().map(|s| s.number).collect();
        let expected: Vec<i32> = (1..=i32::try_from(own.len()).expect("small")).collect();
        assert_eq!(numbers, expected, "submission numbers without gaps");
        let approved: Vec<_> = own.iter().filter(|s| s.status == "APPROVED").collect();
        assert!(approved.len() <= 1, "one approved submission at most");
        assert_eq!(
            provider.active_submission_id,
            approved.first().map(|s| s.id),
            "the active submission is the approved one"
        );
        for submission in own {
            let mut history: Vec<_> = events
                .iter()
                .filter(|e| e.submission_id == Some(submission.id) && e.to_status.is_some())
                .collect();
            history.sort_by_key(|e| e.id);
            assert_eq!(
                history.first().map(|e| e.kind.as_str()),
                Some("SUBMITTED"),
                "submission {} has its SUBMITTED event",
                submission.number
            );
            assert_eq!(
                history.last().and_then(|e| e.to_status.as_deref()),
                Some(submission.status.as_str()),
                "submission {}'s status is that of its last event",
                submission.number
            );
        }
    }
    db.close().await.ok();
    restarted.kill().await;
    std::fs::remove_dir_all(&dir).ok();
}
