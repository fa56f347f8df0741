//! What `inkless storage check` reads and repairs in PostgreSQL: pages of the object and
//! batch tables, and live bytes recounted from the batches under the object's row lock.

use super::{Tx, TxResult};
use crate::metadata::{LiveBytesMismatch, StoredBatch, StoredObject};
use tokio_postgres::Row;

/// Object rows after `$1` (all when NULL), in key order, at most `$2`.
pub(super) const OBJECTS_PAGE: &str = "SELECT object_key, size_bytes, live_bytes, created_ms, \
     dead_since_ms, deleted_ms FROM objects WHERE $1::text IS NULL OR object_key > $1::text \
     ORDER BY object_key LIMIT $2";

/// Batch rows after (`$1`, `$2`, `$3`), in primary-key order (served by its index), at
/// most `$4`. The first page starts after the nil topic id, which no topic has.
pub(super) const BATCHES_PAGE: &str = "SELECT topic_id, partition, base_offset, last_offset, \
     object_key, byte_offset, byte_len FROM batches \
     WHERE (topic_id, partition, base_offset) > ($1::uuid, $2::int4, $3::int8) \
     ORDER BY topic_id, partition, base_offset LIMIT $4";

/// A row of [`OBJECTS_PAGE`].
pub(super) fn object_row(r: &Row) -> Result<StoredObject, tokio_postgres::Error> {
    Ok(StoredObject {
        key: r.try_get(0)?,
        size_bytes: r.try_get::<_, i64>(1)?.max(0) as u64,
        live_bytes: r.try_get(2)?,
        created_ms: r.try_get(3)?,
        dead_since_ms: r.try_get(4)?,
        deleted_ms: r.try_get(5)?,
    })
}

/// A row of [`BATCHES_PAGE`].
pub(super) fn batch_row(r: &Row) -> Result<StoredBatch, tokio_postgres::Error> {
    Ok(StoredBatch {
        partition: (r.try_get(0)?, r.try_get(1)?),
        base_offset: r.try_get(2)?,
        last_offset: r.try_get(3)?,
        object_key: r.try_get(4)?,
        byte_offset: r.try_get::<_, i64>(5)?.max(0) as u64,
        byte_len: r.try_get::<_, i64>(6)?.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

/// Compares (and with `fix` corrects) the live bytes of `keys`. Each object's row is locked
/// first; every commit and deletion that changes its batches updates that row in the same
/// transaction, so once the lock is held (READ COMMITTED: the next statement sees all
/// that committed before) the sum cannot change under us.
pub(super) async fn recount_live_bytes(
    tx: &Tx<'_>,
    keys: &[String],
    fix: bool,
) -> TxResult<Vec<LiveBytesMismatch>> {
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let update_sql = format!(
        "UPDATE objects SET live_bytes = $2::int8, dead_since_ms = CASE WHEN $2::int8 > 0 THEN NULL \
         ELSE COALESCE(dead_since_ms, {}) END WHERE object_key = $1",
        super::ownership::NOW_MS
    );
    let (lock, sum, update) = futures::try_join!(
        tx.prepare_cached("SELECT live_bytes FROM objects WHERE object_key = $1 FOR UPDATE"),
        tx.prepare_cached(
            "SELECT COUNT(*), COALESCE(SUM(byte_len), 0)::int8 FROM batches WHERE object_key = $1"
        ),
        tx.prepare_cached(&update_sql),
    )?;
    let mut out = Vec::new();
    for key in sorted {
        let stored: Option<i64> = match tx.query_opt(&lock, &[&key]).await? {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        };
        let row = tx.query_one(&sum, &[&key]).await?;
        let (count, batches): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        if (stored.is_none() && count == 0) || stored == Some(batches) {
            continue;
        }
        if fix && stored.is_some() {
            tx.execute(&update, &[&key, &batches]).await?;
        }
        out.push(LiveBytesMismatch {
            key,
            stored,
            batches,
        });
    }
    Ok(out)
}
