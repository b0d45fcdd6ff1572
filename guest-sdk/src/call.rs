//! Calls to the tenant's other services. A request to
//! `http://{service}.internal/...` is run by the host in-process, without
//! the network and without an allow-list entry; the callee sees the same
//! request id and the caller's trace context.
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

use http::{StatusCode, Uri};

use crate::{Error, Request, Response};

/// Sends `request` to the tenant's service `service`; the request's path
/// and query are kept, its scheme and authority replaced.
pub async fn call(service: &str, mut request: Request) -> Result<Response, Error> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri: Uri = format!("http://{service}.internal{path}")
        .parse()
        .map_err(|_| Error::internal(format!("`{service}` is not a valid service name")))?;
    *request.uri_mut() = uri;
    wstd::http::Client::new().send(request).await.map_err(|e| {
        Error::new(
            StatusCode::BAD_GATEWAY,
            format!("calling `{service}` failed: {e}"),
        )
    })
}
