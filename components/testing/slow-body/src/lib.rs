//! Test guest: writes its response body slowly, one chunk every interval.
//! `?chunks=N&interval_ms=M` (defaults 5 and 100).

use wasip2::clocks::monotonic_clock;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct SlowBody;

fn query_param(query: &str, name: &str, default: u64) -> u64 {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

impl Guest for SlowBody {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let chunks = query_param(query, "chunks", 5);
        let interval_ms = query_param(query, "interval_ms", 100);

        let response = OutgoingResponse::new(Fields::new());
        let Ok(body) = response.body() else { return };
        ResponseOutparam::set(response_out, Ok(response));
        let Ok(out) = body.write() else { return };
        for i in 0..chunks {
            if out
                .blocking_write_and_flush(format!("chunk {i}\n").as_bytes())
                .is_err()
            {
                return;
            }
            monotonic_clock::subscribe_duration(interval_ms * 1_000_000).block();
        }
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(SlowBody with_types_in wasip2);
