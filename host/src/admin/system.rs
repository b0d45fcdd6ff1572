//! Health, readiness and metrics: unauthenticated, for probes and scrapers.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::AdminState;
use super::problem::{REQUEST_ID, problem_response};

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()),
    responses((status = 200, description = "The host is alive", body = String)))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// The host has restored its state and accepts traffic. A host whose shared
/// state store is unreachable stays ready, since it serves on from the state
/// it last synced, and says that changes are refused until the store is
/// back.
#[utoipa::path(get, path = "/readyz", tag = "system", security(()),
    responses(
        (status = 200, description = "Ready; the body says whether changes are accepted", body = String),
        (status = 503, description = "Starting or draining", body = String)))]
pub async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    if !state.ready.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    } else if state.control.store_reachable() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::OK,
            "ready; state store unreachable: serving the last synced state, changes refused\n",
        )
            .into_response()
    }
}

/// Prometheus text exposition of the host's metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let (in_use, capacity) = state.control.host().instance_pool();
    crate::telemetry::metrics::instance_pool(in_use, capacity);
    let body = state
        .metrics
        .as_ref()
        .map(metrics_exporter_prometheus::PrometheusHandle::render)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], body).into_response()
}

pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

pub async fn not_found() -> Response {
    let id = REQUEST_ID.try_with(|id| id.to_string()).unwrap_or_default();
    problem_response(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such admin route; see /v1/openapi.json".into(),
        id,
    )
}
