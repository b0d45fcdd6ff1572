//! The WASI 0.3 build of the SDK (`--features p3`): a [`Body`] with the
//! methods services use on wstd's, and the handler export behind
//! [`serve!`](crate::serve).

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use wasip3::http::types::ErrorCode;
use wasip3::http_compat::IncomingRequestBody;

use crate::Error;

/// A request or response body: the bytes of one the service built, or the
/// stream of an incoming request, read when asked.
pub enum Body {
    Bytes(Bytes),
    Incoming(Box<IncomingRequestBody>),
}

impl Body {
    pub fn empty() -> Self {
        Self::Bytes(Bytes::new())
    }

    /// The length, when it is known without reading.
    pub fn content_length(&self) -> Option<u64> {
        http_body::Body::size_hint(self).exact()
    }

    /// The whole body, read to its end the first time.
    pub async fn contents(&mut self) -> Result<&[u8], Error> {
        if let Self::Incoming(incoming) = self {
            let mut bytes = Vec::new();
            let mut incoming = Pin::new(incoming.as_mut());
            while let Some(frame) =
                std::future::poll_fn(|cx| http_body::Body::poll_frame(incoming.as_mut(), cx)).await
            {
                let frame = frame
                    .map_err(|e| Error::bad_request(format!("cannot read the body: {e:?}")))?;
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            *self = Self::Bytes(Bytes::from(bytes));
        }
        match self {
            Self::Bytes(bytes) => Ok(bytes),
            Self::Incoming(_) => Ok(&[]),
        }
    }

    /// The whole body as text.
    pub async fn str_contents(&mut self) -> Result<&str, Error> {
        let bytes = self.contents().await?;
        std::str::from_utf8(bytes)
            .map_err(|e| Error::bad_request(format!("the body is not UTF-8: {e}")))
    }

    /// The whole body as JSON.
    pub async fn json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, Error> {
        let bytes = self.contents().await?;
        serde_json::from_slice(bytes)
            .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(Bytes::from(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::Bytes(Bytes::from(text))
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self::Bytes(Bytes::from_static(text.as_bytes()))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Self::Bytes(Bytes::from_static(bytes))
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::Bytes(bytes)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = ErrorCode;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        match self.get_mut() {
            Body::Bytes(bytes) if bytes.is_empty() => Poll::Ready(None),
            Body::Bytes(bytes) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(bytes))))),
            Body::Incoming(incoming) => Pin::new(incoming.as_mut()).poll_frame(cx),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Bytes(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Body::Incoming(incoming) => incoming.size_hint(),
        }
    }
}

#[doc(hidden)]
pub mod internal {
    pub use wasip3;
    pub use wasip3::exports::http::handler::Guest;
    pub use wasip3::http::types::{ErrorCode, Request as WasiRequest, Response as WasiResponse};
    use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};

    use super::Body;
    use crate::Service;

    pub async fn handle<S: Service>(
        service: &S,
        request: WasiRequest,
    ) -> Result<WasiResponse, ErrorCode> {
        let request = http_from_wasi_request(request)?;
        let request = request.map(|b| Body::Incoming(Box::new(b)));
        let response = service.call(request).await;
        http_into_wasi_response(response)
    }
}
