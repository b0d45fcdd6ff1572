-- Events: the topics of each tenant, the messages published to them, one
-- delivery row per message and subscription, and the ticks each schedule
-- has fired. A delivery is claimed by a host with a lease
-- (`claimed_until`), taken with a conditional UPDATE that only one host
-- can win, on SQLite and Postgres alike.

CREATE TABLE event_topics (
    tenant            TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    -- The next message's place in the topic: per-key order follows it.
    next_seq          BIGINT NOT NULL DEFAULT 1,
    last_delivery_ms  BIGINT,
    created_ms        BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE event_messages (
    tenant         TEXT NOT NULL,
    topic          TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    id             TEXT NOT NULL,
    type           TEXT NOT NULL,
    source         TEXT NOT NULL,
    time_ms        BIGINT NOT NULL,
    content_type   TEXT,
    partition_key  TEXT,
    traceparent    TEXT,
    payload        BYTEA NOT NULL,
    size           BIGINT NOT NULL,
    PRIMARY KEY (tenant, topic, seq),
    FOREIGN KEY (tenant, topic) REFERENCES event_topics(tenant, name) ON DELETE CASCADE
);

CREATE TABLE event_deliveries (
    tenant         TEXT NOT NULL,
    topic          TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    service        TEXT NOT NULL,
    path           TEXT NOT NULL,
    partition_key  TEXT,
    -- `pending` or `dead`; an acknowledged delivery is deleted.
    state          TEXT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    max_attempts   BIGINT NOT NULL,
    backoff_ms     BIGINT NOT NULL,
    due_ms         BIGINT NOT NULL,
    claimed_until  BIGINT NOT NULL DEFAULT 0,
    last_error     TEXT NOT NULL DEFAULT '',
    created_ms     BIGINT NOT NULL,
    PRIMARY KEY (tenant, topic, seq, service, path),
    FOREIGN KEY (tenant, topic, seq) REFERENCES event_messages(tenant, topic, seq) ON DELETE CASCADE
);

CREATE INDEX event_deliveries_due ON event_deliveries (state, tenant, due_ms);
CREATE INDEX event_deliveries_key ON event_deliveries (tenant, topic, service, path, partition_key, seq);

-- What each tenant's stored events take, kept with every publish and
-- acknowledgement, so a quota check is one conditional UPDATE.
CREATE TABLE event_usage (
    tenant    TEXT PRIMARY KEY REFERENCES tenants(name) ON DELETE CASCADE,
    messages  BIGINT NOT NULL DEFAULT 0,
    bytes     BIGINT NOT NULL DEFAULT 0
);

-- One row per tick fired (or skipped) by any host: the primary key is what
-- makes a tick fire once across a fleet and a restart.
CREATE TABLE schedule_ticks (
    tenant    TEXT NOT NULL,
    service   TEXT NOT NULL,
    schedule  TEXT NOT NULL,
    tick_ms   BIGINT NOT NULL,
    fired     BIGINT NOT NULL,
    PRIMARY KEY (tenant, service, schedule, tick_ms)
);
