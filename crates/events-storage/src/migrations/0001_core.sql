-- Schema version 1: database identity, notifications, event log, idempotency bookkeeping,
-- embedded transport and dead letters.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE notifications (
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
                    CHECK (agent_status IN ('none', 'claimed', 'in_progress', 'resolved')),
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
CREATE INDEX idx_notifications_event_type   ON notifications (event_type);
CREATE INDEX idx_notifications_level        ON notifications (level);
CREATE INDEX idx_notifications_domain       ON notifications (domain);
CREATE INDEX idx_notifications_human_status ON notifications (human_status);
CREATE INDEX idx_notifications_agent_status ON notifications (agent_status);
CREATE INDEX idx_notifications_visibility   ON notifications (visibility);
CREATE INDEX idx_notifications_created_at   ON notifications (created_at DESC);
CREATE INDEX idx_notifications_group        ON notifications (domain, group_field, group_value);

CREATE TABLE events (
    seq              INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    stream_entry_id  TEXT,
    event_type       TEXT NOT NULL,
    version          INTEGER NOT NULL,
    source           TEXT NOT NULL,
    timestamp        TEXT NOT NULL,
    idempotency_key  TEXT,
    level            INTEGER NOT NULL,
    domain           TEXT NOT NULL,
    entity           TEXT,
    description      TEXT NOT NULL,
    visibility       TEXT NOT NULL,
    payload          TEXT NOT NULL,
    actions          TEXT,
    terminal_when    TEXT,
    resolution_shape TEXT,
    correlation_id   TEXT,
    causation_id     TEXT,
    received_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_events_idempotency_key ON events (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX idx_events_type        ON events (event_type);
CREATE INDEX idx_events_timestamp   ON events (timestamp);
CREATE INDEX idx_events_received_at ON events (received_at);
CREATE INDEX idx_events_correlation ON events (correlation_id) WHERE correlation_id IS NOT NULL;

CREATE TABLE processed_entries (
    stream       TEXT NOT NULL,
    entry_id     TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (stream, entry_id)
) WITHOUT ROWID;

CREATE TABLE stream_entries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream     TEXT NOT NULL,
    fields     TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX idx_stream_entries_stream ON stream_entries (stream, id);

CREATE TABLE consumer_offsets (
    stream     TEXT NOT NULL,
    grp        TEXT NOT NULL,
    last_id    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (stream, grp)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    stream         TEXT NOT NULL,
    entry_id       TEXT NOT NULL,
    fields         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    delivery_count INTEGER NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX idx_dead_letters_created_at ON dead_letters (created_at);
