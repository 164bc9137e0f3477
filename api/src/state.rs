//! Shared state of a running service: what every request handler and resolver may use.

use std::sync::Arc;

use crate::{
    auth::{PasswordHasher, TokenSigner},
    bus::EventBus,
    config::Settings,
    criteria::TxtLookup,
    db::Db,
    metrics::Metrics,
    rate_limit::RateLimiter,
};

/// Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub signer: Arc<TokenSigner>,
    pub hasher: PasswordHasher,
    pub redis: Option<redis::aio::ConnectionManager>,
    pub metrics: Metrics,
    /// Where DKIM keys are looked up: DNS, or a fixture file in development and tests.
    pub dns: Arc<dyn TxtLookup>,
    /// Committed events, fanned out to live subscribers.
    pub bus: EventBus,
    /// Budgets of query cost, log-ins and sign-ups.
    pub rate_limiter: RateLimiter,
}
