//! The data plane's front door: accepts connections (HTTP/1.1 and cleartext
//! HTTP/2), enforces protocol-level limits, routes each request and hands it
//! to [`invoke`](crate::invoke).

use http::HeaderValue;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::body::ResponseBody;
use crate::body_rate::{MinBodyRate, RateGuardedBody};
use crate::error::RequestError;
use crate::forwarding::set_host_headers;
use crate::host::Host;
use crate::invoke::{ServiceVersion, invoke};
use crate::random::roll;
use crate::router::path_info;
use crate::telemetry::metered::RequestRecord;
use crate::telemetry::next_request_id;
use crate::telemetry::otlp::{SpanRecord, Value};
use crate::telemetry::trace_context::{CallChain, TraceContext};

/// Protocol limits of the front door, before any service is chosen.
#[derive(Debug, Clone)]
pub struct FrontDoor {
    /// A client must send its whole request head within this time (slowloris).
    pub header_read_timeout: Duration,
    /// Most header fields hyper parses; a service may accept fewer.
    pub max_headers: usize,
    /// Largest request head (request line and headers); 431 past it.
    pub max_head_bytes: usize,
    /// HTTP/2 streams one connection may have open.
    pub h2_max_concurrent_streams: u32,
    /// Longest request URI (path and query); 414 past it.
    pub max_uri_bytes: usize,
    /// The slowest request body the host waits for; 408 below it.
    pub body_rate: MinBodyRate,
    /// Connections one client address may hold open at once; further ones
    /// are answered 429 and closed.
    pub max_connections_per_client: usize,
}

impl Default for FrontDoor {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 200,
            max_head_bytes: 64 * 1024,
            h2_max_concurrent_streams: 200,
            max_uri_bytes: 8 * 1024,
            body_rate: MinBodyRate::default(),
            max_connections_per_client: 1024,
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and lets open
/// connections finish their requests for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    host: Arc<Host>,
    front: FrontDoor,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let builder = connection_builder(&front);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let clients = Arc::new(ClientConnections::new(front.max_connections_per_client));
    let front = Arc::new(front);
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead
                    // of spinning on the error.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Some(held) = clients.open(peer.ip()) else {
            tracing::debug!(%peer, "too many connections from this client");
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let host = Arc::clone(&host);
        let front_door = Arc::clone(&front);
        let service = hyper::service::service_fn(move |request| {
            let host = Arc::clone(&host);
            let front = Arc::clone(&front_door);
            async move { Ok::<_, Infallible>(handle(&host, &front, request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "connection ended with an error");
            }
            drop(held);
        });
    }

    tracing::info!("shutting down: draining open connections");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain:?}; closing them");
    }
}

/// HTTP/1.1 and HTTP/2 as the front door allows them.
fn connection_builder(front: &FrontDoor) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(front.header_read_timeout)
        .max_headers(front.max_headers)
        .max_buf_size(front.max_head_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(front.h2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(front.max_head_bytes).unwrap_or(u32::MAX))
        // Rapid reset (CVE-2023-44487): a client resetting streams faster than
        // they are served, or provoking resets, gets GOAWAY.
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(256);
    builder
}

/// Answers a connection past the per-client limit with 429 and closes it.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const REFUSAL: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\n\
        connection: close\r\ncontent-length: 0\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(REFUSAL)).await;
    let _ = stream.shutdown().await;
}

/// The authority a request is routed by: the request target's when it has
/// one (absolute form, or HTTP/2's `:authority`), as RFC 9112 3.2.2 says,
/// else the `Host` header. A `Host` that names another authority than the
/// target is refused: the router and the guest must never see two.
fn routing_authority<B>(request: &http::Request<B>) -> Result<Option<&str>, RequestError> {
    let header = match request.headers().get(http::header::HOST) {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| RequestError::BadRequest("the Host header is not text"))?,
        ),
        None => None,
    };
    match (request.uri().authority(), header) {
        (Some(target), Some(host)) if !target.as_str().eq_ignore_ascii_case(host) => {
            Err(RequestError::BadRequest(
                "the Host header disagrees with the request target's authority",
            ))
        }
        (Some(target), _) => Ok(Some(target.as_str())),
        (None, host) => Ok(host),
    }
}

/// Routes and runs one request; every outcome is a response.
pub async fn handle(
    host: &Host,
    front: &FrontDoor,
    request: http::Request<Incoming>,
) -> http::Response<ResponseBody> {
    let started = std::time::Instant::now();
    let request_id = next_request_id();
    if let Err(error) = check_uri(&request, front) {
        crate::telemetry::metrics::unrouted("uri-too-long");
        return error.to_response(&request_id);
    }
    let too_slow = Arc::new(AtomicBool::new(false));
    let mut request =
        request.map(|body| RateGuardedBody::new(body, front.body_rate, Arc::clone(&too_slow)));
    let (version, prefix) = match pick_version(host, &request, &request_id) {
        Ok(picked) => picked,
        Err(error) => return error.to_response(&request_id),
    };
    let chain = CallChain::root(TraceContext::continuing(
        request.headers().get("traceparent"),
    ));
    let (span, exported) = request_span(&request, &version, &prefix, &chain, &request_id);
    let record = RequestRecord::start(&version.metrics, started, exported);
    let info = path_info(&prefix, request.uri().path()).to_string();
    set_host_headers(request.headers_mut(), &request_id, &prefix, &info, &chain);
    let result = invoke(
        &host.invoke_context(),
        &version,
        request,
        Arc::clone(&request_id),
        chain,
    )
    .instrument(span)
    .await;
    let mut response = match result {
        _ if too_slow.load(Ordering::Relaxed) => RequestError::BodyTooSlow.to_response(&request_id),
        Ok(response) => response,
        Err(error) => error.to_response(&request_id),
    };
    let headers = response.headers_mut();
    // Request ids are hex and dashes, always a valid header value.
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    // Which version answered: what canary analysis and clients debugging a
    // rollout need to see.
    if let Ok(v) = HeaderValue::from_str(&version.version) {
        headers.insert("x-berth-version", v);
    }
    record.wrap(response)
}

fn check_uri<B>(request: &http::Request<B>, front: &FrontDoor) -> Result<(), RequestError> {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > front.max_uri_bytes {
        return Err(RequestError::UriTooLong {
            length,
            limit: front.max_uri_bytes,
        });
    }
    Ok(())
}

/// The version that serves the request, by its authority and path and the
/// route's split, with the route's prefix.
fn pick_version<B>(
    host: &Host,
    request: &http::Request<B>,
    request_id: &str,
) -> Result<(Arc<ServiceVersion>, String), RequestError> {
    let authority = routing_authority(request).inspect_err(|_| {
        crate::telemetry::metrics::unrouted("bad-request");
    })?;
    let path = request.uri().path();
    let table = host.registry().snapshot();
    let Some(route) = table.route(authority, path) else {
        tracing::debug!(request_id, path, "no route");
        crate::telemetry::metrics::unrouted("no-route");
        return Err(RequestError::NoRoute);
    };
    Ok((
        Arc::clone(route.backends.pick(roll())),
        route.prefix.clone(),
    ))
}

/// The request's `tracing` span (tenant, service, version, request id,
/// trace id) and, when traces are exported, its OTLP span.
fn request_span<B>(
    request: &http::Request<B>,
    version: &ServiceVersion,
    prefix: &str,
    chain: &CallChain,
    request_id: &str,
) -> (tracing::Span, Option<SpanRecord>) {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "request",
        tenant = %version.tenant,
        service = %version.service,
        version = %version.version,
        request_id = %request_id,
        trace_id = %format_args!("{:032x}", chain.trace.trace_id),
        http.request.method = %request.method(),
        url.path = path,
    );
    let exported = SpanRecord::start(chain.trace, request.method(), prefix).map(|mut s| {
        s.set("url.path", Value::Str(path));
        s.set("url.scheme", Value::Str("http"));
        if let Ok(Some(host)) = routing_authority(request) {
            s.set("server.address", Value::Str(host));
        }
        if let Some(agent) = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            s.set("user_agent.original", Value::Str(agent));
        }
        s.set(
            "network.protocol.version",
            Value::Str(protocol_version(request.version())),
        );
        s.set_service(
            &version.tenant,
            &version.service,
            &version.version,
            request_id,
        );
        s
    });
    (span, exported)
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Open connections per client address.
struct ClientConnections {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection, counted until it is dropped.
struct HeldConnection {
    clients: Arc<ClientConnections>,
    ip: IpAddr,
}

impl ClientConnections {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn open(self: &Arc<Self>, ip: IpAddr) -> Option<HeldConnection> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(HeldConnection {
            clients: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        let mut open = self
            .clients
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_target_authority_wins_and_a_disagreeing_host_is_refused() {
        let request = |uri: &str, host: Option<&str>| {
            let mut builder = http::Request::get(uri);
            if let Some(host) = host {
                builder = builder.header(http::header::HOST, host);
            }
            builder.body(()).unwrap_or_default()
        };
        let authority =
            |uri, host| routing_authority(&request(uri, host)).map(|a| a.map(str::to_owned));
        assert_eq!(
            authority("/", Some("a.localhost")),
            Ok(Some("a.localhost".into()))
        );
        assert_eq!(
            authority("http://a.localhost/", None),
            Ok(Some("a.localhost".into()))
        );
        assert_eq!(
            authority("http://a.localhost:8080/", Some("A.LOCALHOST:8080")),
            Ok(Some("a.localhost:8080".into()))
        );
        assert_eq!(
            authority("http://a.localhost/", Some("b.localhost")),
            Err(RequestError::BadRequest(
                "the Host header disagrees with the request target's authority"
            ))
        );
        assert_eq!(authority("/", None), Ok(None));
    }
}
