-- Who made each change: `operator`, or the tenant token's id; empty for
-- changes recorded before this column.
ALTER TABLE deploy_events ADD COLUMN actor TEXT NOT NULL DEFAULT '';
