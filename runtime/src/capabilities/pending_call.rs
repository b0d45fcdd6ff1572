//! A service call on its way, as the guest holds it (`berth:service/call`'s
//! `pending-call` resource), in the host's own types: `service_call.rs`
//! turns them into the generated WIT types when the guest takes the answer.
//! Keeping them here, apart from the trait implementations, lets the
//! generated bindings name this type without the bindings and their users
//! importing each other.

use wasmtime_wasi::p2::Pollable;

use crate::limits::HostCharge;

/// A callee's whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    pub status: u16,
    /// Names and values in order; a name may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Why a call has no response for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The request could not be formed.
    InvalidRequest(String),
    /// The caller's request has made as many outgoing requests as it may.
    TooManyRequests(u32),
    /// The response failed, or does not fit the caller's budget.
    ResponseFailed(String),
    /// The response was taken by an earlier `get`.
    Consumed,
}

pub type Outcome = Result<CallResponse, CallFailure>;

/// A call's outcome, and the charge to the caller's budget for the answer
/// the host holds until the caller takes it.
pub type Answer = (Outcome, Option<HostCharge>);

/// A call the guest started, until it takes the response.
pub enum PendingCall {
    Waiting(CallTask),
    Done(Answer),
    Taken,
}

/// The task running a call; a guest that drops the call before its answer
/// (or ends) stops it.
pub struct CallTask(pub tokio::task::JoinHandle<Answer>);

impl Drop for CallTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait::async_trait]
impl Pollable for PendingCall {
    async fn ready(&mut self) {
        if let Self::Waiting(task) = self {
            let answer = (&mut task.0).await.unwrap_or_else(|_| {
                (
                    Err(CallFailure::ResponseFailed("the call ended early".into())),
                    None,
                )
            });
            *self = Self::Done(answer);
        }
    }
}
