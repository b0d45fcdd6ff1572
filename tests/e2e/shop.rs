//! The shop example (`components/shop`): three services in `berth.toml`
//! calling each other in-process, driven through the gateway's public API,
//! and a fourth, `orders`, that only reacts to events: the cart's
//! `order.placed` at checkout, and a schedule's ticks.

use anyhow::{Context, Result};
use berth_e2e::{BerthProcess, client, component, component_p3};
use serde_json::{Value, json};

/// The three shop services, each component found by `built` (the 0.2
/// builds, or the same sources built for WASI 0.3 with berth-sdk's `p3`).
fn shop_config(built: fn(&str) -> Result<std::path::PathBuf>) -> Result<String> {
    let entry = |name: &str, crate_name: &str, route: &str, extra: &str| -> Result<String> {
        Ok(format!(
            "[[service]]\nname = \"{name}\"\ncomponent = \"{}\"\nroute = \"{route}\"\n{extra}\n",
            built(crate_name)?.display()
        ))
    };
    Ok([
        entry("catalog", "shop-catalog", "/catalog", "")?,
        entry("cart", "shop-cart", "/cart", "")?,
        entry(
            "gateway",
            "shop-gateway",
            "/shop",
            "[service.config]\nshop_name = \"Test Shop\"",
        )?,
        // The nightly summary, every second here.
        entry(
            "orders",
            "shop-orders",
            "/orders",
            "[[service.subscription]]\ntopic = \"orders\"\npath = \"/events/order-placed\"\n\
             type = \"order.placed\"\n[[service.schedule]]\ncron = \"* * * * * *\"\n\
             path = \"/events/nightly\"",
        )?,
    ]
    .concat())
}

async fn call(
    host: &BerthProcess,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut request = client().request(method, host.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

#[tokio::test]
async fn the_shop_composes_catalog_and_cart_through_the_gateway() -> Result<()> {
    shop_serves(&BerthProcess::serving(&shop_config(component)?)?).await
}

#[tokio::test]
async fn the_shop_built_for_wasi_p3_serves_the_same() -> Result<()> {
    shop_serves(&BerthProcess::serving(&shop_config(component_p3)?)?).await
}

async fn shop_serves(host: &BerthProcess) -> Result<()> {
    let post = reqwest::Method::POST;

    let (status, index) = call(host, reqwest::Method::GET, "/shop/", None).await?;
    assert_eq!(status, 200);
    assert_eq!(index["shop"], "Test Shop");

    // The catalog validates what it stores.
    for bad in [
        json!({"name": "", "price_cents": 100}),
        json!({"name": "Mug", "price_cents": 0}),
        json!({"name": "Mug"}),
        json!({"name": "Mug", "price_cents": 100, "colour": "red"}),
    ] {
        let (status, body) =
            call(host, post.clone(), "/catalog/products", Some(bad.clone())).await?;
        assert_eq!(status, 400, "{bad} → {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, mug) = call(
        host,
        post.clone(),
        "/catalog/products",
        Some(json!({"name": "Mug", "price_cents": 1200, "stock": 5})),
    )
    .await?;
    assert_eq!(status, 201, "{mug}");
    let (_, tea) = call(
        host,
        post.clone(),
        "/catalog/products",
        Some(json!({"name": "Tea", "price_cents": 450})),
    )
    .await?;
    let (mug_id, tea_id) = (
        mug["id"].as_u64().context("mug id")?,
        tea["id"].as_u64().context("tea id")?,
    );
    assert_ne!(mug_id, tea_id);

    let (status, products) = call(host, reqwest::Method::GET, "/shop/products", None).await?;
    assert_eq!(status, 200);
    assert_eq!(products.as_array().map(Vec::len), Some(2), "{products}");

    // Twenty shoppers add a mug to one cart at once: every unit counts.
    let mut adds = Vec::new();
    for _ in 0..20 {
        let url = host.url("/shop/carts/ada/items");
        adds.push(tokio::spawn(async move {
            let response = client()
                .post(url)
                .json(&json!({"product_id": mug_id, "quantity": 1}))
                .send()
                .await?;
            anyhow::ensure!(response.status() == 200, "status {}", response.status());
            anyhow::Ok(())
        }));
    }
    for add in adds {
        add.await??;
    }
    let (status, _) = call(
        host,
        post.clone(),
        "/shop/carts/ada/items",
        Some(json!({"product_id": tea_id, "quantity": 3})),
    )
    .await?;
    assert_eq!(status, 200);
    let (status, body) = call(
        host,
        post.clone(),
        "/shop/carts/ada/items",
        Some(json!({"product_id": 999, "quantity": 1})),
    )
    .await?;
    assert_eq!(status, 400, "{body}");

    let (status, cart) = call(host, reqwest::Method::GET, "/shop/carts/ada", None).await?;
    assert_eq!(status, 200, "{cart}");
    assert_eq!(cart["user"], "ada");
    assert_eq!(cart["items"][0]["name"], "Mug");
    assert_eq!(cart["items"][0]["quantity"], 20);
    assert_eq!(cart["items"][0]["line_total_cents"], 20 * 1200);
    assert_eq!(cart["items"][1]["name"], "Tea");
    assert_eq!(cart["total_cents"], 20 * 1200 + 3 * 450);

    // A product deleted from the catalog shows as unknown in the cart.
    let (status, _) = call(
        host,
        reqwest::Method::DELETE,
        &format!("/catalog/products/{tea_id}"),
        None,
    )
    .await?;
    assert_eq!(status, 204);
    let (_, cart) = call(host, reqwest::Method::GET, "/shop/carts/ada", None).await?;
    assert_eq!(cart["items"][1]["name"], Value::Null);
    assert_eq!(cart["total_cents"], 20 * 1200);

    // Another user's cart is empty; a bad user id is refused by the cart
    // service and the gateway passes the refusal on.
    let (_, empty) = call(host, reqwest::Method::GET, "/shop/carts/bob", None).await?;
    assert_eq!(empty["items"], json!([]));
    let (status, _) = call(host, reqwest::Method::GET, "/shop/carts/b%20ob", None).await?;
    assert_eq!(status, 400);
    checkout_reaches_orders(host, mug_id).await
}

/// Checkout publishes the cart as an event; `orders` records it once, even
/// when it is delivered again, and the schedule's summary counts it.
async fn checkout_reaches_orders(host: &BerthProcess, mug_id: u64) -> Result<()> {
    let post = reqwest::Method::POST;
    let (status, body) = call(host, post.clone(), "/cart/carts/bob/checkout", None).await?;
    assert_eq!(status, 400, "an empty cart is not an order: {body}");
    let (status, placed) = call(host, post.clone(), "/cart/carts/ada/checkout", None).await?;
    assert_eq!(status, 200, "{placed}");
    let event_id = placed["order_event"]
        .as_str()
        .context("no event id")?
        .to_string();
    let (_, cart) = call(host, reqwest::Method::GET, "/cart/carts/ada", None).await?;
    assert_eq!(cart["items"], json!([]), "checked out");

    let orders = until(host, "/orders/orders", |o| {
        o.as_array().is_some_and(|a| !a.is_empty())
    })
    .await?;
    assert_eq!(orders[0]["event_id"], event_id.as_str());
    assert_eq!(orders[0]["user"], "ada");
    assert_eq!(orders[0]["items"][0]["product_id"], mug_id);

    // The same event again (at-least-once delivery): recorded once.
    let admin = host.operator()?;
    let again = admin
        .send(
            admin
                .request(post.clone(), "/v1/tenants/default/topics/orders/events")
                .header("ce-type", "order.placed")
                .header("ce-id", &event_id)
                .header("content-type", "application/json")
                .body(json!({"user": "ada", "items": []}).to_string()),
        )
        .await?;
    assert_eq!(again.status, 202, "{again:?}");
    let summary = until(host, "/orders/summary", |s| s["orders"] == 1).await?;
    assert_eq!(summary["units_by_product"][mug_id.to_string()], 20);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, orders) = call(host, reqwest::Method::GET, "/orders/orders", None).await?;
    assert_eq!(orders.as_array().map(Vec::len), Some(1), "{orders}");
    Ok(())
}

/// Waits (bounded) until `GET path` answers 200 with a body `done` accepts.
async fn until(host: &BerthProcess, path: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let started = std::time::Instant::now();
    loop {
        let (status, body) = call(host, reqwest::Method::GET, path, None).await?;
        if status == 200 && done(&body) {
            return Ok(body);
        }
        anyhow::ensure!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{path} never got there: {status} {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
