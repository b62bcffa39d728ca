-- 0002: sites, enrollment tokens, issued certificates, revocations, renew requests.
-- Self-contained: it only adds tables and nullable columns, so it can be renumbered
-- when merged with other migrations.

CREATE TABLE sites (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    UNIQUE (tenant_id, name)
);

-- Set at enrollment from the token; NULL for devices provisioned by hand or with no site.
ALTER TABLE devices ADD COLUMN site_id INTEGER REFERENCES sites(id);
ALTER TABLE devices ADD COLUMN enrolled_ms INTEGER;
-- When an operator revoked the device; NULL while it is in good standing.
ALTER TABLE devices ADD COLUMN revoked_ms INTEGER;

-- Enrollment tokens. Only the SHA-256 of the secret is stored.
CREATE TABLE enroll_tokens (
    id                  TEXT PRIMARY KEY,      -- 16 hex chars, shown by `token list`
    secret_sha256       BLOB NOT NULL,
    tenant_id           INTEGER NOT NULL REFERENCES tenants(id),
    site_id             INTEGER REFERENCES sites(id),
    replace_device_id   TEXT,                  -- enroll as this existing device (operator's choice)
    created_ms          INTEGER NOT NULL,
    expires_ms          INTEGER NOT NULL,
    max_uses            INTEGER NOT NULL,
    uses                INTEGER NOT NULL DEFAULT 0,
    revoked_ms          INTEGER
);

-- Every certificate the collector issued to a device (enrollment, renewal, by hand).
CREATE TABLE certificates (
    serial          TEXT PRIMARY KEY,          -- lowercase hex of the serial number
    device_id       TEXT NOT NULL,
    not_after_ms    INTEGER NOT NULL,
    issued_ms       INTEGER NOT NULL,
    how             TEXT NOT NULL              -- 'enroll', 'renew', 'manual'
);
CREATE INDEX certificates_by_device ON certificates (device_id);

-- Append-only: the running collector polls rows above the last id it saw.
-- serial NULL = every certificate of the device.
CREATE TABLE revocations (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    serial      TEXT,
    created_ms  INTEGER NOT NULL
);

-- Append-only: `device renew` asks connected agents to renew now.
CREATE TABLE renew_requests (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
