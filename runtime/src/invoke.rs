//! One request in one fresh instance: build the `Store`, instantiate from the
//! service version's pre-instance, call `wasi:http/incoming-handler.handle`,
//! and turn what happens into a streamed response or a [`RequestError`].

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tracing::Instrument;
use wasmtime::component::Resource;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::admission::{Admission, TenantGate};
use crate::body::{ResponseBody, declared_length};
use crate::capabilities::ServiceCapabilities;
use crate::capabilities::addresses::AddressPolicy;
use crate::capabilities::calls::{ServiceCalls, ServiceDispatch};
use crate::capabilities::clocks::{CoarseMonotonicClock, CoarseWallClock};
use crate::capabilities::guest_output::GuestIdentity;
use crate::capabilities::log_rate::LogRate;
use crate::capabilities::outbound::{OutboundHooks, OutboundPolicy};
pub use crate::capabilities::state::HostState;
use crate::capabilities::stdio::{GuestLog, Stdio};
use crate::error::RequestError;
use crate::hop_trace::mark;
use crate::limits::{ComponentLimits, InstanceMemoryLimiter, Limits};
use crate::lingering_body::LingeringBody;
use crate::logbook::ServiceLog;
use crate::telemetry::guest_clock::GuestClock;
use crate::telemetry::metrics::ServiceMetrics;
use crate::telemetry::trace_context::CallChain;

/// Largest `wasi:random` buffer one call may ask for; the host allocates it
/// outside the guest's memory limit, so a larger ask traps instead.
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

/// Host-side resources (streams, fields, requests) one instance may hold at
/// once; they live outside the guest's memory limit too.
const MAX_RESOURCES: usize = 16 * 1024;

/// A component could not be linked against Berth's world.
#[derive(Debug, thiserror::Error)]
#[error("component cannot run on Berth: {0}")]
pub struct LinkError(String);

/// The linker for Berth's world, built once per host: WASI 0.2 (with no
/// filesystem, environment or network granted), `wasi:http`, and the
/// capability interfaces (`wasi:keyvalue`, `wasi:config`, `wasi:logging`).
pub struct WorldLinker {
    linker: Linker<HostState>,
}

impl WorldLinker {
    pub fn new(engine: &Engine) -> Result<Self, LinkError> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| LinkError(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| LinkError(format!("{e:#}")))?;
        crate::capabilities::fields::add_to_linker(&mut linker)
            .map_err(|e| LinkError(format!("{e:#}")))?;
        crate::capabilities::add_to_linker(&mut linker).map_err(|e| LinkError(format!("{e:#}")))?;
        Ok(Self { linker })
    }

    /// Links a component once, so that each request only instantiates it.
    pub fn prepare(&self, component: &Component) -> Result<ProxyPre<HostState>, LinkError> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| LinkError(format!("{e:#}")))?;
        ProxyPre::new(pre).map_err(|_| {
            LinkError("it does not export wasi:http/incoming-handler@0.2.x".to_string())
        })
    }
}

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
    pub pre: ProxyPre<HostState>,
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
        }
    }
}

/// A body cut off with an error once it passes its limit: a request body
/// (the flag then tells the invoker to answer 413) or a guest's response body
/// (its status is already sent, so the client sees the stream end early).
struct CappedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    /// The error a body over its limit ends with.
    too_large: fn(Option<u64>) -> wasmtime_wasi_http::Error,
    exceeded: Option<Arc<AtomicBool>>,
    /// Counts the bytes that pass, when they are metered.
    counted: Option<metrics::Counter>,
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        tracing::warn!(limit_bytes = self.limit, "body cut off at its limit");
                        self.remaining = 0;
                        if let Some(flag) = &self.exceeded {
                            flag.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Some(Err((self.too_large)(Some(self.limit)))));
                    }
                    self.remaining -= len;
                    if let Some(counter) = &self.counted {
                        counter.increment(len);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|_| None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Refuses a response that declares a length above the limit, and cuts off
/// one that streams past it.
fn limit_response(
    response: http::Response<ResponseBody>,
    limit: u64,
) -> Result<http::Response<ResponseBody>, RequestError> {
    if declared_length(response.headers()).is_some_and(|n| n > limit) {
        return Err(RequestError::ResponseTooLarge { limit_bytes: limit });
    }
    Ok(response.map(|inner| {
        http_body_util::BodyExt::boxed_unsync(CappedBody {
            // hyper drops the body of a 204 or of an answer to HEAD unread.
            inner: LingeringBody::new(inner),
            remaining: limit,
            limit,
            too_large: wasmtime_wasi_http::Error::HttpResponseBodySize,
            exceeded: None,
            counted: None,
        })
    }))
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
/// at once.
pub struct InvokeContext<'a> {
    pub slots: &'a Arc<Semaphore>,
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

/// Runs one request in a fresh instance of `version`: admission, a fresh
/// instance, the guest's task, and the response head it sets.
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
    let held = admit(cx, version).await?;
    mark("admitted", chain.depth);
    let mut store = new_store(cx, version, &request_id, chain);
    mark("store", chain.depth);
    let proxy = instantiate(version, &mut store).await?;
    mark("instantiated", chain.depth);
    let exceeded = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| CappedBody {
        inner,
        remaining: limits.request_body_bytes,
        limit: limits.request_body_bytes,
        too_large: wasmtime_wasi_http::Error::HttpRequestBodySize,
        exceeded: Some(Arc::clone(&exceeded)),
        counted: Some(version.metrics.bytes_in.clone()),
    });
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let (guest_request, outparam) = {
        let mut http = store.data_mut().http();
        let guest_request = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(|_| RequestError::BadRequest("missing Host header"))?;
        let outparam = http
            .new_response_outparam(sender)
            .map_err(|_| RequestError::Instantiate)?;
        (guest_request, outparam)
    };
    let guest = tokio::spawn(
        run_guest(GuestRun {
            store,
            proxy,
            guest_request,
            outparam,
            wall_left: limits.wall_time.saturating_sub(started.elapsed()),
            limits,
            metrics: Arc::clone(&version.metrics),
            held,
            depth: chain.depth,
        })
        .in_current_span(),
    );
    response_head(receiver, guest, &exceeded, &limits, chain.depth).await
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

/// What a running request holds until its guest ends: a place in its
/// tenant's admission and an instance slot of the pool.
struct Held {
    slot: tokio::sync::OwnedSemaphorePermit,
    admission: Admission,
}

/// Refusals before any guest runs are counted here, where both the front
/// door's requests and service calls pass.
fn refused(version: &ServiceVersion, error: RequestError) -> RequestError {
    version.metrics.rejected(error.kind());
    error
}

/// A place in the tenant's admission, then an instance slot (waiting for
/// one at most the queue timeout).
async fn admit(cx: &InvokeContext<'_>, version: &ServiceVersion) -> Result<Held, RequestError> {
    let admission = version
        .gate
        .admit()
        .await
        .map_err(|e| refused(version, e))?;
    match tokio::time::timeout(cx.queue_timeout, Arc::clone(cx.slots).acquire_owned()).await {
        Ok(Ok(slot)) => Ok(Held { slot, admission }),
        Ok(Err(_)) | Err(_) => Err(refused(version, RequestError::PoolExhausted)),
    }
}

async fn instantiate(
    version: &ServiceVersion,
    store: &mut Store<HostState>,
) -> Result<Proxy, RequestError> {
    let instantiating = Instant::now();
    match version.pre.instantiate_async(&mut *store).await {
        Ok(proxy) => {
            version.metrics.instantiated(instantiating.elapsed());
            Ok(proxy)
        }
        Err(e) if e.is::<wasmtime::PoolConcurrencyLimitError>() => {
            Err(refused(version, RequestError::PoolExhausted))
        }
        Err(e) => {
            let error = classify_failure(&e, store, &version.limits);
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

/// Everything the guest's task owns.
struct GuestRun {
    store: Store<HostState>,
    proxy: Proxy,
    guest_request: Resource<HostIncomingRequest>,
    outparam: Resource<HostResponseOutparam>,
    wall_left: Duration,
    limits: Limits,
    metrics: Arc<ServiceMetrics>,
    held: Held,
    depth: u32,
}

/// Runs the guest's handler to its end (it may stream the body after the
/// head is sent), bounded by the wall-clock time left, and releases the
/// instance, its slot and its admission, in that order.
async fn run_guest(run: GuestRun) -> GuestOutcome {
    let GuestRun {
        mut store,
        proxy,
        guest_request,
        outparam,
        wall_left,
        limits,
        metrics,
        held,
        depth,
    } = run;
    mark("guest.task", depth);
    // A guest that waits in the host (on a service it called, an upstream,
    // a timer) uses no CPU: holding its tenant's CPU slot meanwhile would
    // stall the tenant's other guests, the callee of a service call among
    // them.
    let cpu_share = store.data().cpu_share.clone();
    let mut clock = GuestClock::new();
    let call = proxy
        .wasi_http_incoming_handler()
        .call_handle(&mut store, guest_request, outparam);
    let call = clock.run(call, || cpu_share.release());
    let returned = tokio::time::timeout(wall_left, call).await;
    mark("guest.returned", depth);
    let outcome = match returned {
        Ok(Ok(())) => GuestOutcome::Finished,
        Ok(Err(e)) => {
            let failure = classify_failure(&e, &store, &limits);
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
    metrics.guest_used(clock.total(), store.data().limiter.budget().peak());
    // Dropping the store releases the instance's pool slot.
    drop(store);
    mark("store.dropped", depth);
    let Held { slot, admission } = held;
    drop(slot);
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

fn new_store(
    cx: &InvokeContext<'_>,
    version: &ServiceVersion,
    request_id: &Arc<str>,
    chain: CallChain,
) -> Store<HostState> {
    // The engine that compiled this version: Cranelift's, or the quick
    // engine's until the Cranelift build replaces it.
    let mut store = Store::new(
        version.pre.engine(),
        host_state(cx, version, request_id, chain),
    );
    store.limiter(|state| &mut state.limiter);
    // Each tick the guest runs through counts against its CPU budget and
    // yields its worker, so a spinning guest never holds one for longer than
    // a tick; it runs on only once its tenant has a CPU slot free.
    store.epoch_deadline_callback(|mut ctx| {
        let state = ctx.data_mut();
        state.cpu_ticks += 1;
        if state.cpu_ticks > state.cpu_budget_ticks {
            return Err(wasmtime::Error::new(CpuBudgetExhausted));
        }
        Ok(UpdateDeadline::YieldCustom(1, state.cpu_share.next_slice()))
    });
    store.set_epoch_deadline(1);
    #[cfg(feature = "hop-trace")]
    store.call_hook(|mut ctx, hook| {
        let depth = ctx.data_mut().hooks.calls.chain.depth;
        match hook {
            wasmtime::CallHook::CallingWasm | wasmtime::CallHook::ReturningFromHost => {
                mark("  h<", depth)
            }
            _ => mark("h>", depth),
        }
        Ok(())
    });
    store
}

/// Everything one instance reaches through the host: its WASI context
/// (guest output to its log, coarse clocks, bounded randomness), its
/// resource table, its outbound hooks and its budgets.
fn host_state(
    cx: &InvokeContext<'_>,
    version: &ServiceVersion,
    request_id: &Arc<str>,
    chain: CallChain,
) -> HostState {
    let who = GuestIdentity {
        tenant: Arc::clone(&version.tenant),
        service: Arc::clone(&version.service),
        version: Arc::clone(&version.version),
        request_id: Arc::clone(request_id),
        log: version.log.clone(),
        rate: Arc::clone(&version.log_rate),
    };
    let mut wasi = WasiCtxBuilder::new();
    wasi.max_random_size(MAX_RANDOM_BYTES);
    wasi.monotonic_clock(CoarseMonotonicClock::new());
    wasi.wall_clock(CoarseWallClock);
    wasi.stdout(GuestLog::new(Stdio::Stdout, who.clone()));
    wasi.stderr(GuestLog::new(Stdio::Stderr, who.clone()));
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    HostState {
        table,
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        hooks: outbound_hooks(cx, version, request_id, chain),
        capabilities: Arc::clone(&version.capabilities),
        identity: who,
        limiter: InstanceMemoryLimiter::new(version.limits.memory_bytes, cx.component),
        fields_held: std::collections::HashMap::new(),
        cpu_ticks: 0,
        cpu_budget_ticks: version.limits.cpu_ticks(),
        cpu_share: version.gate.cpu_share(),
    }
}

/// What the instance's outgoing requests and service calls are held to.
fn outbound_hooks(
    cx: &InvokeContext<'_>,
    version: &ServiceVersion,
    request_id: &Arc<str>,
    chain: CallChain,
) -> OutboundHooks {
    OutboundHooks {
        addresses: AddressPolicy {
            allow_private: version.outbound.allow_private,
            own_listeners: Arc::clone(cx.own_listeners),
        },
        policy: Arc::clone(&version.outbound),
        service: Arc::clone(&version.service),
        request_id: Arc::clone(request_id),
        remaining: version.limits.outbound_requests,
        limit: version.limits.outbound_requests,
        calls: ServiceCalls {
            dispatch: cx.dispatch.clone(),
            tenant: Arc::clone(&version.tenant),
            request_id: Arc::clone(request_id),
            chain,
            max_depth: cx.max_call_depth,
        },
    }
}

#[derive(Debug, thiserror::Error)]
#[error("guest exhausted its CPU time budget")]
struct CpuBudgetExhausted;

fn classify_failure(
    error: &wasmtime::Error,
    store: &Store<HostState>,
    limits: &Limits,
) -> RequestError {
    if error.is::<CpuBudgetExhausted>() {
        return RequestError::CpuDeadline {
            limit: limits.cpu_time,
        };
    }
    if store.data().limiter.budget().limit_hit() {
        return RequestError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        };
    }
    RequestError::GuestTrap
}
