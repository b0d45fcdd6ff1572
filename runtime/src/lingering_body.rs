//! A body a guest writes that outlives hyper's interest in it.
//!
//! hyper drops a body as soon as it knows it will not send it: a request's
//! at once for a `GET` without `content-length` (it frames the request with
//! length 0), or when the upstream answers early and closes; a response's
//! for a `204`, a `304` or a `HEAD` request, or when the client goes away.
//! Dropping the body closes the guest's `outgoing-body` stream, so a guest
//! that is still writing or flushing that body (wstd flushes even an empty
//! one) reads "connection reset", though its request went out or its
//! answer was sent. A callee of a service call that answers without
//! reading its request drops that body the same way. Whether it does is a race between the guest and hyper's
//! connection task, which under load lost about one outbound request in 170.
//!
//! This wrapper takes the body back when hyper drops it and drains what the
//! guest still writes, so the guest finishes its body as it would against a
//! server that reads everything. The drain is bounded in bytes and time: a
//! guest that keeps writing into a body nobody sends gets the closed stream
//! after that.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// Most bytes drained from a body hyper has dropped.
const DRAIN_BYTES: usize = 1024 * 1024;
/// Longest a dropped body is drained.
const DRAIN_TIME: Duration = Duration::from_secs(5);

pub struct LingeringBody {
    inner: Option<WasiBody>,
}

impl LingeringBody {
    pub fn new(body: WasiBody) -> Self {
        Self { inner: Some(body) }
    }

    /// The wrapped body, boxed again, for where a `WasiBody` is expected.
    pub fn wrap(body: WasiBody) -> WasiBody {
        Self::new(body).boxed_unsync()
    }
}

impl Body for LingeringBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(inner).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            // Ended or failed: nothing left to drain.
            self.inner = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for LingeringBody {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // hyper drops bodies inside its connection task, on the runtime.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

async fn drain(mut body: WasiBody) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, Bytes::len);
            if drained > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A body fed by a channel, as the guest's `outgoing-body` stream is.
    struct Channel(mpsc::Receiver<Bytes>);

    impl Body for Channel {
        type Data = Bytes;
        type Error = HttpError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
        }
    }

    fn channel_body() -> (mpsc::Sender<Bytes>, WasiBody) {
        let (sender, receiver) = mpsc::channel(1);
        (sender, Channel(receiver).boxed_unsync())
    }

    #[tokio::test]
    async fn a_dropped_body_keeps_taking_what_the_guest_writes() {
        let (sender, body) = channel_body();
        drop(LingeringBody::wrap(body));
        for _ in 0..8 {
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                sender.send(Bytes::from_static(b"x")),
            )
            .await;
            assert!(matches!(sent, Ok(Ok(()))), "the guest's write failed");
        }
    }

    #[tokio::test]
    async fn the_drain_stops_after_its_byte_bound() {
        let (sender, body) = channel_body();
        drop(LingeringBody::wrap(body));
        let chunk = Bytes::from(vec![0u8; 16 * 1024]);
        let mut accepted = 0;
        for _ in 0..128 {
            match tokio::time::timeout(Duration::from_secs(5), sender.send(chunk.clone())).await {
                Ok(Ok(())) => accepted += chunk.len(),
                _ => break,
            }
        }
        assert!(accepted > DRAIN_BYTES, "drained only {accepted} bytes");
        assert!(
            accepted <= DRAIN_BYTES + 3 * chunk.len(),
            "kept draining: {accepted} bytes"
        );
    }

    #[tokio::test]
    async fn a_body_hyper_reads_passes_through() {
        let (sender, body) = channel_body();
        let mut body = LingeringBody::wrap(body);
        sender.send(Bytes::from_static(b"hi")).await.ok();
        drop(sender);
        let collected = body.frame().await.and_then(|f| f.ok()?.into_data().ok());
        assert_eq!(collected.as_deref(), Some(&b"hi"[..]));
        assert!(body.frame().await.is_none());
    }
}
