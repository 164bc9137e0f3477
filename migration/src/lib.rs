//! Schema migrations of the dashboard's database, applied in order on SQLite and PostgreSQL.

pub use sea_orm_migration::prelude::*;

mod m20261203_000001_create_accounts;
mod m20261203_000002_create_registrations;
mod m20261203_000003_create_notification_outbox;
mod m20261203_000004_add_review_attestations;

/// The ordered list of migrations the service and the `migrate` CLI apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261203_000001_create_accounts::Migration),
            Box::new(m20261203_000002_create_registrations::Migration),
            Box::new(m20261203_000003_create_notification_outbox::Migration),
            Box::new(m20261203_000004_add_review_attestations::Migration),
        ]
    }
}
