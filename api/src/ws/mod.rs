//! GraphQL over WebSocket on `GET /graphql` with `Upgrade: websocket`: the `graphql-transport-ws`
//! protocol (the one the `graphql-ws` client speaks).
//!
//! actix-http hands every request that asks to upgrade to [`upgrade_service`] together with the
//! connection itself. The service answers the handshake and then runs the socket on the bare
//! TCP stream ([`socket`]), outside the HTTP dispatcher: a dispatcher keeps two 8 KiB buffers
//! per connection for as long as it lives, which would be most of what an idle subscriber costs.
//!
//! - **Handshake** ([`upgrade_service`]): only `GET /graphql` upgrades (404 elsewhere, 405 for
//!   other methods); the `Origin` must be the service's own or in `ALLOWED_ORIGINS` (403); a
//!   request without `Origin` comes from a non-browser client and is allowed; past
//!   `WS_MAX_CONNECTIONS` open sockets the upgrade gets 503; a malformed handshake gets 400
//!   (426 for an unsupported WebSocket version).
//! - **Protocol** ([`protocol`]): authentication in `connection_init`, close codes, caps and
//!   rate limits, credentials checked again while the socket lives.
//! - **Fan-out** ([`fanout`]): sockets that ask for the same subscription as the same user and
//!   role share one execution; each event is resolved and serialised once per distinct
//!   subscription. Queries and mutations sent over a socket always run on their own.

mod fanout;
mod protocol;
mod socket;

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use actix_codec::Framed;
use actix_http::{
    HttpMessage, Request, Response, StatusCode,
    body::BodySize,
    h1,
    header::{self, HeaderValue},
    ws,
};
use actix_service::{ServiceFactory, fn_service};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use fanout::Hub;
use protocol::Connections;
pub use protocol::PROTOCOL;

use crate::{
    graphql::AppSchema,
    http::{ClientAddress, client_address_of, method_label},
    state::AppState,
};

/// The one path that accepts WebSocket upgrades.
const PATH: &str = "/graphql";

/// What every socket of the instance shares.
#[derive(Clone)]
pub struct Realtime {
    shared: Arc<Shared>,
}

struct Shared {
    state: AppState,
    schema: AppSchema,
    connections: Arc<Connections>,
    hub: Arc<Hub>,
    /// Sockets open on this instance. Once upgraded, a socket has left the HTTP server and its
    /// connection limits, so `WS_MAX_CONNECTIONS` is enforced here.
    open_sockets: Arc<AtomicUsize>,
}

/// One of the instance's `WS_MAX_CONNECTIONS` sockets, given back when the socket ends.
pub(crate) struct SocketSlot(Arc<AtomicUsize>);

impl SocketSlot {
    fn acquire(open: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
            (count < max).then_some(count + 1)
        })
        .ok()
        .map(|_| Self(open.clone()))
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Realtime {
    pub fn new(state: AppState, schema: AppSchema) -> Self {
        Self {
            shared: Arc::new(Shared {
                state,
                schema,
                connections: Arc::default(),
                hub: Arc::default(),
                open_sockets: Arc::default(),
            }),
        }
    }
}

/// The service actix-http calls with each request that asks to upgrade (an `Upgrade: websocket`
/// header, or the `CONNECT` method) and the connection it came on.
pub fn upgrade_service(
    realtime: Realtime,
) -> impl ServiceFactory<
    (Request, Framed<TcpStream, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_http::Error,
    InitError = (),
> + Clone {
    fn_service(
        move |(request, framed): (Request, Framed<TcpStream, h1::Codec>)| {
            let realtime = realtime.clone();
            async move {
                // A failure here is the client leaving during the handshake: nothing to answer.
                if let Err(error) = upgrade(realtime, request, framed).await {
                    tracing::debug!(error = %error, "websocket handshake: the connection failed");
                }
                Ok(())
            }
        },
    )
}

async fn upgrade(
    realtime: Realtime,
    request: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> io::Result<()> {
    let started = Instant::now();
    let state = &realtime.shared.state;
    let route = if request.path() == PATH {
        PATH
    } else {
        "unmatched"
    };
    let observe = |status: StatusCode| {
        state.metrics.observe_http(
            route,
            &method_label(request.method()),
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
    };
    if let Some((response, text)) = refusal(state, &request) {
        observe(response.status());
        return refuse(framed, response, text).await;
    }
    let max_sockets = state.settings.realtime.max_connections;
    let Some(slot) = SocketSlot::acquire(&realtime.shared.open_sockets, max_sockets) else {
        tracing::warn!(
            limit = max_sockets,
            "websocket refused: this instance holds WS_MAX_CONNECTIONS sockets"
        );
        let mut response = Response::with_body(StatusCode::SERVICE_UNAVAILABLE, ());
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        observe(response.status());
        let text = "this instance holds as many WebSocket connections as it may; try again \
                    shortly (another instance may have room)\n";
        return refuse(framed, response, text.to_owned()).await;
    };
    let mut response = match ws::handshake(request.head()) {
        Ok(response) => response,
        Err(error) => {
            let response = Response::from(&error);
            observe(response.status());
            let text = format!("not a valid WebSocket handshake: {error}\n");
            return refuse(framed, response.drop_body(), text).await;
        }
    };
    let speaks_protocol = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if speaks_protocol {
        response.insert_header((
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(PROTOCOL),
        ));
    }
    let response = response.finish().drop_body();
    observe(response.status());
    let client = client_address_of(
        request.headers(),
        request.peer_addr(),
        state.settings.client_ip_header.as_ref(),
    );
    framed.send((response, BodySize::None).into()).await?;
    drop(request);
    let parts = framed.into_parts();
    let max_message_bytes = state.settings.realtime.max_message_bytes;
    let socket = socket::Socket::new(parts.io, parts.read_buf, max_message_bytes);
    // The socket runs on its own, so that nothing of the HTTP connection outlives the upgrade.
    actix_web::rt::spawn(protocol::Connection::run(
        realtime,
        socket,
        ClientAddress(client),
        slot,
        speaks_protocol,
    ));
    Ok(())
}

/// Why an upgrade request is refused before the handshake is even looked at, if it is.
fn refusal(state: &AppState, request: &Request) -> Option<(Response<()>, String)> {
    let plain = |status: StatusCode, text: &str| {
        let mut response = Response::with_body(status, ());
        if status == StatusCode::METHOD_NOT_ALLOWED {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        Some((response, text.to_owned()))
    };
    if request.path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "only /graphql accepts WebSocket upgrades\n",
        );
    }
    if request.method() != actix_http::Method::GET {
        return plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "a WebSocket upgrade is a GET request; queries and mutations are POSTed without Upgrade\n",
        );
    }
    let origin = request.headers().get(header::ORIGIN)?;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let allowed = origin
        .to_str()
        .is_ok_and(|origin| state.settings.realtime.allowed_origins.allows(origin, host));
    if allowed {
        return None;
    }
    tracing::warn!(origin = ?origin, "websocket refused: origin not allowed");
    plain(
        StatusCode::FORBIDDEN,
        "this origin may not open a WebSocket; see ALLOWED_ORIGINS\n",
    )
}

/// Answers with `response` and a plain-text body, then closes the connection.
async fn refuse(
    mut framed: Framed<TcpStream, h1::Codec>,
    mut response: Response<()>,
    text: String,
) -> io::Result<()> {
    response
        .head_mut()
        .set_connection_type(actix_http::ConnectionType::Close);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let body = Bytes::from(text);
    let size = BodySize::Sized(body.len() as u64);
    framed.send((response, size).into()).await?;
    framed.send(h1::Message::Chunk(Some(body))).await?;
    framed.send(h1::Message::Chunk(None)).await?;
    let mut io = framed.into_parts().io;
    io.shutdown().await?;
    socket::linger(&mut io).await;
    Ok(())
}
