-- 0013 (issue 17): compressed chunks. Values no longer live one row each:
-- `head` holds one row per agent batch until compaction moves it into `chunks`
-- (one pco-compressed blob per device and hour) and `rollups` (5-minute and 1-hour
-- aggregates). The old row-per-value table is kept under a new name and drained into
-- the head in bounded steps while the collector serves (store::compact::migrate_step);
-- renaming is O(1), so this migration is instant whatever the table's size.

ALTER TABLE samples RENAME TO samples_old;

CREATE TABLE head (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    min_ts      INTEGER NOT NULL,   -- earliest sample time in the payload (agent clock, ms)
    max_ts      INTEGER NOT NULL,   -- latest
    n_values    INTEGER NOT NULL,
    payload     BLOB NOT NULL       -- store::chunk::encode_head
);
CREATE INDEX head_by_device ON head (device_id, max_ts);

CREATE TABLE chunks (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,   -- hour start
    n_values    INTEGER NOT NULL,
    blob        BLOB NOT NULL,      -- store::chunk::encode_chunk
    UNIQUE (device_id, start_ms)
);
CREATE INDEX chunks_by_start ON chunks (start_ms);

CREATE TABLE rollups (
    id          INTEGER PRIMARY KEY,
    tier        INTEGER NOT NULL,   -- bucket width in ms: 300000 or 3600000
    device_id   TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,   -- 5 min tier: hour start; 1 h tier: day start (UTC)
    n_buckets   INTEGER NOT NULL,
    blob        BLOB NOT NULL,      -- store::chunk::encode_rollups
    UNIQUE (tier, device_id, start_ms)
);
CREATE INDEX rollups_by_start ON rollups (tier, start_ms);

-- For people and tests reading the database with SQL: every stored value as one row,
-- head, chunks and the not yet migrated old rows together. It needs the scalar
-- functions of store::register_sql_functions on the connection; the collector itself
-- reads through store::query, never through this view.
CREATE VIEW samples (series_id, ts_ms, value) AS
    SELECT series_id, ts_ms, value FROM samples_old
    UNION
    SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2
      FROM head h, json_each(tandem_head_json(h.payload)) j
    UNION
    SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2
      FROM chunks c, json_each(tandem_chunk_json(c.blob)) j;
