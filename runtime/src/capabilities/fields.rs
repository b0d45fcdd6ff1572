//! wasi:http header maps (`fields`) charged to the instance's memory
//! budget. wasmtime-wasi-http caps each map (128 KiB) but not how many a
//! guest holds: 8,000 maps took a host's RSS past 1 GB in the audit of
//! issue 18. Berth redefines the functions that make or grow a map, and
//! the map's destructor, over wasmtime-wasi-http's own: each does what
//! wasmtime-wasi-http does, then charges the map's new size to the
//! instance's [`InstanceBudget`](crate::limits::InstanceBudget), and past
//! the budget the guest traps (reported as `memory-limit`).
//!
//! A map moved into an outgoing request or response leaves the guest's
//! table; its charge ends when another map takes its handle number or the
//! instance ends. That lets at most one map per outgoing message go
//! uncounted: the request's own limit on outgoing requests bounds it.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi_http::p2::bindings::http::types::{
    HostFields, HostIncomingRequest, HostIncomingResponse, HostOutgoingRequest,
    HostOutgoingResponse,
};
use wasmtime_wasi_http::p2::types as http;
use wasmtime_wasi_http::{FieldMap, WasiHttpCtxView, WasiHttpView};

use super::state::HostState;

/// The interface whose `fields` functions are redefined; the linker serves
/// every 0.2.x import from it.
const TYPES: &str = "wasi:http/types@0.2.12";

/// What a map costs beyond its names and values: the map itself.
const MAP_OVERHEAD: u64 = 64;
/// What each entry costs beyond its name and value (index and links).
const ENTRY_OVERHEAD: u64 = 32;

/// Bytes the host holds for one map.
fn map_bytes(map: &FieldMap) -> u64 {
    map.iter().fold(MAP_OVERHEAD, |sum, (name, value)| {
        sum + ENTRY_OVERHEAD + name.as_str().len() as u64 + value.len() as u64
    })
}

impl HostState {
    /// Charges the map behind `fields` at its current size, replacing what
    /// was charged for that handle before.
    fn charge_fields(&mut self, fields: &Resource<FieldMap>) -> wasmtime::Result<()> {
        let bytes = map_bytes(self.table.get(fields)?);
        let rep = fields.rep();
        // The old charge goes first, so a map that shrinks or stays the same
        // size always fits.
        drop(self.fields_held.remove(&rep));
        let charge = self.limiter.budget().charge(bytes)?;
        self.fields_held.insert(rep, charge);
        Ok(())
    }
}

type Store<'a> = StoreContextMut<'a, HostState>;
type HeaderResult<T> = wasmtime::Result<Result<T, http_types::HeaderError>>;
use wasmtime_wasi_http::p2::bindings::http::types as http_types;

/// The guest-visible answer of a `fields` function that can refuse.
fn header_result<T>(
    state: &mut HostState,
    outcome: wasmtime_wasi_http::p2::HeaderResult<T>,
) -> HeaderResult<T> {
    match outcome {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(http_types::Host::convert_header_error(
            &mut state.http(),
            error,
        )?)),
    }
}

/// Runs wasmtime-wasi-http's own function that makes a map, then charges
/// the map it made.
fn made_and_charged(
    state: &mut HostState,
    make: impl FnOnce(&mut WasiHttpCtxView<'_>) -> wasmtime::Result<Resource<FieldMap>>,
) -> wasmtime::Result<(Resource<FieldMap>,)> {
    let fields = make(&mut state.http())?;
    state.charge_fields(&fields)?;
    Ok((fields,))
}

/// Redefines the `fields` functions that make or grow a map so that they
/// charge it; call after wasmtime-wasi-http's own are in the linker.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.resource(
        "fields",
        ResourceType::host::<FieldMap>(),
        |mut store: Store<'_>, rep| {
            let state = store.data_mut();
            drop(state.fields_held.remove(&rep));
            state.table.delete(Resource::<FieldMap>::new_own(rep))?;
            Ok(())
        },
    )?;
    types.func_wrap("[constructor]fields", |mut store: Store<'_>, (): ()| {
        made_and_charged(store.data_mut(), |view| HostFields::new(view))
    })?;
    types.func_wrap(
        "[static]fields.from-list",
        |mut store: Store<'_>, (entries,): (Vec<(String, Vec<u8>)>,)| {
            let state = store.data_mut();
            let made = HostFields::from_list(&mut state.http(), entries);
            let made = header_result(state, made)?;
            if let Ok(fields) = &made {
                state.charge_fields(fields)?;
            }
            Ok((made,))
        },
    )?;
    types.func_wrap(
        "[method]fields.set",
        |mut store: Store<'_>,
         (fields, name, values): (Resource<FieldMap>, String, Vec<Vec<u8>>)| {
            let state = store.data_mut();
            let handle = Resource::<FieldMap>::new_borrow(fields.rep());
            let done = HostFields::set(&mut state.http(), fields, name, values);
            let done = header_result(state, done)?;
            state.charge_fields(&handle)?;
            Ok((done,))
        },
    )?;
    types.func_wrap(
        "[method]fields.append",
        |mut store: Store<'_>, (fields, name, value): (Resource<FieldMap>, String, Vec<u8>)| {
            let state = store.data_mut();
            let handle = Resource::<FieldMap>::new_borrow(fields.rep());
            let done = HostFields::append(&mut state.http(), fields, name, value);
            let done = header_result(state, done)?;
            state.charge_fields(&handle)?;
            Ok((done,))
        },
    )?;
    types.func_wrap(
        "[method]fields.clone",
        |mut store: Store<'_>, (fields,): (Resource<FieldMap>,)| {
            made_and_charged(store.data_mut(), |view| HostFields::clone(view, fields))
        },
    )?;
    types.func_wrap(
        "[method]incoming-request.headers",
        |mut store: Store<'_>, (request,): (Resource<http::HostIncomingRequest>,)| {
            made_and_charged(store.data_mut(), |view| {
                HostIncomingRequest::headers(view, request)
            })
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.headers",
        |mut store: Store<'_>, (request,): (Resource<http::HostOutgoingRequest>,)| {
            made_and_charged(store.data_mut(), |view| {
                HostOutgoingRequest::headers(view, request)
            })
        },
    )?;
    types.func_wrap(
        "[method]incoming-response.headers",
        |mut store: Store<'_>, (response,): (Resource<http::HostIncomingResponse>,)| {
            made_and_charged(store.data_mut(), |view| {
                HostIncomingResponse::headers(view, response)
            })
        },
    )?;
    types.func_wrap(
        "[method]outgoing-response.headers",
        |mut store: Store<'_>, (response,): (Resource<http::HostOutgoingResponse>,)| {
            made_and_charged(store.data_mut(), |view| {
                HostOutgoingResponse::headers(view, response)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
