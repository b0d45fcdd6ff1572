//! The event log's claims over a real SQLite store, two "hosts" sharing
//! it: a claim only one can win, a renewal that keeps a slow delivery's
//! claim past its first lease, a renewal that fails once the claim lapsed
//! and was taken, and a failure recorded only under the claim it names.

use anyhow::Result;
use berth_control::store::Store;
use berth_control::store::events::{EventLog, NewDelivery, NewMessage};
use berth_control::store::sql::SqlStore;
use berth_runtime::quotas::EventQuota;

fn message(id: &str) -> NewMessage {
    NewMessage {
        tenant: "acme".into(),
        topic: "work".into(),
        id: id.into(),
        event_type: "work".into(),
        source: "/test".into(),
        time_ms: 0,
        content_type: None,
        partition_key: None,
        traceparent: None,
        payload: b"{}".to_vec(),
    }
}

fn delivery() -> NewDelivery {
    NewDelivery {
        service: "sink".into(),
        path: "/on/work".into(),
        max_attempts: 3,
        backoff_ms: 10,
    }
}

#[tokio::test]
async fn a_renewed_claim_holds_and_a_lapsed_one_is_taken_over() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = SqlStore::open_sqlite(&dir.path().join("berth.db")).await?;
    store.ensure_tenant("acme").await?;
    // Times are milliseconds after the publish (`t0`), given explicitly,
    // as each host's loop gives its own clock.
    let t0 = berth_control::store::now_millis() + 1;
    store
        .publish(&message("e1"), &[delivery()], &EventQuota::default())
        .await?;

    // Host A claims at t0+1000 until t0+16000; host B, at the same moment,
    // finds nothing to claim.
    let a = store.claim("acme", t0 + 1_000, t0 + 16_000, 8).await?;
    assert_eq!(a.len(), 1);
    assert!(
        store
            .claim("acme", t0 + 1_000, t0 + 16_000, 8)
            .await?
            .is_empty()
    );

    // A renews at t0+6000 until t0+21000: at t0+17000, past the first lease,
    // the claim still holds.
    let key = a[0].key.clone();
    assert!(store.extend_claim(&key, t0 + 16_000, t0 + 21_000).await?);
    assert!(
        store
            .claim("acme", t0 + 17_000, t0 + 32_000, 8)
            .await?
            .is_empty()
    );
    // A renewal naming a claim that is not the current one fails.
    assert!(!store.extend_claim(&key, t0 + 16_000, t0 + 40_000).await?);

    // A stops renewing (it died): at t0+22000 B takes the delivery over, and
    // A's late renewal and late failure change nothing.
    let b = store.claim("acme", t0 + 22_000, t0 + 37_000, 8).await?;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].message.id, "e1");
    assert!(!store.extend_claim(&key, t0 + 21_000, t0 + 36_000).await?);
    store.fail(&key, t0 + 21_000, "late", Some(t0)).await?;
    assert!(
        store
            .claim("acme", t0 + 23_000, t0 + 38_000, 8)
            .await?
            .is_empty(),
        "B's claim holds after A's late failure"
    );

    // B's failure, under its own claim, makes the delivery due again.
    store
        .fail(&key, t0 + 37_000, "answered 500", Some(t0 + 24_000))
        .await?;
    let again = store.claim("acme", t0 + 24_000, t0 + 39_000, 8).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    Ok(())
}
