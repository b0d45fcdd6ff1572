//! Test guest: recurses without bound until the stack overflows.

use berth_sdk::{Request, serve};

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, pad: [u8; 256]) -> u64 {
    let pad = std::hint::black_box(pad);
    recurse(depth + 1, pad).wrapping_add(pad[(depth % 256) as usize] as u64)
}

async fn handle(_request: Request) -> String {
    recurse(0, [1; 256]).to_string()
}

serve!(handle);
