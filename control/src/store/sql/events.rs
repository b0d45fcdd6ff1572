//! [`EventLog`] on the same SQL database as the rest of the state.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use crate::store::events::{
    ClaimedDelivery, DeadLetter, DeliveryKey, EventLog, NewDelivery, NewMessage, QuotaHit,
    SCHEDULE_TOPIC, Tick, TopicStats,
};
use crate::store::{StoreError, StoreResult};
use berth_runtime::quotas::EventQuota;

/// Each topic with its backlog, oldest waiting delivery and dead letters.
macro_rules! topics_select {
    () => {
        "SELECT t.tenant AS tenant, t.name AS name, t.last_delivery_ms AS last_delivery_ms, \
             (SELECT COUNT(*) FROM event_deliveries d WHERE d.tenant = t.tenant \
               AND d.topic = t.name AND d.state = 'pending') AS backlog, \
             (SELECT MIN(d.created_ms) FROM event_deliveries d WHERE d.tenant = t.tenant \
               AND d.topic = t.name AND d.state = 'pending') AS oldest_ms, \
             (SELECT COUNT(*) FROM event_deliveries d WHERE d.tenant = t.tenant \
               AND d.topic = t.name AND d.state = 'dead') AS dead \
             FROM event_topics t"
    };
}

/// Longest error text kept with a delivery.
const MAX_ERROR_CHARS: usize = 512;

fn count(row: &AnyRow, column: &str) -> StoreResult<u64> {
    Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or(0))
}

fn small(row: &AnyRow, column: &str) -> StoreResult<u32> {
    Ok(u32::try_from(row.try_get::<i64, _>(column)?).unwrap_or(u32::MAX))
}

fn message_from_row(row: &AnyRow) -> StoreResult<NewMessage> {
    Ok(NewMessage {
        tenant: row.try_get("tenant")?,
        topic: row.try_get("topic")?,
        id: row.try_get("id")?,
        event_type: row.try_get("type")?,
        source: row.try_get("source")?,
        time_ms: row.try_get("time_ms")?,
        content_type: row.try_get("content_type")?,
        partition_key: row.try_get("partition_key")?,
        traceparent: row.try_get("traceparent")?,
        payload: row.try_get("payload")?,
    })
}

impl SqlStore {
    /// Stores a message and its deliveries, inside the tenant's quota: a
    /// new topic is counted against its topics (the schedules' own is
    /// not), a stored message against its backlog and bytes.
    async fn insert_message(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        message: &NewMessage,
        deliveries: &[NewDelivery],
        quota: &EventQuota,
    ) -> StoreResult<i64> {
        let new_topic = sqlx::query(
            "INSERT INTO event_topics (tenant, name, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&message.tenant)
        .bind(&message.topic)
        .bind(message.time_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        if new_topic && message.topic != SCHEDULE_TOPIC {
            let topics = count(
                &sqlx::query(
                    "SELECT COUNT(*) AS n FROM event_topics WHERE tenant = $1 AND name <> $2",
                )
                .bind(&message.tenant)
                .bind(SCHEDULE_TOPIC)
                .fetch_one(&mut **tx)
                .await?,
                "n",
            )?;
            if topics > u64::from(quota.topics) {
                return Err(StoreError::EventQuota(QuotaHit::Topics(quota.topics)));
            }
        }
        let next: i64 = sqlx::query(
            "UPDATE event_topics SET next_seq = next_seq + 1 WHERE tenant = $1 AND name = $2 \
             RETURNING next_seq",
        )
        .bind(&message.tenant)
        .bind(&message.topic)
        .fetch_one(&mut **tx)
        .await?
        .try_get("next_seq")?;
        let seq = next - 1;
        if deliveries.is_empty() {
            return Ok(seq);
        }
        let size = i64::try_from(message.payload.len()).unwrap_or(i64::MAX);
        charge(tx, &message.tenant, size, quota).await?;
        sqlx::query(
            "INSERT INTO event_messages (tenant, topic, seq, id, type, source, time_ms, \
             content_type, partition_key, traceparent, payload, size) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&message.tenant)
        .bind(&message.topic)
        .bind(seq)
        .bind(&message.id)
        .bind(&message.event_type)
        .bind(&message.source)
        .bind(message.time_ms)
        .bind(&message.content_type)
        .bind(&message.partition_key)
        .bind(&message.traceparent)
        .bind(&message.payload)
        .bind(size)
        .execute(&mut **tx)
        .await?;
        let now = crate::store::now_millis();
        for delivery in deliveries {
            sqlx::query(
                "INSERT INTO event_deliveries (tenant, topic, seq, service, path, partition_key, \
                 state, max_attempts, backoff_ms, due_ms, created_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            )
            .bind(&message.tenant)
            .bind(&message.topic)
            .bind(seq)
            .bind(&delivery.service)
            .bind(&delivery.path)
            .bind(&message.partition_key)
            .bind(i64::from(delivery.max_attempts))
            .bind(delivery.backoff_ms)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        Ok(seq)
    }
}

/// Counts one stored message of `size` bytes against the tenant's quota;
/// refused when it would pass it.
async fn charge(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &str,
    size: i64,
    quota: &EventQuota,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO event_usage (tenant) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    let backlog = i64::try_from(quota.backlog).unwrap_or(i64::MAX);
    let bytes = i64::try_from(quota.storage_bytes).unwrap_or(i64::MAX);
    let charged = sqlx::query(
        "UPDATE event_usage SET messages = messages + 1, bytes = bytes + $1 \
         WHERE tenant = $2 AND messages < $3 AND bytes + $1 <= $4",
    )
    .bind(size)
    .bind(tenant)
    .bind(backlog)
    .bind(bytes)
    .execute(&mut **tx)
    .await?;
    if charged.rows_affected() == 1 {
        return Ok(());
    }
    let row = sqlx::query("SELECT messages FROM event_usage WHERE tenant = $1")
        .bind(tenant)
        .fetch_one(&mut **tx)
        .await?;
    Err(StoreError::EventQuota(
        if count(&row, "messages")? >= quota.backlog {
            QuotaHit::Backlog(quota.backlog)
        } else {
            QuotaHit::Storage(quota.storage_bytes)
        },
    ))
}

#[async_trait::async_trait]
impl EventLog for SqlStore {
    async fn publish(
        &self,
        message: &NewMessage,
        deliveries: &[NewDelivery],
        quota: &EventQuota,
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let seq = Self::insert_message(&mut tx, message, deliveries, quota).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn tenants_with_events(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT tenant FROM event_usage WHERE messages > 0")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("tenant")?)).collect()
    }

    async fn claim(
        &self,
        tenant: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        // The due deliveries are picked first and only they are joined to
        // their messages, so a large backlog's payloads are never read.
        let candidates = sqlx::query(
            "SELECT d.service AS service, d.path AS path, d.attempts AS attempts, \
             d.max_attempts AS max_attempts, d.backoff_ms AS backoff_ms, \
             m.tenant AS tenant, m.topic AS topic, m.seq AS seq, m.id AS id, m.type AS type, \
             m.source AS source, m.time_ms AS time_ms, m.content_type AS content_type, \
             m.partition_key AS partition_key, m.traceparent AS traceparent, m.payload AS payload \
             FROM (SELECT d.tenant, d.topic, d.seq, d.service, d.path, d.attempts, \
                     d.max_attempts, d.backoff_ms, d.due_ms \
                   FROM event_deliveries d \
                   WHERE d.tenant = $1 AND d.state = 'pending' AND d.due_ms <= $2 \
                     AND d.claimed_until < $2 \
                     AND (d.partition_key IS NULL OR NOT EXISTS ( \
                       SELECT 1 FROM event_deliveries e WHERE e.tenant = d.tenant \
                         AND e.topic = d.topic AND e.service = d.service AND e.path = d.path \
                         AND e.partition_key = d.partition_key AND e.seq < d.seq \
                         AND e.state = 'pending')) \
                   ORDER BY d.due_ms, d.seq LIMIT $3) d \
             JOIN event_messages m \
               ON m.tenant = d.tenant AND m.topic = d.topic AND m.seq = d.seq \
             ORDER BY d.due_ms, d.seq",
        )
        .bind(tenant)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(candidates.len());
        if candidates.is_empty() {
            return Ok(claimed);
        }
        // One commit for the round's claims.
        let mut tx = self.begin_repeatable_write().await?;
        for row in &candidates {
            let key = DeliveryKey {
                tenant: row.try_get("tenant")?,
                topic: row.try_get("topic")?,
                seq: row.try_get("seq")?,
                service: row.try_get("service")?,
                path: row.try_get("path")?,
            };
            // Only one host's UPDATE can see the claim still free.
            let won = sqlx::query(
                "UPDATE event_deliveries SET claimed_until = $1 \
                 WHERE tenant = $2 AND topic = $3 AND seq = $4 AND service = $5 AND path = $6 \
                 AND state = 'pending' AND claimed_until < $7",
            )
            .bind(lease_until_ms)
            .bind(&key.tenant)
            .bind(&key.topic)
            .bind(key.seq)
            .bind(&key.service)
            .bind(&key.path)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            if won.rows_affected() == 1 {
                claimed.push(ClaimedDelivery {
                    attempts: small(row, "attempts")?,
                    max_attempts: small(row, "max_attempts")?,
                    backoff_ms: row.try_get("backoff_ms")?,
                    lease_until_ms,
                    message: message_from_row(row)?,
                    key,
                });
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn acknowledge(&self, key: &DeliveryKey, now_ms: i64) -> StoreResult<()> {
        let mut tx = self.begin_repeatable_write().await?;
        // Rows are taken in the order a publish takes them (the topic, then
        // the tenant's usage), so the two never wait on each other in a
        // cycle on Postgres. The topic's last delivery is written at most
        // once a second, so acknowledgements rarely lock its row at all.
        sqlx::query(
            "UPDATE event_topics SET last_delivery_ms = $1 WHERE tenant = $2 AND name = $3 \
             AND (last_delivery_ms IS NULL OR last_delivery_ms < $1 - 1000)",
        )
        .bind(now_ms)
        .bind(&key.tenant)
        .bind(&key.topic)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM event_deliveries \
             WHERE tenant = $1 AND topic = $2 AND seq = $3 AND service = $4 AND path = $5",
        )
        .bind(&key.tenant)
        .bind(&key.topic)
        .bind(key.seq)
        .bind(&key.service)
        .bind(&key.path)
        .execute(&mut *tx)
        .await?;
        // The message goes with its last delivery, and stops counting.
        let gone = sqlx::query(
            "DELETE FROM event_messages WHERE tenant = $1 AND topic = $2 AND seq = $3 \
             AND NOT EXISTS (SELECT 1 FROM event_deliveries d \
               WHERE d.tenant = $1 AND d.topic = $2 AND d.seq = $3) RETURNING size",
        )
        .bind(&key.tenant)
        .bind(&key.topic)
        .bind(key.seq)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = gone {
            let size: i64 = row.try_get("size")?;
            sqlx::query(
                "UPDATE event_usage SET messages = messages - 1, bytes = bytes - $1 \
                 WHERE tenant = $2",
            )
            .bind(size)
            .bind(&key.tenant)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fail(
        &self,
        key: &DeliveryKey,
        lease_until_ms: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> StoreResult<()> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        let (state, due) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("dead", 0),
        };
        let mut tx = self.begin_repeatable_write().await?;
        sqlx::query(
            "UPDATE event_deliveries SET state = $1, attempts = attempts + 1, \
             due_ms = CASE WHEN $1 = 'pending' THEN $2 ELSE due_ms END, \
             claimed_until = 0, last_error = $3 \
             WHERE tenant = $4 AND topic = $5 AND seq = $6 AND service = $7 AND path = $8 \
             AND claimed_until = $9",
        )
        .bind(state)
        .bind(due)
        .bind(error)
        .bind(&key.tenant)
        .bind(&key.topic)
        .bind(key.seq)
        .bind(&key.service)
        .bind(&key.path)
        .bind(lease_until_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn extend_claim(&self, key: &DeliveryKey, from_ms: i64, to_ms: i64) -> StoreResult<bool> {
        let mut tx = self.begin_repeatable_write().await?;
        let done = sqlx::query(
            "UPDATE event_deliveries SET claimed_until = $1 \
             WHERE tenant = $2 AND topic = $3 AND seq = $4 AND service = $5 AND path = $6 \
             AND state = 'pending' AND claimed_until = $7",
        )
        .bind(to_ms)
        .bind(&key.tenant)
        .bind(&key.topic)
        .bind(key.seq)
        .bind(&key.service)
        .bind(&key.path)
        .bind(from_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_claims(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE event_deliveries SET claimed_until = 0 WHERE state = 'pending' AND claimed_until > 0",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn topics(&self, tenant: Option<&str>) -> StoreResult<Vec<TopicStats>> {
        let rows = match tenant {
            Some(tenant) => {
                sqlx::query(concat!(
                    topics_select!(),
                    " WHERE t.tenant = $1 ORDER BY t.tenant, t.name"
                ))
                .bind(tenant)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(topics_select!(), " ORDER BY t.tenant, t.name"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(TopicStats {
                    tenant: row.try_get("tenant")?,
                    name: row.try_get("name")?,
                    backlog: count(row, "backlog")?,
                    oldest_ms: row.try_get("oldest_ms")?,
                    dead_letters: count(row, "dead")?,
                    last_delivery_ms: row.try_get("last_delivery_ms")?,
                })
            })
            .collect()
    }

    async fn dead_letters(
        &self,
        tenant: &str,
        topic: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT m.id AS id, m.type AS type, m.time_ms AS time_ms, d.service AS service, \
             d.path AS path, d.attempts AS attempts, d.last_error AS last_error \
             FROM event_deliveries d JOIN event_messages m \
               ON m.tenant = d.tenant AND m.topic = d.topic AND m.seq = d.seq \
             WHERE d.tenant = $1 AND d.topic = $2 AND d.state = 'dead' \
             ORDER BY d.seq LIMIT $3",
        )
        .bind(tenant)
        .bind(topic)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    id: row.try_get("id")?,
                    event_type: row.try_get("type")?,
                    service: row.try_get("service")?,
                    path: row.try_get("path")?,
                    attempts: small(row, "attempts")?,
                    last_error: row.try_get("last_error")?,
                    published_ms: row.try_get("time_ms")?,
                })
            })
            .collect()
    }

    async fn redrive(&self, tenant: &str, topic: &str, now_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE event_deliveries SET state = 'pending', attempts = 0, due_ms = $1, \
             claimed_until = 0 WHERE tenant = $2 AND topic = $3 AND state = 'dead'",
        )
        .bind(now_ms)
        .bind(tenant)
        .bind(topic)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn record_tick(
        &self,
        tick: &Tick,
        fire: Option<(&NewMessage, &NewDelivery)>,
        quota: &EventQuota,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO schedule_ticks (tenant, service, schedule, tick_ms, fired) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&tick.tenant)
        .bind(&tick.service)
        .bind(&tick.schedule)
        .bind(tick.tick_ms)
        .bind(i64::from(fire.is_some()))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some((message, delivery)) = fire {
            debug_assert_eq!(message.topic, SCHEDULE_TOPIC);
            Self::insert_message(&mut tx, message, std::slice::from_ref(delivery), quota).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn last_tick(
        &self,
        tenant: &str,
        service: &str,
        schedule: &str,
    ) -> StoreResult<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(tick_ms) AS last FROM schedule_ticks \
             WHERE tenant = $1 AND service = $2 AND schedule = $3",
        )
        .bind(tenant)
        .bind(service)
        .bind(schedule)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("last")?)
    }

    async fn prune_ticks(&self, before_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM schedule_ticks WHERE tick_ms < $1 AND tick_ms < ( \
               SELECT MAX(s.tick_ms) FROM schedule_ticks s WHERE s.tenant = schedule_ticks.tenant \
               AND s.service = schedule_ticks.service AND s.schedule = schedule_ticks.schedule)",
        )
        .bind(before_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
