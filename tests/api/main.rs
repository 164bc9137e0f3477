//! Integration tests: each test starts the real service on port 0 against a fresh database
//! (a SQLite file, or a new PostgreSQL database when `TEST_DATABASE_URL` is set) and talks to it
//! over HTTP (and WebSocket, for subscriptions).

mod accounts;
mod authorization;
mod hardening;
mod helpers;
mod limits;
mod notifications;
mod probe;
mod rate_limits;
mod realtime;
mod registration;
mod review;
mod robustness;
mod transport;
