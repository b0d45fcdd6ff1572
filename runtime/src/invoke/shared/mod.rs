//! Several requests at once in one WASI 0.3 instance, where the service's
//! reuse policy allows it (`max_concurrent` above 1).
//!
//! A worker task owns the instance and runs its event loop
//! (`Store::run_concurrent`) while it has requests. A new request of the
//! same version joins a running worker with room; otherwise it takes a
//! parked instance or a fresh one and starts a worker. When its last
//! request ends, the worker parks the instance (or drops it) and exits.
//!
//! Each request is its own component-model task with its own context
//! (`tasks.rs`): request id, outbound budget and call chain, CPU budget and
//! wall-clock deadline. wasmtime 48 cannot stop one task of a store
//! (bytecodealliance/wasmtime#11833: only dropping the store ends a task),
//! so a request past its deadline or CPU budget is answered at once, the
//! instance takes no more requests, and it is dropped, ending that task,
//! as soon as the requests it still serves end. A trap ends the instance
//! and so every request in it.

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body::Body;
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use wasmtime::component::Accessor;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::Service;

use super::guest::GuestInstance;
use super::store::{classify_failure, outbound_hooks, share};
use super::tasks::{Overran, TaskContext};
use super::{InvokeContext, Keep, LiveInstance, ServiceVersion, fresh_instance, reused};
use crate::admission::Admission;
use crate::body::ResponseBody;
use crate::capabilities::state::HostState;
use crate::error::RequestError;
use crate::limits::{EPOCH_TICK, Limits};
use crate::reuse::ReuseKey;
use crate::telemetry::metrics::ServiceMetrics;

mod body;
mod workers;

use body::SharedBody;

/// The workers of shared instances running now.
pub type SharedInstances = workers::Workers<Box<Job>>;

type Answer = Result<http::Response<ResponseBody>, RequestError>;

/// One request, on its way to a worker.
pub struct Job {
    answer: oneshot::Sender<Answer>,
    work: Work,
}

/// What a worker needs to serve one request.
struct Work {
    request: http::Request<ResponseBody>,
    request_id: Arc<str>,
    hooks: crate::capabilities::outbound::OutboundHooks,
    cpu_budget_ticks: u64,
    deadline: tokio::time::Instant,
    admission: Admission,
    /// Closes when the request's caller stops waiting (its client went).
    waiting: oneshot::Receiver<()>,
    span: tracing::Span,
}

/// Runs one request of a version whose WASI 0.3 instances serve several
/// at once; `admission` is the request's place among its tenant's.
pub(super) async fn invoke<B>(
    cx: &InvokeContext<'_>,
    version: &Arc<ServiceVersion>,
    request: http::Request<B>,
    request_id: Arc<str>,
    chain: crate::telemetry::trace_context::CallChain,
    admission: Admission,
    started: Instant,
) -> Result<http::Response<ResponseBody>, RequestError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let limits = version.limits;
    let exceeded = Arc::new(AtomicBool::new(false));
    let request = super::capped_request(request, &limits, &exceeded, &version.metrics);
    let (answer, answered) = oneshot::channel();
    // Dropped with this future: when the client goes before the answer,
    // the worker hears of it.
    let (_waiting, waiting) = oneshot::channel::<()>();
    let job = Box::new(Job {
        answer,
        work: Work {
            request: request.map(BodyExt::boxed_unsync),
            hooks: outbound_hooks(cx, version, &request_id, chain),
            request_id: Arc::clone(&request_id),
            cpu_budget_ticks: limits.cpu_ticks(),
            deadline: tokio::time::Instant::from_std(started + limits.wall_time),
            admission,
            waiting,
            span: tracing::Span::current(),
        },
    });
    match cx.shared.offer(version.reuse_key, version.reuse, job) {
        Ok(()) => version.metrics.reused(),
        Err(job) => start_worker(cx, version, job, &request_id, chain).await?,
    }
    let body_too_large = || RequestError::BodyTooLarge {
        limit_bytes: limits.request_body_bytes,
    };
    match answered.await {
        Ok(_) if exceeded.load(Ordering::Relaxed) => Err(body_too_large()),
        Ok(Ok(response)) => super::capped::limit_response(response, limits.response_body_bytes),
        Ok(Err(error)) => Err(error),
        // The worker went without a word: only a host bug does that.
        Err(_) => Err(RequestError::GuestTrap),
    }
}

/// A parked instance or a fresh one, and a worker serving `job` in it.
/// The worker is filed before a fresh instance is made, so that requests
/// arriving meanwhile wait for it rather than each making their own.
async fn start_worker(
    cx: &InvokeContext<'_>,
    version: &Arc<ServiceVersion>,
    job: Box<Job>,
    request_id: &Arc<str>,
    chain: crate::telemetry::trace_context::CallChain,
) -> Result<(), RequestError> {
    let parked = reused(cx, version);
    let served = parked.as_ref().map_or(0, |instance| instance.served);
    let closed = Arc::new(AtomicBool::new(false));
    let (jobs, mut queue) = mpsc::unbounded_channel();
    let id = NEXT_WORKER.fetch_add(1, Ordering::Relaxed);
    let key = version.reuse_key;
    cx.shared
        .register(key, id, jobs, served + 1, Arc::clone(&closed));
    let mut instance = match parked {
        Some(instance) => instance,
        None => match fresh_instance(cx, version, request_id, chain).await {
            Ok(instance) => instance,
            Err(error) => {
                // Those that joined meanwhile fail as this one does.
                cx.shared.remove(key, id);
                queue.close();
                while let Ok(joined) = queue.try_recv() {
                    let _ = joined.answer.send(Err(error.clone()));
                }
                return Err(error);
            }
        },
    };
    share(&mut instance.store, version, closed);
    let worker = Worker {
        shared: Arc::clone(cx.shared),
        key,
        id,
        limits: version.limits,
        metrics: Arc::clone(&version.metrics),
        keep: Keep {
            park: Arc::clone(cx.park),
            key,
            policy: version.reuse,
            cap: version.gate.places() as usize,
        },
    };
    // The worker outlives this request: it runs under no request's span;
    // each request it serves runs under its own.
    tokio::spawn(
        worker
            .run(instance, job, queue)
            .instrument(tracing::Span::none()),
    );
    Ok(())
}

static NEXT_WORKER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Worker {
    shared: Arc<SharedInstances>,
    key: ReuseKey,
    id: u64,
    limits: Limits,
    metrics: Arc<ServiceMetrics>,
    keep: Keep,
}

/// How one request ended, as its worker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Answered, and its body sent or given up by the client.
    Done,
    /// Answered early (deadline, client gone, trap) while its task may still
    /// run or the instance is broken: the instance must go.
    Abandoned,
}

/// The answers not yet given, by request, so that a trap that ends the
/// instance can still answer each.
#[derive(Default)]
struct Answers(Mutex<HashMap<u64, oneshot::Sender<Answer>>>);

impl Answers {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<u64, oneshot::Sender<Answer>>) -> R) -> R {
        match self.0.lock() {
            Ok(mut answers) => f(&mut answers),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn give(&self, request: u64, answer: Answer) {
        if let Some(to) = self.with(|a| a.remove(&request)) {
            let _ = to.send(answer);
        }
    }
}

impl Worker {
    async fn run(
        self,
        mut instance: LiveInstance,
        first: Box<Job>,
        mut queue: mpsc::UnboundedReceiver<Box<Job>>,
    ) {
        let answers = Answers::default();
        let limits = self.limits;
        let metrics = &*self.metrics;
        let LiveInstance {
            store,
            guest,
            served,
            ..
        } = &mut instance;
        let GuestInstance::P3(service) = &*guest else {
            let _ = first.answer.send(Err(RequestError::Instantiate));
            self.shared.remove(self.key, self.id);
            return;
        };
        let shared = &self.shared;
        let (key, id) = (self.key, self.id);
        let answers_ref = &answers;
        // The tenant's CPU slot is held only while guest code runs: a
        // worker waiting on its requests' I/O must not stall the tenant's
        // other instances.
        let cpu_share = store.data().cpu_share.clone();
        let mut clock = crate::telemetry::guest_clock::GuestClock::new();
        let instance_loop = store.run_concurrent(async |accessor| {
            let mut running = FuturesUnordered::new();
            let mut numbered = 0u64;
            let mut next = Some(first);
            let (mut open, mut left, mut tainted) = (true, false, false);
            loop {
                if let Some(job) = next.take() {
                    let Job { answer, work } = *job;
                    numbered += 1;
                    *served += 1;
                    answers_ref.with(|a| a.insert(numbered, answer));
                    let span = work.span.clone();
                    running.push(
                        serve(
                            accessor,
                            service,
                            numbered,
                            work,
                            answers_ref,
                            limits,
                            metrics,
                        )
                        .instrument(span),
                    );
                }
                if running.is_empty() {
                    if !left {
                        left = shared.leave_if_idle(key, id);
                    }
                    if left && !open {
                        break;
                    }
                }
                tokio::select! {
                    job = queue.recv(), if open => match job {
                        Some(job) => next = Some(job),
                        None => open = false,
                    },
                    Some(ended) = running.next() => {
                        shared.finished(key, id);
                        if ended == Ended::Abandoned && !tainted {
                            tainted = true;
                            left = true;
                            shared.remove(key, id);
                        }
                    }
                    else => break,
                }
            }
            if tainted {
                // Dropped at once, ending the task that outlived its
                // request's deadline.
                return true;
            }
            // Kept only once the guest's last task has ended (one may
            // go on after its response), within one request's time.
            let quiet = tokio::time::timeout(
                limits.wall_time,
                std::future::poll_fn(|cx| accessor.poll_no_interesting_tasks(cx)),
            )
            .await
            .is_ok();
            !quiet
        });
        let result = clock.run(instance_loop, || cpu_share.release()).await;
        self.shared.remove(self.key, self.id);
        let tainted = match result {
            Ok(tainted) => tainted,
            Err(error) => {
                let state = instance.store.data();
                let failure = classify_failure(&error, state, &limits);
                let culprit = state.tasks.as_deref().and_then(|t| t.overran());
                tracing::warn!(kind = failure.kind(), error = %format!("{error:#}"), "a shared instance failed; every request in it fails");
                for (request, to) in answers.with(std::mem::take) {
                    // The request that broke the instance is told why; its
                    // neighbours, that they were caught in it.
                    let error = match culprit {
                        Some(Overran::Request(c)) if c == request => failure.clone(),
                        Some(_) => RequestError::InstanceFailed,
                        None => failure.clone(),
                    };
                    metrics.guest_failed(error.kind());
                    let _ = to.send(Err(error));
                }
                // Requests handed over but not yet started.
                queue.close();
                while let Ok(job) = queue.try_recv() {
                    metrics.guest_failed(RequestError::InstanceFailed.kind());
                    let _ = job.answer.send(Err(RequestError::InstanceFailed));
                }
                true
            }
        };
        if !tainted {
            self.keep.park(instance);
        }
    }
}

/// What ended a request before its guest answered.
enum Head {
    Guest(wasmtime::Result<Option<http::Response<ResponseBody>>>),
    Stopped(RequestError),
    /// The client went before the answer.
    Gone,
}

/// Reports how the host's side of a 0.3 request body ended.
type RequestIo =
    Pin<Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send + 'static>>;

/// One request as a task of the shared instance: started with its own
/// context, answered when the guest returns its response (or at its
/// deadline, or when its client goes), ended when its body has been sent.
/// A task past its CPU budget is not seen here: the epoch callback traps
/// the instance, and the worker answers every request in it.
async fn serve(
    accessor: &Accessor<HostState>,
    service: &Service,
    number: u64,
    work: Work,
    answers: &Answers,
    limits: Limits,
    metrics: &ServiceMetrics,
) -> Ended {
    let Work {
        request,
        request_id,
        hooks,
        cpu_budget_ticks,
        deadline,
        admission,
        mut waiting,
        ..
    } = work;
    let handler = service.wasi_http_handler().func_handle();
    let started = accessor.with(|mut access| -> wasmtime::Result<_> {
        let http = access.data_mut().http();
        let (request, io) = wasmtime_wasi_http::p3::Request::from_http(http.hooks, request);
        let io: RequestIo = Box::pin(io);
        let request = http.table.push(request)?;
        let call = handler.start_call_concurrent(&mut access, (request,))?;
        let task = call.task();
        if let Some(tasks) = access.data_mut().tasks.as_deref_mut() {
            tasks.insert(
                task,
                TaskContext::new(number, request_id, hooks, cpu_budget_ticks),
            );
        }
        Ok((call, io, task))
    });
    let (call, io, task) = match started {
        Ok(started) => started,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "request could not start in a shared instance");
            answers.give(number, Err(RequestError::Instantiate));
            return Ended::Abandoned;
        }
    };
    let respond = async {
        let (result,) = handler.finish_call_concurrent(accessor, call).await?;
        match result {
            Ok(response) => accessor
                .with(|mut access| -> wasmtime::Result<_> {
                    let response = access.data_mut().table.delete(response)?;
                    response.into_http(&mut access, io)
                })
                .map(Some),
            Err(code) => {
                tracing::debug!(?code, "guest answered with an error code");
                Ok(None)
            }
        }
    };
    let deadline_hit = tokio::time::sleep_until(deadline);
    tokio::pin!(respond, deadline_hit);
    let wall = || RequestError::WallDeadline {
        limit: limits.wall_time,
    };
    let head = tokio::select! {
        answered = &mut respond => Head::Guest(answered),
        () = &mut deadline_hit => Head::Stopped(wall()),
        _ = &mut waiting => Head::Gone,
    };
    let stopped = |error: RequestError| {
        tracing::warn!(
            kind = error.kind(),
            "request stopped in a shared instance; the instance takes no more requests"
        );
        metrics.guest_failed(error.kind());
        error
    };
    let ended = match head {
        Head::Guest(Ok(Some(response))) => {
            let (done, body_done) = oneshot::channel();
            let (abort, aborted) = oneshot::channel();
            let response = response.map(|inner| {
                SharedBody {
                    inner,
                    done: Some(done),
                    aborted,
                }
                .boxed_unsync()
            });
            answers.give(number, Ok(response));
            tokio::select! {
                _ = body_done => Ended::Done,
                () = &mut deadline_hit => {
                    let _ = abort.send(());
                    stopped(wall());
                    Ended::Abandoned
                }
            }
        }
        Head::Guest(Ok(None)) => {
            answers.give(number, Err(RequestError::BadGuestResponse));
            Ended::Done
        }
        Head::Guest(Err(error)) => {
            let failure =
                accessor.with(|mut access| classify_failure(&error, access.data_mut(), &limits));
            tracing::warn!(kind = failure.kind(), error = %format!("{error:#}"), "request failed in the guest");
            metrics.guest_failed(failure.kind());
            answers.give(number, Err(failure));
            Ended::Abandoned
        }
        Head::Stopped(error) => {
            answers.give(number, Err(stopped(error)));
            Ended::Abandoned
        }
        Head::Gone => {
            // Its task cannot be stopped alone: the instance goes once its
            // other requests end, ending it then.
            tracing::info!(
                "the client went before the answer; the instance takes no more requests"
            );
            answers.give(number, Err(RequestError::NoResponse));
            Ended::Abandoned
        }
    };
    let (ticks, peak) = accessor.with(|mut access| {
        let state = access.data_mut();
        let ticks = state.tasks.as_deref_mut().map_or(0, |t| t.remove(task));
        (ticks, state.limiter.budget().peak())
    });
    metrics.guest_used(
        EPOCH_TICK.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX)),
        peak,
    );
    drop(admission);
    ended
}
