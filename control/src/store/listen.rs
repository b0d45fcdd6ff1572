//! Postgres `LISTEN` for other hosts' changes. It only wakes the sync
//! early: the sync polls the generation anyway, so a notification lost while
//! the connection was down costs at most one poll interval.

use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Waits between attempts to listen again after the connection dropped.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// Listens on `channel` for as long as the process runs, waking `changed`
/// for every notification and after every reconnect.
pub fn spawn(url: String, channel: &'static str, changed: Arc<Notify>) {
    tokio::spawn(async move {
        let mut reported = false;
        loop {
            match listen(&url, channel, &changed).await {
                Ok(()) => {}
                Err(error) if !reported => {
                    tracing::warn!(%error, "lost the state store's change notifications; polling until they are back");
                    reported = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(RECONNECT_AFTER).await;
        }
    });
}

async fn listen(url: &str, channel: &str, changed: &Notify) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(channel).await?;
    // Whatever changed while nobody listened is found by this wake-up.
    changed.notify_one();
    loop {
        listener.recv().await?;
        changed.notify_one();
    }
}
