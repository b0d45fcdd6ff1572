use berth_sdk::{Error, Json, Params, Request, Router, read_json, serve};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct NewItem {
    name: String,
    quantity: u32,
}

#[derive(Serialize)]
struct Item {
    id: u64,
    name: String,
    quantity: u32,
}

async fn get_item(_request: Request, params: Params) -> Result<Json<Item>, Error> {
    let id: u64 = params.parse("id")?;
    Ok(Json(Item { id, name: "widget".into(), quantity: 1 }))
}

async fn create_item(mut request: Request, _params: Params) -> Result<Json<Item>, Error> {
    let new: NewItem = read_json(&mut request).await?;
    if new.quantity == 0 {
        return Err(Error::bad_request("`quantity` must be at least 1"));
    }
    Ok(Json(Item { id: 1, name: new.name, quantity: new.quantity }))
}

serve!(
    Router::new()
        .get("/items/{id}", get_item)
        .post("/items", create_item)
);
# fn main() {}
