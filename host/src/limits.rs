//! Per-service resource limits, their defaults, and the enforcement of memory
//! limits inside a guest's `Store`.
//!
//! Limits are plain data: the front door reads the request-shape limits, the
//! invoker reads the time limits, and [`InstanceMemoryLimiter`] enforces the
//! memory limit from inside wasmtime.

use serde::Deserialize;
use std::time::Duration;

use crate::units::{ByteSize, DurationSpec};

/// How long one epoch tick lasts; CPU budgets are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

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

/// The `[service.limits]` table of `berth.toml`: every field optional, unset
/// fields keep their defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub memory: Option<ByteSize>,
    pub cpu_time: Option<DurationSpec>,
    pub wall_time: Option<DurationSpec>,
    pub request_body: Option<ByteSize>,
    pub max_headers: Option<usize>,
    pub header_bytes: Option<ByteSize>,
    pub response_body: Option<ByteSize>,
    pub outbound_requests: Option<u32>,
}

impl LimitsSpec {
    /// Applies the fields that are set on top of `base`.
    pub fn apply_to(&self, base: Limits) -> Limits {
        Limits {
            memory_bytes: self.memory.map_or(base.memory_bytes, |b| b.0),
            cpu_time: self.cpu_time.map_or(base.cpu_time, |d| d.0),
            wall_time: self.wall_time.map_or(base.wall_time, |d| d.0),
            request_body_bytes: self.request_body.map_or(base.request_body_bytes, |b| b.0),
            max_headers: self.max_headers.unwrap_or(base.max_headers),
            header_bytes: self.header_bytes.map_or(base.header_bytes, |b| {
                usize::try_from(b.0).unwrap_or(usize::MAX)
            }),
            response_body_bytes: self.response_body.map_or(base.response_body_bytes, |b| b.0),
            outbound_requests: self.outbound_requests.unwrap_or(base.outbound_requests),
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

/// Enforces one memory budget over all of an instance's linear memories and
/// tables together. wasmtime's `StoreLimits` counts each memory on its own,
/// which lets a component with several memories use a multiple of its limit.
#[derive(Debug)]
pub struct InstanceMemoryLimiter {
    limit: u64,
    used: u64,
    /// Set when a growth was refused, so a trap that follows can be reported
    /// as the memory limit rather than as a generic guest failure.
    pub limit_hit: bool,
    /// The most memory and table space held at once.
    peak: u64,
}

/// Bytes a table element is counted as: a pointer-sized reference.
const TABLE_ELEMENT_BYTES: u64 = 8;

impl InstanceMemoryLimiter {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            used: 0,
            limit_hit: false,
            peak: 0,
        }
    }

    /// The memory and table space the instance may hold.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The most memory and table space the instance held at once.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    fn grow(&mut self, current: u64, desired: u64) -> bool {
        let extra = desired.saturating_sub(current);
        let next = self.used.saturating_add(extra);
        if next > self.limit {
            self.limit_hit = true;
            return false;
        }
        self.used = next;
        self.peak = self.peak.max(next);
        true
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memories_are_counted_together() {
        let mut limiter = InstanceMemoryLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap_or(false));
        // A second memory growing to 60 would pass a per-memory limit of 100.
        assert!(!limiter.memory_growing(0, 60, None).unwrap_or(true));
        assert!(limiter.limit_hit);
        assert!(limiter.memory_growing(0, 40, None).unwrap_or(false));
    }

    #[test]
    fn a_huge_table_grow_counts_against_the_same_budget() {
        let mut limiter = InstanceMemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap_or(false));
        // 100,000 elements are 800,000 bytes: past what the memory left.
        assert!(!limiter.table_growing(0, 100_000, None).unwrap_or(true));
        assert!(limiter.limit_hit);
        assert!(limiter.table_growing(0, 1_000, None).unwrap_or(false));
        // A table's own maximum is honoured too.
        assert!(!limiter.table_growing(0, 10, Some(5)).unwrap_or(true));
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
