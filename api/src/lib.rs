//! The actionable-email developer dashboard backend: service owners register the service that
//! sends actionable messages, reviewers approve it, everybody follows the status live.

pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod criteria;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
#[cfg(test)]
mod fuzz;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod notifications;
pub mod rate_limit;
pub mod registration;
pub mod review;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod ws;
