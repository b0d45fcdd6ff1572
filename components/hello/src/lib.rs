//! The smallest Berth service: answers every request with a line of text.

use berth_sdk::{Request, serve};

async fn hello(_request: Request) -> &'static str {
    "Hello from Berth!\n"
}

serve!(hello);
