//! `wasi:keyvalue` (store, atomics, batch) for guests, over the host's
//! [`KvBackend`](crate::kv::KvBackend), confined to the calling service's
//! own namespace and buckets.

use std::sync::Arc;
use wasmtime::component::Resource;

use super::bindings::kv_store::{Error, KeyResponse};
use super::bindings::{atomics, batch, kv_store};
use super::kv_handles::{BucketHandle, CasHandle};
use super::state::HostState;
use crate::kv::{KvError, LIST_PAGE, Namespace};
use crate::limits::HostMemoryExceeded;
use crate::telemetry::metrics::KvOp;

/// Keys one batch call may name.
const MAX_BATCH_KEYS: usize = 1000;

/// Bytes a CAS handle holds for the guest.
fn cas_bytes(key: &str, seen: Option<&[u8]>) -> u64 {
    (key.len() + seen.map_or(0, <[u8]>::len)) as u64
}

/// What a guest reads when the host cannot hold more for it.
fn over_budget(error: HostMemoryExceeded) -> Error {
    Error::Other(error.to_string())
}

fn guest_error(error: KvError) -> Error {
    match error {
        KvError::QuotaExceeded(why) | KvError::Invalid(why) => Error::Other(why),
        KvError::Backend(detail) => {
            tracing::warn!(%detail, "key-value operation failed");
            Error::Other("the key-value store is unavailable; try again".into())
        }
    }
}

type KvCall<T> = wasmtime::Result<Result<T, Error>>;

impl HostState {
    /// The namespace of an open bucket, counting the operation on it.
    fn bucket(&self, bucket: &Resource<BucketHandle>, op: KvOp) -> wasmtime::Result<Namespace> {
        self.capabilities.kv_ops.count(op);
        Ok(self.table.get(bucket)?.namespace.clone())
    }
}

impl kv_store::Host for HostState {
    async fn open(&mut self, identifier: String) -> KvCall<Resource<BucketHandle>> {
        let caps = &self.capabilities;
        // `wasmtime serve -Skeyvalue` names its one store by the empty
        // identifier: it is the default bucket here.
        let identifier = if identifier.is_empty() {
            super::DEFAULT_BUCKET
        } else {
            identifier.as_str()
        };
        let Some(bucket) = caps.buckets.iter().find(|b| ***b == *identifier) else {
            return Ok(Err(Error::NoSuchStore));
        };
        let handle = BucketHandle {
            namespace: Namespace {
                tenant: Arc::clone(&caps.tenant),
                service: Arc::clone(&caps.service),
                bucket: Arc::clone(bucket),
            },
        };
        Ok(Ok(self.table.push(handle)?))
    }
}

impl kv_store::HostBucket for HostState {
    async fn get(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> KvCall<Option<Vec<u8>>> {
        let ns = self.bucket(&bucket, KvOp::Get)?;
        Ok(self
            .capabilities
            .kv
            .get(&ns, &key)
            .await
            .map_err(guest_error))
    }

    async fn set(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        value: Vec<u8>,
    ) -> KvCall<()> {
        let ns = self.bucket(&bucket, KvOp::Set)?;
        let caps = &self.capabilities;
        Ok(caps
            .kv
            .set(&ns, &key, &value, &caps.kv_quota)
            .await
            .map_err(guest_error))
    }

    async fn delete(&mut self, bucket: Resource<BucketHandle>, key: String) -> KvCall<()> {
        let ns = self.bucket(&bucket, KvOp::Delete)?;
        Ok(self
            .capabilities
            .kv
            .delete(&ns, &key)
            .await
            .map_err(guest_error))
    }

    async fn exists(&mut self, bucket: Resource<BucketHandle>, key: String) -> KvCall<bool> {
        let ns = self.bucket(&bucket, KvOp::Exists)?;
        Ok(self
            .capabilities
            .kv
            .exists(&ns, &key)
            .await
            .map_err(guest_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<BucketHandle>,
        cursor: Option<String>,
    ) -> KvCall<KeyResponse> {
        let ns = self.bucket(&bucket, KvOp::ListKeys)?;
        let keys = match self
            .capabilities
            .kv
            .list_keys(&ns, cursor.as_deref(), LIST_PAGE)
            .await
        {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(guest_error(e))),
        };
        let cursor = (keys.len() == LIST_PAGE as usize)
            .then(|| keys.last().cloned())
            .flatten();
        Ok(Ok(KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<BucketHandle>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
        delta: i64,
    ) -> KvCall<i64> {
        let ns = self.bucket(&bucket, KvOp::Increment)?;
        let caps = &self.capabilities;
        Ok(caps
            .kv
            .increment(&ns, &key, delta, &caps.kv_quota)
            .await
            .map_err(guest_error))
    }

    async fn swap(
        &mut self,
        cas: Resource<CasHandle>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let handle = self.table.delete(cas)?;
        let caps = &self.capabilities;
        caps.kv_ops.count(KvOp::Swap);
        let outcome = caps
            .kv
            .swap(
                &handle.namespace,
                &handle.key,
                handle.seen.as_deref(),
                &value,
                &caps.kv_quota,
            )
            .await;
        Ok(match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(now)) => {
                let CasHandle { namespace, key, .. } = handle;
                let held = match self
                    .limiter
                    .budget()
                    .charge(cas_bytes(&key, now.as_deref()))
                {
                    Ok(held) => held,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(over_budget(e)))),
                };
                let retry = self.table.push(CasHandle {
                    namespace,
                    key,
                    seen: now,
                    _held: held,
                })?;
                Err(atomics::CasError::CasFailed(retry))
            }
            Err(e) => Err(atomics::CasError::StoreError(guest_error(e))),
        })
    }
}

impl atomics::HostCas for HostState {
    async fn new(
        &mut self,
        bucket: Resource<BucketHandle>,
        key: String,
    ) -> KvCall<Resource<CasHandle>> {
        let namespace = self.bucket(&bucket, KvOp::Get)?;
        let seen = match self.capabilities.kv.get(&namespace, &key).await {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(guest_error(e))),
        };
        let held = match self
            .limiter
            .budget()
            .charge(cas_bytes(&key, seen.as_deref()))
        {
            Ok(held) => held,
            Err(e) => return Ok(Err(over_budget(e))),
        };
        let handle = CasHandle {
            namespace,
            key,
            seen,
            _held: held,
        };
        Ok(Ok(self.table.push(handle)?))
    }

    async fn current(&mut self, cas: Resource<CasHandle>) -> KvCall<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.seen.clone()))
    }

    async fn drop(&mut self, cas: Resource<CasHandle>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

fn too_many(keys: usize) -> Option<Error> {
    (keys > MAX_BATCH_KEYS).then(|| {
        Error::Other(format!(
            "a batch may name at most {MAX_BATCH_KEYS} keys, not {keys}"
        ))
    })
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> KvCall<Vec<Option<(String, Vec<u8>)>>> {
        let ns = self.bucket(&bucket, KvOp::GetMany)?;
        if let Some(error) = too_many(keys.len()) {
            return Ok(Err(error));
        }
        // The results are gathered whole before they are copied into the
        // guest: counted as they come, so a batch naming one large value a
        // thousand times stops at the guest's budget, not the host's memory.
        let mut held = match self.limiter.budget().charge(0) {
            Ok(held) => held,
            Err(e) => return Ok(Err(over_budget(e))),
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            match self.capabilities.kv.get(&ns, &key).await {
                Ok(value) => {
                    let bytes = cas_bytes(&key, value.as_deref());
                    if let Err(e) = held.grow(bytes) {
                        return Ok(Err(over_budget(e)));
                    }
                    out.push(value.map(|v| (key, v)));
                }
                Err(e) => return Ok(Err(guest_error(e))),
            }
        }
        Ok(Ok(out))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> KvCall<()> {
        let ns = self.bucket(&bucket, KvOp::SetMany)?;
        if let Some(error) = too_many(key_values.len()) {
            return Ok(Err(error));
        }
        let caps = &self.capabilities;
        for (key, value) in key_values {
            if let Err(e) = caps.kv.set(&ns, &key, &value, &caps.kv_quota).await {
                return Ok(Err(guest_error(e)));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<BucketHandle>,
        keys: Vec<String>,
    ) -> KvCall<()> {
        let ns = self.bucket(&bucket, KvOp::DeleteMany)?;
        if let Some(error) = too_many(keys.len()) {
            return Ok(Err(error));
        }
        for key in keys {
            if let Err(e) = self.capabilities.kv.delete(&ns, &key).await {
                return Ok(Err(guest_error(e)));
            }
        }
        Ok(Ok(()))
    }
}
