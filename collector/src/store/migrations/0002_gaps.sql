-- 0002: holes in a device's data that its agent reported (spool bound hit, refused
-- frames), so they show instead of hiding.

CREATE TABLE gaps (
    device_id         TEXT NOT NULL,
    seq               INTEGER NOT NULL,   -- the gap record's own seq (in the ledger)
    first_dropped_seq INTEGER NOT NULL,
    last_dropped_seq  INTEGER NOT NULL,
    oldest_ms         INTEGER NOT NULL,
    newest_ms         INTEGER NOT NULL,
    reason            TEXT NOT NULL,
    reported_ms       INTEGER NOT NULL,
    PRIMARY KEY (device_id, seq)
) WITHOUT ROWID;
