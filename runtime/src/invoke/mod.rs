//! One request in one fresh instance: build the `Store`, instantiate from the
//! service version's pre-instance, call `wasi:http/incoming-handler.handle`,
//! and turn what happens into a streamed response or a [`RequestError`].

mod capped;
mod guest;
mod shared;
mod store;
pub(crate) mod tasks;

use guest::{GuestCall, GuestInstance};
pub use guest::{GuestPre, LinkError, WorldLinker};
pub use shared::SharedInstances;

use bytes::Bytes;
use http_body::Body;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::Store;

use crate::admission::{Admission, TenantGate};
use crate::body::{ResponseBody, declared_length};
use crate::capabilities::ServiceCapabilities;
use crate::capabilities::calls::ServiceDispatch;
use crate::capabilities::log_rate::LogRate;
use crate::capabilities::outbound::OutboundPolicy;
pub use crate::capabilities::state::HostState;
use crate::error::RequestError;
use crate::hop_trace::mark;
use crate::limits::{ComponentLimits, Limits};
use crate::logbook::ServiceLog;
use crate::reuse::{InstancePark, ReuseKey, ReusePolicy};
use crate::telemetry::guest_clock::GuestClock;
use crate::telemetry::metrics::ServiceMetrics;
use crate::telemetry::trace_context::CallChain;
use capped::{CappedBody, limit_response};
use store::{classify_failure, new_store, prepare_reused};

/// One deployed version of one service, ready to serve.
pub struct ServiceVersion {
    pub tenant: Arc<str>,
    pub service: Arc<str>,
    pub version: Arc<str>,
    pub digest: String,
    pub limits: Limits,
    pub outbound: Arc<OutboundPolicy>,
    /// Where guest output is kept for the admin API, for deployed services.
    pub log: Option<Arc<ServiceLog>>,
    /// How much the service's guests may log, shared by its versions.
    pub log_rate: Arc<LogRate>,
    pub metrics: Arc<ServiceMetrics>,
    /// The tenant's admission queue and CPU slots.
    pub gate: Arc<TenantGate>,
    pub capabilities: Arc<ServiceCapabilities>,
    pub pre: GuestPre,
    /// How this version's instances are reused between requests.
    pub reuse: ReusePolicy,
    /// Which parked instances may serve this version's requests.
    pub reuse_key: ReuseKey,
}

impl ServiceVersion {
    /// The same version admitted through another tenant gate.
    pub fn with_gate(&self, gate: Arc<TenantGate>) -> Self {
        Self {
            tenant: Arc::clone(&self.tenant),
            service: Arc::clone(&self.service),
            version: Arc::clone(&self.version),
            digest: self.digest.clone(),
            limits: self.limits,
            outbound: Arc::clone(&self.outbound),
            log: self.log.clone(),
            log_rate: Arc::clone(&self.log_rate),
            metrics: Arc::clone(&self.metrics),
            gate,
            capabilities: Arc::clone(&self.capabilities),
            pre: self.pre.clone(),
            reuse: self.reuse,
            // Another gate, and the caller may change its limits: its
            // instances are not this version's.
            reuse_key: ReuseKey::next(),
        }
    }
}

/// The part of a request's handling that outlives the response head: the
/// guest keeps running while it streams the body.
#[derive(Debug)]
enum GuestOutcome {
    Finished,
    Failed(RequestError),
}

/// Checks the request's headers against the service's limits.
pub fn check_headers(headers: &http::HeaderMap, limits: &Limits) -> Result<(), RequestError> {
    let count = headers.len();
    if count > limits.max_headers {
        return Err(RequestError::TooManyHeaders {
            count,
            limit: limits.max_headers,
        });
    }
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > limits.header_bytes {
        return Err(RequestError::HeadersTooLarge {
            size,
            limit: limits.header_bytes,
        });
    }
    Ok(())
}

/// What every request shares: the slots that bound how many instances exist
/// at once, and the instances kept for reuse.
pub struct InvokeContext<'a> {
    pub slots: &'a Arc<Semaphore>,
    /// Idle instances of services whose policy reuses them; each holds one
    /// of `slots`.
    pub park: &'a Arc<InstancePark<LiveInstance>>,
    /// WASI 0.3 instances serving several requests at once now.
    pub shared: &'a Arc<SharedInstances>,
    /// How long a request may wait for a free slot before it is refused with
    /// 503; short bursts queue instead of failing.
    pub queue_timeout: Duration,
    /// The host's own listening sockets, which guests may never call.
    pub own_listeners: &'a Arc<[std::net::SocketAddr]>,
    /// Where this instance's service calls go (the host).
    pub dispatch: &'a Weak<dyn ServiceDispatch>,
    pub max_call_depth: u32,
    /// What one component instance may create: held by its store's limiter.
    pub component: ComponentLimits,
}

/// An instance with its store and its slot of the pool: serving a request,
/// or parked between two.
pub struct LiveInstance {
    store: Store<HostState>,
    guest: GuestInstance,
    _slot: tokio::sync::OwnedSemaphorePermit,
    /// Requests it has served, the one running included.
    served: u32,
}

/// Runs one request of `version`: admission, an instance (a parked one where
/// the version's policy reuses them, else a fresh one), the guest's task, and
/// the response head it sets.
pub async fn invoke<B>(
    cx: &InvokeContext<'_>,
    version: &Arc<ServiceVersion>,
    request: http::Request<B>,
    request_id: Arc<str>,
    chain: CallChain,
) -> Result<http::Response<ResponseBody>, RequestError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let limits = version.limits;
    check_request(request.headers(), &limits)?;
    let started = Instant::now();
    mark("invoke.start", chain.depth);
    let admission = version
        .gate
        .admit()
        .await
        .map_err(|e| refused(version, e))?;
    mark("admitted", chain.depth);
    if version.reuse.shares() && matches!(version.pre, GuestPre::P3(_)) {
        return shared::invoke(cx, version, request, request_id, chain, admission, started).await;
    }
    let mut instance = match reused(cx, version) {
        Some(mut instance) => {
            prepare_reused(&mut instance.store, cx, version, &request_id, chain);
            instance
        }
        None => fresh_instance(cx, version, &request_id, chain).await?,
    };
    instance.served += 1;
    mark("instantiated", chain.depth);
    let exceeded = Arc::new(AtomicBool::new(false));
    let request = capped_request(request, &limits, &exceeded, &version.metrics);
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let call = GuestCall::new(&mut instance.store, &instance.guest, request, sender)?;
    let keep = version.reuse.reuses().then(|| Keep {
        park: Arc::clone(cx.park),
        key: version.reuse_key,
        policy: version.reuse,
        cap: version.gate.places() as usize,
    });
    let guest = tokio::spawn(
        run_guest(GuestRun {
            instance,
            call,
            wall_left: limits.wall_time.saturating_sub(started.elapsed()),
            limits,
            metrics: Arc::clone(&version.metrics),
            admission,
            keep,
            depth: chain.depth,
        })
        .in_current_span(),
    );
    response_head(receiver, guest, &exceeded, &limits, chain.depth).await
}

/// The request with its body held to the service's limit: `exceeded` is
/// set when the body runs past it.
fn capped_request<B>(
    request: http::Request<B>,
    limits: &Limits,
    exceeded: &Arc<AtomicBool>,
    metrics: &ServiceMetrics,
) -> http::Request<CappedBody<B>> {
    request.map(|inner| CappedBody {
        inner,
        remaining: limits.request_body_bytes,
        limit: limits.request_body_bytes,
        too_large: wasmtime_wasi_http::Error::HttpRequestBodySize,
        exceeded: Some(Arc::clone(exceeded)),
        counted: Some(metrics.bytes_in.clone()),
        cut: false,
    })
}

/// A request's head against its limits, before anything is admitted.
fn check_request(headers: &http::HeaderMap, limits: &Limits) -> Result<(), RequestError> {
    check_headers(headers, limits)?;
    if declared_length(headers).is_some_and(|n| n > limits.request_body_bytes) {
        return Err(RequestError::BodyTooLarge {
            limit_bytes: limits.request_body_bytes,
        });
    }
    Ok(())
}

/// Refusals before any guest runs are counted here, where both the front
/// door's requests and service calls pass.
fn refused(version: &ServiceVersion, error: RequestError) -> RequestError {
    version.metrics.rejected(error.kind());
    error
}

/// A parked instance of this version, where its policy reuses them.
fn reused(cx: &InvokeContext<'_>, version: &ServiceVersion) -> Option<LiveInstance> {
    if !version.reuse.reuses() {
        return None;
    }
    let instance = cx.park.take(version.reuse_key)?;
    version.metrics.reused();
    Some(instance)
}

/// A slot of the pool (giving back parked instances when the pool is full,
/// then waiting at most the queue timeout) and a fresh instance in it.
async fn fresh_instance(
    cx: &InvokeContext<'_>,
    version: &ServiceVersion,
    request_id: &Arc<str>,
    chain: CallChain,
) -> Result<LiveInstance, RequestError> {
    let slot = acquire_slot(cx)
        .await
        .ok_or_else(|| refused(version, RequestError::PoolExhausted))?;
    let mut store = new_store(cx, version, request_id, chain);
    mark("store", chain.depth);
    let guest = instantiate(version, &mut store).await?;
    Ok(LiveInstance {
        store,
        guest,
        _slot: slot,
        served: 0,
    })
}

async fn acquire_slot(cx: &InvokeContext<'_>) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        if let Ok(slot) = Arc::clone(cx.slots).try_acquire_owned() {
            return Some(slot);
        }
        // Kept instances are a cache: they never stand between a request
        // and a slot.
        if !cx.park.evict_oldest() {
            break;
        }
    }
    match tokio::time::timeout(cx.queue_timeout, Arc::clone(cx.slots).acquire_owned()).await {
        Ok(Ok(slot)) => Some(slot),
        Ok(Err(_)) | Err(_) => None,
    }
}

async fn instantiate(
    version: &ServiceVersion,
    store: &mut Store<HostState>,
) -> Result<GuestInstance, RequestError> {
    let instantiating = Instant::now();
    match version.pre.instantiate(store).await {
        Ok(guest) => {
            version.metrics.instantiated(instantiating.elapsed());
            Ok(guest)
        }
        Err(e) if e.is::<wasmtime::PoolConcurrencyLimitError>() => {
            Err(refused(version, RequestError::PoolExhausted))
        }
        Err(e) => {
            let error = classify_failure(&e, store.data(), &version.limits);
            tracing::warn!(error = %format!("{e:#}"), "instantiation failed");
            let error = match error {
                RequestError::GuestTrap => RequestError::Instantiate,
                other => other,
            };
            version.metrics.guest_failed(error.kind());
            Err(error)
        }
    }
}

/// Where an instance goes after a request that ended well, when its
/// version's policy reuses instances.
struct Keep {
    park: Arc<InstancePark<LiveInstance>>,
    key: ReuseKey,
    policy: ReusePolicy,
    /// Most instances of the version kept at once: its tenant's places.
    cap: usize,
}

impl Keep {
    /// Parks the instance unless it has served its count or used more
    /// memory than it may; otherwise it is dropped here.
    fn park(self, instance: LiveInstance) {
        if instance.served >= self.policy.max_requests
            || instance.store.data().limiter.budget().limit_hit()
        {
            return;
        }
        // A kept instance runs nothing: it must not hold its tenant's CPU
        // slot while it waits.
        instance.store.data().cpu_share.release();
        drop(
            self.park
                .put(self.key, instance, self.policy.idle_timeout, self.cap),
        );
    }
}

/// Everything the guest's task owns.
struct GuestRun {
    instance: LiveInstance,
    call: GuestCall,
    wall_left: Duration,
    limits: Limits,
    metrics: Arc<ServiceMetrics>,
    admission: Admission,
    keep: Option<Keep>,
    depth: u32,
}

/// Runs the guest's handler to its end (it may stream the body after the
/// head is sent), bounded by the wall-clock time left; then parks the
/// instance (a reused one that ended well) or drops it, and gives up the
/// request's admission.
async fn run_guest(run: GuestRun) -> GuestOutcome {
    let GuestRun {
        mut instance,
        call,
        wall_left,
        limits,
        metrics,
        admission,
        keep,
        depth,
    } = run;
    mark("guest.task", depth);
    // A guest that waits in the host (on a service it called, an upstream,
    // a timer) uses no CPU: holding its tenant's CPU slot meanwhile would
    // stall the tenant's other guests, the callee of a service call among
    // them.
    let cpu_share = instance.store.data().cpu_share.clone();
    let mut clock = GuestClock::new();
    let LiveInstance { store, guest, .. } = &mut instance;
    let call = call.run(store, guest);
    let call = clock.run(call, || cpu_share.release());
    let returned = tokio::time::timeout(wall_left, call).await;
    mark("guest.returned", depth);
    let outcome = match returned {
        Ok(Ok(())) => GuestOutcome::Finished,
        Ok(Err(e)) => {
            let failure = classify_failure(&e, instance.store.data(), &limits);
            tracing::warn!(kind = failure.kind(), error = %format!("{e:#}"), "request failed in the guest");
            GuestOutcome::Failed(failure)
        }
        Err(_) => {
            tracing::warn!(
                kind = "wall-deadline",
                "request stopped at its wall-clock deadline"
            );
            GuestOutcome::Failed(RequestError::WallDeadline {
                limit: limits.wall_time,
            })
        }
    };
    if let GuestOutcome::Failed(failure) = &outcome {
        metrics.guest_failed(failure.kind());
    }
    metrics.guest_used(clock.total(), instance.store.data().limiter.budget().peak());
    // An instance that trapped, hit a limit or its deadline is never kept:
    // it may be stopped halfway through anything. Dropping it releases its
    // pool slot.
    match (keep, &outcome) {
        (Some(keep), GuestOutcome::Finished) => keep.park(instance),
        _ => drop(instance),
    }
    mark("store.dropped", depth);
    drop(admission);
    outcome
}

/// The response head the guest set, or why it set none.
async fn response_head(
    receiver: tokio::sync::oneshot::Receiver<
        Result<
            http::Response<ResponseBody>,
            wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
        >,
    >,
    guest: tokio::task::JoinHandle<GuestOutcome>,
    exceeded: &AtomicBool,
    limits: &Limits,
    depth: u32,
) -> Result<http::Response<ResponseBody>, RequestError> {
    let body_too_large = || RequestError::BodyTooLarge {
        limit_bytes: limits.request_body_bytes,
    };
    let body_limit_hit = || exceeded.load(Ordering::Relaxed);
    let received = receiver.await;
    mark("head", depth);
    match received {
        Ok(Ok(_)) if body_limit_hit() => Err(body_too_large()),
        Ok(Ok(response)) => limit_response(response, limits.response_body_bytes),
        Ok(Err(code)) => {
            tracing::debug!(?code, "guest answered with an error code");
            Err(if body_limit_hit() {
                body_too_large()
            } else {
                RequestError::BadGuestResponse
            })
        }
        // The guest ended without setting a response: its outcome says why.
        Err(_) => match guest.await {
            _ if body_limit_hit() => Err(body_too_large()),
            Ok(GuestOutcome::Failed(failure)) => Err(failure),
            Ok(GuestOutcome::Finished) => Err(RequestError::NoResponse),
            Err(_) => Err(RequestError::GuestTrap),
        },
    }
}
