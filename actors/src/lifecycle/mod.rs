//! The data lifecycle: retention retires old batches of the partitions a node owns, the
//! merger rewrites their small produce objects into large per-partition ones, and
//! the object collector deletes the objects nothing references any more (two-phase: marked
//! in the metadata store after a grace period, then deleted from the object store), and the
//! orphans a crash between PUT and commit left behind. The compactor keeps the latest record
//! of each key of compacted topics.

pub(crate) mod collector;
pub(crate) mod compactor;
pub(crate) mod merger;
mod request_share;
pub(crate) mod retention;
mod rewrite;

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the lifecycle actors since the node started.
#[derive(Debug, Default)]
pub struct LifecycleStats {
    /// Retention passes completed.
    pub retention_passes: AtomicU64,
    /// Times retention raised a partition's log start offset.
    pub log_start_advances: AtomicU64,
    /// Objects deleted after their last live byte was retired.
    pub objects_deleted: AtomicU64,
    /// Orphans (uploaded, never committed) deleted.
    pub orphans_deleted: AtomicU64,
    /// Object deletions that failed (retried by a later orphan sweep).
    pub delete_errors: AtomicU64,
    /// Orphan sweeps completed.
    pub orphan_sweeps: AtomicU64,
    /// Runs of batches merged into a new object.
    pub merges: AtomicU64,
    /// Bytes written by merging.
    pub merged_bytes: AtomicU64,
    /// Batch rows replaced by merging.
    pub merged_rows: AtomicU64,
    /// Merges refused because the rows changed under them or the partition moved.
    pub merge_conflicts: AtomicU64,
    /// Runs of compacted topics rewritten by key compaction.
    pub compactions: AtomicU64,
    /// Bytes those runs held before compaction.
    pub compacted_bytes_read: AtomicU64,
    /// Bytes written by key compaction.
    pub compacted_bytes_written: AtomicU64,
    /// Records key compaction removed (superseded, keyless, or tombstones past their horizon).
    pub compacted_records_removed: AtomicU64,
    /// Compactions refused because the rows changed under them or the partition moved.
    pub compaction_conflicts: AtomicU64,
    /// The object table as the collector last counted it (collecting node only).
    pub objects: parking_lot::Mutex<Option<inkless_storage::metadata::ObjectStats>>,
    /// Idle producer rows deleted (`producer.id.expiration.ms`).
    pub producers_expired: AtomicU64,
}

impl LifecycleStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
