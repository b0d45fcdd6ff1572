//! What a tenant's services are doing: usage stats computed by the host,
//! the deploy history, and the tenant's slice of `/metrics`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use berth_api::Problem;
use berth_api::observe::{QuotaUse, ServiceStatsView, TenantStatsView, TenantUsageView};
use berth_api::services::{DeployEventView, HistoryView};
use http::header;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

use super::AdminState;
use super::auth::Caller;
use super::problem::{ApiError, stored};
use berth_runtime::telemetry::metrics::tenant_view;

fn service_stats(
    state: &AdminState,
    tenant: &str,
    service: &str,
) -> Result<ServiceStatsView, ApiError> {
    let stats = state
        .control
        .host()
        .telemetry()
        .stats(tenant, service)
        .unwrap_or_default();
    Ok(ServiceStatsView {
        service: stored(service)?,
        stats: stats.summary(),
    })
}

/// Request rate, error rate, latency percentiles, guest CPU time and memory
/// of one service over the last 1, 5 and 15 minutes, with a 5-second series.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/services/{service}/stats", tag = "observability",
    params(("tenant" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = ServiceStatsView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn service_stats_route(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service)): Path<(String, String)>,
) -> Result<Json<ServiceStatsView>, ApiError> {
    caller.require_tenant(&tenant)?;
    state.control.service(&tenant, &service).await?;
    Ok(Json(service_stats(&state, &tenant, &service)?))
}

/// The same figures for every service of the tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/stats", tag = "observability",
    params(("tenant" = String, Path)),
    responses((status = 200, body = TenantStatsView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn tenant_stats(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<TenantStatsView>, ApiError> {
    caller.require_tenant(&tenant)?;
    let services = state.control.services(&tenant).await?;
    Ok(Json(TenantStatsView {
        services: services
            .iter()
            .map(|s| service_stats(&state, &tenant, &s.name))
            .collect::<Result<_, _>>()?,
    }))
}

/// The tenant's use of its quotas: requests running now, the largest
/// instance memory of the last 15 minutes, stored components, services and
/// versions, each against its limit.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/usage", tag = "observability",
    params(("tenant" = String, Path)),
    responses((status = 200, body = TenantUsageView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn tenant_usage(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<TenantUsageView>, ApiError> {
    caller.require_tenant(&tenant)?;
    let (usage, quotas) = state.control.usage_and_quotas(&tenant).await?;
    let services = state.control.services(&tenant).await?;
    let mut memory = 0;
    for service in &services {
        let stats = service_stats(&state, &tenant, &service.name)?;
        if let Some(window) = stats.stats.windows.get("15m") {
            memory = memory.max(window.memory_peak_bytes);
        }
    }
    let used = |used: u64, limit: u64| QuotaUse { used, limit };
    Ok(Json(TenantUsageView {
        concurrency: used(
            state.control.in_flight(&tenant) as u64,
            u64::from(quotas.concurrency),
        ),
        memory_bytes: used(memory, quotas.instance.memory_bytes),
        storage_bytes: used(usage.bytes, quotas.storage_bytes),
        services: used(u64::from(usage.services), u64::from(quotas.services)),
        versions: used(u64::from(usage.versions), u64::from(quotas.versions)),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Most events returned, newest kept (default 50, at most 1000).
    limit: Option<u32>,
}

/// The service's deploy history, oldest first: uploads, activations,
/// splits, rollbacks and configuration changes.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/services/{service}/history", tag = "observability",
    params(("tenant" = String, Path), ("service" = String, Path), HistoryQuery),
    responses((status = 200, body = HistoryView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn history(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service)): Path<(String, String)>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    caller.require_tenant(&tenant)?;
    let limit = query.limit.unwrap_or(50).clamp(1, 1000);
    let events = state.control.history(&tenant, &service, limit).await?;
    Ok(Json(HistoryView {
        events: events
            .into_iter()
            .map(|e| DeployEventView {
                at: e.at,
                action: e.action,
                detail: e.detail,
                actor: e.actor,
            })
            .collect(),
    }))
}

/// The tenant's series of `/metrics`, in the same Prometheus text format.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/metrics", tag = "observability",
    params(("tenant" = String, Path)),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn tenant_metrics(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_tenant(&tenant)?;
    state.control.tenant(&tenant).await?;
    let text = state
        .metrics
        .as_ref()
        .map(|handle| {
            tenant_view(
                &berth_runtime::telemetry::incarnation::scrub(&handle.render()),
                &tenant,
            )
        })
        .unwrap_or_default();
    Ok((
        [(header::CONTENT_TYPE, super::system::PROMETHEUS_TEXT)],
        text,
    )
        .into_response())
}
