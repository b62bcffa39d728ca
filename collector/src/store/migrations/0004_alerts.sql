-- 0002: alert engine state. Self-contained: only new tables, no changes to 0001's.
-- One row per alert instance (rule × device × dimension) that ever left OK, holding
-- everything the state machine needs to resume after a restart, and the history of
-- every transition and flag change.

CREATE TABLE alert_instances (
    id                INTEGER PRIMARY KEY,
    rule              TEXT NOT NULL,
    device_id         TEXT NOT NULL,            -- '' for a group (tenant) alert
    dimension         TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    state             TEXT NOT NULL,            -- ok | pending | firing | recovering
    severity          TEXT,                     -- warning | critical, NULL when ok
    since_ms          INTEGER NOT NULL,
    breach_start_ms   INTEGER NOT NULL,
    breach_samples    INTEGER NOT NULL,
    recover_start_ms  INTEGER NOT NULL,
    last_sample_ms    INTEGER NOT NULL,         -- device clock
    last_arrival_ms   INTEGER NOT NULL,         -- collector clock: when that sample arrived
    last_value        REAL NOT NULL,
    stale             INTEGER NOT NULL,
    flapping          INTEGER NOT NULL,
    suppressed        INTEGER NOT NULL,
    changes           TEXT NOT NULL,            -- JSON array of recent state-change times (flap window)
    acked_ms          INTEGER,                  -- set by `alerts ack`, cleared when the alert returns to ok
    acked_by          TEXT,
    updated_ms        INTEGER NOT NULL,
    UNIQUE (rule, device_id, dimension)
);
CREATE INDEX alert_instances_by_state ON alert_instances (state, tenant);
CREATE INDEX alert_instances_by_device ON alert_instances (device_id);

CREATE TABLE alert_history (
    id            INTEGER PRIMARY KEY,
    instance_id   INTEGER NOT NULL REFERENCES alert_instances(id),
    at_ms         INTEGER NOT NULL,
    event         TEXT NOT NULL,                -- transition | severity | stale | fresh | flapping | stable | suppressed | unsuppressed | ack
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    severity      TEXT,
    value         REAL,
    suppressed    INTEGER NOT NULL              -- a notifier sends nothing for a suppressed row
);
CREATE INDEX alert_history_by_instance ON alert_history (instance_id, at_ms);
