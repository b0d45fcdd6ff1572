//! Request spans exported over OTLP/HTTP (protobuf) when `--otlp-endpoint`
//! is given; without it no span is built at all.
//!
//! The host already owns each request's W3C trace context: it continues the
//! client's `traceparent` and hands children of it to guests and callees
//! before the response exists. So a span here is that context plus
//! OpenTelemetry HTTP semantic-convention attributes, sent in batches by one
//! background task; the wire types are `opentelemetry-proto`'s.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

use crate::capabilities::calls::TraceContext;

/// Spans waiting for the exporter; past this they are dropped (and counted)
/// rather than slowing requests down.
const QUEUE: usize = 8192;
/// Most spans in one export request.
const BATCH: usize = 512;
/// How long a span waits at most before it is sent.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static EXPORTER: OnceLock<mpsc::Sender<Span>> = OnceLock::new();

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("--otlp-endpoint `{0}` is not an http:// or https:// URL")]
    BadEndpoint(String),
    #[error("the OTLP exporter is already running")]
    AlreadyRunning,
}

/// Where spans go: the collector's base URL (`http://collector:4318`) or
/// its full traces URL (`.../v1/traces`).
pub fn traces_url(endpoint: &str) -> Result<reqwest::Url, OtlpError> {
    let bad = || OtlpError::BadEndpoint(endpoint.to_string());
    let trimmed = endpoint.trim_end_matches('/');
    let full = if trimmed.ends_with("/v1/traces") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/v1/traces")
    };
    let url = reqwest::Url::parse(&full).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad());
    }
    Ok(url)
}

/// Starts the exporter task; must be called inside the runtime.
pub fn start(url: reqwest::Url) -> Result<(), OtlpError> {
    let (sender, receiver) = mpsc::channel(QUEUE);
    EXPORTER
        .set(sender)
        .map_err(|_| OtlpError::AlreadyRunning)?;
    tokio::spawn(export_loop(url, receiver));
    Ok(())
}

/// Whether spans are exported; callers skip building them otherwise.
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

async fn export_loop(url: reqwest::Url, mut receiver: mpsc::Receiver<Span>) {
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
    loop {
        let first = receiver.recv().await;
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(span)) => batch.push(span),
                Ok(None) | Err(_) => break,
            }
        }
        let count = batch.len();
        let body = envelope(std::mem::take(&mut batch)).encode_to_vec();
        let sent = client
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match sent {
            Ok(_) => failing = false,
            // One warning per outage, not one per batch.
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%url, %error, spans = count, "cannot export spans over OTLP; dropping them");
            }
            Err(_) => {}
        }
        metrics::counter!("berth_spans_exported_total", "result" => if failing { "error" } else { "ok" })
            .increment(count as u64);
    }
}

fn envelope(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", Value::Str("berth".into())),
                    attribute(
                        "service.version",
                        Value::Str(env!("CARGO_PKG_VERSION").into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "berth".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// An attribute value.
pub enum Value {
    Str(String),
    Int(i64),
}

fn attribute(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A server span being recorded: one request a guest handles, from a
/// client or from another service.
pub struct SpanRecord {
    trace: TraceContext,
    name: String,
    start: SystemTime,
    attributes: Vec<KeyValue>,
}

impl SpanRecord {
    /// A span for a request, if spans are exported. `route` is the prefix
    /// the request was routed by (OpenTelemetry's `http.route`).
    pub fn start(trace: TraceContext, method: &http::Method, route: &str) -> Option<Self> {
        if !enabled() || !trace.sampled {
            return None;
        }
        Some(Self {
            trace,
            name: format!("{method} {route}"),
            start: SystemTime::now(),
            attributes: vec![
                attribute("http.request.method", Value::Str(method.to_string())),
                attribute("http.route", Value::Str(route.to_string())),
            ],
        })
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.attributes.push(attribute(key, value));
    }

    /// Ends the span and queues it for export.
    pub fn finish(mut self, status: http::StatusCode, body_bytes: u64) {
        let code = i64::from(status.as_u16());
        self.set("http.response.status_code", Value::Int(code));
        self.set(
            "http.response.body.size",
            Value::Int(i64::try_from(body_bytes).unwrap_or(i64::MAX)),
        );
        // A server span is an error on 5xx only (OpenTelemetry HTTP conventions).
        let status = status.is_server_error().then(|| Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        });
        let span = Span {
            trace_id: self.trace.trace_id.to_be_bytes().to_vec(),
            span_id: self.trace.span_id.to_be_bytes().to_vec(),
            parent_span_id: self
                .trace
                .parent_span_id
                .map(|id| id.to_be_bytes().to_vec())
                .unwrap_or_default(),
            name: self.name,
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: unix_nanos(self.start),
            end_time_unix_nano: unix_nanos(SystemTime::now()),
            attributes: self.attributes,
            status,
            ..Default::default()
        };
        if let Some(sender) = EXPORTER.get()
            && sender.try_send(span).is_err()
        {
            metrics::counter!("berth_spans_exported_total", "result" => "dropped").increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_traces_urls() {
        let url = |s| traces_url(s).map(|u| u.to_string());
        assert_eq!(
            url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            url("http://c:4318/v1/traces/").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert!(url("ftp://c").is_err());
        assert!(url("not a url").is_err());
    }
}
