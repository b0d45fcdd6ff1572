//! Test guest: traps on `/trap` (a Rust panic aborts the instance); answers
//! anything else, so a test can see the next request served.

use berth_sdk::{Request, serve};

async fn handle(request: Request) -> &'static str {
    if request.uri().path().ends_with("/trap") {
        eprintln!("testing-trap: about to panic");
        panic!("testing-trap: deliberate panic");
    }
    "still alive\n"
}

serve!(handle);
