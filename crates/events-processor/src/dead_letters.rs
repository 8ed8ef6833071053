//! Dead letters as library functions: list, replay, delete (used by the API and the CLI).
//!
//! The `dead_letters` table is the authoritative list for both transports: the processor
//! writes a row in the same transaction that marks the entry processed, so a dead letter is
//! never lost nor doubled. With Redis, a copy also goes to the `events:dead` stream for
//! Redis-side tooling; that stream is a log and is not changed by replay or delete.

use std::time::Duration;

use events_producer::BoxFuture;
use events_storage::{DeadLetter, EventDb};
use fred::prelude::*;

use crate::error::{Error, Result};

/// Something that can append a raw field set as a new stream entry: the target of a
/// dead-letter replay. Implemented by [`crate::EmbeddedProducer`] and [`RedisAppender`].
pub trait RawAppend: Send + Sync {
    /// Append `fields` as a new entry; returns its id.
    fn append_raw<'a>(&'a self, fields: &'a [(String, String)]) -> BoxFuture<'a, Result<String>>;
}

/// Appends raw entries to a Redis stream (`XADD`, `MAXLEN ~` when set).
#[derive(Debug, Clone)]
pub struct RedisAppender {
    client: Client,
    stream: String,
    maxlen: Option<u64>,
}

impl RedisAppender {
    /// Connect to `url` for appending to `stream`.
    pub async fn connect(
        url: &str,
        stream: impl Into<String>,
        maxlen: Option<u64>,
    ) -> Result<Self> {
        let config = Config::from_url(url).map_err(|e| Error::redis("parse url", e))?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
            .build()
            .map_err(|e| Error::redis("connect", e))?;
        client
            .init()
            .await
            .map_err(|e| Error::redis("connect", e))?;
        Ok(Self {
            client,
            stream: stream.into(),
            maxlen,
        })
    }

    /// Wrap an existing connected client.
    pub fn from_client(client: Client, stream: impl Into<String>, maxlen: Option<u64>) -> Self {
        Self {
            client,
            stream: stream.into(),
            maxlen,
        }
    }
}

impl RawAppend for RedisAppender {
    fn append_raw<'a>(&'a self, fields: &'a [(String, String)]) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let cap = crate::redis::stream_cap(self.maxlen);
            self.client
                .xadd::<String, _, _, _, _>(self.stream.as_str(), false, cap, "*", fields.to_vec())
                .await
                .map_err(|e| Error::redis("XADD", e))
        })
    }
}

/// Dead letters with id greater than `after_id`, oldest first, at most `limit`.
pub async fn list_dead_letters(db: &EventDb, after_id: i64, limit: u32) -> Result<Vec<DeadLetter>> {
    Ok(db.list_dead_letters(after_id, limit).await?)
}

/// Re-append a dead letter's original fields as a new entry (a fresh delivery, counted
/// from 1) and delete the dead letter; returns the new entry id.
///
/// Replay after fixing the cause (a catalog file, a cartridge). If the process dies
/// between the append and the delete, the dead letter stays listed although it was
/// replayed; replaying it again is harmless for envelopes with an `id` (the event log
/// refuses a second copy) and duplicates the event otherwise.
pub async fn replay_dead_letter(db: &EventDb, target: &dyn RawAppend, id: i64) -> Result<String> {
    let letter = db
        .get_dead_letter(id)
        .await?
        .ok_or(Error::DeadLetterNotFound(id))?;
    let entry_id = target.append_raw(&letter.fields).await?;
    db.delete_dead_letter(id).await?;
    tracing::info!(dead_letter = id, original = %letter.entry_id, new_entry = %entry_id, "dead letter replayed");
    Ok(entry_id)
}

/// Delete a dead letter; `false` if there was none with this id.
pub async fn delete_dead_letter(db: &EventDb, id: i64) -> Result<bool> {
    Ok(db.delete_dead_letter(id).await?)
}
