//! The shop's carts: one per user, in the service's key-value store, changed
//! atomically so that concurrent additions all count.
//!
//! - `GET /carts/{user}`: the cart (empty when there is none);
//! - `POST /carts/{user}/items` `{"product_id", "quantity"}`: adds (or, with
//!   a negative quantity, removes) units of a product; returns the cart;
//! - `DELETE /carts/{user}`: empties the cart;
//! - `POST /carts/{user}/checkout`: publishes the cart as an
//!   `order.placed` event to the topic `orders` (keyed by user, so one
//!   user's orders stay in order), empties it, and answers 202 with the
//!   event's id. The `orders` service takes it from there.

use berth_sdk::kv::Bucket;
use berth_sdk::{Body, Error, Json, Params, Request, Router, StatusCode, call, read_json, serve};
use serde::{Deserialize, Serialize};

/// Most units of one product in a cart.
const MAX_QUANTITY: i64 = 1000;

#[derive(Serialize, Deserialize, Default)]
struct Cart {
    user: String,
    items: Vec<Line>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct Line {
    product_id: u64,
    quantity: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    product_id: u64,
    quantity: i64,
}

fn user(params: &Params) -> Result<String, Error> {
    let user = params.get("user").unwrap_or_default();
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(user.to_string())
    } else {
        Err(Error::bad_request(
            "a user id is 1 to 64 letters, digits, `-` and `_`",
        ))
    }
}

fn key(user: &str) -> String {
    format!("cart:{user}")
}

async fn get(_request: Request, params: Params) -> Result<Json<Cart>, Error> {
    let user = user(&params)?;
    let cart = Bucket::open_default()?.get(&key(&user))?;
    Ok(Json(cart.unwrap_or(Cart {
        user,
        items: Vec::new(),
    })))
}

async fn add(mut request: Request, params: Params) -> Result<Json<Cart>, Error> {
    let user = user(&params)?;
    let change: Change = read_json(&mut request).await?;
    if change.quantity == 0 || change.quantity.abs() > MAX_QUANTITY {
        return Err(Error::bad_request(format!(
            "`quantity` must be from -{MAX_QUANTITY} to {MAX_QUANTITY}, not 0"
        )));
    }
    let cart = Bucket::open_default()?.update(&key(&user), |cart: Option<Cart>| {
        let mut cart = cart.unwrap_or(Cart {
            user: user.clone(),
            items: Vec::new(),
        });
        let current = cart
            .items
            .iter()
            .find(|l| l.product_id == change.product_id)
            .map_or(0, |l| i64::from(l.quantity));
        let quantity = current + change.quantity;
        if quantity > MAX_QUANTITY {
            return Err(Error::bad_request(format!(
                "a cart holds at most {MAX_QUANTITY} of one product"
            )));
        }
        cart.items.retain(|l| l.product_id != change.product_id);
        if quantity > 0 {
            cart.items.push(Line {
                product_id: change.product_id,
                quantity: u32::try_from(quantity).unwrap_or(0),
            });
            cart.items.sort_by_key(|l| l.product_id);
        }
        Ok(cart)
    })?;
    Ok(Json(cart))
}

async fn clear(_request: Request, params: Params) -> Result<StatusCode, Error> {
    let user = user(&params)?;
    Bucket::open_default()?.delete(&key(&user))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn checkout(_request: Request, params: Params) -> Result<Json<serde_json::Value>, Error> {
    let user = user(&params)?;
    let bucket = Bucket::open_default()?;
    let cart: Option<Cart> = bucket.get(&key(&user))?;
    let Some(cart) = cart.filter(|c| !c.items.is_empty()) else {
        return Err(Error::bad_request("the cart is empty"));
    };
    let order = serde_json::to_vec(&cart).map_err(|e| Error::internal(e.to_string()))?;
    // `events` is not a service: the host stores the event for the topic's
    // subscribers and answers 202 with its id.
    let publish = berth_sdk::http::Request::post("/topics/orders")
        .header("ce-type", "order.placed")
        .header("content-type", "application/json")
        .header("partition-key", user.as_str())
        .body(Body::from(order))?;
    let mut published = call("events", publish).await?;
    let answer = published.body_mut().str_contents().await?.to_string();
    if published.status() != StatusCode::ACCEPTED {
        return Err(Error::new(
            StatusCode::BAD_GATEWAY,
            format!("the order could not be placed: {answer}"),
        ));
    }
    bucket.delete(&key(&user))?;
    let event: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| Error::internal(e.to_string()))?;
    Ok(Json(
        serde_json::json!({"user": user, "order_event": event["id"]}),
    ))
}

serve!(
    Router::new()
        .get("/carts/{user}", get)
        .post("/carts/{user}/items", add)
        .delete("/carts/{user}", clear)
        .post("/carts/{user}/checkout", checkout)
);
