//! The `graphql-transport-ws` protocol on one socket.
//!
//! We drive the protocol ourselves rather than use async-graphql's WebSocket server, which closes
//! with the wrong codes (1002, 1011), has no initialisation timeout, buffers inbound messages
//! without bound and never notices that the token behind a socket expired. Here:
//! - `connection_init` must carry `{"authorization": "Bearer <access token or API token>"}`
//!   within `WS_INIT_TIMEOUT_SECONDS` (4408), once (4429); bad credentials close with 4403;
//! - `subscribe` before the acknowledgement closes with 4401, a running id again with 4409, an
//!   unreadable message with 4400, a message over `WS_MAX_MESSAGE_BYTES` with 1009, a broken
//!   WebSocket frame (or text that is not UTF-8) with 1002;
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
//!   with 4429 "Too many messages";
//! - a client that leaves more than [`fanout::INBOX_LIMIT`] messages unsent, or does not take
//!   one within 10 seconds, is closed with 1008.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicI64},
    time::Duration,
};

use actix_http::ws::Message;
use async_graphql::Variables;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until, timeout};
use uuid::Uuid;

use super::{
    Realtime, SocketSlot,
    fanout::{Delivery, GroupKey, Inbox, Membership, Outgoing, Start},
    socket::{Inbound, ReadFailure, Socket},
};
use crate::{
    auth::{AuthRejection, Credential, Principal, Viewer, authenticate},
    config::RealtimeSettings,
    graphql::{EventProgress, SubscribedAt, budget::CostBudget},
    http::{ClientAddress, add_missing_codes},
    rate_limit::Subject,
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

/// A running operation: its unique key (ids may be reused after completion) and its share of
/// the subscription that serves it (leaving it is dropping it).
struct Operation {
    key: u64,
    _membership: Membership,
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Close(u16, String),
    /// The client is gone.
    Stop,
}

pub(super) struct Connection {
    realtime: Realtime,
    socket: Socket,
    /// Where the socket comes from, for the per-address budgets of what runs on it (`logIn`).
    client: ClientAddress,
    /// The socket's place under `WS_MAX_CONNECTIONS`, held until the socket is gone.
    _slot: SocketSlot,
    inbox: Arc<Inbox>,
    phase: Phase,
    operations: HashMap<String, Operation>,
    next_key: u64,
}

/// Whether an inbound message spends the socket's message budget. A pong that answers one of
/// the server's heartbeat pings is free (the client did not choose to send it); an unsolicited
/// pong counts like any other frame, so pongs cannot flood the socket for free. A close ends the
/// loop anyway.
fn counts_against_budget(
    message: &Result<Inbound, ReadFailure>,
    unanswered_pings: &mut u32,
) -> bool {
    match message {
        Ok(Inbound::Close) | Err(ReadFailure::Gone) => false,
        Ok(Inbound::Pong) if *unanswered_pings > 0 => {
            *unanswered_pings -= 1;
            false
        }
        _ => true,
    }
}

impl Connection {
    /// Serves the socket until it closes.
    pub(super) async fn run(
        realtime: Realtime,
        socket: Socket,
        client: ClientAddress,
        slot: SocketSlot,
        speaks_protocol: bool,
    ) {
        let mut connection = Self {
            realtime,
            socket,
            client,
            _slot: slot,
            inbox: Arc::default(),
            phase: Phase::AwaitingInit,
            operations: HashMap::new(),
            next_key: 0,
        };
        if !speaks_protocol {
            tracing::warn!("websocket refused: the client does not speak {PROTOCOL}");
            connection
                .socket
                .close(
                    close::SUBPROTOCOL_NOT_ACCEPTABLE,
                    "Subprotocol not acceptable".into(),
                )
                .await;
            return;
        }
        let flow = connection.serve().await;
        // Leave every subscription before the goodbye, which may take a while.
        connection.operations.clear();
        if let Flow::Close(code, reason) = flow {
            connection.socket.close(code, reason).await;
        }
    }

    fn settings(&self) -> &RealtimeSettings {
        &self.realtime.shared.state.settings.realtime
    }

    async fn serve(&mut self) -> Flow {
        let settings = self.settings();
        let init_deadline = Instant::now() + settings.init_timeout;
        let mut budget = MessageBudget::new(
            settings.max_messages_per_second,
            settings.message_burst,
            Instant::now(),
        );
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Pings the server sent whose pong has not come yet (its first goes out at once).
        let mut unanswered_pings: u32 = 0;

        loop {
            let deadline = match &self.phase {
                Phase::AwaitingInit => init_deadline,
                Phase::Ready(auth) => auth.next_check,
            };
            let flow = tokio::select! {
                message = self.socket.recv() => {
                    last_heard = Instant::now();
                    if counts_against_budget(&message, &mut unanswered_pings)
                        && !budget.spend(last_heard)
                    {
                        let settings = self.settings();
                        tracing::warn!(
                            limit.per_second = settings.max_messages_per_second,
                            limit.burst = settings.message_burst,
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
                () = self.inbox.ready() => Box::pin(self.on_deliveries()).await,
                () = sleep_until(deadline) => Box::pin(self.on_deadline()).await,
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > IDLE_LIMIT {
                        Flow::Close(close::GOING_AWAY, "No activity".into())
                    } else {
                        let ping = Message::Ping(bytes::Bytes::new());
                        match Box::pin(timeout(SEND_TIMEOUT, self.socket.send(ping))).await {
                            Ok(Ok(())) => {
                                unanswered_pings = unanswered_pings.saturating_add(1);
                                Flow::Continue
                            }
                            Ok(Err(_)) => Flow::Stop,
                            Err(_) => too_slow(),
                        }
                    }
                }
            };
            match flow {
                Flow::Continue => {}
                other => return other,
            }
        }
    }

    async fn send(&mut self, message: Value) -> Flow {
        self.send_text(message.to_string()).await
    }

    async fn send_text(&mut self, text: String) -> Flow {
        match timeout(SEND_TIMEOUT, self.socket.send_text(text)).await {
            Ok(Ok(())) => Flow::Continue,
            Ok(Err(_)) => Flow::Stop,
            Err(_) => too_slow(),
        }
    }

    async fn on_message(&mut self, message: Result<Inbound, ReadFailure>) -> Flow {
        let text = match message {
            Err(ReadFailure::Gone) => return Flow::Stop,
            Ok(Inbound::Text(text)) => text,
            Ok(Inbound::Ping(payload)) => {
                return match timeout(SEND_TIMEOUT, self.socket.send(Message::Pong(payload))).await {
                    Ok(Ok(())) => Flow::Continue,
                    Ok(Err(_)) => Flow::Stop,
                    Err(_) => too_slow(),
                };
            }
            Ok(Inbound::Pong) => return Flow::Continue,
            Ok(Inbound::Close) => return Flow::Close(1000, String::new()),
            Ok(Inbound::Binary) => {
                return Flow::Close(
                    close::BAD_REQUEST,
                    "Binary messages are not accepted".into(),
                );
            }
            Err(ReadFailure::TooBig) => {
                tracing::warn!(
                    limit.bytes = self.settings().max_message_bytes,
                    "websocket closed: message too big"
                );
                return Flow::Close(close::TOO_BIG, "Message too big".into());
            }
            Err(ReadFailure::Protocol(error)) => {
                tracing::warn!(error = %error, "websocket closed: protocol error");
                return Flow::Close(close::PROTOCOL_ERROR, "Protocol error".into());
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
                // Dropping the operation leaves its subscription.
                self.operations.remove(&id);
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
            .realtime
            .shared
            .connections
            .acquire(principal.user_id, self.settings().max_connections_per_user)
        else {
            tracing::warn!(
                user.id = %principal.user_id,
                limit = self.settings().max_connections_per_user,
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
        match authenticate(&self.realtime.shared.state, Some(authorization)).await {
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
        let claims = self.realtime.shared.state.signer.verify(token).ok()?;
        let left = claims.exp - chrono::Utc::now().timestamp();
        Some(Instant::now() + Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }

    fn next_check(&self, expires_at: Option<Instant>) -> Instant {
        let recheck = Instant::now() + self.settings().auth_recheck_interval;
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
        let flow = match authenticate(&self.realtime.shared.state, Some(&authorization)).await {
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
        if self.operations.len() >= self.settings().max_subscriptions_per_connection {
            tracing::warn!(
                user.id = %auth.principal.user_id,
                limit = self.settings().max_subscriptions_per_connection,
                "websocket: subscription refused, too many on this connection"
            );
            let message = format!(
                "too many operations on this connection (at most {})",
                self.settings().max_subscriptions_per_connection
            );
            return self.send_error(&id, &message, "RATE_LIMITED").await;
        }
        let checked = match self.realtime.shared.schema.check_query(&payload.query) {
            Ok(checked) => checked,
            Err(exceeded) => {
                tracing::warn!(
                    code = exceeded.code,
                    "subscription refused by a document limit"
                );
                return self.send_error(&id, &exceeded.message, exceeded.code).await;
            }
        };
        let variables_json = payload.variables.filter(|v| !v.is_null());
        let variables = match &variables_json {
            None => Variables::default(),
            Some(value @ Value::Object(_)) => Variables::from_json(value.clone()),
            Some(_) => {
                return self
                    .send_error(&id, "`variables` must be a JSON object", "BAD_REQUEST")
                    .await;
            }
        };
        let principal = auth.principal.clone();
        let budget = CostBudget::new(Subject::User(principal.user_id));
        let priced = Box::pin(self.realtime.shared.schema.price(
            &payload.query,
            &checked,
            payload.operation_name.as_deref(),
            &variables,
            &budget,
        ))
        .await;
        let document = checked.document;
        let parsed = document.is_some();
        if let Err(mut refusal) = priced {
            add_missing_codes(&mut refusal, parsed);
            return self
                .send(json!({ "id": id, "type": "error", "payload": refusal.errors }))
                .await;
        }
        let shared = &self.realtime.shared;
        let group = GroupKey::of(
            &principal,
            &payload.query,
            document.as_deref(),
            payload.operation_name.as_deref(),
            variables_json.as_ref(),
        );
        let key = self.next_key;
        self.next_key += 1;
        let schema = shared.schema.clone();
        let client = self.client;
        let bus = &shared.state.bus;
        let membership = shared.hub.join(
            group,
            &self.inbox,
            key,
            || bus.high_water(),
            move |mark| {
                let progress = Arc::new(AtomicI64::new(i64::MAX));
                let mut request = async_graphql::Request::new(payload.query)
                    .variables(variables)
                    .data(Viewer::User(principal))
                    .data(client)
                    .data(SubscribedAt(mark))
                    .data(EventProgress(progress.clone()));
                if let Some(name) = payload.operation_name {
                    request = request.operation_name(name);
                }
                if let Some(document) = document {
                    request.set_parsed_query(Arc::unwrap_or_clone(document));
                }
                Start {
                    responses: schema
                        .execute_stream(request)
                        .map(move |mut response| {
                            add_missing_codes(&mut response, parsed);
                            response
                        })
                        .boxed(),
                    progress,
                }
            },
        );
        self.operations.insert(
            id,
            Operation {
                key,
                _membership: membership,
            },
        );
        Flow::Continue
    }

    /// Sends what the socket's subscriptions delivered.
    async fn on_deliveries(&mut self) -> Flow {
        if self.inbox.overflowed() {
            return too_slow();
        }
        for delivery in self.inbox.take() {
            match self.on_delivery(delivery).await {
                Flow::Continue => {}
                other => return other,
            }
        }
        Flow::Continue
    }

    async fn on_delivery(&mut self, delivery: Delivery) -> Flow {
        // A delivery for an operation the client completed (or an earlier one with its id).
        let Some(id) = self
            .operations
            .iter()
            .find_map(|(id, op)| (op.key == delivery.operation).then(|| id.clone()))
        else {
            return Flow::Continue;
        };
        // The id as a JSON string; the payload is already JSON, shared by every subscriber.
        let quoted = Value::String(id.clone()).to_string();
        let text = match delivery.message {
            Outgoing::Next(payload) => {
                format!(r#"{{"id":{quoted},"type":"next","payload":{payload}}}"#)
            }
            Outgoing::Error(payload) => {
                self.operations.remove(&id);
                format!(r#"{{"id":{quoted},"type":"error","payload":{payload}}}"#)
            }
            Outgoing::Complete => {
                self.operations.remove(&id);
                format!(r#"{{"id":{quoted},"type":"complete"}}"#)
            }
        };
        self.send_text(text).await
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

/// The flow for a client that does not read what it asked for.
fn too_slow() -> Flow {
    tracing::warn!("websocket closed: the client does not read its messages");
    Flow::Close(close::POLICY, "Too slow to read".into())
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
