//! The [`Source`] abstraction: where stream entries come from and how they are settled.

use std::future::Future;

use crate::error::Result;

/// One stream entry as read, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Transport id (`1732480153123-0` in Redis, `42-0` in the embedded stream).
    pub entry_id: String,
    /// The raw field/value pairs, in stream order.
    pub fields: EntryFields,
    /// How many times this entry has been delivered, this delivery included (1 = first).
    pub delivery_count: u64,
}

/// The raw field/value pairs of one stream entry, in stream order, kept in one text buffer.
///
/// An envelope has ten or more fields; as a `String` per key and per value, reading a batch
/// of 2,000 entries made 40,000 allocations and freeing the batch as many frees, a tenth of
/// the daemon's reading side in the e2e benchmark profile (docs/benchmarks.md, session
/// 18). The pairs are only read back (to decode, or to dead-letter them untouched), so one
/// buffer and the ends of its pieces hold them as well.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EntryFields {
    text: String,
    /// Per pair, where its key and its value end in `text` (each piece starts where the
    /// previous one ended).
    ends: Vec<(usize, usize)>,
}

impl EntryFields {
    /// Empty, with room for `pairs` pairs of `bytes` bytes of text in all.
    pub fn with_capacity(pairs: usize, bytes: usize) -> Self {
        Self {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(pairs),
        }
    }

    /// Appends one pair.
    pub fn push(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        let key_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((key_end, self.text.len()));
    }

    /// The pairs in stream order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone + '_ {
        (0..self.ends.len()).map(|i| {
            let start = i.checked_sub(1).map_or(0, |previous| self.ends[previous].1);
            let (key_end, end) = self.ends[i];
            (&self.text[start..key_end], &self.text[key_end..end])
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// No pairs at all.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The pairs as owned strings (for dead letters, which leave the batch).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl std::fmt::Debug for EntryFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for EntryFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut fields = Self::default();
        for (k, v) in pairs {
            fields.push(k.as_ref(), v.as_ref());
        }
        fields
    }
}

impl From<Vec<(String, String)>> for EntryFields {
    fn from(pairs: Vec<(String, String)>) -> Self {
        let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut fields = Self::with_capacity(pairs.len(), bytes);
        for (k, v) in &pairs {
            fields.push(k, v);
        }
        fields
    }
}

/// How a source records "this entry took effect" inside the batch transaction.
///
/// Both sources mark finished entries in `processed_entries` (that is what makes a
/// re-delivery a no-op); the embedded source additionally advances its consumer offset in
/// the same transaction, so on restart it does not even re-read what is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Only `processed_entries` (Redis: the consumer group keeps the read position).
    ProcessedEntries {
        /// Key under which entries are marked in `processed_entries`.
        stream: String,
    },
    /// `processed_entries` plus an offset in `consumer_offsets`.
    Offset {
        /// Key under which entries are marked in `processed_entries` and the offset kept.
        stream: String,
        /// Consumer group name.
        group: String,
        /// Sequence numbers of entries read but not yet settled (acked or dead-lettered),
        /// including the batch being committed; sorted ascending.
        outstanding: Vec<u64>,
        /// Highest sequence number read so far.
        cursor: u64,
    },
}

impl Checkpoint {
    /// The `processed_entries` stream key.
    pub fn stream(&self) -> &str {
        match self {
            Checkpoint::ProcessedEntries { stream } | Checkpoint::Offset { stream, .. } => stream,
        }
    }

    /// For [`Checkpoint::Offset`]: the offset that is safe to store once the entries for
    /// which `settled(seq)` is true are committed — everything up to the oldest entry still
    /// outstanding, exclusive. `None` for [`Checkpoint::ProcessedEntries`].
    pub fn safe_offset(&self, settled: impl Fn(u64) -> bool) -> Option<u64> {
        match self {
            Checkpoint::ProcessedEntries { .. } => None,
            Checkpoint::Offset {
                outstanding,
                cursor,
                ..
            } => Some(match outstanding.iter().find(|seq| !settled(**seq)) {
                Some(oldest) => oldest.saturating_sub(1),
                None => *cursor,
            }),
        }
    }
}

/// A readable, acknowledgeable stream of entries (Redis consumer group or embedded).
///
/// Contract shared by every implementation (the integration tests run the same bodies
/// against each):
/// * `read_batch` returns entries not yet acked: first the ones this consumer already
///   owns (after a restart, a reconnect, or [`Source::retry_later`]'s delay), then new ones;
///   it may return an empty batch (timeout) and must return in bounded time;
/// * `ack` is called only after the batch committed; an entry never acked nor
///   retried-later is delivered again at the latest on restart;
/// * `delivery_count` grows by one per delivery, so the processor can bound retries.
pub trait Source: Send + 'static {
    /// Human-readable description for logs (`redis events:stream/event-processor`).
    fn describe(&self) -> String;

    /// How this source records settled entries inside the batch transaction.
    fn checkpoint(&self) -> Checkpoint;

    /// Read up to `max` entries, waiting a bounded time when none are available.
    fn read_batch(&mut self, max: usize) -> impl Future<Output = Result<Vec<SourceEntry>>> + Send;

    /// Read up to `max` further entries *without waiting*, while the batch read last is
    /// still being committed (the processor overlaps the two). `Ok(None)` when the source
    /// cannot read ahead right now — for instance while it re-delivers entries it already
    /// owns, which would include the batch in flight — and the processor then reads
    /// normally after the commit. Entries returned here follow the same contract as
    /// [`Source::read_batch`]'s. The default never reads ahead.
    fn read_ahead(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Vec<SourceEntry>>>> + Send {
        let _ = max;
        async { Ok(None) }
    }

    /// Whether a batch read ahead may wait in the storage writer's queue behind the batch
    /// still committing (the writer then goes straight on to it). `false` for a source
    /// whose producers write through that same writer (the embedded transport): their
    /// appends would wait behind a whole queued batch too, and with them every producer
    /// waiting for its append (embedded ingest was ~10 % slower). The default is `true`.
    fn queue_read_ahead(&self) -> bool {
        true
    }

    /// Up to `max` entries already delivered to this consumer and held by the source but
    /// not yet returned, taken without any I/O. A graceful shutdown processes them before it
    /// stops, so that it leaves nothing pending. The default holds none.
    fn take_buffered(&mut self, max: usize) -> Vec<SourceEntry> {
        let _ = max;
        Vec::new()
    }

    /// Acknowledge settled entries (after the commit). Idempotent. An implementation may
    /// send the acknowledgement and return before it is answered (the next read then need
    /// not wait for that round trip); [`Source::flush_acks`] waits for those.
    fn ack(&mut self, ids: &[String]) -> impl Future<Output = Result<()>> + Send;

    /// Wait until every acknowledgement [`Source::ack`] sent has been answered (or failed,
    /// which is logged). The processor calls it before it stops and at the end of
    /// [`crate::Processor::process_batch`]. The default has nothing in flight.
    fn flush_acks(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Entries whose processing failed and should be delivered again after `delay`.
    fn retry_later(&mut self, ids: &[String], delay: std::time::Duration);

    /// Publish dead letters on the transport (Redis: `XADD events:dead`). The storage
    /// mirror (`dead_letters`), written in the batch transaction, is authoritative; this
    /// copy is for Redis-side tooling and is best effort.
    fn publish_dead_letters(
        &mut self,
        letters: &[DeadLetterRecord],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Whether the transport is currently reachable (for `/ready`).
    fn is_connected(&self) -> bool;

    /// Entries in the stream not yet processed by the group (delivered-but-unacked
    /// included), if the transport can tell.
    fn lag(&mut self) -> impl Future<Output = Result<Option<u64>>> + Send;
}

/// A dead letter as published on the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Id of the original stream entry.
    pub entry_id: String,
    /// Why it was dead-lettered (decode error, invalid event, last cartridge error).
    pub reason: String,
    /// How many times it was delivered.
    pub delivery_count: u64,
    /// The original fields, untouched.
    pub fields: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::EntryFields;

    #[test]
    fn pairs_come_back_in_order_including_empty_pieces() {
        let mut fields = EntryFields::default();
        assert!(fields.is_empty());
        fields.push("event", "a.b");
        fields.push("domain", "");
        fields.push("", "keyless");
        fields.push("payload", "{\"é\":\"✓\"}");
        assert_eq!(fields.len(), 4);
        assert_eq!(
            fields.iter().collect::<Vec<_>>(),
            [
                ("event", "a.b"),
                ("domain", ""),
                ("", "keyless"),
                ("payload", "{\"é\":\"✓\"}")
            ]
        );
        assert_eq!(
            format!("{fields:?}"),
            r#"{"event": "a.b", "domain": "", "": "keyless", "payload": "{\"é\":\"✓\"}"}"#
        );
    }

    proptest! {
        /// Whatever the pairs, the buffer gives back exactly them: the boundaries between
        /// a key and its value, and between pairs, never shift.
        #[test]
        fn any_pairs_round_trip(pairs in proptest::collection::vec((".*", ".*"), 0..24)) {
            let fields = EntryFields::from(pairs.clone());
            prop_assert_eq!(fields.len(), pairs.len());
            prop_assert_eq!(fields.iter().len(), pairs.len());
            prop_assert_eq!(fields.to_pairs(), pairs.clone());
            let collected: EntryFields = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(collected, fields);
        }
    }
}
