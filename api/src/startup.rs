//! Building the application: connect, migrate, wire the routes, bind the listener, start the
//! mail worker.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_cors::Cors;
use actix_http::HttpService;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, map_config};
use actix_web::{
    App,
    dev::{AppConfig, Server, ServerHandle},
    http::{Method, header},
    middleware::from_fn,
    web,
};
use anyhow::Context;
use secrecy::ExposeSecret;
use tracing_actix_web::TracingLogger;

use crate::{
    auth::{PasswordHasher, TokenSigner},
    bus::{EventBus, RedisBus},
    config::{AllowedOrigins, KeySource, Settings},
    criteria::{FixtureTxt, SystemTxt, TxtLookup},
    db::Db,
    graphql::{AppSchema, build_schema},
    http,
    metrics::Metrics,
    notifications::{MailWorker, Mailer},
    rate_limit::RateLimiter,
    state::AppState,
    ws,
};

/// A built, bound service whose mail worker already runs; the HTTP server runs once awaited.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
    mail_worker: MailWorker,
}

impl Application {
    /// Connects to the database (migrating it when configured), binds `host:port` (port 0 picks
    /// a free one), prepares the HTTP server and starts the mail worker.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = build_state(settings).await?;
        let address = (state.settings.host, state.settings.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding {}:{}", address.0, address.1))?;
        let port = listener
            .local_addr()
            .context("reading the bound address")?
            .port();
        let mailer = Mailer::from_settings(&state.settings.mail).context("setting up mail")?;
        let server = run(listener, state.clone())?;
        spawn_claim_sweeper(state.clone());
        spawn_rate_limit_janitor(state.rate_limiter.clone());
        let mail_worker = MailWorker::spawn(
            state.db.clone(),
            mailer,
            &state.settings.mail,
            state.metrics.clone(),
        );
        Ok(Self {
            port,
            server,
            state,
            mail_worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops the server from elsewhere (tests; signals are handled by the server itself).
    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the process is told to stop (SIGINT, SIGTERM or the server handle), then
    /// stops the mail worker.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.mail_worker.stop().await;
        served
    }
}

/// Returns expired review claims to the queue in the background, so the queue and the
/// timeline show them released even when nobody claims them again.
fn spawn_claim_sweeper(state: AppState) {
    let period =
        (state.settings.claim_lease / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            match crate::review::release_expired_claims(&state).await {
                Ok(0) => {}
                Ok(released) => {
                    tracing::info!(released, "expired review claims returned to the queue")
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "could not release expired review claims")
                }
            }
        }
    });
}

/// Forgets, every minute, the in-memory rate-limit buckets that have filled up again.
fn spawn_rate_limit_janitor(limiter: RateLimiter) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticker.tick().await;
            limiter.forget_idle();
        }
    });
}

/// Connects everything the handlers share.
pub async fn build_state(settings: Settings) -> anyhow::Result<AppState> {
    if let KeySource::GeneratedFile(path) = &settings.jwt.key_source {
        tracing::warn!(
            key.path = %path.display(),
            "development mode: using a generated JWT signing key; set JWT_KEYS in production"
        );
    }
    let db = Db::connect(&settings).await?;
    if settings.run_migrations {
        db.migrate().await?;
    }
    let (redis, redis_bus) = match &settings.redis_url {
        None => (None, None),
        Some(url) => {
            let client = redis::Client::open(url.expose_secret())
                .context("REDIS_URL is not a valid Redis URL")?;
            let manager = redis::aio::ConnectionManager::new(client.clone())
                .await
                .context("connecting to Redis at REDIS_URL")?;
            let bus = RedisBus {
                client,
                publisher: manager.clone(),
                channel: format!("{}:events", settings.redis_prefix),
            };
            (Some(manager), Some(bus))
        }
    };
    let bus = EventBus::start(db.clone(), redis_bus)
        .await
        .context("starting the event bus")?;
    let dns: Arc<dyn TxtLookup> = match &settings.dkim_dns_fixture {
        Some(path) => {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("DKIM_DNS_FIXTURE: reading {}", path.display()))?;
            tracing::warn!(fixture = %path.display(), "DKIM keys come from a fixture file, not DNS");
            Arc::new(
                FixtureTxt::from_json(&json).context("DKIM_DNS_FIXTURE is not a valid fixture")?,
            )
        }
        None => {
            Arc::new(SystemTxt::from_system_conf().context("reading the system DNS configuration")?)
        }
    };
    let metrics = Metrics::new()?;
    let rate_limiter = RateLimiter::new(
        settings.rate_limits.clone(),
        redis
            .clone()
            .map(|connection| (connection, settings.redis_prefix.clone())),
        metrics.clone(),
    );
    Ok(AppState {
        bus,
        dns,
        signer: Arc::new(TokenSigner::new(&settings.jwt)?),
        hasher: PasswordHasher::new(settings.password_hash_concurrency)?,
        metrics,
        rate_limiter,
        settings: Arc::new(settings),
        db,
        redis,
    })
}

/// CORS for the single-page app: pages on an allowed origin (or on this service's own) may call
/// the API with a bearer token and read the rate-limit headers. Cookies are never used, so
/// credentials are not allowed. Other origins get no CORS headers, so browsers keep their pages
/// from reading answers; clients without `Origin` are not affected.
fn cors(allowed_origins: AllowedOrigins) -> Cors {
    let cors = Cors::default()
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        .expose_headers([
            header::RETRY_AFTER,
            header::HeaderName::from_static("ratelimit-limit"),
            header::HeaderName::from_static("ratelimit-remaining"),
            header::HeaderName::from_static("ratelimit-reset"),
            header::HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(3_600);
    cors.allowed_origin_fn(move |origin, request| {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|value| value.to_str().ok());
        origin
            .to_str()
            .is_ok_and(|origin| allowed_origins.allows(origin, host))
    })
}

/// The HTTP server: actix-web's `HttpServer` assembled from its parts, because it has no way to
/// take WebSocket upgrades out of the HTTP dispatcher, and `ws::upgrade_service` needs exactly
/// that. The timeouts are `HttpServer`'s defaults: 5 s to read a request head, 5 s keep-alive,
/// 1 s to close a connection after the response.
fn run(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let schema: AppSchema = build_schema(state.clone());
    let graphiql = state.settings.graphiql;
    let max_body = state.settings.max_body_bytes;
    let realtime = ws::Realtime::new(state.clone(), schema.clone());
    let state = web::Data::new(state);
    let schema = web::Data::new(schema);
    let allowed_origins = state.settings.realtime.allowed_origins.clone();
    let local_addr = listener.local_addr().context("reading the bound address")?;
    let app = move || {
        let mut app = App::new()
            .wrap(cors(allowed_origins.clone()))
            .wrap(from_fn(http::record_metrics))
            .wrap(TracingLogger::default())
            .app_data(state.clone())
            .app_data(schema.clone())
            .app_data(web::PayloadConfig::new(max_body))
            // Subscriptions (GET with `Upgrade: websocket`) never get here: see ws::upgrade_service.
            .service(
                web::resource("/graphql")
                    .route(web::post().to(http::graphql))
                    .route(web::get().to(http::graphql)),
            )
            .route("/livez", web::get().to(http::livez))
            .route("/readyz", web::get().to(http::readyz))
            .route("/metrics", web::get().to(http::metrics));
        if graphiql {
            app = app.route("/graphiql", web::get().to(http::graphiql));
        }
        app
    };
    let server = Server::build()
        .listen("dashboard", listener, move || {
            let app = app().into_factory().map_err(|error| error.error_response());
            HttpService::build()
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(local_addr)
                .upgrade(ws::upgrade_service(realtime.clone()))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })
        .context("starting the HTTP server")?
        .run();
    Ok(server)
}
