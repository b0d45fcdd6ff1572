//! `/v1/tenants/{tenant}/services`: versions, deployments, rollbacks, logs.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use berth_api::services::{
    LogLine, RollbackRequest, ServiceChange, ServiceView, UploadedVersion, VersionView,
};
use berth_api::{Problem, ServiceName, VersionLabel};
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::AdminState;
use super::auth::Caller;
use super::problem::{ApiError, stored};
use berth_control::ControlError;
use berth_control::actor::acting_as;
use berth_control::store::blobs::BlobError;
use berth_control::store::{
    Deployment, ServiceRecord, ServiceUpdate, SettingsChange, VersionRecord,
};

/// The API's view of a stored service.
fn service_view(record: ServiceRecord, state: &AdminState) -> Result<ServiceView, ApiError> {
    let (active, split) = match &record.deployment {
        Some(d) => match d.active() {
            Some(label) => (Some(stored(label)?), None),
            None => (None, Some(weights(d)?)),
        },
        None => (None, None),
    };
    let url = match (&record.route, &record.deployment) {
        (Some(route), Some(_)) => Some(service_url(state, &record.tenant, route)),
        _ => None,
    };
    let declared = state.control.is_declared(&record.tenant, &record.name);
    Ok(ServiceView {
        declared,
        tenant: stored(&record.tenant)?,
        name: stored(&record.name)?,
        route: record.route,
        active,
        split,
        previous: record.previous.as_ref().map(weights).transpose()?,
        versions: record
            .versions
            .into_iter()
            .map(version_view)
            .collect::<Result<_, _>>()?,
        config: record.settings.config,
        secrets: record.settings.secrets.into_keys().collect(),
        buckets: record.settings.buckets,
        limits: record.settings.limits,
        allowed_outbound_hosts: record.settings.allowed_outbound_hosts,
        env: record.settings.env,
        reuse: record.settings.reuse,
        schedules: record.settings.schedules,
        subscriptions: record.settings.subscriptions,
        url,
        updated_at: record.updated_at,
    })
}

fn weights(deployment: &Deployment) -> Result<BTreeMap<VersionLabel, u32>, ApiError> {
    deployment
        .0
        .iter()
        .map(|(label, weight)| Ok((stored(label)?, *weight)))
        .collect()
}

fn version_view(record: VersionRecord) -> Result<VersionView, ApiError> {
    Ok(VersionView {
        label: stored(&record.label)?,
        digest: stored(&record.digest)?,
        size: record.size,
        created_at: record.created_at,
    })
}

fn service_url(state: &AdminState, tenant: &str, route: &str) -> String {
    let port = state
        .data_plane
        .rsplit_once(':')
        .map_or("", |(_, port)| port);
    let base = &state.control.settings().base_domain;
    if tenant == berth_runtime::host::DEFAULT_TENANT {
        format!("http://{}{route}", state.data_plane)
    } else {
        format!("http://{tenant}.{base}:{port}{route}")
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct LogQuery {
    /// Keep the response open and stream new lines as they are written.
    #[serde(default)]
    follow: bool,
    /// How many recent lines to start with (at most 1000).
    limit: Option<usize>,
}

/// Every service of a tenant.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/services", tag = "services",
    params(("tenant" = String, Path)),
    responses((status = 200, body = [ServiceView]), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn list_services(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<ServiceView>>, ApiError> {
    caller.require_tenant(&tenant)?;
    let services = state.control.services(&tenant).await?;
    Ok(Json(
        services
            .into_iter()
            .map(|s| service_view(s, &state))
            .collect::<Result<_, _>>()?,
    ))
}

/// One service: its versions, what serves, its route.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/services/{service}", tag = "services",
    params(("tenant" = String, Path), ("service" = String, Path)),
    responses((status = 200, body = ServiceView), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_service(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service)): Path<(String, String)>,
) -> Result<Json<ServiceView>, ApiError> {
    caller.require_tenant(&tenant)?;
    let record = state.control.service(&tenant, &service).await?;
    Ok(Json(service_view(record, &state)?))
}

/// Set the route, activate a version or a split, and set config, limits and
/// outbound hosts, all in one atomic change.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/services/{service}", tag = "services",
    params(("tenant" = String, Path), ("service" = String, Path)), request_body = ServiceChange,
    responses((status = 200, body = ServiceView), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn put_service(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service)): Path<(String, String)>,
    body: Result<Json<ServiceChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ServiceView>, ApiError> {
    caller.require_tenant(&tenant)?;
    let Json(change) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let deployment = match (change.version, change.split) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give either `version` or `split`, not both".into(),
            ));
        }
        (Some(label), None) => Some(Deployment::single(&label)),
        (None, Some(split)) => Some(Deployment(
            split.into_iter().map(|(l, w)| (l.into(), w)).collect(),
        )),
        (None, None) => None,
    };
    let mut secrets = BTreeMap::new();
    for (key, value) in change.secrets.unwrap_or_default() {
        let sealed = match value {
            Some(value) => {
                let scope = berth_control::secrets::SecretScope {
                    tenant: &tenant,
                    service: &service,
                    key: &key,
                };
                Some(state.control.seal(scope, &value)?)
            }
            None => None,
        };
        secrets.insert(key, sealed);
    }
    let settings = SettingsChange {
        config: change.config,
        limits: change.limits,
        allowed_outbound_hosts: change.allowed_outbound_hosts,
        buckets: change.buckets,
        secrets,
        env: change.env,
        reuse: change.reuse,
        schedules: change.schedules,
        subscriptions: change.subscriptions,
    };
    let changes_settings = settings.config.is_some()
        || settings.limits.is_some()
        || settings.allowed_outbound_hosts.is_some()
        || settings.buckets.is_some()
        || settings.env.is_some()
        || settings.reuse.is_some()
        || settings.schedules.is_some()
        || settings.subscriptions.is_some()
        || !settings.secrets.is_empty();
    let update = ServiceUpdate {
        route: change.route,
        deployment,
        settings: changes_settings.then_some(settings),
    };
    let record = acting_as(
        caller.actor(),
        state.control.configure(&tenant, &service, update),
    )
    .await?;
    tracing::info!(%tenant, %service, deployment = ?record.deployment, "service deployed");
    Ok(Json(service_view(record, &state)?))
}

/// Delete a service and its versions; it stops answering at once.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/services/{service}", tag = "services",
    params(("tenant" = String, Path), ("service" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete_service(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_tenant(&tenant)?;
    acting_as(
        caller.actor(),
        state.control.delete_service(&tenant, &service),
    )
    .await?;
    tracing::info!(%tenant, %service, "service deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Upload a version: the component's bytes as the body (`application/wasm`).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/services/{service}/versions/{label}", tag = "services",
    params(("tenant" = String, Path), ("service" = String, Path), ("label" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 201, description = "Stored", body = UploadedVersion),
        (status = 200, description = "The same bytes were already stored under this label", body = UploadedVersion),
        (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 413, body = Problem),
        (status = 415, body = Problem), (status = 422, body = Problem)))]
pub async fn upload_version(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service, label)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<UploadedVersion>), ApiError> {
    caller.require_tenant(&tenant)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(essence, "application/wasm" | "application/octet-stream") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "upload the component as `application/wasm`, not `{}`",
            content_type.chars().take(80).collect::<String>()
        )));
    }
    let limit = state.control.settings().max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit) {
        discard_some(&mut stream).await;
        return Err(ControlError::Upload(BlobError::TooLarge { limit }).into());
    }
    let (service, label): (ServiceName, VersionLabel) = (service.parse()?, label.parse()?);
    let upload = state
        .control
        .upload_version(&tenant, &service, &label, &mut stream);
    let uploaded = match acting_as(caller.actor(), upload).await {
        Ok(uploaded) => uploaded,
        Err(error) => {
            if matches!(error, ControlError::Upload(BlobError::TooLarge { .. })) {
                discard_some(&mut stream).await;
            }
            return Err(error.into());
        }
    };
    let status = if uploaded.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(UploadedVersion {
            label,
            digest: stored(&uploaded.version.digest)?,
            size: uploaded.version.size,
            compile_ms: uploaded.compile_ms,
        }),
    ))
}

/// Reads and drops a bounded amount of a refused upload, so a client still
/// sending gets to read the 413 instead of a broken pipe; past the bound the
/// connection is closed on it.
async fn discard_some(stream: &mut axum::body::BodyDataStream) {
    const DISCARD_BYTES: usize = 8 << 20;
    let mut left = DISCARD_BYTES;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(chunk)) = stream.next().await {
            if chunk.len() >= left {
                break;
            }
            left -= chunk.len();
        }
    })
    .await;
}

/// Delete a version that is not serving.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/services/{service}/versions/{label}", tag = "services",
    params(("tenant" = String, Path), ("service" = String, Path), ("label" = String, Path)),
    responses((status = 204), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete_version(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service, label)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_tenant(&tenant)?;
    let deletion = state.control.delete_version(&tenant, &service, &label);
    acting_as(caller.actor(), deletion).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Serve an earlier version again: `to`, or the previous deployment.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/services/{service}/rollback", tag = "services",
    params(("tenant" = String, Path), ("service" = String, Path)), request_body = RollbackRequest,
    responses((status = 200, body = ServiceView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn rollback(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service)): Path<(String, String)>,
    body: Option<Json<RollbackRequest>>,
) -> Result<Json<ServiceView>, ApiError> {
    caller.require_tenant(&tenant)?;
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let rollback = state
        .control
        .rollback(&tenant, &service, request.to.as_deref());
    let record = acting_as(caller.actor(), rollback).await?;
    tracing::info!(%tenant, %service, deployment = ?record.deployment, "service rolled back");
    Ok(Json(service_view(record, &state)?))
}

/// The service's recent guest output, one JSON object per line; with
/// `follow=true` the response stays open and streams new lines.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/services/{service}/logs", tag = "services",
    params(("tenant" = String, Path), ("service" = String, Path), LogQuery),
    responses((status = 200, description = "Newline-delimited JSON log lines", body = LogLine, content_type = "application/x-ndjson"),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn logs(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, service)): Path<(String, String)>,
    Query(query): Query<LogQuery>,
) -> Result<Response, ApiError> {
    caller.require_tenant(&tenant)?;
    state.control.service(&tenant, &service).await?;
    let log = state.control.logbook().service(&tenant, &service);
    let limit = query
        .limit
        .unwrap_or(100)
        .min(berth_runtime::logbook::LINES_KEPT);
    let follower = query.follow.then(|| log.follow());
    let mut text = String::new();
    for line in log.recent(limit) {
        if let Ok(json) = serde_json::to_string(&line) {
            text.push_str(&json);
            text.push('\n');
        }
    }
    let head =
        futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(text)) });
    let body = match follower {
        None => Body::from_stream(head),
        Some(receiver) => {
            let live = tokio_stream::wrappers::BroadcastStream::new(receiver).filter_map(
                |line| async move {
                    // A follower that fell behind skips what it missed.
                    let line = line.ok()?;
                    let mut json = serde_json::to_string(&line).ok()?;
                    json.push('\n');
                    Some(Ok(bytes::Bytes::from(json)))
                },
            );
            Body::from_stream(head.chain(live))
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
