//! Test helper for `tests/it/crash.rs`: writes numbered batches to the database at `argv[1]`
//! until killed, printing each batch number on stdout once its transaction has committed.
//!
//! Batch `b` writes `argv[2]` (default 200) event-log rows and as many notifications, all
//! tagged with `b`, plus a processed entry, a consumer offset and `meta.crash_last_batch`.
//! The test SIGKILLs this process at random points and checks that every batch is all there
//! or not there at all.

use std::io::Write;

use events_envelope::EventEnvelope;
use events_storage::{EventDb, NewNotification};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: storage-crash-writer DB_PATH [ROWS_PER_BATCH]")?;
    let rows: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let db = EventDb::open(&path).await?;
        let last: u64 = db
            .read(|r| r.meta("crash_last_batch"))
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut stdout = std::io::stdout();
        // Bounded so an orphaned writer cannot run forever.
        for batch in last + 1..last + 100_000 {
            db.write(move |tx| {
                for i in 0..rows {
                    let event = EventEnvelope::new("crash.row", "crash-writer")
                        .with_field("batch", batch)
                        .with_field("i", i);
                    tx.append_event(&event, None)?;
                    tx.insert_notification(&NewNotification {
                        description: format!("batch {batch}"),
                        ..NewNotification::from_envelope(&event)
                    })?;
                }
                tx.mark_processed("crash", &format!("{batch}-0"))?;
                tx.set_consumer_offset("crash", "writer", &format!("{batch}-0"))?;
                tx.set_meta("crash_last_batch", &batch.to_string())?;
                Ok(())
            })
            .await?;
            // After the commit returned: this batch is durable.
            writeln!(stdout, "{batch}")?;
            stdout.flush()?;
        }
        Ok(())
    })
}
