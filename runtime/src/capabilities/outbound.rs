//! Outgoing HTTP requests from guests, and the allow-list that gates them.

use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::time::Duration;
use std::{fmt, str::FromStr, sync::Arc};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::addresses::AddressPolicy;
use super::calls::{ServiceCalls, internal_target};
use crate::hop_trace::mark;
use crate::lingering_body::LingeringBody;
use crate::telemetry::metrics;

/// How long resolving a destination's name may take.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// One allowed destination: `host`, `host:port`, `*.domain` or `*` (any host;
/// meant for development), optionally with a scheme (`https://api.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: stored as `.example.com`, matches subdomains only.
    Suffix(String),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid allowed outbound host `{0}`: {1}")]
pub struct AllowedHostError(String, &'static str);

impl FromStr for AllowedHost {
    type Err = AllowedHostError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| AllowedHostError(s.to_string(), why);
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) if scheme == "http" || scheme == "https" => {
                (Some(scheme.to_string()), rest)
            }
            Some(_) => return Err(bad("the scheme must be http or https")),
            None => (None, s),
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad("expected host, host:port or *.domain, without a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
                (host, Some(port))
            }
            _ => (rest, None),
        };
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err(bad("a wildcard must look like *.example.com"));
            }
            HostPattern::Suffix(format!(".{domain}"))
        } else if host.contains('*') {
            return Err(bad("a wildcard must look like *.example.com"));
        } else {
            HostPattern::Exact(host)
        };
        Ok(AllowedHost { scheme, host, port })
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(scheme) = &self.scheme {
            write!(f, "{scheme}://")?;
        }
        match &self.host {
            HostPattern::Any => write!(f, "*")?,
            HostPattern::Exact(h) => write!(f, "{h}")?,
            HostPattern::Suffix(d) => write!(f, "*{d}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl AllowedHost {
    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let port_ok = self.port.is_none_or(|p| p == port);
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(d) => host.ends_with(d.as_str()),
        };
        scheme_ok && port_ok && host_ok
    }
}

/// The destinations one service may call. Empty means none: outbound HTTP is
/// denied by default.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
    /// Whether allowed names may resolve to loopback, private and
    /// link-local addresses; only the operator can grant it.
    pub allow_private: bool,
}

impl OutboundPolicy {
    pub fn new(allowed: Vec<AllowedHost>) -> Self {
        Self {
            allowed,
            allow_private: false,
        }
    }

    pub fn allowing_private(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Whether a request to this URI may leave the host.
    pub fn permits(&self, uri: &http::Uri) -> bool {
        let scheme = uri.scheme_str().unwrap_or("https");
        let Some(host) = uri.host() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        self.allowed.iter().any(|a| a.allows(scheme, &host, port))
    }
}

/// The per-request hooks wasmtime-wasi-http consults: where an outgoing
/// request may go, and how many more this request may make.
pub struct OutboundHooks {
    pub policy: Arc<OutboundPolicy>,
    /// Checked against every address a destination resolves to.
    pub addresses: AddressPolicy,
    pub service: Arc<str>,
    pub request_id: Arc<str>,
    /// Outgoing requests this incoming request may still make, of `limit`.
    pub remaining: u32,
    pub limit: u32,
    /// Calls to the tenant's other services.
    pub calls: ServiceCalls,
}

/// Why an outgoing request was not sent.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("destination not in allowed_outbound_hosts")]
    NotAllowed,
    #[error("the request already made its {0} outgoing requests")]
    TooMany(u32),
    #[error("cannot resolve {0}")]
    Dns(String),
    #[error("{0}")]
    Address(#[from] super::addresses::AddressRefusal),
}

impl Refusal {
    fn to_http(&self) -> HttpError {
        match self {
            Self::NotAllowed => HttpError::HttpRequestDenied,
            Self::TooMany(_) => HttpError::ConnectionLimitReached,
            Self::Dns(_) => HttpError::DnsError {
                rcode: None,
                info_code: None,
            },
            Self::Address(_) => HttpError::DestinationIpProhibited,
        }
    }
}

/// Resolves the request's destination and checks every address it resolves
/// to; a plain-HTTP request is then pointed at the checked address, so a
/// second lookup cannot lead it elsewhere. (TLS requests connect by name, for
/// the certificate check; see docs/security.md.)
async fn resolve_checked(
    request: &mut http::Request<WasiBody>,
    addresses: &AddressPolicy,
) -> Result<(), Refusal> {
    let uri = request.uri().clone();
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or_else(|| Refusal::Dns(uri.to_string()))?;
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((bare, port)))
            .await
            .map_err(|_| Refusal::Dns(bare.to_string()))?
            .map_err(|_| Refusal::Dns(bare.to_string()))?
            .collect(),
    };
    let Some(first) = resolved.first().copied() else {
        return Err(Refusal::Dns(bare.to_string()));
    };
    for addr in &resolved {
        addresses.check(*addr)?;
    }
    if !https {
        let mut parts = uri.into_parts();
        parts.authority = first.to_string().parse().ok();
        if let Ok(pinned) = http::Uri::from_parts(parts) {
            *request.uri_mut() = pinned;
        }
    }
    Ok(())
}

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> SendFuture {
        mark("send_request", self.calls.chain.depth);
        let internal = internal_target(request.uri());
        let refused = if internal.is_none() && !self.policy.permits(request.uri()) {
            Some(Refusal::NotAllowed)
        } else if self.remaining == 0 {
            Some(Refusal::TooMany(self.limit))
        } else {
            None
        };
        let kind = if internal.is_some() {
            "internal"
        } else {
            "external"
        };
        if let Some(refusal) = refused {
            metrics::outbound(&self.calls.tenant, &self.service, kind, "refused");
            return self.refuse(&request, refusal);
        }
        self.remaining -= 1;
        if let Some(service) = internal {
            metrics::outbound(&self.calls.tenant, &self.service, kind, "sent");
            return self.call_service(service, request);
        }
        // The upstream continues this request's trace, unless the guest
        // already set a trace context of its own.
        if !request.headers().contains_key("traceparent")
            && let Ok(value) = http::HeaderValue::from_str(&self.calls.chain.trace.header())
        {
            request.headers_mut().insert("traceparent", value);
        }
        let addresses = self.addresses.clone();
        let tenant = Arc::clone(&self.calls.tenant);
        let (service, request_id) = (Arc::clone(&self.service), Arc::clone(&self.request_id));
        tracing::debug!(%service, %request_id, uri = %request.uri(), "outbound request");
        Box::new(async move {
            if let Err(refusal) = resolve_checked(&mut request, &addresses).await {
                tracing::warn!(%service, %request_id, uri = %request.uri(), reason = %refusal, "outbound request denied");
                metrics::outbound(&tenant, &service, "external", "refused");
                return Err(refusal.to_http());
            }
            let uri = request.uri().clone();
            let request = request.map(LingeringBody::wrap);
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options)
                .await
                .inspect_err(|error| {
                    tracing::info!(%service, %request_id, %uri, %error, "outbound request failed");
                    metrics::outbound(&tenant, &service, "external", "failed");
                })?;
            metrics::outbound(&tenant, &service, "external", "sent");
            let response = response.map(BodyExt::boxed_unsync);
            Ok((
                response,
                Box::new(io) as Box<dyn Future<Output = Result<(), HttpError>> + Send>,
            ))
        })
    }
}

impl OutboundHooks {
    /// Counts one call over `berth:service/call` against this request's
    /// outgoing requests, as `send_request` counts one over wasi:http: the
    /// calls to make it with, or the limit when none are left. The caller
    /// counts the call sent or refused in the metrics.
    pub fn take_internal_call(&mut self) -> Result<ServiceCalls, u32> {
        if self.remaining == 0 {
            return Err(self.limit);
        }
        self.remaining -= 1;
        Ok(self.calls.clone())
    }

    fn call_service(&self, service: String, request: http::Request<WasiBody>) -> SendFuture {
        let calls = self.calls.clone();
        Box::new(async move {
            mark("send.task", calls.chain.depth);
            let response = calls.call(&service, request).await;
            mark("send.done", calls.chain.depth);
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }

    fn refuse(&self, request: &http::Request<WasiBody>, refusal: Refusal) -> SendFuture {
        tracing::warn!(
            service = %self.service,
            request_id = %self.request_id,
            uri = %request.uri(),
            reason = %refusal,
            "outbound request denied"
        );
        let error = refusal.to_http();
        Box::new(async move { Err(error) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> OutboundPolicy {
        OutboundPolicy::new(entries.iter().filter_map(|e| e.parse().ok()).collect())
    }

    #[test]
    fn denies_by_default() {
        let uri: http::Uri = "http://example.com/".parse().unwrap();
        assert!(!OutboundPolicy::default().permits(&uri));
    }

    #[test]
    fn matches_host_port_and_scheme() {
        let p = policy(&["127.0.0.1:9000", "*.example.com", "https://api.test"]);
        let ok = |u: &str| p.permits(&u.parse::<http::Uri>().unwrap());
        assert!(ok("http://127.0.0.1:9000/x"));
        assert!(!ok("http://127.0.0.1:9001/x"));
        assert!(ok("https://a.example.com/"));
        assert!(!ok("https://example.com/"));
        assert!(!ok("https://evilexample.com/"));
        assert!(ok("https://api.test/"));
        assert!(!ok("http://api.test/"));
    }

    #[test]
    fn rejects_malformed_entries() {
        assert!("ftp://x".parse::<AllowedHost>().is_err());
        assert!("host/path".parse::<AllowedHost>().is_err());
        assert!("a.*.com".parse::<AllowedHost>().is_err());
        assert!("host:99999".parse::<AllowedHost>().is_err());
    }
}
