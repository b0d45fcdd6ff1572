//! `wasi:logging` for guests: each call becomes a line of the guest's
//! output ([`GuestIdentity::record`](super::guest_output::GuestIdentity)).

use super::bindings::logging::{self, Level};
use super::state::HostState;

impl logging::Host for HostState {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error | Level::Critical => tracing::Level::ERROR,
        };
        if context.is_empty() {
            self.identity.record("log", level, &message);
        } else {
            self.identity
                .record("log", level, &format!("{context}: {message}"));
        }
        Ok(())
    }
}
