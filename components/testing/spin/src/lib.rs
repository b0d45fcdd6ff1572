//! Test guest: spins forever without yielding, to test CPU deadlines.

use berth_sdk::{Request, serve};

async fn handle(_request: Request) -> &'static str {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

serve!(handle);
