//! The database connection: SQLite (embedded default) or PostgreSQL, and write transactions that
//! behave the same on both.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::Settings;

tokio::task_local! {
    /// Counts the SQL statements issued by the task it is set on: the HTTP layer sets one per
    /// GraphQL operation (and its DataLoader tasks) to report statements per operation.
    pub static STATEMENTS: Arc<AtomicU64>;
}

/// Runs `work` counting the SQL statements it issues into `counter`.
pub async fn counting_statements<F: Future>(counter: Arc<AtomicU64>, work: F) -> F::Output {
    STATEMENTS.scope(counter, work).await
}

/// How long a SQLite writer waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection to the service's database.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
}

impl Db {
    /// Connects with the settings' URL; SQLite gets WAL, a busy timeout and foreign keys.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings.database_url.expose_secret();
        if settings.uses_sqlite() {
            ensure_sqlite_directory(url)?;
        }
        let mut options = ConnectOptions::new(url.to_owned());
        options
            .sqlx_logging(false)
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(if settings.uses_sqlite() { 8 } else { 20 })
            .map_sqlx_sqlite_opts(|sqlite| {
                sqlite
                    .journal_mode(sqlx_sqlite_journal_wal())
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
        let mut conn = Database::connect(options)
            .await
            .context("connecting to the database")?;
        conn.set_metric_callback(|_| {
            // Outside a counted operation there is nothing to add to.
            let _ = STATEMENTS.try_with(|count| count.fetch_add(1, Ordering::Relaxed));
        });
        Ok(Self { conn })
    }

    /// Wraps an existing connection (tests that count statements build their own).
    pub fn from_connection(conn: DatabaseConnection) -> Self {
        Self { conn }
    }

    /// The connection, for reads and single-statement writes.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Starts a transaction that will write.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: a deferred transaction that reads and then writes fails
    /// at once with "database is locked" when another writer got there first, ignoring the busy
    /// timeout; an immediate one waits its turn instead.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, DbErr> {
        self.conn
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(&self.conn, None)
            .await
            .context("applying database migrations")
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }
}

fn sqlx_sqlite_journal_wal() -> sea_orm::sqlx::sqlite::SqliteJournalMode {
    sea_orm::sqlx::sqlite::SqliteJournalMode::Wal
}

/// SQLite creates the file but not its directory.
fn ensure_sqlite_directory(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the database directory {}", parent.display()))?;
    }
    Ok(())
}
