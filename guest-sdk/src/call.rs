//! Calls to the tenant's other services, run by the host in-process,
//! without the network and without an allow-list entry; the callee sees the
//! same request id and the caller's trace context.
//!
//! ```no_run
//! use berth_sdk::http::Request;
//! use berth_sdk::{Body, call, join};
//! # async fn run() -> Result<(), berth_sdk::Error> {
//! let products = Request::get("/products").body(Body::empty())?;
//! let cart = Request::get("/carts/c-1").body(Body::empty())?;
//! // Both calls run at once.
//! let (products, cart) = join(call("catalog", products), call("cart", cart)).await;
//! let products: serde_json::Value = products?.into_body().json().await?;
//! # Ok(()) }
//! ```
//!
//! A call goes through Berth's `berth:service/call` interface, which takes
//! the whole request and gives back the whole response, so both bodies are
//! held in memory. A service that streams a large body to another can send
//! a wasi:http request to `http://{service}.internal/...` instead, with
//! `wstd::http::Client`; the host routes it the same way.

use http::{HeaderName, HeaderValue, StatusCode};
#[cfg(feature = "p2")]
use wstd::runtime::AsyncPollable;

use crate::bindings::berth::service::call as host;
use crate::{Body, Error, Request, Response};

/// Sends `request` to the tenant's service `service`; the request's path,
/// query, method, headers and body are kept, its scheme and authority are
/// the callee's.
pub async fn call(service: &str, request: Request) -> Result<Response, Error> {
    let (parts, mut body) = request.into_parts();
    let body = if body.content_length() == Some(0) {
        Vec::new()
    } else {
        body.contents().await?.to_vec()
    };
    let request = host::Request {
        method: parts.method.as_str().to_string(),
        path_with_query: parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
            .collect(),
        body,
    };
    let pending = host::start(service, &request);
    #[cfg(feature = "p2")]
    AsyncPollable::new(pending.subscribe()).wait_for().await;
    // A 0.3 service has no 0.2 reactor to wait in: the instance waits here
    // (Berth runs one request at a time per instance).
    #[cfg(all(feature = "p3", not(feature = "p2")))]
    pending.subscribe().block();
    let failed = |why: String| {
        Error::new(
            StatusCode::BAD_GATEWAY,
            format!("calling `{service}` failed: {why}"),
        )
    };
    match pending.get() {
        Some(Ok(answer)) => to_response(answer).map_err(failed),
        Some(Err(error)) => Err(failed(describe(error))),
        None => Err(failed("no answer once ready".into())),
    }
}

fn describe(error: host::Error) -> String {
    match error {
        host::Error::InvalidRequest(why) | host::Error::ResponseFailed(why) => why,
        host::Error::TooManyRequests(limit) => {
            format!("this request already made its {limit} outgoing requests")
        }
        host::Error::Consumed => "the answer was already taken".into(),
    }
}

fn to_response(answer: host::Response) -> Result<Response, String> {
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = StatusCode::from_u16(answer.status)
        .map_err(|_| format!("status {} is not an HTTP status", answer.status))?;
    let headers = response.headers_mut();
    for (name, value) in answer.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| format!("the value of `{name}` is not a header value"))?;
        headers.append(name, value);
    }
    Ok(response)
}
