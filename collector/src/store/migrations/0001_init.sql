-- 0001: tenants, devices, metric series and samples, the batch ledger, patch status.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_ms  INTEGER NOT NULL
);

CREATE TABLE devices (
    id              TEXT PRIMARY KEY,          -- the device id from the certificate URI SAN
    tenant_id       INTEGER NOT NULL REFERENCES tenants(id),
    hostname        TEXT NOT NULL DEFAULT '',
    os_family       TEXT NOT NULL DEFAULT '',
    os_version      TEXT NOT NULL DEFAULT '',
    agent_version   TEXT NOT NULL DEFAULT '',
    boot_time_unix  INTEGER NOT NULL DEFAULT 0,
    first_seen_ms   INTEGER NOT NULL,
    last_seen_ms    INTEGER NOT NULL,
    acked_seq       INTEGER NOT NULL DEFAULT 0 -- highest sequence number durably stored
) WITHOUT ROWID;

CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL REFERENCES devices(id),
    name        TEXT NOT NULL,
    dimension   TEXT NOT NULL,
    UNIQUE (device_id, name, dimension)
);

CREATE TABLE samples (
    series_id   INTEGER NOT NULL,
    ts_ms       INTEGER NOT NULL,
    value       REAL NOT NULL,
    PRIMARY KEY (series_id, ts_ms)
) WITHOUT ROWID;

-- One row per stored batch or patch report: the (device, seq) ledger that makes a
-- replayed batch a no-op.
CREATE TABLE batches (
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    n_values    INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;

CREATE TABLE patch_reports (
    device_id           TEXT NOT NULL,
    seq                 INTEGER NOT NULL,
    time_ms             INTEGER NOT NULL,
    source              TEXT NOT NULL,
    error               TEXT NOT NULL,
    reboot_required     INTEGER NOT NULL,
    reboot_since_ms     INTEGER NOT NULL,
    last_install_ms     INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;

CREATE TABLE pending_updates (
    device_id       TEXT NOT NULL,
    report_seq      INTEGER NOT NULL,
    name            TEXT NOT NULL,
    current_version TEXT NOT NULL,
    new_version     TEXT NOT NULL,
    classification  TEXT NOT NULL,
    advisory_id     TEXT NOT NULL,
    first_seen_ms   INTEGER NOT NULL
);
CREATE INDEX pending_updates_by_report ON pending_updates (device_id, report_seq);
