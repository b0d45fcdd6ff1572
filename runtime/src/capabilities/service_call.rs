//! `berth:service/call`: a call to one of the tenant's services with the
//! whole request passed in one host call and the whole response taken in
//! another. It runs through the same [`ServiceCalls`] as a wasi:http request
//! to `http://{service}.internal/...` (routing, request id, trace context,
//! call-depth bound, the caller's outgoing-request limit); what it saves is
//! the hundred-odd guest/host crossings of building a wasi:http request and
//! streaming both bodies through the guest.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use tracing::Instrument;
use wasmtime::component::Resource;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi_http::WasiBody;

use super::bindings::service_call::{self as wit, Error as CallError};
use super::calls::{INTERNAL_SUFFIX, ServiceCalls, internal_target};
use super::pending_call::{Answer, CallFailure, CallResponse, CallTask, Outcome, PendingCall};
use super::state::HostState;
use crate::hop_trace::mark;
use crate::limits::InstanceBudget;
use std::sync::Arc;

/// The answer as the guest reads it.
fn to_wit(outcome: Outcome) -> Result<wit::Response, CallError> {
    match outcome {
        Ok(response) => Ok(wit::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }),
        Err(CallFailure::InvalidRequest(why)) => Err(CallError::InvalidRequest(why)),
        Err(CallFailure::TooManyRequests(limit)) => Err(CallError::TooManyRequests(limit)),
        Err(CallFailure::ResponseFailed(why)) => Err(CallError::ResponseFailed(why)),
        Err(CallFailure::Consumed) => Err(CallError::Consumed),
    }
}

/// Headers the host sets itself, or that mean nothing on an in-process call.
fn host_owned(name: &HeaderName) -> bool {
    [HOST, CONNECTION, TRANSFER_ENCODING, UPGRADE, CONTENT_LENGTH].contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// The guest's request as the one a wasi:http call to
/// `http://{service}.internal{path}` would make, and the service it names
/// as that call's host would (one DNS label, in lower case).
fn to_http(
    service: &str,
    request: wit::Request,
) -> Result<(String, http::Request<WasiBody>), String> {
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", request.method))?;
    if !request.path_with_query.starts_with('/') {
        return Err(format!(
            "the path `{}` does not start with `/`",
            request.path_with_query
        ));
    }
    let uri: http::Uri = format!(
        "http://{service}{INTERNAL_SUFFIX}{}",
        request.path_with_query
    )
    .parse()
    .map_err(|_| format!("`{service}` and `{}` make no URL", request.path_with_query))?;
    let callee =
        internal_target(&uri).ok_or_else(|| format!("`{service}` is not a service name"))?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for (name, value) in request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| format!("the value of `{name}` is not a header value"))?;
        if !host_owned(&name) {
            builder = builder.header(name, value);
        }
    }
    if !request.body.is_empty() {
        builder = builder.header(CONTENT_LENGTH, request.body.len());
    }
    let body = Full::new(Bytes::from(request.body))
        .map_err(|never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let request = builder.body(body).map_err(|e| e.to_string())?;
    Ok((callee, request))
}

/// Takes in the callee's whole response, charging its body to the
/// caller's memory budget as it arrives: the host holds it for the caller
/// until the caller takes it, and one the caller's budget cannot hold is an
/// error the caller can read, not a trap when it is handed over (nor a
/// second copy of the caller's memory held by the host, for each of its
/// calls at once).
async fn take_whole(response: http::Response<WasiBody>, budget: Arc<InstanceBudget>) -> Answer {
    let limit = budget.limit();
    let too_large = |bytes: u64| {
        CallFailure::ResponseFailed(format!(
            "the response body is over {bytes} bytes, more than the caller's memory \
             limit of {limit} bytes leaves it to take whole; stream it over wasi:http instead"
        ))
    };
    let (parts, mut body) = response.into_parts();
    if crate::body::declared_length(&parts.headers).is_some_and(|n| n > limit) {
        return (Err(too_large(limit)), None);
    }
    let mut charge = match budget.charge(0) {
        Ok(charge) => charge,
        Err(_) => return (Err(too_large(0)), None),
    };
    let mut whole = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return (Err(CallFailure::ResponseFailed(error.to_string())), None),
        };
        if let Some(data) = frame.data_ref() {
            if charge.grow(data.len() as u64).is_err() {
                let so_far = charge.bytes() + data.len() as u64;
                return (Err(too_large(so_far.min(limit))), None);
            }
            whole.extend_from_slice(data);
        }
    }
    let response = CallResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: whole,
    };
    (Ok(response), Some(charge))
}

fn start_call(
    calls: ServiceCalls,
    service: String,
    request: http::Request<WasiBody>,
    budget: Arc<InstanceBudget>,
) -> CallTask {
    let depth = calls.chain.depth;
    mark("call.start", depth);
    CallTask(tokio::spawn(
        async move {
            mark("call.task", depth);
            let response = calls.call(&service, request).await;
            mark("call.head", depth);
            let whole = take_whole(response, budget).await;
            mark("call.whole", depth);
            whole
        }
        .in_current_span(),
    ))
}

impl wit::Host for HostState {
    async fn start(
        &mut self,
        service: String,
        request: wit::Request,
    ) -> wasmtime::Result<Resource<PendingCall>> {
        // Counted before the request is checked, so that a guest sending
        // bad requests in a loop is stopped by its limit like any other,
        // and logs at most that many refusals.
        let pending = match self.hooks.take_internal_call() {
            Err(limit) => {
                self.count_call("refused");
                PendingCall::Done((Err(CallFailure::TooManyRequests(limit)), None))
            }
            Ok(calls) => match to_http(&service, request) {
                Ok((callee, request)) => {
                    self.count_call("sent");
                    let budget = Arc::clone(self.limiter.budget());
                    PendingCall::Waiting(start_call(calls, callee, request, budget))
                }
                Err(reason) => {
                    self.count_call("refused");
                    tracing::warn!(
                        service = %self.identity.service, request_id = %self.identity.request_id,
                        callee = %service, %reason, "service call refused"
                    );
                    PendingCall::Done((Err(CallFailure::InvalidRequest(reason)), None))
                }
            },
        };
        Ok(self.table.push(pending)?)
    }
}

impl HostState {
    fn count_call(&self, result: &'static str) {
        let who = &self.identity;
        crate::telemetry::metrics::outbound(&who.tenant, &who.service, "internal", result);
    }
}

impl wit::HostPendingCall for HostState {
    async fn subscribe(
        &mut self,
        call: Resource<PendingCall>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        wasmtime_wasi::p2::subscribe(&mut self.table, call)
    }

    async fn get(
        &mut self,
        call: Resource<PendingCall>,
    ) -> wasmtime::Result<Option<Result<wit::Response, CallError>>> {
        let pending = self.table.get_mut(&call)?;
        Ok(match std::mem::replace(pending, PendingCall::Taken) {
            PendingCall::Waiting(task) => {
                *pending = PendingCall::Waiting(task);
                None
            }
            // The charge ends here: the answer moves into the guest's
            // memory, which its budget counts from now on.
            PendingCall::Done((outcome, _charge)) => Some(to_wit(outcome)),
            PendingCall::Taken => Some(to_wit(Err(CallFailure::Consumed))),
        })
    }

    async fn drop(&mut self, call: Resource<PendingCall>) -> wasmtime::Result<()> {
        self.table.delete(call)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, headers: &[(&str, &[u8])]) -> wit::Request {
        wit::Request {
            method: method.into(),
            path_with_query: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_string(), v.to_vec()))
                .collect(),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn requests_become_internal_http_requests() {
        let made = to_http(
            "catalog",
            request(
                "POST",
                "/products?limit=2",
                &[("content-type", b"application/json"), ("host", b"evil")],
            ),
        );
        let (callee, made) = made.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(callee, "catalog");
        assert_eq!(made.method(), Method::POST);
        assert_eq!(
            made.uri().to_string(),
            "http://catalog.internal/products?limit=2"
        );
        assert_eq!(made.headers()["content-type"], "application/json");
        assert_eq!(made.headers()["content-length"], "2");
        assert!(!made.headers().contains_key("host"));
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let refused = |r| to_http("catalog", r).err().unwrap_or_default();
        assert!(refused(request("GE T", "/", &[])).contains("not an HTTP method"));
        assert!(refused(request("GET", "products", &[])).contains("does not start with `/`"));
        assert!(refused(request("GET", "/", &[("bad name", b"x")])).contains("header name"));
        assert!(refused(request("GET", "/", &[("x", b"a\nb")])).contains("header value"));
        let named = |service| to_http(service, request("GET", "/", &[])).err();
        for bad in ["no/such", "a.b", "", "no such"] {
            assert!(named(bad).is_some(), "{bad:?} was taken for a service name");
        }
        assert_eq!(named("Catalog"), None);
    }

    fn answer(body: &'static [u8], declared: Option<usize>) -> http::Response<WasiBody> {
        let mut response = http::Response::new(
            Full::new(Bytes::from_static(body))
                .map_err(
                    |never: std::convert::Infallible| -> wasmtime_wasi_http::Error {
                        match never {}
                    },
                )
                .boxed_unsync(),
        );
        if let Some(n) = declared {
            response.headers_mut().insert(CONTENT_LENGTH, n.into());
        }
        response
    }

    #[tokio::test]
    async fn whole_answers_past_the_callers_budget_are_refused() {
        let budget = InstanceBudget::new(10);
        let (whole, charge) = take_whole(answer(b"0123456789", None), Arc::clone(&budget)).await;
        assert!(
            matches!(whole, Ok(ref r) if r.body == b"0123456789"),
            "{whole:?}"
        );
        // The answer is held for the caller, and counted, until it is taken.
        assert_eq!(budget.host_held(), 10);
        drop(charge);
        assert_eq!(budget.host_held(), 0);
        for (declared, max) in [(None, 9), (Some(10), 9), (Some(100), 10)] {
            let budget = InstanceBudget::new(max);
            match take_whole(answer(b"0123456789", declared), Arc::clone(&budget)).await {
                (Err(CallFailure::ResponseFailed(why)), None) => {
                    assert!(why.contains(&format!("limit of {max} bytes")), "{why}");
                }
                other => panic!("{declared:?}/{max}: {other:?}"),
            }
            assert_eq!(budget.host_held(), 0);
        }
        // Two answers at once share one budget: the second finds less room.
        let budget = InstanceBudget::new(15);
        let (first, held) = take_whole(answer(b"0123456789", None), Arc::clone(&budget)).await;
        assert!(first.is_ok());
        let (second, _) = take_whole(answer(b"0123456789", None), Arc::clone(&budget)).await;
        assert!(second.is_err(), "{second:?}");
        drop(held);
    }
}
