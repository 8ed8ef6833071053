-- Schema version 3: the delivery outbox in full (events-delivery, brief §10).
-- Extends the minimal tables of version 2; all times are stored-format text (see timefmt).

-- Secret rotation keeps the previous secret signing until previous_secret_until.
ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret_until TEXT;
-- Deliveries that ended failed in a row; a success resets it; N disables the endpoint.
ALTER TABLE webhooks ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhooks ADD COLUMN disabled_reason TEXT;

-- msg_id is the `webhook-id` header: stable across retries, unique across databases.
ALTER TABLE deliveries ADD COLUMN msg_id TEXT;
ALTER TABLE deliveries ADD COLUMN event_id TEXT;
ALTER TABLE deliveries ADD COLUMN event_type TEXT NOT NULL DEFAULT '';
-- A worker holds a claimed delivery until locked_until; after a crash it is due again.
ALTER TABLE deliveries ADD COLUMN locked_until TEXT;
-- 'scheduled' or 'manual' (a one-shot retry or recovery asked for by an operator).
ALTER TABLE deliveries ADD COLUMN next_trigger TEXT NOT NULL DEFAULT 'scheduled';
ALTER TABLE deliveries ADD COLUMN last_error TEXT;
CREATE UNIQUE INDEX idx_deliveries_msg_id ON deliveries (msg_id);
CREATE UNIQUE INDEX idx_deliveries_event ON deliveries (webhook_id, event_id) WHERE event_id IS NOT NULL;

CREATE TABLE delivery_attempts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id      INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at     TEXT NOT NULL,
    status_code      INTEGER,
    latency_ms       INTEGER NOT NULL,
    response_excerpt TEXT,
    error            TEXT,
    trigger          TEXT NOT NULL
);
CREATE INDEX idx_delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

ALTER TABLE telegram_outbox ADD COLUMN locked_until TEXT;
ALTER TABLE telegram_outbox ADD COLUMN last_error TEXT;
CREATE INDEX idx_telegram_outbox_chat ON telegram_outbox (chat_id, status, next_attempt_at);
