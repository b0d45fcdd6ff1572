//! The live routing table. Readers take a snapshot with one atomic load;
//! writers build a whole new table and swap it in, so a request in flight
//! finishes on the version it started on while new requests see the change.

use arc_swap::ArcSwap;
use std::sync::Arc;

use crate::router::RoutingTable;

#[derive(Default)]
pub struct Registry {
    table: ArcSwap<RoutingTable>,
}

impl Registry {
    /// The table as it is now; cheap, lock-free, and stable for the caller.
    pub fn snapshot(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    /// Replaces the whole table at once.
    pub fn replace(&self, table: RoutingTable) {
        self.table.store(Arc::new(table));
    }
}
