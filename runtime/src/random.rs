//! Fast, non-cryptographic random numbers: for picking among split
//! versions and for trace and span ids, never for secrets.

/// A fast, non-cryptographic random number.
pub fn roll() -> u64 {
    use std::cell::Cell;
    use std::hash::{BuildHasher, RandomState};
    thread_local! {
        static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
    }
    STATE.with(|state| {
        // xorshift64*
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_spread_evenly() {
        let mut low = 0;
        for _ in 0..10_000 {
            if roll() % 100 < 10 {
                low += 1;
            }
        }
        assert!((800..1200).contains(&low), "{low} of 10000 below 10%");
    }
}
