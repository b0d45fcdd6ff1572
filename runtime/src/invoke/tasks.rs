//! What each request sharing one WASI 0.3 instance keeps of its own: its
//! id (in the guest's output), its outbound budget and call chain, and its
//! CPU budget.
//!
//! A store has one `HostState`, and the host functions of every capability
//! read the request's context from it. So the state always holds the
//! context of the task that last called the host: when a host call comes
//! from another request's task (found from the component model's async
//! call stack), its context is swapped in and the previous one put back
//! here. CPU time is charged at each epoch tick to the task running then.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::GuestTaskId;

use crate::capabilities::outbound::OutboundHooks;

/// Epoch ticks one task may run back to back before its instance takes no
/// more requests: its neighbours in the instance wait while it runs, and
/// new requests are better served by another instance.
const HOGGING_TICKS: u32 = 5;

/// The contexts of the requests one shared instance is serving.
pub(crate) struct TaskContexts {
    /// The task whose context is in `HostState` now.
    current: Option<GuestTaskId>,
    by_task: HashMap<GuestTaskId, TaskContext>,
    /// Who spent past a CPU budget, which ends the instance.
    overran: Option<Overran>,
    /// Epoch ticks spent by tasks whose request has ended (work a guest
    /// goes on with after its response), and what they may spend together.
    orphan_ticks: u64,
    orphan_budget_ticks: u64,
    /// The task seen at the last tick, and for how many ticks in a row.
    streak: Option<(GuestTaskId, u32)>,
    /// Set when the instance must take no more requests.
    closed: Arc<AtomicBool>,
}

/// One request's own context inside a shared instance.
pub(crate) struct TaskContext {
    /// The request's number in its worker.
    request: u64,
    request_id: Arc<str>,
    /// `None` while this task's hooks are the ones in `HostState`.
    hooks: Option<OutboundHooks>,
    cpu_ticks: u64,
    cpu_budget_ticks: u64,
}

impl TaskContext {
    pub(crate) fn new(
        request: u64,
        request_id: Arc<str>,
        hooks: OutboundHooks,
        cpu_budget_ticks: u64,
    ) -> Self {
        Self {
            request,
            request_id,
            hooks: Some(hooks),
            cpu_ticks: 0,
            cpu_budget_ticks,
        }
    }
}

/// Who spent past a CPU budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overran {
    /// The task of this request (its number in its worker).
    Request(u64),
    /// Tasks whose requests had ended, together.
    Orphans,
}

impl TaskContexts {
    /// `orphan_budget_ticks`: what tasks outliving their requests may spend
    /// together over the instance's life (one request's CPU budget).
    pub(crate) fn new(closed: Arc<AtomicBool>, orphan_budget_ticks: u64) -> Self {
        Self {
            current: None,
            by_task: HashMap::new(),
            overran: None,
            orphan_ticks: 0,
            orphan_budget_ticks,
            streak: None,
            closed,
        }
    }

    /// Who spent past a CPU budget, if anyone did.
    pub(crate) fn overran(&self) -> Option<Overran> {
        self.overran
    }

    pub(crate) fn insert(&mut self, task: GuestTaskId, context: TaskContext) {
        self.by_task.insert(task, context);
    }

    /// Forgets a task whose request has ended, returning the epoch ticks it
    /// ran for. Its hooks, if in the state now, go at the next swap; the
    /// task's id may be given to a new task, which must not find them.
    pub(crate) fn remove(&mut self, task: GuestTaskId) -> u64 {
        if self.current == Some(task) {
            self.current = None;
        }
        self.by_task.remove(&task).map_or(0, |c| c.cpu_ticks)
    }

    /// Makes `task`'s context the current one: its hooks go into `in_state`
    /// (the store state's), the previous task's come back here. Returns the
    /// request id to name in the guest's output, or `None` when nothing
    /// changes: `task` is current already, or is no request of ours (a task
    /// that outlived its request keeps the context in place, which budgets
    /// it still).
    pub(crate) fn enter(
        &mut self,
        task: GuestTaskId,
        in_state: &mut OutboundHooks,
    ) -> Option<Arc<str>> {
        if self.current == Some(task) {
            return None;
        }
        let incoming = self.by_task.get_mut(&task)?;
        let hooks = incoming.hooks.take()?;
        let request_id = Arc::clone(&incoming.request_id);
        let outgoing = std::mem::replace(in_state, hooks);
        if let Some(previous) = self.current.and_then(|t| self.by_task.get_mut(&t)) {
            previous.hooks = Some(outgoing);
        }
        self.current = Some(task);
        Some(request_id)
    }

    /// Charges one epoch tick to `task`; true when that takes it (or the
    /// tasks no request owns) past a budget, which ends the instance.
    pub(crate) fn charge(&mut self, task: GuestTaskId) -> bool {
        let streak = match self.streak {
            Some((last, n)) if last == task => n + 1,
            _ => 1,
        };
        self.streak = Some((task, streak));
        if streak >= HOGGING_TICKS {
            self.closed.store(true, Ordering::Relaxed);
        }
        let Some(context) = self.by_task.get_mut(&task) else {
            // No request owns this task any more: it still may not run
            // for ever.
            self.orphan_ticks += 1;
            if self.orphan_ticks <= self.orphan_budget_ticks {
                return false;
            }
            self.overran = Some(Overran::Orphans);
            return true;
        };
        context.cpu_ticks += 1;
        if context.cpu_ticks <= context.cpu_budget_ticks {
            return false;
        }
        self.overran = Some(Overran::Request(context.request));
        true
    }
}
