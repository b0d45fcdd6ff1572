-- What happened to each service: uploads, activations, splits, rollbacks.
-- The dashboard's deploy history; `at` is in milliseconds so events of one
-- second keep their order.

CREATE TABLE deploy_events (
    tenant   TEXT NOT NULL,
    service  TEXT NOT NULL,
    at       BIGINT NOT NULL,
    action   TEXT NOT NULL,
    detail   TEXT NOT NULL
);

CREATE INDEX deploy_events_service ON deploy_events (tenant, service, at);
