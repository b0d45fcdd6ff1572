use serde::{Serialize, de::DeserializeOwned};

use crate::{Body, Error, IntoResponse, Request, Response};

/// A value sent or received as JSON.
///
/// As a response it is serialized with `content-type: application/json`;
/// [`Json::from_request`] reads one from a request body.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> Json<T> {
    /// Reads the request body as JSON, as [`read_json`] does: a body that is
    /// not JSON, or does not fit `T`, is a 400 that says where and what.
    ///
    /// ```no_run
    /// # async fn f(mut request: berth_sdk::Request) -> Result<(), berth_sdk::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct NewItem { name: String }
    /// let berth_sdk::Json(item) = berth_sdk::Json::<NewItem>::from_request(&mut request).await?;
    /// # Ok(()) }
    /// ```
    pub async fn from_request(request: &mut Request) -> Result<Self, Error> {
        read_json(request).await.map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        json_response(&self.0)
    }
}

pub(crate) fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = http::Response::new(Body::from(bytes));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => {
            let mut response =
                http::Response::new(Body::from(format!("cannot serialize response: {e}")));
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

/// Reads the request body as JSON. A body that is not valid JSON, or does
/// not fit `T`, is a 400 whose message says where and what is wrong.
///
/// ```no_run
/// # async fn f(mut request: berth_sdk::Request) -> Result<(), berth_sdk::Error> {
/// #[derive(serde::Deserialize)]
/// struct NewItem { name: String }
/// let item: NewItem = berth_sdk::read_json(&mut request).await?;
/// # Ok(()) }
/// ```
pub async fn read_json<T: DeserializeOwned>(request: &mut Request) -> Result<T, Error> {
    if let Some(ct) = request.headers().get(http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default();
        if !ct.starts_with("application/json") && !ct.contains("+json") {
            return Err(Error::new(
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("expected content-type application/json, got `{ct}`"),
            ));
        }
    }
    let bytes = request
        .body_mut()
        .contents()
        .await
        .map_err(|e| Error::bad_request(format!("cannot read the request body: {e}")))?;
    serde_json::from_slice(bytes).map_err(|e| {
        Error::bad_request(format!(
            "invalid JSON body at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })
}
