//! What can go wrong with one request, and the one place where each failure
//! becomes an HTTP status.
//!
//! Error bodies are `application/problem+json` (RFC 9457). They name the
//! request id, which is also in the host's log, and never carry host
//! internals: the detail a guest's trap produced stays in the log.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use std::time::Duration;

use crate::body::ResponseBody;

/// A request that could not be answered by the guest.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("no service is routed at this path")]
    NoRoute,
    #[error("the service failed while handling the request")]
    GuestTrap,
    #[error("the service ran out of memory (limit {limit_bytes} bytes)")]
    MemoryLimit { limit_bytes: u64 },
    #[error("the service used more than its CPU time limit ({limit:?})")]
    CpuDeadline { limit: Duration },
    #[error("the service did not finish within its time limit ({limit:?})")]
    WallDeadline { limit: Duration },
    #[error("the service did not produce a response")]
    NoResponse,
    #[error("the service returned an invalid response")]
    BadGuestResponse,
    #[error("the host is at capacity; try again shortly")]
    PoolExhausted,
    #[error("this tenant has too many requests in flight; try again shortly")]
    TenantBusy,
    #[error("the service's response is larger than the limit of {limit_bytes} bytes")]
    ResponseTooLarge { limit_bytes: u64 },
    #[error("the request body is larger than the limit of {limit_bytes} bytes")]
    BodyTooLarge { limit_bytes: u64 },
    #[error("the request carries {count} header fields; the limit is {limit}")]
    TooManyHeaders { count: usize, limit: usize },
    #[error("the request headers take {size} bytes; the limit is {limit}")]
    HeadersTooLarge { size: usize, limit: usize },
    #[error("the request URI is {length} bytes long; the limit is {limit}")]
    UriTooLong { length: usize, limit: usize },
    #[error("the request body arrived too slowly")]
    BodyTooSlow,
    #[error("the request is malformed: {0}")]
    BadRequest(&'static str),
    #[error("the service could not be started")]
    Instantiate,
    #[error("another request in the same instance of the service failed it; try again")]
    InstanceFailed,
    #[error("the chain of service calls is deeper than {limit}")]
    CallDepthExceeded { limit: u32 },
    #[error("this tenant has no service of that name")]
    NoService,
}

impl RequestError {
    /// The single mapping from failure to status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute | Self::NoService => StatusCode::NOT_FOUND,
            Self::CallDepthExceeded { .. } => StatusCode::LOOP_DETECTED,
            Self::GuestTrap
            | Self::MemoryLimit { .. }
            | Self::NoResponse
            | Self::BadGuestResponse
            | Self::Instantiate => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ResponseTooLarge { .. } => StatusCode::BAD_GATEWAY,
            Self::CpuDeadline { .. } | Self::WallDeadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::PoolExhausted | Self::TenantBusy | Self::InstanceFailed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyHeaders { .. } | Self::HeadersTooLarge { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// A stable, machine-readable name for the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoRoute => "no-route",
            Self::GuestTrap => "guest-trap",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::CpuDeadline { .. } => "cpu-deadline",
            Self::WallDeadline { .. } => "wall-deadline",
            Self::NoResponse => "no-response",
            Self::BadGuestResponse => "bad-guest-response",
            Self::PoolExhausted => "pool-exhausted",
            Self::TenantBusy => "tenant-busy",
            Self::ResponseTooLarge { .. } => "response-too-large",
            Self::BodyTooLarge { .. } => "body-too-large",
            Self::TooManyHeaders { .. } | Self::HeadersTooLarge { .. } => "headers-too-large",
            Self::BadRequest(_) => "bad-request",
            Self::UriTooLong { .. } => "uri-too-long",
            Self::BodyTooSlow => "body-too-slow",
            Self::Instantiate => "instantiate-failed",
            Self::InstanceFailed => "instance-failed",
            Self::CallDepthExceeded { .. } => "call-depth-exceeded",
            Self::NoService => "no-service",
        }
    }

    pub fn to_response(&self, request_id: &str) -> http::Response<ResponseBody> {
        let status = self.status();
        let body = serde_json::json!({
            "type": format!("https://berth.dev/problems/{}", self.kind()),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "request_id": request_id,
        });
        let mut response = http::Response::new(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", id);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_gateway_timeouts_and_traps_are_500() {
        let limit = Duration::from_millis(5);
        assert_eq!(RequestError::CpuDeadline { limit }.status(), 504);
        assert_eq!(RequestError::WallDeadline { limit }.status(), 504);
        assert_eq!(RequestError::GuestTrap.status(), 500);
        let r = RequestError::PoolExhausted.to_response("r1");
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key(header::RETRY_AFTER));
    }
}
