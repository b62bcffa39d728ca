-- Issue 15 (console): users, sessions, scoped API tokens, the audit log.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,                -- argon2id, PHC string
    role           TEXT NOT NULL CHECK (role IN ('msp-admin', 'msp-tech', 'tenant-admin', 'tenant-viewer')),
    tenant_id      INTEGER REFERENCES tenants(id), -- set exactly for the tenant roles
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    CHECK ((role IN ('tenant-admin', 'tenant-viewer')) = (tenant_id IS NOT NULL))
);

CREATE TABLE sessions (
    id_sha256    TEXT PRIMARY KEY,               -- the cookie value is never stored
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf         TEXT NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);

-- Tokens of `token create-api` (issue 12) have no role: they read the feed only.
ALTER TABLE api_tokens ADD COLUMN role TEXT;
ALTER TABLE api_tokens ADD COLUMN tenant_id INTEGER REFERENCES tenants(id);
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;
ALTER TABLE api_tokens ADD COLUMN revoked_ms INTEGER;

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,                    -- user name, token:<name>, or cli:<os user>
    tenant_id  INTEGER,                          -- the tenant the change concerns; NULL: MSP-wide
    action     TEXT NOT NULL,                    -- e.g. alert.ack, user.add, token.create
    target     TEXT NOT NULL,
    detail     TEXT NOT NULL                     -- JSON
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, id);
