//! Every service's telemetry handles, kept across routing-table rebuilds: a
//! deploy neither resets a service's stats nor registers its metrics again,
//! so rebuilding the table for one change stays cheap with many services.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::metrics::{KvCounters, ServiceMetrics};
use super::stats::ServiceStats;

struct ServiceEntry {
    stats: Arc<ServiceStats>,
    kv: Arc<KvCounters>,
    versions: HashMap<String, Arc<ServiceMetrics>>,
}

#[derive(Default)]
pub struct TelemetryBook {
    services: Mutex<HashMap<(String, String), ServiceEntry>>,
}

impl TelemetryBook {
    fn with_service<T>(
        &self,
        tenant: &str,
        service: &str,
        f: impl FnOnce(&mut ServiceEntry) -> T,
    ) -> T {
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = services
            .entry((tenant.to_string(), service.to_string()))
            .or_insert_with(|| ServiceEntry {
                stats: Arc::default(),
                kv: Arc::new(KvCounters::new(tenant, service)),
                versions: HashMap::new(),
            });
        f(entry)
    }

    /// The metric handles of one version, sharing its service's stats.
    pub fn version(&self, tenant: &str, service: &str, version: &str) -> Arc<ServiceMetrics> {
        self.with_service(tenant, service, |entry| {
            let stats = Arc::clone(&entry.stats);
            Arc::clone(
                entry
                    .versions
                    .entry(version.to_string())
                    .or_insert_with(|| {
                        Arc::new(ServiceMetrics::new(tenant, service, version, stats))
                    }),
            )
        })
    }

    /// The service's key-value operation counters.
    pub fn kv(&self, tenant: &str, service: &str) -> Arc<KvCounters> {
        self.with_service(tenant, service, |entry| Arc::clone(&entry.kv))
    }

    /// A service's stats, if it has an entry.
    pub fn stats(&self, tenant: &str, service: &str) -> Option<Arc<ServiceStats>> {
        let services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services
            .get(&(tenant.to_string(), service.to_string()))
            .map(|entry| Arc::clone(&entry.stats))
    }

    /// Drops a deleted service's entry (or, with `None`, the tenant's).
    pub fn forget(&self, tenant: &str, service: Option<&str>) {
        super::incarnation::forget(tenant, service);
        let mut services = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        services.retain(|(t, s), _| t != tenant || service.is_some_and(|name| name != s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_a_service_share_its_stats_until_it_is_forgotten() {
        let book = TelemetryBook::default();
        let v1 = book.version("acme", "web", "1");
        let v2 = book.version("acme", "web", "2");
        assert!(Arc::ptr_eq(&v1, &book.version("acme", "web", "1")));
        assert!(Arc::ptr_eq(&v1.stats, &v2.stats));
        assert!(!Arc::ptr_eq(
            &v1.stats,
            &book.version("acme", "api", "1").stats
        ));
        book.forget("acme", Some("web"));
        assert!(book.stats("acme", "web").is_none());
        assert!(book.stats("acme", "api").is_some());
        book.forget("acme", None);
        assert!(book.stats("acme", "api").is_none());
    }
}
