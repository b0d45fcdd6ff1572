//! The headers only the host sets on a request it hands a guest, whether
//! from a client (the front door) or from another service (a call).

use http::HeaderValue;

use crate::telemetry::trace_context::CallChain;

/// Headers a client may not set: the host sets them for the guest.
const HOST_SET_HEADERS: [&str; 4] = [
    "x-request-id",
    "x-berth-route",
    "x-berth-path-info",
    "traceparent",
];

/// Sets the headers only the host may set on a request a guest receives:
/// its id, the route it came by, the path below that route, and its trace
/// context. Whatever a client sent under those names is dropped.
pub fn set_host_headers(
    headers: &mut http::HeaderMap,
    request_id: &str,
    route: &str,
    path_info: &str,
    chain: &CallChain,
) {
    for name in HOST_SET_HEADERS {
        headers.remove(name);
    }
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("x-request-id", request_id);
    set("x-berth-route", route);
    set("x-berth-path-info", path_info);
    set("traceparent", &chain.trace.header());
}
