//! The actors of an Inkless node and their supervision tree.
//!
//! ```text
//! NodeSupervisor
//!  ├─ PartitionManager ── PartitionActor × owned partitions
//!  ├─ GroupManager ────── GroupCoordinator × groups
//!  ├─ ProduceBuffer      collects batches of all partitions into one open object
//!  ├─ ObjectUploader     PUTs sealed objects, hands each partition its slice, in seal order
//!  ├─ IndexWriter        group-commits appends of all partitions into the metadata store
//!  ├─ CacheShard         block cache of objects for fetches
//!  ├─ Retention          retires expired batches of the partitions owned here
//!  ├─ ObjectCollector    deletes unreferenced objects and orphans (one node of a cluster)
//!  ├─ Merger             rewrites small produce objects into large per-partition ones
//!  ├─ Compactor          keeps the latest record of each key of compacted topics
//!  └─ TxnCoordinator     transactional ids owned here: state in the store, markers
//! ```
//! Architecture invariants:
//! - only a PartitionActor assigns offsets of its partition;
//! - nothing is acknowledged before the metadata commit that makes it durable;
//! - every actor can be restarted from the metadata store and object store alone.
//!
//! Request handlers (in the node crate) talk to actors through [`Node`].

mod cluster;
mod group;
mod lifecycle;
pub mod metrics;
mod node;
mod partition;
mod read;
mod tree;
mod txn;
mod write;

pub use cluster::balancer::BalancerConfig;
pub use cluster::membership::MembershipConfig;
pub use cluster::mesh::{MeshConfig, MAX_BLOCK_BYTES};
pub use cluster::placement::LiveSet;
pub use group::consumer::{Assignment, Heartbeat as ConsumerHeartbeat, TopicLookup};
pub use group::coordinator::{GroupLimits, JoinArgs, MemberRef, OffsetToDelete, SyncArgs};
pub use group::error::{GroupError, GroupResult};
pub use group::handle::{CoordinatorGone, GroupHandle, GroupMiss};
pub use inkless_storage::metadata::TxnState;
pub use lifecycle::collector::CollectorConfig;
pub use lifecycle::compactor::{CompactConfig, CompactionPolicy};
pub use lifecycle::merger::MergeConfig;
pub use lifecycle::retention::RetentionLimits;
pub use lifecycle::LifecycleStats;
pub use node::{Node, NodeConfig, NodeError, ObjectRange, MAX_LONG_POLL};
pub use partition::actor::{AppendAck, PartitionOffsets};
pub use partition::error::StartError;
pub use tree::registry::ActorKindStats;
pub use tree::supervisor::ActorInfo;
pub use txn::coordinator::TxnConfig;
pub use txn::error::{TxnError, TxnResult};
pub use txn::state::{add_offsets, add_partitions, check_producer, verify_partition, Claimed};
pub use write::produce_buffer::PartAppend;

use uuid::Uuid;

/// A partition of a topic, by topic id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
}

/// Why an append was not acknowledged. The node maps each to a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// A sequence gap for an idempotent producer.
    #[error("out of order sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        /// Sequence the batch started with.
        got: i32,
        /// Sequence that was expected.
        expected: i32,
    },
    /// The producer's epoch is older than the one the partition knows.
    #[error("producer epoch {got} is older than {current}")]
    InvalidProducerEpoch {
        /// Epoch of the batch.
        got: i16,
        /// Current epoch.
        current: i16,
    },
    /// This node does not (or no longer) own the partition.
    #[error("not the owner of the partition")]
    NotOwner,
    /// The object could not be stored in time.
    #[error("object store: {0}")]
    Storage(String),
    /// The metadata store refused or failed.
    #[error("metadata store: {0}")]
    Metadata(String),
    /// The request's time ran out before the append could start (back-pressure).
    #[error("timed out waiting for produce capacity")]
    TimedOut,
    /// The append was handed on but its outcome is unknown (its actor stopped with the
    /// commit in flight, or its owner did not answer): it may or may not be in the log, so
    /// the client must not be told NOT_LEADER_OR_FOLLOWER, which promises it is not.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The node is shutting down or an actor is gone.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The offset is below the log start or above the high watermark.
    #[error("offset out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// First readable offset.
        log_start_offset: i64,
        /// End of the log.
        high_watermark: i64,
    },
    /// This node does not own the partition.
    #[error("not the owner of the partition")]
    NotOwner,
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(String),
}

#[cfg(test)]
mod dormant_tests;
#[cfg(test)]
mod ownership_tests;
#[cfg(test)]
mod tests;
