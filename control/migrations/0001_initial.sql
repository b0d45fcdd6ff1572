-- Berth's control-plane state. Written in the SQL subset SQLite and Postgres
-- share, so one schema serves both backends.

CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    limits      TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL
);

CREATE TABLE tenant_domains (
    domain  TEXT PRIMARY KEY,
    tenant  TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    description TEXT NOT NULL DEFAULT '',
    hash        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE services (
    tenant      TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    route       TEXT,
    deployment  TEXT,
    previous    TEXT,
    settings    TEXT NOT NULL DEFAULT '{}',
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE UNIQUE INDEX services_route ON services (tenant, route) WHERE route IS NOT NULL;

CREATE TABLE versions (
    tenant      TEXT NOT NULL,
    service     TEXT NOT NULL,
    label       TEXT NOT NULL,
    digest      TEXT NOT NULL,
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, service, label),
    FOREIGN KEY (tenant, service) REFERENCES services(tenant, name) ON DELETE CASCADE
);

-- Bumped by every change, so a host can tell whether its view is current.
CREATE TABLE generation (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    value  BIGINT NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);
