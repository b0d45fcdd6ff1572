//! What a guest holds of `wasi:keyvalue`: open buckets and compare-and-swap
//! handles, as resources. Apart from `keyvalue.rs`, which implements the
//! interfaces, so that the generated bindings can name these types without
//! the two importing each other.

use crate::kv::Namespace;
use crate::limits::HostCharge;

/// An open bucket, as the guest holds it.
pub struct BucketHandle {
    pub(super) namespace: Namespace,
}

/// A compare-and-swap in progress: the value the key held when it began,
/// counted against the instance's memory budget while the guest keeps it.
pub struct CasHandle {
    pub(super) namespace: Namespace,
    pub(super) key: String,
    pub(super) seen: Option<Vec<u8>>,
    pub(super) _held: HostCharge,
}
