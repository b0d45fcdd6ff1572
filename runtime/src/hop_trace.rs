//! Marks on one request's path, for `bench/hop_trace.sh`: where a service
//! call's time goes. With the `hop-trace` cargo feature each mark is a
//! trace-level `tracing` event (target `berth::hop`, fields `event` and
//! `depth`), and every guest/host crossing is marked through wasmtime's call
//! hook; without it a mark compiles to nothing, so no shipped build carries
//! them.

/// Target of the marks' events.
pub const TARGET: &str = "berth::hop";

/// Marks `event` at the current instant, for a request `depth` calls deep.
#[inline(always)]
pub fn mark(event: &'static str, depth: u32) {
    #[cfg(feature = "hop-trace")]
    tracing::trace!(target: "berth::hop", event, depth);
    #[cfg(not(feature = "hop-trace"))]
    let _ = (event, depth);
}
