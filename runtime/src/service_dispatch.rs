//! How the host answers a service call (from `http://{service}.internal`
//! or `berth:service/call`): the callee's route within the caller's tenant,
//! a version picked by the split, the forwarding headers, a span and the
//! callee's metrics, and the invocation itself.

use http::HeaderValue;
use std::sync::Arc;
use wasmtime_wasi_http::WasiBody;

use crate::capabilities::calls::{EVENTS_SERVICE, EventOrigin, ServiceCall, ServiceDispatch};
use crate::error::RequestError;
use crate::host::Host;
use crate::random::roll;
use crate::telemetry::metered::RequestRecord;
use crate::telemetry::otlp::{SpanRecord, Value};

#[async_trait::async_trait]
impl ServiceDispatch for Host {
    async fn dispatch(
        &self,
        call: ServiceCall<'_>,
    ) -> Result<http::Response<WasiBody>, RequestError> {
        let ServiceCall {
            tenant,
            caller,
            service,
            mut request,
            request_id,
            chain,
            started,
        } = call;
        if service == EVENTS_SERVICE
            && let Some(ingress) = self.event_ingress()
        {
            let origin = EventOrigin {
                tenant: &tenant,
                service: &caller,
                request_id: &request_id,
                traceparent: chain.trace.header(),
            };
            return Ok(ingress.publish(origin, request).await);
        }
        let depth = chain.depth;
        let table = self.registry().snapshot();
        let route = table
            .service_route(&tenant, service)
            .ok_or(RequestError::NoService)?;
        let version = Arc::clone(route.backends.pick(roll()));
        let prefix = route.prefix.clone();
        drop(table);
        let path = request.uri().path().to_string();
        crate::forwarding::set_host_headers(
            request.headers_mut(),
            &request_id,
            &prefix,
            &path,
            &chain,
        );
        let span = tracing::info_span!(
            "call",
            tenant = %version.tenant,
            service = %version.service,
            version = %version.version,
            request_id = %request_id,
            depth,
        );
        let exported = SpanRecord::start(chain.trace, request.method(), &prefix).map(|mut s| {
            s.set("url.path", Value::Str(&path));
            s.set_service(
                &version.tenant,
                &version.service,
                &version.version,
                &request_id,
            );
            s.set("berth.call.depth", Value::Int(i64::from(depth)));
            s
        });
        let record = RequestRecord::start(&version.metrics, started, exported);
        let cx = self.invoke_context();
        let response =
            crate::invoke::invoke(&cx, &version, request, Arc::clone(&request_id), chain);
        let mut response = match tracing::Instrument::instrument(response, span).await {
            Ok(response) => response,
            Err(error) => {
                tracing::info!(
                    tenant = %tenant, callee = service, request_id = %request_id,
                    kind = error.kind(), "service call failed"
                );
                error.to_response(&request_id)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&version.version) {
            response.headers_mut().insert("x-berth-version", v);
        }
        Ok(record.wrap(response))
    }
}
