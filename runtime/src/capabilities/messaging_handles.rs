//! What a guest holds of `wasi:messaging`: a client and messages being
//! built, as resources. Apart from `messaging.rs`, which implements the
//! interfaces, so that the generated bindings can name these types without
//! the two importing each other.

use crate::limits::HostCharge;

/// A connection to the tenant's topics: there is one broker, the host.
pub struct MessagingClient;

/// A message being built, counted against the instance's memory budget
/// while the guest holds it.
pub struct OutgoingMessage {
    pub(super) data: Vec<u8>,
    pub(super) content_type: Option<String>,
    pub(super) metadata: Vec<(String, String)>,
    pub(super) held: HostCharge,
}
