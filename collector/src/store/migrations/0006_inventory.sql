-- The latest inventory of each device (what it is: OS, hardware, installed
-- software), and the history of software changes between inventories.
-- Self-contained: touches no table of earlier migrations.

CREATE TABLE inventories (
    device_id        TEXT PRIMARY KEY,
    seq              INTEGER NOT NULL,
    time_ms          INTEGER NOT NULL,
    received_ms      INTEGER NOT NULL,
    os_name          TEXT NOT NULL,
    os_version       TEXT NOT NULL,
    os_build         TEXT NOT NULL,
    kernel           TEXT NOT NULL,
    arch             TEXT NOT NULL,
    hw_vendor        TEXT NOT NULL,
    hw_model         TEXT NOT NULL,
    hw_serial        TEXT NOT NULL,
    cpu_model        TEXT NOT NULL,
    cpu_cores        INTEGER NOT NULL,
    memory_bytes     INTEGER NOT NULL,
    software_source  TEXT NOT NULL,
    software_error   TEXT NOT NULL,
    software_count   INTEGER NOT NULL
) WITHOUT ROWID;

-- The software of the latest inventory that listed software (an inventory whose
-- software_error is set leaves this list as it was).
CREATE TABLE inventory_software (
    device_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    publisher   TEXT NOT NULL
);
CREATE INDEX inventory_software_by_device ON inventory_software (device_id, name);

-- What changed between two stored software lists: 'added' or 'removed' (an upgrade
-- is a removal of the old version and an addition of the new one).
CREATE TABLE inventory_changes (
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,
    change      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL
);
CREATE INDEX inventory_changes_by_device ON inventory_changes (device_id, time_ms);
