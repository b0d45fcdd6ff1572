//! The clocks guests see: WASI's monotonic and wall clocks, rounded down to
//! [`GUEST_CLOCK_RESOLUTION`]. A guest needs time, but not a timer fine
//! enough to measure cache effects of the host or of another tenant's code.

use std::time::{Duration, Instant, SystemTime};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The finest time step a guest can observe.
pub const GUEST_CLOCK_RESOLUTION: Duration = Duration::from_micros(100);

fn round_down(nanos: u128) -> u64 {
    let step = GUEST_CLOCK_RESOLUTION.as_nanos().max(1);
    u64::try_from(nanos - nanos % step).unwrap_or(u64::MAX)
}

/// Nanoseconds since the instance started, in steps of the resolution.
pub struct CoarseMonotonicClock {
    started: Instant,
}

impl CoarseMonotonicClock {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
        }
    }
}

impl Default for CoarseMonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        u64::try_from(GUEST_CLOCK_RESOLUTION.as_nanos()).unwrap_or(u64::MAX)
    }

    fn now(&self) -> u64 {
        round_down(self.started.elapsed().as_nanos())
    }
}

/// Unix time, in steps of the resolution.
pub struct CoarseWallClock;

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        GUEST_CLOCK_RESOLUTION
    }

    fn now(&self) -> Duration {
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Duration::from_nanos(round_down(since_epoch.as_nanos()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_see_time_in_whole_steps_and_never_backwards() {
        let clock = CoarseMonotonicClock::new();
        let step = clock.resolution();
        let mut last = 0;
        for _ in 0..10_000 {
            let now = clock.now();
            assert_eq!(now % step, 0);
            assert!(now >= last);
            last = now;
        }
        let wall = CoarseWallClock.now().as_nanos();
        assert_eq!(wall % GUEST_CLOCK_RESOLUTION.as_nanos(), 0);
        assert!(wall > 0);
    }
}
