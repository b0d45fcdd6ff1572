//! An event as the request its subscriber receives: the CloudEvents 1.0
//! HTTP binding in binary mode (the attributes as `ce-` headers, the
//! payload as the body, its media type as `content-type`).

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderName, HeaderValue, Method, Request};

use crate::store::events::NewMessage;

/// The CloudEvents version this binding speaks.
pub const SPEC_VERSION: &str = "1.0";

/// A new event id: 128 random bits in hex.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: a unique, if guessable, id still de-duplicates.
        let now = crate::store::now_millis();
        bytes[..8].copy_from_slice(&now.to_be_bytes());
        bytes[8..].copy_from_slice(&berth_runtime::random::roll().to_be_bytes());
    }
    hex::encode(bytes)
}

/// RFC 3339, as `ce-time` carries it.
pub fn time_text(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The request a subscriber at `path` of `service` receives for `message`;
/// `attempt` counts from 1.
pub fn request(
    message: &NewMessage,
    service: &str,
    path: &str,
    attempt: u32,
) -> Result<Request<Bytes>, http::Error> {
    let mut builder = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{service}.internal{path}"));
    let headers = [
        ("ce-specversion", SPEC_VERSION.to_string()),
        ("ce-id", message.id.clone()),
        ("ce-source", message.source.clone()),
        ("ce-type", message.event_type.clone()),
        ("ce-time", time_text(message.time_ms)),
        ("x-berth-topic", message.topic.clone()),
        ("x-berth-delivery-attempt", attempt.to_string()),
    ];
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    if let Some(key) = &message.partition_key {
        // The CloudEvents partitioning extension.
        builder = builder.header("ce-partitionkey", key);
    }
    if let Some(kind) = &message.content_type {
        builder = builder.header(http::header::CONTENT_TYPE, kind);
    }
    if let Some(parent) = &message.traceparent {
        builder = builder.header("traceparent", parent);
    }
    builder.body(Bytes::from(message.payload.clone()))
}

/// A header's value as text, when it is one.
pub fn header_text(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(HeaderName::from_bytes(name.as_bytes()).ok()?)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_string)
}
