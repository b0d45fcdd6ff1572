//! Service-to-service calls: an outgoing request to
//! `http://{service}.internal/...` runs that service of the same tenant
//! in-process, without the network or an allow-list entry. The callee sees
//! the caller's request id and a child of its trace context, and a chain of
//! calls deeper than its bound is answered 508, so a loop between services
//! ends.

use http::HeaderValue;
use std::sync::{Arc, Weak};
use wasmtime_wasi_http::WasiBody;

use crate::error::RequestError;
use crate::host::Host;
use crate::lingering_body::LingeringBody;
use crate::router::roll;
use crate::telemetry::metered::RequestRecord;
use crate::telemetry::otlp::{SpanRecord, Value};

/// The suffix that names a service of the caller's tenant.
pub const INTERNAL_SUFFIX: &str = ".internal";

/// How deep a chain of service calls may go by default.
pub const DEFAULT_MAX_CALL_DEPTH: u32 = 10;

/// A W3C trace context (`traceparent`): the trace a request belongs to and
/// the span the host opened for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The span this one is a child of, when there is one.
    pub parent_span_id: Option<u64>,
    pub sampled: bool,
}

impl TraceContext {
    /// A new span of the trace `traceparent` names, or of a new trace when
    /// the header is absent or malformed.
    pub fn continuing(traceparent: Option<&HeaderValue>) -> Self {
        match traceparent.and_then(|v| v.to_str().ok()).and_then(parse) {
            Some((trace_id, parent, sampled)) => Self {
                trace_id,
                span_id: new_span_id(),
                parent_span_id: Some(parent),
                sampled,
            },
            None => Self {
                trace_id: (u128::from(roll()) << 64 | u128::from(roll())).max(1),
                span_id: new_span_id(),
                parent_span_id: None,
                sampled: true,
            },
        }
    }

    /// A child span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            parent_span_id: Some(self.span_id),
            ..*self
        }
    }

    pub fn header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

fn new_span_id() -> u64 {
    roll().max(1)
}

/// `00-{32 hex}-{16 hex}-{2 hex}`, all-zero ids refused (W3C Trace Context).
fn parse(value: &str) -> Option<(u128, u64, bool)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || parent.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    (trace_id != 0 && parent_id != 0).then_some((trace_id, parent_id, flags & 1 == 1))
}

/// Where a request sits in a chain of service calls.
#[derive(Debug, Clone, Copy)]
pub struct CallChain {
    /// 0 for a request from a client, 1 for a call it made, and so on.
    pub depth: u32,
    pub trace: TraceContext,
}

impl CallChain {
    pub fn root(trace: TraceContext) -> Self {
        Self { depth: 0, trace }
    }
}

/// The service an outgoing request names, when it is an internal call.
pub fn internal_target(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?.to_ascii_lowercase();
    let service = host.strip_suffix(INTERNAL_SUFFIX)?;
    (!service.is_empty() && !service.contains('.')).then(|| service.to_string())
}

/// What one instance needs to call its tenant's other services.
#[derive(Clone)]
pub struct ServiceCalls {
    pub host: Weak<Host>,
    pub tenant: Arc<str>,
    pub request_id: Arc<str>,
    pub chain: CallChain,
    pub max_depth: u32,
}

impl ServiceCalls {
    /// Runs `service` for `request` and returns its response; a failure is a
    /// problem response, as a client calling the service would see it.
    pub async fn call(
        &self,
        service: &str,
        request: http::Request<WasiBody>,
    ) -> http::Response<WasiBody> {
        match self.run(service, request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::info!(
                    tenant = %self.tenant, callee = service, request_id = %self.request_id,
                    kind = error.kind(), "service call failed"
                );
                error.to_response(&self.request_id)
            }
        }
    }

    async fn run(
        &self,
        service: &str,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, RequestError> {
        // Taken first, so that a call refused here leaves the caller's body
        // writes unharmed too.
        let mut request = request.map(LingeringBody::wrap);
        let started = std::time::Instant::now();
        let depth = self.chain.depth + 1;
        if depth > self.max_depth {
            return Err(RequestError::CallDepthExceeded {
                limit: self.max_depth,
            });
        }
        let host = self.host.upgrade().ok_or(RequestError::PoolExhausted)?;
        let table = host.registry().snapshot();
        let route = table
            .service_route(&self.tenant, service)
            .ok_or(RequestError::NoService)?;
        let version = Arc::clone(route.backends.pick(roll()));
        let prefix = route.prefix.clone();
        drop(table);
        let chain = CallChain {
            depth,
            trace: self.chain.trace.child(),
        };
        let path = request.uri().path().to_string();
        crate::server::set_host_headers(
            request.headers_mut(),
            &self.request_id,
            &prefix,
            &path,
            &chain,
        );
        let span = tracing::info_span!(
            "call",
            tenant = %version.tenant,
            service = %version.service,
            version = %version.version,
            request_id = %self.request_id,
            depth,
        );
        let exported = SpanRecord::start(chain.trace, request.method(), &prefix).map(|mut s| {
            s.set("url.path", Value::Str(&path));
            s.set_service(
                &version.tenant,
                &version.service,
                &version.version,
                &self.request_id,
            );
            s.set("berth.call.depth", Value::Int(i64::from(depth)));
            s
        });
        let record = RequestRecord::start(&version.metrics, started, exported);
        let cx = host.invoke_context();
        let response =
            crate::invoke::invoke(&cx, &version, request, Arc::clone(&self.request_id), chain);
        let mut response = match tracing::Instrument::instrument(response, span).await {
            Ok(response) => response,
            Err(error) => {
                tracing::info!(
                    tenant = %self.tenant, callee = service, request_id = %self.request_id,
                    kind = error.kind(), "service call failed"
                );
                error.to_response(&self.request_id)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&version.version) {
            response.headers_mut().insert("x-berth-version", v);
        }
        Ok(record.wrap(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_continued_or_started() {
        let incoming =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let trace = TraceContext::continuing(Some(&incoming));
        assert_eq!(trace.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_ne!(trace.span_id, 0x00f067aa0ba902b7);
        assert_eq!(trace.parent_span_id, Some(0x00f067aa0ba902b7));
        let child = trace.child();
        assert_eq!(child.trace_id, trace.trace_id);
        assert_eq!(child.parent_span_id, Some(trace.span_id));
        assert!(
            child
                .header()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            let fresh = TraceContext::continuing(Some(&HeaderValue::from_static(bad)));
            assert_ne!(fresh.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736, "{bad}");
        }
    }

    #[test]
    fn internal_targets_are_single_labels() {
        let target = |u: &str| internal_target(&u.parse::<http::Uri>().unwrap());
        assert_eq!(target("http://catalog.internal/x"), Some("catalog".into()));
        assert_eq!(target("http://Catalog.INTERNAL/"), Some("catalog".into()));
        assert_eq!(target("http://a.b.internal/"), None);
        assert_eq!(target("http://catalog.example.com/"), None);
    }
}
