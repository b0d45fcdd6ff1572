-- The claim query reads a tenant's pending deliveries in due order and
-- stops at its limit: with this index it walks them in that order and
-- never reads (or sorts) the rest of a large backlog.
CREATE INDEX event_deliveries_claim ON event_deliveries (tenant, state, due_ms, seq);
