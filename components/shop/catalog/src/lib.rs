//! The shop's catalog: products in the service's key-value store.
//!
//! - `GET /products`: every product, by id;
//! - `GET /products/{id}`;
//! - `POST /products` `{"name", "price_cents", "stock"?}`: 201 with the product;
//! - `PUT /products/{id}`: replaces a product;
//! - `DELETE /products/{id}`.

use berth_sdk::kv::Bucket;
use berth_sdk::{Error, Json, Params, Request, Router, StatusCode, read_json, serve};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "product:";

#[derive(Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
    stock: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductFields {
    name: String,
    price_cents: u64,
    #[serde(default)]
    stock: u32,
}

impl ProductFields {
    fn validate(&self, id: u64) -> Result<Product, Error> {
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(Error::bad_request("`name` must be 1 to 100 characters"));
        }
        if self.price_cents == 0 || self.price_cents > 100_000_000 {
            return Err(Error::bad_request(
                "`price_cents` must be from 1 to 100000000",
            ));
        }
        Ok(Product {
            id,
            name,
            price_cents: self.price_cents,
            stock: self.stock,
        })
    }
}

fn key(id: u64) -> String {
    format!("{PREFIX}{id}")
}

async fn list(_request: Request, _params: Params) -> Result<Json<Vec<Product>>, Error> {
    let bucket = Bucket::open_default()?;
    let keys: Vec<String> = bucket
        .keys()?
        .into_iter()
        .filter(|k| k.starts_with(PREFIX))
        .collect();
    let mut products: Vec<Product> = bucket.get_many(&keys)?.into_iter().flatten().collect();
    products.sort_by_key(|p| p.id);
    Ok(Json(products))
}

async fn get(_request: Request, params: Params) -> Result<Json<Product>, Error> {
    let id: u64 = params.parse("id")?;
    Bucket::open_default()?
        .get(&key(id))?
        .map(Json)
        .ok_or_else(|| Error::not_found(format!("no product {id}")))
}

async fn create(
    mut request: Request,
    _params: Params,
) -> Result<(StatusCode, Json<Product>), Error> {
    let fields: ProductFields = read_json(&mut request).await?;
    // Validated before an id is taken, so a bad request uses none up.
    fields.validate(0)?;
    let bucket = Bucket::open_default()?;
    let id = u64::try_from(bucket.increment("next-id", 1)?).unwrap_or(0);
    let product = fields.validate(id)?;
    bucket.set(&key(id), &product)?;
    berth_sdk::info!("product {id} created: {}", product.name);
    Ok((StatusCode::CREATED, Json(product)))
}

async fn replace(mut request: Request, params: Params) -> Result<Json<Product>, Error> {
    let id: u64 = params.parse("id")?;
    let fields: ProductFields = read_json(&mut request).await?;
    let product = fields.validate(id)?;
    let bucket = Bucket::open_default()?;
    if !bucket.exists(&key(id))? {
        return Err(Error::not_found(format!("no product {id}")));
    }
    bucket.set(&key(id), &product)?;
    Ok(Json(product))
}

async fn remove(_request: Request, params: Params) -> Result<StatusCode, Error> {
    let id: u64 = params.parse("id")?;
    let bucket = Bucket::open_default()?;
    if !bucket.exists(&key(id))? {
        return Err(Error::not_found(format!("no product {id}")));
    }
    bucket.delete(&key(id))?;
    Ok(StatusCode::NO_CONTENT)
}

serve!(
    Router::new()
        .get("/products", list)
        .post("/products", create)
        .get("/products/{id}", get)
        .put("/products/{id}", replace)
        .delete("/products/{id}", remove)
);
