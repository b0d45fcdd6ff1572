//! Time one request spends running guest code: wasmtime's call hooks start
//! and stop it as control passes between the guest and the host, and a guest
//! that yields at an epoch tick stops it until it runs again, so waiting for
//! a CPU slot is not counted.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn nanos_since_start() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Shared between the store's hooks and the yield future, which cannot
/// reach the store.
#[derive(Default)]
pub struct GuestClock {
    /// When the guest last started running, or 0 while it is not running.
    running_since: AtomicU64,
    total_nanos: AtomicU64,
}

impl GuestClock {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn start(&self) {
        self.running_since
            .store(nanos_since_start().max(1), Ordering::Relaxed);
    }

    pub fn stop(&self) {
        let since = self.running_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            let ran = nanos_since_start().saturating_sub(since);
            self.total_nanos.fetch_add(ran, Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_nanos.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_time_counts() {
        let clock = GuestClock::new();
        let began = Instant::now();
        clock.start();
        std::thread::sleep(Duration::from_millis(20));
        clock.stop();
        let running = began.elapsed();
        std::thread::sleep(Duration::from_millis(30));
        clock.stop();
        let total = clock.total();
        // Bounded by the wall time around the running stretch, however slow
        // the machine, and untouched by the stretch after it.
        assert!(total >= Duration::from_millis(20), "{total:?}");
        assert!(total <= running, "{total:?} > {running:?}");
    }
}
