//! `/v1/tenants/{tenant}/stats` and `.../services/{service}/stats`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::names::ServiceName;

/// A service's figures over the last 1, 5 and 15 minutes, with a series of
/// short slots.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatsSummary {
    /// The length of one slot of `series`.
    pub slot_seconds: u64,
    /// `1m`, `5m` and `15m`.
    pub windows: BTreeMap<String, WindowFigures>,
    pub series: Vec<SeriesPoint>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowFigures {
    pub requests: u64,
    pub requests_per_second: f64,
    /// Requests answered 5xx.
    pub errors: u64,
    /// `errors / requests`, 0 without requests.
    pub error_rate: f64,
    /// Latency percentiles, to within one √2-wide bucket (an upper bound).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Guest CPU time, in total and per request that ran a guest.
    pub cpu_seconds: f64,
    pub cpu_ms_per_request: Option<f64>,
    /// The largest memory one instance held.
    pub memory_peak_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SeriesPoint {
    /// Start of the slot, in seconds since the Unix epoch.
    pub at: u64,
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Guest CPU time per request that ran a guest in the slot.
    #[serde(default)]
    pub cpu_ms_per_request: Option<f64>,
    /// The largest memory one instance held in the slot.
    #[serde(default)]
    pub memory_peak_bytes: u64,
}

/// One service's figures.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceStatsView {
    pub service: ServiceName,
    #[serde(flatten)]
    pub stats: StatsSummary,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantStatsView {
    pub services: Vec<ServiceStatsView>,
}

/// One quota: how much of it is in use, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QuotaUse {
    pub used: u64,
    pub limit: u64,
}

/// `GET /v1/tenants/{tenant}/usage`: the tenant's use of its quotas.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantUsageView {
    /// Requests running now on this host, against the tenant's concurrency.
    pub concurrency: QuotaUse,
    /// The largest memory one instance held over the last 15 minutes,
    /// against the per-instance memory limit.
    pub memory_bytes: QuotaUse,
    /// Component bytes stored over all versions.
    pub storage_bytes: QuotaUse,
    pub services: QuotaUse,
    pub versions: QuotaUse,
}
