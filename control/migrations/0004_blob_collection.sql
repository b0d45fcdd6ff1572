-- When each stored blob was last put, so that collecting unreferenced blobs
-- never removes one an upload on another host has just put and is about to
-- name in a version.
ALTER TABLE blobs ADD COLUMN put_at BIGINT NOT NULL DEFAULT 0;
