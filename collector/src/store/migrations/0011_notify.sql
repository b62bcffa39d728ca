-- 0011: notifications (issue #12). Self-contained: only new tables.
-- An incident is one firing episode of an alert instance (machine B of
-- shared/ALERTING.md). It is opened and resolved in the alert engine's transaction,
-- together with its feed event; the escalation steps it causes become outbox rows
-- with a unique idempotency key, and every delivery attempt is logged.

CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY,
    instance_id      INTEGER NOT NULL REFERENCES alert_instances(id),
    tenant           TEXT NOT NULL,
    rule             TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    dimension        TEXT NOT NULL,
    severity         TEXT NOT NULL,              -- warning | critical (the highest seen)
    value            REAL NOT NULL,
    state            TEXT NOT NULL,              -- open | acked | snoozed | resolved
    opened_ms        INTEGER NOT NULL,
    suppressed       INTEGER NOT NULL,           -- maintenance/silence: steps wait
    loop_start_ms    INTEGER NOT NULL,           -- steps' delays count from here
    loop_no          INTEGER NOT NULL DEFAULT 0,
    acked_ms         INTEGER,
    acked_by         TEXT,
    ack_note         TEXT,
    snoozed_until_ms INTEGER,
    resolved_ms      INTEGER,
    resolved_by      TEXT,                       -- NULL: the alert recovered
    resolve_sent     INTEGER NOT NULL DEFAULT 0  -- resolved notices expanded
);
CREATE INDEX incidents_active ON incidents (state, tenant);
CREATE INDEX incidents_by_instance ON incidents (instance_id, state);

-- The steps of an escalation loop that fired (one row each, so a step fires once
-- even across a crash: the row and its deliveries commit together).
CREATE TABLE incident_steps (
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    loop_no      INTEGER NOT NULL,
    step         INTEGER NOT NULL,
    fired_ms     INTEGER NOT NULL,
    PRIMARY KEY (incident_id, loop_no, step)
);

CREATE TABLE notify_outbox (
    id               INTEGER PRIMARY KEY,
    idem_key         TEXT NOT NULL UNIQUE,       -- incident:transition:channel:recipient
    incident_id      INTEGER NOT NULL,           -- 0 for `notify test`
    tenant           TEXT NOT NULL,
    transition       TEXT NOT NULL,              -- step<N>.<loop> | resolved | test
    channel          TEXT NOT NULL,              -- email | webhook
    recipient        TEXT NOT NULL,              -- address, or webhook name
    created_ms       INTEGER NOT NULL,
    status           TEXT NOT NULL,              -- pending | sent | dead
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    message_id       TEXT,                       -- email: the Message-ID it went out with
    sent_ms          INTEGER
);
CREATE INDEX notify_outbox_due ON notify_outbox (status, next_attempt_ms);
CREATE INDEX notify_outbox_by_incident ON notify_outbox (incident_id);

CREATE TABLE notify_log (
    id         INTEGER PRIMARY KEY,
    outbox_id  INTEGER NOT NULL REFERENCES notify_outbox(id),
    at_ms      INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    result     TEXT NOT NULL,                    -- sent | retry | dead
    answer     TEXT NOT NULL                     -- the remote's answer, or the error
);
CREATE INDEX notify_log_by_outbox ON notify_log (outbox_id);

-- The MSP feed (SSE): ids are the `Last-Event-ID` a client resumes from.
CREATE TABLE feed_events (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL,
    tenant       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    kind         TEXT NOT NULL,                  -- opened | escalated | acked | snoozed | reopened | resolved
    at_ms        INTEGER NOT NULL,
    body         TEXT NOT NULL                   -- JSON, the webhook schema's incident object
);
CREATE INDEX feed_events_by_tenant ON feed_events (tenant, id);

CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    sha256_hex  TEXT NOT NULL UNIQUE,            -- the token itself is shown once, never stored
    created_ms  INTEGER NOT NULL
);
