//! Host capabilities a guest reaches through WASI interfaces, each one
//! confined to the service that uses it.
//!
//! - [`outbound`]: outgoing HTTP (`wasi:http/outgoing-handler`), denied unless
//!   the service's allow-list names the destination.
//! - [`addresses`]: which resolved addresses outgoing requests may reach.
//! - [`clocks`]: the coarse clocks guests see.
//! - [`stdio`]: guest stdout and stderr, captured into the host's log.

pub mod addresses;
pub mod clocks;
pub mod outbound;
pub mod stdio;
