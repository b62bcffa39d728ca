-- Issue 16, item 8: `device remove`. A removed device keeps its row as a tombstone
-- (revoked, so its certificates stay refused after any restart, and its id is never
-- reused); `--purge` also deletes everything it sent.
ALTER TABLE devices ADD COLUMN removed_ms INTEGER;
