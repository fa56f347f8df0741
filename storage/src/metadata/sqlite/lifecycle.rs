//! The data lifecycle in SQLite: what retention may retire, and the first phase of object
//! deletion (see [`crate::metadata::MetadataStore::retire_dead_objects`]).

use super::{db, partition_row};
use crate::metadata::{MetaResult, ObjectStats, RetentionQuery, DELETED_OBJECT_KEPT_MS};
use rusqlite::{params, OptionalExtension, Transaction};

/// The offset the query's partition's log start may be raised to.
pub(super) fn retention_offset(tx: &Transaction<'_>, q: &RetentionQuery) -> MetaResult<i64> {
    let (topic_id, partition) = q.partition;
    let Some((_, start, hwm)) = partition_row(tx, topic_id, partition)? else {
        return Ok(0);
    };
    let id = topic_id.to_string();
    let mut new_start = start;
    if let Some(before) = q.expire_before {
        let first_live: Option<i64> = tx
            .prepare_cached(
                "SELECT base_offset FROM batches WHERE topic_id = ?1 AND partition = ?2 AND max_timestamp >= ?3 ORDER BY base_offset LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![id, partition, before], |r| r.get(0))
                    .optional()
            })
            .map_err(db)?;
        new_start = new_start.max(first_live.unwrap_or(hwm));
    }
    if let Some(max_bytes) = q.max_bytes {
        // The last batch whose suffix of the log (it and everything after it) still holds
        // `max_bytes`: everything before it may go.
        let keep_from: Option<i64> = tx
            .prepare_cached(
                "SELECT MAX(base_offset) FROM (SELECT base_offset, SUM(byte_len) OVER (ORDER BY base_offset DESC) AS suffix FROM batches WHERE topic_id = ?1 AND partition = ?2) WHERE suffix >= ?3",
            )
            .and_then(|mut s| s.query_row(params![id, partition, max_bytes as i64], |r| r.get(0)))
            .map_err(db)?;
        new_start = new_start.max(keep_from.unwrap_or(start));
    }
    Ok(new_start.min(hwm))
}

/// Marks dead objects past their grace period as deleted; forgets old marks.
pub(super) fn retire_dead_objects(
    tx: &Transaction<'_>,
    grace_ms: i64,
    limit: usize,
) -> MetaResult<Vec<String>> {
    let now = crate::now_ms();
    tx.execute(
        "DELETE FROM objects WHERE deleted_ms IS NOT NULL AND deleted_ms < ?1",
        params![now - DELETED_OBJECT_KEPT_MS],
    )
    .map_err(db)?;
    let mut stmt = tx
        .prepare_cached(
            "UPDATE objects SET deleted_ms = ?1, dead_since_ms = NULL WHERE object_key IN (SELECT object_key FROM objects WHERE dead_since_ms IS NOT NULL AND dead_since_ms <= ?2 AND live_bytes <= 0 AND deleted_ms IS NULL ORDER BY dead_since_ms LIMIT ?3) RETURNING object_key",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![now, now - grace_ms, limit as i64], |r| r.get(0))
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// Marks the keys the store has no row for as deleted orphans.
pub(super) fn retire_orphans(tx: &Transaction<'_>, keys: &[String]) -> MetaResult<Vec<String>> {
    let now = crate::now_ms();
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO objects (object_key, size_bytes, live_bytes, created_ms, deleted_ms) VALUES (?1, 0, 0, ?2, ?2) ON CONFLICT (object_key) DO NOTHING",
        )
        .map_err(db)?;
    let mut orphans = Vec::new();
    for key in keys {
        if insert.execute(params![key, now]).map_err(db)? == 1 {
            orphans.push(key.clone());
        }
    }
    Ok(orphans)
}

/// Counts of the object and batch tables.
pub(super) fn object_stats(tx: &Transaction<'_>) -> MetaResult<ObjectStats> {
    let count = |sql: &str| -> MetaResult<u64> {
        tx.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
            .map(|n| n.unwrap_or(0).max(0) as u64)
            .map_err(db)
    };
    Ok(ObjectStats {
        live_objects: count("SELECT COUNT(*) FROM objects WHERE live_bytes > 0")?,
        live_object_bytes: count("SELECT SUM(size_bytes) FROM objects WHERE live_bytes > 0")?,
        live_bytes: count("SELECT SUM(live_bytes) FROM objects WHERE live_bytes > 0")?,
        dead_objects: count(
            "SELECT COUNT(*) FROM objects WHERE live_bytes <= 0 AND deleted_ms IS NULL",
        )?,
        deleted_objects: count("SELECT COUNT(*) FROM objects WHERE deleted_ms IS NOT NULL")?,
        batches: count("SELECT COUNT(*) FROM batches")?,
    })
}

/// Deletes up to `limit` producer rows not written for `idle_ms`.
pub(super) fn expire_producers(
    tx: &Transaction<'_>,
    idle_ms: i64,
    limit: usize,
) -> MetaResult<u64> {
    let before = crate::now_ms().saturating_sub(idle_ms);
    let n = tx
        .prepare_cached(
            "DELETE FROM producers WHERE rowid IN (SELECT rowid FROM producers WHERE last_write_ms < ?1 ORDER BY last_write_ms LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![before, limit as i64]))
        .map_err(db)?;
    Ok(n as u64)
}
