//! What the in-process tests share: one request through `invoke`, as the
//! front door would hand it over, and what it came to.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;

use berth_runtime::host::Host;
use berth_runtime::invoke::ServiceVersion;
use berth_runtime::telemetry::trace_context::{CallChain, TraceContext};

/// The version serving `path` now.
pub fn version(host: &Host, path: &str) -> Result<Arc<ServiceVersion>> {
    host.registry()
        .snapshot()
        .route(None, path)
        .map(|r| r.backends.pick(0).clone())
        .context("no route")
}

/// One `GET path` with `headers` filler headers: the guest's status and
/// body, or the kind of failure the host answered with (`memory-limit`, ...).
pub async fn request(
    host: &Host,
    path: &str,
    headers: usize,
) -> Result<Result<(u16, String), &'static str>> {
    let mut request = http::Request::builder()
        .uri(format!("http://localhost{path}"))
        .header("host", "localhost");
    for i in 0..headers {
        request = request.header(format!("x-filler-{i}"), "1");
    }
    let request = request.body(Full::new(Bytes::new()))?;
    let chain = CallChain::root(TraceContext::continuing(None));
    let answer = berth_runtime::invoke::invoke(
        &host.invoke_context(),
        &version(host, path)?,
        request,
        "test".into(),
        chain,
    )
    .await;
    Ok(match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.ok();
            let text = body.map_or_else(String::new, |b| {
                String::from_utf8_lossy(&b.to_bytes()).into_owned()
            });
            Ok((status, text))
        }
        Err(error) => Err(error.kind()),
    })
}
