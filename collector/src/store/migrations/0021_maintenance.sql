-- Issue 15 (console): maintenance windows made at run time from the API or the
-- console, beside the [[maintenance]] of the rule files. One-off, in instants; each
-- belongs to one tenant (a device's window to the device's tenant), narrowed to a
-- site of it or a device when those are set. The alert engine re-reads them every
-- tick and treats them as it treats the file-defined ones.
CREATE TABLE maintenance_windows (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    site        TEXT,                 -- a site name of that tenant
    device_id   TEXT,                 -- a device of that tenant
    starts_ms   INTEGER NOT NULL,
    ends_ms     INTEGER NOT NULL,
    note        TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    CHECK (ends_ms > starts_ms)
);
CREATE INDEX maintenance_windows_by_tenant ON maintenance_windows (tenant_id, ends_ms);
