//! The shop's public API. It owns no data: it calls `catalog` and `cart`
//! (in-process, as `http://{service}.internal`) and composes their answers.
//!
//! - `GET /`: the shop's name (config `shop_name`) and its endpoints;
//! - `GET /products`: the catalog;
//! - `GET /carts/{user}`: the cart with each line's product name, unit price
//!   and line total, and the cart's total; asks `cart` and `catalog` at once;
//! - `POST /carts/{user}/items` `{"product_id", "quantity"}`: checks the
//!   product exists in the catalog, then adds it to the cart.

use berth_sdk::{
    Body, Error, Json, Params, Request, Response, Router, StatusCode, call, join, read_json, serve,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

#[derive(Deserialize)]
struct Cart {
    user: String,
    items: Vec<Line>,
}

#[derive(Deserialize, Serialize)]
struct Line {
    product_id: u64,
    quantity: u32,
}

#[derive(Serialize)]
struct CartView {
    user: String,
    items: Vec<LineView>,
    total_cents: u64,
}

#[derive(Serialize)]
struct LineView {
    product_id: u64,
    name: Option<String>,
    quantity: u32,
    unit_price_cents: Option<u64>,
    line_total_cents: u64,
}

/// A downstream answer: its JSON on success, its error passed on otherwise.
async fn json<T: serde::de::DeserializeOwned>(
    service: &str,
    response: Result<Response, Error>,
) -> Result<T, Error> {
    let mut response = response?;
    let status = response.status();
    if !status.is_success() {
        let detail: Value = response.body_mut().json().await.unwrap_or(Value::Null);
        let message = detail["error"].as_str().unwrap_or("failed").to_string();
        return Err(Error::new(status, format!("{service}: {message}")));
    }
    response.body_mut().json::<T>().await.map_err(|e| {
        Error::new(
            StatusCode::BAD_GATEWAY,
            format!("{service} answered with unexpected JSON: {e}"),
        )
    })
}

fn get(path: &str) -> Result<Request, Error> {
    Ok(berth_sdk::http::Request::get(path).body(Body::empty())?)
}

async fn index(_request: Request, _params: Params) -> Result<Json<Value>, Error> {
    let name = berth_sdk::config::get("shop_name")?.unwrap_or_else(|| "Shop".into());
    Ok(Json(serde_json::json!({
        "shop": name,
        "endpoints": ["GET /products", "GET /carts/{user}", "POST /carts/{user}/items"],
    })))
}

async fn products(_request: Request, _params: Params) -> Result<Json<Value>, Error> {
    let products = call("catalog", get("/products")?).await;
    Ok(Json(json("catalog", products).await?))
}

/// A path parameter as one segment of a path again: the router hands it
/// over percent-decoded, and the cart service judges what it holds.
fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn cart(_request: Request, params: Params) -> Result<Json<CartView>, Error> {
    let user = segment(params.get("user").unwrap_or_default());
    let (cart, catalog) = join(
        call("cart", get(&format!("/carts/{user}"))?),
        call("catalog", get("/products")?),
    )
    .await;
    let cart: Cart = json("cart", cart).await?;
    let catalog: Vec<Product> = json("catalog", catalog).await?;
    let items: Vec<LineView> = cart
        .items
        .into_iter()
        .map(|line| {
            let product = catalog.iter().find(|p| p.id == line.product_id);
            let unit = product.map(|p| p.price_cents);
            LineView {
                product_id: line.product_id,
                name: product.map(|p| p.name.clone()),
                quantity: line.quantity,
                unit_price_cents: unit,
                line_total_cents: unit.unwrap_or(0) * u64::from(line.quantity),
            }
        })
        .collect();
    let total_cents = items.iter().map(|l| l.line_total_cents).sum();
    Ok(Json(CartView {
        user: cart.user,
        items,
        total_cents,
    }))
}

async fn add(mut request: Request, params: Params) -> Result<Response, Error> {
    let user = segment(params.get("user").unwrap_or_default());
    let line: Value = read_json(&mut request).await?;
    let Some(product_id) = line["product_id"].as_u64() else {
        return Err(Error::bad_request("`product_id` must be a product's id"));
    };
    let product = call("catalog", get(&format!("/products/{product_id}"))?).await?;
    if product.status() == StatusCode::NOT_FOUND {
        return Err(Error::bad_request(format!("no product {product_id}")));
    }
    json::<Value>("catalog", Ok(product)).await?;
    let forward = berth_sdk::http::Request::post(format!("/carts/{user}/items"))
        .header("content-type", "application/json")
        .body(Body::from(line.to_string()))?;
    call("cart", forward).await
}

serve!(
    Router::new()
        .get("/", index)
        .get("/products", products)
        .get("/carts/{user}", cart)
        .post("/carts/{user}/items", add)
);
