-- Schema version 4: the event log loses its `received_at` index.
--
-- `received_at` is stamped by the single writer once per batch, so it never decreases along
-- `seq`; retention walks the log from its oldest `seq` instead (see
-- `events::delete_chunk_older_than`). The index cost every append a B-tree insert and was
-- used by nothing else (issue 3's storage benchmark).
DROP INDEX IF EXISTS idx_events_received_at;
