//! HTTP transport: GraphQL over HTTP (`POST`/`GET /graphql`), health checks, metrics, GraphiQL.
//!
//! The GraphQL handler is ours rather than async-graphql's stock one, which answers 200 whatever
//! happens, runs mutations over GET and parses any POST body as JSON. Here:
//! - the response type is negotiated from `Accept` (`application/graphql-response+json` when the
//!   client asks for it, else `application/json`; 406 when it accepts neither);
//! - a mutation over GET is 405 with `Allow: POST`;
//! - a POST body that is not `application/json` is 415, so a browser's simple request (form or
//!   `text/plain`) can never run a mutation;
//! - malformed requests are 400; with `application/graphql-response+json`, so are documents that
//!   fail to parse or validate;
//! - bad credentials are 401 with `WWW-Authenticate`;
//! - every response to a charged operation carries `RateLimit-Limit`, `RateLimit-Remaining`,
//!   `RateLimit-Reset` and `RateLimit-Policy` for the caller's query-cost budget, and an answer
//!   with a `RATE_LIMITED` error is 429 with `Retry-After`.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{
    HttpRequest, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method, StatusCode,
        header::{self, HeaderMap, HeaderName},
    },
    middleware::Next,
    web,
};
use async_graphql::{
    Variables,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::authenticate,
    db::counting_statements,
    graphql::{AppSchema, budget::CostBudget, loaders},
    rate_limit::{Decision, Subject},
    state::AppState,
};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const APPLICATION_JSON: &str = "application/json";

/// The media type of the response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResponseType {
    GraphqlResponseJson,
    Json,
}

impl ResponseType {
    fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponseJson => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

/// Picks the response type from `Accept`. Clients that name the GraphQL media type get it;
/// everybody else (no header, `*/*`, `application/json`) gets `application/json`, which legacy
/// clients expect.
fn negotiate(request: &HttpRequest) -> Option<ResponseType> {
    let Some(accept) = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(ResponseType::Json);
    };
    let mut json = false;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let refused = parts.any(|p| matches!(p.trim().split_once('='), Some(("q", q)) if q.trim().parse::<f32>().is_ok_and(|q| q == 0.0)));
        if refused {
            continue;
        }
        match media.as_str() {
            GRAPHQL_RESPONSE_JSON => return Some(ResponseType::GraphqlResponseJson),
            APPLICATION_JSON | "application/*" | "*/*" => json = true,
            _ => {}
        }
    }
    json.then_some(ResponseType::Json)
}

/// The GraphQL-over-HTTP request parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GraphqlParams {
    pub(crate) query: String,
    pub(crate) operation_name: Option<String>,
    pub(crate) variables: Option<serde_json::Value>,
    #[expect(
        dead_code,
        reason = "accepted per the specification; no extension is implemented"
    )]
    extensions: Option<serde_json::Value>,
}

/// A transport-level failure: a status and one error with a code.
fn transport_error(
    status: StatusCode,
    response_type: ResponseType,
    code: &str,
    message: &str,
) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(response_type.content_type())
        .json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] }))
}

/// `POST /graphql` and `GET /graphql`.
pub async fn graphql(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    schema: web::Data<AppSchema>,
) -> HttpResponse {
    let Some(response_type) = negotiate(&request) else {
        return HttpResponse::NotAcceptable()
            .content_type("text/plain; charset=utf-8")
            .body("accept application/graphql-response+json or application/json\n");
    };
    let bad_request = |message: &str| {
        transport_error(
            StatusCode::BAD_REQUEST,
            response_type,
            "BAD_REQUEST",
            message,
        )
    };

    let params = if request.method() == Method::GET {
        match parse_get_params(request.query_string()) {
            Ok(params) => params,
            Err(message) => return bad_request(&message),
        }
    } else {
        if !is_json_content_type(&request) {
            return transport_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                response_type,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the request body as application/json",
            );
        }
        let body = match read_body(&request, payload, state.settings.body_read_timeout).await {
            Ok(body) => body,
            Err((status, code, message)) => {
                return transport_error(status, response_type, code, message);
            }
        };
        match parse_post_body(&body) {
            Ok(params) => params,
            Err(message) => return bad_request(&message),
        }
    };

    let variables = match params.variables {
        None | Some(serde_json::Value::Null) => Variables::default(),
        Some(value @ serde_json::Value::Object(_)) => Variables::from_json(value),
        Some(_) => return bad_request("`variables` must be a JSON object"),
    };

    // Size, nesting, tokens and the document limits; a text that passed them before is not
    // scanned or parsed again.
    let checked = match schema.check_query(&params.query) {
        Ok(checked) => checked,
        Err(exceeded) => {
            tracing::warn!(code = exceeded.code, "GraphQL document refused by a limit");
            let status = if exceeded.is_too_large() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return transport_error(status, response_type, exceeded.code, &exceeded.message);
        }
    };
    let operation = checked
        .document
        .as_ref()
        .and_then(|d| inspect_operation(d, params.operation_name.as_deref()));
    if let Some((kind, _)) = &operation {
        if request.method() == Method::GET && *kind != OperationType::Query {
            return HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "POST"))
                .content_type(response_type.content_type())
                .json(json!({ "errors": [{
                    "message": "only queries may be sent with GET; use POST",
                    "extensions": { "code": "METHOD_NOT_ALLOWED" } }] }));
        }
        if *kind == OperationType::Subscription {
            return bad_request("subscriptions are served over WebSocket (graphql-transport-ws)");
        }
    }

    // Two credentials are ambiguous (a proxy and a client may each have added one): neither
    // is picked silently.
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .nth(1)
        .is_some()
    {
        return bad_request("send at most one Authorization header");
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let viewer = match authenticate(&state, authorization).await {
        Ok(viewer) => viewer,
        Err(crate::auth::AuthRejection::Storage(error)) => {
            tracing::error!(error = ?error, "authentication failed on storage");
            return transport_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                response_type,
                "INTERNAL_SERVER_ERROR",
                "internal server error",
            );
        }
        Err(rejection) => {
            tracing::warn!(reason = %rejection, "credentials refused");
            return HttpResponse::Unauthorized()
                .insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer realm="graphql", error="invalid_token""#,
                ))
                .content_type(response_type.content_type())
                .json(json!({ "errors": [{
                    "message": "the presented credentials are invalid, expired or revoked",
                    "extensions": { "code": "UNAUTHENTICATED" } }] }));
        }
    };

    let client = client_address(&request, state.settings.client_ip_header.as_ref());
    let budget = CostBudget::new(match viewer.principal() {
        Some(principal) => Subject::User(principal.user_id),
        None => Subject::Address(client),
    });
    let statements = Arc::new(AtomicU64::new(0));
    let parsed = checked.document.is_some();
    let priced = schema
        .price(
            &params.query,
            &checked,
            params.operation_name.as_deref(),
            &variables,
            &budget,
        )
        .await;
    let mut response = match priced {
        Err(refusal) => refusal,
        Ok(()) => {
            let cache_rows = matches!(&operation, Some((OperationType::Query, _)));
            let (providers, users) =
                loaders::for_request(&state.db, statements.clone(), cache_rows);
            let mut graphql_request = async_graphql::Request::new(params.query)
                .variables(variables)
                .data(viewer)
                .data(ClientAddress(client))
                .data(providers)
                .data(users);
            if let Some(name) = params.operation_name {
                graphql_request = graphql_request.operation_name(name);
            }
            // The document was parsed once already, for the limits; the schema reuses it.
            if let Some(document) = checked.document {
                graphql_request.set_parsed_query(Arc::unwrap_or_clone(document));
            }
            counting_statements(statements.clone(), schema.execute(graphql_request)).await
        }
    };
    let statement_count = statements.load(Ordering::Relaxed);
    add_missing_codes(&mut response, parsed);
    if state.settings.expose_sql_statement_count {
        response.extensions.insert(
            "sqlStatements".into(),
            async_graphql::Value::Number(statement_count.into()),
        );
    }

    // Errors before execution (parse, validation, limits) carry no path and leave no data.
    let request_error = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let (kind, root_field) = match (&operation, request_error) {
        (Some((kind, root)), false) => (operation_type_label(*kind), root.as_str()),
        _ => ("unknown", "-"),
    };
    let outcome = if request_error {
        "rejected"
    } else if response.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    state
        .metrics
        .observe_graphql(kind, root_field, outcome, statement_count);

    let retry_after = rate_limited_retry_after(&response);
    let status = if retry_after.is_some() {
        StatusCode::TOO_MANY_REQUESTS
    } else if request_error && response_type == ResponseType::GraphqlResponseJson {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut builder = HttpResponse::build(status);
    builder.content_type(response_type.content_type());
    if let Some(decision) = budget.decision() {
        for header in rate_limit_headers(&decision) {
            builder.insert_header(header);
        }
    }
    if let Some(seconds) = retry_after {
        builder.insert_header((header::RETRY_AFTER, seconds.to_string()));
    }
    builder.json(&response)
}

/// The address of the client: the peer of the TCP connection, or, behind a trusted reverse
/// proxy that names it in `header`, the last address in that header (the one the proxy itself
/// added; earlier entries come from the client and prove nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

pub fn client_address(request: &HttpRequest, header: Option<&HeaderName>) -> IpAddr {
    client_address_of(request.headers(), request.peer_addr(), header)
}

/// [`client_address`] from a request's parts (a WebSocket upgrade has no `HttpRequest`).
pub fn client_address_of(
    headers: &HeaderMap,
    peer: Option<std::net::SocketAddr>,
    header: Option<&HeaderName>,
) -> IpAddr {
    let forwarded = header
        .and_then(|name| headers.get_all(name).last())
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.rsplit(',').next())
        .and_then(|last| parse_forwarded_address(last.trim()));
    forwarded
        .or_else(|| peer.map(|peer| peer.ip()))
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1` or
/// `[2001:db8::1]:4711`.
fn parse_forwarded_address(raw: &str) -> Option<IpAddr> {
    if let Ok(address) = raw.parse::<IpAddr>() {
        return Some(address);
    }
    raw.parse::<std::net::SocketAddr>()
        .ok()
        .map(|socket| socket.ip())
}

/// The longest `retryAfterSeconds` among `RATE_LIMITED` errors, if there is one.
fn rate_limited_retry_after(response: &async_graphql::Response) -> Option<u64> {
    response
        .errors
        .iter()
        .filter_map(|error| error.extensions.as_ref())
        .filter(|extensions| {
            matches!(extensions.get("code"), Some(async_graphql::Value::String(code)) if code == "RATE_LIMITED")
        })
        .map(|extensions| match extensions.get("retryAfterSeconds") {
            Some(async_graphql::Value::Number(seconds)) => seconds.as_u64().unwrap_or(1),
            _ => 1,
        })
        .max()
}

/// The `RateLimit-*` headers of a query-cost decision (the IETF draft's names: limit, units
/// remaining, seconds until the budget is full again, and the policy as `budget;w=window`).
fn rate_limit_headers(decision: &Decision) -> [(&'static str, String); 4] {
    [
        ("ratelimit-limit", decision.limit.to_string()),
        ("ratelimit-remaining", decision.remaining.to_string()),
        ("ratelimit-reset", decision.reset_seconds().to_string()),
        (
            "ratelimit-policy",
            format!("{};w={}", decision.limit, decision.window.as_secs()),
        ),
    ]
}

/// Gives every error a code. async-graphql's own parse, validation and input-coercion errors
/// carry none; ours always do.
pub fn add_missing_codes(response: &mut async_graphql::Response, parsed: bool) {
    for error in &mut response.errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            let code = match (parsed, error.path.is_empty()) {
                (false, _) => "GRAPHQL_PARSE_FAILED",
                (true, true) => "GRAPHQL_VALIDATION_FAILED",
                (true, false) => "BAD_USER_INPUT",
            };
            extensions.set("code", code);
        }
    }
}

fn operation_type_label(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

fn is_json_content_type(request: &HttpRequest) -> bool {
    let Some(value) = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim();
    let charset_ok = parts.all(|p| match p.trim().split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => true,
    });
    media.eq_ignore_ascii_case(APPLICATION_JSON) && charset_ok
}

/// Reads the whole body within `timeout`, decoded and capped at `MAX_BODY_BYTES` as actix's
/// `Bytes` extractor does. actix times out reading a request's head but not its body, so
/// without the deadline a client that announces a body and stops sending would hold the
/// connection and its worker slot forever. On a refusal the rest of the body is never read and
/// actix closes the connection after the response.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    timeout: Duration,
) -> Result<web::Bytes, (StatusCode, &'static str, &'static str)> {
    use actix_web::FromRequest;
    let mut payload = payload.into_inner();
    match tokio::time::timeout(timeout, web::Bytes::from_request(request, &mut payload)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(error))
            if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                "BODY_TOO_LARGE",
                "the request body is larger than this service accepts",
            ))
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "request body unreadable");
            Err((
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "the request body could not be read",
            ))
        }
        Err(_) => {
            tracing::warn!(
                timeout.seconds = timeout.as_secs(),
                "request body not received in time"
            );
            Err((
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "the request body did not arrive in time",
            ))
        }
    }
}

pub(crate) fn parse_post_body(body: &[u8]) -> Result<GraphqlParams, String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|error| format!("the body is not valid JSON: {error}"))?;
    if value.is_array() {
        return Err("batched requests are not supported; send one operation per request".into());
    }
    serde_json::from_value(value)
        .map_err(|error| format!("the body is not a GraphQL request: {error}"))
}

pub(crate) fn parse_get_params(query_string: &str) -> Result<GraphqlParams, String> {
    let pairs: HashMap<String, String> = serde_urlencoded::from_str(query_string)
        .map_err(|_| "the query string is malformed".to_owned())?;
    let query = pairs
        .get("query")
        .cloned()
        .ok_or("the `query` parameter is missing")?;
    let parse_json = |name: &str| -> Result<Option<serde_json::Value>, String> {
        pairs
            .get(name)
            .filter(|raw| !raw.is_empty())
            .map(|raw| serde_json::from_str(raw).map_err(|_| format!("`{name}` is not valid JSON")))
            .transpose()
    };
    Ok(GraphqlParams {
        query,
        operation_name: pairs
            .get("operationName")
            .cloned()
            .filter(|n| !n.is_empty()),
        variables: parse_json("variables")?,
        extensions: parse_json("extensions")?,
    })
}

/// The selected operation's type and first root field, when the document parses and the
/// operation can be selected; the schema reports every other case itself.
fn inspect_operation(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<(OperationType, String)> {
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
        // A single named operation runs without `operationName`, as the schema runs it.
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()?
        }
        (DocumentOperations::Multiple(_), None) => return None,
    };
    let root_field = operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .find_map(|item| match &item.node {
            Selection::Field(field) => Some(field.node.name.node.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "-".into());
    Some((operation.node.ty, root_field))
}

/// `/livez`: the process is up.
pub async fn livez() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

/// `/readyz`: the database answers, and Redis when it is configured.
///
/// `bus` says how events reach this instance's subscribers: `in-process` (no Redis),
/// `redis-connected`, or `redis-reconnecting`. A reconnecting bus alone does not make the
/// instance unready: subscribers still get every event, caught up from the event log every
/// second until the subscription is back, so taking the instance out of rotation would only
/// drop their sockets.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // A black-holed database would hold the probe for the pool's whole acquire timeout (10 s).
    let ping = tokio::time::timeout(Duration::from_secs(2), state.db.ping());
    let database = match ping.await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "readiness: database does not answer");
            "unavailable"
        }
        Err(_) => {
            tracing::warn!("readiness: database did not answer within 2 s");
            "unavailable"
        }
    };
    let redis = match &state.redis {
        None => "not configured",
        Some(connection) => {
            let mut connection = connection.clone();
            // While Redis is down the connection manager retries for seconds before it
            // answers; a readiness probe needs its answer sooner.
            let command = redis::cmd("PING");
            let ping = command.query_async::<String>(&mut connection);
            match tokio::time::timeout(std::time::Duration::from_secs(1), ping).await {
                Ok(Ok(_)) => "ok",
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "readiness: redis does not answer");
                    "unavailable"
                }
                Err(_) => {
                    tracing::warn!("readiness: redis did not answer within 1 s");
                    "unavailable"
                }
            }
        }
    };
    let ready = database == "ok" && redis != "unavailable";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(status).json(json!({
        "ready": ready,
        "database": database,
        "redis": redis,
        "bus": state.bus.status().as_str(),
    }))
}

/// `/metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// `/graphiql`: the GraphiQL page, when enabled. It loads GraphiQL itself from a CDN.
pub async fn graphiql() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            async_graphql::http::GraphiQLSource::build()
                .endpoint("/graphql")
                .finish(),
        )
}

/// A request method as a metric label: any method string is possible on the wire, and only the
/// standard ones become label values.
pub fn method_label(method: &Method) -> String {
    match *method {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::HEAD
        | Method::OPTIONS
        | Method::PATCH => method.to_string(),
        _ => "OTHER".to_owned(),
    }
}

/// Middleware: counts every request and its latency under its matched route.
pub async fn record_metrics(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    let metrics = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let response = next.call(request).await?;
    if let Some(metrics) = metrics {
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".into());
        metrics.observe_http(
            &route,
            &method,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use async_graphql::parser::parse_query;

    use super::*;

    #[test]
    fn accept_header_negotiation() {
        for (accept, expected) in [
            (None, Some(ResponseType::Json)),
            (Some("*/*"), Some(ResponseType::Json)),
            (Some("application/json"), Some(ResponseType::Json)),
            (
                Some("application/graphql-response+json"),
                Some(ResponseType::GraphqlResponseJson),
            ),
            (
                Some("application/json;q=0.9, application/graphql-response+json"),
                Some(ResponseType::GraphqlResponseJson),
            ),
            (
                Some("application/graphql-response+json;q=0, application/json"),
                Some(ResponseType::Json),
            ),
            (Some("text/html"), None),
        ] {
            let mut request = TestRequest::default();
            if let Some(accept) = accept {
                request = request.insert_header((header::ACCEPT, accept));
            }
            assert_eq!(
                negotiate(&request.to_http_request()),
                expected,
                "{accept:?}"
            );
        }
    }

    #[test]
    fn operations_are_inspected_by_name() {
        let document =
            parse_query("query A { viewer { id } } mutation B { logOut(input: {}) { loggedOut } }")
                .expect("parses");
        let document = &document;
        assert_eq!(
            inspect_operation(document, Some("B")).map(|o| o.0),
            Some(OperationType::Mutation)
        );
        assert_eq!(
            inspect_operation(document, Some("A")).map(|o| o.1),
            Some("viewer".to_owned())
        );
        assert_eq!(inspect_operation(document, None), None);
    }

    #[test]
    fn batches_and_non_objects_are_refused() {
        assert!(
            parse_post_body(b"[{\"query\":\"{viewer{id}}\"}]")
                .expect_err("a batch is refused")
                .contains("batched")
        );
        assert!(parse_post_body(b"{\"query\": 3}").is_err());
        assert!(parse_post_body(b"not json").is_err());
        assert!(parse_post_body(b"{\"query\":\"{viewer{id}}\"}").is_ok());
    }
}
