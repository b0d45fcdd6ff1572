//! A small JSON API: routing with path parameters and method matching, JSON
//! in and out, and validation errors that say what is wrong.
//!
//! - `GET /health` → `{"status": "ok"}`
//! - `GET /greet/{name}` → `{"greeting": "Hello, {name}!"}`
//! - `POST /quotes` with `{"items": [{"sku": "A-1", "quantity": 2, "unit_price_cents": 150}]}`
//!   → `{"items": 1, "total_cents": 300}`, or 400 naming the field at fault.

use berth_sdk::{Error, Json, Params, Request, Router, read_json, serve};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteRequest {
    items: Vec<LineItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineItem {
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
}

#[derive(Serialize)]
struct Quote {
    items: usize,
    total_cents: u64,
}

const MAX_QUANTITY: u32 = 1000;

async fn health(_: Request, _: Params) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn greet(_: Request, params: Params) -> Result<Json<serde_json::Value>, Error> {
    let name = params.get("name").unwrap_or_default();
    if name.len() > 64 {
        return Err(Error::bad_request("`name` must be at most 64 characters"));
    }
    Ok(Json(
        serde_json::json!({ "greeting": format!("Hello, {name}!") }),
    ))
}

async fn quote(mut request: Request, _: Params) -> Result<Json<Quote>, Error> {
    let order: QuoteRequest = read_json(&mut request).await?;
    if order.items.is_empty() {
        return Err(Error::bad_request("`items` must contain at least one item"));
    }
    let mut total: u64 = 0;
    for (i, item) in order.items.iter().enumerate() {
        if item.sku.trim().is_empty() {
            return Err(Error::bad_request(format!(
                "`items[{i}].sku` must not be empty"
            )));
        }
        if item.quantity == 0 || item.quantity > MAX_QUANTITY {
            return Err(Error::bad_request(format!(
                "`items[{i}].quantity` must be between 1 and {MAX_QUANTITY}, got {}",
                item.quantity
            )));
        }
        total = item
            .unit_price_cents
            .checked_mul(u64::from(item.quantity))
            .and_then(|line| total.checked_add(line))
            .ok_or_else(|| Error::bad_request(format!("`items[{i}]` overflows the total")))?;
    }
    Ok(Json(Quote {
        items: order.items.len(),
        total_cents: total,
    }))
}

serve!(
    Router::new()
        .get("/health", health)
        .get("/greet/{name}", greet)
        .post("/quotes", quote)
);
