//! SeaORM models of the dashboard's tables: one module per table, no behaviour beyond mapping.

pub mod api_token;
pub mod session;
pub mod user;
