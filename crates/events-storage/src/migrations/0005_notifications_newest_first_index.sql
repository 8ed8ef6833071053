-- Schema version 5: the `created_at` index of notifications also orders by id.
--
-- Every list is `ORDER BY created_at DESC, id DESC` (id breaks ties of the same
-- millisecond so pages never overlap). The old index ordered `created_at` only, so SQLite
-- copied every row of a page into a temporary B-tree to sort the ties ("USE TEMP B-TREE FOR
-- RIGHT PART OF ORDER BY"), which showed in the API benchmark's profile. With `id DESC` in
-- the index a page is a plain walk. Same name, same leading column: every query that used
-- the old index can use this one.
DROP INDEX IF EXISTS idx_notifications_created_at;
CREATE INDEX idx_notifications_created_at ON notifications (created_at DESC, id DESC);
