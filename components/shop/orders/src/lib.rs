//! The shop's orders: it reacts to events, and is called by no one.
//!
//! - `POST /events/order-placed`: an `order.placed` event (a CloudEvent
//!   from the topic `orders`, published by `cart` at checkout). Recorded
//!   once per event id: a delivery made again (events are delivered at
//!   least once) finds its id already there and changes nothing;
//! - `POST /events/nightly`: a schedule's tick; writes the sales summary
//!   (orders and units per product) to key-value, under `summary:latest`
//!   and `summary:{day}`;
//! - `GET /orders`: the orders recorded;
//! - `GET /summary`: the latest summary (404 before the first tick).

use berth_sdk::kv::Bucket;
use berth_sdk::{Error, Json, Params, Request, Router, StatusCode, read_json, serve};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone)]
struct Line {
    product_id: u64,
    quantity: u32,
}

/// What `cart` publishes.
#[derive(Deserialize)]
struct Placed {
    user: String,
    items: Vec<Line>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Order {
    /// The event's id: what makes a second delivery a no-op.
    event_id: String,
    user: String,
    items: Vec<Line>,
    placed_at: String,
}

#[derive(Serialize, Deserialize)]
struct Summary {
    /// The tick that wrote it.
    at: String,
    orders: usize,
    units_by_product: BTreeMap<u64, u64>,
}

fn header(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn order_placed(mut request: Request, _p: Params) -> Result<StatusCode, Error> {
    let event_id = header(&request, "ce-id")
        .ok_or_else(|| Error::bad_request("not a CloudEvent: no ce-id"))?;
    let placed_at = header(&request, "ce-time").unwrap_or_default();
    let placed: Placed = read_json(&mut request).await?;
    // One atomic update: the order is added unless its event is already
    // recorded, so a repeated delivery is acknowledged and changes nothing.
    Bucket::open_default()?.update("orders", |orders: Option<Vec<Order>>| {
        let mut orders = orders.unwrap_or_default();
        if !orders.iter().any(|o| o.event_id == event_id) {
            orders.push(Order {
                event_id: event_id.clone(),
                user: placed.user.clone(),
                items: placed.items.clone(),
                placed_at: placed_at.clone(),
            });
        }
        Ok(orders)
    })?;
    Ok(StatusCode::OK)
}

async fn nightly(request: Request, _p: Params) -> Result<StatusCode, Error> {
    let at = header(&request, "ce-time").unwrap_or_default();
    let bucket = Bucket::open_default()?;
    let orders: Vec<Order> = bucket.get("orders")?.unwrap_or_default();
    let mut units_by_product = BTreeMap::new();
    for line in orders.iter().flat_map(|o| &o.items) {
        *units_by_product.entry(line.product_id).or_insert(0) += u64::from(line.quantity);
    }
    let summary = Summary {
        at: at.clone(),
        orders: orders.len(),
        units_by_product,
    };
    let day = at.get(..10).unwrap_or("unknown");
    bucket.set(&format!("summary:{day}"), &summary)?;
    bucket.set("summary:latest", &summary)?;
    Ok(StatusCode::OK)
}

async fn list(_request: Request, _p: Params) -> Result<Json<Vec<Order>>, Error> {
    Ok(Json(
        Bucket::open_default()?.get("orders")?.unwrap_or_default(),
    ))
}

async fn summary(_request: Request, _p: Params) -> Result<Json<Summary>, Error> {
    Bucket::open_default()?
        .get("summary:latest")?
        .map(Json)
        .ok_or_else(|| Error::new(StatusCode::NOT_FOUND, "no summary yet"))
}

serve!(
    Router::new()
        .post("/events/order-placed", order_placed)
        .post("/events/nightly", nightly)
        .get("/orders", list)
        .get("/summary", summary)
);
