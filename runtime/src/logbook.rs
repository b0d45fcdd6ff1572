//! The recent output of each service's guests, kept in memory for
//! `GET .../services/{s}/logs` and `berth logs --follow`.
//!
//! Each service keeps its last [`LINES_KEPT`] lines in a ring, and every new
//! line is also broadcast to followers; a follower too slow to keep up misses
//! lines rather than slowing the guest down.

pub use berth_api::services::LogLine;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

use crate::capabilities::log_rate::LogRate;

/// Lines kept per service.
pub const LINES_KEPT: usize = 1000;

/// One service's log.
pub struct ServiceLog {
    recent: Mutex<VecDeque<LogLine>>,
    live: broadcast::Sender<LogLine>,
    rate: Arc<LogRate>,
}

impl ServiceLog {
    fn new() -> Self {
        Self {
            recent: Mutex::new(VecDeque::with_capacity(64)),
            live: broadcast::channel(256).0,
            rate: Arc::default(),
        }
    }

    /// How much the service may log: one allowance for all its versions.
    pub fn rate(&self) -> Arc<LogRate> {
        Arc::clone(&self.rate)
    }

    pub fn push(&self, line: LogLine) {
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == LINES_KEPT {
                recent.pop_front();
            }
            recent.push_back(line.clone());
        }
        // No followers is the usual case, not an error.
        let _ = self.live.send(line);
    }

    /// The last `limit` lines, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<LogLine> {
        self.recent.lock().map_or_else(
            |_| Vec::new(),
            |recent| {
                let skip = recent.len().saturating_sub(limit);
                recent.iter().skip(skip).cloned().collect()
            },
        )
    }

    pub fn follow(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }
}

impl std::fmt::Debug for ServiceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLog").finish_non_exhaustive()
    }
}

/// Every service's log, by tenant and service.
#[derive(Default)]
pub struct Logbook {
    services: Mutex<HashMap<(String, String), Arc<ServiceLog>>>,
}

impl Logbook {
    /// The log of one service, created on first use.
    pub fn service(&self, tenant: &str, service: &str) -> Arc<ServiceLog> {
        let mut services = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            services
                .entry((tenant.to_string(), service.to_string()))
                .or_insert_with(|| Arc::new(ServiceLog::new())),
        )
    }

    /// Drops the logs of a deleted service, or of every service of a
    /// deleted tenant: a tenant or service made again under the same name
    /// starts with an empty log.
    pub fn forget(&self, tenant: &str, service: Option<&str>) {
        let mut services = self
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services.retain(|(t, s), _| t != tenant || service.is_some_and(|name| name != s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> LogLine {
        LogLine {
            time_ms: 0,
            version: "1".into(),
            request_id: "r".into(),
            stream: "stdout".into(),
            level: "info".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_forgotten_service_starts_again_empty() {
        let book = Logbook::default();
        book.service("acme", "web").push(line("old owner's line"));
        book.service("acme", "api").push(line("api"));
        book.forget("acme", Some("web"));
        assert!(book.service("acme", "web").recent(10).is_empty());
        assert_eq!(book.service("acme", "api").recent(10).len(), 1);
        book.forget("acme", None);
        assert!(book.service("acme", "api").recent(10).is_empty());
    }
}
