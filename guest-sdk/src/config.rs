//! The service's configuration through `wasi:config/store`: values set in
//! `berth.toml` (`[service.config]`) or the admin API, secrets included.
//!
//! ```no_run
//! # fn run() -> Result<(), berth_sdk::Error> {
//! let greeting = berth_sdk::config::get("greeting")?.unwrap_or_else(|| "Hello".into());
//! let page_size: u32 = berth_sdk::config::parse("page_size")?.unwrap_or(20);
//! let api_key: String = berth_sdk::config::require("api_key")?;
//! # Ok(()) }
//! ```

use std::str::FromStr;

use crate::Error;
use crate::bindings::wasi::config0_2_0_rc_1::store;

fn config_error(error: store::Error) -> Error {
    match error {
        store::Error::Upstream(why) | store::Error::Io(why) => {
            Error::internal(format!("configuration unavailable: {why}"))
        }
    }
}

/// The value of `key`, if it is set.
pub fn get(key: &str) -> Result<Option<String>, Error> {
    store::get(key).map_err(config_error)
}

/// Every key and value.
pub fn all() -> Result<Vec<(String, String)>, Error> {
    store::get_all().map_err(config_error)
}

/// The value of `key` parsed as `T`; a value that does not parse is an
/// error that names the key (and not the value, which may be a secret).
pub fn parse<T: FromStr>(key: &str) -> Result<Option<T>, Error> {
    get(key)?
        .map(|value| {
            value.parse::<T>().map_err(|_| {
                Error::internal(format!(
                    "configuration `{key}` is not a valid {}",
                    std::any::type_name::<T>()
                ))
            })
        })
        .transpose()
}

/// Like [`parse`], but an unset key is an error too.
pub fn require<T: FromStr>(key: &str) -> Result<T, Error> {
    parse(key)?.ok_or_else(|| Error::internal(format!("configuration `{key}` is not set")))
}
