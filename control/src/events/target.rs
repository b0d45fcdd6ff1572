//! Where a delivery goes: the subscriber's service, run through the
//! host's service-call path (routing in the tenant, split, admission,
//! limits, metrics, a span), as a call from no service.

use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;

use berth_runtime::capabilities::calls::{ServiceCall, ServiceDispatch};
use berth_runtime::host::Host;
use berth_runtime::telemetry::trace_context::CallChain;

/// Most of a subscriber's answer read before it is dropped: only its
/// status and its end matter.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Runs a delivery's request in its subscriber.
#[async_trait::async_trait]
pub trait EventTarget: Send + Sync {
    /// The subscriber's status once its answer has ended, or why there is
    /// none.
    async fn deliver(
        &self,
        tenant: &str,
        service: &str,
        request: http::Request<Bytes>,
        request_id: Arc<str>,
        chain: CallChain,
    ) -> Result<http::StatusCode, String>;
}

#[async_trait::async_trait]
impl EventTarget for Host {
    async fn deliver(
        &self,
        tenant: &str,
        service: &str,
        request: http::Request<Bytes>,
        request_id: Arc<str>,
        chain: CallChain,
    ) -> Result<http::StatusCode, String> {
        let request = request.map(|bytes| {
            http_body_util::Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync()
        });
        let response = self
            .dispatch(ServiceCall {
                tenant: Arc::from(tenant),
                caller: Arc::from(""),
                service,
                request,
                request_id,
                chain,
                started: std::time::Instant::now(),
            })
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // The delivery counts once the subscriber has finished answering:
        // a guest that fails halfway through its body did not take it.
        let mut body = response.into_body();
        let mut read = 0;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the answer failed: {e}"))?;
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > MAX_ANSWER_BYTES {
                    break;
                }
            }
        }
        Ok(status)
    }
}
