-- Schema version 7: the `agent_status` CHECK of notifications is written as `=` terms.
--
-- `agent_status IN (4 values)` made SQLite build an ephemeral index of the four values for
-- every INSERT and every UPDATE of agent_status (an IN list of more than two constants
-- compiles to `OpenEphemeral`; EXPLAIN shows it), about 5 % of the writer thread in the e2e
-- profile (docs/benchmarks.md, session 12). The `OR` of `=` terms accepts exactly the same
-- values and compiles to four comparisons.
--
-- SQLite cannot change a CHECK in place, so the table is rebuilt the documented way
-- (lang_altertable.html §7): new table, copy, drop, rename, indexes again. The migration
-- runner turns foreign keys off around every migration (otherwise the DROP would run
-- `ON DELETE SET NULL` on telegram_outbox) and runs `PRAGMA foreign_key_check` before the
-- commit. Ids are copied, and the AUTOINCREMENT high-water mark is carried over, so no id
-- is ever handed out twice.

CREATE TABLE notifications_rebuilt (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_type      TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    source          TEXT NOT NULL,
    level           INTEGER NOT NULL,
    domain          TEXT NOT NULL DEFAULT '',
    visibility      TEXT NOT NULL DEFAULT 'local',
    entity          TEXT,
    description     TEXT NOT NULL DEFAULT '',
    payload         TEXT NOT NULL DEFAULT '{}',
    idempotency_key TEXT,
    human_status    TEXT NOT NULL DEFAULT 'unseen'
                    CHECK (human_status IN ('unseen', 'seen')),
    agent_status    TEXT NOT NULL DEFAULT 'none'
                    CHECK (agent_status = 'none' OR agent_status = 'claimed'
                           OR agent_status = 'in_progress' OR agent_status = 'resolved'),
    agent_id        TEXT,
    resolution      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    seen_at         TEXT,
    claimed_at      TEXT,
    resolved_at     TEXT,
    event_id        TEXT,
    actionable      INTEGER NOT NULL DEFAULT 0,
    group_field     TEXT,
    group_value     TEXT,
    UNIQUE (idempotency_key)
);

INSERT INTO notifications_rebuilt (
    id, event_type, version, source, level, domain, visibility, entity, description, payload,
    idempotency_key, human_status, agent_status, agent_id, resolution, created_at, updated_at,
    seen_at, claimed_at, resolved_at, event_id, actionable, group_field, group_value)
SELECT
    id, event_type, version, source, level, domain, visibility, entity, description, payload,
    idempotency_key, human_status, agent_status, agent_id, resolution, created_at, updated_at,
    seen_at, claimed_at, resolved_at, event_id, actionable, group_field, group_value
FROM notifications ORDER BY id;

-- The old table's high-water mark may be above its largest remaining id (deleted rows).
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'notifications_rebuilt', 0
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'notifications_rebuilt');
UPDATE sqlite_sequence
    SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'notifications'), 0))
    WHERE name = 'notifications_rebuilt';

DROP TABLE notifications;
ALTER TABLE notifications_rebuilt RENAME TO notifications;

CREATE INDEX idx_notifications_event_type   ON notifications (event_type);
CREATE INDEX idx_notifications_level        ON notifications (level);
CREATE INDEX idx_notifications_human_status ON notifications (human_status);
CREATE INDEX idx_notifications_agent_status ON notifications (agent_status);
CREATE INDEX idx_notifications_visibility   ON notifications (visibility);
CREATE INDEX idx_notifications_created_at   ON notifications (created_at DESC, id DESC);
CREATE INDEX idx_notifications_group        ON notifications (domain, group_field, group_value);
