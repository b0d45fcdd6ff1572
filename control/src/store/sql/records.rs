//! Rows to records and back, and the rules every backend's writes share.

use sqlx::{Any, Row, Transaction};

use crate::store::{
    Deployment, ServiceRecord, ServiceSettings, StoreError, StoreResult, VersionRecord,
};

/// A write whose unique-constraint failure means a conflict the caller
/// names.
pub(super) fn conflict_on_unique<T>(
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

/// One text column of every row.
pub(super) fn strings(rows: &[sqlx::any::AnyRow], column: &str) -> StoreResult<Vec<String>> {
    Ok(rows
        .iter()
        .map(|r| r.try_get::<String, _>(column))
        .collect::<Result<_, _>>()?)
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// A tenant's stored limits; `null` (which an older Berth stored for
/// "defaults") is none set.
pub(super) fn parse_limits(text: &str) -> StoreResult<berth_api::TenantLimits> {
    Ok(parse_json::<Option<berth_api::TenantLimits>>("tenant limits", text)?.unwrap_or_default())
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) async fn bump_generation(tx: &mut Transaction<'_, Any>) -> StoreResult<()> {
    sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    if tx.backend_name() == "PostgreSQL" {
        // Delivered when the transaction commits, and not at all if it
        // does not.
        sqlx::raw_sql("NOTIFY berth_generation")
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub(super) async fn require_tenant(tx: &mut Transaction<'_, Any>, tenant: &str) -> StoreResult<()> {
    let found = sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
        .bind(tenant)
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound(format!("tenant `{tenant}`"))),
    }
}

pub(super) fn service_from_row(row: &sqlx::any::AnyRow) -> StoreResult<ServiceRecord> {
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
        revision: row.try_get("revision")?,
    })
}

pub(super) fn version_from_row(row: &sqlx::any::AnyRow) -> StoreResult<VersionRecord> {
    let size: i64 = row.try_get("size")?;
    Ok(VersionRecord {
        label: row.try_get("label")?,
        digest: row.try_get("digest")?,
        size: u64::try_from(size).unwrap_or(0),
        created_at: row.try_get("created_at")?,
    })
}

pub(super) async fn load_service(
    conn: &mut sqlx::AnyConnection,
    tenant: &str,
    service: &str,
) -> StoreResult<ServiceRecord> {
    let row = sqlx::query("SELECT * FROM services WHERE tenant = $1 AND name = $2")
        .bind(tenant)
        .bind(service)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("service `{service}` of tenant `{tenant}`")))?;
    let mut record = service_from_row(&row)?;
    let rows = sqlx::query(
        "SELECT * FROM versions WHERE tenant = $1 AND service = $2 ORDER BY created_at, label",
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
pub(super) fn activate(record: &mut ServiceRecord, deployment: Deployment) -> StoreResult<()> {
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
