//! The one place a guest's output (from `wasi:logging`, or its stdout and
//! stderr) becomes `tracing` events and entries of the service's log: rate
//! limited, cut to a bounded length, control characters escaped.

use std::sync::Arc;

use super::log_rate::{Admit, BYTES_PER_SECOND, LINES_PER_SECOND, LogRate, escape_controls};
use crate::logbook::{LogLine, ServiceLog};

/// A longer message is cut here, so one call cannot fill the host's log.
const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Who wrote a line; attached to every line logged.
#[derive(Debug, Clone)]
pub struct GuestIdentity {
    pub tenant: Arc<str>,
    pub service: Arc<str>,
    pub version: Arc<str>,
    /// The request the instance serves now; a reused instance serves
    /// several, and its output streams hold a clone of this identity.
    pub request_id: CurrentRequest,
    /// Where the service's recent output is kept for the admin API.
    pub log: Option<Arc<ServiceLog>>,
    /// How much the service may log.
    pub rate: Arc<LogRate>,
}

/// The id of the request an instance is serving, shared by the clones of
/// its identity so a reused instance's output names the request it is in.
#[derive(Debug, Clone)]
pub struct CurrentRequest(Arc<std::sync::Mutex<Arc<str>>>);

impl CurrentRequest {
    pub fn new(id: Arc<str>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(id)))
    }

    pub fn get(&self) -> Arc<str> {
        match self.0.lock() {
            Ok(id) => Arc::clone(&id),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn set(&self, id: Arc<str>) {
        match self.0.lock() {
            Ok(mut current) => *current = id,
            Err(poisoned) => *poisoned.into_inner() = id,
        }
    }
}

impl std::fmt::Display for CurrentRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.get())
    }
}

impl GuestIdentity {
    /// Logs one line the guest wrote to `stream` (`stdout`, `stderr`, `log`).
    pub fn record(&self, stream: &'static str, level: tracing::Level, message: &str) {
        let message = truncate(message, MAX_MESSAGE_BYTES);
        match self.rate.admit(message.len()) {
            Admit::Drop => return,
            Admit::Write { dropped_before: 0 } => {}
            Admit::Write { dropped_before } => {
                crate::telemetry::metrics::guest_log_dropped(
                    &self.tenant,
                    &self.service,
                    dropped_before,
                );
                self.write(
                    "host",
                    tracing::Level::WARN,
                    &format!(
                        "{dropped_before} lines of this service's output were dropped: \
                         over its log rate ({LINES_PER_SECOND} lines, {BYTES_PER_SECOND} bytes a second)"
                    ),
                );
            }
        }
        self.write(stream, level, message);
    }

    fn write(&self, stream: &'static str, level: tracing::Level, message: &str) {
        if let Some(log) = &self.log {
            log.push(LogLine {
                time_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                version: self.version.to_string(),
                request_id: self.request_id.get().to_string(),
                stream: stream.into(),
                level: level_name(level).into(),
                message: message.to_string(),
            });
        }
        // The host's text log keeps one event a line.
        let message = escape_controls(message);
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "berth::guest", $level,
                    tenant = %self.tenant, service = %self.service, version = %self.version,
                    request_id = %self.request_id, stream, "{message}"
                )
            };
        }
        match level {
            tracing::Level::ERROR => emit!(tracing::Level::ERROR),
            tracing::Level::WARN => emit!(tracing::Level::WARN),
            tracing::Level::INFO => emit!(tracing::Level::INFO),
            tracing::Level::DEBUG => emit!(tracing::Level::DEBUG),
            tracing::Level::TRACE => emit!(tracing::Level::TRACE),
        }
    }
}

fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
