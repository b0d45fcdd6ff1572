//! Test guest: one hostile behaviour per path, for the isolation suite.
//!
//! - `/random?bytes=N`: asks the host for N random bytes at once.
//! - `/resources?count=N`: creates N host resources and keeps them all.
//! - `/headers?count=N`: builds a response header map of N fields.
//! - `/fields?count=N&kib=K`: builds N header maps, each with one K KiB
//!   value, and keeps them all.
//! - `/request-headers?count=N`: asks for the request's headers N times
//!   and keeps every copy.
//! - `/chatter?lines=N`: prints N lines to stdout as fast as it can.
//! - `/never`: never sets a response.
//! - `/endless`: streams a response body forever.
//! - `/recurse`: recurses without end.
//! - `/grow`: grows its memory until refused, then touches it.
//! - `/spin`: spins forever without yielding.
//! - `/sleep?ms=N`: sleeps, then answers (a slow guest).
//! - `/read`: reads the whole request body, then answers with its size.
//! - `/cas-hoard?count=N&kib=K`: stores K KiB under one key, then opens N
//!   compare-and-swap handles on it (each keeps the value it read) and
//!   keeps them all; 507 when the host refuses one.
//! - anything else: answers `ok`, quickly.

use wasip2::clocks::monotonic_clock;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hostile;

/// `wasi:keyvalue`, bound directly: the hoarding case needs handles the
/// SDK never keeps.
mod kv {
    wit_bindgen::generate!({
        path: "../../../wit",
        world: "berth:service/capabilities",
        with: {
            "wasi:io/poll@0.2.12": wasip2::io::poll,
        },
        generate_all,
    });
    pub use wasi::keyvalue::{atomics, store};
}

/// Opens `count` CAS handles on one `kib` KiB value; how many it got, or
/// the host's refusal.
fn cas_hoard(count: u64, kib: u64) -> Result<usize, String> {
    let bucket = kv::store::open("default").map_err(|e| format!("{e:?}"))?;
    let size = usize::try_from(kib).unwrap_or(0) * 1024;
    bucket
        .set("hoard", &vec![b'h'; size])
        .map_err(|e| format!("{e:?}"))?;
    let mut held = Vec::new();
    for _ in 0..count {
        let cas = kv::atomics::Cas::new(&bucket, "hoard").map_err(|e| format!("{e:?}"))?;
        held.push(cas);
    }
    Ok(held.len())
}

fn query_param(query: &str, name: &str, default: u64) -> u64 {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

fn respond(out: ResponseOutparam, status: u16, headers: Fields, text: &str) {
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(status);
    let Ok(body) = response.body() else { return };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = body.write() {
        let _ = stream.blocking_write_and_flush(text.as_bytes());
    }
    let _ = OutgoingBody::finish(body, None);
}

// Recursing without end is the point: the host must stop it with a trap.
#[allow(unconditional_recursion)]
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [depth; 32];
    frame[(depth % 32) as usize] = std::hint::black_box(depth);
    recurse(depth + 1).wrapping_add(frame.iter().sum::<u64>())
}

impl Guest for Hostile {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_query = request.path_with_query().unwrap_or_default();
        let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
        let path = path.rsplit('/').next().unwrap_or("");
        match path {
            "cas-hoard" => match cas_hoard(
                query_param(query, "count", 10),
                query_param(query, "kib", 1),
            ) {
                Ok(n) => respond(out, 200, Fields::new(), &format!("holding {n} handles\n")),
                Err(e) => respond(out, 507, Fields::new(), &format!("refused: {e}\n")),
            },
            "random" => {
                let bytes =
                    wasip2::random::random::get_random_bytes(query_param(query, "bytes", 16));
                respond(
                    out,
                    200,
                    Fields::new(),
                    &format!("got {} random bytes\n", bytes.len()),
                );
            }
            "resources" => {
                let count = query_param(query, "count", 10);
                let kept: Vec<Fields> = (0..count).map(|_| Fields::new()).collect();
                respond(
                    out,
                    200,
                    Fields::new(),
                    &format!("kept {} resources\n", kept.len()),
                );
            }
            "headers" => {
                let count = query_param(query, "count", 10);
                let headers = Fields::new();
                let value = vec![b'v'; 100];
                let mut appended = 0u64;
                for i in 0..count {
                    if headers.append(&format!("x-hostile-{i}"), &value).is_err() {
                        break;
                    }
                    appended += 1;
                }
                // A map the host refused to grow is still a valid response.
                let _ = headers.delete("x-hostile-0");
                let text = format!("appended {appended} of {count} headers\n");
                respond(out, 200, Fields::new(), &text);
                drop(headers);
            }
            "fields" => {
                let count = query_param(query, "count", 10);
                let kib = query_param(query, "kib", 120);
                let value = vec![b'v'; kib as usize * 1024];
                let mut kept = Vec::new();
                for _ in 0..count {
                    let fields = Fields::new();
                    let _ = fields.append("x-hoard", &value);
                    kept.push(fields);
                }
                let text = format!("kept {} header maps\n", kept.len());
                respond(out, 200, Fields::new(), &text);
            }
            "request-headers" => {
                let count = query_param(query, "count", 10);
                let kept: Vec<Fields> = (0..count).map(|_| request.headers()).collect();
                let text = format!("kept {} copies\n", kept.len());
                respond(out, 200, Fields::new(), &text);
            }
            "chatter" => {
                let lines = query_param(query, "lines", 10);
                let stdout = wasip2::cli::stdout::get_stdout();
                for i in 0..lines {
                    let line = format!("chatter line {i}\n");
                    if stdout.blocking_write_and_flush(line.as_bytes()).is_err() {
                        break;
                    }
                }
                respond(out, 200, Fields::new(), &format!("printed {lines} lines\n"));
            }
            "never" => loop {
                monotonic_clock::subscribe_duration(1_000_000_000).block();
            },
            "endless" => {
                let response = OutgoingResponse::new(Fields::new());
                let Ok(body) = response.body() else { return };
                ResponseOutparam::set(out, Ok(response));
                let Ok(stream) = body.write() else { return };
                // 4 KiB: the most one blocking write may carry.
                let chunk = vec![b'x'; 4096];
                while stream.blocking_write_and_flush(&chunk).is_ok() {}
            }
            "recurse" => {
                let n = recurse(0);
                respond(out, 200, Fields::new(), &format!("{n}\n"));
            }
            "grow" => {
                let mut pages = 0usize;
                while core::arch::wasm32::memory_grow(0, 16) != usize::MAX {
                    pages += 16;
                }
                respond(out, 200, Fields::new(), &format!("grew {pages} pages\n"));
            }
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "read" => {
                let mut total = 0usize;
                if let Ok(body) = request.consume()
                    && let Ok(stream) = body.stream()
                {
                    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                        total += chunk.len();
                    }
                }
                respond(out, 200, Fields::new(), &format!("read {total} bytes\n"));
            }
            "sleep" => {
                let ms = query_param(query, "ms", 100);
                monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                respond(out, 200, Fields::new(), "slept\n");
            }
            _ => respond(out, 200, Fields::new(), "ok\n"),
        }
    }
}

wasip2::http::proxy::export!(Hostile with_types_in wasip2);
