//! The WASI 0.3 twin of `testing-serve-parity`, one path each:
//!
//! - `/` answers `Hello, WASI!`;
//! - `/env/{NAME}` answers the environment variable, or 404;
//! - `/print` writes a line to stdout and one to stderr;
//! - `/trap-before-set` panics before returning a response;
//! - `/sleep/{ms}` waits (a 0.3 timer: the instance's other work goes on);
//! - `/count` answers how many requests this instance has served;
//! - `/echo` streams the request body back as the response body;
//! - `/stream/{kib}` answers that many KiB, written after the head;
//! - `/kv/{key}`: `PUT` stores the body in the default bucket, `GET` reads
//!   it (`wasi:keyvalue` 0.2.0-draft2); `/config/{key}` reads `wasi:config`;
//! - `/call/{service}/{path...}` asks another service of the tenant over
//!   0.3's `wasi:http/client` at `http://{service}.internal/{path}`;
//! - `/spin` loops until the host stops it;
//! - `/hoard/{n}` holds n future handles at once (the host's tables grow).

use std::sync::atomic::{AtomicU64, Ordering};
use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(P3Parity);

// Berth's capabilities, imported by a 0.3 service as by a 0.2 one.
wasip3::wit_bindgen::generate!({
    path: "../../../wit",
    world: "berth:service/capabilities",
    runtime_path: "wasip3::wit_bindgen::rt",
    generate_all,
});

const COMMANDS: &[&str] = &[
    "env",
    "print",
    "trap-before-set",
    "sleep",
    "count",
    "log-after",
    "echo",
    "stream",
    "kv",
    "config",
    "call",
    "spin",
    "spin-after",
    "hoard",
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
            ["log-after", ms] => {
                // Writes after a wait, while other requests may run in the
                // same instance: the line must name this request.
                let ms: u64 = ms.parse().unwrap_or(0);
                wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
                println!("p3-parity: after {ms}");
                text(200, "logged")
            }
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
            ["kv", key] => kv(request, key).await,
            ["config", key] => match wasi::config0_2_0_rc_1::store::get(key) {
                Ok(Some(value)) => text(200, &value),
                Ok(None) => text(404, "unset"),
                Err(e) => text(500, &format!("{e:?}")),
            },
            ["call", service, rest @ ..] => call(service, &rest.join("/")).await,
            ["spin"] => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            ["spin-after"] => {
                // Answers, then spins in a task of its own once the body
                // has gone: work no request owns any more.
                wit_bindgen::spawn_local(async {
                    wasip3::clocks::monotonic_clock::wait_for(50_000_000).await;
                    let mut n: u64 = 0;
                    loop {
                        n = std::hint::black_box(n.wrapping_add(1));
                    }
                });
                text(200, "spinning")
            }
            ["hoard", n] => {
                // Holds n future pairs at once: each is a handle in the
                // instance's tables, which live in host memory.
                let n: usize = n.parse().unwrap_or(0);
                let mut held = Vec::new();
                for _ in 0..n {
                    held.push(wit_future::new::<Result<(), ErrorCode>>(|| Ok(())));
                }
                text(200, &held.len().to_string())
            }
            _ => text(404, "no such path"),
        }
    }
}

/// Everything a body stream holds, to its end.
async fn read_all(mut body: wasip3::wit_bindgen::StreamReader<u8>) -> Vec<u8> {
    let mut bytes = Vec::new();
    loop {
        let (result, chunk) = body.read(Vec::with_capacity(16 * 1024)).await;
        bytes.extend_from_slice(&chunk);
        if !matches!(result, wasip3::wit_bindgen::StreamResult::Complete(_)) {
            break;
        }
    }
    bytes
}

/// The whole body of a request.
async fn body_of(request: Request) -> Vec<u8> {
    let (_, result_rx) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Request::consume_body(request, result_rx);
    read_all(body).await
}

async fn kv(request: Request, key: &str) -> Result<Response, ErrorCode> {
    use wasi::keyvalue::store;
    let bucket = match store::open("default") {
        Ok(bucket) => bucket,
        Err(e) => return text(500, &format!("open: {e:?}")),
    };
    let is_put = matches!(request.get_method(), wasip3::http::types::Method::Put);
    if is_put {
        let value = body_of(request).await;
        return match bucket.set(key, &value) {
            Ok(()) => text(200, "stored"),
            Err(e) => text(500, &format!("set: {e:?}")),
        };
    }
    match bucket.get(key) {
        Ok(Some(value)) => answer(200, value),
        Ok(None) => text(404, "no such key"),
        Err(e) => text(500, &format!("get: {e:?}")),
    }
}

/// `GET http://{service}.internal/{path}` over wasi:http 0.3's client,
/// answered with the callee's status and body.
async fn call(service: &str, path: &str) -> Result<Response, ErrorCode> {
    use wasip3::http::types::{Method, Scheme};
    let (_, trailers) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, trailers, None);
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(&format!("{service}.internal")));
    let _ = request.set_path_with_query(Some(&format!("/{path}")));
    let response = match wasip3::http::client::send(request).await {
        Ok(response) => response,
        Err(e) => return text(502, &format!("call failed: {e:?}")),
    };
    let status = response.get_status_code();
    let (_, result_rx) = wit_future::new(|| Ok(()));
    let (body, _trailers) = Response::consume_body(response, result_rx);
    answer(status, read_all(body).await)
}
