//! The whole deployed state, read in one transaction for a routing table.

use sqlx::{AnyPool, Row};
use std::collections::HashMap;

use super::records::{parse_limits, service_from_row, version_from_row};
use crate::store::{Snapshot, StoreResult, TenantRecord};

/// Every tenant and every service with a deployment, with its versions.
pub(super) async fn read(pool: &AnyPool) -> StoreResult<Snapshot> {
    // One read transaction, so the tenants and services agree.
    let mut tx = pool.begin().await?;
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
            limits: parse_limits(&limits)?,
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
    let index: HashMap<(String, String), usize> = services
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
