//! A minimum upload rate for request bodies, against slow-POST attacks: a
//! client that trickles a body keeps an instance (and its tenant's place)
//! busy for as long as it likes unless the host stops waiting.
//!
//! Only time spent waiting on the client counts: a guest that is slow to read
//! its body is not the client's fault.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The slowest body the host waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinBodyRate {
    /// Waiting the host allows before any byte is owed.
    pub grace: Duration,
    /// Bytes per second the client must keep up after the grace period.
    pub bytes_per_second: u64,
}

impl Default for MinBodyRate {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(10),
            bytes_per_second: 1024,
        }
    }
}

/// A request body that fails once the client falls below the rate; the flag
/// tells the front door to answer 408.
pub struct RateGuardedBody<B> {
    inner: B,
    rate: MinBodyRate,
    received: u64,
    waited: Duration,
    waiting_since: Option<Instant>,
    timer: Pin<Box<Sleep>>,
    too_slow: Arc<AtomicBool>,
}

impl<B> RateGuardedBody<B> {
    pub fn new(inner: B, rate: MinBodyRate, too_slow: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            rate,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            too_slow,
        }
    }

    /// How long the client may have kept the host waiting by now.
    fn allowance(&self) -> Duration {
        let per_second = self.rate.bytes_per_second.max(1);
        self.rate.grace + Duration::from_secs_f64(self.received as f64 / per_second as f64)
    }
}

impl<B> Body for RateGuardedBody<B>
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
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = self.waiting_since.take() {
                    self.waited += since.elapsed();
                }
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    self.received += data.len() as u64;
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let now = Instant::now();
                let since = *self.waiting_since.get_or_insert(now);
                let left = self.allowance().saturating_sub(self.waited);
                let deadline = since + left;
                if now >= deadline {
                    return self.give_up();
                }
                self.timer.as_mut().reset(deadline);
                if self.timer.as_mut().poll(cx).is_ready() {
                    return self.give_up();
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> RateGuardedBody<B> {
    fn give_up(&mut self) -> Poll<Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>> {
        self.too_slow.store(true, Ordering::Relaxed);
        tracing::info!(
            received = self.received,
            "request body too slow; giving up on the client"
        );
        Poll::Ready(Some(Err(wasmtime_wasi_http::Error::ConnectionReadTimeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn trickle(
        chunks: usize,
        every: Duration,
    ) -> impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin {
        let stream = futures::stream::unfold(0, move |n| async move {
            if n == chunks {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok(Frame::data(Bytes::from_static(b"x"))), n + 1))
        });
        StreamBody::new(Box::pin(stream))
    }

    #[tokio::test]
    async fn a_trickling_client_is_cut_off_and_a_steady_one_is_not() {
        let rate = MinBodyRate {
            grace: Duration::from_millis(200),
            bytes_per_second: 10,
        };
        let flag = Arc::new(AtomicBool::new(false));
        // A byte every 300 ms: three times slower than required.
        let slow =
            RateGuardedBody::new(trickle(100, Duration::from_millis(300)), rate, flag.clone());
        let started = std::time::Instant::now();
        assert!(slow.collect().await.is_err());
        assert!(flag.load(Ordering::Relaxed));
        assert!(started.elapsed() < Duration::from_secs(5));

        let flag = Arc::new(AtomicBool::new(false));
        let steady =
            RateGuardedBody::new(trickle(20, Duration::from_millis(5)), rate, flag.clone());
        let body = steady.collect().await.map(|b| b.to_bytes().len());
        assert_eq!(body.ok(), Some(20));
        assert!(!flag.load(Ordering::Relaxed));
    }
}
