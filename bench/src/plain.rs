//! The baseline of the `queue` benchmark: a plain actix-web handler, in the bench process, that
//! reads the first page of the review queue with the same four statements as the service and
//! returns the same fields as JSON. No GraphQL, no cache, and by default no authentication (a
//! diagnostic option adds the service's authentication statement).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, web};
use anyhow::{Context, bail, ensure};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};
use entity::{provider, session, submission, user};
use sea_orm::{
    ColumnTrait, ConnectOptions, Database, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, sea_query::Expr,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The statuses the queue shows by default.
const QUEUED: [&str; 2] = ["SUBMITTED", "IN_REVIEW"];
/// The page size when `first` is not given, and the largest one allowed (as in the service).
const DEFAULT_PAGE: u64 = 20;
const MAX_PAGE: u64 = 100;

/// What the handler did, for statements per request.
#[derive(Debug, Default)]
pub struct Counters {
    /// SQL statements run on the baseline's connection pool.
    pub statements: AtomicU64,
    /// Requests the handler answered.
    pub requests: AtomicU64,
}

/// Connects to the service's database with the pool settings the service uses (SQLite: WAL,
/// `synchronous=NORMAL`, 8 connections; PostgreSQL: 20), counting statements into `counters`.
/// A SQLite file must exist already: the service created and migrated it.
pub async fn connect(url: &str, counters: Arc<Counters>) -> anyhow::Result<DatabaseConnection> {
    let sqlite = url.starts_with("sqlite:");
    let url = if sqlite {
        url.replace("mode=rwc", "mode=rw")
    } else {
        url.to_owned()
    };
    let mut options = ConnectOptions::new(url);
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .max_connections(if sqlite { 8 } else { 20 })
        .map_sqlx_sqlite_opts(|options| {
            options
                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    let mut conn = Database::connect(options)
        .await
        .context("connecting the baseline to the service's database")?;
    conn.set_metric_callback(move |_| {
        counters.statements.fetch_add(1, Ordering::Relaxed);
    });
    Ok(conn)
}

/// The baseline's HTTP server, on a free port of 127.0.0.1.
pub struct PlainServer {
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
    base_url: String,
}

/// The statement the service runs to authenticate a session's access token: the account's
/// standing by id, and whether the session's family was revoked, in one query.
#[derive(Debug, Clone, Copy)]
pub struct AuthStatements {
    pub user_id: Uuid,
    pub family_id: Uuid,
}

struct HandlerState {
    db: DatabaseConnection,
    counters: Arc<Counters>,
    auth: Option<AuthStatements>,
}

impl PlainServer {
    /// Starts `GET /queue?first=N` with actix-web's default worker count (one per CPU, as the
    /// service has). With `auth`, each request first runs the service's authentication
    /// statement for that account and session (a diagnostic; nothing is checked with them).
    pub fn start(
        db: DatabaseConnection,
        counters: Arc<Counters>,
        auth: Option<AuthStatements>,
    ) -> anyhow::Result<Self> {
        let state = web::Data::new(HandlerState { db, counters, auth });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/queue", web::get().to(queue_page))
        })
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .context("binding the baseline server to 127.0.0.1")?;
        let address = server
            .addrs()
            .first()
            .copied()
            .context("the baseline server has no address")?;
        let server = server.run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(Self {
            handle,
            task,
            base_url: format!("http://{address}"),
        })
    }

    /// `http://127.0.0.1:<port>/queue?first=<first>`.
    pub fn url(&self, first: u64) -> String {
        format!("{}/queue?first={first}", self.base_url)
    }

    /// Stops the server, letting answers in flight finish.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("warning: the baseline server failed: {error}"),
            Err(error) => eprintln!("warning: the baseline server task failed: {error}"),
        }
    }
}

/// `first` from the query string: 1..=100, 20 when absent.
fn page_size(query: &str) -> Result<u64, String> {
    let Some(value) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("first="))
    else {
        return Ok(DEFAULT_PAGE);
    };
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(format!("`first` must be between 1 and {MAX_PAGE}")),
    }
}

async fn queue_page(request: HttpRequest, state: web::Data<HandlerState>) -> HttpResponse {
    let first = match page_size(request.query_string()) {
        Ok(first) => first,
        Err(message) => return HttpResponse::BadRequest().json(json!({ "error": message })),
    };
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(auth) = state.auth
        && let Err(error) = auth_statements(&state.db, auth).await
    {
        return HttpResponse::InternalServerError().json(json!({ "error": format!("{error:#}") }));
    }
    match read_page(&state.db, first).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(error) => {
            HttpResponse::InternalServerError().json(json!({ "error": format!("{error:#}") }))
        }
    }
}

/// The service's authentication statement (see `AuthStatements`).
async fn auth_statements(db: &DatabaseConnection, auth: AuthStatements) -> anyhow::Result<()> {
    let revoked_session = session::Entity::find()
        .select_only()
        .expr(Expr::val(1))
        .filter(session::Column::FamilyId.eq(auth.family_id))
        .filter(session::Column::RevokedAt.is_not_null())
        .into_query();
    let standing = user::Entity::find_by_id(auth.user_id)
        .select_only()
        .columns([user::Column::Disabled, user::Column::Role])
        .expr(Expr::exists(revoked_session))
        .into_tuple::<(bool, String, bool)>()
        .one(db)
        .await
        .context("reading the account and its session")?;
    let (disabled, _role, revoked) = standing.context("the account is missing")?;
    ensure!(!disabled, "the account is disabled");
    ensure!(!revoked, "the session was revoked");
    Ok(())
}

/// The account and session an access token (a JWT) names, from its unverified payload: `sub`
/// and `sid`.
pub fn token_subject(token: &str) -> anyhow::Result<AuthStatements> {
    let payload = token
        .split('.')
        .nth(1)
        .context("the access token is not a JWT")?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("the access token's payload is not base64url")?;
    let claims: Value =
        serde_json::from_slice(&payload).context("the access token's payload is not JSON")?;
    let claim = |name: &str| {
        claims[name]
            .as_str()
            .and_then(|value| Uuid::parse_str(value).ok())
            .with_context(|| format!("the access token has no `{name}` claim"))
    };
    Ok(AuthStatements {
        user_id: claim("sub")?,
        family_id: claim("sid")?,
    })
}

/// Reads one page the way the service's resolver and DataLoaders do: the count, the page (one
/// row more than asked, for `hasNextPage`), then the providers and the claim holders of the page
/// by id, concurrently. The claim holders' statement is skipped when nobody holds a claim, as
/// the service's loader is never called then.
///
/// The JSON has the shape of the GraphQL answer's `data.reviewQueue`, with the same fields.
pub async fn read_page(db: &DatabaseConnection, first: u64) -> anyhow::Result<Value> {
    let queued = || submission::Column::Status.is_in(QUEUED);
    let total_count = submission::Entity::find()
        .filter(queued())
        .count(db)
        .await
        .context("counting the queue")?;
    let mut rows = submission::Entity::find()
        .filter(queued())
        .order_by_asc(submission::Column::QueueEnteredAt)
        .order_by_asc(submission::Column::Id)
        .limit(first + 1)
        .all(db)
        .await
        .context("reading the page")?;
    let has_next_page = rows.len() as u64 > first;
    rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));

    let provider_ids = distinct(rows.iter().map(|row| row.provider_id));
    let holder_ids = distinct(rows.iter().filter_map(|row| row.claimed_by));
    let (providers, holders) = tokio::join!(
        providers_by_id(db, provider_ids),
        users_by_id(db, holder_ids)
    );
    let (providers, holders) = (providers?, holders?);

    let now = Utc::now();
    let mut edges = Vec::with_capacity(rows.len());
    let mut end_cursor = None;
    for row in &rows {
        end_cursor = Some(cursor(row.queue_entered_at, row.id));
        let Some(provider) = providers.get(&row.provider_id) else {
            bail!("the provider of submission {} is missing", row.id);
        };
        let claim_holder = row
            .claimed_by
            .and_then(|id| holders.get(&id))
            .map(|holder| json!({ "id": global_id("User", holder.id), "email": holder.email }));
        edges.push(json!({ "node": {
            "id": global_id("Submission", row.id),
            "number": row.number,
            "status": row.status,
            "scope": row.scope,
            "queueEnteredAt": row.queue_entered_at.to_rfc3339(),
            "ageInQueueSeconds": (now - row.queue_entered_at).num_seconds().max(0),
            "claimHolder": claim_holder,
            "provider": { "id": global_id("Provider", provider.id), "name": provider.name },
            "sections": sections(&row.snapshot),
        } }));
    }
    Ok(json!({
        "totalCount": total_count,
        "pageInfo": { "hasNextPage": has_next_page, "endCursor": end_cursor },
        "edges": edges,
    }))
}

/// The ids once each, as a DataLoader batches them.
fn distinct(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id)).collect()
}

async fn providers_by_id(
    db: &DatabaseConnection,
    ids: Vec<Uuid>,
) -> anyhow::Result<HashMap<Uuid, provider::Model>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = provider::Entity::find()
        .filter(provider::Column::Id.is_in(ids))
        .all(db)
        .await
        .context("reading the providers")?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

async fn users_by_id(
    db: &DatabaseConnection,
    ids: Vec<Uuid>,
) -> anyhow::Result<HashMap<Uuid, user::Model>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(db)
        .await
        .context("reading the claim holders")?;
    Ok(rows.into_iter().map(|row| (row.id, row)).collect())
}

/// The frozen sections the benchmark selects, straight from the snapshot document, as the
/// service reads them.
fn sections(snapshot: &Value) -> Value {
    let details = &snapshot["providerDetails"];
    let contact = &snapshot["contactInfo"];
    json!({
        "scope": snapshot["scope"],
        "providerDetails": details.is_object().then(|| json!({
            "senderEmails": details["senderEmails"],
            "targetUrls": details["targetUrls"],
        })),
        "contactInfo": contact.is_object().then(|| json!({
            "name": contact["name"],
            "email": contact["email"],
        })),
    })
}

/// A Relay global ID as the service writes it: base64url of `Type:uuid`.
fn global_id(type_name: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{type_name}:{id}"))
}

/// A queue cursor as the service writes it (time-in-queue order).
fn cursor(at: DateTime<Utc>, id: Uuid) -> String {
    let at = at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    URL_SAFE_NO_PAD.encode(format!("q|{at}|{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_are_bounded_like_the_service() {
        assert_eq!(page_size(""), Ok(20));
        assert_eq!(page_size("first=5"), Ok(5));
        assert_eq!(page_size("x=1&first=100"), Ok(100));
        assert!(page_size("first=0").is_err());
        assert!(page_size("first=101").is_err());
        assert!(page_size("first=abc").is_err());
    }

    #[test]
    fn global_ids_match_the_service() {
        let id = Uuid::nil();
        assert_eq!(
            global_id("User", id),
            URL_SAFE_NO_PAD.encode("User:00000000-0000-0000-0000-000000000000")
        );
    }

    #[test]
    fn the_token_subject_is_read_from_the_payload() -> anyhow::Result<()> {
        let (sub, sid) = (Uuid::new_v4(), Uuid::new_v4());
        let payload = URL_SAFE_NO_PAD.encode(json!({ "sub": sub, "sid": sid }).to_string());
        let auth = token_subject(&format!("e30.{payload}.signature"))?;
        assert_eq!((auth.user_id, auth.family_id), (sub, sid));
        assert!(token_subject("not-a-jwt").is_err());
        Ok(())
    }

    #[test]
    fn missing_sections_are_null() {
        let sections = sections(&json!({ "scope": "ORGANIZATION" }));
        assert_eq!(sections["scope"], json!("ORGANIZATION"));
        assert!(sections["providerDetails"].is_null());
        assert!(sections["contactInfo"].is_null());
    }
}
