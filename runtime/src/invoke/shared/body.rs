//! A response body from a shared instance, which tells its request's
//! worker when the request is over.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

use crate::body::ResponseBody;

/// A response body from a shared instance: tells its request's worker
/// when it is done (sent, failed or dropped by the client), and stops when
/// the request is stopped at its deadline or budget.
pub(super) struct SharedBody {
    pub(super) inner: ResponseBody,
    pub(super) done: Option<oneshot::Sender<()>>,
    pub(super) aborted: oneshot::Receiver<()>,
}

impl SharedBody {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

impl Body for SharedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done.is_some() && Pin::new(&mut this.aborted).poll(cx).is_ready() {
            this.finish();
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionTerminated)));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for SharedBody {
    fn drop(&mut self) {
        self.finish();
    }
}
