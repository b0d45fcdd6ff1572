//! Logging set-up and request ids.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tracing_subscriber::EnvFilter;

/// Sends `tracing` events to stderr. The level comes from `BERTH_LOG` (or
/// `RUST_LOG`), `info` by default; `json` selects one JSON object per line.
pub fn init(json: bool) {
    let filter = std::env::var("BERTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second init (tests, embedding) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A request id unique within this process and very likely across restarts:
/// a per-process random prefix and a counter.
pub fn next_request_id() -> Arc<str> {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
            .unwrap_or(0);
        nanos ^ std::process::id().rotate_left(16)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{prefix:08x}-{n:08x}"))
}

/// Requests answered by one service, by status class. The counters are
/// registered once, when a version is loaded, so the request path only
/// increments one.
#[derive(Clone)]
pub struct RequestCounters([metrics::Counter; 5]);

impl RequestCounters {
    pub fn new(tenant: &str, service: &str) -> Self {
        Self(["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
            metrics::counter!(
                "berth_requests_total",
                "tenant" => tenant.to_string(),
                "service" => service.to_string(),
                "status" => class,
            )
        }))
    }

    pub fn record(&self, status: http::StatusCode) {
        let class = usize::from((status.as_u16() / 100).clamp(1, 5)) - 1;
        self.0[class].increment(1);
    }
}
