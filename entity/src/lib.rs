//! SeaORM models of the dashboard's tables: one module per table, no behaviour beyond mapping.

pub mod api_token;
pub mod event;
pub mod notification;
pub mod provider;
pub mod session;
pub mod submission;
pub mod user;
