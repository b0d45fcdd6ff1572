//! `wasi:keyvalue@0.2.0-draft`, the version `wasmtime serve -Skeyvalue` and
//! wasmCloud provide, served by the 0.2.0-draft2 implementation over the
//! same buckets. Only three things differ: `list-keys` pages by a count of
//! keys already listed, and counters are unsigned.

use wasmtime::component::Resource;

use super::bindings::{atomics, batch, kv_store};
use super::bindings::{draft_atomics, draft_batch, draft_store};
use super::kv_handles::BucketHandle;
use super::state::HostState;
use crate::kv::LIST_PAGE;

type Draft<T> = wasmtime::Result<Result<T, draft_store::Error>>;

fn draft(error: kv_store::Error) -> draft_store::Error {
    match error {
        kv_store::Error::NoSuchStore => draft_store::Error::NoSuchStore,
        kv_store::Error::AccessDenied => draft_store::Error::AccessDenied,
        kv_store::Error::Other(why) => draft_store::Error::Other(why),
    }
}

fn converted<T>(result: wasmtime::Result<Result<T, kv_store::Error>>) -> Draft<T> {
    result.map(|r| r.map_err(draft))
}

/// Most keys a numeric cursor may skip: each page walks the keys before it.
const MAX_CURSOR: u64 = 100 * LIST_PAGE as u64;

impl draft_store::Host for HostState {
    async fn open(&mut self, identifier: String) -> Draft<Resource<BucketHandle>> {
        converted(kv_store::Host::open(self, identifier).await)
    }
}

impl draft_store::HostBucket for HostState {
    async fn get(&mut self, bucket: Resource<BucketHandle>, key: String) -> Draft<Option<Vec<u8>>> {
        converted(kv_store::HostBucket::get(self, bucket, key).await)
    }

    async fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Draft<()> {
        converted(kv_store::HostBucket::set(self, bucket, key, value).await)
    }

    async fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> Draft<()> {
        converted(kv_store::HostBucket::delete(self, bucket, key).await)
    }

    async fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> Draft<bool> {
        converted(kv_store::HostBucket::exists(self, bucket, key).await)
    }

    /// The cursor counts the keys listed before: this page starts after
    /// walking that many from the first.
    async fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<u64>,
    ) -> Draft<draft_store::KeyResponse> {
        let skip = cursor.unwrap_or(0);
        if skip > MAX_CURSOR {
            return Ok(Err(draft_store::Error::Other(format!(
                "a list cursor may be at most {MAX_CURSOR}; use wasi:keyvalue@0.2.0-draft2 to list larger buckets"
            ))));
        }
        let mut after: Option<String> = None;
        let mut walked = 0u64;
        loop {
            let handle = Resource::new_borrow(bucket.rep());
            let page = match kv_store::HostBucket::list_keys(self, handle, after.clone()).await? {
                Ok(page) => page,
                Err(e) => return Ok(Err(draft(e))),
            };
            let count = page.keys.len() as u64;
            if walked + count > skip || page.cursor.is_none() {
                let start = usize::try_from(skip - walked.min(skip)).unwrap_or(usize::MAX);
                let keys: Vec<String> = page.keys.into_iter().skip(start).collect();
                let listed = walked + count;
                let cursor = page.cursor.map(|_| listed);
                return Ok(Ok(draft_store::KeyResponse { keys, cursor }));
            }
            walked += count;
            after = page.cursor;
        }
    }

    async fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        kv_store::HostBucket::drop(self, bucket).await
    }
}

impl draft_atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        delta: u64,
    ) -> Draft<u64> {
        let Ok(delta) = i64::try_from(delta) else {
            return Ok(Err(draft_store::Error::Other(
                "delta is larger than a counter holds".into(),
            )));
        };
        Ok(
            match atomics::Host::increment(self, bucket, key, delta).await? {
                Ok(value) => u64::try_from(value).map_err(|_| {
                    draft_store::Error::Other(
                        "the counter is negative; read it as 0.2.0-draft2".into(),
                    )
                }),
                Err(e) => Err(draft(e)),
            },
        )
    }
}

impl draft_batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Draft<Vec<Option<(String, Vec<u8>)>>> {
        converted(batch::Host::get_many(self, bucket, keys).await)
    }

    async fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Draft<()> {
        converted(batch::Host::set_many(self, bucket, key_values).await)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> Draft<()> {
        converted(batch::Host::delete_many(self, bucket, keys).await)
    }
}
