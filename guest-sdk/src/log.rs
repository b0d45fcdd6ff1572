//! Logging through `wasi:logging`: each line reaches the host's log and the
//! service's log (`berth logs`), tagged with the tenant, service, version
//! and request id. Use the macros: [`info!`](crate::info),
//! [`warn!`](crate::warn), [`error!`](crate::error), [`debug!`](crate::debug).
//!
//! ```no_run
//! berth_sdk::info!("cart {} has {} items", "c-1", 3);
//! berth_sdk::error!("payment declined");
//! ```

pub use crate::bindings::wasi::logging::logging::Level;

/// Logs `message` at `level`; `context` names where it comes from.
pub fn log(level: Level, context: &str, message: &str) {
    crate::bindings::wasi::logging::logging::log(level, context, message);
}

/// Logs at `info` level, with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, module_path!(), &format!($($arg)*)) };
}

/// Logs at `warn` level, with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, module_path!(), &format!($($arg)*)) };
}

/// Logs at `error` level, with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, module_path!(), &format!($($arg)*)) };
}

/// Logs at `debug` level, with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, module_path!(), &format!($($arg)*)) };
}
