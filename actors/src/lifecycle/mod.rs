//! The data lifecycle: retention retires old batches of the partitions a node owns, and
//! the object collector deletes the objects nothing references any more (two-phase: marked
//! in the metadata store after a grace period, then deleted from the object store), and the
//! orphans a crash between PUT and commit left behind.

pub(crate) mod collector;
pub(crate) mod retention;

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
    /// Idle producer rows deleted (`producer.id.expiration.ms`).
    pub producers_expired: AtomicU64,
}

impl LifecycleStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
