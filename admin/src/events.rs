//! `/v1/tenants/{tenant}/topics` and `/schedules`, `/subscriptions`:
//! publishing, backlogs, dead letters and their redrive.

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use berth_api::Problem;
use berth_api::events::{
    DeadLetterList, PublishedEvent, Redriven, ScheduleList, SubscriptionList, TopicList, TopicView,
};
use berth_control::ControlError;
use berth_control::events::cloudevents::header_text;
use berth_control::events::{MAX_PAYLOAD_BYTES, Publish};
use http::{HeaderMap, StatusCode};
use std::sync::Arc;

use super::AdminState;
use super::auth::Caller;
use super::problem::ApiError;

/// Publish an event to a topic of the tenant: the payload as the body,
/// `ce-type` (required), `ce-source`, `ce-id` and `partition-key` as
/// headers. It is stored before the answer; each subscription then gets it
/// as a CloudEvents request.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/topics/{topic}/events", tag = "events",
    params(("tenant" = String, Path), ("topic" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 202, body = PublishedEvent), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 413, body = Problem)))]
pub async fn publish(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, topic)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PublishedEvent>), ApiError> {
    caller.require_tenant(&tenant)?;
    state.control.tenant(&tenant).await?;
    let event_type = header_text(&headers, "ce-type").ok_or_else(|| {
        ControlError::InvalidInput("the `ce-type` header is required".to_string())
    })?;
    let payload = to_bytes(body, MAX_PAYLOAD_BYTES).await.map_err(|_| {
        ApiError::PayloadTooLarge(format!(
            "an event's payload is at most {MAX_PAYLOAD_BYTES} bytes"
        ))
    })?;
    let publish = Publish {
        event_type,
        source: header_text(&headers, "ce-source"),
        id: header_text(&headers, "ce-id"),
        partition_key: header_text(&headers, "partition-key"),
        content_type: header_text(&headers, "content-type"),
        traceparent: header_text(&headers, "traceparent"),
        payload: payload.to_vec(),
        bridged: false,
    };
    let published = state
        .control
        .events()
        .publish(&tenant, &topic, publish)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(published)))
}

/// The tenant's topics, with backlog, oldest waiting delivery and dead
/// letters.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/topics", tag = "events",
    params(("tenant" = String, Path)),
    responses((status = 200, body = TopicList), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn topics(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<TopicList>, ApiError> {
    caller.require_tenant(&tenant)?;
    state.control.tenant(&tenant).await?;
    let topics = state.control.events().topics(&tenant).await?;
    Ok(Json(TopicList { topics }))
}

/// One topic.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/topics/{topic}", tag = "events",
    params(("tenant" = String, Path), ("topic" = String, Path)),
    responses((status = 200, body = TopicView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
pub async fn topic(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, topic)): Path<(String, String)>,
) -> Result<Json<TopicView>, ApiError> {
    caller.require_tenant(&tenant)?;
    Ok(Json(state.control.events().topic(&tenant, &topic).await?))
}

/// The topic's dead letters: deliveries that ran out of attempts.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/topics/{topic}/dead-letters", tag = "events",
    params(("tenant" = String, Path), ("topic" = String, Path)),
    responses((status = 200, body = DeadLetterList), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn dead_letters(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, topic)): Path<(String, String)>,
) -> Result<Json<DeadLetterList>, ApiError> {
    caller.require_tenant(&tenant)?;
    let dead_letters = state.control.events().dead_letters(&tenant, &topic).await?;
    Ok(Json(DeadLetterList { dead_letters }))
}

/// Send the topic's dead letters again, from their first attempt.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/topics/{topic}/dead-letters/redrive", tag = "events",
    params(("tenant" = String, Path), ("topic" = String, Path)),
    responses((status = 200, body = Redriven), (status = 400, body = Problem),
        (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn redrive(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path((tenant, topic)): Path<(String, String)>,
) -> Result<Json<Redriven>, ApiError> {
    caller.require_tenant(&tenant)?;
    let redriven = state.control.events().redrive(&tenant, &topic).await?;
    tracing::info!(%tenant, %topic, redriven = redriven.redriven, "dead letters redriven");
    Ok(Json(redriven))
}

/// The tenant's schedules, with their last and next ticks.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/schedules", tag = "events",
    params(("tenant" = String, Path)),
    responses((status = 200, body = ScheduleList), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn schedules(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<ScheduleList>, ApiError> {
    caller.require_tenant(&tenant)?;
    let schedules = state.control.events().schedules(&tenant).await?;
    Ok(Json(ScheduleList { schedules }))
}

/// The tenant's subscriptions.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/subscriptions", tag = "events",
    params(("tenant" = String, Path)),
    responses((status = 200, body = SubscriptionList), (status = 401, body = Problem), (status = 403, body = Problem)))]
pub async fn subscriptions(
    State(state): State<Arc<AdminState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> Result<Json<SubscriptionList>, ApiError> {
    caller.require_tenant(&tenant)?;
    let subscriptions = state.control.events().subscriptions(&tenant);
    Ok(Json(SubscriptionList { subscriptions }))
}
