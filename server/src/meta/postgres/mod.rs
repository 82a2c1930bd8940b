//! The scale-out metadata store on PostgreSQL (`tokio-postgres` + `deadpool-postgres`).
//!
//! The logic is the shared one in [`crate::meta::sql`]; this module runs it in
//! PostgreSQL transactions. Writes are `SERIALIZABLE` and retried when they lose a race,
//! which gives several server processes the same semantics as SQLite's single writer;
//! writes also queue on an advisory lock, so that they take turns instead of failing
//! each other's serialization checks over and over.
//! Reads are `REPEATABLE READ READ ONLY` snapshots.
//!
//! Watch streams of every server process are woken through `LISTEN/NOTIFY`
//! ([`listen`]); a notification is a hint only, the journal table is the truth.

mod db;
mod listen;
mod schema;

use futures::future::BoxFuture;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use loft_remote::errors::ErrorKind;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{IsolationLevel, NoTls};

use super::sql::db::Db;
use super::sql::{Engine, SqlMetaStore};
use super::{Nanos, now_nanos};
use crate::error::{Result, ServerError};
use crate::journal_hub::JournalHub;
use db::PgDb;

/// The channel every server process listens on.
pub const CHANNEL: &str = "loft_journal";
/// Connections per server process.
const POOL_SIZE: usize = 16;
/// How often a write that lost a serialization race is tried again.
const WRITE_ATTEMPTS: u32 = 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First key of the two-key advisory locks that queue writes ("lq").
const QUEUE_LOCK_CLASS: i32 = 0x6c71;

/// The PostgreSQL [`super::MetaStore`].
pub type PostgresMetaStore = SqlMetaStore<PostgresEngine>;

/// Runs transactions on a pool of PostgreSQL connections.
pub struct PostgresEngine {
    pool: Pool,
    listener: Option<JoinHandle<()>>,
}

impl Drop for PostgresEngine {
    fn drop(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
        }
    }
}

/// Where a URL points, without its password, for messages.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{}:{}/{}",
        hosts.join(","),
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        },
        config.get_dbname().unwrap_or("")
    )
}

/// Parses a `postgres://` URL (or a key=value connection string).
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| ServerError::invalid(format!("bad PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("loft-server");
    }
    Ok(config)
}

impl SqlMetaStore<PostgresEngine> {
    /// Connects to the database at `url`, migrates an empty or older schema (under an
    /// advisory lock) and starts listening for journal notifications into `hub`.
    pub fn connect<'a>(url: &'a str, hub: Arc<JournalHub>) -> BoxFuture<'a, Result<Self>> {
        Box::pin(async move {
            let config = parse_url(url)?;
            let target = describe(&config);
            let manager = Manager::from_config(
                config.clone(),
                NoTls,
                ManagerConfig {
                    // Clean: a connection back from a task that panicked while holding the
                    // queue lock must not keep it (it runs pg_advisory_unlock_all()).
                    recycling_method: RecyclingMethod::Clean,
                },
            );
            let pool = Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(Runtime::Tokio1)
                .create_timeout(Some(CONNECT_TIMEOUT))
                .wait_timeout(Some(Duration::from_secs(30)))
                .build()
                .map_err(|e| ServerError::internal(format!("PostgreSQL pool: {e}")))?;
            let mut client = pool.get().await.map_err(|e| {
                ServerError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "cannot connect to PostgreSQL at {target}: {}",
                        pool_error(&e)
                    ),
                )
            })?;
            let (from, to) = schema::migrate(&mut client).await?;
            if from != to {
                tracing::info!(from, to, %target, "migrated the PostgreSQL metadata schema");
            }
            drop(client);
            let listener = tokio::spawn(listen::run(config, hub.clone()));
            Ok(SqlMetaStore::new(
                PostgresEngine {
                    pool,
                    listener: Some(listener),
                },
                hub,
            ))
        })
    }
}

/// The message of a pool error, with the database's own reason when there is one.
fn pool_error(error: &deadpool_postgres::PoolError) -> String {
    match error {
        deadpool_postgres::PoolError::Backend(error) => crate::error::postgres_message(error),
        other => other.to_string(),
    }
}

fn retryable(code: Option<&SqlState>) -> bool {
    code.is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
    })
}

impl PostgresEngine {
    /// Runs `f` in one transaction on the blocking pool: returns its value, or the
    /// error with its SQLSTATE when PostgreSQL reported one.
    async fn run<T, F>(
        &self,
        level: IsolationLevel,
        read_only: bool,
        announce: bool,
        queue: Option<u64>,
        f: Arc<F>,
    ) -> std::result::Result<T, (ServerError, Option<SqlState>)>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        let pool = self.pool.clone();
        let runtime = Handle::current();
        let task = tokio::task::spawn_blocking(move || {
            let plain = |e: ServerError| (e, None);
            let with_code = |e: tokio_postgres::Error| {
                let code = e.code().cloned();
                (ServerError::from(e), code)
            };
            let mut client = runtime
                .block_on(pool.get())
                .map_err(|e| plain(ServerError::from(e)))?;
            // The queue lock is a session lock taken before BEGIN: taken inside a
            // SERIALIZABLE transaction, it would be granted after the snapshot, which
            // then misses the writer it waited for and fails to serialize.
            let lock = queue.map(|key| (QUEUE_LOCK_CLASS, key as i32));
            if let Some((class, key)) = lock {
                runtime
                    .block_on(client.execute("SELECT pg_advisory_lock($1, $2)", &[&class, &key]))
                    .map_err(with_code)?;
            }
            let result = (|| {
                let tx = runtime
                    .block_on(
                        client
                            .build_transaction()
                            .isolation_level(level)
                            .read_only(read_only)
                            .start(),
                    )
                    .map_err(with_code)?;
                let db = PgDb {
                    tx: &tx,
                    runtime: &runtime,
                    failed: Cell::new(None),
                };
                let value = f(&db, now_nanos()).map_err(|e| (e, db.failed.take()))?;
                if announce {
                    db.execute(&format!("SELECT pg_notify('{CHANNEL}', '')"), &[])
                        .map_err(|e| (e, db.failed.take()))?;
                }
                runtime.block_on(tx.commit()).map_err(with_code)?;
                Ok(value)
            })();
            if let Some((class, key)) = lock {
                // A failure here means the connection is gone, and the lock with it.
                let _ = runtime
                    .block_on(client.execute("SELECT pg_advisory_unlock($1, $2)", &[&class, &key]));
            }
            result
        });
        task.await
            .map_err(|e| (ServerError::internal(format!("metadata task: {e}")), None))?
    }

    async fn retrying<T, F>(
        &self,
        level: IsolationLevel,
        read_only: bool,
        announce: bool,
        queue: Option<u64>,
        f: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.run(level, read_only, announce, queue, f.clone()).await {
                Ok(value) => return Ok(value),
                Err((error, code)) if retryable(code.as_ref()) && attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(attempt, %error, "transaction lost a race; retrying");
                    let jitter = rand::random_range(0..(2u64 << attempt.min(6)));
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

impl Engine for PostgresEngine {
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        self.retrying(IsolationLevel::RepeatableRead, true, false, None, f)
            .await
    }

    async fn write<T, F>(&self, announce: bool, queue: Option<u64>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&dyn Db, Nanos) -> Result<T> + Send + Sync + 'static,
    {
        self.retrying(IsolationLevel::Serializable, false, announce, queue, f)
            .await
    }

    async fn schema_version(&self) -> Result<u32> {
        let client = self.pool.get().await?;
        schema::version(&client).await
    }
}
