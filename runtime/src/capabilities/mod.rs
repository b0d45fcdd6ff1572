//! Host capabilities a guest reaches through WASI interfaces, each one
//! confined to the service that uses it.
//!
//! - [`outbound`]: outgoing HTTP (`wasi:http/outgoing-handler`), denied unless
//!   the service's allow-list names the destination.
//! - [`calls`]: outgoing requests to `{service}.internal`, run in-process.
//! - [`service_call`]: `berth:service/call`, the same calls a whole request
//!   and response at a time.
//! - [`addresses`]: which resolved addresses outgoing requests may reach.
//! - [`keyvalue`]: `wasi:keyvalue`, over the service's own buckets.
//! - [`config`]: `wasi:config/store`, the service's configuration.
//! - [`logging`]: `wasi:logging`, and where every guest log line goes.
//! - [`clocks`]: the coarse clocks guests see.
//! - [`stdio`]: guest stdout and stderr, captured into the host's log.

pub mod addresses;
mod bindings;
pub mod calls;
pub mod clocks;
mod config;
pub mod fields;
pub mod guest_output;
pub mod keyvalue;
mod keyvalue_draft;
pub mod kv_handles;
pub mod log_rate;
pub mod logging;
mod messaging;
pub mod messaging_handles;
pub mod outbound;
pub mod pending_call;
pub mod service_call;
pub mod state;
pub mod stdio;

use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker};

use crate::kv::{KvBackend, KvQuota};
use crate::telemetry::metrics::KvCounters;
use state::HostState;

/// The bucket every service has.
pub const DEFAULT_BUCKET: &str = "default";

/// What one service version may reach besides HTTP: its key-value buckets
/// and its configuration.
#[derive(Clone)]
pub struct ServiceCapabilities {
    pub tenant: Arc<str>,
    pub service: Arc<str>,
    pub kv: Arc<dyn KvBackend>,
    /// `default` and the buckets the service declared.
    pub buckets: Vec<Arc<str>>,
    pub kv_quota: KvQuota,
    /// Configuration values and (decrypted) secrets, by key.
    pub config: BTreeMap<String, String>,
    /// Environment variables, read through `wasi:cli/environment`.
    pub env: Vec<(String, String)>,
    /// Key-value calls, counted for `/metrics`.
    pub kv_ops: Arc<KvCounters>,
}

impl ServiceCapabilities {
    /// The buckets a service may open: `default` and those it declares.
    pub fn buckets(declared: &[String]) -> Vec<Arc<str>> {
        let mut buckets: Vec<Arc<str>> = vec![Arc::from(DEFAULT_BUCKET)];
        for name in declared {
            if !buckets.iter().any(|b| **b == **name) {
                buckets.push(Arc::from(name.as_str()));
            }
        }
        buckets
    }
}

/// Adds the capability interfaces of Berth's world to a linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type Own = HasSelf<HostState>;
    fn own(state: &mut HostState) -> &mut HostState {
        state
    }
    bindings::kv_store::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::atomics::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::batch::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::draft_store::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::draft_atomics::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::draft_batch::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::config_store::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::config_draft_store::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::logging::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::service_call::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::messaging_types::add_to_linker::<HostState, Own>(linker, own)?;
    bindings::messaging_producer::add_to_linker::<HostState, Own>(linker, own)?;
    Ok(())
}
