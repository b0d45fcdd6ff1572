-- What a fleet of hosts sharing one Postgres database needs; harmless on a
-- single host's SQLite.

-- Bumped by every write of a service; a write is made only over the
-- revision it read, so two hosts changing one service at once cannot lose
-- either change.
ALTER TABLE services ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;

-- Component bytes by digest, for every host to fetch and verify. A single
-- host keeps them in its data directory instead and leaves this empty.
CREATE TABLE blobs (
    digest  TEXT PRIMARY KEY,
    bytes   BYTEA NOT NULL
);
