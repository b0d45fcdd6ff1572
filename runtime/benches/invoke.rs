//! Instantiate-and-handle, in process: the cost of one request to a
//! component without any network, in microseconds.
//!
//! `cargo bench -p berth --bench invoke -- path/to/hello.wasm [iterations]`

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::{Duration, Instant};

use berth_runtime::config::ServiceSpec;
use berth_runtime::host::{Host, HostSettings};
use berth_runtime::limits::Limits;
use berth_runtime::outbound::OutboundPolicy;
use berth_runtime::telemetry::trace_context::{CallChain, TraceContext};

/// The allocator the `berth` binary runs with (`host/src/main.rs`, in the `berth` crate), so the
/// host measured here is the one that ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let component = args
        .next()
        .context("usage: invoke COMPONENT.wasm [ITERATIONS]")?;
    let iterations: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);

    let data = tempfile::tempdir()?;
    let host = Host::new(&HostSettings::small(data.path().to_path_buf()))?;
    host.load_services(&[ServiceSpec {
        name: "hello".into(),
        component: component.into(),
        route: "/".into(),
        limits: Limits::default(),
        outbound: OutboundPolicy::default(),
        buckets: Vec::new(),
        config: Default::default(),
        env: Default::default(),
        reuse: Default::default(),
        declared_at: "bench".into(),
    }])?;
    let version = host
        .registry()
        .snapshot()
        .route(None, "/")
        .map(|r| r.backends.pick(0).clone())
        .context("no route")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
    runtime.block_on(async {
        let cx = host.invoke_context();
        let chain = CallChain::root(TraceContext::continuing(None));
        for i in 0..iterations + 1000 {
            let request = http::Request::builder()
                .uri("http://localhost/")
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))?;
            let started = Instant::now();
            let response =
                berth_runtime::invoke::invoke(&cx, &version, request, "bench".into(), chain)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            let status = response.status();
            response.into_body().collect().await?;
            let took = started.elapsed();
            anyhow::ensure!(status == 200, "status {status}");
            // The first thousand warm the pool's slots and the caches.
            if i >= 1000 {
                samples.push(took);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "instantiate-and-handle: {} iterations, median {:.1} us, p99 {:.1} us, min {:.1} us",
        samples.len(),
        micros(pick(0.5)),
        micros(pick(0.99)),
        micros(pick(0.0))
    );
    Ok(())
}
