//! The WASI 0.3 twin of `testing-serve-parity`, one path each:
//!
//! - `/` answers `Hello, WASI!`;
//! - `/env/{NAME}` answers the environment variable, or 404;
//! - `/print` writes a line to stdout and one to stderr;
//! - `/trap-before-set` panics before returning a response;
//! - `/sleep/{ms}` waits (a 0.3 timer: the instance's other work goes on);
//! - `/count` answers how many requests this instance has served;
//! - `/echo` streams the request body back as the response body;
//! - `/stream/{kib}` answers that many KiB, written after the head.

use std::sync::atomic::{AtomicU64, Ordering};
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(P3Parity);

const COMMANDS: &[&str] = &[
    "env",
    "print",
    "trap-before-set",
    "sleep",
    "count",
    "echo",
    "stream",
];

static SERVED: AtomicU64 = AtomicU64::new(0);

struct P3Parity;

/// A response whose body is `bytes`, written by a task after the head.
fn answer(status: u16, bytes: Vec<u8>) -> Result<Response, ErrorCode> {
    let (mut body_tx, body_rx) = wit_stream::new();
    let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(Fields::new(), Some(body_rx), trailers_rx);
    drop(trailers_tx);
    let _ = response.set_status_code(status);
    wit_bindgen::spawn_local(async move {
        let _ = body_tx.write_all(bytes).await;
    });
    Ok(response)
}

fn text(status: u16, text: &str) -> Result<Response, ErrorCode> {
    answer(status, text.as_bytes().to_vec())
}

impl wasip3::exports::http::handler::Guest for P3Parity {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.get_path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let start = segments
            .iter()
            .position(|s| COMMANDS.contains(s))
            .unwrap_or(segments.len());
        match &segments[start..] {
            [] => text(200, "Hello, WASI!"),
            ["env", name] => match std::env::var(name) {
                Ok(value) => text(200, &value),
                Err(_) => text(404, "unset"),
            },
            ["print"] => {
                println!("p3-parity: to stdout");
                eprintln!("p3-parity: to stderr");
                text(200, "printed")
            }
            ["trap-before-set"] => panic!("p3-parity: trap before set"),
            ["sleep", ms] => {
                let ms: u64 = ms.parse().unwrap_or(0);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                text(200, "slept")
            }
            ["count"] => text(200, &served.to_string()),
            ["echo"] => {
                let (_, result_rx) = wit_future::new(|| Ok(()));
                let (body, trailers) = Request::consume_body(request, result_rx);
                let (response, _sent) = Response::new(Fields::new(), Some(body), trailers);
                Ok(response)
            }
            ["stream", kib] => {
                let kib: usize = kib.parse().unwrap_or(0);
                answer(200, vec![b'x'; kib * 1024])
            }
            _ => text(404, "no such path"),
        }
    }
}
