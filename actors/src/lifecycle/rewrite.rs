//! The one rewrite path of merging and key compaction: lay batches out into rows, write the
//! new object, and swap its rows in for the run they replace through the partition's actor
//! (`MetadataStore::rewrite_batches`, under the actor's owner epoch). A refused swap deletes
//! the new object at once (nothing references it); a swap whose outcome is unknown leaves it
//! to the orphan sweep, which keeps it if the swap landed.

use crate::partition::registry::PartitionRegistry;
use crate::TopicPartition;
use bytes::Bytes;
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::{BatchCoordinate, BatchRewrite, RewriteOutcome, RowRef};

/// Why a rewrite did not swap in.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The new object could not be written.
    #[error("writing the rewritten object: {0}")]
    Write(String),
    /// The swap failed; it may or may not have landed.
    #[error("swapping the rewritten rows in: {0}")]
    Swap(String),
}

/// Appends `row` to `rows`, coalescing it into the last row while that stays within
/// `max_row_bytes`. A row of several batches has no producer (duplicate detection only looks
/// at batches younger than the rewriters' `min_age`).
pub(super) fn push_row(rows: &mut Vec<BatchCoordinate>, row: BatchCoordinate, max_row_bytes: u64) {
    match rows.last_mut() {
        Some(last) if u64::from(last.byte_len) + u64::from(row.byte_len) <= max_row_bytes => {
            debug_assert_eq!(last.last_offset + 1, row.base_offset);
            debug_assert_eq!(last.byte_offset + u64::from(last.byte_len), row.byte_offset);
            last.last_offset = row.last_offset;
            last.byte_len += row.byte_len;
            last.max_timestamp = last.max_timestamp.max(row.max_timestamp);
            last.producer_id = -1;
            last.producer_epoch = -1;
            last.base_sequence = -1;
            last.last_sequence = -1;
        }
        _ => rows.push(row),
    }
}

/// Writes `bytes` as a new object under `prefix`, points `rows` (positions in `bytes`) at it
/// and swaps them in for `run`. `Some(size)` of the new object when swapped in, `None` when
/// the swap was refused (the rows changed, or the partition moved).
pub(super) async fn swap_in(
    blob: &BlobStore,
    partitions: &PartitionRegistry,
    tp: &TopicPartition,
    prefix: &str,
    run: &[BatchCoordinate],
    bytes: Bytes,
    rows: Vec<BatchCoordinate>,
) -> Result<Option<u64>, RewriteError> {
    let size = bytes.len() as u64;
    let key = format!("{prefix}{}", uuid::Uuid::now_v7());
    blob.put(&key, bytes)
        .await
        .map_err(|e| RewriteError::Write(e.to_string()))?;
    let new = rows
        .into_iter()
        .map(|r| BatchCoordinate {
            object_key: key.clone(),
            object_size: size,
            ..r
        })
        .collect();
    let rewrite = BatchRewrite {
        topic_id: tp.topic_id,
        partition: tp.partition,
        owner_epoch: 0, // set by the partition's actor
        old: run.iter().map(RowRef::from).collect(),
        new,
    };
    match partitions.rewrite(tp, rewrite).await {
        Ok(RewriteOutcome::Replaced) => Ok(Some(size)),
        Ok(RewriteOutcome::Changed | RewriteOutcome::Fenced) => {
            let _ = blob.delete_many(vec![key]).await;
            Ok(None)
        }
        Err(e) => Err(RewriteError::Swap(e.to_string())),
    }
}
