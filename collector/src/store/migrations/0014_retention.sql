-- 0014 (issue 17): retention of the tables besides the metric tiers. Expiry finds
-- old rows by time through these indexes, a bounded batch per transaction
-- (store::compact::expire_other), instead of scanning whole tables.

CREATE INDEX patch_reports_by_time ON patch_reports (time_ms);
CREATE INDEX inventory_changes_by_time ON inventory_changes (time_ms);
CREATE INDEX alert_history_by_time ON alert_history (at_ms);
CREATE INDEX notify_log_by_time ON notify_log (at_ms);
