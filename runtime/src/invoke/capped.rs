//! Bodies held to their size limits: a request body the guest reads and a
//! response body it writes.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use crate::body::{ResponseBody, declared_length};
use crate::error::RequestError;
use crate::lingering_body::LingeringBody;

/// A body cut off with an error once it passes its limit: a request body
/// (the flag then tells the invoker to answer 413) or a guest's response body
/// (its status is already sent, so the client sees the stream end early).
pub(super) struct CappedBody<B> {
    pub(super) inner: B,
    pub(super) remaining: u64,
    pub(super) limit: u64,
    /// The error a body over its limit ends with.
    pub(super) too_large: fn(Option<u64>) -> wasmtime_wasi_http::Error,
    pub(super) exceeded: Option<Arc<AtomicBool>>,
    /// Counts the bytes that pass, when they are metered.
    pub(super) counted: Option<metrics::Counter>,
    /// A response body passed on the part of a frame that fit: it ends
    /// with the error at the next poll.
    pub(super) cut: bool,
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.cut {
            return Poll::Ready(Some(Err((self.too_large)(Some(self.limit)))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining && self.exceeded.is_none() && self.remaining > 0 {
                        // A guest that writes its body in one large frame
                        // still gets its head and the part that fits out
                        // (hyper sends the head with the first frame).
                        tracing::warn!(limit_bytes = self.limit, "body cut off at its limit");
                        let fits = data.slice(..usize::try_from(self.remaining).unwrap_or(0));
                        self.remaining = 0;
                        self.cut = true;
                        return Poll::Ready(Some(Ok(Frame::data(fits))));
                    }
                    if len > self.remaining {
                        tracing::warn!(limit_bytes = self.limit, "body cut off at its limit");
                        self.remaining = 0;
                        if let Some(flag) = &self.exceeded {
                            flag.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Some(Err((self.too_large)(Some(self.limit)))));
                    }
                    self.remaining -= len;
                    if let Some(counter) = &self.counted {
                        counter.increment(len);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Refuses a response that declares a length above the limit, and cuts off
/// one that streams past it.
pub(super) fn limit_response(
    response: http::Response<ResponseBody>,
    limit: u64,
) -> Result<http::Response<ResponseBody>, RequestError> {
    if declared_length(response.headers()).is_some_and(|n| n > limit) {
        return Err(RequestError::ResponseTooLarge { limit_bytes: limit });
    }
    Ok(response.map(|inner| {
        http_body_util::BodyExt::boxed_unsync(CappedBody {
            // hyper drops the body of a 204 or of an answer to HEAD unread.
            inner: LingeringBody::new(inner),
            remaining: limit,
            limit,
            too_large: wasmtime_wasi_http::Error::HttpResponseBodySize,
            exceeded: None,
            counted: None,
            cut: false,
        })
    }))
}
