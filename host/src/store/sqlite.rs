//! [`Store`] on an embedded SQLite database in the data directory.
//!
//! WAL mode with `synchronous = FULL`: a committed change survives a crash of
//! the process or the machine. Foreign keys cascade deletes from tenants to
//! their tokens, services and versions.

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::path::Path;
use std::time::Duration;

use super::{
    DeployEvent, Deployment, PutVersion, ServiceRecord, ServiceSettings, ServiceUpdate, Snapshot,
    Store, StoreError, StoreResult, TenantRecord, TokenRecord, Usage, VersionRecord, now,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

/// A write whose unique-constraint failure means a conflict the caller
/// names.
fn conflict_on_unique<T>(
    result: Result<T, sqlx::Error>,
    conflict: impl FnOnce() -> String,
) -> StoreResult<T> {
    match result {
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            Err(StoreError::Conflict(conflict()))
        }
        other => Ok(other?),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

async fn bump_generation(tx: &mut Transaction<'_, Sqlite>) -> StoreResult<()> {
    sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn require_tenant(tx: &mut Transaction<'_, Sqlite>, tenant: &str) -> StoreResult<()> {
    let found = sqlx::query("SELECT 1 FROM tenants WHERE name = ?")
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("tenant `{tenant}`"))),
    }
}

fn service_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<ServiceRecord> {
    let deployment: Option<String> = row.try_get("deployment")?;
    let previous: Option<String> = row.try_get("previous")?;
    let settings: String = row.try_get("settings")?;
    Ok(ServiceRecord {
        tenant: row.try_get("tenant")?,
        name: row.try_get("name")?,
        route: row.try_get("route")?,
        deployment: deployment
            .map(|d| parse_json::<Deployment>("deployment", &d))
            .transpose()?,
        previous: previous
            .map(|d| parse_json::<Deployment>("previous deployment", &d))
            .transpose()?,
        settings: parse_json::<ServiceSettings>("service settings", &settings)?,
        versions: Vec::new(),
        updated_at: row.try_get("updated_at")?,
    })
}

fn version_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<VersionRecord> {
    let size: i64 = row.try_get("size")?;
    Ok(VersionRecord {
        label: row.try_get("label")?,
        digest: row.try_get("digest")?,
        size: u64::try_from(size).unwrap_or(0),
        created_at: row.try_get("created_at")?,
    })
}

async fn load_service(
    conn: &mut sqlx::SqliteConnection,
    tenant: &str,
    service: &str,
) -> StoreResult<ServiceRecord> {
    let row = sqlx::query("SELECT * FROM services WHERE tenant = ? AND name = ?")
        .bind(tenant)
        .bind(service)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("service `{service}` of tenant `{tenant}`")))?;
    let mut record = service_from_row(&row)?;
    let rows = sqlx::query(
        "SELECT * FROM versions WHERE tenant = ? AND service = ? ORDER BY created_at, label",
    )
    .bind(tenant)
    .bind(service)
    .fetch_all(&mut *conn)
    .await?;
    record.versions = rows
        .iter()
        .map(version_from_row)
        .collect::<StoreResult<_>>()?;
    Ok(record)
}

/// Every label a deployment names must be a stored version of the service.
fn check_labels(record: &ServiceRecord, deployment: &Deployment) -> StoreResult<()> {
    for label in deployment.labels() {
        if record.version(label).is_none() {
            return Err(StoreError::Invalid(format!(
                "service `{}` has no version `{label}`; upload it first",
                record.name
            )));
        }
    }
    Ok(())
}

/// Makes `deployment` serve, keeping what served before as the rollback
/// target; a service that serves gets its default route if it has none.
fn activate(record: &mut ServiceRecord, deployment: Deployment) -> StoreResult<()> {
    check_labels(record, &deployment)?;
    if record.deployment.as_ref() != Some(&deployment) {
        record.previous = record.deployment.take();
        record.deployment = Some(deployment);
    }
    if record.route.is_none() {
        record.route = Some(format!("/{}", record.name));
    }
    Ok(())
}

impl SqliteStore {
    /// Writes a changed service and commits the change as a new generation.
    async fn save_service(
        mut tx: Transaction<'_, Sqlite>,
        mut record: ServiceRecord,
    ) -> StoreResult<ServiceRecord> {
        record.updated_at = now();
        Self::write_service(&mut tx, &record).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn write_service(
        tx: &mut Transaction<'_, Sqlite>,
        record: &ServiceRecord,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE services SET route = ?, deployment = ?, previous = ?, settings = ?, updated_at = ? \
             WHERE tenant = ? AND name = ?",
        )
        .bind(&record.route)
        .bind(record.deployment.as_ref().map(to_json).transpose()?)
        .bind(record.previous.as_ref().map(to_json).transpose()?)
        .bind(to_json(&record.settings)?)
        .bind(record.updated_at)
        .bind(&record.tenant)
        .bind(&record.name)
        .execute(&mut **tx)
        .await;
        conflict_on_unique(result, || {
            format!(
                "route `{}` is already taken by another service of tenant `{}`",
                record.route.as_deref().unwrap_or(""),
                record.tenant
            )
        })?;
        Ok(())
    }

    async fn tenant_domains(&self, tenant: &str) -> StoreResult<Vec<String>> {
        let rows =
            sqlx::query("SELECT domain FROM tenant_domains WHERE tenant = ? ORDER BY domain")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("domain"))
            .collect::<Result<_, _>>()?)
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_tenant(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let result = sqlx::query("INSERT INTO tenants (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(now())
            .execute(&mut *tx)
            .await;
        conflict_on_unique(result, || format!("tenant `{name}` already exists"))?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_tenant(&self, name: &str) -> StoreResult<()> {
        sqlx::query("INSERT INTO tenants (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn tenant(&self, name: &str) -> StoreResult<TenantRecord> {
        let row = sqlx::query("SELECT * FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("tenant `{name}`")))?;
        let limits: String = row.try_get("limits")?;
        Ok(TenantRecord {
            name: row.try_get("name")?,
            domains: self.tenant_domains(name).await?,
            limits: parse_json("tenant limits", &limits)?,
            created_at: row.try_get("created_at")?,
        })
    }

    async fn list_tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let names: Vec<String> = sqlx::query("SELECT name FROM tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("name"))
            .collect::<Result<_, _>>()?;
        let mut tenants = Vec::with_capacity(names.len());
        for name in names {
            tenants.push(self.tenant(&name).await?);
        }
        Ok(tenants)
    }

    async fn update_tenant(
        &self,
        name: &str,
        domains: Option<Vec<String>>,
        limits: Option<serde_json::Value>,
    ) -> StoreResult<TenantRecord> {
        let mut tx = self.pool.begin().await?;
        require_tenant(&mut tx, name).await?;
        if let Some(limits) = limits {
            sqlx::query("UPDATE tenants SET limits = ? WHERE name = ?")
                .bind(to_json(&limits)?)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(domains) = domains {
            sqlx::query("DELETE FROM tenant_domains WHERE tenant = ?")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            for domain in domains {
                let result =
                    sqlx::query("INSERT INTO tenant_domains (domain, tenant) VALUES (?, ?)")
                        .bind(&domain)
                        .bind(name)
                        .execute(&mut *tx)
                        .await;
                conflict_on_unique(result, || {
                    format!("domain `{domain}` is already bound to another tenant")
                })?;
            }
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        self.tenant(name).await
    }

    async fn delete_tenant(&self, name: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM tenants WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant `{name}`")));
        }
        sqlx::query("DELETE FROM deploy_events WHERE tenant = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_token(&self, token: &TokenRecord, hash: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        require_tenant(&mut tx, &token.tenant).await?;
        sqlx::query(
            "INSERT INTO tokens (id, tenant, description, hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.tenant)
        .bind(&token.description)
        .bind(hash)
        .bind(token.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM tokens WHERE tenant = ? ORDER BY created_at, id")
            .bind(tenant)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TokenRecord {
                    id: row.try_get("id")?,
                    tenant: row.try_get("tenant")?,
                    description: row.try_get("description")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn revoke_token(&self, tenant: &str, id: &str) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM tokens WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "token `{id}` of tenant `{tenant}`"
            )));
        }
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> StoreResult<Option<(TokenRecord, String)>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok((
                TokenRecord {
                    id: row.try_get("id")?,
                    tenant: row.try_get("tenant")?,
                    description: row.try_get("description")?,
                    created_at: row.try_get("created_at")?,
                },
                row.try_get("hash")?,
            ))
        })
        .transpose()
    }

    async fn put_version(
        &self,
        tenant: &str,
        service: &str,
        version: &VersionRecord,
    ) -> StoreResult<PutVersion> {
        let mut tx = self.pool.begin().await?;
        require_tenant(&mut tx, tenant).await?;
        let existing = sqlx::query(
            "SELECT digest FROM versions WHERE tenant = ? AND service = ? AND label = ?",
        )
        .bind(tenant)
        .bind(service)
        .bind(&version.label)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let digest: String = row.try_get("digest")?;
            return if digest == version.digest {
                Ok(PutVersion::Unchanged)
            } else {
                Err(StoreError::Conflict(format!(
                    "version `{}` of service `{service}` already holds {digest}; versions are immutable, upload under a new label",
                    version.label
                )))
            };
        }
        sqlx::query(
            "INSERT INTO services (tenant, name, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(service)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO versions (tenant, service, label, digest, size, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(tenant)
        .bind(service)
        .bind(&version.label)
        .bind(&version.digest)
        .bind(i64::try_from(version.size).unwrap_or(i64::MAX))
        .bind(version.created_at)
        .execute(&mut *tx)
        .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(PutVersion::Created)
    }

    async fn delete_version(&self, tenant: &str, service: &str, label: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let record = load_service(&mut tx, tenant, service).await?;
        if record.version(label).is_none() {
            return Err(StoreError::NotFound(format!(
                "version `{label}` of service `{service}`"
            )));
        }
        if record.deployment.as_ref().is_some_and(|d| d.uses(label)) {
            return Err(StoreError::Conflict(format!(
                "version `{label}` is serving; activate another version first"
            )));
        }
        sqlx::query("DELETE FROM versions WHERE tenant = ? AND service = ? AND label = ?")
            .bind(tenant)
            .bind(service)
            .bind(label)
            .execute(&mut *tx)
            .await?;
        if record
            .previous
            .as_ref()
            .is_some_and(|d| d.0.contains_key(label))
        {
            sqlx::query("UPDATE services SET previous = NULL WHERE tenant = ? AND name = ?")
                .bind(tenant)
                .bind(service)
                .execute(&mut *tx)
                .await?;
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn service(&self, tenant: &str, service: &str) -> StoreResult<ServiceRecord> {
        let mut conn = self.pool.acquire().await?;
        load_service(&mut conn, tenant, service).await
    }

    async fn list_services(&self, tenant: &str) -> StoreResult<Vec<ServiceRecord>> {
        let mut conn = self.pool.acquire().await?;
        let names: Vec<String> =
            sqlx::query("SELECT name FROM services WHERE tenant = ? ORDER BY name")
                .bind(tenant)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get("name"))
                .collect::<Result<_, _>>()?;
        let mut services = Vec::with_capacity(names.len());
        for name in names {
            services.push(load_service(&mut conn, tenant, &name).await?);
        }
        Ok(services)
    }

    async fn update_service(
        &self,
        tenant: &str,
        service: &str,
        update: ServiceUpdate,
    ) -> StoreResult<ServiceRecord> {
        let mut tx = self.pool.begin().await?;
        let mut record = load_service(&mut tx, tenant, service).await?;
        if let Some(route) = update.route {
            record.route = Some(route);
        }
        if let Some(settings) = update.settings {
            record.settings = settings;
        }
        if let Some(deployment) = update.deployment {
            activate(&mut record, deployment)?;
        }
        Self::save_service(tx, record).await
    }

    async fn rollback(
        &self,
        tenant: &str,
        service: &str,
        to: Option<&str>,
    ) -> StoreResult<ServiceRecord> {
        let mut tx = self.pool.begin().await?;
        let mut record = load_service(&mut tx, tenant, service).await?;
        let target = match to {
            Some(label) => Deployment::single(label),
            None => record.previous.clone().ok_or_else(|| {
                StoreError::Conflict(format!(
                    "service `{service}` has no previous deployment to roll back to; name one with `to`"
                ))
            })?,
        };
        activate(&mut record, target)?;
        Self::save_service(tx, record).await
    }

    async fn delete_service(&self, tenant: &str, service: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM services WHERE tenant = ? AND name = ?")
            .bind(tenant)
            .bind(service)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "service `{service}` of tenant `{tenant}`"
            )));
        }
        sqlx::query("DELETE FROM deploy_events WHERE tenant = ? AND service = ?")
            .bind(tenant)
            .bind(service)
            .execute(&mut *tx)
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn usage(&self, tenant: &str) -> StoreResult<Usage> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM services WHERE tenant = ?) AS services, \
             COUNT(*) AS versions, COALESCE(SUM(size), 0) AS bytes \
             FROM versions WHERE tenant = ?",
        )
        .bind(tenant)
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        let count = |name: &str| -> StoreResult<i64> { Ok(row.try_get::<i64, _>(name)?) };
        Ok(Usage {
            services: u32::try_from(count("services")?).unwrap_or(u32::MAX),
            versions: u32::try_from(count("versions")?).unwrap_or(u32::MAX),
            bytes: u64::try_from(count("bytes")?).unwrap_or(0),
        })
    }

    async fn record_event(&self, event: &DeployEvent) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO deploy_events (tenant, service, at, action, detail) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&event.tenant)
        .bind(&event.service)
        .bind(event.at)
        .bind(&event.action)
        .bind(&event.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn history(
        &self,
        tenant: &str,
        service: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeployEvent>> {
        let rows = sqlx::query(
            "SELECT at, action, detail FROM deploy_events WHERE tenant = ? AND service = ? \
             ORDER BY at DESC LIMIT ?",
        )
        .bind(tenant)
        .bind(service)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(DeployEvent {
                    tenant: tenant.to_string(),
                    service: service.to_string(),
                    at: row.try_get("at")?,
                    action: row.try_get("action")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        events.reverse();
        Ok(events)
    }

    async fn snapshot(&self) -> StoreResult<Snapshot> {
        // One read transaction, so the tenants and services agree.
        let mut tx = self.pool.begin().await?;
        let generation: i64 = sqlx::query("SELECT value FROM generation WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?
            .try_get("value")?;
        let mut tenants = Vec::new();
        for row in sqlx::query("SELECT * FROM tenants ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
        {
            let limits: String = row.try_get("limits")?;
            tenants.push(TenantRecord {
                name: row.try_get("name")?,
                domains: Vec::new(),
                limits: parse_json("tenant limits", &limits)?,
                created_at: row.try_get("created_at")?,
            });
        }
        for row in sqlx::query("SELECT domain, tenant FROM tenant_domains")
            .fetch_all(&mut *tx)
            .await?
        {
            let tenant: String = row.try_get("tenant")?;
            if let Some(t) = tenants.iter_mut().find(|t| t.name == tenant) {
                t.domains.push(row.try_get("domain")?);
            }
        }
        let mut services = Vec::new();
        for row in
            sqlx::query("SELECT * FROM services WHERE deployment IS NOT NULL ORDER BY tenant, name")
                .fetch_all(&mut *tx)
                .await?
        {
            services.push(service_from_row(&row)?);
        }
        let index: std::collections::HashMap<(String, String), usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.tenant.clone(), s.name.clone()), i))
            .collect();
        for row in sqlx::query("SELECT * FROM versions ORDER BY created_at, label")
            .fetch_all(&mut *tx)
            .await?
        {
            let key: (String, String) = (row.try_get("tenant")?, row.try_get("service")?);
            if let Some(&i) = index.get(&key) {
                services[i].versions.push(version_from_row(&row)?);
            }
        }
        tx.commit().await?;
        Ok(Snapshot {
            generation,
            tenants,
            services,
        })
    }

    async fn digests(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT digest FROM versions")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("digest"))
            .collect::<Result<_, _>>()?)
    }
}
