//! The command line: `serve` (the default), `migrate`, `user create`, `schema export`, `keys`.

use std::{io::Read, path::PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use migration::{Migrator, MigratorTrait};

use crate::{
    auth::{self, AccountError, Role},
    config::{Settings, generate_jwt_key_entry},
    db::Db,
    graphql,
    startup::{Application, build_state},
};

/// Backend of the actionable-email developer dashboard.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP service (the default).
    Serve,
    /// Applies or inspects database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Manages accounts from the shell (bootstrap the first admin here).
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Works with the GraphQL schema file.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Signing keys for access tokens.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Applies every pending migration.
    Up,
    /// Rolls back the last migration.
    Down,
    /// Lists migrations and whether each is applied.
    Status,
    /// Drops every table and applies all migrations again (destroys data).
    Fresh,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Submitter,
    Reviewer,
    Admin,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Creates an account. The password is read from standard input (one line), or generated
    /// and printed once when standard input is a terminal or empty.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaAction {
    /// Writes the schema's SDL to a file, or with --check fails when the file differs.
    Export {
        #[arg(long, default_value = "schema.graphql")]
        path: PathBuf,
        #[arg(long)]
        check: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Prints a new `kid:secret` entry for JWT_KEYS (put it first; keep older ones after it
    /// until their tokens have expired).
    Generate,
}

/// One line per migration on standard output, `applied` or `pending`, whatever the log level
/// (sea-orm-migration's own `status` only logs).
async fn print_migration_status(conn: &sea_orm::DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    for migration in Migrator::get_migration_with_status(conn).await? {
        println!(
            "{:<8} {}",
            migration.status().to_string().to_lowercase(),
            migration.name()
        );
    }
    Ok(())
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings = Settings::from_env()?;
            let application = Application::build(settings).await?;
            tracing::info!(port = application.port(), "serving GraphQL at /graphql");
            application
                .run_until_stopped()
                .await
                .context("running the HTTP server")
        }
        Command::Migrate { action } => {
            let db = Db::connect(&Settings::from_env()?).await?;
            let conn = db.conn();
            match action {
                MigrateAction::Up => Migrator::up(conn, None).await,
                MigrateAction::Down => Migrator::down(conn, Some(1)).await,
                MigrateAction::Status => print_migration_status(conn).await,
                MigrateAction::Fresh => Migrator::fresh(conn).await,
            }
            .context("running the migration command")
        }
        Command::User {
            action: UserAction::Create { email, role },
        } => create_user(&email, role).await,
        Command::Schema {
            action: SchemaAction::Export { path, check },
        } => export_schema(&path, check),
        Command::Keys {
            action: KeysAction::Generate,
        } => {
            println!("{}", generate_jwt_key_entry());
            Ok(())
        }
    }
}

async fn create_user(email: &str, role: RoleArg) -> anyhow::Result<()> {
    let mut settings = Settings::from_env()?;
    settings.run_migrations = true;
    let state = build_state(settings).await?;

    let mut input = String::new();
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from standard input")?;
    }
    let given = input.lines().next().unwrap_or_default().to_owned();
    let (password, generated) = if given.is_empty() {
        (
            crate::auth::hash_token(&uuid::Uuid::new_v4().to_string())[..24].to_owned(),
            true,
        )
    } else {
        (given, false)
    };
    let role = match role {
        RoleArg::Submitter => Role::Submitter,
        RoleArg::Reviewer => Role::Reviewer,
        RoleArg::Admin => Role::Admin,
    };
    match auth::create_user(&state, email, password.clone().into(), role).await {
        Ok(user) => {
            println!(
                "created {} {} ({})",
                role.as_str().to_lowercase(),
                user.email,
                user.id
            );
            if generated {
                println!("password (shown once): {password}");
            }
            Ok(())
        }
        Err(AccountError::User(errors)) => {
            let reasons: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {} ({})", e.field.join("."), e.message, e.code))
                .collect();
            bail!("the account was not created: {}", reasons.join("; "))
        }
        Err(AccountError::Api(error)) => bail!("the account was not created: {error:?}"),
    }
}

fn export_schema(path: &std::path::Path, check: bool) -> anyhow::Result<()> {
    let sdl = graphql::sdl();
    if check {
        let current =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if current != sdl {
            bail!(
                "{} is out of date; run `cargo run -- schema export` and commit it",
                path.display()
            );
        }
        println!("{} is up to date", path.display());
        return Ok(());
    }
    std::fs::write(path, sdl).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
