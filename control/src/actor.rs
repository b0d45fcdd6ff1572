//! Who is making a change, for the deploy history. The admin API runs each
//! change inside [`acting_as`]; the control plane reads it where it records
//! the change, so no method needs an extra parameter for it.

use std::future::Future;

tokio::task_local! {
    static ACTOR: String;
}

/// Runs `work` as `actor` (`operator`, or `token {id}`).
pub async fn acting_as<F: Future>(actor: String, work: F) -> F::Output {
    ACTOR.scope(actor, work).await
}

/// The actor of the change in progress; empty outside [`acting_as`].
pub(crate) fn current() -> String {
    ACTOR.try_with(Clone::clone).unwrap_or_default()
}
