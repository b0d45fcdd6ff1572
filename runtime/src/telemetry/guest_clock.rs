//! Time one request spends running its guest: the guest's own code and the
//! host calls it makes without waiting. It is counted per poll of the task
//! that runs the guest, not per guest/host crossing: a service call crosses
//! a hundred times or more, and two clock reads at each crossing were about
//! 6% of its CPU under `perf`. A guest that waits (on a
//! service it called, an upstream, a timer, or its next CPU slice after an
//! epoch tick) leaves its poll, so the wait is not counted.

use std::future::Future;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct GuestClock {
    total: Duration,
}

impl GuestClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `guest` to completion, counting the time inside its polls;
    /// `on_wait` runs each time the guest stops to wait.
    pub async fn run<F: Future>(&mut self, guest: F, mut on_wait: impl FnMut()) -> F::Output {
        let mut guest = std::pin::pin!(guest);
        std::future::poll_fn(|cx| {
            let began = Instant::now();
            let polled = guest.as_mut().poll(cx);
            self.total += began.elapsed();
            if polled.is_pending() {
                on_wait();
            }
            polled
        })
        .await
    }

    pub fn total(&self) -> Duration {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_running_time_counts() {
        let mut clock = GuestClock::new();
        let mut waits = 0;
        let began = Instant::now();
        clock
            .run(
                async {
                    // Running: counted.
                    std::thread::sleep(Duration::from_millis(20));
                    // Waiting: not counted.
                    tokio::time::sleep(Duration::from_millis(40)).await;
                },
                || waits += 1,
            )
            .await;
        let wall = began.elapsed();
        let total = clock.total();
        // Bounded by the wall time less the wait, however slow the machine.
        assert!(total >= Duration::from_millis(20), "{total:?}");
        assert!(
            total <= wall.saturating_sub(Duration::from_millis(40)),
            "{total:?} of {wall:?}"
        );
        assert!(waits >= 1, "the wait was not seen");
    }
}
