-- The console's fleet page and device list at 10,000 devices (issue 15):
-- counting a tenant's devices, and a device's open incidents, by index instead of
-- scanning every device or every incident. Neither index changes on ingest
-- (last_seen_ms is not in them).
CREATE INDEX devices_by_tenant ON devices (tenant_id);
CREATE INDEX incidents_by_device ON incidents (device_id, state);
