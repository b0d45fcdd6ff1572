//! How much a service's guests may log: a token bucket per service over
//! lines and bytes, so that one chatty (or hostile) service cannot flood
//! the host's log, its log shipper or its followers. Lines over the rate are
//! dropped and counted; the next line that passes says how many went.

use std::sync::Mutex;
use std::time::Instant;

/// Lines a service may log per second, on average.
pub const LINES_PER_SECOND: f64 = 200.0;
/// Lines a service may log at once after a quiet spell.
pub const LINE_BURST: f64 = 1000.0;
/// Bytes of log a service may write per second, on average.
pub const BYTES_PER_SECOND: f64 = 256.0 * 1024.0;
/// Bytes a service may log at once after a quiet spell.
pub const BYTE_BURST: f64 = 1024.0 * 1024.0;

/// One service's log allowance.
#[derive(Debug)]
pub struct LogRate {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    lines: f64,
    bytes: f64,
    at: Instant,
    dropped: u64,
}

/// Whether a line may be written, and how many were dropped before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Write it; `dropped_before` lines were dropped since the last one.
    Write {
        dropped_before: u64,
    },
    Drop,
}

impl Default for LogRate {
    fn default() -> Self {
        Self {
            state: Mutex::new(Bucket {
                lines: LINE_BURST,
                bytes: BYTE_BURST,
                at: Instant::now(),
                dropped: 0,
            }),
        }
    }
}

impl LogRate {
    /// Takes one line of `len` bytes from the allowance, if it has room.
    pub fn admit(&self, len: usize) -> Admit {
        self.admit_at(len, Instant::now())
    }

    fn admit_at(&self, len: usize, now: Instant) -> Admit {
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.at = now;
        bucket.lines = (bucket.lines + elapsed * LINES_PER_SECOND).min(LINE_BURST);
        bucket.bytes = (bucket.bytes + elapsed * BYTES_PER_SECOND).min(BYTE_BURST);
        let cost = len as f64;
        if bucket.lines < 1.0 || bucket.bytes < cost {
            bucket.dropped += 1;
            return Admit::Drop;
        }
        bucket.lines -= 1.0;
        bucket.bytes -= cost;
        Admit::Write {
            dropped_before: std::mem::take(&mut bucket.dropped),
        }
    }
}

/// A guest's text as one line of the host's text log: control characters
/// (a newline above all, which would start a forged host line, and
/// terminal escapes) are written as escapes.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_flood_is_cut_to_the_burst_and_then_the_rate() {
        let rate = LogRate::default();
        let start = Instant::now();
        let written = (0..5000)
            .filter(|_| matches!(rate.admit_at(10, start), Admit::Write { .. }))
            .count();
        assert_eq!(written, LINE_BURST as usize);
        // A second later, about a second's worth more, and the first says
        // how many went before it.
        let later = start + Duration::from_secs(1);
        assert_eq!(
            rate.admit_at(10, later),
            Admit::Write {
                dropped_before: 4000
            }
        );
        let more = (0..5000)
            .filter(|_| matches!(rate.admit_at(10, later), Admit::Write { .. }))
            .count();
        assert_eq!(more, LINES_PER_SECOND as usize - 1);
    }

    #[test]
    fn big_lines_spend_the_byte_allowance() {
        let rate = LogRate::default();
        let start = Instant::now();
        let written = (0..100)
            .filter(|_| matches!(rate.admit_at(16 * 1024, start), Admit::Write { .. }))
            .count();
        assert_eq!(written, 64);
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain ünïcode"), "plain ünïcode");
        assert_eq!(
            escape_controls("ok\n2026-11-30T00:00:00Z  INFO forged\u{1b}[2J\r"),
            "ok\\n2026-11-30T00:00:00Z  INFO forged\\u{1b}[2J\\r"
        );
    }
}
