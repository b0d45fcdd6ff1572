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
//!   Every request carries the headers the front door sets (request id,
//!   route, path info, trace context), as `a`'s requests do in service, and
//!   the paths take turns (see [`Order`]); the hop measured with each path
//!   in a block of its own, as earlier runs did, is printed after.
//! - key-value: the median of `n` operations in one request minus the
//!   median of none, divided by `n`.
//! - `trace` (built with `--features hop-trace`, as `bench/hop_trace.sh`
//!   does): a timeline of `/whoami`, `/call/b` and `/call-http/b`, each
//!   mark's median offset from the start of the request.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_runtime::config::ServiceSpec;
use berth_runtime::host::{Host, HostSettings};
use berth_runtime::invoke::ServiceVersion;
use berth_runtime::telemetry::trace_context::{CallChain, TraceContext};

/// The allocator the `berth` binary runs with (`host/src/main.rs`, in the `berth` crate), so the
/// host measured here is the one that ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Key-value operations per measured request.
const KV_OPS: u32 = 100;

fn spec(name: &str, component: &str) -> ServiceSpec {
    ServiceSpec::new(name, component, &format!("/{name}"))
}

/// One request to service `a`, as the front door hands it over: with the
/// headers only the host sets (request id, route, path below the route,
/// trace context), which the guest reads and a service call passes on.
fn front_door_request(
    method: &str,
    path: &str,
    request_id: &str,
    chain: &CallChain,
) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://localhost/a{path}"))
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))?;
    berth_runtime::forwarding::set_host_headers(
        request.headers_mut(),
        request_id,
        "/a",
        path,
        chain,
    );
    Ok(request)
}

/// In what order the paths of one measurement are sent.
#[derive(Clone, Copy)]
enum Order {
    /// The paths take turns, request by request: each request runs after
    /// others, as it does on a host serving many, and a machine that slows
    /// down part-way through shifts every median alike.
    TakingTurns,
    /// All of one path's requests, then the next path's (earlier runs'
    /// way): a path repeated on its own runs with the caches it warmed for
    /// itself.
    InBlocks,
}

/// The median time of each of `paths` over `iterations` requests apiece
/// (after a warm-up of a tenth as many).
async fn medians(
    host: &Host,
    version: &Arc<ServiceVersion>,
    method: &str,
    paths: &[&str],
    iterations: usize,
    order: Order,
) -> anyhow::Result<Vec<Duration>> {
    let cx = host.invoke_context();
    let rounds = iterations + iterations / 10;
    let sequence: Vec<(usize, usize)> = match order {
        Order::TakingTurns => (0..rounds)
            .flat_map(|round| (0..paths.len()).map(move |path| (round, path)))
            .collect(),
        Order::InBlocks => (0..paths.len())
            .flat_map(|path| (0..rounds).map(move |round| (round, path)))
            .collect(),
    };
    let mut samples = vec![Vec::with_capacity(iterations); paths.len()];
    for (round, index) in sequence {
        let path = paths[index];
        let request_id = berth_runtime::telemetry::next_request_id();
        // One trace context, in the header and in the chain, as the front
        // door has it.
        let chain = CallChain::root(TraceContext::continuing(None));
        let request = front_door_request(method, path, &request_id, &chain)?;
        let started = Instant::now();
        let response = berth_runtime::invoke::invoke(&cx, version, request, request_id, chain)
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
        if round >= iterations / 10 {
            samples[index].push(took);
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            s[s.len() / 2]
        })
        .collect())
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
    let host = Host::new(&HostSettings::small(data.path().to_path_buf()))?;
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
        #[cfg(feature = "hop-trace")]
        if only.as_deref() == Some("trace") {
            timeline::install();
            for path in ["/whoami", "/call/b", "/call-http/b"] {
                timeline::trace(&host, &version, path, iterations).await?;
            }
            return Ok(());
        }
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
    // berth-sdk's `call` (berth:service/call), then the same call made as a
    // plain wasi:http request to `http://b.internal`.
    let paths = ["/whoami", "/call/b", "/call-http/b"];
    let timed = medians(host, version, "GET", &paths, iterations, Order::TakingTurns).await?;
    let [alone, via_call, via_http] = timed[..] else {
        anyhow::bail!("three paths, three medians");
    };
    for (name, called) in [
        ("service-call hop", via_call),
        ("service-call hop over wasi:http", via_http),
    ] {
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
    let blocks = medians(
        host,
        version,
        "GET",
        &paths[..2],
        iterations,
        Order::InBlocks,
    )
    .await?;
    if let [alone, called] = blocks[..] {
        println!(
            "service-call hop, each path measured in a block: {:.1} us median added \
             ({:.1} us with the call, {:.1} us without)",
            micros(called.saturating_sub(alone)),
            micros(called),
            micros(alone)
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
        let get = format!("/kvloop/get/{KV_OPS}");
        let set = format!("/kvloop/set/{KV_OPS}");
        let paths = ["/kvloop/get/0", &get, &set];
        let timed = medians(host, version, "POST", &paths, rounds, Order::TakingTurns).await?;
        let base = timed[0];
        for (op, many) in [("get", timed[1]), ("set", timed[2])] {
            println!(
                "key-value {op}: {:.1} us per round trip from the guest",
                micros(many.saturating_sub(base)) / f64::from(KV_OPS)
            );
        }
    }
    Ok(())
}

/// The `trace` mode: `berth_runtime::hop_trace` marks collected by a `tracing`
/// layer, and their median offsets printed in order.
#[cfg(feature = "hop-trace")]
mod timeline {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt;

    static MARKS: Mutex<Vec<(String, u32, Instant)>> = Mutex::new(Vec::new());

    struct Marks;

    #[derive(Default)]
    struct Fields {
        event: String,
        depth: u32,
    }

    impl tracing::field::Visit for Fields {
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            if field.name() == "event" {
                self.event = value.to_string();
            }
        }
        fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
            if field.name() == "depth" {
                self.depth = u32::try_from(value).unwrap_or(u32::MAX);
            }
        }
        fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Marks {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if event.metadata().target() != berth_runtime::hop_trace::TARGET {
                return;
            }
            let at = Instant::now();
            let mut fields = Fields::default();
            event.record(&mut fields);
            if let Ok(mut marks) = MARKS.lock() {
                marks.push((fields.event, fields.depth, at));
            }
        }
    }

    pub fn install() {
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target(berth_runtime::hop_trace::TARGET, tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(Marks, filter));
        let _ = tracing::subscriber::set_global_default(subscriber);
    }

    fn mark(event: &str) {
        if let Ok(mut marks) = MARKS.lock() {
            marks.push((event.to_string(), 99, Instant::now()));
        }
    }

    pub async fn trace(
        host: &Host,
        version: &Arc<ServiceVersion>,
        path: &str,
        iterations: usize,
    ) -> anyhow::Result<()> {
        let cx = host.invoke_context();
        let mut offsets: BTreeMap<(u32, String, usize), Vec<f64>> = BTreeMap::new();
        for _ in 0..iterations {
            if let Ok(mut marks) = MARKS.lock() {
                marks.clear();
            }
            let request_id = berth_runtime::telemetry::next_request_id();
            let chain = CallChain::root(TraceContext::continuing(None));
            let request = front_door_request("GET", path, &request_id, &chain)?;
            let started = Instant::now();
            let response = berth_runtime::invoke::invoke(&cx, version, request, request_id, chain)
                .await
                .map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
            mark("bench.head");
            let _ = response.into_body().collect().await?.to_bytes();
            mark("bench.end");
            tokio::task::yield_now().await;
            mark("bench.yielded");
            let marks = MARKS.lock().map(|m| m.clone()).unwrap_or_default();
            for (i, (what, depth, at)) in marks.into_iter().enumerate() {
                offsets
                    .entry((depth, what, i))
                    .or_default()
                    .push(micros(at.duration_since(started)));
            }
        }
        println!("{path}:");
        // Marks in fewer than nine requests in ten came in another order:
        // their medians would mislead.
        let mut rows: Vec<(f64, String)> = offsets
            .into_iter()
            .filter(|(_, v)| v.len() * 10 >= iterations * 9)
            .map(|((depth, what, i), mut v)| {
                v.sort_by(|a, b| a.total_cmp(b));
                (
                    v[v.len() / 2],
                    format!("#{i:<2} depth {depth:<2} {what:<16} n={}", v.len()),
                )
            })
            .collect();
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (median, what) in rows {
            println!("  {median:>8.1} us  {what}");
        }
        Ok(())
    }
}
