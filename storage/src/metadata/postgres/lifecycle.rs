//! The data lifecycle in PostgreSQL: what retention may retire, and the first phase of
//! object deletion (see [`crate::metadata::MetadataStore::retire_dead_objects`]). Times are
//! the database's clock, so nodes with skewed clocks agree on grace periods.

use super::ownership::NOW_MS;
use super::{Tx, TxResult};
use crate::metadata::{ObjectStats, RetentionQuery, DELETED_OBJECT_KEPT_MS};
use uuid::Uuid;

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

/// Marks dead objects past their grace period as deleted; forgets old marks.
pub(super) async fn retire_dead_objects(
    tx: &Tx<'_>,
    grace_ms: i64,
    limit: usize,
) -> TxResult<Vec<String>> {
    tx.execute(
        &format!(
            "DELETE FROM objects WHERE deleted_ms IS NOT NULL AND deleted_ms < {NOW_MS} - $1::int8"
        ),
        &[&DELETED_OBJECT_KEPT_MS],
    )
    .await?;
    // SKIP LOCKED: an object a commit is reviving right now is not dead.
    let sql = format!(
        "UPDATE objects SET deleted_ms = {NOW_MS}, dead_since_ms = NULL WHERE object_key IN \
         (SELECT object_key FROM objects WHERE dead_since_ms <= {NOW_MS} - $1::int8 AND live_bytes <= 0 \
          AND deleted_ms IS NULL ORDER BY dead_since_ms LIMIT $2 FOR UPDATE SKIP LOCKED) \
         AND live_bytes <= 0 AND deleted_ms IS NULL RETURNING object_key"
    );
    let rows = tx.query(&sql, &[&grace_ms, &(limit as i64)]).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Marks the keys the store has no row for as deleted orphans.
pub(super) async fn retire_orphans(tx: &Tx<'_>, keys: &[String]) -> TxResult<Vec<String>> {
    let sql = format!(
        "INSERT INTO objects (object_key, size_bytes, live_bytes, created_ms, deleted_ms) \
         SELECT k, 0, 0, {NOW_MS}, {NOW_MS} FROM UNNEST($1::text[]) AS k \
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
