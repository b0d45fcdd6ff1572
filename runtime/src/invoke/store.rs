//! An instance's store: its host state (WASI context, resource table,
//! outbound hooks, budgets), its CPU metering at epoch ticks, and what a
//! failure in it means.

use std::sync::Arc;
use wasmtime::component::{GuestTaskId, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpCtx;

use super::tasks::TaskContexts;
use super::{InvokeContext, ServiceVersion};
use crate::capabilities::addresses::AddressPolicy;
use crate::capabilities::calls::ServiceCalls;
use crate::capabilities::clocks::{CoarseMonotonicClock, CoarseWallClock};
use crate::capabilities::guest_output::{CurrentRequest, GuestIdentity};
use crate::capabilities::outbound::OutboundHooks;
use crate::capabilities::state::HostState;
use crate::capabilities::stdio::{GuestLog, Stdio};
use crate::error::RequestError;
#[cfg(feature = "hop-trace")]
use crate::hop_trace::mark;
use crate::limits::{InstanceMemoryLimiter, Limits};
use crate::telemetry::trace_context::CallChain;

/// Largest `wasi:random` buffer one call may ask for; the host allocates it
/// outside the guest's memory limit, so a larger ask traps instead.
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

/// Host-side resources (streams, fields, requests) one instance may hold at
/// once; they live outside the guest's memory limit too.
const MAX_RESOURCES: usize = 16 * 1024;

/// Component-model handles (a guest's own resources, WASI 0.3's streams,
/// futures and tasks) live at once in one store: wasmtime keeps them in
/// host memory, outside the guest's memory limit, a few hundred bytes each
/// (wasmtime's default of 100,000 let one 0.3 instance hold some 40 MiB).
const MAX_COMPONENT_HANDLES: usize = 16 * 1024;

pub(super) fn new_store(
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
    store.set_max_component_handles(MAX_COMPONENT_HANDLES);
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
        request_id: CurrentRequest::new(Arc::clone(request_id)),
        log: version.log.clone(),
        rate: Arc::clone(&version.log_rate),
    };
    let mut wasi = WasiCtxBuilder::new();
    wasi.max_random_size(MAX_RANDOM_BYTES);
    wasi.monotonic_clock(CoarseMonotonicClock::new());
    wasi.wall_clock(CoarseWallClock);
    wasi.stdout(GuestLog::new(Stdio::Stdout, who.clone()));
    wasi.stderr(GuestLog::new(Stdio::Stderr, who.clone()));
    wasi.envs(&version.capabilities.env);
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
        tasks: None,
    }
}

/// Readies a parked instance for its next request: the request's id in its
/// output, fresh outbound hooks and CPU budget, and its tenant's CPU share.
/// Its memory limiter stays: the limit holds over the instance's life.
pub(super) fn prepare_reused(
    store: &mut Store<HostState>,
    cx: &InvokeContext<'_>,
    version: &ServiceVersion,
    request_id: &Arc<str>,
    chain: CallChain,
) {
    let state = store.data_mut();
    state.identity.request_id.set(Arc::clone(request_id));
    state.hooks = outbound_hooks(cx, version, request_id, chain);
    state.cpu_ticks = 0;
    state.cpu_budget_ticks = version.limits.cpu_ticks();
    state.cpu_share = version.gate.cpu_share();
    store.set_epoch_deadline(1);
}

/// Readies an instance to serve several WASI 0.3 requests at once: each
/// request's context is kept apart (`tasks`), swapped into the state when
/// its task calls the host, and each epoch tick is charged to the task
/// running then. A task past its CPU budget traps the instance: wasmtime
/// cannot stop one task of a store, and while it runs no other request
/// in the instance can. A task that runs several ticks back to back closes
/// the instance to new requests (`closed`).
pub(super) fn share(
    store: &mut Store<HostState>,
    version: &ServiceVersion,
    closed: Arc<std::sync::atomic::AtomicBool>,
) {
    let state = store.data_mut();
    state.tasks = Some(Box::new(TaskContexts::new(
        closed,
        version.limits.cpu_ticks(),
    )));
    state.cpu_ticks = 0;
    state.cpu_share = version.gate.cpu_share();
    store.epoch_deadline_callback(|mut ctx| {
        let task = root_task(&mut ctx);
        let state = ctx.data_mut();
        state.cpu_ticks += 1;
        if let Some(task) = task
            && state.tasks.as_deref_mut().is_some_and(|t| t.charge(task))
        {
            return Err(wasmtime::Error::new(CpuBudgetExhausted));
        }
        Ok(UpdateDeadline::YieldCustom(1, state.cpu_share.next_slice()))
    });
    store.call_hook(|mut ctx, hook| {
        if matches!(hook, wasmtime::CallHook::CallingHost)
            && let Some(task) = root_task(&mut ctx)
        {
            enter(ctx.data_mut(), task);
        }
        Ok(())
    });
    store.set_epoch_deadline(1);
}

/// Puts `task`'s context (outbound hooks, request id) in the store's state.
fn enter(state: &mut HostState, task: GuestTaskId) {
    let Some(tasks) = state.tasks.as_deref_mut() else {
        return;
    };
    if let Some(request_id) = tasks.enter(task, &mut state.hooks) {
        state.identity.request_id.set(request_id);
    }
}

/// The export call the running code serves: the oldest task on the
/// component model's async call stack.
fn root_task(ctx: &mut wasmtime::StoreContextMut<'_, HostState>) -> Option<GuestTaskId> {
    ctx.async_call_stack().ok().and_then(Iterator::last)
}

/// What the instance's outgoing requests and service calls are held to.
pub(super) fn outbound_hooks(
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
            caller: Arc::clone(&version.service),
            request_id: Arc::clone(request_id),
            chain,
            max_depth: cx.max_call_depth,
        },
    }
}

#[derive(Debug, thiserror::Error)]
#[error("guest exhausted its CPU time budget")]
struct CpuBudgetExhausted;

pub(super) fn classify_failure(
    error: &wasmtime::Error,
    state: &HostState,
    limits: &Limits,
) -> RequestError {
    if error.is::<CpuBudgetExhausted>() {
        return RequestError::CpuDeadline {
            limit: limits.cpu_time,
        };
    }
    if state.limiter.budget().limit_hit() {
        return RequestError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        };
    }
    RequestError::GuestTrap
}
