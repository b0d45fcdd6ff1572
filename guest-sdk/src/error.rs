use crate::{IntoResponse, Response};
use http::StatusCode;

/// A failure that becomes a response: a status code and a message, sent as
/// `{"error": "..."}`.
///
/// ```
/// use berth_sdk::Error;
/// let e = Error::bad_request("`quantity` must be at least 1");
/// assert_eq!(e.status(), 400);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: StatusCode,
    message: String,
}

impl Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400: the request is wrong, and the message says how.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 500: something failed on the service's side.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut response = crate::json::json_response(&body);
        *response.status_mut() = self.status;
        response
    }
}

/// A request or response that could not be built: the service's own fault.
impl From<http::Error> for Error {
    fn from(error: http::Error) -> Self {
        Self::internal(format!("cannot build an HTTP message: {error}"))
    }
}

/// A body that could not be read or decoded, e.g. from a service call.
#[cfg(feature = "p2")]
impl From<wstd::http::Error> for Error {
    fn from(error: wstd::http::Error) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, format!("{error:#}"))
    }
}
