//! The cost of host capabilities from a guest, in process and without any
//! network, in microseconds: one service-to-service hop, and one key-value
//! `get` or `set`.
//!
//! `cargo bench -p berth --bench capabilities -- path/to/testing_capabilities.wasm [iterations]`
//!
//! - hop: the median of `/call/b` (service `a` calls `b`'s `/whoami` with
//!   berth-sdk's `call`; `/call-http/b` the same over plain wasi:http) minus
//!   the median of `/whoami` on `a` alone: what one in-process call adds,
//!   the callee's fresh instance included; and the same less the callee's
//!   own request (`/whoami` alone again), which is what the in-process call
//!   itself costs: routing, the request and response crossing between the
//!   two instances, and the caller's waiting.
//! - key-value: the median of `n` operations in one request minus the
//!   median of none, divided by `n`.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::capabilities::calls::{CallChain, TraceContext};
use berth::config::ServiceSpec;
use berth::host::{Host, HostSettings};
use berth::invoke::ServiceVersion;
use berth::limits::Limits;
use berth::outbound::OutboundPolicy;

/// The allocator the `berth` binary runs with (`host/src/main.rs`), so the
/// host measured here is the one that ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Key-value operations per measured request.
const KV_OPS: u32 = 100;

fn spec(name: &str, component: &str) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        component: component.into(),
        route: format!("/{name}"),
        limits: Limits::default(),
        outbound: OutboundPolicy::default(),
        buckets: Vec::new(),
        config: Default::default(),
        declared_at: "bench".into(),
    }
}

/// Median time of `iterations` requests (after a warm-up) to `path`.
async fn median(
    host: &Host,
    version: &Arc<ServiceVersion>,
    method: &str,
    path: &str,
    iterations: usize,
) -> anyhow::Result<Duration> {
    let cx = host.invoke_context();
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations + iterations / 10 {
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))?;
        let chain = CallChain::root(TraceContext::continuing(None));
        let started = Instant::now();
        let response = berth::invoke::invoke(&cx, version, request, "bench".into(), chain)
            .await
            .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        let took = started.elapsed();
        anyhow::ensure!(
            status == 200,
            "{path}: status {status}: {}",
            String::from_utf8_lossy(&body)
        );
        if i >= iterations / 10 {
            samples.push(took);
        }
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let component = args
        .next()
        .context("usage: capabilities COMPONENT.wasm [ITERATIONS [hop|kv]]")?;
    let iterations: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(5_000);
    // `hop` or `kv` measures only that, for profiling.
    let only = args.next();

    let data = tempfile::tempdir()?;
    let host = Host::new(&HostSettings {
        data_dir: data.path().to_path_buf(),
        max_instances: 100,
        max_call_depth: 10,
        kv: Default::default(),
    })?;
    host.load_services(&[spec("a", &component), spec("b", &component)])?;
    let version = host
        .registry()
        .snapshot()
        .route(None, "/a")
        .map(|r| r.backends.pick(0).clone())
        .context("no route")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if only.as_deref() != Some("kv") {
            hop(&host, &version, iterations).await?;
        }
        if only.as_deref() != Some("hop") {
            key_value(&host, &version, iterations / 5).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}

async fn hop(host: &Host, version: &Arc<ServiceVersion>, iterations: usize) -> anyhow::Result<()> {
    let alone = median(host, version, "GET", "/whoami", iterations).await?;
    // berth-sdk's `call` (berth:service/call), then the same call made as a
    // plain wasi:http request to `http://b.internal`.
    for (name, path) in [
        ("service-call hop", "/call/b"),
        ("service-call hop over wasi:http", "/call-http/b"),
    ] {
        let called = median(host, version, "GET", path, iterations).await?;
        println!(
            "{name}: {:.1} us median added ({:.1} us with the call, {:.1} us without)",
            micros(called.saturating_sub(alone)),
            micros(called),
            micros(alone)
        );
        // `b` is the same component answering the same `/whoami`, so its
        // own request costs what `a`'s does alone: what the hop adds beyond
        // the callee's request is the call's own cost.
        println!(
            "{name} without the callee's own request: {:.1} us",
            micros(called.saturating_sub(alone * 2))
        );
    }
    Ok(())
}

async fn key_value(
    host: &Host,
    version: &Arc<ServiceVersion>,
    rounds: usize,
) -> anyhow::Result<()> {
    {
        let base = median(host, version, "POST", "/kvloop/get/0", rounds).await?;
        for op in ["get", "set"] {
            let path = format!("/kvloop/{op}/{KV_OPS}");
            let many = median(host, version, "POST", &path, rounds).await?;
            println!(
                "key-value {op}: {:.1} us per round trip from the guest",
                micros(many.saturating_sub(base)) / f64::from(KV_OPS)
            );
        }
    }
    Ok(())
}
