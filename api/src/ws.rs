//! GraphQL over WebSocket on `GET /graphql` with `Upgrade: websocket`: the `graphql-transport-ws`
//! protocol (the one the `graphql-ws` client speaks), driven here on top of `actix-ws`.
//!
//! We drive the protocol ourselves rather than use async-graphql's WebSocket server, which closes
//! with the wrong codes (1002, 1011), has no initialisation timeout, buffers inbound messages
//! without bound and never notices that the token behind a socket expired. Here:
//! - the upgrade's `Origin` must be the service's own or in `ALLOWED_ORIGINS` (403 otherwise);
//!   a request without `Origin` comes from a non-browser client and is allowed;
//! - `connection_init` must carry `{"authorization": "Bearer <access token or API token>"}`
//!   within `WS_INIT_TIMEOUT_SECONDS` (4408), once (4429); bad credentials close with 4403;
//! - `subscribe` before the acknowledgement closes with 4401, a running id again with 4409, an
//!   unreadable message with 4400, a message over `WS_MAX_MESSAGE_BYTES` with 1009;
//! - the credentials are checked again every `WS_AUTH_RECHECK_SECONDS` and at the access
//!   token's expiry: expired, revoked, a disabled user or a changed role close with 4403, which
//!   `graphql-ws` clients retry with fresh connection parameters;
//! - at most `WS_MAX_SUBSCRIPTIONS_PER_CONNECTION` operations run on a socket (more get an
//!   `error` message) and a user holds at most `WS_MAX_CONNECTIONS_PER_USER` sockets on an
//!   instance (more close with 1013, try again later);
//! - every operation runs with the viewer of the socket, so subscriptions pass the same
//!   authorization as queries;
//! - a socket may send `WS_MAX_MESSAGES_PER_SECOND` messages per second after a burst of
//!   `WS_MESSAGE_BURST` (a token bucket; every inbound message counts, pings and unsolicited
//!   pongs included, but not the pongs that answer the server's heartbeat); one more closes it
//!   with 4429 "Too many messages".

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{
    HttpRequest, HttpResponse,
    guard::GuardContext,
    http::header::{self, HeaderValue},
    web,
};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, CloseCode, CloseReason, Session};
use async_graphql::{ServerError, Variables};
use futures_util::{
    StreamExt,
    future::{AbortHandle, Abortable},
    stream::{BoxStream, SelectAll},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until, timeout};
use uuid::Uuid;

use crate::{
    auth::{AuthRejection, Credential, Principal, Viewer, authenticate},
    config::RealtimeSettings,
    graphql::{AppSchema, SubscribedAt, budget::CostBudget},
    rate_limit::Subject,
    state::AppState,
};

/// The subprotocol we speak.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// A socket that sent nothing for this long, not even a pong, is dropped.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
/// How often the server pings at the WebSocket level.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long one outgoing message may wait for a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest accepted operation id.
const MAX_ID_BYTES: usize = 128;

/// Close codes of `graphql-transport-ws`, and the standard ones we use.
mod close {
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const SUBPROTOCOL_NOT_ACCEPTABLE: u16 = 4406;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    pub const TOO_MANY_INIT: u16 = 4429;
    /// The same code for a client over its message rate: `graphql-ws` treats 4429 as fatal, so
    /// a flooding client does not reconnect in a loop.
    pub const TOO_MANY_MESSAGES: u16 = 4429;
    pub const INTERNAL_SERVER_ERROR: u16 = 4500;
    /// RFC 6455: the peer is going away (here: it stopped answering).
    pub const GOING_AWAY: u16 = 1001;
    /// RFC 6455: a message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// RFC 6455: policy violation (here: a client too slow to read what it asked for).
    pub const POLICY: u16 = 1008;
    /// RFC 6455: try again later (here: the user's connection limit).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// RFC 6455: the peer broke the WebSocket protocol itself.
    pub const PROTOCOL_ERROR: u16 = 1002;
}

/// A token bucket of inbound messages: `burst` tokens at first, refilled at `per_second`, one
/// spent per message.
#[derive(Debug)]
struct MessageBudget {
    tokens: f64,
    burst: f64,
    per_second: f64,
    refilled_at: Instant,
}

impl MessageBudget {
    fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            refilled_at: now,
        }
    }

    /// Spends a token for a message that arrived at `now`; `false` when none is left.
    fn spend(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Open sockets per user on this instance, to enforce `WS_MAX_CONNECTIONS_PER_USER`.
#[derive(Default)]
pub struct Connections {
    per_user: Mutex<HashMap<Uuid, usize>>,
}

impl Connections {
    /// Takes one of the user's slots, or `None` when all are taken.
    fn acquire(self: &Arc<Self>, user_id: Uuid, max: usize) -> Option<ConnectionSlot> {
        let mut per_user = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_user.entry(user_id).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            connections: self.clone(),
            user_id,
        })
    }

    /// How many sockets the user holds now.
    pub fn count(&self, user_id: Uuid) -> usize {
        let per_user = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
        per_user.get(&user_id).copied().unwrap_or(0)
    }
}

/// A held slot, given back when the socket ends.
struct ConnectionSlot {
    connections: Arc<Connections>,
    user_id: Uuid,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_user = self
            .connections
            .per_user
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_user.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_user.remove(&self.user_id);
            }
        }
    }
}

/// Route guard: a request to upgrade to WebSocket.
pub fn is_websocket_upgrade(ctx: &GuardContext<'_>) -> bool {
    ctx.head()
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// `GET /graphql` with `Upgrade: websocket`.
pub async fn graphql_ws(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    schema: web::Data<AppSchema>,
    connections: web::Data<Connections>,
) -> actix_web::Result<HttpResponse> {
    let settings = state.settings.realtime.clone();
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok());
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| settings.allowed_origins.allows(origin, host));
        if !allowed {
            tracing::warn!(origin = ?origin, "websocket refused: origin not allowed");
            return Ok(HttpResponse::Forbidden()
                .content_type("text/plain; charset=utf-8")
                .body("this origin may not open a WebSocket; see ALLOWED_ORIGINS\n"));
        }
    }
    let speaks_protocol = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);

    let (mut response, session, messages) = actix_ws::handle(&request, body)?;
    if speaks_protocol {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(PROTOCOL),
        );
    }
    let messages = messages
        .max_frame_size(settings.max_message_bytes)
        .aggregate_continuations()
        .max_continuation_size(settings.max_message_bytes);
    let connection = Connection {
        state: state.get_ref().clone(),
        schema: schema.get_ref().clone(),
        connections: connections.into_inner(),
        settings,
        session,
        phase: Phase::AwaitingInit,
        operations: HashMap::new(),
        outputs: SelectAll::new(),
        next_key: 0,
    };
    actix_web::rt::spawn(connection.run(messages, speaks_protocol));
    Ok(response)
}

/// A message from the client.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        payload: Option<Value>,
    },
    Ping {
        #[expect(
            dead_code,
            reason = "the protocol allows a payload; pong does not echo it"
        )]
        payload: Option<Value>,
    },
    Pong {
        #[expect(dead_code, reason = "the protocol allows a payload; nothing reads it")]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: SubscribePayload,
    },
    Complete {
        id: String,
    },
}

/// The GraphQL request of a `subscribe` message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribePayload {
    query: String,
    operation_name: Option<String>,
    variables: Option<Value>,
    #[expect(
        dead_code,
        reason = "accepted per the protocol; no extension is implemented"
    )]
    extensions: Option<Value>,
}

/// Where the handshake stands.
enum Phase {
    AwaitingInit,
    Ready(Authenticated),
}

/// The credentials a socket was acknowledged with.
struct Authenticated {
    /// The `authorization` value, kept to check it again; never logged.
    authorization: String,
    principal: Principal,
    /// When the access token expires (API tokens are checked at each re-check instead).
    expires_at: Option<Instant>,
    next_check: Instant,
    _slot: ConnectionSlot,
}

/// A `next` message, serialised without building a JSON value first.
#[derive(Serialize)]
struct NextMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    payload: &'a async_graphql::Response,
}

/// What an operation's stream produced.
enum Output {
    Next(async_graphql::Response),
    /// The request failed before execution (parse, validation): an `error` message, no complete.
    Error(Vec<ServerError>),
    Done,
}

/// A running operation: its unique key (ids may be reused after completion) and its stop switch.
struct Operation {
    key: u64,
    abort: AbortHandle,
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Close(u16, String),
    /// The client is gone.
    Stop,
}

struct Connection {
    state: AppState,
    schema: AppSchema,
    connections: Arc<Connections>,
    settings: RealtimeSettings,
    session: Session,
    phase: Phase,
    operations: HashMap<String, Operation>,
    outputs: SelectAll<BoxStream<'static, (u64, String, Output)>>,
    next_key: u64,
}

/// Whether an inbound message spends the socket's message budget. A pong that answers one of
/// the server's heartbeat pings is free (the client did not choose to send it); an unsolicited
/// pong counts like any other frame, so pongs cannot flood the socket for free. A close ends the
/// loop anyway.
fn counts_against_budget(
    message: &Option<Result<AggregatedMessage, actix_ws::ProtocolError>>,
    unanswered_pings: &mut u32,
) -> bool {
    match message {
        Some(Ok(AggregatedMessage::Close(_))) | None => false,
        Some(Ok(AggregatedMessage::Pong(_))) if *unanswered_pings > 0 => {
            *unanswered_pings -= 1;
            false
        }
        _ => true,
    }
}

impl Connection {
    async fn run(mut self, mut messages: AggregatedMessageStream, speaks_protocol: bool) {
        if !speaks_protocol {
            tracing::warn!("websocket refused: the client does not speak {PROTOCOL}");
            self.close(
                close::SUBPROTOCOL_NOT_ACCEPTABLE,
                "Subprotocol not acceptable".into(),
            )
            .await;
            return;
        }
        let init_deadline = Instant::now() + self.settings.init_timeout;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Pings the server sent whose pong has not come yet (its first goes out at once).
        let mut unanswered_pings: u32 = 0;
        let mut budget = MessageBudget::new(
            self.settings.max_messages_per_second,
            self.settings.message_burst,
            last_heard,
        );

        let flow = loop {
            let deadline = match &self.phase {
                Phase::AwaitingInit => init_deadline,
                Phase::Ready(auth) => auth.next_check,
            };
            let flow = tokio::select! {
                message = messages.recv() => {
                    last_heard = Instant::now();
                    if counts_against_budget(&message, &mut unanswered_pings)
                        && !budget.spend(last_heard)
                    {
                        tracing::warn!(
                            limit.per_second = self.settings.max_messages_per_second,
                            limit.burst = self.settings.message_burst,
                            "websocket closed: too many messages"
                        );
                        Flow::Close(close::TOO_MANY_MESSAGES, "Too many messages".into())
                    } else {
                        // The handlers are boxed: their futures (authentication, a subscription's
                        // start) are large and short-lived, and inline they would make every
                        // idle socket's task as big as the largest of them.
                        Box::pin(self.on_message(message)).await
                    }
                }
                Some((key, id, output)) = self.outputs.next(), if !self.outputs.is_empty() => {
                    Box::pin(self.on_output(key, id, output)).await
                }
                _ = sleep_until(deadline) => Box::pin(self.on_deadline()).await,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > IDLE_LIMIT {
                        Flow::Close(close::GOING_AWAY, "No activity".into())
                    } else if self.session.ping(b"").await.is_err() {
                        Flow::Stop
                    } else {
                        unanswered_pings = unanswered_pings.saturating_add(1);
                        Flow::Continue
                    }
                }
            };
            match flow {
                Flow::Continue => {}
                other => break other,
            }
        };
        for (_, operation) in self.operations.drain() {
            operation.abort.abort();
        }
        if let Flow::Close(code, reason) = flow {
            self.close(code, reason).await;
        }
    }

    async fn close(self, code: u16, reason: String) {
        let reason = CloseReason {
            code: CloseCode::Other(code),
            description: Some(reason),
        };
        // The client may already be gone.
        let _ = self.session.close(Some(reason)).await;
    }

    async fn send(&mut self, message: Value) -> Flow {
        self.send_text(message.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Flow {
        match timeout(SEND_TIMEOUT, self.session.text(text)).await {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(_)) => Flow::Stop,
            Err(_) => {
                tracing::warn!("websocket closed: the client does not read its messages");
                Flow::Close(close::POLICY, "Too slow to read".into())
            }
        }
    }

    async fn on_message(
        &mut self,
        message: Option<Result<AggregatedMessage, actix_ws::ProtocolError>>,
    ) -> Flow {
        let text = match message {
            None => return Flow::Stop,
            Some(Ok(AggregatedMessage::Text(text))) => text,
            Some(Ok(AggregatedMessage::Ping(bytes))) => {
                return match self.session.pong(&bytes).await {
                    Ok(()) => Flow::Continue,
                    Err(_) => Flow::Stop,
                };
            }
            Some(Ok(AggregatedMessage::Pong(_))) => return Flow::Continue,
            Some(Ok(AggregatedMessage::Close(_))) => return Flow::Close(1000, String::new()),
            Some(Ok(AggregatedMessage::Binary(_))) => {
                return Flow::Close(
                    close::BAD_REQUEST,
                    "Binary messages are not accepted".into(),
                );
            }
            Some(Err(actix_ws::ProtocolError::Overflow)) => {
                tracing::warn!(
                    limit.bytes = self.settings.max_message_bytes,
                    "websocket closed: message too big"
                );
                return Flow::Close(close::TOO_BIG, "Message too big".into());
            }
            Some(Err(error)) => {
                // The continuation aggregator reports its size limit as an I/O error.
                tracing::warn!(error = %error, "websocket closed: protocol error");
                let too_big = error.to_string().contains("maximum continuation size");
                return if too_big {
                    Flow::Close(close::TOO_BIG, "Message too big".into())
                } else {
                    Flow::Close(close::PROTOCOL_ERROR, "Protocol error".into())
                };
            }
        };
        let message: ClientMessage = match serde_json::from_str(&text) {
            Ok(message) => message,
            Err(_) => {
                return Flow::Close(close::BAD_REQUEST, "Invalid message received".into());
            }
        };
        match message {
            ClientMessage::ConnectionInit { payload } => self.on_init(payload).await,
            ClientMessage::Ping { .. } => self.send(json!({ "type": "pong" })).await,
            ClientMessage::Pong { .. } => Flow::Continue,
            ClientMessage::Subscribe { id, payload } => self.on_subscribe(id, payload).await,
            ClientMessage::Complete { id } => {
                if let Some(operation) = self.operations.remove(&id) {
                    operation.abort.abort();
                }
                Flow::Continue
            }
        }
    }

    async fn on_init(&mut self, payload: Option<Value>) -> Flow {
        if matches!(self.phase, Phase::Ready(_)) {
            return Flow::Close(
                close::TOO_MANY_INIT,
                "Too many initialisation requests".into(),
            );
        }
        let authorization = payload.as_ref().and_then(|payload| {
            payload.as_object()?.iter().find_map(|(key, value)| {
                key.eq_ignore_ascii_case("authorization")
                    .then(|| value.as_str())
                    .flatten()
            })
        });
        let Some(authorization) = authorization.map(str::to_owned) else {
            tracing::warn!("websocket refused: connection_init without authorization");
            return Flow::Close(close::FORBIDDEN, "Forbidden".into());
        };
        let principal = match self.check(&authorization).await {
            Ok(principal) => principal,
            Err(flow) => return flow,
        };
        let Some(slot) = self
            .connections
            .acquire(principal.user_id, self.settings.max_connections_per_user)
        else {
            tracing::warn!(
                user.id = %principal.user_id,
                limit = self.settings.max_connections_per_user,
                "websocket refused: too many connections for this user"
            );
            return Flow::Close(
                close::TRY_AGAIN_LATER,
                "Too many connections for this user".into(),
            );
        };
        let expires_at = self.expiry(&authorization, &principal);
        let next_check = self.next_check(expires_at);
        self.phase = Phase::Ready(Authenticated {
            authorization,
            principal,
            expires_at,
            next_check,
            _slot: slot,
        });
        self.send(json!({ "type": "connection_ack" })).await
    }

    /// Authenticates `authorization`; refusals become the flow that closes the socket.
    async fn check(&self, authorization: &str) -> Result<Principal, Flow> {
        match authenticate(&self.state, Some(authorization)).await {
            Ok(Viewer::User(principal)) => Ok(principal),
            Ok(Viewer::Anonymous) => Err(Flow::Close(close::FORBIDDEN, "Forbidden".into())),
            Err(AuthRejection::Storage(error)) => {
                tracing::error!(error = ?error, "websocket: authentication failed on storage");
                Err(Flow::Close(
                    close::INTERNAL_SERVER_ERROR,
                    "Internal server error".into(),
                ))
            }
            Err(rejection) => {
                tracing::warn!(reason = %rejection, "websocket refused: credentials refused");
                Err(Flow::Close(close::FORBIDDEN, "Forbidden".into()))
            }
        }
    }

    /// When an access token stops being valid; `None` for API tokens.
    fn expiry(&self, authorization: &str, principal: &Principal) -> Option<Instant> {
        let Credential::Session { .. } = principal.credential else {
            return None;
        };
        let token = authorization.get(7..).unwrap_or_default().trim();
        let claims = self.state.signer.verify(token).ok()?;
        let left = claims.exp - chrono::Utc::now().timestamp();
        Some(Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }

    fn next_check(&self, expires_at: Option<Instant>) -> Instant {
        let recheck = Instant::now() + self.settings.auth_recheck_interval;
        expires_at.map_or(recheck, |at| at.min(recheck))
    }

    async fn on_deadline(&mut self) -> Flow {
        let (authorization, expires_at, principal) = match &self.phase {
            Phase::AwaitingInit => {
                tracing::warn!("websocket closed: no connection_init in time");
                return Flow::Close(
                    close::INIT_TIMEOUT,
                    "Connection initialisation timeout".into(),
                );
            }
            Phase::Ready(auth) => (
                auth.authorization.clone(),
                auth.expires_at,
                auth.principal.clone(),
            ),
        };
        if expires_at.is_some_and(|at| at <= Instant::now()) {
            tracing::info!(user.id = %principal.user_id, "websocket closed: access token expired");
            return Flow::Close(close::FORBIDDEN, "Forbidden: token expired".into());
        }
        let flow = match authenticate(&self.state, Some(&authorization)).await {
            Ok(Viewer::User(now))
                if now.user_id == principal.user_id && now.role == principal.role =>
            {
                Flow::Continue
            }
            Ok(_) => {
                tracing::warn!(user.id = %principal.user_id, "websocket closed: the user's role changed");
                Flow::Close(close::FORBIDDEN, "Forbidden: role changed".into())
            }
            Err(AuthRejection::Storage(error)) => {
                // Keep the socket: the access token's own expiry still applies, and the next
                // check may reach the database.
                tracing::warn!(error = ?error, "websocket: re-checking credentials failed on storage");
                Flow::Continue
            }
            Err(rejection) => {
                tracing::warn!(user.id = %principal.user_id, reason = %rejection, "websocket closed: credentials no longer valid");
                Flow::Close(close::FORBIDDEN, "Forbidden".into())
            }
        };
        let next = self.next_check(expires_at);
        if let Phase::Ready(auth) = &mut self.phase {
            auth.next_check = next;
        }
        flow
    }

    async fn on_subscribe(&mut self, id: String, payload: SubscribePayload) -> Flow {
        let Phase::Ready(auth) = &self.phase else {
            tracing::warn!("websocket closed: subscribe before connection_ack");
            return Flow::Close(close::UNAUTHORIZED, "Unauthorized".into());
        };
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Flow::Close(close::BAD_REQUEST, "Invalid message received".into());
        }
        if self.operations.contains_key(&id) {
            return Flow::Close(
                close::SUBSCRIBER_EXISTS,
                format!("Subscriber for {} already exists", truncate(&id, 64)),
            );
        }
        if self.operations.len() >= self.settings.max_subscriptions_per_connection {
            tracing::warn!(
                user.id = %auth.principal.user_id,
                limit = self.settings.max_subscriptions_per_connection,
                "websocket: subscription refused, too many on this connection"
            );
            let message = format!(
                "too many operations on this connection (at most {})",
                self.settings.max_subscriptions_per_connection
            );
            return self.send_error(&id, &message, "RATE_LIMITED").await;
        }
        let document = match crate::graphql::limits::check_query(&payload.query) {
            Ok(document) => document,
            Err(exceeded) => {
                tracing::warn!(
                    code = exceeded.code,
                    "subscription refused by a document limit"
                );
                return self.send_error(&id, &exceeded.message, exceeded.code).await;
            }
        };
        let variables = match payload.variables {
            None | Some(Value::Null) => Variables::default(),
            Some(value @ Value::Object(_)) => Variables::from_json(value),
            Some(_) => {
                return self
                    .send_error(&id, "`variables` must be a JSON object", "BAD_REQUEST")
                    .await;
            }
        };
        let principal = auth.principal.clone();
        let budget = CostBudget::new(Subject::User(principal.user_id));
        let priced = Box::pin(self.schema.price(
            &payload.query,
            document.as_ref(),
            payload.operation_name.as_deref(),
            &variables,
            &budget,
        ))
        .await;
        if let Err(refusal) = priced {
            return self
                .send(json!({ "id": id, "type": "error", "payload": refusal.errors }))
                .await;
        }
        let mut request = async_graphql::Request::new(payload.query)
            .variables(variables)
            .data(Viewer::User(principal))
            .data(SubscribedAt(self.state.bus.high_water()));
        if let Some(name) = payload.operation_name {
            request = request.operation_name(name);
        }
        if let Some(document) = document {
            request.set_parsed_query(document);
        }

        let key = self.next_key;
        self.next_key += 1;
        let outputs = self
            .schema
            .execute_stream(request)
            .enumerate()
            .map(|(index, response)| {
                if index == 0 && is_request_error(&response) {
                    Output::Error(response.errors)
                } else {
                    Output::Next(response)
                }
            })
            .chain(futures_util::stream::once(async { Output::Done }));
        let (abort, registration) = AbortHandle::new_pair();
        let tagged_id = id.clone();
        self.outputs.push(
            Abortable::new(outputs, registration)
                .map(move |output| (key, tagged_id.clone(), output))
                .boxed(),
        );
        self.operations.insert(id, Operation { key, abort });
        Flow::Continue
    }

    async fn on_output(&mut self, key: u64, id: String, output: Output) -> Flow {
        // Output of an operation the client completed (or of an earlier one with the same id).
        if self.operations.get(&id).is_none_or(|op| op.key != key) {
            return Flow::Continue;
        }
        match output {
            Output::Next(response) => {
                // Written straight to text: no intermediate JSON tree per subscriber.
                let message = NextMessage {
                    id: &id,
                    kind: "next",
                    payload: &response,
                };
                match serde_json::to_string(&message) {
                    Ok(text) => self.send_text(text).await,
                    Err(error) => {
                        tracing::error!(error = %error, "websocket: cannot encode a response");
                        Flow::Close(close::INTERNAL_SERVER_ERROR, "Internal server error".into())
                    }
                }
            }
            Output::Error(errors) => {
                self.operations.remove(&id);
                self.send(json!({ "id": id, "type": "error", "payload": errors }))
                    .await
            }
            Output::Done => {
                self.operations.remove(&id);
                self.send(json!({ "id": id, "type": "complete" })).await
            }
        }
    }

    async fn send_error(&mut self, id: &str, message: &str, code: &str) -> Flow {
        self.send(json!({
            "id": id,
            "type": "error",
            "payload": [{ "message": message, "extensions": { "code": code } }],
        }))
        .await
    }
}

/// An error before execution (parse, validation, limits): no data and no path.
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_budget_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut budget = MessageBudget::new(2, 3, start);
        assert!((0..3).all(|_| budget.spend(start)), "the burst");
        assert!(!budget.spend(start), "over the burst");
        // Half a second refills one token at 2 per second, and only one.
        let later = start + Duration::from_millis(500);
        assert!(budget.spend(later));
        assert!(!budget.spend(later));
        // A long pause refills up to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        assert!((0..3).all(|_| budget.spend(much_later)));
        assert!(!budget.spend(much_later));
    }
}
