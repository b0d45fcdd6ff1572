//! Test guest: allocates and touches memory until it is refused.

use berth_sdk::{Request, serve};

async fn handle(_request: Request) -> String {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really used, not just reserved.
        blocks.push(vec![0xAB; 1 << 20]);
        std::hint::black_box(&blocks);
    }
}

serve!(handle);
