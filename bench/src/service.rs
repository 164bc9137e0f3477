//! The service under test: finding (or building) its release binary, starting it as a child
//! process on a free loopback port with a fresh data directory, and stopping it again.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use tokio::{
    io::AsyncWriteExt,
    process::{Child, Command},
};

/// How long the service may take to answer `/readyz` (it migrates a fresh database first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a command of the service's CLI (e.g. `user create`) may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root; this package lives in `<root>/bench`.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// Where `cargo build --release` puts the service binary (honours `CARGO_TARGET_DIR`).
pub fn default_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from);
    target.join("release").join("dashboard")
}

/// Runs `cargo build --release --bin dashboard` in the workspace, showing cargo's output.
pub async fn build_release() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the service: cargo build --release --bin dashboard");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "actionable-dashboard",
            "--bin",
            "dashboard",
        ])
        .current_dir(workspace_root())
        .status()
        .await
        .context("running cargo build")?;
    if !status.success() {
        bail!("cargo build --release --bin dashboard failed ({status})");
    }
    Ok(())
}

/// How to configure the child process beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct ServiceOptions {
    /// `DATABASE_URL`; `None` runs on a SQLite file in the fresh data directory.
    pub database_url: Option<String>,
    /// `PASSWORD_HASH_CONCURRENCY`; `None` keeps the service's default (the CPU count).
    pub password_hash_concurrency: Option<usize>,
    /// Further variables, e.g. `EXPOSE_SQL_STATEMENT_COUNT=true`.
    pub extra_env: Vec<(String, String)>,
    /// `JWT_KEYS`; `None` generates a fresh entry. A second instance of one deployment passes
    /// the first one's ([`Service::jwt_keys`]) so that tokens work on both.
    pub jwt_keys: Option<String>,
}

/// A running service process; dropping it kills the process and deletes its data directory.
pub struct Service {
    child: Option<Child>,
    binary: PathBuf,
    /// The service's whole environment, so that CLI commands see the same configuration.
    env: Vec<(String, OsString)>,
    database_url: String,
    jwt_keys: String,
    data_dir: PathBuf,
    log_path: PathBuf,
    base_url: String,
}

impl Service {
    /// Starts `binary` on a free port of 127.0.0.1 with a fresh `DATA_DIR`, a generated
    /// `JWT_KEYS` and `RUST_LOG=warn`, and waits until `/readyz` answers 200.
    pub async fn start(binary: &Path, options: &ServiceOptions) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "the service binary {} does not exist; run `cargo build --release` first (or \
                 drop --no-build)",
                binary.display()
            );
        }
        let jwt_keys = match &options.jwt_keys {
            Some(keys) => keys.clone(),
            None => generate_jwt_keys(binary).await?,
        };
        let port = free_port()?;
        let data_dir = fresh_data_dir()?;
        let log_path = data_dir.join("service.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let log_err = log.try_clone().context("duplicating the log file handle")?;

        // A clean environment, so that neither the caller's variables nor a `.env` file (the
        // service looks in its working directory and above) change what is measured.
        let mut env: Vec<(String, OsString)> = vec![
            ("APP_ENV".into(), "development".into()),
            ("HOST".into(), "127.0.0.1".into()),
            ("PORT".into(), port.to_string().into()),
            ("DATA_DIR".into(), data_dir.clone().into_os_string()),
            ("JWT_KEYS".into(), jwt_keys.clone().into()),
            ("RUST_LOG".into(), "warn".into()),
            ("LOG_FORMAT".into(), "pretty".into()),
            ("GRAPHIQL".into(), "false".into()),
            // Budgets stay on, so their cost is measured, but high enough never to refuse: the
            // benches measure the work behind a request, and the login flood the password
            // hasher, which real budgets would shield after a few attempts.
            ("RATE_LIMIT_QUERY_COST".into(), "60000000/1m".into()),
            ("RATE_LIMIT_LOG_IN_PER_ACCOUNT".into(), "60000000/1m".into()),
            ("RATE_LIMIT_LOG_IN_PER_ADDRESS".into(), "60000000/1m".into()),
            (
                "RATE_LIMIT_SIGN_UP_PER_ADDRESS".into(),
                "60000000/1m".into(),
            ),
        ];
        if let Some(path) = std::env::var_os("PATH") {
            env.push(("PATH".into(), path));
        }
        if let Some(url) = &options.database_url {
            env.push(("DATABASE_URL".into(), url.into()));
        }
        if let Some(permits) = options.password_hash_concurrency {
            env.push((
                "PASSWORD_HASH_CONCURRENCY".into(),
                permits.to_string().into(),
            ));
        }
        for (name, value) in &options.extra_env {
            env.push((name.clone(), value.into()));
        }
        // Without DATABASE_URL the service uses this file (see its `config.rs`).
        let database_url = options.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("dashboard.sqlite").display()
            )
        });

        let mut command = Command::new(binary);
        command
            .env_clear()
            .envs(env.iter().map(|(name, value)| (name, value)))
            .current_dir(&data_dir)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut service = Self {
            child: Some(child),
            binary: binary.to_path_buf(),
            env,
            database_url,
            jwt_keys,
            data_dir,
            log_path,
            base_url: format!("http://127.0.0.1:{port}"),
        };
        service.wait_ready().await?;
        Ok(service)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The database the service uses: `--database-url`, or its default SQLite file in the data
    /// directory.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The service's `JWT_KEYS`, for starting another instance that accepts the same tokens.
    pub fn jwt_keys(&self) -> &str {
        &self.jwt_keys
    }

    /// The process id of the running service, for reading its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Runs the service binary's command line (`args`) with the service's environment and
    /// working directory, writing `stdin` to it, and returns what it printed. Fails unless it
    /// exits successfully.
    pub async fn cli(&self, args: &[&str], stdin: &str) -> anyhow::Result<String> {
        let mut child = Command::new(&self.binary)
            .env_clear()
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .current_dir(&self.data_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {} {}", self.binary.display(), args.join(" ")))?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .await
                .context("writing to the command's standard input")?;
            // Dropping the handle closes the pipe, so the command sees the end of its input.
        }
        let output = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
            .await
            .with_context(|| format!("`dashboard {}` did not finish", args.join(" ")))?
            .context("waiting for the command")?;
        if !output.status.success() {
            bail!(
                "`dashboard {}` failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Polls `/readyz` until it answers 200, failing early when the process exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the readiness client")?;
        let url = format!("{}/readyz", self.base_url);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling the service")?
            {
                bail!(
                    "the service exited before it was ready ({status}); its log ends:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the service did not become ready within {}s; its log ends:\n{}",
            READY_TIMEOUT.as_secs(),
            self.log_tail()
        )
    }

    /// The last lines of the service's log, for error messages.
    pub fn log_tail(&self) -> String {
        match std::fs::read_to_string(&self.log_path) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(20)..].join("\n")
            }
            Err(error) => format!("(log unreadable: {error})"),
        }
    }

    /// How many lines of the log mention an error, to flag a run that was not clean.
    pub fn log_error_lines(&self) -> usize {
        std::fs::read_to_string(&self.log_path)
            .map(|text| text.lines().filter(|l| l.contains("ERROR")).count())
            .unwrap_or(0)
    }

    /// Kills the process, waits for it and deletes the data directory.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(error) = child.kill().await
        {
            eprintln!("warning: stopping the service: {error}");
        }
        self.remove_data_dir();
    }

    fn remove_data_dir(&self) {
        if self.data_dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&self.data_dir)
        {
            eprintln!(
                "warning: removing the data directory {}: {error}",
                self.data_dir.display()
            );
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Err(error) = child.start_kill()
        {
            eprintln!("warning: killing the service: {error}");
        }
        self.remove_data_dir();
    }
}

/// `dashboard keys generate`: one `kid:secret` entry for `JWT_KEYS`.
async fn generate_jwt_keys(binary: &Path) -> anyhow::Result<String> {
    let output = Command::new(binary)
        .args(["keys", "generate"])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} keys generate", binary.display()))?;
    if !output.status.success() {
        bail!(
            "`dashboard keys generate` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let entry = String::from_utf8(output.stdout)
        .context("`dashboard keys generate` printed non-UTF-8")?
        .trim()
        .to_owned();
    if !entry.contains(':') {
        bail!("`dashboard keys generate` printed an unexpected line: {entry}");
    }
    Ok(entry)
}

/// A port of 127.0.0.1 that nothing listens on right now.
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("reading the free port")?
        .port())
}

/// A new, empty directory under the system's temporary directory.
fn fresh_data_dir() -> anyhow::Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("dashboard-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
