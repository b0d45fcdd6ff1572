//! Service-to-service calls: an outgoing request to
//! `http://{service}.internal/...` runs that service of the same tenant
//! in-process, without the network or an allow-list entry. The callee sees
//! the caller's request id and a child of its trace context, and a chain of
//! calls deeper than its bound is answered 508, so a loop between services
//! ends.

use std::sync::{Arc, Weak};
use wasmtime_wasi_http::WasiBody;

use crate::error::RequestError;
use crate::lingering_body::LingeringBody;
use crate::telemetry::trace_context::CallChain;

/// The suffix that names a service of the caller's tenant.
pub const INTERNAL_SUFFIX: &str = ".internal";

/// How deep a chain of service calls may go by default.
pub const DEFAULT_MAX_CALL_DEPTH: u32 = 10;

/// The service an outgoing request names, when it is an internal call.
pub fn internal_target(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?.to_ascii_lowercase();
    let service = host.strip_suffix(INTERNAL_SUFFIX)?;
    (!service.is_empty() && !service.contains('.')).then(|| service.to_string())
}

/// How a call reaches its callee. Routing, admission and invocation sit
/// above the capability layer, so the host implements this (as Spin's
/// outbound HTTP interceptor is implemented by its trigger) and the
/// capabilities never name it.
#[async_trait::async_trait]
pub trait ServiceDispatch: Send + Sync {
    /// Runs the callee for the call and returns its response (a failure of
    /// the callee's own is a problem response, as a client would see it).
    async fn dispatch(
        &self,
        call: ServiceCall<'_>,
    ) -> Result<http::Response<WasiBody>, RequestError>;
}

/// The host name guests publish events at:
/// `POST http://events.internal/topics/{topic}`. No service by this name is
/// reachable by a call.
pub const EVENTS_SERVICE: &str = "events";

/// Where a guest's events go. The event log sits above the runtime, so the
/// control plane implements this and the host holds it.
#[async_trait::async_trait]
pub trait EventIngress: Send + Sync {
    /// Publishes the request's event for the caller; answers as the admin
    /// API's publish route does (202 with the id, or a problem).
    async fn publish(
        &self,
        origin: EventOrigin<'_>,
        request: http::Request<WasiBody>,
    ) -> http::Response<WasiBody>;
}

/// Who publishes a guest's event.
pub struct EventOrigin<'a> {
    pub tenant: &'a str,
    pub service: &'a str,
    pub request_id: &'a str,
    /// The caller's trace context, for the delivery to continue.
    pub traceparent: String,
}

/// One call, as the dispatcher gets it.
pub struct ServiceCall<'a> {
    pub tenant: Arc<str>,
    /// The calling service.
    pub caller: Arc<str>,
    pub service: &'a str,
    pub request: http::Request<WasiBody>,
    pub request_id: Arc<str>,
    /// The callee's place in the chain: one deeper, a child span.
    pub chain: CallChain,
    pub started: std::time::Instant,
}

/// What one instance needs to call its tenant's other services.
#[derive(Clone)]
pub struct ServiceCalls {
    pub dispatch: Weak<dyn ServiceDispatch>,
    pub tenant: Arc<str>,
    pub caller: Arc<str>,
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
        let request = request.map(LingeringBody::wrap);
        let started = std::time::Instant::now();
        let depth = self.chain.depth + 1;
        if depth > self.max_depth {
            return Err(RequestError::CallDepthExceeded {
                limit: self.max_depth,
            });
        }
        let dispatch = self.dispatch.upgrade().ok_or(RequestError::PoolExhausted)?;
        dispatch
            .dispatch(ServiceCall {
                tenant: Arc::clone(&self.tenant),
                caller: Arc::clone(&self.caller),
                service,
                request,
                request_id: Arc::clone(&self.request_id),
                chain: CallChain {
                    depth,
                    trace: self.chain.trace.child(),
                },
                started,
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_targets_are_single_labels() {
        let target = |u: &str| internal_target(&u.parse::<http::Uri>().unwrap());
        assert_eq!(target("http://catalog.internal/x"), Some("catalog".into()));
        assert_eq!(target("http://Catalog.INTERNAL/"), Some("catalog".into()));
        assert_eq!(target("http://a.b.internal/"), None);
        assert_eq!(target("http://catalog.example.com/"), None);
    }
}
