//! The data lifecycle in PostgreSQL: what retention may retire, and the first phase of
//! object deletion (see [`crate::metadata::MetadataStore::retire_dead_objects`]). Times are
//! the database's clock, so nodes with skewed clocks agree on grace periods.

use super::ownership::NOW_MS;
use super::{batch_query, batch_row, batch_row_at, delete_batches, Tx, TxResult, INSERT_BATCHES};
use crate::metadata::{
    BatchCoordinate, BatchRewrite, MetaError, ObjectStats, PartitionKey, RetentionQuery,
    RewriteOutcome, RowRef, DELETE_RETRY_MS,
};
use uuid::Uuid;

/// Rows read per statement while looking for merge candidates.
const CANDIDATE_PAGE: i64 = 512;

/// For each listed partition (in order): the offset its log start may be raised to. The
/// time limit is the first batch whose largest timestamp has not expired (the high
/// watermark when every one has); the size limit the last batch whose suffix of the log
/// still holds `max_bytes`.
const RETENTION_OFFSETS: &str = "SELECT COALESCE(LEAST(p.high_watermark, GREATEST(p.log_start_offset, \
     CASE WHEN k.before IS NULL THEN p.log_start_offset ELSE COALESCE((SELECT b.base_offset FROM batches b \
       WHERE b.topic_id = k.t AND b.partition = k.p AND b.max_timestamp >= k.before ORDER BY b.base_offset LIMIT 1), p.high_watermark) END, \
     CASE WHEN k.max_bytes IS NULL THEN p.log_start_offset ELSE COALESCE((SELECT MAX(s.base_offset) FROM \
       (SELECT b.base_offset, SUM(b.byte_len) OVER (ORDER BY b.base_offset DESC) AS suffix FROM batches b \
        WHERE b.topic_id = k.t AND b.partition = k.p) s WHERE s.suffix >= k.max_bytes), p.log_start_offset) END)), 0)::int8 \
     FROM UNNEST($1::uuid[], $2::int4[], $3::int8[], $4::int8[]) WITH ORDINALITY AS k(t, p, before, max_bytes, i) \
     LEFT JOIN partitions p ON p.topic_id = k.t AND p.partition = k.p ORDER BY k.i";

/// The offsets retention allows, one per query.
pub(super) async fn retention_offsets(
    tx: &Tx<'_>,
    queries: &[RetentionQuery],
) -> TxResult<Vec<i64>> {
    let topics: Vec<Uuid> = queries.iter().map(|q| q.partition.0).collect();
    let partitions: Vec<i32> = queries.iter().map(|q| q.partition.1).collect();
    let before: Vec<Option<i64>> = queries.iter().map(|q| q.expire_before).collect();
    let max_bytes: Vec<Option<i64>> = queries
        .iter()
        .map(|q| q.max_bytes.map(|b| b.min(i64::MAX as u64) as i64))
        .collect();
    let stmt = tx.prepare_cached(RETENTION_OFFSETS).await?;
    let rows = tx
        .query(&stmt, &[&topics, &partitions, &before, &max_bytes])
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Marks dead objects past their grace period as deleted (their `dead_since_ms` stays set
/// until the deletion is confirmed); hands out again marks never confirmed; forgets old,
/// confirmed marks.
pub(super) async fn retire_dead_objects(
    tx: &Tx<'_>,
    grace_ms: i64,
    forget_ms: i64,
    limit: usize,
) -> TxResult<Vec<String>> {
    tx.execute(
        &format!(
            "DELETE FROM objects WHERE deleted_ms IS NOT NULL AND dead_since_ms IS NULL AND created_ms <= {NOW_MS} - $1::int8"
        ),
        &[&forget_ms],
    )
    .await?;
    // SKIP LOCKED: an object a commit is reviving right now is not dead.
    let sql = format!(
        "UPDATE objects SET deleted_ms = {NOW_MS} WHERE object_key IN \
         (SELECT object_key FROM objects WHERE dead_since_ms IS NOT NULL AND live_bytes <= 0 \
          AND ((deleted_ms IS NULL AND dead_since_ms <= {NOW_MS} - $1::int8) OR deleted_ms <= {NOW_MS} - $3::int8) \
          ORDER BY dead_since_ms LIMIT $2 FOR UPDATE SKIP LOCKED) \
         AND live_bytes <= 0 RETURNING object_key"
    );
    let rows = tx
        .query(&sql, &[&grace_ms, &(limit as i64), &DELETE_RETRY_MS])
        .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Records that marked objects are gone from the object store.
pub(super) async fn confirm_deleted(tx: &Tx<'_>, keys: &[String]) -> TxResult<()> {
    tx.execute(
        "UPDATE objects SET dead_since_ms = NULL WHERE object_key = ANY($1) AND deleted_ms IS NOT NULL",
        &[&keys],
    )
    .await?;
    Ok(())
}

/// Marks the keys the store has no row for as deleted orphans.
pub(super) async fn retire_orphans(tx: &Tx<'_>, keys: &[String]) -> TxResult<Vec<String>> {
    let sql = format!(
        "INSERT INTO objects (object_key, size_bytes, live_bytes, created_ms, dead_since_ms, deleted_ms) \
         SELECT k, 0, 0, {NOW_MS}, {NOW_MS}, {NOW_MS} FROM UNNEST($1::text[]) AS k \
         ON CONFLICT (object_key) DO NOTHING RETURNING object_key"
    );
    let rows = tx.query(&sql, &[&keys]).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Deletes up to `limit` producer rows not written for `idle_ms` (the caller's clock, as
/// the rows were written with the writers' clocks). A row a commit is rewriting is skipped,
/// and the condition is checked again on the row deleted, so a fresh write survives.
pub(super) async fn expire_producers(tx: &Tx<'_>, idle_ms: i64, limit: usize) -> TxResult<u64> {
    let before = crate::now_ms().saturating_sub(idle_ms);
    let stmt = tx
        .prepare_cached(
            "DELETE FROM producers p USING (SELECT topic_id, partition, producer_id FROM producers \
             WHERE last_write_ms < $1 ORDER BY last_write_ms LIMIT $2 FOR UPDATE SKIP LOCKED) x \
             WHERE p.topic_id = x.topic_id AND p.partition = x.partition \
             AND p.producer_id = x.producer_id AND p.last_write_ms < $1",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&before, &(limit as i64)]).await?)
}

/// Counts of the object and batch tables.
pub(super) const OBJECT_STATS: &str = "SELECT COUNT(*) FILTER (WHERE live_bytes > 0), \
     COALESCE(SUM(size_bytes) FILTER (WHERE live_bytes > 0), 0)::int8, \
     COALESCE(SUM(live_bytes) FILTER (WHERE live_bytes > 0), 0)::int8, \
     COUNT(*) FILTER (WHERE live_bytes <= 0 AND deleted_ms IS NULL), \
     COUNT(*) FILTER (WHERE deleted_ms IS NOT NULL), \
     (SELECT COUNT(*) FROM batches) FROM objects";

/// Reads a row of [`OBJECT_STATS`].
pub(super) fn object_stats(
    row: &tokio_postgres::Row,
) -> Result<ObjectStats, tokio_postgres::Error> {
    let n = |i: usize| -> Result<u64, tokio_postgres::Error> {
        Ok(row.try_get::<_, i64>(i)?.max(0) as u64)
    };
    Ok(ObjectStats {
        live_objects: n(0)?,
        live_object_bytes: n(1)?,
        live_bytes: n(2)?,
        dead_objects: n(3)?,
        deleted_objects: n(4)?,
        batches: n(5)?,
    })
}

/// The oldest run of rows in produce objects old enough to merge.
pub(super) async fn merge_candidates(
    tx: &Tx<'_>,
    (topic_id, partition): PartitionKey,
    prefix: &str,
    min_age_ms: i64,
    max_bytes: u64,
) -> TxResult<Vec<BatchCoordinate>> {
    let row = tx
        .query_one(
            "SELECT MIN(base_offset) FROM batches WHERE topic_id = $1 AND partition = $2 AND left(object_key, length($3)) = $3",
            &[&topic_id, &partition, &prefix],
        )
        .await?;
    let Some(mut from) = row.try_get::<_, Option<i64>>(0)? else {
        return Ok(Vec::new());
    };
    let cutoff = crate::now_ms() - min_age_ms;
    let sql = format!(
        "SELECT o.created_ms, {} FROM batches b JOIN objects o ON o.object_key = b.object_key \
         WHERE b.topic_id = $1 AND b.partition = $2 AND b.base_offset >= $3 ORDER BY b.base_offset LIMIT $4",
        super::BATCH_COLUMNS
    );
    let stmt = tx.prepare_cached(&sql).await?;
    let (mut out, mut bytes) = (Vec::new(), 0u64);
    loop {
        let page = tx
            .query(&stmt, &[&topic_id, &partition, &from, &CANDIDATE_PAGE])
            .await?;
        let full = page.len() as i64 == CANDIDATE_PAGE;
        for row in &page {
            let created_ms: i64 = row.try_get(0)?;
            let b = batch_row_at(row, 1)?;
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
pub(super) async fn rewrite_batches(tx: &Tx<'_>, r: &BatchRewrite) -> TxResult<RewriteOutcome> {
    let shape = r.shape()?;
    let locked = tx
        .query_opt(
            "SELECT owner_epoch FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&r.topic_id, &r.partition],
        )
        .await?;
    let Some(locked) = locked else {
        return Ok(RewriteOutcome::Changed);
    };
    if locked.try_get::<_, i64>(0)? != r.owner_epoch {
        return Ok(RewriteOutcome::Fenced);
    }
    let range = (
        r.topic_id,
        r.partition,
        shape.first_base,
        shape.last_old_base,
    );
    let rows = tx
        .query(
            &batch_query("WHERE b.topic_id = $1 AND b.partition = $2 AND b.base_offset >= $3 AND b.base_offset <= $4 ORDER BY b.base_offset"),
            &[&range.0, &range.1, &range.2, &range.3],
        )
        .await?;
    let rows = rows.iter().map(batch_row).collect::<Result<Vec<_>, _>>()?;
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
        )
        .into());
    }
    delete_batches(
        tx,
        "topic_id = $1 AND partition = $2 AND base_offset >= $3 AND base_offset <= $4",
        &[&range.0, &range.1, &range.2, &range.3],
    )
    .await?;
    let (key, size) = &shape.object;
    let stored = tx
        .execute(
            "INSERT INTO objects (object_key, size_bytes, live_bytes, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (object_key) DO UPDATE SET live_bytes = objects.live_bytes + excluded.live_bytes, dead_since_ms = NULL \
             WHERE objects.deleted_ms IS NULL",
            &[key, &(*size as i64), &shape.live_bytes, &crate::now_ms()],
        )
        .await?;
    if stored == 0 {
        return Err(MetaError::ObjectDeleted(key.clone()).into());
    }
    insert_rows(tx, r).await?;
    Ok(RewriteOutcome::Replaced)
}

/// Inserts the new rows of a rewrite with one statement.
async fn insert_rows(tx: &Tx<'_>, r: &BatchRewrite) -> TxResult<()> {
    let n = &r.new;
    let topic: Vec<Uuid> = n.iter().map(|_| r.topic_id).collect();
    let partition: Vec<i32> = n.iter().map(|_| r.partition).collect();
    let base: Vec<i64> = n.iter().map(|b| b.base_offset).collect();
    let last: Vec<i64> = n.iter().map(|b| b.last_offset).collect();
    let key: Vec<&str> = n.iter().map(|b| b.object_key.as_str()).collect();
    let at: Vec<i64> = n.iter().map(|b| b.byte_offset as i64).collect();
    let len: Vec<i64> = n.iter().map(|b| i64::from(b.byte_len)).collect();
    let ts: Vec<i64> = n.iter().map(|b| b.max_timestamp).collect();
    let pid: Vec<i64> = n.iter().map(|b| b.producer_id).collect();
    let pepoch: Vec<i16> = n.iter().map(|b| b.producer_epoch).collect();
    let bseq: Vec<i32> = n.iter().map(|b| b.base_sequence).collect();
    let lseq: Vec<i32> = n.iter().map(|b| b.last_sequence).collect();
    let stmt = tx.prepare_cached(INSERT_BATCHES).await?;
    tx.execute(
        &stmt,
        &[
            &topic, &partition, &base, &last, &key, &at, &len, &ts, &pid, &pepoch, &bseq, &lseq,
        ],
    )
    .await?;
    Ok(())
}
