-- Schema version 6: notifications lose their single-column `domain` index.
--
-- `idx_notifications_group (domain, group_field, group_value)` leads with `domain`, so it
-- answers every `domain = ?` filter and count the single-column index answered (SQLite
-- uses the leftmost columns of an index on their own). The duplicate cost every created
-- notification one more B-tree insert and every small commit one more WAL page
-- (issue 8's profile: index maintenance is a third of the writer thread).
DROP INDEX IF EXISTS idx_notifications_domain;
