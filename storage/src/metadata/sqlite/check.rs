//! What `inkless storage check` reads and repairs in SQLite: pages of the object and batch
//! tables, and live bytes recounted from the batches.

use super::db;
use crate::metadata::{BatchCursor, LiveBytesMismatch, MetaResult, StoredBatch, StoredObject};
use rusqlite::{params, OptionalExtension, Transaction};
use uuid::Uuid;

/// Object rows after `after`, in key order.
pub(super) fn objects_page(
    tx: &Transaction<'_>,
    after: Option<&str>,
    limit: usize,
) -> MetaResult<Vec<StoredObject>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT object_key, size_bytes, live_bytes, created_ms, dead_since_ms, deleted_ms FROM objects WHERE ?1 IS NULL OR object_key > ?1 ORDER BY object_key LIMIT ?2",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![after, limit as i64], |r| {
            Ok(StoredObject {
                key: r.get(0)?,
                size_bytes: r.get::<_, i64>(1)?.max(0) as u64,
                live_bytes: r.get(2)?,
                created_ms: r.get(3)?,
                dead_since_ms: r.get(4)?,
                deleted_ms: r.get(5)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// Batch rows after `after`, in primary-key order.
pub(super) fn batches_page(
    tx: &Transaction<'_>,
    after: Option<BatchCursor>,
    limit: usize,
) -> MetaResult<Vec<StoredBatch>> {
    // Row values compare lexicographically, so the primary-key index serves the page.
    let (topic, partition, base) = match after {
        Some((t, p, b)) => (t.to_string(), p, b),
        None => (String::new(), i32::MIN, i64::MIN),
    };
    let mut stmt = tx
        .prepare_cached(
            "SELECT topic_id, partition, base_offset, last_offset, object_key, byte_offset, byte_len FROM batches WHERE (topic_id, partition, base_offset) > (?1, ?2, ?3) ORDER BY topic_id, partition, base_offset LIMIT ?4",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![topic, partition, base, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (topic, partition, base_offset, last_offset, object_key, at, len) = row.map_err(db)?;
        out.push(StoredBatch {
            partition: (Uuid::parse_str(&topic).map_err(db)?, partition),
            base_offset,
            last_offset,
            object_key,
            byte_offset: at.max(0) as u64,
            byte_len: len.clamp(0, u32::MAX as i64) as u32,
        });
    }
    Ok(out)
}

/// Compares (and with `fix` corrects) the live bytes of `keys`; the transaction is the
/// store's only writer, so nothing interleaves.
pub(super) fn recount_live_bytes(
    tx: &Transaction<'_>,
    keys: &[String],
    fix: bool,
) -> MetaResult<Vec<LiveBytesMismatch>> {
    let now = crate::now_ms();
    let mut out = Vec::new();
    for key in keys {
        let stored: Option<i64> = tx
            .prepare_cached("SELECT live_bytes FROM objects WHERE object_key = ?1")
            .and_then(|mut s| s.query_row(params![key], |r| r.get(0)).optional())
            .map_err(db)?;
        let (count, batches): (i64, i64) = tx
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(byte_len), 0) FROM batches WHERE object_key = ?1",
            )
            .and_then(|mut s| s.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(db)?;
        if (stored.is_none() && count == 0) || stored == Some(batches) {
            continue;
        }
        if fix && stored.is_some() {
            tx.prepare_cached(
                "UPDATE objects SET live_bytes = ?2, dead_since_ms = CASE WHEN ?2 > 0 THEN NULL ELSE COALESCE(dead_since_ms, ?3) END WHERE object_key = ?1",
            )
            .and_then(|mut s| s.execute(params![key, batches, now]))
            .map_err(db)?;
        }
        out.push(LiveBytesMismatch {
            key: key.clone(),
            stored,
            batches,
        });
    }
    Ok(out)
}
