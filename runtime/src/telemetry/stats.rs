//! Usage figures a host computes itself, without Prometheus: request rate,
//! error rate, latency percentiles, guest CPU time and memory of each
//! service over the last 1, 5 and 15 minutes.
//!
//! Each service keeps a ring of 5-second slots covering 15 minutes. A slot
//! holds counts, sums and a log-scale latency histogram, so a window's
//! percentiles come from merging its slots. The ring is allocated on a
//! service's first request: idle services cost a few words.

use berth_api::observe::{SeriesPoint, StatsSummary, WindowFigures};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds one slot covers.
pub const SLOT_SECONDS: u64 = 5;
/// Slots in the ring: 15 minutes.
const SLOTS: usize = 180;
/// Latency buckets, each √2 wider than the last, from 16 µs up to about 190 s.
const BUCKETS: usize = 48;
const FIRST_BUCKET_MICROS: f64 = 16.0;

/// The windows a summary covers, in seconds.
const WINDOWS: [(&str, u64); 3] = [("1m", 60), ("5m", 300), ("15m", 900)];

#[derive(Clone, Copy)]
struct Slot {
    /// Which 5-second interval since the epoch this slot holds.
    index: u64,
    requests: u64,
    errors: u64,
    cpu_nanos: u64,
    guest_runs: u64,
    memory_peak: u64,
    latency: [u32; BUCKETS],
}

impl Slot {
    const EMPTY: Slot = Slot {
        index: 0,
        requests: 0,
        errors: 0,
        cpu_nanos: 0,
        guest_runs: 0,
        memory_peak: 0,
        latency: [0; BUCKETS],
    };
}

fn bucket_of(took: Duration) -> usize {
    let micros = took.as_secs_f64() * 1e6;
    if micros <= FIRST_BUCKET_MICROS {
        return 0;
    }
    // Bucket i holds latencies up to 16 µs × √2^i.
    let i = (2.0 * (micros / FIRST_BUCKET_MICROS).log2()).ceil();
    (i as usize).min(BUCKETS - 1)
}

fn bucket_upper_millis(i: usize) -> f64 {
    FIRST_BUCKET_MICROS * 2f64.powf(i as f64 / 2.0) / 1000.0
}

/// One service's ring of slots.
#[derive(Default)]
pub struct ServiceStats {
    ring: Mutex<Option<Box<[Slot; SLOTS]>>>,
}

fn now_index() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / SLOT_SECONDS)
}

impl ServiceStats {
    fn with_slot(&self, update: impl FnOnce(&mut Slot)) {
        let index = now_index();
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let ring = ring.get_or_insert_with(|| Box::new([Slot::EMPTY; SLOTS]));
        let slot = &mut ring[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::EMPTY
            };
        }
        update(slot);
    }

    pub fn record_request(&self, status: http::StatusCode, took: Duration) {
        self.with_slot(|slot| {
            slot.requests += 1;
            if status.is_server_error() {
                slot.errors += 1;
            }
            let b = bucket_of(took);
            slot.latency[b] = slot.latency[b].saturating_add(1);
        });
    }

    pub fn record_guest(&self, cpu: Duration, memory_peak: u64) {
        self.with_slot(|slot| {
            slot.cpu_nanos = slot
                .cpu_nanos
                .saturating_add(u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX));
            slot.guest_runs += 1;
            slot.memory_peak = slot.memory_peak.max(memory_peak);
        });
    }

    /// Figures for each window, and the per-slot series of the last 15
    /// minutes (oldest first) for charts.
    pub fn summary(&self) -> StatsSummary {
        let now = now_index();
        let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        let live: Vec<Slot> = ring
            .as_ref()
            .map(|ring| {
                ring.iter()
                    .filter(|s| s.index + SLOTS as u64 > now && s.index <= now)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        drop(ring);
        let windows = WINDOWS
            .iter()
            .map(|(name, seconds)| {
                let first = now + 1 - seconds / SLOT_SECONDS;
                let slots: Vec<&Slot> = live.iter().filter(|s| s.index >= first).collect();
                (name.to_string(), window_figures(&slots, *seconds))
            })
            .collect();
        let mut series: Vec<SeriesPoint> = live
            .iter()
            .map(|s| SeriesPoint {
                at: s.index * SLOT_SECONDS,
                requests: s.requests,
                errors: s.errors,
                p50_ms: percentile(&s.latency, 0.50),
                p99_ms: percentile(&s.latency, 0.99),
                cpu_ms_per_request: (s.guest_runs > 0)
                    .then(|| s.cpu_nanos as f64 / 1e6 / s.guest_runs as f64),
                memory_peak_bytes: s.memory_peak,
            })
            .collect();
        series.sort_by_key(|p| p.at);
        StatsSummary {
            slot_seconds: SLOT_SECONDS,
            windows,
            series,
        }
    }
}

/// The upper bound of the bucket holding the `q` quantile, in milliseconds.
fn percentile(latency: &[u32; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = latency.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for (i, &n) in latency.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            return Some((bucket_upper_millis(i) * 1000.0).round() / 1000.0);
        }
    }
    None
}

/// The figures of a window made of `slots`, `seconds` long.
fn window_figures(slots: &[&Slot], seconds: u64) -> WindowFigures {
    {
        let mut latency = [0u32; BUCKETS];
        let (mut requests, mut errors, mut cpu, mut runs, mut memory) = (0, 0, 0u64, 0, 0);
        for s in slots {
            requests += s.requests;
            errors += s.errors;
            cpu = cpu.saturating_add(s.cpu_nanos);
            runs += s.guest_runs;
            memory = memory.max(s.memory_peak);
            for (sum, n) in latency.iter_mut().zip(s.latency) {
                *sum = sum.saturating_add(n);
            }
        }
        let cpu_seconds = cpu as f64 / 1e9;
        WindowFigures {
            requests,
            requests_per_second: requests as f64 / seconds as f64,
            errors,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: percentile(&latency, 0.50),
            p99_ms: percentile(&latency, 0.99),
            cpu_seconds,
            cpu_ms_per_request: (runs > 0).then(|| cpu_seconds * 1000.0 / runs as f64),
            memory_peak_bytes: memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_requests_errors_and_percentiles() {
        let stats = ServiceStats::default();
        for _ in 0..98 {
            stats.record_request(http::StatusCode::OK, Duration::from_millis(1));
        }
        stats.record_request(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            Duration::from_millis(100),
        );
        stats.record_request(http::StatusCode::NOT_FOUND, Duration::from_millis(100));
        stats.record_guest(Duration::from_millis(3), 1 << 20);
        let summary = stats.summary();
        let minute = &summary.windows["1m"];
        assert_eq!(minute.requests, 100);
        assert_eq!(minute.errors, 1);
        assert!((minute.error_rate - 0.01).abs() < 1e-9);
        // 1 ms lies in the bucket up to 1.024 ms; 100 ms in the one up to 131 ms.
        assert_eq!(minute.p50_ms, Some(1.024));
        assert_eq!(minute.p99_ms, Some(131.072));
        assert_eq!(minute.memory_peak_bytes, 1 << 20);
        assert_eq!(minute.cpu_ms_per_request, Some(3.0));
        assert_eq!(summary.windows["15m"].requests, 100);
        assert_eq!(summary.series.iter().map(|p| p.requests).sum::<u64>(), 100);
    }

    #[test]
    fn buckets_grow_by_root_two() {
        assert_eq!(bucket_of(Duration::from_micros(10)), 0);
        assert_eq!(bucket_of(Duration::from_micros(32)), 2);
        assert_eq!(bucket_of(Duration::from_secs(1000)), BUCKETS - 1);
    }
}
