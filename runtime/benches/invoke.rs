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
use berth_runtime::reuse::ReusePolicy;
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
    let spec = |route: &str, reuse: ReusePolicy| ServiceSpec {
        reuse,
        ..ServiceSpec::new(route.trim_start_matches('/'), &component, route)
    };
    let kept = ReusePolicy {
        max_requests: 100_000,
        max_concurrent: 1,
        idle_timeout: Duration::from_secs(60),
    };
    host.load_services(&[spec("/fresh", ReusePolicy::FRESH), spec("/kept", kept)])?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for (path, what) in [
        ("/fresh", "instantiate-and-handle"),
        ("/kept", "handle in a kept instance"),
    ] {
        let mut samples = runtime.block_on(measure(&host, path, iterations))?;
        samples.sort();
        let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{what}: {} iterations, median {:.1} us, p99 {:.1} us, min {:.1} us",
            samples.len(),
            micros(pick(0.5)),
            micros(pick(0.99)),
            micros(pick(0.0))
        );
    }
    Ok(())
}

/// One request after another to `path`, each timed from `invoke` to the
/// body's end; the first thousand warm the pool's slots and the caches.
async fn measure(host: &Host, path: &str, iterations: usize) -> anyhow::Result<Vec<Duration>> {
    let version = host
        .registry()
        .snapshot()
        .route(None, path)
        .map(|r| r.backends.pick(0).clone())
        .context("no route")?;
    let cx = host.invoke_context();
    let chain = CallChain::root(TraceContext::continuing(None));
    let mut samples: Vec<Duration> = Vec::with_capacity(iterations);
    for i in 0..iterations + 1000 {
        let request = http::Request::builder()
            .uri(format!("http://localhost{path}"))
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))?;
        let started = Instant::now();
        let response = berth_runtime::invoke::invoke(&cx, &version, request, "bench".into(), chain)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let status = response.status();
        response.into_body().collect().await?;
        let took = started.elapsed();
        anyhow::ensure!(status == 200, "status {status}");
        if i >= 1000 {
            samples.push(took);
        }
        // Lets the guest's task finish (and park its instance) before the
        // next request, as the gap between two requests would.
        tokio::task::yield_now().await;
    }
    Ok(samples)
}
