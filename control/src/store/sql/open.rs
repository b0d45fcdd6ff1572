//! Opening the store on either backend and bringing its schema up to date.

use sqlx::Executor;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::{Backend, CHANGES_CHANNEL, SqlStore};
use crate::store::StoreResult;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl SqlStore {
    /// Opens (creating if needed) the SQLite database at `path` and brings
    /// its schema up to date.
    pub async fn open_sqlite(path: &Path) -> StoreResult<Self> {
        install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // secure_delete: a secret sealed over its plain form
                    // leaves no copy in freed pages.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                         PRAGMA secure_delete = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            backend: Backend::Sqlite,
            changed: Arc::new(Notify::new()),
        })
    }

    /// Connects to the Postgres database at `url` (`postgres://...`), brings
    /// its schema up to date (hosts starting together take turns, under
    /// sqlx's migration lock) and starts listening for other hosts' changes.
    pub async fn open_postgres(url: &str) -> StoreResult<Self> {
        install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            // An unreachable database fails an admin write within seconds,
            // rather than holding the caller for sqlx's default 30.
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        let changed = Arc::new(Notify::new());
        crate::store::listen::spawn(url.to_string(), CHANGES_CHANNEL, Arc::clone(&changed));
        Ok(Self {
            pool,
            backend: Backend::Postgres,
            changed,
        })
    }
}
