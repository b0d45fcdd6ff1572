//! The end of a request: when the last byte of its response body has been
//! handed to the connection (or the client went away), its duration, status
//! and size are recorded, and its span is exported.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::metrics::ServiceMetrics;
use super::otlp::SpanRecord;
use crate::body::ResponseBody;

/// What to record about one request once its response is done.
pub struct RequestRecord {
    pub metrics: Arc<ServiceMetrics>,
    pub started: Instant,
    /// Present when spans are exported.
    pub span: Option<SpanRecord>,
}

impl RequestRecord {
    /// Starts recording a request routed to a version.
    pub fn start(
        metrics: &Arc<ServiceMetrics>,
        started: Instant,
        span: Option<SpanRecord>,
    ) -> Self {
        metrics.started();
        Self {
            metrics: Arc::clone(metrics),
            started,
            span,
        }
    }

    /// Wraps the response body so the request is recorded when it ends.
    pub fn wrap(self, response: http::Response<ResponseBody>) -> http::Response<ResponseBody> {
        let status = response.status();
        response.map(|inner| {
            let done = inner.is_end_stream();
            let mut body = MeteredBody {
                inner,
                status,
                bytes: 0,
                record: Some(self),
            };
            if done {
                body.finish();
            }
            http_body_util::BodyExt::boxed_unsync(body)
        })
    }
}

struct MeteredBody {
    inner: ResponseBody,
    status: http::StatusCode,
    bytes: u64,
    record: Option<RequestRecord>,
}

impl MeteredBody {
    fn finish(&mut self) {
        if let Some(record) = self.record.take() {
            let took = record.started.elapsed();
            record.metrics.finished(self.status, took, self.bytes);
            if let Some(span) = record.span {
                span.finish(self.status, self.bytes);
            }
        }
    }
}

impl Body for MeteredBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                // Recorded before the last frame is written, so a client
                // that has the whole response also finds it counted.
                if self.inner.is_end_stream() {
                    self.finish();
                }
            }
            Poll::Ready(_) => self.finish(),
            Poll::Pending => {}
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

impl Drop for MeteredBody {
    fn drop(&mut self) {
        self.finish();
    }
}
