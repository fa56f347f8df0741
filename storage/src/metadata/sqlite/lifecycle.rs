//! The data lifecycle in SQLite: what retention may retire, and the first phase of object
//! deletion (see [`crate::metadata::MetadataStore::retire_dead_objects`]).

use super::{
    batch_row, db, insert_batch, partition_row, query_batches, release_object_bytes, store_object,
    BATCH_COLUMNS,
};
use crate::metadata::{
    BatchCoordinate, BatchRewrite, MetaError, MetaResult, ObjectStats, PartitionKey,
    RetentionQuery, RewriteOutcome, RowRef, DELETE_RETRY_MS,
};
use rusqlite::{params, OptionalExtension, Transaction};

/// Rows read per statement while looking for merge candidates.
const CANDIDATE_PAGE: i64 = 512;

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

/// Marks dead objects past their grace period as deleted (their `dead_since_ms` stays set
/// until the deletion is confirmed); hands out again marks never confirmed; forgets old,
/// confirmed marks.
pub(super) fn retire_dead_objects(
    tx: &Transaction<'_>,
    grace_ms: i64,
    forget_ms: i64,
    limit: usize,
) -> MetaResult<Vec<String>> {
    let now = crate::now_ms();
    tx.execute(
        "DELETE FROM objects WHERE deleted_ms IS NOT NULL AND dead_since_ms IS NULL AND created_ms <= ?1",
        params![now - forget_ms],
    )
    .map_err(db)?;
    let mut stmt = tx
        .prepare_cached(
            "UPDATE objects SET deleted_ms = ?1 WHERE object_key IN (SELECT object_key FROM objects \
             WHERE dead_since_ms IS NOT NULL AND live_bytes <= 0 \
             AND ((deleted_ms IS NULL AND dead_since_ms <= ?2) OR deleted_ms <= ?3) \
             ORDER BY dead_since_ms LIMIT ?4) RETURNING object_key",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(
            params![now, now - grace_ms, now - DELETE_RETRY_MS, limit as i64],
            |r| r.get(0),
        )
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}

/// Records that marked objects are gone from the object store.
pub(super) fn confirm_deleted(tx: &Transaction<'_>, keys: &[String]) -> MetaResult<()> {
    let mut stmt = tx
        .prepare_cached(
            "UPDATE objects SET dead_since_ms = NULL WHERE object_key = ?1 AND deleted_ms IS NOT NULL",
        )
        .map_err(db)?;
    for key in keys {
        stmt.execute(params![key]).map_err(db)?;
    }
    Ok(())
}

/// Marks the keys the store has no row for as deleted orphans.
pub(super) fn retire_orphans(tx: &Transaction<'_>, keys: &[String]) -> MetaResult<Vec<String>> {
    let now = crate::now_ms();
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO objects (object_key, size_bytes, live_bytes, created_ms, dead_since_ms, deleted_ms) VALUES (?1, 0, 0, ?2, ?2, ?2) ON CONFLICT (object_key) DO NOTHING",
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

/// The oldest run of rows in produce objects old enough to merge.
pub(super) fn merge_candidates(
    tx: &Transaction<'_>,
    (topic_id, partition): PartitionKey,
    prefix: &str,
    min_age_ms: i64,
    max_bytes: u64,
) -> MetaResult<Vec<BatchCoordinate>> {
    let id = topic_id.to_string();
    let first: Option<i64> = tx
        .prepare_cached(
            "SELECT MIN(base_offset) FROM batches WHERE topic_id = ?1 AND partition = ?2 AND substr(object_key, 1, length(?3)) = ?3",
        )
        .and_then(|mut s| s.query_row(params![id, partition, prefix], |r| r.get(0)))
        .map_err(db)?;
    let Some(mut from) = first else {
        return Ok(Vec::new());
    };
    let cutoff = crate::now_ms() - min_age_ms;
    let sql = format!(
        "SELECT {BATCH_COLUMNS}, o.created_ms FROM batches b JOIN objects o ON o.object_key = b.object_key \
         WHERE b.topic_id = ?1 AND b.partition = ?2 AND b.base_offset >= ?3 ORDER BY b.base_offset LIMIT ?4"
    );
    let mut stmt = tx.prepare_cached(&sql).map_err(db)?;
    let (mut out, mut bytes) = (Vec::new(), 0u64);
    loop {
        let page: Vec<(BatchCoordinate, i64)> = stmt
            .query_map(params![id, partition, from, CANDIDATE_PAGE], |r| {
                Ok((batch_row(r)?, r.get(11)?))
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let full = page.len() as i64 == CANDIDATE_PAGE;
        for (b, created_ms) in page {
            let fits = out.is_empty() || bytes + u64::from(b.byte_len) <= max_bytes;
            if !b.object_key.starts_with(prefix) || created_ms > cutoff || !fits {
                return Ok(out);
            }
            bytes += u64::from(b.byte_len);
            from = b.base_offset + 1;
            out.push(b);
        }
        if !full {
            return Ok(out);
        }
    }
}

/// Replaces a run of rows by the rows of a new object, if they are still those read.
pub(super) fn rewrite_batches(
    tx: &Transaction<'_>,
    r: &BatchRewrite,
) -> MetaResult<RewriteOutcome> {
    let shape = r.shape()?;
    let Some((epoch, _, _)) = partition_row(tx, r.topic_id, r.partition)? else {
        return Ok(RewriteOutcome::Changed);
    };
    if epoch != r.owner_epoch {
        return Ok(RewriteOutcome::Fenced);
    }
    let id = r.topic_id.to_string();
    let range =
        "b.topic_id = ?1 AND b.partition = ?2 AND b.base_offset >= ?3 AND b.base_offset <= ?4";
    let args: [&dyn rusqlite::ToSql; 4] =
        [&id, &r.partition, &shape.first_base, &shape.last_old_base];
    let rows = query_batches(tx, &format!("WHERE {range} ORDER BY b.base_offset"), &args)?;
    let unchanged = rows.len() == r.old.len()
        && rows
            .iter()
            .zip(&r.old)
            .all(|(b, old)| RowRef::from(b) == *old);
    if !unchanged {
        return Ok(RewriteOutcome::Changed);
    }
    if rows.last().map(|b| b.last_offset) != Some(shape.last_offset) {
        return Err(MetaError::Invalid(
            "rewrite: new rows do not end where the old ones end".into(),
        ));
    }
    release_object_bytes(tx, range, &args)?;
    tx.execute(
        "DELETE FROM batches WHERE topic_id = ?1 AND partition = ?2 AND base_offset >= ?3 AND base_offset <= ?4",
        args.as_slice(),
    )
    .map_err(db)?;
    let (key, size) = &shape.object;
    store_object(tx, key, *size, shape.live_bytes, crate::now_ms())?;
    for b in &r.new {
        insert_batch(tx, &id, r.partition, b)?;
    }
    Ok(RewriteOutcome::Replaced)
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
