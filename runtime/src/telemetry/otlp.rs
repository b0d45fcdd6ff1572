//! Request spans exported over OTLP/HTTP (protobuf) when `--otlp-endpoint`
//! is given; without it no span is built at all.
//!
//! The host already owns each request's W3C trace context: it continues the
//! client's `traceparent` and hands children of it to guests and callees
//! before the response exists. So a span here is that context plus
//! OpenTelemetry HTTP semantic-convention attributes, sent in batches by one
//! background task.
//!
//! Each span is encoded to protobuf as it ends, straight into one buffer:
//! building `opentelemetry-proto`'s message structs per request (a `String`
//! per attribute key and value) and encoding them cost about a tenth of the
//! host's throughput on a small service. The request envelope around the
//! spans is built from those structs, once per batch, and the tests decode
//! everything with them.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

use super::trace_context::TraceContext;

/// Spans waiting for the exporter; past this they are dropped (and counted)
/// rather than slowing requests down.
const QUEUE: usize = 8192;
/// Most spans in one export request.
const BATCH: usize = 512;
/// How long a span waits at most before it is sent.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static EXPORTER: OnceLock<mpsc::Sender<Vec<u8>>> = OnceLock::new();

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

async fn export_loop(url: reqwest::Url, mut receiver: mpsc::Receiver<Vec<u8>>) {
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .unwrap_or_default();
    let mut failing = false;
    loop {
        // Sleep, then take what queued up: waiting in `recv` instead would
        // wake this task for every request's span.
        tokio::time::sleep(FLUSH_EVERY).await;
        let mut closed = false;
        loop {
            let mut batch = Vec::with_capacity(BATCH);
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(span) => batch.push(span),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == BATCH;
            failing = export(&client, &url, batch, failing).await;
            if !full {
                break;
            }
        }
        if closed {
            return;
        }
    }
}

/// Sends one batch; returns whether the collector is failing, so an outage
/// is warned about once.
async fn export(
    client: &reqwest::Client,
    url: &reqwest::Url,
    batch: Vec<Vec<u8>>,
    failing: bool,
) -> bool {
    let count = batch.len() as u64;
    let body = envelope(&batch);
    let sent = client
        .post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    let result = match sent {
        Ok(_) => "ok",
        Err(error) => {
            if !failing {
                tracing::warn!(%url, %error, spans = count, "cannot export spans over OTLP; dropping them");
            }
            "error"
        }
    };
    metrics::counter!("berth_spans_exported_total", "result" => result).increment(count);
    result == "error"
}

/// `ExportTraceServiceRequest { resource_spans: [ResourceSpans { resource,
/// scope_spans: [ScopeSpans { scope, spans }] }] }` around encoded spans.
fn envelope(spans: &[Vec<u8>]) -> Vec<u8> {
    let resource = Resource {
        attributes: vec![
            string_attribute("service.name", "berth"),
            string_attribute("service.version", env!("CARGO_PKG_VERSION")),
        ],
        ..Default::default()
    }
    .encode_to_vec();
    let scope = InstrumentationScope {
        name: "berth".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
    .encode_to_vec();
    let spans_len: usize = spans.iter().map(|s| field_len(s.len())).sum();
    let scope_spans_len = field_len(scope.len()) + spans_len;
    let resource_spans_len = field_len(resource.len()) + field_len(scope_spans_len);
    let mut out = Vec::with_capacity(field_len(resource_spans_len));
    header(1, resource_spans_len, &mut out);
    delimited(1, &resource, &mut out);
    header(2, scope_spans_len, &mut out);
    delimited(1, &scope, &mut out);
    for span in spans {
        delimited(2, span, &mut out);
    }
    out
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// Bytes a length-delimited field of `len` bytes takes (tags here are < 16).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn header(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

fn delimited(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    header(tag, bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// An attribute value.
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

/// `Span.attributes` (field 9): `KeyValue { key, value: AnyValue }`.
fn attribute(key: &str, value: Value<'_>, out: &mut Vec<u8>) {
    let any_len = match value {
        Value::Str(s) => field_len(s.len()),
        Value::Int(i) => 1 + encoded_len_varint(i as u64),
    };
    header(9, field_len(key.len()) + field_len(any_len), out);
    delimited(1, key.as_bytes(), out);
    header(2, any_len, out);
    match value {
        Value::Str(s) => delimited(1, s.as_bytes(), out),
        Value::Int(i) => {
            encode_key(3, WireType::Varint, out);
            encode_varint(i as u64, out);
        }
    }
}

fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `Span.kind` SERVER.
const SPAN_KIND_SERVER: u64 = 2;
/// `Status.code` ERROR.
const STATUS_CODE_ERROR: u64 = 2;

/// A server span being recorded: one request a guest handles, from a
/// client or from another service.
pub struct SpanRecord {
    trace: TraceContext,
    name: String,
    start: SystemTime,
    /// The attributes, already encoded.
    attributes: Vec<u8>,
}

impl SpanRecord {
    /// A span for a request, if spans are exported. `route` is the prefix
    /// the request was routed by (OpenTelemetry's `http.route`).
    pub fn start(trace: TraceContext, method: &http::Method, route: &str) -> Option<Self> {
        if !enabled() || !trace.sampled {
            return None;
        }
        let mut record = Self {
            trace,
            name: format!("{method} {route}"),
            start: SystemTime::now(),
            attributes: Vec::with_capacity(512),
        };
        record.set("http.request.method", Value::Str(method.as_str()));
        record.set("http.route", Value::Str(route));
        Some(record)
    }

    pub fn set(&mut self, key: &str, value: Value<'_>) {
        attribute(key, value, &mut self.attributes);
    }

    /// Who handled the request: Berth's own attributes.
    pub fn set_service(&mut self, tenant: &str, service: &str, version: &str, request_id: &str) {
        self.set("berth.tenant", Value::Str(tenant));
        self.set("berth.service", Value::Str(service));
        self.set("berth.version", Value::Str(version));
        self.set("berth.request_id", Value::Str(request_id));
    }

    /// Ends the span and queues it for export.
    pub fn finish(self, status: http::StatusCode, body_bytes: u64) {
        let span = self.encode(status, body_bytes);
        if let Some(sender) = EXPORTER.get()
            && sender.try_send(span).is_err()
        {
            metrics::counter!("berth_spans_exported_total", "result" => "dropped").increment(1);
        }
    }

    /// The finished span as an encoded `opentelemetry.proto.trace.v1.Span`.
    fn encode(mut self, status: http::StatusCode, body_bytes: u64) -> Vec<u8> {
        self.set(
            "http.response.status_code",
            Value::Int(i64::from(status.as_u16())),
        );
        self.set(
            "http.response.body.size",
            Value::Int(i64::try_from(body_bytes).unwrap_or(i64::MAX)),
        );
        let mut out = Vec::with_capacity(self.attributes.len() + self.name.len() + 96);
        delimited(1, &self.trace.trace_id.to_be_bytes(), &mut out);
        delimited(2, &self.trace.span_id.to_be_bytes(), &mut out);
        if let Some(parent) = self.trace.parent_span_id {
            delimited(4, &parent.to_be_bytes(), &mut out);
        }
        delimited(5, self.name.as_bytes(), &mut out);
        encode_key(6, WireType::Varint, &mut out);
        encode_varint(SPAN_KIND_SERVER, &mut out);
        encode_key(7, WireType::SixtyFourBit, &mut out);
        out.extend_from_slice(&unix_nanos(self.start).to_le_bytes());
        encode_key(8, WireType::SixtyFourBit, &mut out);
        out.extend_from_slice(&unix_nanos(SystemTime::now()).to_le_bytes());
        out.extend_from_slice(&self.attributes);
        // A server span is an error on 5xx only (OpenTelemetry HTTP conventions).
        if status.is_server_error() {
            header(15, 1 + encoded_len_varint(STATUS_CODE_ERROR), &mut out);
            encode_key(3, WireType::Varint, &mut out);
            encode_varint(STATUS_CODE_ERROR, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_encode_as_opentelemetry_proto_decodes_them() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        let trace = TraceContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 7,
            parent_span_id: Some(9),
            sampled: true,
        };
        let mut record = SpanRecord {
            trace,
            name: "GET /web".into(),
            start: SystemTime::now(),
            attributes: Vec::new(),
        };
        record.set("url.path", Value::Str("/web/x"));
        record.set("berth.call.depth", Value::Int(-3));
        let span = record.encode(http::StatusCode::BAD_GATEWAY, 10);
        let body = envelope(&[span.clone(), span]);
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        let span = &spans[0];
        assert_eq!(span.trace_id, trace.trace_id.to_be_bytes());
        assert_eq!(span.parent_span_id, 9u64.to_be_bytes());
        assert_eq!(span.name, "GET /web");
        assert_eq!(span.kind, 2);
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(2));
        let values: Vec<_> = span
            .attributes
            .iter()
            .map(|a| (a.key.as_str(), a.value.clone().and_then(|v| v.value)))
            .collect();
        assert_eq!(
            values,
            [
                (
                    "url.path",
                    Some(any_value::Value::StringValue("/web/x".into()))
                ),
                ("berth.call.depth", Some(any_value::Value::IntValue(-3))),
                (
                    "http.response.status_code",
                    Some(any_value::Value::IntValue(502))
                ),
                (
                    "http.response.body.size",
                    Some(any_value::Value::IntValue(10))
                ),
            ]
        );
        let resource = decoded.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
    }

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
