-- `tandem-collector device check-patches`: append-only, polled by the running
-- collector like renew_requests. A request is answered by the first patch report of
-- the device received at or after it.
CREATE TABLE patch_check_requests (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
