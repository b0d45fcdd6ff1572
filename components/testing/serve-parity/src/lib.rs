//! A component that behaves like wasmtime's `serve` test programs, one path
//! each, on raw `wasip2`:
//!
//! - `/` answers `Hello, WASI!`;
//! - `/env/{NAME}` answers the environment variable, or 404;
//! - `/kv/{key}`: `PUT` stores the body, `GET` answers it, through
//!   `wasi:keyvalue@0.2.0-draft` and the store named `""`, as
//!   `wasmtime serve -Skeyvalue` provides it;
//! - `/print` writes a line to stdout and one to stderr, then answers;
//! - `/trap-before-set` panics before setting a response;
//! - `/sleep/{ms}` sleeps, then answers;
//! - `/fill/{n}` stores n keys; `/keys` lists them all page by page
//!   through the draft's numeric cursor, answering `{listed} {distinct}`;
//! - `/count` answers how many requests this instance has served (1 for a
//!   fresh instance per request);
//! - `/leak/{kib}` leaks that much memory and answers the instance's total.

use std::sync::atomic::{AtomicU64, Ordering};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

wit_bindgen::generate!({
    path: "../../../wit/compat",
    world: "berth:compat/keyvalue-draft",
    generate_all,
});

use wasi::keyvalue::store;

const COMMANDS: &[&str] = &[
    "env",
    "kv",
    "print",
    "trap-before-set",
    "sleep",
    "count",
    "leak",
    "fill",
    "keys",
];

static SERVED: AtomicU64 = AtomicU64::new(0);
static LEAKED: AtomicU64 = AtomicU64::new(0);

struct Parity;

fn answer(out: ResponseOutparam, status: u16, text: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(output) = body.write() {
        for chunk in text.as_bytes().chunks(4096) {
            let _ = output.blocking_write_and_flush(chunk);
        }
    }
    let _ = OutgoingBody::finish(body, None);
}

fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Ok(body) = request.consume() else {
        return bytes;
    };
    if let Ok(input) = body.stream() {
        while let Ok(chunk) = input.blocking_read(64 * 1024) {
            bytes.extend_from_slice(&chunk);
        }
    }
    bytes
}

fn kv(request: &IncomingRequest, key: &str) -> (u16, String) {
    let bucket = match store::open("") {
        Ok(bucket) => bucket,
        Err(e) => return (500, format!("open: {e:?}")),
    };
    match request.method() {
        Method::Put => {
            let value = read_body(request);
            match bucket.set(key, &value) {
                Ok(()) => (200, "stored".into()),
                Err(e) => (500, format!("set: {e:?}")),
            }
        }
        _ => match bucket.get(key) {
            Ok(Some(value)) => (200, String::from_utf8_lossy(&value).into_owned()),
            Ok(None) => (404, "no such key".into()),
            Err(e) => (500, format!("get: {e:?}")),
        },
    }
}

impl Guest for Parity {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let path = request.path_with_query().unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        // Whatever route the service has, the test path starts at the first
        // segment naming one; a path naming none is the root.
        let start = segments
            .iter()
            .position(|s| COMMANDS.contains(s))
            .unwrap_or(segments.len());
        let rest: &[&str] = &segments[start..];
        match rest {
            [] => answer(out, 200, "Hello, WASI!"),
            ["env", name] => match std::env::var(name) {
                Ok(value) => answer(out, 200, &value),
                Err(_) => answer(out, 404, "unset"),
            },
            ["kv", key] => {
                let (status, text) = kv(&request, key);
                answer(out, status, &text);
            }
            ["print"] => {
                println!("serve-parity: to stdout");
                eprintln!("serve-parity: to stderr");
                answer(out, 200, "printed");
            }
            ["trap-before-set"] => panic!("serve-parity: trap before set"),
            ["sleep", ms] => {
                let ms: u64 = ms.parse().unwrap_or(0);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                answer(out, 200, "slept");
            }
            ["fill", n] => {
                let n: usize = n.parse().unwrap_or(0);
                let filled = store::open("").and_then(|bucket| {
                    (0..n).try_for_each(|i| bucket.set(&format!("k{i:05}"), b"v"))
                });
                match filled {
                    Ok(()) => answer(out, 200, &n.to_string()),
                    Err(e) => answer(out, 500, &format!("{e:?}")),
                }
            }
            ["keys"] => {
                // Every key, page by page through the draft's numeric cursor.
                let listed = store::open("").and_then(|bucket| {
                    let (mut keys, mut cursor) = (Vec::new(), None);
                    loop {
                        let page = bucket.list_keys(cursor)?;
                        keys.extend(page.keys);
                        match page.cursor {
                            Some(next) => cursor = Some(next),
                            None => break Ok(keys),
                        }
                    }
                });
                match listed {
                    Ok(keys) => {
                        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
                        answer(out, 200, &format!("{} {}", keys.len(), distinct.len()))
                    }
                    Err(e) => answer(out, 500, &format!("{e:?}")),
                }
            }
            ["count"] => answer(out, 200, &served.to_string()),
            ["leak", kib] => {
                let kib: usize = kib.parse().unwrap_or(0);
                let leaked = LEAKED.fetch_add(kib as u64, Ordering::Relaxed) + kib as u64;
                std::mem::forget(vec![1u8; kib * 1024]);
                answer(out, 200, &leaked.to_string());
            }
            _ => answer(out, 404, "no such path"),
        }
    }
}

wasip2::http::proxy::export!(Parity with_types_in wasip2);
