//! The bodies every layer passes around: the data plane's response body
//! type, and what a message declares about its length.

use bytes::Bytes;

/// The body of every response the data plane sends.
pub type ResponseBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// The `Content-Length` a message declares, if any.
pub fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}
