-- 0005: device tags and silences. Self-contained: only new tables, so it can be
-- renumbered when merged with other migrations.

-- Free-form labels an operator puts on devices (`device tag`); rule, maintenance and
-- silence scopes match them. Tag text is checked by the CLI (lowercase letters,
-- digits and - _ . : =, 1-63 characters).
CREATE TABLE device_tags (
    device_id   TEXT NOT NULL REFERENCES devices(id),
    tag         TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (device_id, tag)
) WITHOUT ROWID;
CREATE INDEX device_tags_by_tag ON device_tags (tag);

-- Silences made with `alerts silence`: from starts_ms (inclusive) to ends_ms
-- (exclusive), or recurring within that range; every matcher that is not NULL must
-- match. A removed silence keeps
-- its row (removed_ms, removed_by) so the record of who silenced what stays.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    tenant      TEXT,
    site        TEXT,
    tag         TEXT,
    device_id   TEXT,
    rule        TEXT,
    -- Recurring silences: an RFC 5545 RRULE in the zone tz, DTSTART = starts_ms,
    -- each occurrence lasting duration_ms; ends_ms bounds the whole series.
    rrule       TEXT,
    tz          TEXT,
    duration_ms INTEGER,
    comment     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    removed_ms  INTEGER,
    removed_by  TEXT,
    CHECK (ends_ms > starts_ms),
    CHECK (coalesce(tenant, site, tag, device_id, rule) IS NOT NULL),
    CHECK ((rrule IS NULL) = (duration_ms IS NULL))
);
CREATE INDEX silences_by_end ON silences (ends_ms);
