//! Logging set-up, request ids, metrics and usage stats.

pub mod book;
pub mod guest_clock;
pub mod incarnation;
pub mod metered;
pub mod metrics;
pub mod otlp;
pub mod stats;
pub mod trace_context;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use tracing_subscriber::EnvFilter;

/// Sends `tracing` events to stderr. The level comes from `BERTH_LOG` (or
/// `RUST_LOG`), `info` by default; `json` selects one JSON object per line.
pub fn init(json: bool) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = std::env::var("BERTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    // The log is written by a thread of its own: a slow reader of stderr
    // (a pipe nobody drains, a stalled log shipper) must never stall the
    // threads that serve requests. Past its buffer, lines are dropped
    // rather than waited for.
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("berth-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second init (tests, embedding) keeps the first subscriber.
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    installed.ok().map(|()| guard)
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
