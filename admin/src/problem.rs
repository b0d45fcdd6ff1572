//! Admin API failures and the one place each becomes a status code and an
//! `application/problem+json` body (RFC 9457).

use axum::response::{IntoResponse, Response};
use berth_api::NameError;
pub use berth_api::Problem;
use http::{HeaderValue, StatusCode, header};

use berth_control::ControlError;
use berth_control::store::StoreError;
use berth_control::store::blobs::BlobError;

tokio::task_local! {
    /// The id of the admin request being handled, for error bodies.
    pub static REQUEST_ID: std::sync::Arc<str>;
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a bearer token is required")]
    MissingToken,
    #[error("the token is not valid")]
    BadToken,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// A name, label or digest the client sent that is not one.
impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        Self::Control(ControlError::InvalidInput(error.to_string()))
    }
}

/// A name, label or digest read back from the store: it was checked when it
/// was written, so one that does not parse is the host's fault.
pub fn stored<T: std::str::FromStr<Err = NameError>>(text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|e: NameError| ApiError::Control(ControlError::Internal(format!("stored {e}"))))
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self::Control(ControlError::Store(error))
    }
}

impl ApiError {
    /// The single mapping from failure to status and stable type.
    pub fn classify(&self) -> (StatusCode, &'static str) {
        use ControlError as C;
        use StoreError as S;
        match self {
            Self::MissingToken | Self::BadToken => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type")
            }
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
            Self::Control(c) => match c {
                C::InvalidInput(_) => (StatusCode::BAD_REQUEST, "invalid-input"),
                C::Store(S::NotFound(_)) => (StatusCode::NOT_FOUND, "not-found"),
                C::Store(S::Conflict(_)) | C::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                C::Store(S::Invalid(_)) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-reference"),
                C::Store(s) if s.is_unavailable() => {
                    (StatusCode::SERVICE_UNAVAILABLE, "state-store-unavailable")
                }
                C::Store(_) | C::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                C::Upload(BlobError::TooLarge { .. }) => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "upload-too-large")
                }
                C::Upload(BlobError::Empty) => (StatusCode::BAD_REQUEST, "empty-upload"),
                C::Upload(BlobError::Interrupted(_)) => {
                    (StatusCode::BAD_REQUEST, "upload-interrupted")
                }
                C::Upload(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
                C::Unprocessable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-component"),
                C::QuotaExceeded(_) => (StatusCode::CONFLICT, "quota-exceeded"),
                C::StorageQuotaExceeded(_) => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "storage-quota-exceeded")
                }
                C::LimitAboveTenant(_) => (StatusCode::UNPROCESSABLE_ENTITY, "limit-above-tenant"),
                C::CompileTimeout(_) => (StatusCode::UNPROCESSABLE_ENTITY, "compile-timeout"),
                C::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "tenant-busy"),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind) = self.classify();
        let request_id = REQUEST_ID.try_with(|id| id.to_string()).unwrap_or_default();
        // Internal failures are logged whole and answered without detail.
        let detail = if kind == "state-store-unavailable" {
            tracing::warn!(request_id = %request_id, error = %self, "state store unreachable");
            "the host cannot reach its state store; it serves on from what it last synced, \
             but changes are refused until the store is back"
                .to_string()
        } else if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(request_id = %request_id, error = %self, "admin request failed");
            "the host could not complete the request; see its log".to_string()
        } else {
            self.to_string()
        };
        problem_response(status, kind, detail, request_id)
    }
}

pub fn problem_response(
    status: StatusCode,
    kind: &str,
    detail: String,
    request_id: String,
) -> Response {
    let problem = Problem {
        kind: format!("https://berth.dev/problems/{kind}"),
        title: status.canonical_reason().unwrap_or("error").to_string(),
        status: status.as_u16(),
        detail,
        request_id,
    };
    let mut response = (status, axum::Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}
