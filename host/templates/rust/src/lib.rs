//! {{name}}: a Berth service.
//!
//! - `GET /` greets with the `greeting` config value and counts the visit
//!   in key-value.
//! - `GET /hello/{who}` answers JSON.

use berth_sdk::kv::Bucket;
use berth_sdk::{Error, Json, Params, Request, Router, config, serve};

async fn home(_: Request, _: Params) -> Result<String, Error> {
    let greeting = config::get("greeting")?.unwrap_or_else(|| "Hello".to_string());
    let visits = Bucket::open_default()?.increment("visits", 1)?;
    berth_sdk::info!("visit {visits}");
    Ok(format!("{greeting} from {{name}}! Visit {visits}.\n"))
}

async fn hello(_: Request, params: Params) -> Json<serde_json::Value> {
    let who = params.get("who").unwrap_or("world");
    Json(serde_json::json!({ "hello": who }))
}

serve!(Router::new().get("/", home).get("/hello/{who}", hello));
