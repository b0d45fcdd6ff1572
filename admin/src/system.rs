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
    match readiness(&state) {
        Readiness::Starting => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
        Readiness::Ready => (StatusCode::OK, "ready\n").into_response(),
        Readiness::StoreUnreachable => (
            StatusCode::OK,
            "ready; state store unreachable: serving the last synced state, changes refused\n",
        )
            .into_response(),
    }
}

enum Readiness {
    Starting,
    Ready,
    StoreUnreachable,
}

fn readiness(state: &AdminState) -> Readiness {
    if !state.ready.load(Ordering::Acquire) {
        Readiness::Starting
    } else if state.control.store_reachable() {
        Readiness::Ready
    } else {
        Readiness::StoreUnreachable
    }
}

/// The host accepts admin writes: it is ready and its state store answers.
/// A fleet host whose shared store is unreachable answers 503 here while
/// `/readyz` stays 200, so a load balancer in front of the admin API can
/// send writes to hosts that can take them without taking any host out of
/// the data plane.
#[utoipa::path(get, path = "/readyz/admin", tag = "system", security(()),
    responses(
        (status = 200, description = "Admin writes are accepted", body = String),
        (status = 503, description = "Starting, draining, or the state store is unreachable", body = String)))]
pub async fn readyz_admin(State(state): State<Arc<AdminState>>) -> Response {
    match readiness(&state) {
        Readiness::Starting => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
        Readiness::Ready => (StatusCode::OK, "admin writes accepted\n").into_response(),
        Readiness::StoreUnreachable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "state store unreachable: changes refused\n",
        )
            .into_response(),
    }
}

/// Prometheus text exposition of the host's metrics.
#[utoipa::path(get, path = "/metrics", tag = "system", security(()),
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let (in_use, capacity) = state.control.host().instance_pool();
    berth_runtime::telemetry::metrics::instance_pool(in_use, capacity);
    let body = state
        .metrics
        .as_ref()
        .map(|handle| berth_runtime::telemetry::incarnation::scrub(&handle.render()))
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
