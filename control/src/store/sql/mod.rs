//! [`Store`] on SQL: an embedded SQLite database in the data directory for
//! one host, or Postgres shared by a fleet. One schema and one set of
//! statements serve both, through sqlx's `Any` driver: the migrations and
//! queries keep to the SQL the two share, with `$n` parameters.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`, so a committed change
//! survives a crash of the process or the machine. Foreign keys cascade
//! deletes from tenants to their tokens, services and versions.
//!
//! On Postgres, a fleet shares this state. Every change bumps the one-row
//! generation and sends `NOTIFY berth_generation` on commit, which wakes every
//! host's sync early (see [`SqlStore::wait_for_change`]). A service row carries
//! a revision: a change read from one revision and written over another is
//! retried, so two hosts taking admin writes at once never lose one.

use sqlx::{Any, AnyPool, Row, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::{
    DeployEvent, Deployment, PutVersion, ServiceRecord, ServiceUpdate, Snapshot, Store, StoreError,
    StoreResult, TenantRecord, TokenRecord, Usage, VersionRecord, now,
};

mod events;
mod open;
mod records;
mod snapshot;

use records::{
    activate, bump_generation, conflict_on_unique, load_service, parse_limits, require_tenant,
    strings, to_json,
};

/// The channel every change notifies on commit (Postgres only).
pub const CHANGES_CHANNEL: &str = "berth_generation";

/// How often a read-modify-write of one service is tried before giving up.
const ATTEMPTS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Woken by `NOTIFY` from any host (Postgres only).
    changed: Arc<Notify>,
}

/// A change that found its service changed under it on every attempt.
fn kept_changing(service: &str) -> StoreError {
    StoreError::Conflict(format!(
        "service `{service}` kept changing under this change; try again"
    ))
}

impl SqlStore {
    /// A transaction that will write. SQLite's are taken `IMMEDIATE`: a
    /// deferred one that reads and then writes fails with "database is
    /// locked" when another writer committed in between (busy_timeout cannot
    /// help it), which concurrent uploads did.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// A write whose loss in a crash of the database costs nothing but a
    /// repeat: an event's claim, renewal, failure or acknowledgement (a
    /// lost one makes the delivery again, which at-least-once allows).
    /// On Postgres it commits without waiting for the WAL flush, so these
    /// writes neither pay for an fsync each nor hold their row locks
    /// through one; a publish, which must be stored before it returns,
    /// never takes this path. SQLite's commits are cheap (WAL) and stay as
    /// they are.
    async fn begin_repeatable_write(&self) -> StoreResult<Transaction<'static, Any>> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Loads a service, changes it with `change` and saves it, again from a
    /// fresh read whenever another host changed it in between.
    async fn modify_service(
        &self,
        tenant: &str,
        service: &str,
        change: impl Fn(&mut ServiceRecord) -> StoreResult<()>,
    ) -> StoreResult<ServiceRecord> {
        for _ in 0..ATTEMPTS {
            let mut tx = self.begin_write().await?;
            let mut record = load_service(&mut tx, tenant, service).await?;
            change(&mut record)?;
            match Self::save_service(tx, record).await {
                Err(StoreError::Stale) => continue,
                other => return other,
            }
        }
        Err(kept_changing(service))
    }

    /// Writes a changed service and commits the change as a new generation.
    async fn save_service(
        mut tx: Transaction<'_, Any>,
        mut record: ServiceRecord,
    ) -> StoreResult<ServiceRecord> {
        record.updated_at = now();
        Self::write_service(&mut tx, &record).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn write_service(
        tx: &mut Transaction<'_, Any>,
        record: &ServiceRecord,
    ) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE services SET route = $1, deployment = $2, previous = $3, settings = $4, updated_at = $5, \
             revision = revision + 1 WHERE tenant = $6 AND name = $7 AND revision = $8",
        )
        .bind(&record.route)
        .bind(record.deployment.as_ref().map(to_json).transpose()?)
        .bind(record.previous.as_ref().map(to_json).transpose()?)
        .bind(to_json(&record.settings)?)
        .bind(record.updated_at)
        .bind(&record.tenant)
        .bind(&record.name)
        .bind(record.revision)
        .execute(&mut **tx)
        .await;
        let done = conflict_on_unique(result, || {
            format!(
                "route `{}` is already taken by another service of tenant `{}`",
                record.route.as_deref().unwrap_or(""),
                record.tenant
            )
        })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Stale);
        }
        Ok(())
    }

    async fn tenant_domains(&self, tenant: &str) -> StoreResult<Vec<String>> {
        let rows =
            sqlx::query("SELECT domain FROM tenant_domains WHERE tenant = $1 ORDER BY domain")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?;
        strings(&rows, "domain")
    }
}

#[async_trait::async_trait]
impl Store for SqlStore {
    async fn create_tenant(
        &self,
        name: &str,
        first_token: &TokenRecord,
        hash: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let result = sqlx::query("INSERT INTO tenants (name, created_at) VALUES ($1, $2)")
            .bind(name)
            .bind(now())
            .execute(&mut *tx)
            .await;
        conflict_on_unique(result, || format!("tenant `{name}` already exists"))?;
        insert_token(&mut tx, first_token, hash).await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ensure_tenant(&self, name: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tenants (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn tenant(&self, name: &str) -> StoreResult<TenantRecord> {
        let row = sqlx::query("SELECT * FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("tenant `{name}`")))?;
        let limits: String = row.try_get("limits")?;
        Ok(TenantRecord {
            name: row.try_get("name")?,
            domains: self.tenant_domains(name).await?,
            limits: parse_limits(&limits)?,
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
        limits: Option<berth_api::TenantLimits>,
    ) -> StoreResult<TenantRecord> {
        let mut tx = self.begin_write().await?;
        require_tenant(&mut tx, name).await?;
        if let Some(limits) = limits {
            sqlx::query("UPDATE tenants SET limits = $1 WHERE name = $2")
                .bind(to_json(&limits)?)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(domains) = domains {
            sqlx::query("DELETE FROM tenant_domains WHERE tenant = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            for domain in domains {
                let result =
                    sqlx::query("INSERT INTO tenant_domains (domain, tenant) VALUES ($1, $2)")
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
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM tenants WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("tenant `{name}`")));
        }
        sqlx::query("DELETE FROM deploy_events WHERE tenant = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_token(&self, token: &TokenRecord, hash: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        require_tenant(&mut tx, &token.tenant).await?;
        insert_token(&mut tx, token, hash).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_tokens(&self, tenant: &str) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT * FROM tokens WHERE tenant = $1 ORDER BY created_at, id")
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
        let done = sqlx::query("DELETE FROM tokens WHERE tenant = $1 AND id = $2")
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
        let row = sqlx::query("SELECT * FROM tokens WHERE hash = $1")
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
        let mut tx = self.begin_write().await?;
        require_tenant(&mut tx, tenant).await?;
        let existing = sqlx::query(
            "SELECT digest FROM versions WHERE tenant = $1 AND service = $2 AND label = $3",
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
            "INSERT INTO services (tenant, name, updated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(service)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO versions (tenant, service, label, digest, size, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
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
        for _ in 0..ATTEMPTS {
            let mut tx = self.begin_write().await?;
            let mut record = load_service(&mut tx, tenant, service).await?;
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
            sqlx::query("DELETE FROM versions WHERE tenant = $1 AND service = $2 AND label = $3")
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
                record.previous = None;
            }
            // Saved under the revision it was read at, so an activation of
            // this version by another host in between sends this round back.
            match Self::save_service(tx, record).await {
                Err(StoreError::Stale) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(kept_changing(service))
    }

    async fn service(&self, tenant: &str, service: &str) -> StoreResult<ServiceRecord> {
        let mut conn = self.pool.acquire().await?;
        load_service(&mut conn, tenant, service).await
    }

    async fn list_services(&self, tenant: &str) -> StoreResult<Vec<ServiceRecord>> {
        let mut conn = self.pool.acquire().await?;
        let names: Vec<String> =
            sqlx::query("SELECT name FROM services WHERE tenant = $1 ORDER BY name")
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
        self.modify_service(tenant, service, |record| {
            if let Some(route) = &update.route {
                record.route = Some(route.clone());
            }
            let events_before = record.settings.events();
            if let Some(change) = &update.settings {
                change.apply_to(&mut record.settings);
            }
            if let Some(deployment) = &update.deployment {
                let serving = record.deployment.clone();
                activate(record, deployment.clone())?;
                if record.deployment != serving {
                    // What the deployment replaced kept these events.
                    record.settings.previous_events = Some(events_before);
                }
            }
            Ok(())
        })
        .await
    }

    async fn rollback(
        &self,
        tenant: &str,
        service: &str,
        to: Option<&str>,
    ) -> StoreResult<ServiceRecord> {
        self.modify_service(tenant, service, |record| {
            let target = match to {
                Some(label) => Deployment::single(label),
                None => record.previous.clone().ok_or_else(|| {
                    StoreError::Conflict(format!(
                        "service `{service}` has no previous deployment to roll back to; name one with `to`"
                    ))
                })?,
            };
            activate(record, target)?;
            record.settings.roll_back_events();
            Ok(())
        })
        .await
    }

    async fn delete_service(&self, tenant: &str, service: &str) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM services WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(service)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "service `{service}` of tenant `{tenant}`"
            )));
        }
        sqlx::query("DELETE FROM deploy_events WHERE tenant = $1 AND service = $2")
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
            "SELECT (SELECT COUNT(*) FROM services WHERE tenant = $1) AS services, \
             COUNT(*) AS versions, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS bytes \
             FROM versions WHERE tenant = $2",
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
            "INSERT INTO deploy_events (tenant, service, at, action, detail, actor) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event.tenant)
        .bind(&event.service)
        .bind(event.at)
        .bind(&event.action)
        .bind(&event.detail)
        .bind(&event.actor)
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
            "SELECT at, action, detail, actor FROM deploy_events WHERE tenant = $1 AND service = $2 \
             ORDER BY at DESC LIMIT $3",
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
                    actor: row.try_get("actor")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        events.reverse();
        Ok(events)
    }

    async fn snapshot(&self) -> StoreResult<Snapshot> {
        snapshot::read(&self.pool).await
    }

    async fn digests(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT digest FROM versions")
            .fetch_all(&self.pool)
            .await?;
        strings(&rows, "digest")
    }

    async fn generation(&self) -> StoreResult<i64> {
        Ok(sqlx::query("SELECT value FROM generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?
            .try_get("value")?)
    }

    async fn purge_overwritten(&self) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            // Every connection zeroes what it frees (`secure_delete`); the
            // checkpoint moves the new pages over the old ones in the main
            // file and empties the write-ahead log.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    fn holds_blobs(&self) -> bool {
        // A single host keeps component bytes in its data directory only.
        self.backend == Backend::Postgres
    }

    async fn put_blob(&self, digest: &str, bytes: &[u8]) -> StoreResult<()> {
        // Putting the same bytes again renews them: an upload in progress
        // keeps its blob from being collected.
        sqlx::query(
            "INSERT INTO blobs (digest, bytes, put_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO UPDATE SET put_at = excluded.put_at",
        )
        .bind(digest)
        .bind(bytes)
        .bind(super::now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_unreferenced_blobs(&self, put_before: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM blobs WHERE put_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM versions WHERE versions.digest = blobs.digest)",
        )
        .bind(put_before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn blob(&self, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>("bytes")).transpose()?)
    }

    async fn wait_for_change(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.changed.notified()).await;
    }
}

async fn insert_token(
    tx: &mut Transaction<'_, Any>,
    token: &TokenRecord,
    hash: &str,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO tokens (id, tenant, description, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&token.id)
    .bind(&token.tenant)
    .bind(&token.description)
    .bind(hash)
    .bind(token.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
