//! Key-value data through `wasi:keyvalue`: buckets of keys, values as JSON
//! (through serde) or bytes, and atomic counters and updates.
//!
//! Every service has a `default` bucket; others are declared in its spec
//! (`buckets = ["sessions"]` in `berth.toml`, or `buckets` in the admin
//! API). A service sees only its own data.
//!
//! ```no_run
//! use berth_sdk::kv::Bucket;
//! # fn run() -> Result<(), berth_sdk::Error> {
//! let bucket = Bucket::open_default()?;
//! bucket.set("greeting", &"hello")?;
//! let greeting: Option<String> = bucket.get("greeting")?;
//! let visits = bucket.increment("visits", 1)?;
//! let total: u64 = bucket.update("total", |old: Option<u64>| Ok(old.unwrap_or(0) + 5))?;
//! # Ok(()) }
//! ```

use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// How often [`Bucket::update`] retries when other requests keep changing
/// the key under it.
const UPDATE_ATTEMPTS: u32 = 100;

/// An open bucket of the service's key-value data.
pub struct Bucket {
    name: String,
    inner: store::Bucket,
}

fn kv_error(bucket: &str, error: store::Error) -> Error {
    match error {
        store::Error::NoSuchStore => Error::internal(format!(
            "no key-value bucket `{bucket}`: declare it in the service's buckets"
        )),
        store::Error::AccessDenied => {
            Error::internal(format!("access to key-value bucket `{bucket}` denied"))
        }
        store::Error::Other(why) => Error::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("key-value bucket `{bucket}`: {why}"),
        ),
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::internal(format!(
            "the value of `{key}` is not the JSON expected: {e}"
        ))
    })
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::internal(format!("cannot encode a value: {e}")))
}

/// Waits a random time that grows with the attempt (up to about 3 ms), so
/// that writers racing for one key stop colliding in lockstep.
#[cfg(feature = "p2")]
fn back_off(attempt: u32) {
    use wasip2::{clocks::monotonic_clock, random::random};
    let ceiling_us = 50u64 << attempt.min(6);
    let wait_us = random::get_random_u64() % ceiling_us;
    monotonic_clock::subscribe_duration(wait_us * 1000).block();
}

/// The same for WASI 0.3, through the standard library (its randomness and
/// sleep are WASI's).
#[cfg(all(feature = "p3", not(feature = "p2")))]
fn back_off(attempt: u32) {
    use std::hash::{BuildHasher, Hasher};
    let ceiling_us = 50u64 << attempt.min(6);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let wait_us = hasher.finish() % ceiling_us;
    std::thread::sleep(std::time::Duration::from_micros(wait_us));
}

impl Bucket {
    /// Opens the bucket `name`.
    pub fn open(name: &str) -> Result<Self, Error> {
        let inner = store::open(name).map_err(|e| kv_error(name, e))?;
        Ok(Self {
            name: name.to_string(),
            inner,
        })
    }

    /// Opens the `default` bucket, which every service has.
    pub fn open_default() -> Result<Self, Error> {
        Self::open("default")
    }

    /// The value of `key` as JSON, decoded into `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get_bytes(key)?.map(|b| decode(key, &b)).transpose()
    }

    /// Stores `value` as JSON under `key`.
    pub fn set<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        self.set_bytes(key, &encode(value)?)
    }

    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.inner.get(key).map_err(|e| kv_error(&self.name, e))
    }

    pub fn set_bytes(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.inner
            .set(key, value)
            .map_err(|e| kv_error(&self.name, e))
    }

    /// Removes `key`; removing a missing key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        self.inner.delete(key).map_err(|e| kv_error(&self.name, e))
    }

    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        self.inner.exists(key).map_err(|e| kv_error(&self.name, e))
    }

    /// Every key of the bucket, in order.
    pub fn keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .inner
                .list_keys(cursor.as_deref())
                .map_err(|e| kv_error(&self.name, e))?;
            keys.extend(page.keys);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// The values of several keys at once, as JSON.
    pub fn get_many<T: DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<Option<T>>, Error> {
        let found = batch::get_many(&self.inner, keys).map_err(|e| kv_error(&self.name, e))?;
        found
            .into_iter()
            .map(|entry| entry.map(|(key, bytes)| decode(&key, &bytes)).transpose())
            .collect()
    }

    /// Adds `delta` to the counter at `key` (0 when absent) and returns the
    /// new value, atomically. Counters are stored as decimal text, so
    /// [`get::<i64>`](Self::get) reads them too.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        atomics::increment(&self.inner, key, delta).map_err(|e| kv_error(&self.name, e))
    }

    /// Replaces the value at `key` with `f(old)`, atomically: when another
    /// request changed it in between, `f` runs again on the newer value.
    pub fn update<T, F>(&self, key: &str, mut f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<T, Error>,
    {
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                back_off(attempt);
            }
            // A fresh read each attempt: the window between reading and
            // swapping stays as short as `f`, whatever the wait before it.
            let cas = atomics::Cas::new(&self.inner, key).map_err(|e| kv_error(&self.name, e))?;
            let old = cas
                .current()
                .map_err(|e| kv_error(&self.name, e))?
                .map(|b| decode(key, &b))
                .transpose()?;
            let new = f(old)?;
            match atomics::swap(cas, &encode(&new)?) {
                Ok(()) => return Ok(new),
                Err(atomics::CasError::CasFailed(_)) => continue,
                Err(atomics::CasError::StoreError(e)) => return Err(kv_error(&self.name, e)),
            }
        }
        Err(Error::new(
            StatusCode::CONFLICT,
            format!("`{key}` kept changing; gave up after {UPDATE_ATTEMPTS} attempts"),
        ))
    }
}
