-- Security posture, backup freshness and custom-check states per device (issue #14):
-- the latest PostureReport of each device, replaced whole by every newer one.
-- Self-contained: touches no table of earlier migrations.

CREATE TABLE posture_reports (
    device_id    TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL,
    time_ms      INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL
) WITHOUT ROWID;

-- One row per check of the latest report; state is 'pass', 'fail' or 'unknown'.
CREATE TABLE posture_checks (
    device_id   TEXT NOT NULL,
    check_name  TEXT NOT NULL,
    state       TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (device_id, check_name)
) WITHOUT ROWID;

-- last_success_ms 0 = unknown (error says why). Stale means older than
-- max_age_secs, the window the device was configured with.
CREATE TABLE backup_states (
    device_id        TEXT NOT NULL,
    name             TEXT NOT NULL,
    source           TEXT NOT NULL,
    last_success_ms  INTEGER NOT NULL,
    max_age_secs     INTEGER NOT NULL,
    error            TEXT NOT NULL,
    evidence         TEXT NOT NULL,
    PRIMARY KEY (device_id, name)
) WITHOUT ROWID;

-- status: 0 ok, 1 warning, 2 critical, 3 unknown.
CREATE TABLE custom_check_states (
    device_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    status     INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    PRIMARY KEY (device_id, name)
) WITHOUT ROWID;
