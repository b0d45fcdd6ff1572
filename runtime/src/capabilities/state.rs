//! The data of one instance's store: what the host holds for it, and what
//! every capability's host functions reach through `&mut HostState`.

use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::ServiceCapabilities;
use super::guest_output::GuestIdentity;
use super::outbound::OutboundHooks;
use crate::admission::CpuShare;
use crate::limits::{HostCharge, InstanceMemoryLimiter};

/// Everything one instance owns, dropped with it at the end of the request.
pub struct HostState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: OutboundHooks,
    pub(crate) limiter: InstanceMemoryLimiter,
    /// What each wasi:http header map the guest holds is charged, by handle.
    pub(crate) fields_held: std::collections::HashMap<u32, HostCharge>,
    /// Key-value data and configuration of the service.
    pub(crate) capabilities: Arc<ServiceCapabilities>,
    /// Who is running, for `wasi:logging` lines.
    pub(crate) identity: GuestIdentity,
    /// Epoch ticks this request has spent running guest code.
    pub(crate) cpu_ticks: u64,
    pub(crate) cpu_budget_ticks: u64,
    pub(crate) cpu_share: CpuShare,
    /// The requests' own contexts, when several share this instance.
    pub(crate) tasks: Option<Box<crate::invoke::tasks::TaskContexts>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}
