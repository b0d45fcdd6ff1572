//! Per-service resource limits, their defaults, and the enforcement of memory
//! limits inside a guest's `Store`.
//!
//! Limits are plain data: the front door reads the request-shape limits, the
//! invoker reads the time limits, and [`InstanceMemoryLimiter`] enforces the
//! memory limit from inside wasmtime.

use berth_api::limits::ServiceLimits;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How long one epoch tick lasts; CPU budgets are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// How much of the instance pool one component instance may take: the
/// pooling allocator's per-component maxima. Each instance slot of the pool
/// has room for this much, so a request never takes more than one slot's
/// share, and a component over any of them is refused at upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Linear memories, over all the core instances of the component.
    pub memories: u32,
    /// Tables, over all the core instances of the component.
    pub tables: u32,
    /// Core instances, nested components' included.
    pub core_instances: u32,
}

impl Default for ComponentLimits {
    /// Room for what today's toolchains build (one memory, two tables and
    /// up to about fifteen core instances for componentize-py's largest),
    /// and a composition of two such components.
    fn default() -> Self {
        Self {
            memories: 2,
            tables: 8,
            core_instances: 32,
        }
    }
}

/// Every limit a service runs under. Each field has a default that is safe for
/// a shared host; a service's config may change any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory plus tables of one instance, all of them together.
    pub memory_bytes: u64,
    /// Guest CPU time per request, counted in epoch ticks while guest code runs.
    pub cpu_time: Duration,
    /// Wall-clock time from the start of instantiation to the end of the
    /// response body, so a guest that sleeps or streams forever is cut off.
    pub wall_time: Duration,
    /// Largest request body accepted; larger ones are answered with 413.
    pub request_body_bytes: u64,
    /// Most request header fields accepted; more are answered with 431.
    pub max_headers: usize,
    /// Largest total size of request header names and values; 431 past it.
    pub header_bytes: usize,
    /// Largest response body a guest may send; the stream is cut off past it.
    pub response_body_bytes: u64,
    /// Outgoing HTTP requests one incoming request may make.
    pub outbound_requests: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 * 1024 * 1024,
            cpu_time: Duration::from_secs(10),
            wall_time: Duration::from_secs(60),
            request_body_bytes: 64 * 1024 * 1024,
            max_headers: 100,
            header_bytes: 32 * 1024,
            response_body_bytes: 256 * 1024 * 1024,
            outbound_requests: 32,
        }
    }
}

impl Limits {
    /// These limits with the fields `spec` sets replaced: a service's own
    /// limits (from `berth.toml` or the admin API) over its tenant's.
    pub fn overridden_by(self, spec: &ServiceLimits) -> Limits {
        Limits {
            memory_bytes: spec.memory.map_or(self.memory_bytes, |b| b.0),
            cpu_time: spec.cpu_time.map_or(self.cpu_time, |d| d.0),
            wall_time: spec.wall_time.map_or(self.wall_time, |d| d.0),
            request_body_bytes: spec.request_body.map_or(self.request_body_bytes, |b| b.0),
            max_headers: spec.max_headers.unwrap_or(self.max_headers),
            header_bytes: spec.header_bytes.map_or(self.header_bytes, |b| {
                usize::try_from(b.0).unwrap_or(usize::MAX)
            }),
            response_body_bytes: spec.response_body.map_or(self.response_body_bytes, |b| b.0),
            outbound_requests: spec.outbound_requests.unwrap_or(self.outbound_requests),
        }
    }
}

impl Limits {
    /// Each limit no larger than `ceiling`'s: what a service runs under when
    /// its tenant's limits are lowered after the service set its own.
    pub fn within(&self, ceiling: &Limits) -> Limits {
        Limits {
            memory_bytes: self.memory_bytes.min(ceiling.memory_bytes),
            cpu_time: self.cpu_time.min(ceiling.cpu_time),
            wall_time: self.wall_time.min(ceiling.wall_time),
            request_body_bytes: self.request_body_bytes.min(ceiling.request_body_bytes),
            max_headers: self.max_headers.min(ceiling.max_headers),
            header_bytes: self.header_bytes.min(ceiling.header_bytes),
            response_body_bytes: self.response_body_bytes.min(ceiling.response_body_bytes),
            outbound_requests: self.outbound_requests.min(ceiling.outbound_requests),
        }
    }

    /// The first limit set above `ceiling`'s, named as in config, with both
    /// values: a service may tighten its tenant's limits, never loosen them.
    pub fn first_looser_than(&self, ceiling: &Limits) -> Option<String> {
        let checks: [(&str, u128, u128, &str); 8] = [
            (
                "memory",
                self.memory_bytes.into(),
                ceiling.memory_bytes.into(),
                " bytes",
            ),
            (
                "cpu_time",
                self.cpu_time.as_millis(),
                ceiling.cpu_time.as_millis(),
                "ms",
            ),
            (
                "wall_time",
                self.wall_time.as_millis(),
                ceiling.wall_time.as_millis(),
                "ms",
            ),
            (
                "request_body",
                self.request_body_bytes.into(),
                ceiling.request_body_bytes.into(),
                " bytes",
            ),
            (
                "max_headers",
                self.max_headers as u128,
                ceiling.max_headers as u128,
                "",
            ),
            (
                "header_bytes",
                self.header_bytes as u128,
                ceiling.header_bytes as u128,
                " bytes",
            ),
            (
                "response_body",
                self.response_body_bytes.into(),
                ceiling.response_body_bytes.into(),
                " bytes",
            ),
            (
                "outbound_requests",
                self.outbound_requests.into(),
                ceiling.outbound_requests.into(),
                "",
            ),
        ];
        checks
            .into_iter()
            .find(|(_, own, max, _)| own > max)
            .map(|(name, own, max, unit)| {
                format!("{name} {own}{unit} is above the tenant's limit of {max}{unit}")
            })
    }

    /// The CPU budget in epoch ticks, at least one.
    pub fn cpu_ticks(&self) -> u64 {
        let ticks = self.cpu_time.as_millis() / EPOCH_TICK.as_millis().max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

/// One instance's memory budget: its linear memories and tables, all of
/// them together, and the bytes the host holds on its behalf (header maps
/// it built, values and results it asked for, answers of the services it
/// called). wasmtime's `StoreLimits` counts each memory on its own, which
/// lets a component with several memories use a multiple of its limit, and
/// counts nothing the host holds.
///
/// Shared (`Arc`) so that a task working for the instance (a service call
/// gathering its answer) charges the same budget as the store.
#[derive(Debug)]
pub struct InstanceBudget {
    limit: u64,
    used: AtomicU64,
    host_held: AtomicU64,
    peak: AtomicU64,
    /// Set when a growth or a charge was refused, so a trap that follows
    /// can be reported as the memory limit rather than as a generic guest
    /// failure.
    limit_hit: AtomicBool,
}

/// The host would have held more for an instance than its memory limit
/// leaves: the guest gets an error it can read, or a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the host would hold {wanted} bytes more for this instance, past its memory limit of {limit} bytes ({used} in use)"
)]
pub struct HostMemoryExceeded {
    pub wanted: u64,
    pub used: u64,
    pub limit: u64,
}

impl InstanceBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
            host_held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            limit_hit: AtomicBool::new(false),
        })
    }

    /// The memory, tables and host-held bytes the instance may have.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The most the instance had at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Bytes the host holds for the instance now.
    pub fn host_held(&self) -> u64 {
        self.host_held.load(Ordering::Relaxed)
    }

    /// Whether a growth or a charge was refused.
    pub fn limit_hit(&self) -> bool {
        self.limit_hit.load(Ordering::Relaxed)
    }

    /// Counts `extra` bytes more, or refuses them.
    fn try_add(&self, extra: u64) -> Result<(), HostMemoryExceeded> {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let next = used.saturating_add(extra);
            if next > self.limit {
                self.limit_hit.store(true, Ordering::Relaxed);
                return Err(HostMemoryExceeded {
                    wanted: extra,
                    used,
                    limit: self.limit,
                });
            }
            match self
                .used
                .compare_exchange_weak(used, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => used = now,
            }
        }
    }

    fn sub(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Charges `bytes` the host is about to hold for the instance; they are
    /// given back when the returned charge is dropped.
    pub fn charge(self: &Arc<Self>, bytes: u64) -> Result<HostCharge, HostMemoryExceeded> {
        let mut charge = HostCharge {
            budget: Arc::clone(self),
            bytes: 0,
        };
        charge.grow(bytes)?;
        Ok(charge)
    }
}

/// Bytes the host holds for an instance, counted against its budget until
/// this is dropped.
#[derive(Debug)]
pub struct HostCharge {
    budget: Arc<InstanceBudget>,
    bytes: u64,
}

impl HostCharge {
    /// Charges `more` bytes on top, or refuses them (and keeps what it had).
    pub fn grow(&mut self, more: u64) -> Result<(), HostMemoryExceeded> {
        self.budget.try_add(more)?;
        self.budget.host_held.fetch_add(more, Ordering::Relaxed);
        self.bytes += more;
        Ok(())
    }

    /// The bytes charged.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for HostCharge {
    fn drop(&mut self) {
        self.budget.sub(self.bytes);
        let _ = self
            .budget
            .host_held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                Some(held.saturating_sub(self.bytes))
            });
    }
}

/// The store's [`ResourceLimiter`](wasmtime::ResourceLimiter): growth of
/// memories and tables against the instance's [`InstanceBudget`], and caps
/// on how many memories, tables and core instances the store may create.
/// The pooling allocator checks the same maxima when a component is
/// compiled; this holds them for an engine without a pool too.
#[derive(Debug)]
pub struct InstanceMemoryLimiter {
    budget: Arc<InstanceBudget>,
    component: ComponentLimits,
}

/// Bytes a table element is counted as: a pointer-sized reference.
const TABLE_ELEMENT_BYTES: u64 = 8;

impl InstanceMemoryLimiter {
    pub fn new(limit: u64, component: ComponentLimits) -> Self {
        Self {
            budget: InstanceBudget::new(limit),
            component,
        }
    }

    /// The budget, for charging what the host holds for the instance.
    pub fn budget(&self) -> &Arc<InstanceBudget> {
        &self.budget
    }

    fn grow(&mut self, current: u64, desired: u64) -> bool {
        self.budget.try_add(desired.saturating_sub(current)).is_ok()
    }
}

impl wasmtime::ResourceLimiter for InstanceMemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Ok(self.grow(current as u64, desired as u64))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Ok(self.grow(
            (current as u64).saturating_mul(TABLE_ELEMENT_BYTES),
            (desired as u64).saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    fn instances(&self) -> usize {
        self.component.core_instances as usize
    }

    fn memories(&self) -> usize {
        self.component.memories as usize
    }

    fn tables(&self) -> usize {
        self.component.tables as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memories_are_counted_together() {
        let mut limiter = InstanceMemoryLimiter::new(100, ComponentLimits::default());
        assert!(limiter.memory_growing(0, 60, None).unwrap_or(false));
        // A second memory growing to 60 would pass a per-memory limit of 100.
        assert!(!limiter.memory_growing(0, 60, None).unwrap_or(true));
        assert!(limiter.budget().limit_hit());
        assert!(limiter.memory_growing(0, 40, None).unwrap_or(false));
    }

    #[test]
    fn a_huge_table_grow_counts_against_the_same_budget() {
        let mut limiter = InstanceMemoryLimiter::new(1 << 20, ComponentLimits::default());
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap_or(false));
        // 100,000 elements are 800,000 bytes: past what the memory left.
        assert!(!limiter.table_growing(0, 100_000, None).unwrap_or(true));
        assert!(limiter.budget().limit_hit());
        assert!(limiter.table_growing(0, 1_000, None).unwrap_or(false));
        // A table's own maximum is honoured too.
        assert!(!limiter.table_growing(0, 10, Some(5)).unwrap_or(true));
    }

    #[test]
    fn host_held_bytes_share_the_instance_budget() {
        let mut limiter = InstanceMemoryLimiter::new(1000, ComponentLimits::default());
        let budget = Arc::clone(limiter.budget());
        assert!(limiter.memory_growing(0, 600, None).unwrap_or(false));
        let held = budget.charge(300);
        assert!(held.is_ok());
        // 600 of memory and 300 held: 200 more would pass the limit.
        let refused = budget.charge(200).err();
        assert_eq!(
            refused,
            Some(HostMemoryExceeded {
                wanted: 200,
                used: 900,
                limit: 1000
            })
        );
        assert!(budget.limit_hit());
        // Nor may the guest's memory grow into what the host holds.
        assert!(!limiter.memory_growing(600, 800, None).unwrap_or(true));
        assert_eq!(budget.host_held(), 300);
        drop(held);
        assert_eq!(budget.host_held(), 0);
        assert!(limiter.memory_growing(600, 800, None).unwrap_or(false));
        assert_eq!(budget.peak(), 900);
    }

    #[test]
    fn a_charge_grows_until_the_limit_and_keeps_what_it_had() {
        let budget = InstanceBudget::new(100);
        let Ok(mut charge) = budget.charge(40) else {
            panic!("40 of 100 refused")
        };
        assert!(charge.grow(50).is_ok());
        assert!(charge.grow(20).is_err());
        assert_eq!(charge.bytes(), 90);
        drop(charge);
        assert_eq!(budget.host_held(), 0);
        assert!(budget.charge(100).is_ok());
    }

    #[test]
    fn a_store_may_create_only_the_component_maxima() {
        use wasmtime::ResourceLimiter as _;
        let limiter = InstanceMemoryLimiter::new(1 << 20, ComponentLimits::default());
        assert_eq!(limiter.memories(), 2);
        assert_eq!(limiter.tables(), 8);
        assert_eq!(limiter.instances(), 32);
    }

    #[test]
    fn service_limits_stay_within_the_tenant() {
        let tenant = Limits {
            memory_bytes: 1000,
            ..Limits::default()
        };
        let service = Limits {
            memory_bytes: 2000,
            cpu_time: Duration::from_millis(5),
            ..Limits::default()
        };
        let message = service.first_looser_than(&tenant).unwrap_or_default();
        assert_eq!(
            message,
            "memory 2000 bytes is above the tenant's limit of 1000 bytes"
        );
        let effective = service.within(&tenant);
        assert_eq!(effective.memory_bytes, 1000);
        assert_eq!(effective.cpu_time, Duration::from_millis(5));
        assert_eq!(tenant.first_looser_than(&tenant), None);
    }

    #[test]
    fn cpu_budget_has_at_least_one_tick() {
        let limits = Limits {
            cpu_time: Duration::from_millis(1),
            ..Limits::default()
        };
        assert_eq!(limits.cpu_ticks(), 1);
    }
}
